//! Regression tests for engine bugs found by the test suite (each scenario's documentation
//! says what went wrong): a reservation orphaned by a crash or a failed settlement between
//! commit and settle is adopted by the next claimer instead of placed a second time, and
//! the engine loop yields between batches on a store that never waits, and a stopped
//! replica places the batch it claimed ahead.

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

/// A replica claims its next batch while it commits the current one. Stopped there, it
/// must still place what it claimed ahead: a claim it dropped would stay invisible to every
/// other replica for the whole visibility timeout. 40 requests, batches of 10: the first
/// commit is held (by then the next 10 are claimed ahead), the replica is stopped, the
/// commit let through; once stopped, every request not placed can be claimed at once.
#[tokio::test(flavor = "current_thread")]
async fn a_stopped_replica_places_what_it_claimed_ahead() {
    use berth_engine::*;
    use berth_store::*;
    use common::gate::{Gate, HoldAt};
    use common::*;
    use std::sync::Arc;
    use std::time::Duration;

    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    fleet(&*store, 4, 100_000, 102_400).await;
    let all = requests("c", 40, 1000, 0, berth_store::now_ms());
    store.submit(&all).await.unwrap();
    let gate = Gate::new(store.clone(), HoldAt::Commit);
    let config = EngineConfig {
        max_batch: 10,
        ..engine_config(Strategy::BatchScript, "engine-0")
    };
    let engine = Arc::new(Engine::start(gate.clone(), config, Vec::new()));
    eventually("the first commit to be held", WAIT, || async {
        if gate.held() > 0 {
            Ok(())
        } else {
            Err("no commit yet".to_owned())
        }
    })
    .await;
    let stopping = tokio::spawn({
        let engine = engine.clone();
        async move { engine.stop().await }
    });
    tokio::task::yield_now().await;
    gate.open();
    stopping.await.unwrap();

    let tally = tally(&*store, &ids_of(&all)).await;
    assert_eq!(tally.scheduled, 20, "{}", tally.brief());
    let left = store
        .claim("probe", usize::MAX, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(left.len(), 20, "claims left behind by the stopped replica");
}
