//! Priority preemption through the engine, on the memory store and on Redis: a request that
//! finds no room stops the fewest, lowest-priority preemptible containers that make room
//! and takes their place; a victim with retries waits again and may not preempt in turn
//! (no cascade); a container that does not accept interruption is never a victim; and the
//! store stays clean with every charge where it belongs.

#![allow(clippy::unwrap_used)]

mod common;

use berth_core::*;
use berth_engine::{Engine, EngineConfig, Strategy};
use berth_store::prelude::*;
use berth_store::*;
use common::*;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn quick() -> EngineConfig {
    EngineConfig {
        max_batch: 16,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        ..engine_config(Strategy::BatchScript, "preempt")
    }
}

fn preemptible(id: &str, cpu: u64, priority: i32, max_retries: u32, at: u64) -> ContainerRequest {
    ContainerRequest {
        preemptible: true,
        max_retries,
        ..request(id, cpu, priority, at)
    }
}

/// Submits `requests` and waits until each is placed; then starts them as a worker would.
async fn running(engine: &Engine, store: &dyn Store, requests: Vec<ContainerRequest>) {
    let ids = ids_of(&requests);
    drop(engine.submit_many(requests).await.unwrap());
    for id in &ids {
        let placed = scheduled(store, id.as_str()).await;
        let start = Transition::Running {
            worker: placed.worker.clone().unwrap(),
            attempt: placed.attempt.clone().unwrap(),
        };
        store.transition(id, &start).await.unwrap();
    }
}

/// The record of `id` once it is scheduled.
async fn scheduled(store: &dyn Store, id: &str) -> ContainerRecord {
    eventually(&format!("{id} scheduled"), WAIT, || async {
        let r = record(store, &cid(id)).await;
        if r.state == ContainerState::Scheduled {
            Ok(r)
        } else {
            Err(format!("{id} is {} ({:?})", r.state, r.reason))
        }
    })
    .await
}

async fn state(store: &dyn Store, id: &str) -> ContainerState {
    record(store, &cid(id)).await.state
}

/// On one worker of 4 cores: `mid` (priority 5, 2 cores, one retry) and `low-1`, `low-2`
/// (priority 0, 1 core each) run, all preemptible. `high` (priority 10, 2 cores) preempts
/// the one container (`mid`) rather than the two of lower priority; `mid` waits again and,
/// though it could preempt the two, does not (no cascade); once `high` ends, `mid` runs.
async fn the_fewest_victims_make_room_and_no_cascade_follows(store: Arc<dyn Store>) {
    fleet(&*store, 1, 4000, 16_384).await;
    let engine = Engine::start(store.clone(), quick(), Vec::new());
    let now = engine.now_ms();
    let first = vec![
        preemptible("mid", 2000, 5, 1, now),
        preemptible("low-1", 1000, 0, 0, now),
        preemptible("low-2", 1000, 0, 0, now),
    ];
    running(&engine, &*store, first).await;
    drop(
        engine
            .submit_many(vec![request("high", 2000, 10, now)])
            .await
            .unwrap(),
    );
    let high = scheduled(&*store, "high").await;
    assert_eq!(high.worker.as_ref().map(WorkerId::as_str), Some("w0"));
    let mid = record(&*store, &cid("mid")).await;
    assert_eq!(mid.state, ContainerState::Pending, "{mid:?}");
    assert_eq!(mid.retries, 1);
    assert!(mid.preempted_at_ms.is_some());
    // Still waiting, with room only if it preempted the two low ones: it must not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for low in ["low-1", "low-2"] {
        assert_eq!(state(&*store, low).await, ContainerState::Running, "{low}");
    }
    assert_eq!(state(&*store, "mid").await, ContainerState::Pending);
    assert_clean(&*store).await;

    finish(&*store, &cid("high")).await;
    scheduled(&*store, "mid").await;
    finish(&*store, &cid("mid")).await;
    for low in ["low-1", "low-2"] {
        let r = record(&*store, &cid(low)).await;
        let (worker, attempt) = (r.worker.unwrap(), r.attempt.unwrap());
        let exited = Transition::Exited {
            worker: worker.clone(),
            attempt: attempt.clone(),
            exit_code: 0,
        };
        store.transition(&cid(low), &exited).await.unwrap();
        store
            .release(&worker, &cid(low), Some(&attempt), None)
            .await
            .unwrap();
    }
    engine.shutdown().await;
    assert_clean(&*store).await;
    assert!(store.usage().await.unwrap().is_empty(), "nothing charged");
}

/// A victim without retries ends PREEMPTED with its reason; one that does not accept
/// interruption, or has the same priority, is never a victim: the request waits.
async fn only_lower_priority_preemptible_containers_are_victims(store: Arc<dyn Store>) {
    fleet(&*store, 2, 2000, 16_384).await;
    let engine = Engine::start(store.clone(), quick(), Vec::new());
    let now = engine.now_ms();
    let stubborn = request("stubborn", 2000, 0, now);
    running(&engine, &*store, vec![stubborn]).await;
    running(&engine, &*store, vec![preemptible("peer", 2000, 7, 0, now)]).await;
    drop(
        engine
            .submit_many(vec![request("wants", 2000, 7, now)])
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&*store, "wants").await, ContainerState::Pending);
    assert_eq!(state(&*store, "stubborn").await, ContainerState::Running);
    assert_eq!(state(&*store, "peer").await, ContainerState::Running);

    drop(
        engine
            .submit_many(vec![request("urgent", 2000, 9, now)])
            .await
            .unwrap(),
    );
    let urgent = scheduled(&*store, "urgent").await;
    let peer = record(&*store, &cid("peer")).await;
    assert_eq!(peer.state, ContainerState::Preempted, "{peer:?}");
    assert_eq!(
        peer.reason.as_deref(),
        Some(
            format!(
                "by urgent (priority 9) on worker {}",
                urgent.worker.unwrap()
            )
            .as_str()
        )
    );
    assert_eq!(state(&*store, "stubborn").await, ContainerState::Running);
    engine.shutdown().await;
    assert_clean(&*store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fewest_victims_make_room_and_no_cascade_follows_on_the_memory_store() {
    let store = Backend::Memory
        .store("preempt-few", StoreConfig::default())
        .await;
    the_fewest_victims_make_room_and_no_cascade_follows(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fewest_victims_make_room_and_no_cascade_follows_on_redis() {
    // The backend owns the server: it must outlive the test's store.
    let backend = Backend::redis();
    let store = backend.store("preempt-few", StoreConfig::default()).await;
    the_fewest_victims_make_room_and_no_cascade_follows(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_lower_priority_preemptible_containers_are_victims_on_the_memory_store() {
    let store = Backend::Memory
        .store("preempt-only", StoreConfig::default())
        .await;
    only_lower_priority_preemptible_containers_are_victims(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_lower_priority_preemptible_containers_are_victims_on_redis() {
    // The backend owns the server: it must outlive the test's store.
    let backend = Backend::redis();
    let store = backend.store("preempt-only", StoreConfig::default()).await;
    only_lower_priority_preemptible_containers_are_victims(store).await;
}
