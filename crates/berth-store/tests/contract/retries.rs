//! Contract case for retries: a running container whose worker died goes back to the
//! intake while its request allows retries, and ends lost once they are used up; each time
//! the capacity comes back exactly once and the tenant's charge is given back with it.

use super::quotas::usage_of;
use super::*;

/// Claims `id` from the intake, commits it on `worker` and settles it there (charging its
/// tenant), then starts it; returns the attempt.
async fn run_on(store: &dyn Store, id: &str, worker: &str) -> AttemptId {
    let claim = store
        .claim("e", 10, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.request.id.as_str() == id)
        .expect("the container is in the intake");
    let out = store
        .commit(&[group(worker, vec![reservation_for(&claim)])])
        .await
        .unwrap();
    assert!(committed(&out[0]), "{out:?}");
    let settled = store.settle(&[scheduled_on(&claim, worker)]).await.unwrap();
    assert_eq!(settled, vec![SettleOutcome::Done]);
    let running = Transition::Running {
        worker: wid(worker),
        attempt: claim.attempt.clone(),
    };
    store.transition(&cid(id), &running).await.unwrap();
    assert_eq!(
        usage_of(store, "t").await.containers,
        1,
        "charged once placed"
    );
    claim.attempt
}

/// Declares `worker` lost and reclaims `id` from it, twice: the repeat changes nothing.
/// Checks the capacity came back exactly once and the tenant's charge with it.
async fn lose(store: &dyn Store, id: &str, worker: &str, attempt: &AttemptId) -> ReclaimOutcome {
    let w = wid(worker);
    store
        .set_worker_status(&w, WorkerStatus::Lost)
        .await
        .unwrap();
    let why = format!("worker {worker} missed its heartbeats");
    let outcome = store.reclaim(&w, &cid(id), attempt, &why).await.unwrap();
    let again = store.reclaim(&w, &cid(id), attempt, &why).await.unwrap();
    assert_eq!(again, ReclaimOutcome::Released, "a repeat changes nothing");
    assert_eq!(
        free(store, worker).await,
        Resources::new(4000, 4096, 0),
        "reclaimed exactly once"
    );
    assert!(
        usage_of(store, "t").await.is_empty(),
        "the charge is given back"
    );
    assert_clean(store).await;
    outcome
}

pub async fn a_lost_container_is_retried_until_its_retries_are_used(connect: impl Connect) {
    let store = open(&connect, "retries").await;
    for worker in ["w1", "w2", "w3"] {
        register(&*store, worker, 4000, 4096).await;
    }
    let retried = ContainerRequest {
        max_retries: 2,
        ..request("r", 100)
    };
    store.submit(&[retried]).await.unwrap();

    let first = run_on(&*store, "r", "w1").await;
    assert_eq!(
        lose(&*store, "r", "w1", &first).await,
        ReclaimOutcome::Retried
    );
    let record = store.container(&cid("r")).await.unwrap().unwrap();
    assert_eq!(record.state, ContainerState::Pending);
    assert_eq!((record.worker, record.attempt), (None, None));
    assert_eq!((record.scheduled_at_ms, record.started_at_ms), (None, None));
    assert_eq!(record.retries, 1);
    assert_eq!(
        record.reason.as_deref(),
        Some("lost: worker w1 missed its heartbeats; retry 1 of 2")
    );
    // The dead worker's attempt can neither adopt nor start the requeued record.
    let adopt = Transition::Scheduled {
        worker: wid("w1"),
        attempt: first.clone(),
    };
    assert!(store.transition(&cid("r"), &adopt).await.is_err());

    let second = run_on(&*store, "r", "w2").await;
    assert_eq!(
        lose(&*store, "r", "w2", &second).await,
        ReclaimOutcome::Retried
    );
    let record = store.container(&cid("r")).await.unwrap().unwrap();
    assert_eq!((record.state, record.retries), (ContainerState::Pending, 2));

    let third = run_on(&*store, "r", "w3").await;
    assert_eq!(lose(&*store, "r", "w3", &third).await, ReclaimOutcome::Lost);
    let record = store.container(&cid("r")).await.unwrap().unwrap();
    assert_eq!((record.state, record.retries), (ContainerState::Lost, 2));
    assert_eq!(
        record.reason.as_deref(),
        Some("worker w3 missed its heartbeats; all 2 retries used")
    );
    assert!(record.finished_at_ms.is_some());
    let left = store.claim("e", 10, Duration::ZERO).await.unwrap();
    assert!(left.is_empty(), "nothing requeued once lost: {left:?}");
}
