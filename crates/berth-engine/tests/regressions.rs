//! Regression tests for engine bugs found by the test suite (each scenario's documentation
//! says what went wrong): a reservation orphaned by a crash or a failed settlement between
//! commit and settle is adopted by the next claimer instead of placed a second time, and
//! the engine loop yields between batches on a store that never waits.

#![allow(clippy::unwrap_used)]

mod common;

use common::Backend;
use common::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_crash_between_commit_and_settle_leaves_no_orphaned_reservation() {
    scenarios::crash_between_commit_and_settle_leaves_no_orphan(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_crash_between_commit_and_settle_leaves_no_orphaned_reservation() {
    scenarios::crash_between_commit_and_settle_leaves_no_orphan(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_failed_settlement_leaves_no_orphaned_reservation() {
    scenarios::a_failed_settlement_leaves_no_orphan(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_failed_settlement_leaves_no_orphaned_reservation() {
    scenarios::a_failed_settlement_leaves_no_orphan(&Backend::redis()).await;
}

/// On the memory store no call of the engine loop ever waits while requests are queued, and
/// the loop does not yield between batches either: a replica runs batch after batch in one
/// poll, and every other task that shares its worker thread (other replicas, the API's
/// submitters, tickets) waits until the intake is empty. On a current-thread runtime a
/// task that records the engine's batch count each time it runs never sees a count
/// between the first and the last batch of a 10-batch burst.
#[tokio::test(flavor = "current_thread")]
async fn the_engine_lets_other_tasks_run_between_batches() {
    use berth_engine::*;
    use berth_store::*;
    use common::*;
    use std::sync::{Arc, Mutex};

    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    fleet(&*store, 10, 100_000, 102_400).await;
    let config = EngineConfig {
        max_batch: 100,
        ..engine_config(Strategy::BatchScript, "engine-0")
    };
    let engine = Engine::start(store.clone(), config, Vec::new());
    let stats = engine.stats();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = {
        let (stats, seen) = (stats.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                seen.lock().unwrap().push(stats.snapshot().batches);
                tokio::task::yield_now().await;
            }
        })
    };
    let burst = requests("c", 1000, 1000, 0, engine.now_ms());
    drop(engine.submit_many(burst).await.unwrap());
    let stats_ref = &stats;
    eventually("the burst to be placed", WAIT, || async move {
        let placed = stats_ref.snapshot().placed;
        if placed == 1000 {
            Ok(())
        } else {
            Err(format!("{placed} placed"))
        }
    })
    .await;
    probe.abort();
    let batches = stats.snapshot().batches;
    assert!(batches >= 10, "{batches} batches");
    let seen = seen.lock().unwrap().clone();
    let between = seen.iter().filter(|&&b| b > 0 && b < batches).count();
    assert!(
        between > 0,
        "no other task ran while the engine ran its {batches} batches (the probe saw {:?})",
        {
            let mut distinct = seen.clone();
            distinct.dedup();
            distinct
        }
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_failed_store_calls_are_retried_at_once() {
    scenarios::failed_store_calls_are_retried_at_once(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failed_store_calls_are_retried_at_once() {
    scenarios::failed_store_calls_are_retried_at_once(&Backend::redis()).await;
}
