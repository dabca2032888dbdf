//! Time-based engine behaviour, with tokio's clock paused: the deadline, the backoff of
//! deferred requests, and the worker cache's TTL. The memory store keeps its time-outs on
//! tokio's clock and the engine's clock follows it, so time only moves when the test
//! sleeps (tokio advances a paused clock to the next timer when every task waits), and the
//! observations below are exact in virtual time.

#![allow(clippy::unwrap_used)]

mod common;

use berth_core::*;
use berth_engine::*;
use berth_store::prelude::*;
use berth_store::*;
use common::*;
use std::sync::Arc;
use std::time::Duration;

/// How far virtual time moves between two observations.
const STEP: Duration = Duration::from_millis(10);

/// A memory store with one worker of `cpu` millicores, filled with 1-CPU requests that the
/// engine placed; the engine; and its clock when it started.
async fn full_fleet(config: EngineConfig, cpu: u64) -> (Arc<dyn Store>, Engine, u64) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    fleet(&*store, 1, cpu, cpu * 1024 / 1000).await;
    let engine = Engine::start(store.clone(), config, Vec::new());
    let started = engine.now_ms();
    let fill = requests(
        "fill",
        usize::try_from(cpu / 1000).unwrap(),
        1000,
        0,
        engine.now_ms(),
    );
    let tickets = engine.submit_many(fill).await.unwrap();
    for ticket in tickets {
        assert!(matches!(outcome(ticket).await, Outcome::Placed { .. }));
    }
    assert_eq!(free_cpu(&*store).await, 0);
    (store, engine, started)
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_finds_room_fails_after_the_deadline_not_before() {
    let deadline = Duration::from_secs(2);
    let config = EngineConfig {
        deadline,
        ..engine_config(Strategy::BatchScript, "engine-0")
    };
    let (store, engine, _) = full_fleet(config, 1000).await;
    let t0 = engine.now_ms();
    let ticket = engine.submit(request("late", 1000, 0, t0)).await.unwrap();
    let id = cid("late");
    let mut deferred_before_failing = 0;
    let failed = loop {
        let seen = record(&*store, &id).await;
        let elapsed = engine.now_ms() - t0;
        match seen.state {
            ContainerState::Pending => deferred_before_failing = seen.deferrals,
            ContainerState::Failed => {
                assert!(
                    elapsed > ms(deadline),
                    "failed {elapsed} ms after submission: {seen:?}"
                );
                break seen;
            }
            _ => panic!("a request with no room was placed or ended otherwise: {seen:?}"),
        }
        assert!(
            elapsed < 30_000,
            "still pending {elapsed} ms after submission: {seen:?}"
        );
        tokio::time::sleep(STEP).await;
    };
    assert_eq!(failed.reason.as_deref(), Some(TIMED_OUT));
    assert!(
        deferred_before_failing >= 1,
        "it never waited in the backlog: {failed:?}"
    );
    assert_eq!(
        outcome(ticket).await,
        Outcome::Failed {
            reason: TIMED_OUT.to_owned()
        }
    );
    assert_eq!(engine.stats().snapshot().failed, 1);
    assert_eq!(store.backlog_len().await.unwrap(), 0);
    assert_clean(&*store).await;
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_deferred_request_is_not_retried_before_its_backoff() {
    let base = Duration::from_secs(1);
    let config = EngineConfig {
        backoff_base: base,
        backoff_cap: Duration::from_secs(10),
        ..engine_config(Strategy::BatchScript, "engine-0")
    };
    let (store, engine, _) = full_fleet(config, 1000).await;
    assert_eq!(engine.stats().snapshot().deferred, 0);
    let t0 = engine.now_ms();
    drop(engine.submit(request("waits", 1000, 0, t0)).await.unwrap());
    let id = cid("waits");
    // The k-th deferral waits at least max(time waited so far, base) after the one before:
    // the 2nd comes at least 1 base after submission, the 3rd 2, the 4th 4, the 5th 8.
    let earliest = |k: u32| match k {
        0 | 1 => 0,
        k => ms(base) << (k - 2),
    };
    let mut deferrals = 0;
    while engine.now_ms() - t0 < 10_000 {
        let seen = record(&*store, &id).await;
        let elapsed = engine.now_ms() - t0;
        assert_eq!(seen.state, ContainerState::Pending, "{seen:?}");
        assert!(
            elapsed >= earliest(seen.deferrals),
            "deferral {} seen {elapsed} ms after submission, before its backoff ({} ms)",
            seen.deferrals,
            earliest(seen.deferrals)
        );
        deferrals = seen.deferrals;
        tokio::time::sleep(STEP).await;
    }
    assert!(
        deferrals >= 4,
        "only {deferrals} retries in 10 s with a 1 s backoff base"
    );
    assert_eq!(store.backlog_len().await.unwrap(), 1);
    let counters = engine.stats();
    engine.shutdown().await;
    let stats = counters.snapshot();
    let deferrals = record(&*store, &id).await.deferrals;
    assert_eq!(stats.deferred, u64::from(deferrals), "{stats:?}");
    assert_eq!(stats.placed, 1, "only the filler is placed: {stats:?}");
}

/// The fleet is one full worker `w0` and the engine has loaded its cache; then worker `w1`
/// registers and a request arrives. Returns the request's record once placed and how long
/// after the engine started (at or before it loaded its cache) that was.
async fn placed_after_a_new_worker_registers(
    strategy: Strategy,
    ttl: Duration,
) -> (ContainerRecord, u64) {
    let config = EngineConfig {
        cache_ttl: ttl,
        ..engine_config(strategy, "engine-0")
    };
    // The cache is loaded by the engine's first batch, at or after t0.
    let (store, engine, t0) = full_fleet(config, 2000).await;
    let w1 = WorkerId::new("w1").unwrap();
    store
        .register_worker(&WorkerRegistration {
            devices: Vec::new(),
            id: w1.clone(),
            pool: cpu_pool(),
            status: WorkerStatus::Available,
            total: Resources::new(2000, 2048, 0),
            gpu_type: None,
            runtime: RuntimeName::PROCESS,
        })
        .await
        .unwrap();
    drop(
        engine
            .submit(request("new", 1000, 0, engine.now_ms()))
            .await
            .unwrap(),
    );
    let id = cid("new");
    let placed = loop {
        let seen = record(&*store, &id).await;
        let elapsed = engine.now_ms() - t0;
        match seen.state {
            ContainerState::Scheduled => break (seen, elapsed),
            ContainerState::Pending => {}
            _ => panic!("{seen:?}"),
        }
        assert!(
            elapsed < 4 * ms(ttl),
            "not placed {elapsed} ms after the cache was loaded: {seen:?}"
        );
        tokio::time::sleep(STEP).await;
    };
    assert_eq!(placed.0.worker, Some(w1));
    assert_clean(&*store).await;
    engine.shutdown().await;
    placed
}

/// A request that finds no room in a cache older than `recheck_before_defer` looks again
/// at a fresh read of the fleet before it is deferred, so a worker that registered since is
/// used long before the cache's TTL.
#[tokio::test(start_paused = true)]
async fn batch_script_rechecks_a_stale_cache_before_deferring() {
    let ttl = Duration::from_secs(5);
    let (placed, elapsed) = placed_after_a_new_worker_registers(Strategy::BatchScript, ttl).await;
    assert!(
        elapsed < ms(ttl),
        "placed on the new worker only {elapsed} ms after the cache was loaded: {placed:?}"
    );
}

/// A request that finds no room in a cache older than `recheck_before_defer` looks again
/// at a fresh read of the fleet before it is deferred, so a worker that registered since is
/// used long before the cache's TTL.
#[tokio::test(start_paused = true)]
async fn batch_lock_rechecks_a_stale_cache_before_deferring() {
    let ttl = Duration::from_secs(5);
    let (placed, elapsed) = placed_after_a_new_worker_registers(Strategy::BatchLock, ttl).await;
    assert!(
        elapsed < ms(ttl),
        "placed on the new worker only {elapsed} ms after the cache was loaded: {placed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn serial_reads_the_fleet_each_time_and_uses_a_new_worker_at_once() {
    let ttl = Duration::from_secs(5);
    let (placed, elapsed) = placed_after_a_new_worker_registers(Strategy::Serial, ttl).await;
    assert!(
        elapsed < ms(ttl),
        "serial has no cache, yet waited {elapsed} ms: {placed:?}"
    );
}
