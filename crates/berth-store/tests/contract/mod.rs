//! The one contract every `Store` must keep. Each case is an async fn taking a `connect`
//! function: `connect(config)` returns a client of the store named by `config.prefix`;
//! calling it twice with the same prefix gives two clients of the same data (as two
//! scheduler replicas would have). `contract_tests!(connect)` turns every case into a test.

#![allow(dead_code, clippy::unwrap_used)]

mod credentials;
mod devices;
mod preemption;
mod provisioning;
mod quotas;
mod retries;
mod table;

pub use credentials::credentials_are_stored_found_and_revoked;

pub use devices::{
    an_unhealthy_device_is_never_booked, concurrent_device_commits_never_overbook,
    devices_are_booked_once_and_credited_exactly, reregistration_keeps_what_devices_hold,
    reservations_must_name_their_devices,
};
pub use preemption::{
    a_preemption_hands_over_exactly_its_victims_devices,
    a_preemption_swaps_its_victims_for_the_preemptor_at_once,
};
pub use provisioning::provisioned_workers_are_recorded_per_pool_and_forgotten_once;
pub use quotas::{
    an_ended_record_is_never_charged, charges_follow_their_records,
    concurrent_holds_never_exceed_a_quota, gpu_limits_apply_per_type_and_in_total,
    holds_never_take_a_tenant_over_its_quota, tenants_policies_round_trip,
};
pub use retries::a_lost_container_is_retried_until_its_retries_are_used;
pub use table::every_cell_of_the_state_machine_is_kept;

use berth_core::*;
use berth_store::prelude::*;
use berth_store::*;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Expands to one `#[tokio::test]` per contract case, each calling the case with `$connect`.
#[macro_export]
macro_rules! contract_tests {
    ($connect:path) => {
        $crate::contract_tests!(@cases $connect;
            register_upserts_and_keeps_reservations,
            unknown_workers_are_reported,
            snapshot_lists_every_worker,
            the_runtime_round_trips,
            commit_is_all_or_nothing,
            commit_checks_status_inside_the_atomic_step,
            groups_commit_independently,
            commit_is_idempotent_per_container,
            release_is_idempotent,
            lock_path_counts_and_fences,
            assignments_arrive_in_order_and_are_redelivered_until_acked,
            assignments_wait_without_polling,
            a_long_poll_of_a_worker_removed_meanwhile_ends_as_unknown,
            submit_is_idempotent_per_id,
            records_only_move_forward,
            claim_settle_and_backlog,
            unsettled_claims_are_reclaimed_after_the_visibility_timeout,
            a_stale_claim_is_taken_over_while_claims_go_on,
            a_second_placement_is_superseded,
            concurrent_commits_never_overbook,
            two_clients_never_overbook,
            check_finds_nothing_on_a_healthy_store,
            check_reads_every_worker_of_a_large_fleet,
            a_retried_commit_succeeds_after_the_worker_drained,
            invalid_requests_write_nothing,
            owners_lists_every_holder,
            unmet_demand_sums_the_backlog_per_pool,
            one_provisioning_intent_per_pool_and_ttl,
            heartbeats_and_deregistration,
            workers_report_the_images_they_hold,
            listing_and_logs,
            cancellation_fails_pending_and_flags_placed,
            a_dead_workers_containers_are_reclaimed_once,
            a_pulling_container_is_cancelled_and_given_back_like_a_scheduled_one,
            a_lost_container_is_retried_until_its_retries_are_used,
            another_attempt_is_not_a_retry,
            a_reservation_given_back_before_its_settlement_never_schedules,
            an_old_epoch_is_fenced_off,
            a_release_drops_the_undelivered_assignment,
            check_stays_clean_through_a_containers_life,
            check_judges_owners_by_their_heartbeats,
            every_cell_of_the_state_machine_is_kept,
            devices_are_booked_once_and_credited_exactly,
            an_unhealthy_device_is_never_booked,
            reregistration_keeps_what_devices_hold,
            reservations_must_name_their_devices,
            concurrent_device_commits_never_overbook,
            credentials_are_stored_found_and_revoked,
            tenants_policies_round_trip,
            holds_never_take_a_tenant_over_its_quota,
            charges_follow_their_records,
            an_ended_record_is_never_charged,
            gpu_limits_apply_per_type_and_in_total,
            concurrent_holds_never_exceed_a_quota,
            provisioned_workers_are_recorded_per_pool_and_forgotten_once,
            a_preemption_swaps_its_victims_for_the_preemptor_at_once,
            a_preemption_hands_over_exactly_its_victims_devices,
        );
    };
    (@cases $connect:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                contract::$case($connect).await;
            }
        )*
    };
}

/// What every case takes: `connect(config)` gives a client of the store named by
/// `config.prefix`.
pub trait Connect: Fn(StoreConfig) -> Self::Client {
    /// The future of a connection.
    type Client: Future<Output = Arc<dyn Store>>;
}

impl<C, F> Connect for C
where
    C: Fn(StoreConfig) -> F,
    F: Future<Output = Arc<dyn Store>>,
{
    type Client = F;
}

/// The reservation a claim makes (with an empty payload).
fn reservation_for(claim: &Claim) -> Reservation {
    Reservation {
        devices: Vec::new(),
        container: claim.request.id.clone(),
        attempt: claim.attempt.clone(),
        resources: claim.request.resources,
        payload: Payload::default(),
    }
}

/// The settlement of a claim placed on `worker`.
fn scheduled_on(claim: &Claim, worker: &str) -> SettleItem {
    let settlement = Settlement::Scheduled {
        worker: wid(worker),
        attempt: claim.attempt.clone(),
        charge: Charge::of(&claim.request, None),
    };
    settle_item(claim, settlement)
}

/// A fresh store namespace for one case.
fn config(case: &str) -> StoreConfig {
    StoreConfig {
        prefix: format!("t{}:{case}", rand::random::<u32>()),
        claim_visibility: Duration::from_millis(300),
        redelivery: Duration::from_millis(300),
        ..StoreConfig::default()
    }
}

async fn open(connect: &impl Connect, case: &str) -> Arc<dyn Store> {
    connect(config(case)).await
}

fn wid(id: &str) -> WorkerId {
    WorkerId::new(id).unwrap()
}

fn cid(id: &str) -> ContainerId {
    ContainerId::new(id).unwrap()
}

/// Registers worker `id` with `cpu` millicores and `mem` MiB in the default pool.
async fn register(store: &dyn Store, id: &str, cpu: u64, mem: u64) {
    store
        .register_worker(&registration(id, cpu, mem))
        .await
        .unwrap();
}

fn registration(id: &str, cpu: u64, mem: u64) -> WorkerRegistration {
    WorkerRegistration {
        devices: Vec::new(),
        id: wid(id),
        pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(cpu, mem, 0),
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
    }
}

fn reservation(container: &str, cpu: u64, mem: u64) -> Reservation {
    Reservation {
        devices: Vec::new(),
        container: cid(container),
        attempt: AttemptId(format!("a-{container}")),
        resources: Resources::new(cpu, mem, 0),
        payload: Payload {
            image: None,
            command: vec!["echo".into(), container.into()],
            env: Default::default(),
            secret_env: Default::default(),
        },
    }
}

fn group(worker: &str, reservations: Vec<Reservation>) -> CommitGroup {
    CommitGroup {
        worker: wid(worker),
        reservations,
    }
}

fn request(id: &str, cpu: u64) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: cid(id),
        tenant: "t".into(),
        resources: Resources::new(cpu, 256, 0),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

async fn free(store: &dyn Store, worker: &str) -> Resources {
    store.worker(&wid(worker)).await.unwrap().unwrap().free
}

/// A check now that calls a worker dead after ten minutes of silence: cases that are not
/// about liveness never get near it.
pub fn now() -> CheckOptions {
    CheckOptions::at(berth_store::now_ms(), Duration::from_secs(600))
}

pub async fn assert_clean(store: &dyn Store) {
    let violations = store.check(now()).await.unwrap();
    assert!(violations.is_empty(), "violations: {violations:?}");
}

fn committed(outcome: &CommitOutcome) -> bool {
    matches!(outcome, CommitOutcome::Committed { .. })
}

// ----- workers -----

pub async fn register_upserts_and_keeps_reservations(connect: impl Connect) {
    let store = open(&connect, "register").await;
    let first = store
        .register_worker(&registration("w1", 4000, 8192))
        .await
        .unwrap();
    assert_eq!(first.free, Resources::new(4000, 8192, 0));
    let out = store
        .commit(&[group("w1", vec![reservation("c1", 1000, 1024)])])
        .await
        .unwrap();
    assert!(committed(&out[0]));
    let grown = store
        .register_worker(&registration("w1", 8000, 16384))
        .await
        .unwrap();
    assert_eq!(grown.total, Resources::new(8000, 16384, 0));
    assert_eq!(
        grown.free,
        Resources::new(7000, 15360, 0),
        "reservations survive"
    );
    assert!(grown.version > first.version);
    let again = store
        .register_worker(&registration("w1", 8000, 16384))
        .await
        .unwrap();
    assert_eq!(again.free, grown.free, "re-registering is idempotent");
    let shrink = store.register_worker(&registration("w1", 500, 16384)).await;
    assert!(
        matches!(shrink, Err(StoreError::BelowReserved { .. })),
        "{shrink:?}"
    );
    assert_eq!(free(&*store, "w1").await, Resources::new(7000, 15360, 0));
    assert_clean(&*store).await;
}

pub async fn unknown_workers_are_reported(connect: impl Connect) {
    let store = open(&connect, "unknown").await;
    assert!(store.worker(&wid("ghost")).await.unwrap().is_none());
    let heartbeat = store.heartbeat(&wid("ghost"), None, 1).await;
    assert!(
        matches!(heartbeat, Err(StoreError::UnknownWorker(_))),
        "{heartbeat:?}"
    );
    let status = store
        .set_worker_status(&wid("ghost"), WorkerStatus::Draining)
        .await;
    assert!(
        matches!(status, Err(StoreError::UnknownWorker(_))),
        "{status:?}"
    );
    let out = store
        .commit(&[group("ghost", vec![reservation("c1", 1, 1)])])
        .await
        .unwrap();
    assert_eq!(
        out[0],
        CommitOutcome::Rejected {
            rejection: Rejection::UnknownWorker,
            worker: None
        }
    );
    register(&*store, "w1", 1000, 1000).await;
    store.heartbeat(&wid("w1"), None, 5).await.unwrap();
}

pub async fn snapshot_lists_every_worker(connect: impl Connect) {
    let store = open(&connect, "snapshot").await;
    for i in 0..12 {
        store
            .register_worker(&registration(&format!("w{i}"), 1000 + i, 2048))
            .await
            .unwrap();
    }
    let mut workers = store.workers().await.unwrap();
    workers.sort_by_key(|w| w.total.cpu_millicores);
    assert_eq!(workers.len(), 12);
    for (i, worker) in workers.iter().enumerate() {
        assert_eq!(worker.id, wid(&format!("w{i}")));
        assert_eq!(worker.total, Resources::new(1000 + i as u64, 2048, 0));
        assert_eq!(worker.free, worker.total);
        assert_eq!(worker.status, WorkerStatus::Available);
        assert_eq!(worker.pool.pool.as_str(), "default");
    }
}

pub async fn the_runtime_round_trips(connect: impl Connect) {
    let store = open(&connect, "runtime").await;
    let runc = WorkerRegistration {
        runtime: RuntimeName::RUNC,
        ..registration("w1", 1000, 1024)
    };
    let registered = store.register_worker(&runc).await.unwrap();
    assert_eq!(registered.runtime, RuntimeName::RUNC);
    register(&*store, "w2", 1000, 1024).await;
    let read = store.worker(&wid("w1")).await.unwrap().unwrap();
    assert_eq!(read.runtime, RuntimeName::RUNC);
    let mut workers = store.workers().await.unwrap();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let runtimes: Vec<(&str, &str)> = workers
        .iter()
        .map(|w| (w.id.as_str(), w.runtime.as_str()))
        .collect();
    assert_eq!(runtimes, [("w1", "runc"), ("w2", "process")]);
    // Registering again states the runtime anew.
    let again = store
        .register_worker(&WorkerRegistration {
            runtime: RuntimeName::new("gvisor-2").unwrap(),
            ..runc
        })
        .await
        .unwrap();
    assert_eq!(again.runtime.as_str(), "gvisor-2");
    let read = store.worker(&wid("w1")).await.unwrap().unwrap();
    assert_eq!(read.runtime.as_str(), "gvisor-2");
    // A status change keeps it.
    let drained = store
        .set_worker_status(&wid("w1"), WorkerStatus::Draining)
        .await
        .unwrap();
    assert_eq!(drained.runtime.as_str(), "gvisor-2");
    assert_clean(&*store).await;
}

// ----- commits -----

pub async fn commit_is_all_or_nothing(connect: impl Connect) {
    let store = open(&connect, "allornothing").await;
    let before = store
        .register_worker(&registration("w1", 2000, 4096))
        .await
        .unwrap();
    let too_big = group(
        "w1",
        vec![reservation("a", 1000, 1024), reservation("b", 1500, 1024)],
    );
    let out = store.commit(&[too_big]).await.unwrap();
    match &out[0] {
        CommitOutcome::Rejected {
            rejection: Rejection::NoRoom,
            worker: Some(worker),
        } => assert_eq!(
            worker.free, before.free,
            "the rejection carries the current state"
        ),
        other => panic!("expected NoRoom, got {other:?}"),
    }
    assert_eq!(free(&*store, "w1").await, before.free, "nothing reserved");
    let none = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert!(none.is_empty(), "nothing queued: {none:?}");

    let fits = group(
        "w1",
        vec![reservation("a", 1000, 1024), reservation("b", 1000, 1024)],
    );
    let out = store.commit(&[fits]).await.unwrap();
    let CommitOutcome::Committed {
        worker,
        already_owned,
    } = &out[0]
    else {
        panic!("expected a commit, got {:?}", out[0]);
    };
    assert!(already_owned.is_empty());
    assert_eq!(worker.free, Resources::new(0, 2048, 0), "exact fit");
    assert!(worker.version > before.version);
    assert_eq!(free(&*store, "w1").await, worker.free);
    assert_clean(&*store).await;
}

pub async fn commit_checks_status_inside_the_atomic_step(connect: impl Connect) {
    let store = open(&connect, "status").await;
    register(&*store, "w1", 2000, 4096).await;
    for status in [WorkerStatus::Draining, WorkerStatus::Disabled] {
        store.set_worker_status(&wid("w1"), status).await.unwrap();
        let out = store
            .commit(&[group("w1", vec![reservation("a", 1, 1)])])
            .await
            .unwrap();
        assert!(
            matches!(&out[0], CommitOutcome::Rejected { rejection: Rejection::NotAcceptingWork, worker: Some(w) } if w.status == status),
            "{status}: {out:?}"
        );
    }
    store
        .set_worker_status(&wid("w1"), WorkerStatus::Pending)
        .await
        .unwrap();
    let out = store
        .commit(&[group("w1", vec![reservation("a", 1, 1)])])
        .await
        .unwrap();
    assert!(committed(&out[0]), "pending workers take work: {out:?}");
    assert_clean(&*store).await;
}

pub async fn groups_commit_independently(connect: impl Connect) {
    let store = open(&connect, "independent").await;
    register(&*store, "w1", 1000, 1024).await;
    register(&*store, "w2", 1000, 1024).await;
    let groups = [
        group("w1", vec![reservation("a", 2000, 1)]),
        group("w2", vec![reservation("b", 1000, 1)]),
        group("nope", vec![reservation("c", 1, 1)]),
    ];
    let out = store.commit(&groups).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(matches!(
        out[0],
        CommitOutcome::Rejected {
            rejection: Rejection::NoRoom,
            ..
        }
    ));
    assert!(committed(&out[1]));
    assert!(matches!(
        out[2],
        CommitOutcome::Rejected {
            rejection: Rejection::UnknownWorker,
            ..
        }
    ));
    assert_eq!(free(&*store, "w1").await, Resources::new(1000, 1024, 0));
    assert_eq!(free(&*store, "w2").await, Resources::new(0, 1023, 0));
    assert_clean(&*store).await;
}

pub async fn commit_is_idempotent_per_container(connect: impl Connect) {
    let store = open(&connect, "idempotent").await;
    register(&*store, "w1", 4000, 4096).await;
    let g = group(
        "w1",
        vec![reservation("a", 1000, 1024), reservation("b", 1000, 1024)],
    );
    let first = store.commit(std::slice::from_ref(&g)).await.unwrap();
    assert!(committed(&first[0]));
    // The reply was "lost": the caller commits the same thing again.
    let second = store.commit(std::slice::from_ref(&g)).await.unwrap();
    let CommitOutcome::Committed {
        worker,
        already_owned,
    } = &second[0]
    else {
        panic!("a retried commit succeeds: {second:?}");
    };
    assert_eq!(worker.free, Resources::new(2000, 2048, 0), "reserved once");
    let mut owned: Vec<_> = already_owned
        .iter()
        .map(|(c, a)| (c.as_str(), a.0.as_str()))
        .collect();
    owned.sort();
    assert_eq!(owned, vec![("a", "a-a"), ("b", "a-b")]);
    let delivered = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2, "queued once: {delivered:?}");
    assert_clean(&*store).await;
}

pub async fn release_is_idempotent(connect: impl Connect) {
    let store = open(&connect, "release").await;
    register(&*store, "w1", 4000, 4096).await;
    store
        .commit(&[group("w1", vec![reservation("a", 1000, 1024)])])
        .await
        .unwrap();
    let wrong = AttemptId("someone-else".into());
    let stale = store
        .release(&wid("w1"), &cid("a"), Some(&wrong), None)
        .await
        .unwrap();
    assert_eq!(
        stale,
        ReleaseOutcome::NotOwned,
        "another attempt's release changes nothing"
    );
    let right = AttemptId("a-a".into());
    let first = store
        .release(&wid("w1"), &cid("a"), Some(&right), None)
        .await
        .unwrap();
    let ReleaseOutcome::Released { resources, worker } = first else {
        panic!("expected a release, got {first:?}");
    };
    assert_eq!(resources, Resources::new(1000, 1024, 0));
    assert_eq!(worker.free, worker.total);
    let twice = store
        .release(&wid("w1"), &cid("a"), None, None)
        .await
        .unwrap();
    assert_eq!(
        twice,
        ReleaseOutcome::NotOwned,
        "a repeated release credits once"
    );
    let never = store
        .release(&wid("w1"), &cid("zzz"), None, None)
        .await
        .unwrap();
    assert_eq!(never, ReleaseOutcome::NotOwned);
    assert_eq!(free(&*store, "w1").await, Resources::new(4000, 4096, 0));
    assert_clean(&*store).await;
}

pub async fn lock_path_counts_and_fences(connect: impl Connect) {
    let store = open(&connect, "locks").await;
    let locks = store
        .worker_locks()
        .expect("both stores have the lock-based path");
    let worker = store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let before = store.stats().snapshot();
    let ttl = Duration::from_secs(10);
    let lock = locks
        .lock_worker(&wid("w1"), ttl)
        .await
        .unwrap()
        .expect("free lock");
    assert!(
        locks.lock_worker(&wid("w1"), ttl).await.unwrap().is_none(),
        "held"
    );
    let counted = store.stats().snapshot().since(&before);
    assert_eq!((counted.lock_acquisitions, counted.lock_collisions), (1, 1));

    let g = group("w1", vec![reservation("a", 1000, 1024)]);
    let stale = locks
        .commit_locked(&lock, worker.version + 7, &g)
        .await
        .unwrap();
    assert!(
        matches!(
            stale,
            CommitOutcome::Rejected {
                rejection: Rejection::VersionConflict,
                ..
            }
        ),
        "{stale:?}"
    );
    let ok = locks
        .commit_locked(&lock, worker.version, &g)
        .await
        .unwrap();
    assert!(committed(&ok), "{ok:?}");
    assert!(locks.unlock_worker(&lock).await.unwrap());
    assert!(
        !locks.unlock_worker(&lock).await.unwrap(),
        "released only once"
    );
    let now = store.worker(&wid("w1")).await.unwrap().unwrap();
    let lost = locks
        .commit_locked(
            &lock,
            now.version,
            &group("w1", vec![reservation("b", 1, 1)]),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            lost,
            CommitOutcome::Rejected {
                rejection: Rejection::LockLost,
                ..
            }
        ),
        "{lost:?}"
    );
    let short = locks
        .lock_worker(&wid("w1"), Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let next = locks.lock_worker(&wid("w1"), ttl).await.unwrap();
    assert!(next.is_some(), "an expired lock can be taken");
    assert!(
        !locks.unlock_worker(&short).await.unwrap(),
        "the old token no longer unlocks"
    );
    assert_clean(&*store).await;
}

// ----- assignment queues -----

pub async fn assignments_arrive_in_order_and_are_redelivered_until_acked(connect: impl Connect) {
    let store = open(&connect, "queue").await;
    register(&*store, "w1", 4000, 4096).await;
    store
        .commit(&[group(
            "w1",
            vec![reservation("a", 1, 1), reservation("b", 1, 1)],
        )])
        .await
        .unwrap();
    store
        .commit(&[group("w1", vec![reservation("c", 1, 1)])])
        .await
        .unwrap();
    let got = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    let names: Vec<&str> = got.iter().map(|a| a.container.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(got[0].payload.command, ["echo", "a"]);
    assert_eq!(got[0].attempt, AttemptId("a-a".into()));
    assert_eq!(got[0].resources, Resources::new(1, 1, 0));
    let again = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "not redelivered before the timeout: {again:?}"
    );
    store
        .ack_assignment(&wid("w1"), None, &got[0].delivery)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let redelivered = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    let names: Vec<&str> = redelivered.iter().map(|a| a.container.as_str()).collect();
    assert_eq!(names, ["b", "c"], "unacknowledged deliveries come again");
}

pub async fn assignments_wait_without_polling(connect: impl Connect) {
    let store = open(&connect, "wait").await;
    register(&*store, "w1", 4000, 4096).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .assignments(&wid("w1"), None, 10, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = store.stats().snapshot();
    store
        .commit(&[group("w1", vec![reservation("a", 1, 1)])])
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1, "woken by the commit");
    assert_eq!(got[0].container, cid("a"));
    let spent = store.stats().snapshot().since(&before);
    assert!(spent.round_trips <= 4, "no polling loop: {spent:?}");
}

pub async fn a_long_poll_of_a_worker_removed_meanwhile_ends_as_unknown(connect: impl Connect) {
    let store = open(&connect, "poll-removed").await;
    register(&*store, "w1", 4000, 4096).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .assignments(&wid("w1"), Some(1), 10, Duration::from_secs(2))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.deregister_worker(&wid("w1")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(got, Err(StoreError::UnknownWorker(_))),
        "the agent must learn its worker is gone (to register again): {got:?}"
    );
}

// ----- records and intake -----

pub async fn submit_is_idempotent_per_id(connect: impl Connect) {
    let store = open(&connect, "submit").await;
    let out = store
        .submit(&[request("r1", 100), request("r2", 100)])
        .await
        .unwrap();
    assert_eq!(out, vec![SubmitOutcome::Accepted, SubmitOutcome::Accepted]);
    let again = store.submit(&[request("r1", 999)]).await.unwrap();
    assert_eq!(
        again,
        vec![SubmitOutcome::Duplicate(ContainerState::Pending)]
    );
    let record = store.container(&cid("r1")).await.unwrap().unwrap();
    assert_eq!(record.state, ContainerState::Pending);
    assert_eq!(
        record.request.resources.cpu_millicores, 100,
        "the first submit wins"
    );
    let claims = store.claim("e1", 10, Duration::ZERO).await.unwrap();
    assert_eq!(claims.len(), 2, "queued once each: {claims:?}");
    assert!(store.container(&cid("nope")).await.unwrap().is_none());
}

pub async fn records_only_move_forward(connect: impl Connect) {
    let store = open(&connect, "records").await;
    store.submit(&[request("r1", 100)]).await.unwrap();
    let (w1, a1) = (wid("w1"), AttemptId("x1".into()));
    let refused =
        |r: Result<ContainerRecord>| matches!(r, Err(StoreError::InvalidTransition { .. }));
    let id = cid("r1");
    let running = Transition::Running {
        worker: w1.clone(),
        attempt: a1.clone(),
    };
    assert!(
        refused(store.transition(&id, &running).await),
        "not scheduled yet"
    );
    let scheduled = Transition::Scheduled {
        worker: w1.clone(),
        attempt: a1.clone(),
    };
    let record = store.transition(&id, &scheduled).await.unwrap();
    assert_eq!(
        (record.state, record.worker.clone()),
        (ContainerState::Scheduled, Some(w1.clone()))
    );
    assert!(record.scheduled_at_ms.is_some());
    store.transition(&id, &scheduled).await.unwrap();
    let other = Transition::Scheduled {
        worker: wid("w2"),
        attempt: AttemptId("x2".into()),
    };
    assert!(refused(store.transition(&id, &other).await), "one holder");
    let impostor = Transition::Running {
        worker: wid("w2"),
        attempt: a1.clone(),
    };
    assert!(
        refused(store.transition(&id, &impostor).await),
        "only the holder reports"
    );
    store.transition(&id, &running).await.unwrap();
    let exited = Transition::Exited {
        worker: w1.clone(),
        attempt: a1.clone(),
        exit_code: 3,
    };
    let record = store.transition(&id, &exited).await.unwrap();
    assert_eq!(
        (record.state, record.exit_code),
        (ContainerState::Exited, Some(3))
    );
    let fail = Transition::Failed {
        reason: "late".into(),
    };
    assert!(
        refused(store.transition(&id, &fail).await),
        "terminal states stay"
    );
    let unknown = store.transition(&cid("ghost"), &fail).await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownContainer(_))),
        "{unknown:?}"
    );
}

pub async fn claim_settle_and_backlog(connect: impl Connect) {
    let store = open(&connect, "claims").await;
    register(&*store, "w1", 4000, 4096).await;
    store
        .submit(&[request("r1", 100), request("r2", 100), request("r3", 100)])
        .await
        .unwrap();
    assert_eq!(store.intake_len().await.unwrap(), 3);
    let claims = store.claim("e1", 10, Duration::ZERO).await.unwrap();
    let ids: Vec<&str> = claims.iter().map(|c| c.request.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3"], "in submit order");
    assert_eq!(store.intake_len().await.unwrap(), 3, "claimed, not settled");
    assert_ne!(claims[0].attempt, claims[1].attempt);
    assert!(
        store
            .claim("e2", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "claimed"
    );

    let c1 = &claims[0];
    let res = Reservation {
        devices: Vec::new(),
        container: c1.request.id.clone(),
        attempt: c1.attempt.clone(),
        resources: c1.request.resources,
        payload: c1.request.payload.clone(),
    };
    store.commit(&[group("w1", vec![res])]).await.unwrap();
    let items = [
        scheduled_on(c1, "w1"),
        SettleItem {
            entry: claims[1].entry.clone(),
            container: claims[1].request.id.clone(),
            settlement: Settlement::Deferred {
                not_before_ms: 1_000,
                reason: "no room".into(),
                pool: Some(PoolName::new("default").unwrap()),
                gpu_type: None,
            },
        },
        SettleItem {
            entry: claims[2].entry.clone(),
            container: claims[2].request.id.clone(),
            settlement: Settlement::Failed {
                reason: "never fits".into(),
            },
        },
    ];
    let out = store.settle(&items).await.unwrap();
    assert_eq!(out, vec![SettleOutcome::Done; 3]);
    assert_eq!(store.intake_len().await.unwrap(), 0, "settled");
    let r1 = store.container(&cid("r1")).await.unwrap().unwrap();
    assert_eq!(
        (r1.state, r1.attempt.clone()),
        (ContainerState::Scheduled, Some(c1.attempt.clone()))
    );
    let r2 = store.container(&cid("r2")).await.unwrap().unwrap();
    assert_eq!(
        (r2.state, r2.deferrals, r2.reason.as_deref()),
        (ContainerState::Pending, 1, Some("no room"))
    );
    let r3 = store.container(&cid("r3")).await.unwrap().unwrap();
    assert_eq!(
        (r3.state, r3.reason.as_deref()),
        (ContainerState::Failed, Some("never fits"))
    );
    assert_eq!(store.backlog_len().await.unwrap(), 1);

    assert_eq!(store.promote_due(999, 10).await.unwrap(), 0, "not due yet");
    assert_eq!(store.promote_due(1_000, 10).await.unwrap(), 1);
    assert_eq!(store.backlog_len().await.unwrap(), 0);
    let retry = store.claim("e1", 10, Duration::ZERO).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].request.id, cid("r2"));
    assert_ne!(retry[0].attempt, claims[1].attempt, "a new attempt");
    assert_clean(&*store).await;
}

pub async fn unsettled_claims_are_reclaimed_after_the_visibility_timeout(connect: impl Connect) {
    let store = open(&connect, "visibility").await;
    store
        .submit(&[request("r1", 100), request("r2", 100)])
        .await
        .unwrap();
    let first = store
        .claim("dead-replica", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    // r2 ends while its claimer is gone; only r1 is worth reclaiming.
    store
        .transition(
            &cid("r2"),
            &Transition::Failed {
                reason: "cancelled".into(),
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let taken = store.claim("survivor", 10, Duration::ZERO).await.unwrap();
    let ids: Vec<&str> = taken.iter().map(|c| c.request.id.as_str()).collect();
    assert_eq!(ids, ["r1"]);
    assert_ne!(taken[0].attempt, first[0].attempt);
}

/// A busy claimer does not look for stale claims on every call, but it still takes one
/// over: a request claimed by a replica that died is claimed by a replica that keeps
/// claiming (every 20 ms, finding nothing new), after the visibility timeout and not
/// before. Waits at most 20 s, far beyond the timeout; only a claimer that stopped looking
/// runs into it.
pub async fn a_stale_claim_is_taken_over_while_claims_go_on(connect: impl Connect) {
    let store = open(&connect, "takeover").await;
    store.submit(&[request("r1", 100)]).await.unwrap();
    let claimed_at = std::time::Instant::now();
    let dead = store
        .claim("dead-replica", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let visibility = config("takeover").claim_visibility;
    let taken = loop {
        let taken = store.claim("busy", 10, Duration::ZERO).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        assert!(
            claimed_at.elapsed() < Duration::from_secs(20),
            "the stale claim was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        claimed_at.elapsed() >= visibility,
        "taken over before the timeout"
    );
    let ids: Vec<&str> = taken.iter().map(|c| c.request.id.as_str()).collect();
    assert_eq!(ids, ["r1"]);
    assert!(taken[0].redelivered);
}

pub async fn a_second_placement_is_superseded(connect: impl Connect) {
    let store = open(&connect, "supersede").await;
    register(&*store, "w1", 4000, 4096).await;
    register(&*store, "w2", 4000, 4096).await;
    store.submit(&[request("r1", 100)]).await.unwrap();
    let slow = store
        .claim("slow", 1, Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let fast = store
        .claim("fast", 1, Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    for (claim, worker) in [(&fast, "w2"), (&slow, "w1")] {
        let res = reservation_for(claim);
        store.commit(&[group(worker, vec![res])]).await.unwrap();
    }
    let won = store.settle(&[scheduled_on(&fast, "w2")]).await.unwrap();
    assert_eq!(won, vec![SettleOutcome::Done]);
    let lost = store.settle(&[scheduled_on(&slow, "w1")]).await.unwrap();
    assert_eq!(
        lost,
        vec![SettleOutcome::Superseded {
            state: ContainerState::Scheduled,
            holder: Some((wid("w2"), fast.attempt.clone()))
        }]
    );
    // The loser undoes its own reservation; the winner's stays.
    store
        .release(&wid("w1"), &cid("r1"), Some(&slow.attempt), None)
        .await
        .unwrap();
    assert_eq!(free(&*store, "w1").await, Resources::new(4000, 4096, 0));
    assert_eq!(free(&*store, "w2").await, Resources::new(3900, 3840, 0));
    assert_clean(&*store).await;
}

// ----- concurrency -----

/// Many tasks commit competing groups onto the same few workers and release some of what
/// they took; at the end nothing is overbooked and the invariant check is clean.
async fn hammer(stores: Vec<Arc<dyn Store>>, tasks: usize, rounds: usize) {
    let workers = ["h0", "h1", "h2"];
    for w in workers {
        stores[0]
            .register_worker(&registration(w, 10_000, 10_000))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = stores[task % stores.len()].clone();
        handles.push(tokio::spawn(async move {
            let mut held = 0u64;
            for round in 0..rounds {
                let worker = workers[(task + round) % workers.len()];
                let name = format!("t{task}-r{round}");
                let size = 300 + ((task * 7 + round * 13) % 900) as u64;
                let g = group(
                    worker,
                    vec![
                        reservation(&format!("{name}-a"), size, size),
                        reservation(&format!("{name}-b"), size, 1),
                    ],
                );
                let out = store.commit(&[g]).await.unwrap();
                if committed(&out[0]) && round % 3 == 0 {
                    let id = cid(&format!("{name}-a"));
                    let released = store.release(&wid(worker), &id, None, None).await.unwrap();
                    assert!(matches!(released, ReleaseOutcome::Released { .. }));
                } else if committed(&out[0]) {
                    held += 1;
                }
                if let Some(w) = out[0].worker() {
                    assert!(w.free.fits_in(&w.total), "free above total: {w:?}");
                }
            }
            held
        }));
    }
    let mut committed_groups = 0;
    for handle in handles {
        committed_groups += handle.await.unwrap();
    }
    assert!(committed_groups > 0, "some commits must succeed");
    let violations = stores[0].check(now()).await.unwrap();
    assert!(violations.is_empty(), "violations: {violations:?}");
    for w in workers {
        let worker = stores[0].worker(&wid(w)).await.unwrap().unwrap();
        assert!(worker.free.fits_in(&worker.total));
    }
}

pub async fn concurrent_commits_never_overbook(connect: impl Connect) {
    let store = open(&connect, "hammer").await;
    hammer(vec![store], 16, 250).await;
}

pub async fn two_clients_never_overbook(connect: impl Connect) {
    let cfg = config("two-clients");
    let first = connect(cfg.clone()).await;
    let second = connect(cfg).await;
    hammer(vec![first, second], 16, 150).await;
}

pub async fn check_finds_nothing_on_a_healthy_store(connect: impl Connect) {
    let store = open(&connect, "healthy").await;
    assert_clean(&*store).await;
    register(&*store, "w1", 4000, 4096).await;
    store.submit(&[request("r1", 100)]).await.unwrap();
    let claim = store.claim("e", 1, Duration::ZERO).await.unwrap().remove(0);
    let res = reservation_for(&claim);
    store.commit(&[group("w1", vec![res])]).await.unwrap();
    let item = scheduled_on(&claim, "w1");
    store.settle(&[item]).await.unwrap();
    let (w1, a) = (wid("w1"), claim.attempt.clone());
    store
        .transition(
            &cid("r1"),
            &Transition::Running {
                worker: w1.clone(),
                attempt: a.clone(),
            },
        )
        .await
        .unwrap();
    assert_clean(&*store).await;
    store
        .transition(
            &cid("r1"),
            &Transition::Exited {
                worker: w1.clone(),
                attempt: a.clone(),
                exit_code: 0,
            },
        )
        .await
        .unwrap();
    let leak = store.check(now()).await.unwrap();
    assert_eq!(
        leak.len(),
        1,
        "an exited container still owned is a leak: {leak:?}"
    );
    assert!(leak[0].detail.contains("leaked"), "{leak:?}");
    store
        .release(&w1, &cid("r1"), Some(&a), None)
        .await
        .unwrap();
    assert_clean(&*store).await;
}

/// The check reads a large fleet in parts (the Redis store a few hundred workers per round
/// trip): a leak on the worker read last, behind 450 healthy ones, is still found.
pub async fn check_reads_every_worker_of_a_large_fleet(connect: impl Connect) {
    let store = open(&connect, "large-fleet").await;
    let fleet = (0..450).map(|i| registration(&format!("w{i:03}"), 4000, 4096));
    let registrations: Vec<_> = fleet.collect();
    futures::future::try_join_all(registrations.iter().map(|r| store.register_worker(r)))
        .await
        .unwrap();
    register(&*store, "zz-last", 4000, 4096).await;
    store.submit(&[request("r1", 100)]).await.unwrap();
    let claim = store.claim("e", 1, Duration::ZERO).await.unwrap().remove(0);
    let out = store
        .commit(&[group("zz-last", vec![reservation_for(&claim)])])
        .await
        .unwrap();
    assert!(committed(&out[0]));
    store
        .settle(&[scheduled_on(&claim, "zz-last")])
        .await
        .unwrap();
    assert_clean(&*store).await;
    let (last, attempt) = (wid("zz-last"), claim.attempt.clone());
    for transition in [
        Transition::Running {
            worker: last.clone(),
            attempt: attempt.clone(),
        },
        Transition::Exited {
            worker: last.clone(),
            attempt,
            exit_code: 0,
        },
    ] {
        store.transition(&cid("r1"), &transition).await.unwrap();
    }
    let leak = store.check(now()).await.unwrap();
    assert_eq!(leak.len(), 1, "{leak:?}");
    assert!(leak[0].detail.contains("leaked"), "{leak:?}");
    assert!(leak[0].detail.contains("zz-last"), "{leak:?}");
}

pub async fn a_retried_commit_succeeds_after_the_worker_drained(connect: impl Connect) {
    let store = open(&connect, "retry-drained").await;
    register(&*store, "w1", 4000, 4096).await;
    let g = group("w1", vec![reservation("a", 1000, 1024)]);
    store.commit(std::slice::from_ref(&g)).await.unwrap();
    let drained = store
        .set_worker_status(&wid("w1"), WorkerStatus::Draining)
        .await
        .unwrap();
    let retry = store.commit(std::slice::from_ref(&g)).await.unwrap();
    let CommitOutcome::Committed {
        worker,
        already_owned,
    } = &retry[0]
    else {
        panic!("a retry of a commit that happened is a success: {retry:?}");
    };
    assert_eq!(already_owned.len(), 1);
    assert_eq!(worker.version, drained.version, "a no-op writes nothing");
    let mixed = group(
        "w1",
        vec![reservation("a", 1000, 1024), reservation("b", 1, 1)],
    );
    let out = store.commit(&[mixed]).await.unwrap();
    assert!(
        matches!(
            out[0],
            CommitOutcome::Rejected {
                rejection: Rejection::NotAcceptingWork,
                ..
            }
        ),
        "new work is still refused: {out:?}"
    );
    assert_clean(&*store).await;
}

pub async fn invalid_requests_write_nothing(connect: impl Connect) {
    let store = open(&connect, "invalid").await;
    let mut zero = request("zero", 100);
    zero.resources.memory_mib = 0;
    let refused = store.submit(&[request("ok", 100), zero]).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(
        store.container(&cid("ok")).await.unwrap().is_none(),
        "nothing written"
    );
    let bad_entry = SettleItem {
        entry: "not-an-entry".into(),
        container: cid("ok"),
        settlement: Settlement::Failed { reason: "x".into() },
    };
    let refused = store.settle(&[bad_entry]).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidArgument(_))),
        "{refused:?}"
    );
}

pub async fn owners_lists_every_holder(connect: impl Connect) {
    let store = open(&connect, "owners").await;
    register(&*store, "w1", 4000, 4096).await;
    register(&*store, "w2", 4000, 4096).await;
    assert!(store.owners(&cid("a")).await.unwrap().is_empty());
    let mut second = reservation("a", 1, 1);
    second.attempt = AttemptId("other".into());
    store
        .commit(&[
            group("w1", vec![reservation("a", 1, 1)]),
            group("w2", vec![second]),
        ])
        .await
        .unwrap();
    let mut owners = store.owners(&cid("a")).await.unwrap();
    owners.sort();
    assert_eq!(
        owners,
        vec![
            (wid("w1"), AttemptId("a-a".into())),
            (wid("w2"), AttemptId("other".into()))
        ]
    );
}

pub async fn unmet_demand_sums_the_backlog_per_pool(connect: impl Connect) {
    let store = open(&connect, "demand").await;
    assert!(store.unmet_demand().await.unwrap().is_empty());
    let mut gpu = request("g1", 500);
    gpu.resources.gpu_count = 2;
    store
        .submit(&[
            request("r1", 100),
            request("r2", 300),
            gpu,
            request("r3", 7),
        ])
        .await
        .unwrap();
    let claims = store.claim("e", 10, Duration::ZERO).await.unwrap();
    let (cpu_pool, gpu_pool) = (PoolName::new("cpu").unwrap(), PoolName::new("gpu").unwrap());
    let items: Vec<SettleItem> = claims
        .iter()
        .map(|c| {
            let (pool, gpu_type) = match c.request.id.as_str() {
                "g1" => (Some(gpu_pool.clone()), Some(GpuType::H100)),
                "r3" => (None, None),
                _ => (Some(cpu_pool.clone()), None),
            };
            SettleItem {
                entry: c.entry.clone(),
                container: c.request.id.clone(),
                settlement: Settlement::Deferred {
                    not_before_ms: 5_000,
                    reason: "no room".into(),
                    pool,
                    gpu_type,
                },
            }
        })
        .collect();
    store.settle(&items).await.unwrap();
    let demand = store.unmet_demand().await.unwrap();
    let by_pool = |name: Option<&PoolName>| {
        demand
            .iter()
            .find(|d| d.pool.as_ref() == name)
            .cloned()
            .unwrap()
    };
    let cpu = by_pool(Some(&cpu_pool));
    assert_eq!(
        (cpu.requests, cpu.resources),
        (2, Resources::new(400, 512, 0))
    );
    let gpus = by_pool(Some(&gpu_pool));
    assert_eq!(gpus.gpus_by_type.get("H100"), Some(&2));
    assert_eq!(by_pool(None).requests, 1);
    assert_eq!(demand.len(), 3);
    // Once due again and placed elsewhere, a request no longer counts.
    store.promote_due(5_000, 10).await.unwrap();
    assert!(
        store.unmet_demand().await.unwrap().is_empty(),
        "promoted requests are being retried"
    );
}

pub async fn one_provisioning_intent_per_pool_and_ttl(connect: impl Connect) {
    let cfg = config("provision");
    let (a, b) = (connect(cfg.clone()).await, connect(cfg).await);
    let pool = PoolName::new("gpu").unwrap();
    let ttl = Duration::from_millis(300);
    assert!(
        a.claim_provisioning(&pool, "a: 2 workers", ttl)
            .await
            .unwrap()
    );
    assert!(
        !b.claim_provisioning(&pool, "b: 2 workers", ttl)
            .await
            .unwrap(),
        "one replica provisions"
    );
    let other = PoolName::new("cpu").unwrap();
    assert!(
        b.claim_provisioning(&other, "b: 1 worker", ttl)
            .await
            .unwrap(),
        "pools are independent"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        b.claim_provisioning(&pool, "b: 2 workers", ttl)
            .await
            .unwrap(),
        "the intent expires"
    );
}

/// Submits, claims, commits on `worker` and settles one request: returns its attempt.
async fn place(store: &dyn Store, id: &str, worker: &str) -> AttemptId {
    store.submit(&[request(id, 100)]).await.unwrap();
    let claim = store
        .claim("e", 100, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.request.id.as_str() == id)
        .unwrap();
    let res = reservation_for(&claim);
    let out = store.commit(&[group(worker, vec![res])]).await.unwrap();
    assert!(committed(&out[0]), "{out:?}");
    let item = scheduled_on(&claim, worker);
    assert_eq!(
        store.settle(&[item]).await.unwrap(),
        vec![SettleOutcome::Done]
    );
    claim.attempt
}

pub async fn heartbeats_and_deregistration(connect: impl Connect) {
    let store = open(&connect, "liveness").await;
    register(&*store, "w1", 4000, 4096).await;
    register(&*store, "w2", 4000, 4096).await;
    store.heartbeat(&wid("w1"), None, 42).await.unwrap();
    let mut beats = store.heartbeats().await.unwrap();
    beats.sort();
    assert_eq!(beats[0], (wid("w1"), 42));
    assert_eq!(beats.len(), 2);
    assert_eq!(store.heartbeat_of(&wid("w1")).await.unwrap(), Some(42));
    assert_eq!(store.heartbeat_of(&wid("ghost")).await.unwrap(), None);
    let attempt = place(&*store, "r1", "w2").await;
    let busy = store.deregister_worker(&wid("w2")).await;
    assert!(
        matches!(busy, Err(StoreError::StillOwns { count: 1, .. })),
        "{busy:?}"
    );
    store
        .release(&wid("w2"), &cid("r1"), Some(&attempt), None)
        .await
        .unwrap();
    store.deregister_worker(&wid("w2")).await.unwrap();
    store.deregister_worker(&wid("w2")).await.unwrap();
    assert!(store.worker(&wid("w2")).await.unwrap().is_none());
    assert_eq!(store.workers().await.unwrap().len(), 1);
    assert_eq!(store.heartbeat_of(&wid("w2")).await.unwrap(), None);
    let (workers, quarantined) = store.fleet().await.unwrap();
    assert_eq!((workers.len(), quarantined.len()), (1, 0));
}

/// A heartbeat may carry the images a worker holds: stored under its lease in the same
/// fenced step, kept by plain heartbeats and bookings, cleared by a new registration;
/// a stale epoch or a bad list writes nothing.
pub async fn workers_report_the_images_they_hold(connect: impl Connect) {
    let store = open(&connect, "images").await;
    register(&*store, "w1", 4000, 4096).await;
    let images = |list: &[&str]| list.iter().map(|i| (*i).to_owned()).collect::<Vec<_>>();
    let held = |store: Arc<dyn Store>| async move {
        store.worker(&wid("w1")).await.unwrap().unwrap().images
    };
    let two = images(&["registry.local:5000/app:v1", "busybox@sha256:abc"]);
    store
        .heartbeat_with_images(&wid("w1"), Some(1), 10, &two)
        .await
        .unwrap();
    assert_eq!(held(store.clone()).await, two);
    assert_eq!(store.heartbeat_of(&wid("w1")).await.unwrap(), Some(10));
    assert_eq!(store.workers().await.unwrap()[0].images, two);
    let stale = store
        .heartbeat_with_images(&wid("w1"), Some(7), 11, &images(&["other"]))
        .await;
    assert!(
        matches!(stale, Err(StoreError::StaleEpoch { .. })),
        "{stale:?}"
    );
    let too_many: Vec<String> = (0..=MAX_WORKER_IMAGES).map(|i| format!("i{i}")).collect();
    for bad in [too_many, images(&["a b"]), images(&[""])] {
        let refused = store
            .heartbeat_with_images(&wid("w1"), Some(1), 12, &bad)
            .await;
        assert!(
            matches!(refused, Err(StoreError::InvalidArgument(_))),
            "{refused:?}"
        );
    }
    store.heartbeat(&wid("w1"), Some(1), 13).await.unwrap();
    place(&*store, "r1", "w1").await;
    assert_eq!(
        held(store.clone()).await,
        two,
        "kept by heartbeats and bookings"
    );
    assert_eq!(store.heartbeat_of(&wid("w1")).await.unwrap(), Some(13));
    register(&*store, "w1", 4000, 4096).await;
    assert!(
        held(store.clone()).await.is_empty(),
        "a new lease starts without"
    );
    store
        .heartbeat_with_images(&wid("w1"), Some(2), 14, &two)
        .await
        .unwrap();
    store
        .heartbeat_with_images(&wid("w1"), Some(2), 15, &[])
        .await
        .unwrap();
    assert!(held(store).await.is_empty(), "an empty report clears them");
}

pub async fn listing_and_logs(connect: impl Connect) {
    let store = open(&connect, "listing").await;
    register(&*store, "w1", 4000, 4096).await;
    let mut newer = request("new", 100);
    newer.submitted_at_ms = 50;
    store.submit(&[request("old", 100), newer]).await.unwrap();
    place(&*store, "placed", "w1").await;
    let all = store.containers(None, 10).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.request.id.as_str()).collect();
    assert_eq!(ids[0], "new", "newest first: {ids:?}");
    assert_eq!(all.len(), 3);
    let scheduled = store
        .containers(Some(ContainerState::Scheduled), 10)
        .await
        .unwrap();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(store.containers(None, 1).await.unwrap().len(), 1);

    let none = store.logs(&cid("placed"), 0).await.unwrap();
    assert_eq!(none, LogSlice::default());
    assert_eq!(store.logs(&cid("placed"), 7).await.unwrap().next(), 0);
    let lines: Vec<String> = (0..8).map(|i| format!("line {i}")).collect();
    store
        .append_logs(&cid("placed"), &lines[..5], 6)
        .await
        .unwrap();
    let early = store.logs(&cid("placed"), 3).await.unwrap();
    assert_eq!((early.first, early.next()), (3, 5));
    assert_eq!(
        early.lines,
        lines[3..5].to_vec(),
        "only the lines after the point"
    );
    store
        .append_logs(&cid("placed"), &lines[5..], 6)
        .await
        .unwrap();
    let kept = store.logs(&cid("placed"), 0).await.unwrap();
    assert_eq!(kept.lines, lines[2..].to_vec(), "the last lines are kept");
    assert_eq!((kept.first, kept.next(), kept.dropped(0)), (2, 8, 2));
    let after = store.logs(&cid("placed"), early.next()).await.unwrap();
    assert_eq!(
        after.lines,
        lines[5..].to_vec(),
        "from where the reader stopped"
    );
    let behind = store.logs(&cid("placed"), 1).await.unwrap();
    assert_eq!(
        (behind.first, behind.dropped(1)),
        (2, 1),
        "a reader that fell behind is told"
    );
    let past = store.logs(&cid("placed"), 99).await.unwrap();
    assert!(past.lines.is_empty());
    assert_eq!(past.next(), 8, "past the end: nothing, and the end");
    let all_read = store.logs(&cid("placed"), 8).await.unwrap();
    assert_eq!((all_read.first, all_read.lines.len()), (8, 0));
    // A very long report: kept in the last lines, counted in full.
    let many: Vec<String> = (0..2500).map(|i| format!("many {i}")).collect();
    store.append_logs(&cid("placed"), &many, 6).await.unwrap();
    let tail = store.logs(&cid("placed"), 8).await.unwrap();
    assert_eq!(tail.lines, many[2494..].to_vec());
    assert_eq!((tail.first, tail.next()), (2502, 2508));
}

pub async fn cancellation_fails_pending_and_flags_placed(connect: impl Connect) {
    let store = open(&connect, "cancel").await;
    register(&*store, "w1", 4000, 4096).await;
    store.submit(&[request("waiting", 100)]).await.unwrap();
    let cancelled = store.cancel(&cid("waiting")).await.unwrap();
    assert_eq!(
        (cancelled.state, cancelled.reason.as_deref()),
        (ContainerState::Failed, Some("cancelled"))
    );
    assert!(
        store
            .claim("e", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "no longer placed"
    );
    place(&*store, "placed", "w1").await;
    let flagged = store.cancel(&cid("placed")).await.unwrap();
    assert_eq!(
        (flagged.state, flagged.cancel_requested),
        (ContainerState::Scheduled, true)
    );
    let asked = store
        .cancel_requested(&[cid("placed"), cid("waiting"), cid("ghost")])
        .await
        .unwrap();
    assert_eq!(asked, vec![cid("placed")]);
    let unknown = store.cancel(&cid("ghost")).await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownContainer(_))),
        "{unknown:?}"
    );
}

pub async fn a_pulling_container_is_cancelled_and_given_back_like_a_scheduled_one(
    connect: impl Connect,
) {
    let store = open(&connect, "pulling").await;
    register(&*store, "w1", 4000, 4096).await;
    let w1 = wid("w1");
    for (id, preempt) in [("lost", false), ("preempted", true)] {
        let attempt = place(&*store, id, "w1").await;
        let pulling = Transition::Pulling {
            worker: w1.clone(),
            attempt: attempt.clone(),
        };
        let record = store.transition(&cid(id), &pulling).await.unwrap();
        assert_eq!(record.state, ContainerState::Pulling);
        let flagged = store.cancel(&cid(id)).await.unwrap();
        assert_eq!(
            (flagged.state, flagged.cancel_requested),
            (ContainerState::Pulling, true),
            "its worker is told to stop"
        );
        let outcome = if preempt {
            store.preempted(&w1, &cid(id), &attempt, "room").await
        } else {
            store.reclaim(&w1, &cid(id), &attempt, "worker gone").await
        };
        assert_eq!(outcome.unwrap(), ReclaimOutcome::Requeued, "{id}");
        let record = store.container(&cid(id)).await.unwrap().unwrap();
        assert_eq!(
            (record.state, record.retries, record.worker),
            (ContainerState::Pending, 0, None),
            "{id}: it never started, so no retry is counted"
        );
        assert_eq!(
            record.preempted_at_ms.is_some(),
            preempt,
            "{id}: a preempted pull may not preempt others at once"
        );
        let late = Transition::Running {
            worker: w1.clone(),
            attempt,
        };
        assert!(
            store.transition(&cid(id), &late).await.is_err(),
            "{id}: the old attempt is revoked"
        );
    }
}

pub async fn a_dead_workers_containers_are_reclaimed_once(connect: impl Connect) {
    let store = open(&connect, "reclaim").await;
    register(&*store, "w1", 4000, 4096).await;
    let unstarted = place(&*store, "unstarted", "w1").await;
    let running = place(&*store, "running", "w1").await;
    let w1 = wid("w1");
    store
        .transition(
            &cid("running"),
            &Transition::Running {
                worker: w1.clone(),
                attempt: running.clone(),
            },
        )
        .await
        .unwrap();
    let mut owned: Vec<String> = store
        .owned(&w1)
        .await
        .unwrap()
        .iter()
        .map(|o| o.container.to_string())
        .collect();
    owned.sort();
    assert_eq!(owned, ["running", "unstarted"]);
    store
        .set_worker_status(&w1, WorkerStatus::Lost)
        .await
        .unwrap();
    let why = "worker w1 missed its heartbeats";
    let first = store
        .reclaim(&w1, &cid("unstarted"), &unstarted, why)
        .await
        .unwrap();
    assert_eq!(first, ReclaimOutcome::Requeued);
    let second = store
        .reclaim(&w1, &cid("running"), &running, why)
        .await
        .unwrap();
    assert_eq!(second, ReclaimOutcome::Lost);
    for (id, attempt) in [("unstarted", &unstarted), ("running", &running)] {
        let again = store.reclaim(&w1, &cid(id), attempt, why).await.unwrap();
        assert_eq!(again, ReclaimOutcome::Released, "a repeat changes nothing");
    }
    assert_eq!(
        free(&*store, "w1").await,
        Resources::new(4000, 4096, 0),
        "reclaimed exactly once"
    );
    let requeued = store.container(&cid("unstarted")).await.unwrap().unwrap();
    assert_eq!(
        (requeued.state, requeued.worker.clone()),
        (ContainerState::Pending, None)
    );
    let lost = store.container(&cid("running")).await.unwrap().unwrap();
    assert_eq!(
        (lost.state, lost.reason.as_deref()),
        (ContainerState::Lost, Some(why))
    );
    let retry = store.claim("e2", 10, Duration::ZERO).await.unwrap();
    let ids: Vec<&str> = retry.iter().map(|c| c.request.id.as_str()).collect();
    assert_eq!(ids, ["unstarted"], "the unstarted one is placed again");
    assert_clean(&*store).await;
}

pub async fn another_attempt_is_not_a_retry(connect: impl Connect) {
    let store = open(&connect, "other-attempt").await;
    register(&*store, "w1", 4000, 4096).await;
    store
        .commit(&[group("w1", vec![reservation("a", 1000, 1024)])])
        .await
        .unwrap();
    let before = store.worker(&wid("w1")).await.unwrap().unwrap();
    let mut other = reservation("a", 1000, 1024);
    other.attempt = AttemptId("newer".into());
    let out = store
        .commit(&[group("w1", vec![other, reservation("b", 1, 1)])])
        .await
        .unwrap();
    assert!(
        matches!(
            out[0],
            CommitOutcome::Rejected {
                rejection: Rejection::OwnedByAnotherAttempt,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        store.worker(&wid("w1")).await.unwrap().unwrap(),
        before,
        "nothing written"
    );
    assert_clean(&*store).await;
}

pub async fn a_reservation_given_back_before_its_settlement_never_schedules(connect: impl Connect) {
    let store = open(&connect, "revoke").await;
    register(&*store, "w1", 4000, 4096).await;
    store.submit(&[request("r1", 100)]).await.unwrap();
    let claim = store.claim("e", 1, Duration::ZERO).await.unwrap().remove(0);
    let res = reservation_for(&claim);
    store.commit(&[group("w1", vec![res])]).await.unwrap();
    // The worker is declared lost between the commit and the settlement.
    let w1 = wid("w1");
    let out = store
        .reclaim(&w1, &cid("r1"), &claim.attempt, "lost")
        .await
        .unwrap();
    assert_eq!(out, ReclaimOutcome::Released);
    assert_eq!(free(&*store, "w1").await, Resources::new(4000, 4096, 0));
    let late = scheduled_on(&claim, w1.as_str());
    let settled = store.settle(&[late]).await.unwrap();
    assert!(
        matches!(
            settled[0],
            SettleOutcome::Superseded {
                state: ContainerState::Pending,
                ..
            }
        ),
        "{settled:?}"
    );
    let again = Transition::Scheduled {
        worker: w1.clone(),
        attempt: claim.attempt.clone(),
    };
    assert!(
        store.transition(&cid("r1"), &again).await.is_err(),
        "the revoked attempt stays fenced"
    );
    let record = store.container(&cid("r1")).await.unwrap().unwrap();
    assert_eq!(record.state, ContainerState::Pending);
    assert_eq!(record.revoked_attempts, vec![claim.attempt.clone()]);
    assert_clean(&*store).await;
    let again = store.claim("e", 1, Duration::ZERO).await.unwrap();
    assert_eq!(
        again.iter().map(|c| &c.request.id).collect::<Vec<_>>(),
        vec![&cid("r1")],
        "the request is placed again, not lost"
    );
    assert_ne!(again[0].attempt, claim.attempt);
}

// ----- the invariant check through normal states -----

fn settle_item(claim: &Claim, settlement: Settlement) -> SettleItem {
    SettleItem {
        entry: claim.entry.clone(),
        container: claim.request.id.clone(),
        settlement,
    }
}

pub async fn check_stays_clean_through_a_containers_life(connect: impl Connect) {
    let store = open(&connect, "life").await;
    register(&*store, "w1", 4000, 4096).await;
    assert_clean(&*store).await;
    store
        .submit(&[request("r1", 100), request("r2", 100)])
        .await
        .unwrap();
    assert_clean(&*store).await; // pending, queued in the intake
    let mut claims = store.claim("e", 2, Duration::ZERO).await.unwrap();
    claims.sort_by(|a, b| a.request.id.cmp(&b.request.id));
    assert_eq!(claims.len(), 2);
    let (c1, c2) = (claims[0].clone(), claims[1].clone());
    assert_clean(&*store).await; // claimed, not settled

    let later = now_ms() + 3_600_000;
    let deferred = Settlement::Deferred {
        not_before_ms: later,
        reason: "no room".into(),
        pool: None,
        gpu_type: None,
    };
    let out = store.settle(&[settle_item(&c2, deferred)]).await.unwrap();
    assert_eq!(out, vec![SettleOutcome::Done]);
    assert_eq!(store.backlog_len().await.unwrap(), 1);
    assert_clean(&*store).await; // deferred: in the backlog only

    let out = store
        .commit(&[group("w1", vec![reservation_for(&c1)])])
        .await
        .unwrap();
    assert!(committed(&out[0]));
    assert_clean(&*store).await; // committed, not settled: owned, queued, still pending
    let w1 = wid("w1");
    let out = store.settle(&[scheduled_on(&c1, "w1")]).await.unwrap();
    assert_eq!(out, vec![SettleOutcome::Done]);
    assert_clean(&*store).await; // scheduled, its assignment not delivered yet

    let delivered = store
        .assignments(&w1, None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_clean(&*store).await; // delivered, not acknowledged
    let running = Transition::Running {
        worker: w1.clone(),
        attempt: c1.attempt.clone(),
    };
    store.transition(&cid("r1"), &running).await.unwrap();
    store
        .ack_assignment(&w1, None, &delivered[0].delivery)
        .await
        .unwrap();
    assert_clean(&*store).await; // running, acknowledged

    let exited = Transition::Exited {
        worker: w1.clone(),
        attempt: c1.attempt.clone(),
        exit_code: 0,
    };
    store.transition(&cid("r1"), &exited).await.unwrap();
    let released = store
        .release(&w1, &cid("r1"), Some(&c1.attempt), None)
        .await
        .unwrap();
    assert!(matches!(released, ReleaseOutcome::Released { .. }));
    assert_clean(&*store).await; // exited and released

    assert_eq!(store.promote_due(later, 10).await.unwrap(), 1);
    assert_clean(&*store).await; // promoted back to the intake
    let again = store.claim("e", 2, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].request.id, cid("r2"));
    assert_clean(&*store).await;
}

pub async fn check_judges_owners_by_their_heartbeats(connect: impl Connect) {
    let store = open(&connect, "liveness").await;
    let dead_after = Duration::from_secs(60);
    register(&*store, "w1", 4000, 4096).await;
    // Registering counts as a heartbeat, no later than this.
    let registered = now_ms();
    store.submit(&[request("r1", 100)]).await.unwrap();
    let claim = store.claim("e", 1, Duration::ZERO).await.unwrap().remove(0);
    store
        .commit(&[group("w1", vec![reservation_for(&claim)])])
        .await
        .unwrap();
    store.settle(&[scheduled_on(&claim, "w1")]).await.unwrap();
    let fresh = CheckOptions::at(registered, dead_after);
    let stale = CheckOptions::at(registered + 60_001, dead_after);
    assert_eq!(store.check(fresh).await.unwrap(), Vec::new());

    // Declared lost, not reclaimed yet: the heartbeat decides, not the status.
    store
        .set_worker_status(&wid("w1"), WorkerStatus::Lost)
        .await
        .unwrap();
    assert_eq!(store.check(fresh).await.unwrap(), Vec::new());

    let violations = store.check(stale).await.unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].subject, "r1");
    assert!(
        violations[0]
            .detail
            .starts_with("scheduled on worker w1 (attempt "),
        "{violations:?}"
    );
    assert!(
        violations[0].detail.contains("that worker is dead")
            && violations[0].detail.ends_with("dead after 60000 ms"),
        "{violations:?}"
    );
    assert!(
        store
            .check(CheckOptions::ignoring_heartbeats())
            .await
            .unwrap()
            .is_empty()
    );
}

/// The epoch of a stale-epoch error, or a panic naming what came instead.
fn stale_current<T: std::fmt::Debug>(result: Result<T>) -> u64 {
    match result {
        Err(StoreError::StaleEpoch { current, .. }) => current,
        other => panic!("expected a stale epoch, got {other:?}"),
    }
}

pub async fn an_old_epoch_is_fenced_off(connect: impl Connect) {
    let store = open(&connect, "fencing").await;
    let first = store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let old = first.epoch;
    store.heartbeat(&wid("w1"), Some(old), 10).await.unwrap();
    store
        .commit(&[group("w1", vec![reservation("a", 1000, 1024)])])
        .await
        .unwrap();
    let again = store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    assert_eq!(again.epoch, old + 1, "a registration starts a new epoch");
    let w1 = wid("w1");
    assert_eq!(
        stale_current(store.heartbeat(&w1, Some(old), 20).await),
        old + 1
    );
    let beats = store.heartbeats().await.unwrap();
    assert_eq!(beats[0].1, 10, "a stale heartbeat writes nothing");
    let polled = store.assignments(&w1, Some(old), 10, Duration::ZERO).await;
    assert_eq!(stale_current(polled), old + 1);
    let released = store.release(&w1, &cid("a"), None, Some(old)).await;
    assert_eq!(stale_current(released), old + 1);
    assert_eq!(
        free(&*store, "w1").await,
        Resources::new(3000, 3072, 0),
        "a stale release gives nothing back"
    );
    let delivered = store
        .assignments(&w1, Some(old + 1), 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1, "the current epoch is served");
    let acked = store
        .ack_assignment(&w1, Some(old), &delivered[0].delivery)
        .await;
    assert_eq!(stale_current(acked), old + 1);
    let lost = store
        .set_worker_status(&w1, WorkerStatus::Lost)
        .await
        .unwrap();
    assert_eq!(
        lost.epoch,
        old + 2,
        "declaring a worker lost fences its agent off"
    );
    let beat = store.heartbeat(&w1, Some(old + 1), 30).await;
    assert_eq!(stale_current(beat), old + 2);
    let still = store
        .set_worker_status(&w1, WorkerStatus::Lost)
        .await
        .unwrap();
    assert_eq!(
        still.epoch,
        old + 2,
        "only the move into lost bumps the epoch"
    );
    let released = store
        .release(&w1, &cid("a"), None, Some(old + 2))
        .await
        .unwrap();
    assert!(matches!(released, ReleaseOutcome::Released { .. }));
    assert_clean(&*store).await;
}

pub async fn a_release_drops_the_undelivered_assignment(connect: impl Connect) {
    let store = open(&connect, "release-drops").await;
    register(&*store, "w1", 4000, 4096).await;
    store
        .commit(&[group(
            "w1",
            vec![reservation("a", 1000, 1024), reservation("b", 1000, 1024)],
        )])
        .await
        .unwrap();
    let delivered = store
        .assignments(&wid("w1"), None, 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        delivered[0].container,
        cid("a"),
        "a is delivered, not acknowledged"
    );
    for container in ["a", "b"] {
        let released = store
            .release(&wid("w1"), &cid(container), None, None)
            .await
            .unwrap();
        assert!(matches!(released, ReleaseOutcome::Released { .. }));
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    let left = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "no delivery outlives its reservation: {left:?}"
    );
    assert_clean(&*store).await;
}
