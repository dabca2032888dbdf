//! The worker protocol without HTTP, on the memory store: reports (start, adoption, exit,
//! release once), fencing, heartbeat reconciliation both ways, reaping and admission.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, Payload, Pool, PoolAttributes, PoolName,
    Resources, RuntimeName, UnplacedReason, WorkerId, WorkerStatus,
};
use berth_engine::{Engine, EngineConfig};
use berth_protocol::{Protocol, ProtocolConfig, ProtocolError, Report, ReportKind, Reported};
use berth_store::{
    AttemptId, CheckOptions, CommitGroup, ContainerState, MemoryStore, Reservation, Store,
    SubmitOutcome, Transition, WorkerRegistration,
};
use std::sync::Arc;
use std::time::Duration;

/// A protocol on a memory store, and its engine.
struct Rig {
    store: Arc<dyn Store>,
    protocol: Protocol,
}

/// The one configured pool: `cpu`, 16 cores and 64 GiB per worker.
fn pools() -> Vec<Pool> {
    vec![Pool {
        attributes: PoolAttributes::plain(PoolName::new("cpu").unwrap()),
        gpu_type: None,
        worker_size: Resources::new(16_000, 65_536, 0),
        fallback: Vec::new(),
    }]
}

impl Rig {
    /// With `placing`, the engine places on the protocol's store; otherwise it idles on a
    /// store of its own, and the test plays the scheduler (commits and settles by hand).
    fn new(placing: bool, config: ProtocolConfig) -> Rig {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let engine_store: Arc<dyn Store> = if placing {
            store.clone()
        } else {
            Arc::new(MemoryStore::default())
        };
        let engine = Arc::new(Engine::start(
            engine_store,
            EngineConfig::default(),
            pools(),
        ));
        let protocol = Protocol::new(store.clone(), engine, config);
        Rig { store, protocol }
    }

    fn scheduling_by_hand() -> Rig {
        Rig::new(false, ProtocolConfig::default())
    }

    /// Scheduling by hand, worker `w1` (4 cores) holds `c1` (1 core) under attempt `a1`.
    async fn one_scheduled() -> (Rig, WorkerId) {
        let rig = Rig::scheduling_by_hand();
        let w1 = rig.register("w1", 4000).await;
        rig.place("c1", &w1, "a1", true).await;
        (rig, w1)
    }

    async fn register(&self, id: &str, cpu: u64) -> WorkerId {
        let registered = self
            .protocol
            .register(registration(id, cpu), &[])
            .await
            .unwrap();
        registered.worker.id
    }

    /// Submits `id` and reserves it on `worker` under `attempt`; with `settle`, the record
    /// names them (scheduled), otherwise it stays pending (the replica died before settling).
    async fn place(&self, id: &str, worker: &WorkerId, attempt: &str, settle: bool) {
        self.store.submit(&[request(id, 1000)]).await.unwrap();
        self.reserve(id, worker, attempt).await;
        if settle {
            let scheduled = Transition::Scheduled {
                worker: worker.clone(),
                attempt: AttemptId(attempt.into()),
            };
            self.store.transition(&cid(id), &scheduled).await.unwrap();
        }
    }

    async fn reserve(&self, id: &str, worker: &WorkerId, attempt: &str) {
        let group = CommitGroup {
            worker: worker.clone(),
            reservations: vec![Reservation {
                devices: Vec::new(),
                container: cid(id),
                attempt: AttemptId(attempt.into()),
                resources: Resources::new(1000, 256, 0),
                payload: Payload::default(),
            }],
        };
        self.store.commit(&[group]).await.unwrap();
    }

    async fn free_cpu(&self, worker: &WorkerId) -> u64 {
        let worker = self.store.worker(worker).await.unwrap().unwrap();
        worker.free.cpu_millicores
    }

    async fn assert_clean(&self) {
        let options = CheckOptions::at(self.protocol.now_ms(), Duration::from_secs(3600));
        let violations = self.store.check(options).await.unwrap();
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

fn cid(id: &str) -> ContainerId {
    ContainerId::new(id).unwrap()
}

fn registration(id: &str, cpu: u64) -> WorkerRegistration {
    WorkerRegistration {
        devices: Vec::new(),
        id: WorkerId::new(id).unwrap(),
        pool: PoolAttributes::plain(PoolName::new("cpu").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(cpu, 8192, 0),
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
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

fn report(worker: &WorkerId, attempt: &str, epoch: u64, reported: Reported) -> Report {
    Report {
        worker: worker.clone(),
        attempt: AttemptId(attempt.into()),
        epoch,
        reported,
        logs: vec!["last line".into()],
    }
}

#[tokio::test]
async fn a_report_starts_exits_and_releases_once() {
    let (rig, w1) = Rig::one_scheduled().await;
    assert_eq!(rig.free_cpu(&w1).await, 3000);

    let running = report(&w1, "a1", 1, Reported::Running);
    let record = rig.protocol.report(&cid("c1"), &running).await.unwrap();
    assert_eq!(record.state, ContainerState::Running);

    let exited = report(&w1, "a1", 1, Reported::Exited { exit_code: 3 });
    let record = rig.protocol.report(&cid("c1"), &exited).await.unwrap();
    assert_eq!(record.state, ContainerState::Exited);
    assert_eq!(record.exit_code, Some(3));
    assert_eq!(rig.free_cpu(&w1).await, 4000, "released");
    let logs = rig.store.logs(&cid("c1"), 0).await.unwrap().lines;
    assert!(logs.contains(&"last line".to_owned()), "{logs:?}");

    // Once: a second release (the worker's, or a repeated report) gives nothing more.
    let again = rig.protocol.report(&cid("c1"), &exited).await;
    if let Ok(record) = again {
        assert_eq!(record.state, ContainerState::Exited);
    }
    assert_eq!(
        rig.free_cpu(&w1).await,
        4000,
        "the repeated report gave nothing back"
    );
    let kept = rig.store.logs(&cid("c1"), 0).await.unwrap().lines;
    assert_eq!(kept, logs, "the repeated report appended no lines again");
    let released = rig
        .protocol
        .release(&w1, &cid("c1"), &AttemptId("a1".into()), 1)
        .await
        .unwrap();
    assert!(!released);
    assert_eq!(rig.free_cpu(&w1).await, 4000);
    rig.assert_clean().await;
}

#[tokio::test]
async fn a_pull_is_reported_between_scheduled_and_running_by_the_holder_only() {
    let (rig, w1) = Rig::one_scheduled().await;
    let stranger = report(&w1, "a9", 1, Reported::Pulling);
    let refused = rig.protocol.report(&cid("c1"), &stranger).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("does not hold it")),
        "another attempt is refused"
    );
    let record = rig.store.container(&cid("c1")).await.unwrap().unwrap();
    assert_eq!(record.state, ContainerState::Scheduled);
    let pulling = report(&w1, "a1", 1, Reported::Pulling);
    for _ in 0..2 {
        let record = rig.protocol.report(&cid("c1"), &pulling).await.unwrap();
        assert_eq!(record.state, ContainerState::Pulling, "again: a no-op");
        assert_eq!(record.started_at_ms, None);
    }
    assert_eq!(rig.free_cpu(&w1).await, 3000, "still booked while it pulls");
    let running = report(&w1, "a1", 1, Reported::Running);
    let record = rig.protocol.report(&cid("c1"), &running).await.unwrap();
    assert_eq!(record.state, ContainerState::Running);
    assert!(record.started_at_ms.is_some());
    let late = rig.protocol.report(&cid("c1"), &pulling).await.unwrap();
    assert_eq!(
        late.state,
        ContainerState::Running,
        "a late pull report changes nothing"
    );
    let exited = report(&w1, "a1", 1, Reported::Exited { exit_code: 0 });
    rig.protocol.report(&cid("c1"), &exited).await.unwrap();
    let ended = rig.protocol.report(&cid("c1"), &pulling).await;
    assert!(
        matches!(ended, Err(ProtocolError::CannotRun { .. })),
        "{ended:?}"
    );
    assert_eq!(rig.free_cpu(&w1).await, 4000);
    rig.assert_clean().await;
}

#[tokio::test]
async fn a_failure_ends_and_releases() {
    let (rig, w1) = Rig::one_scheduled().await;
    let failed = report(&w1, "a1", 1, Reported::Failed { reason: None });
    let record = rig.protocol.report(&cid("c1"), &failed).await.unwrap();
    assert_eq!(record.state, ContainerState::Failed);
    assert_eq!(record.reason.as_deref(), Some("failed on worker w1"));
    assert_eq!(rig.free_cpu(&w1).await, 4000);
    rig.assert_clean().await;
}

#[tokio::test]
async fn a_pending_record_is_adopted_only_by_its_reservation_holder() {
    let rig = Rig::scheduling_by_hand();
    let w1 = rig.register("w1", 4000).await;
    let w2 = rig.register("w2", 4000).await;
    rig.place("orph", &w1, "a1", false).await;

    let stranger = report(&w2, "a1", 1, Reported::Running);
    let refused = rig.protocol.report(&cid("orph"), &stranger).await;
    assert!(
        matches!(refused, Err(ProtocolError::NotHolder { ref holder, .. }) if holder.is_none()),
        "{refused:?}"
    );

    let holder = report(&w1, "a1", 1, Reported::Running);
    let record = rig.protocol.report(&cid("orph"), &holder).await.unwrap();
    assert_eq!(record.state, ContainerState::Running);
    assert_eq!(record.worker.as_ref(), Some(&w1));
    assert_eq!(record.attempt, Some(AttemptId("a1".into())));

    // The holder may not release what it holds: it reports instead.
    let release = rig
        .protocol
        .release(&w1, &cid("orph"), &AttemptId("a1".into()), 1)
        .await;
    assert!(
        matches!(release, Err(ProtocolError::StillHeld { .. })),
        "{release:?}"
    );
    rig.assert_clean().await;
}

#[tokio::test]
async fn an_ended_container_cannot_start() {
    let (rig, w1) = Rig::one_scheduled().await;
    let failed = Transition::Failed {
        reason: "cancelled".into(),
    };
    rig.store.transition(&cid("c1"), &failed).await.unwrap();
    let start = report(&w1, "a1", 1, Reported::Running);
    let refused = rig.protocol.report(&cid("c1"), &start).await;
    let Err(error @ ProtocolError::CannotRun { .. }) = refused else {
        panic!("{refused:?}");
    };
    assert!(error.to_string().contains("(cancelled)"), "{error}");
}

#[tokio::test]
async fn a_stale_epoch_is_refused_and_changes_nothing() {
    let (rig, w1) = Rig::one_scheduled().await;
    let again = rig
        .protocol
        .register(registration("w1", 4000), &[])
        .await
        .unwrap();
    assert_eq!(again.worker.epoch, 2);
    assert_eq!(again.owned.len(), 1, "the registration lists what it owns");

    let stale = |result: Result<_, ProtocolError>| {
        matches!(
            result,
            Err(ProtocolError::StaleEpoch {
                presented: 1,
                current: 2,
                ..
            })
        )
    };
    let exited = report(&w1, "a1", 1, Reported::Exited { exit_code: 0 });
    assert!(stale(
        rig.protocol.report(&cid("c1"), &exited).await.map(drop)
    ));
    assert!(stale(
        rig.protocol.heartbeat(&w1, 1, &[], None).await.map(drop)
    ));
    // A release of a reservation the record does not name (its holder reports instead).
    let other = AttemptId("other".into());
    assert!(stale(
        rig.protocol
            .release(&w1, &cid("c1"), &other, 1)
            .await
            .map(drop)
    ));
    let wait = Duration::ZERO;
    assert!(stale(
        rig.protocol.assignments(&w1, 1, 8, wait).await.map(drop)
    ));
    let record = rig.store.container(&cid("c1")).await.unwrap().unwrap();
    assert_eq!(record.state, ContainerState::Scheduled);
    assert_eq!(rig.free_cpu(&w1).await, 3000);

    let unknown = WorkerId::new("nobody").unwrap();
    let beat = rig.protocol.heartbeat(&unknown, 1, &[], None).await;
    assert!(
        matches!(beat, Err(ProtocolError::UnknownWorker(_))),
        "{beat:?}"
    );
}

#[tokio::test]
async fn a_heartbeat_reconciles_both_ways() {
    let rig = Rig::scheduling_by_hand();
    let w1 = rig.register("w1", 4000).await;
    rig.place("kept", &w1, "a1", true).await;
    rig.place("ended", &w1, "a2", true).await;
    let failed = Transition::Failed {
        reason: "behind its back".into(),
    };
    rig.store.transition(&cid("ended"), &failed).await.unwrap();
    assert_eq!(rig.free_cpu(&w1).await, 2000);

    // It runs one it does not own: told to stop it. It does not run one whose record
    // ended: that reservation is released. The live one it does not list is kept.
    let running = [cid("stranger")];
    let beat = rig
        .protocol
        .heartbeat(&w1, 1, &running, None)
        .await
        .unwrap();
    assert_eq!(beat.stop, vec![cid("stranger")]);
    assert_eq!(beat.status, WorkerStatus::Available);
    assert_eq!(rig.free_cpu(&w1).await, 3000);
    let owned = rig.store.owned(&w1).await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].container, cid("kept"));
    rig.assert_clean().await;
}

#[tokio::test]
async fn deliveries_come_until_acknowledged() {
    let (rig, w1) = Rig::one_scheduled().await;
    let delivered = rig
        .protocol
        .assignments(&w1, 1, 8, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    let bad = rig.protocol.ack(&w1, 1, "not/a/delivery").await;
    assert!(
        matches!(bad, Err(ProtocolError::InvalidArgument { ref field, .. }) if field.as_deref() == Some("delivery")),
        "{bad:?}"
    );
    rig.protocol
        .ack(&w1, 1, &delivered[0].delivery)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_reaper_reclaims_a_silent_worker_once() {
    let rig = Rig::scheduling_by_hand();
    let w1 = rig.register("w1", 4000).await;
    rig.place("unstarted", &w1, "a1", true).await;
    rig.place("started", &w1, "a2", true).await;
    let running = report(&w1, "a2", 1, Reported::Running);
    rig.protocol
        .report(&cid("started"), &running)
        .await
        .unwrap();

    let now = rig.protocol.now_ms();
    let quiet = rig.protocol.reap(now).await.unwrap();
    assert_eq!(quiet, berth_protocol::ReapReport::default());

    let timeout = rig.protocol.config().heartbeat_timeout.as_millis() as u64;
    let later = now + timeout + 1;
    let reaped = rig.protocol.reap(later).await.unwrap();
    assert_eq!(reaped.lost_workers, vec![w1.clone()]);
    assert_eq!((reaped.requeued, reaped.lost_containers), (1, 1));
    assert_eq!(rig.free_cpu(&w1).await, 4000);
    let requeued = rig
        .store
        .container(&cid("unstarted"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(requeued.state, ContainerState::Pending);
    let lost = rig.store.container(&cid("started")).await.unwrap().unwrap();
    assert_eq!(lost.state, ContainerState::Lost);

    let again = rig.protocol.reap(later).await.unwrap();
    assert_eq!(again, berth_protocol::ReapReport::default(), "once");
    let late = report(&w1, "a2", 1, Reported::Exited { exit_code: 0 });
    let refused = rig.protocol.report(&cid("started"), &late).await;
    assert!(
        matches!(refused, Err(ProtocolError::StaleEpoch { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_reaper_retries_a_running_container_and_its_old_worker_is_fenced_off() {
    let rig = Rig::scheduling_by_hand();
    let w1 = rig.register("w1", 4000).await;
    let retried = ContainerRequest {
        max_retries: 1,
        ..request("retried", 1000)
    };
    rig.store.submit(&[retried]).await.unwrap();
    rig.reserve("retried", &w1, "a1").await;
    let scheduled = Transition::Scheduled {
        worker: w1.clone(),
        attempt: AttemptId("a1".into()),
    };
    rig.store
        .transition(&cid("retried"), &scheduled)
        .await
        .unwrap();
    let running = report(&w1, "a1", 1, Reported::Running);
    rig.protocol
        .report(&cid("retried"), &running)
        .await
        .unwrap();

    let timeout = rig.protocol.config().heartbeat_timeout.as_millis() as u64;
    let later = rig.protocol.now_ms() + timeout + 1;
    let reaped = rig.protocol.reap(later).await.unwrap();
    assert_eq!((reaped.retried, reaped.lost_containers), (1, 0));
    assert_eq!(rig.free_cpu(&w1).await, 4000);
    let record = rig.store.container(&cid("retried")).await.unwrap().unwrap();
    assert_eq!((record.state, record.retries), (ContainerState::Pending, 1));
    assert_eq!(record.started_at_ms, None);

    // The old worker comes back: it owns nothing, so it stops what it ran, and its
    // reports under the old attempt (re-sent under its new epoch) change nothing.
    let back = rig
        .protocol
        .register(registration("w1", 4000), &[])
        .await
        .unwrap();
    assert!(back.owned.is_empty(), "{:?}", back.owned);
    let epoch = back.worker.epoch;
    for late in [
        Reported::Running,
        Reported::Exited { exit_code: 0 },
        Reported::Failed { reason: None },
    ] {
        let refused = rig
            .protocol
            .report(&cid("retried"), &report(&w1, "a1", epoch, late))
            .await;
        assert!(
            matches!(refused, Err(ProtocolError::NotHolder { .. })),
            "{refused:?}"
        );
    }
    let record = rig.store.container(&cid("retried")).await.unwrap().unwrap();
    assert_eq!(record.state, ContainerState::Pending);
    assert_eq!(rig.free_cpu(&w1).await, 4000);
    rig.assert_clean().await;
}

#[tokio::test]
async fn admission_refuses_what_can_never_fit_as_the_fleet_changes() {
    // A long max age: only the registration's invalidation can show the new worker.
    let config = ProtocolConfig {
        fleet_max_age: Duration::from_secs(3600),
        ..ProtocolConfig::default()
    };
    let rig = Rig::new(true, config);
    let huge = request("huge", 64_000);
    let refused = rig
        .protocol
        .submit(vec![request("fine", 100), huge.clone()])
        .await;
    let Err(ProtocolError::Unplaceable {
        index,
        container,
        reason,
    }) = refused
    else {
        panic!("{refused:?}");
    };
    assert_eq!(
        (index, container, reason),
        (1, cid("huge"), UnplacedReason::NeverFits)
    );
    assert!(
        rig.store.container(&cid("fine")).await.unwrap().is_none(),
        "nothing written"
    );

    // A worker that registers behind the protocol's back is not seen while the view is
    // young: admission reads the engine's published fleet, not the store, per submit.
    rig.store
        .register_worker(&registration("big", 64_000))
        .await
        .unwrap();
    let cached = rig.protocol.submit(vec![huge.clone()]).await;
    assert!(
        matches!(cached, Err(ProtocolError::Unplaceable { index: 0, .. })),
        "{cached:?}"
    );

    // Registering through the protocol refreshes it at once.
    rig.register("big", 64_000).await;
    let outcomes = rig.protocol.submit(vec![huge.clone()]).await.unwrap();
    assert_eq!(outcomes, vec![SubmitOutcome::Accepted]);
    let again = rig.protocol.submit(vec![huge]).await.unwrap();
    assert!(matches!(again[0], SubmitOutcome::Duplicate(_)), "{again:?}");
}

#[test]
fn a_report_is_checked_before_anything_is_read() {
    let parse = |kind, exit_code, reason: Option<&str>| {
        Reported::parse(kind, exit_code, reason.map(str::to_owned))
    };
    let field = |result: Result<Reported, ProtocolError>| match result {
        Err(ProtocolError::InvalidArgument { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        parse(ReportKind::Exited, Some(2), None).unwrap(),
        Reported::Exited { exit_code: 2 }
    );
    assert_eq!(
        field(parse(ReportKind::Exited, None, None)).as_deref(),
        Some("exit_code")
    );
    assert_eq!(
        field(parse(ReportKind::Running, Some(0), None)).as_deref(),
        Some("exit_code")
    );
    let long = "x".repeat(berth_protocol::report::MAX_REASON_LEN + 1);
    assert_eq!(
        field(parse(ReportKind::Failed, None, Some(&long))).as_deref(),
        Some("reason")
    );
    assert_eq!(
        field(parse(ReportKind::Failed, None, Some("a\0b"))).as_deref(),
        Some("reason")
    );
}

#[test]
fn containers_on_unhealthy_devices_are_named_and_no_others() {
    use berth_core::invariants::OwnedEntry;
    use berth_core::{DeviceShare, GpuType};
    let total = Resources::new(4000, 8192, 3);
    let mut registration = WorkerRegistration {
        gpu_type: Some(GpuType::A10G),
        total,
        ..registration("g", 4000)
    }
    .with_devices()
    .unwrap();
    registration.devices[1].healthy = false;
    let worker = registration.into_worker(total, 1, 1);
    let owned = |id: &str, devices: &[(u32, u32)]| OwnedEntry {
        container: cid(id),
        attempt: AttemptId::from_bits(1),
        resources: Resources::new(100, 64, 0),
        devices: devices
            .iter()
            .map(|&(index, milli)| DeviceShare { index, milli })
            .collect(),
    };
    let entries = [
        owned("cpu-only", &[]),
        owned("on-0", &[(0, 1000)]),
        owned("half-on-1", &[(1, 500)]),
        owned("on-0-and-1", &[(0, 1000), (1, 1000)]),
        owned("on-2", &[(2, 250)]),
    ];
    assert_eq!(
        berth_protocol::workers::on_unhealthy_gpus(&worker, &entries),
        [cid("half-on-1"), cid("on-0-and-1")]
    );
}
