//! Contract cases for preemption: the swap of victims for their preemptor on a worker is
//! one atomic step (all or nothing, the freed capacity never free in between, exactly the
//! victims' device shares handed over), and each victim's record then ends PREEMPTED, or
//! goes back to the intake while its retries last, giving its charge back once.

use super::quotas::usage_of;
use super::*;

/// Submits, claims, commits (with `devices`), settles and starts `request` on `worker`;
/// returns its attempt.
async fn running_on(
    store: &dyn Store,
    request: ContainerRequest,
    worker: &str,
    devices: Vec<DeviceShare>,
) -> AttemptId {
    let id = request.id.clone();
    let claim = claim_of(store, request).await;
    let reservation = Reservation {
        devices,
        ..reservation_for(&claim)
    };
    let out = store
        .commit(&[group(worker, vec![reservation])])
        .await
        .unwrap();
    assert!(committed(&out[0]), "{out:?}");
    let settled = store.settle(&[scheduled_on(&claim, worker)]).await.unwrap();
    assert_eq!(settled, vec![SettleOutcome::Done]);
    let running = Transition::Running {
        worker: wid(worker),
        attempt: claim.attempt.clone(),
    };
    store.transition(&id, &running).await.unwrap();
    claim.attempt
}

async fn claim_of(store: &dyn Store, request: ContainerRequest) -> Claim {
    let id = request.id.clone();
    store.submit(&[request]).await.unwrap();
    store
        .claim("e", 100, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.request.id == id)
        .expect("the container is in the intake")
}

fn low(id: &str, cpu: u64, max_retries: u32) -> ContainerRequest {
    ContainerRequest {
        preemptible: true,
        max_retries,
        ..request(id, cpu)
    }
}

fn preemption(worker: &str, victims: &[(&str, &AttemptId)], claim: &Claim) -> PreemptionCommit {
    PreemptionCommit {
        worker: wid(worker),
        victims: victims
            .iter()
            .map(|(id, attempt)| (cid(id), (*attempt).clone()))
            .collect(),
        reservation: reservation_for(claim),
    }
}

fn rejection(outcome: &CommitOutcome) -> Option<Rejection> {
    match outcome {
        CommitOutcome::Rejected { rejection, .. } => Some(*rejection),
        CommitOutcome::Committed { .. } => None,
    }
}

async fn owned_ids(store: &dyn Store, worker: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .owned(&wid(worker))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.container.to_string())
        .collect();
    ids.sort();
    ids
}

pub async fn a_preemption_swaps_its_victims_for_the_preemptor_at_once(connect: impl Connect) {
    let store = open(&connect, "preempt").await;
    register(&*store, "w1", 4000, 4096).await;
    let a = running_on(&*store, low("low-a", 2000, 1), "w1", Vec::new()).await;
    let b = running_on(&*store, low("low-b", 2000, 0), "w1", Vec::new()).await;
    let high = claim_of(
        &*store,
        ContainerRequest {
            priority: 5,
            ..request("high", 4000)
        },
    )
    .await;

    // No victim at all is not a preemption; a victim under another attempt, or too few
    // victims: nothing changes.
    let none = store.preempt(&preemption("w1", &[], &high)).await;
    assert!(
        matches!(none, Err(StoreError::InvalidArgument(_))),
        "{none:?}"
    );
    let stale = AttemptId("not-its-attempt".into());
    let refused = store
        .preempt(&preemption(
            "w1",
            &[("low-a", &a), ("low-b", &stale)],
            &high,
        ))
        .await
        .unwrap();
    assert_eq!(rejection(&refused), Some(Rejection::VictimGone));
    let refused = store
        .preempt(&preemption("w1", &[("low-a", &a)], &high))
        .await
        .unwrap();
    assert_eq!(rejection(&refused), Some(Rejection::NoRoom));
    assert_eq!(owned_ids(&*store, "w1").await, ["low-a", "low-b"]);
    assert_eq!(free(&*store, "w1").await, Resources::new(0, 4096 - 512, 0));

    // Both victims: swapped in one step; the worker is as full as before.
    let swap = preemption("w1", &[("low-a", &a), ("low-b", &b)], &high);
    let done = store.preempt(&swap).await.unwrap();
    assert!(committed(&done), "{done:?}");
    assert_eq!(owned_ids(&*store, "w1").await, ["high"]);
    assert_eq!(free(&*store, "w1").await, Resources::new(0, 4096 - 256, 0));
    let queued = store
        .assignments(&wid("w1"), None, 10, Duration::ZERO)
        .await
        .unwrap();
    let preemptor: Vec<&Assignment> = queued
        .iter()
        .filter(|q| q.container.as_str() == "high")
        .collect();
    assert_eq!(preemptor.len(), 1, "{queued:?}");
    assert_eq!(preemptor[0].preempts, [cid("low-a"), cid("low-b")]);
    assert!(
        queued.iter().all(|q| q.container.as_str() == "high"),
        "the victims' undelivered assignments are dropped: {queued:?}"
    );
    // A repeat is a retry: nothing more moves.
    match store.preempt(&swap).await.unwrap() {
        CommitOutcome::Committed { already_owned, .. } => {
            assert_eq!(already_owned, [(cid("high"), high.attempt.clone())]);
        }
        other => panic!("a repeat must succeed: {other:?}"),
    }
    assert_eq!(free(&*store, "w1").await, Resources::new(0, 4096 - 256, 0));

    // The records: the preemptor is scheduled; a victim with a retry left waits again (and
    // may not preempt in turn), the other ends PREEMPTED. Each gives its charge back once.
    let settled = store.settle(&[scheduled_on(&high, "w1")]).await.unwrap();
    assert_eq!(settled, vec![SettleOutcome::Done]);
    let why = "by high (priority 5) on worker w1";
    let w1 = wid("w1");
    let first = store.preempted(&w1, &cid("low-a"), &a, why).await.unwrap();
    assert_eq!(first, ReclaimOutcome::Retried);
    let second = store.preempted(&w1, &cid("low-b"), &b, why).await.unwrap();
    assert_eq!(second, ReclaimOutcome::Preempted);
    for (id, attempt) in [("low-a", &a), ("low-b", &b)] {
        let again = store.preempted(&w1, &cid(id), attempt, why).await.unwrap();
        assert_eq!(again, ReclaimOutcome::Released, "a repeat changes nothing");
    }
    let requeued = store.container(&cid("low-a")).await.unwrap().unwrap();
    assert_eq!(requeued.state, ContainerState::Pending);
    assert_eq!(
        requeued.reason.as_deref(),
        Some("preempted: by high (priority 5) on worker w1; retry 1 of 1")
    );
    assert!(berth_core::lifecycle::was_preempted(
        &requeued,
        berth_store::now_ms()
    ));
    assert!(requeued.preempted_at_ms.is_some());
    let ended = store.container(&cid("low-b")).await.unwrap().unwrap();
    assert_eq!(ended.state, ContainerState::Preempted);
    assert_eq!(ended.reason.as_deref(), Some(why));
    assert!(ended.finished_at_ms.is_some());
    let usage = usage_of(&*store, "t").await;
    assert_eq!(
        (usage.containers, usage.cpu_millicores),
        (1, 4000),
        "only the preemptor is charged"
    );
    assert_eq!(free(&*store, "w1").await, Resources::new(0, 4096 - 256, 0));
    assert_clean(&*store).await;
}

pub async fn a_preemption_hands_over_exactly_its_victims_devices(connect: impl Connect) {
    let store = open(&connect, "preempt-gpu").await;
    let worker = WorkerRegistration {
        id: wid("g1"),
        pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(16_000, 65_536, 2),
        gpu_type: Some(GpuType::A10G),
        devices: Vec::new(),
        runtime: RuntimeName::PROCESS,
    };
    store.register_worker(&worker).await.unwrap();
    let gpu = |id: &str, priority: i32| ContainerRequest {
        resources: Resources::new(1000, 256, 1),
        priority,
        preemptible: true,
        ..request(id, 1000)
    };
    let share = |index| DeviceShare { index, milli: 1000 };
    let keep = running_on(&*store, gpu("keep", 3), "g1", vec![share(0)]).await;
    let victim = running_on(&*store, gpu("victim", 0), "g1", vec![share(1)]).await;
    let high = claim_of(&*store, gpu("high", 5)).await;
    let on = |index| PreemptionCommit {
        reservation: Reservation {
            devices: vec![share(index)],
            ..reservation_for(&high)
        },
        ..preemption("g1", &[("victim", &victim)], &high)
    };
    // The device the victim does not hold stays the other container's.
    let refused = store.preempt(&on(0)).await.unwrap();
    assert_eq!(rejection(&refused), Some(Rejection::NoRoom));
    let done = store.preempt(&on(1)).await.unwrap();
    assert!(committed(&done), "{done:?}");
    let after = store.worker(&wid("g1")).await.unwrap().unwrap();
    assert_eq!(after.free.gpu_count, 0);
    assert!(after.gpus.iter().all(|g| g.free_milli == 0), "{after:?}");
    store.settle(&[scheduled_on(&high, "g1")]).await.unwrap();
    let why = "by high (priority 5) on worker g1";
    let ended = store
        .preempted(&wid("g1"), &cid("victim"), &victim, why)
        .await
        .unwrap();
    assert_eq!(ended, ReclaimOutcome::Preempted);
    let _ = keep;
    assert_clean(&*store).await;
}
