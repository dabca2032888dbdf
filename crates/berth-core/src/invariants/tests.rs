//! Tests of the invariant check: each invariant, broken and kept.

#![allow(clippy::unwrap_used)] // Tests may unwrap.
use super::*;
use crate::{
    ContainerRequest, GpuPreference, Payload, PoolAttributes, PoolName, RuntimeName, WorkerId,
    WorkerStatus,
};

const NOW: u64 = 1_000_000;
const DEAD_AFTER: Duration = Duration::from_secs(60);

fn options() -> CheckOptions {
    CheckOptions::at(NOW, DEAD_AFTER)
}

fn cid(id: &str) -> ContainerId {
    ContainerId::new(id).unwrap()
}

fn attempt(id: &str) -> AttemptId {
    AttemptId(id.to_owned())
}

/// Worker `id` with 4000m / 4096 MiB, owning `owned` (100m / 100 MiB each, under
/// `(container, attempt)`), last heard from at `heartbeat_ms`.
fn worker(id: &str, owned: &[(&str, &str)], heartbeat_ms: u64) -> WorkerDump {
    let each = Resources::new(100, 100, 0);
    let total = Resources::new(4000, 4096, 0);
    let held = Resources::new(100 * owned.len() as u64, 100 * owned.len() as u64, 0);
    WorkerDump {
        worker: Worker {
            images: Vec::new(),
            gpus: Vec::new(),
            id: WorkerId::new(id).unwrap(),
            pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
            status: WorkerStatus::Available,
            total,
            free: total.checked_sub(held).unwrap(),
            gpu_type: None,
            runtime: RuntimeName::PROCESS,
            version: 1,
            epoch: 1,
        },
        owned: owned
            .iter()
            .map(|(c, a)| OwnedEntry {
                devices: Vec::new(),
                container: cid(c),
                attempt: attempt(a),
                resources: each,
            })
            .collect(),
        heartbeat_ms,
        assignments: Vec::new(),
        queue: format!("{id}:assign"),
    }
}

fn queued(delivery: &str, container: &str, attempt_id: &str) -> QueuedAssignment {
    QueuedAssignment {
        delivery: delivery.to_owned(),
        container: cid(container),
        attempt: attempt(attempt_id),
    }
}

fn record(id: &str, state: ContainerState, holder: Option<(&str, &str)>) -> ContainerRecord {
    let mut record = crate::lifecycle::pending(ContainerRequest {
        gpu_fraction_milli: None,
        id: cid(id),
        tenant: "t".into(),
        resources: Resources::new(100, 100, 0),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    });
    record.state = state;
    if let Some((w, a)) = holder {
        record.worker = Some(WorkerId::new(w).unwrap());
        record.attempt = Some(attempt(a));
    }
    record
}

#[test]
fn a_healthy_dump_has_no_violations() {
    let mut w1 = worker("w1", &[("c1", "a1"), ("c2", "a2")], NOW - 1000);
    w1.assignments = vec![queued("1-0", "c1", "a1")];
    let dump = Dump {
        workers: vec![w1],
        records: vec![
            record("c1", ContainerState::Scheduled, Some(("w1", "a1"))),
            record("c2", ContainerState::Running, Some(("w1", "a2"))),
            record("c3", ContainerState::Pending, None),
            record("c4", ContainerState::Exited, Some(("w1", "a4"))),
        ],
        queued: [cid("c3")].into_iter().collect(),
        unreadable: Vec::new(),
        ..Dump::default()
    };
    assert_eq!(violations(&dump, &options()), Vec::new());
}

#[test]
fn a_dead_owner_is_a_violation() {
    let dump = Dump {
        workers: vec![worker("w1", &[("c1", "a1")], NOW - 90_000)],
        records: vec![record("c1", ContainerState::Running, Some(("w1", "a1")))],
        ..Dump::default()
    };
    let found = violations(&dump, &options());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subject, "c1");
    assert_eq!(
        found[0].detail,
        "running on worker w1 (attempt a1) but that worker is dead: last heartbeat \
         90000 ms ago, dead after 60000 ms"
    );
    // Exactly at the limit it is still alive.
    let mut dump = dump;
    dump.workers[0].heartbeat_ms = NOW - 60_000;
    assert!(violations(&dump, &options()).is_empty());
}

#[test]
fn a_lost_worker_with_a_fresh_heartbeat_is_alive() {
    // The reaper has declared it lost and not reclaimed its containers yet.
    let mut w1 = worker("w1", &[("c1", "a1")], NOW - 5_000);
    w1.worker.status = WorkerStatus::Lost;
    w1.assignments = vec![queued("1-0", "c1", "a1")];
    let dump = Dump {
        workers: vec![w1],
        records: vec![record("c1", ContainerState::Scheduled, Some(("w1", "a1")))],
        ..Dump::default()
    };
    assert_eq!(violations(&dump, &options()), Vec::new());
}

#[test]
fn ignoring_heartbeats_takes_every_worker_for_alive() {
    let dump = Dump {
        workers: vec![worker("w1", &[("c1", "a1")], 0)],
        records: vec![record("c1", ContainerState::Running, Some(("w1", "a1")))],
        ..Dump::default()
    };
    assert!(violations(&dump, &CheckOptions::ignoring_heartbeats()).is_empty());
    assert_eq!(violations(&dump, &options()).len(), 1);
}

/// What the check says of worker w1 owning `owned` with `assignments` queued.
fn judge_queue(owned: &[(&str, &str)], assignments: Vec<QueuedAssignment>) -> Vec<String> {
    let mut w1 = worker("w1", owned, NOW);
    w1.assignments = assignments;
    let dump = Dump {
        workers: vec![w1],
        ..Dump::default()
    };
    violations(&dump, &options())
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn an_assignment_without_ownership_is_a_violation() {
    assert_eq!(
        judge_queue(&[], vec![queued("7-0", "c1", "a1")]),
        vec!["w1:assign: entry 7-0 assigns c1 (attempt a1) but worker w1 does not own c1"]
    );
}

#[test]
fn an_assignment_under_another_attempt_is_a_violation() {
    let entries = vec![queued("7-0", "c1", "a1"), queued("8-0", "c1", "a2")];
    assert_eq!(
        judge_queue(&[("c1", "a2")], entries),
        vec![
            "w1:assign: entry 7-0 assigns c1 (attempt a1) but worker w1 owns c1 under \
             attempt a2"
        ]
    );
}

#[test]
fn a_pending_record_neither_in_the_intake_nor_in_the_backlog_is_a_violation() {
    let mut lost = record("c1", ContainerState::Pending, None);
    lost.deferrals = 2;
    let dump = Dump {
        records: vec![lost, record("c2", ContainerState::Pending, None)],
        queued: [cid("c2")].into_iter().collect(),
        ..Dump::default()
    };
    let found = violations(&dump, &options());
    assert_eq!(
        found,
        vec![Violation {
            subject: "c1".to_owned(),
            detail: "pending but neither in the intake nor in the backlog (deferred 2 \
                     times)"
                .to_owned(),
        }]
    );
}

#[test]
fn a_pending_record_owned_between_commit_and_settlement_is_fine() {
    // Committed, not settled yet: owned and queued to the worker, still in the intake.
    let mut w1 = worker("w1", &[("c1", "a1")], NOW);
    w1.assignments = vec![queued("1-0", "c1", "a1")];
    let dump = Dump {
        workers: vec![w1],
        records: vec![record("c1", ContainerState::Pending, None)],
        queued: [cid("c1")].into_iter().collect(),
        unreadable: Vec::new(),
        ..Dump::default()
    };
    assert!(violations(&dump, &options()).is_empty());
}

#[test]
fn unreadable_entries_and_the_old_rules_still_count() {
    let mut w1 = worker("w1", &[("c1", "a1")], NOW);
    w1.worker.free = Resources::new(4000, 4096, 0);
    let w2 = worker("w2", &[("c1", "a9")], NOW);
    let dump = Dump {
        workers: vec![w1, w2],
        records: vec![record("c1", ContainerState::Failed, None)],
        unreadable: vec![Violation {
            subject: "k".to_owned(),
            detail: "unreadable".to_owned(),
        }],
        ..Dump::default()
    };
    let found: Vec<String> = violations(&dump, &options())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        vec![
            "k: unreadable",
            "w1: free (cpu=4000m memory=4096Mi gpu=0) + owned (cpu=100m memory=100Mi \
             gpu=0) != total (cpu=4000m memory=4096Mi gpu=0)",
            "c1: owned by 2 workers: w1, w2",
            "c1: failed but still owned by worker w1 (cpu=100m memory=100Mi gpu=0 leaked)",
        ]
    );
}

#[test]
fn an_ended_container_still_owned_is_in_flight_for_a_while_then_a_leak() {
    let dump = |finished_ms| {
        let mut ended = record("c1", ContainerState::Exited, Some(("w1", "a1")));
        ended.finished_at_ms = Some(finished_ms);
        Dump {
            workers: vec![worker("w1", &[("c1", "a1")], NOW)],
            records: vec![ended],
            ..Dump::default()
        }
    };
    let patient = options().with_in_flight(Duration::from_secs(10));
    // Ended 2 s ago, release not through yet: the second step of the final report.
    assert!(violations(&dump(NOW - 2_000), &patient).is_empty());
    // Ended 11 s ago and still owned: nothing will release it any more.
    let found = violations(&dump(NOW - 11_000), &patient);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].detail.contains("leaked"), "{found:?}");
    // Without an in-flight time, at once.
    assert_eq!(violations(&dump(NOW - 2_000), &options()).len(), 1);
    assert_eq!(violations(&dump(NOW), &options()).len(), 1);
}

#[test]
fn a_placement_settled_after_the_check_began_is_not_judged_unowned() {
    let dump = |scheduled_ms| {
        let mut placed = record("c1", ContainerState::Scheduled, Some(("w1", "a1")));
        placed.scheduled_at_ms = Some(scheduled_ms);
        Dump {
            workers: vec![worker("w1", &[], NOW)],
            records: vec![placed],
            ..Dump::default()
        }
    };
    let patient = options().with_in_flight(Duration::from_secs(10));
    // Settled while the check read (its workers were read before the commit).
    assert!(violations(&dump(NOW + 5), &patient).is_empty());
    assert!(violations(&dump(NOW - 500), &patient).is_empty());
    // Without an in-flight time, even a placement stamped in the check's millisecond.
    assert_eq!(violations(&dump(NOW), &options()).len(), 1);
    // Settled well before the check began and still unowned: a violation.
    let found = violations(&dump(NOW - 5_000), &patient);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].detail.contains("does not own it"), "{found:?}");
    assert_eq!(violations(&dump(NOW - 500), &options()).len(), 1);
}

/// A worker with devices 0 and 1 (of 1000 milli-GPUs each) owning `owned` (container, GPU
/// count, shares), 100m / 100 MiB each; its free capacity balances the owned entries, its
/// devices' free milli-GPUs are set by the caller.
fn gpu_worker(owned: &[(&str, u32, Vec<DeviceShare>)], free_milli: [u32; 2]) -> WorkerDump {
    let mut dump = worker("g", &[], NOW);
    let w = &mut dump.worker;
    w.total = Resources::new(4000, 4096, 2);
    w.gpu_type = Some(crate::GpuType::A10G);
    w.gpus = (0..2)
        .map(|index| crate::WorkerGpu {
            device: crate::GpuDevice {
                index,
                gpu_type: crate::GpuType::A10G,
                memory_mib: 0,
                uuid: None,
                healthy: true,
            },
            free_milli: free_milli[index as usize],
        })
        .collect();
    let n = owned.len() as u64;
    let whole_free = free_milli.iter().filter(|&&f| f == GPU_MILLI).count() as u32;
    w.free = Resources::new(4000 - 100 * n, 4096 - 100 * n, whole_free);
    dump.owned = owned
        .iter()
        .map(|(c, gpus, devices)| OwnedEntry {
            container: cid(c),
            attempt: attempt("a1"),
            resources: Resources::new(100, 100, *gpus),
            devices: devices.clone(),
        })
        .collect();
    dump
}

fn judge_capacity(dump: &WorkerDump) -> Vec<String> {
    let mut found = Vec::new();
    check_capacity(&dump.worker, &dump.owned, &mut found);
    found.into_iter().map(|v| v.detail).collect()
}

fn share(index: u32, milli: u32) -> DeviceShare {
    DeviceShare { index, milli }
}

#[test]
fn gpus_are_accounted_per_device() {
    // A whole device 0, two quarter shares of device 1 (half of it left).
    let owned = [
        ("c1", 1, vec![DeviceShare::whole(0)]),
        ("c2", 0, vec![share(1, 250)]),
        ("c3", 0, vec![share(1, 250)]),
    ];
    let dump = gpu_worker(&owned, [0, 500]);
    assert_eq!(judge_capacity(&dump), Vec::<String>::new());
    // Nothing owned, both devices wholly free.
    assert_eq!(
        judge_capacity(&gpu_worker(&[], [1000, 1000])),
        Vec::<String>::new()
    );

    // CPU or memory that does not balance, with a device list.
    for (cpu, memory) in [(1, 0), (0, 1)] {
        let mut off = dump.clone();
        off.worker.free.cpu_millicores -= cpu;
        off.worker.free.memory_mib -= memory;
        let found = judge_capacity(&off);
        assert!(
            found.len() == 1 && found[0].contains("!= total"),
            "{found:?}"
        );
    }
    // A device whose free and owned shares do not add up to the whole.
    let mut off = dump.clone();
    off.worker.gpus[1].free_milli = 600;
    let found = judge_capacity(&off);
    assert!(
        found.len() == 1 && found[0].starts_with("device 1: free (600) + owned (500)"),
        "{found:?}"
    );
    // A free GPU count other than the wholly free healthy devices.
    let mut off = dump.clone();
    off.worker.free.gpu_count = 1;
    let found = judge_capacity(&off);
    assert!(
        found.len() == 1 && found[0].contains("free GPU count 1 != 0"),
        "{found:?}"
    );
    // An entry that counts one GPU but holds a fraction.
    let mut off = dump.clone();
    off.owned[1].resources.gpu_count = 1;
    let found = judge_capacity(&off);
    assert!(
        found
            .iter()
            .any(|d| d.starts_with("c2 holds 1 GPUs but 0 whole devices (1:250)")),
        "{found:?}"
    );
    // A share on a device the worker does not have.
    let mut off = dump.clone();
    off.owned[2].devices = vec![share(7, 250)];
    off.worker.gpus[1].free_milli = 750;
    let found = judge_capacity(&off);
    assert_eq!(
        found,
        ["250 milli-GPUs are owned on device 7, which it does not have"]
    );
}

#[test]
fn an_unhealthy_device_only_needs_its_shares_to_fit() {
    // Device 1 unhealthy: whatever its free, shares up to the whole are fine.
    let owned = [("c1", 1, vec![DeviceShare::whole(1)])];
    let mut dump = gpu_worker(&owned, [1000, 0]);
    dump.worker.gpus[1].device.healthy = false;
    dump.worker.gpus[1].free_milli = 300;
    assert_eq!(judge_capacity(&dump), Vec::<String>::new());
    let owned = [
        ("c1", 0, vec![share(1, 600)]),
        ("c2", 0, vec![share(1, 600)]),
    ];
    let mut dump = gpu_worker(&owned, [1000, 0]);
    dump.worker.gpus[1].device.healthy = false;
    assert_eq!(
        judge_capacity(&dump),
        ["device 1 (unhealthy): owned 1200 milli-GPUs exceed 1000"]
    );
    // Its free milli-GPUs never count it wholly free.
    let mut dump = gpu_worker(&[], [1000, 1000]);
    dump.worker.gpus[1].device.healthy = false;
    dump.worker.free.gpu_count = 1;
    assert_eq!(judge_capacity(&dump), Vec::<String>::new());
}

/// Without a device list, GPUs are accounted by count: free plus owned is the total.
#[test]
fn without_a_device_list_gpus_balance_by_count() {
    let mut dump = gpu_worker(&[("c1", 1, Vec::new())], [0, 1000]);
    dump.worker.gpus.clear();
    dump.worker.free.gpu_count = 1;
    assert_eq!(judge_capacity(&dump), Vec::<String>::new());
    dump.worker.free.gpu_count = 2;
    let found = judge_capacity(&dump);
    assert!(
        found.len() == 1 && found[0].contains("!= total"),
        "{found:?}"
    );
}

fn charge(tenant: &str, cpu: u64) -> crate::Charge {
    crate::Charge {
        tenant: tenant.to_owned(),
        cpu_millicores: cpu,
        memory_mib: 64,
        gpu_milli: 0,
        gpu_type: None,
    }
}

#[test]
fn usage_must_be_the_sum_of_the_charges() {
    let mut usage = crate::Usage::default();
    usage.add(&charge("acme", 100));
    usage.add(&charge("acme", 200));
    let mut dump = Dump {
        records: vec![
            record("c1", ContainerState::Running, None),
            record("c2", ContainerState::Pending, None),
        ],
        charges: vec![
            (cid("c1"), charge("acme", 100)),
            (cid("c2"), charge("acme", 200)),
        ],
        usage: vec![("acme".to_owned(), usage.clone())],
        ..Dump::default()
    };
    let quota_violations = |dump: &Dump| -> Vec<Violation> {
        violations(dump, &options())
            .into_iter()
            .filter(|v| v.detail.contains("charge"))
            .collect()
    };
    assert!(quota_violations(&dump).is_empty());
    dump.usage[0].1.cpu_millicores = 250;
    let found = quota_violations(&dump);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subject, "tenant acme");
    dump.usage.clear();
    assert_eq!(quota_violations(&dump).len(), 1);
    dump.charges.clear();
    dump.usage = vec![("ghost".to_owned(), usage)];
    assert_eq!(quota_violations(&dump)[0].subject, "tenant ghost");
}

#[test]
fn an_ended_container_must_not_stay_charged() {
    let mut usage = crate::Usage::default();
    usage.add(&charge("acme", 100));
    let dump = Dump {
        records: vec![record("c1", ContainerState::Exited, None)],
        charges: vec![(cid("c1"), charge("acme", 100))],
        usage: vec![("acme".to_owned(), usage)],
        ..Dump::default()
    };
    let found: Vec<Violation> = violations(&dump, &options())
        .into_iter()
        .filter(|v| v.detail.contains("charged"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subject, "c1");
}
