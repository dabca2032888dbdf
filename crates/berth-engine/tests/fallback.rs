//! Fallback chains through a running engine (on the memory store, and once on Redis), as
//! beta9's GPU failover chains behave: a request for a sold-out A100-80 that accepts an H100
//! after a wait waits that long and is then placed on the H100; without the step it keeps
//! waiting; and where its first choice frees up before the wait, it goes there.

#![allow(clippy::unwrap_used)]

mod common;

use berth_core::{
    ContainerRecord, ContainerRequest, ContainerState, FallbackStep, GpuPreference, GpuType, Pool,
    PoolAttributes, PoolName, Resources, RuntimeName, WorkerId, WorkerRegistration, WorkerStatus,
};
use berth_engine::{Engine, EngineConfig, Outcome};
use berth_store::{Store, StoreConfig};
use common::{Backend, assert_clean, engine_config, finish, outcome, record, request};
use std::sync::Arc;
use std::time::Duration;

/// The wait before the H100 step.
const STEP: Duration = Duration::from_millis(300);

/// One worker with one GPU of `gpu` in a pool of its own name.
async fn gpu_worker(store: &dyn Store, id: &str, gpu: GpuType) -> WorkerId {
    let id = WorkerId::new(id).unwrap();
    let registration = WorkerRegistration {
        devices: Vec::new(),
        id: id.clone(),
        pool: PoolAttributes::plain(PoolName::new(id.as_str()).unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(4000, 8192, 1),
        gpu_type: Some(gpu),
        runtime: RuntimeName::PROCESS,
    };
    store.register_worker(&registration).await.unwrap();
    id
}

/// One A100-80 for `id`, submitted at `at_ms`, with `fallback`.
fn a100_request(id: &str, at_ms: u64, fallback: Vec<FallbackStep>) -> ContainerRequest {
    ContainerRequest {
        resources: Resources::new(1000, 1024, 1),
        gpu: GpuPreference::Types(vec![GpuType::A100_80]),
        fallback,
        ..request(id, 1000, 0, at_ms)
    }
}

fn h100_after(wait: Duration) -> Vec<FallbackStep> {
    vec![FallbackStep {
        after_ms: u64::try_from(wait.as_millis()).unwrap(),
        pool: None,
        gpu: vec![GpuType::H100],
    }]
}

/// A fleet of one A100-80 worker, already full (its GPU taken by `filler`), and one free
/// H100 worker, under an engine whose backoff alone would not look again for seconds.
async fn sold_out_a100(config: EngineConfig) -> (Arc<dyn Store>, Engine) {
    sold_out_a100_with(&Backend::Memory, config, Vec::new()).await
}

/// [`sold_out_a100`] on `backend` with these configured pools.
async fn sold_out_a100_with(
    backend: &Backend,
    config: EngineConfig,
    pools: Vec<Pool>,
) -> (Arc<dyn Store>, Engine) {
    let store = backend.store("fallback", StoreConfig::default()).await;
    gpu_worker(&*store, "a100", GpuType::A100_80).await;
    gpu_worker(&*store, "h100", GpuType::H100).await;
    let engine = Engine::start(store.clone(), config, pools);
    let filler = a100_request("filler", engine.now_ms(), Vec::new());
    let placed = outcome(engine.submit(filler).await.unwrap()).await;
    assert!(matches!(placed, Outcome::Placed { ref worker } if worker.as_str() == "a100"));
    (store, engine)
}

fn slow_backoff() -> EngineConfig {
    EngineConfig {
        backoff_base: Duration::from_secs(5),
        backoff_cap: Duration::from_secs(5),
        ..engine_config(berth_engine::Strategy::BatchScript, "engine-0")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_a100_request_takes_an_h100_after_its_wait() {
    takes_an_h100_after_its_wait(&Backend::Memory).await;
}

/// The chain travels through the Redis store's intake, backlog and records too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_sold_out_a100_request_takes_an_h100_after_its_wait() {
    takes_an_h100_after_its_wait(&Backend::redis()).await;
}

async fn takes_an_h100_after_its_wait(backend: &Backend) {
    let (store, engine) = sold_out_a100_with(backend, slow_backoff(), Vec::new()).await;
    let submitted = engine.now_ms();
    let ticket = engine
        .submit(a100_request("wants-a100", submitted, h100_after(STEP)))
        .await
        .unwrap();
    let placed = outcome(ticket).await;
    let waited = Duration::from_millis(engine.now_ms() - submitted);
    assert!(
        matches!(placed, Outcome::Placed { ref worker } if worker.as_str() == "h100"),
        "{placed:?}"
    );
    assert!(waited >= STEP, "placed after {waited:?}, before its step");
    // Looked at again when the step fell due, not after the 5 s backoff.
    assert!(
        waited < Duration::from_secs(3),
        "placed only after {waited:?}"
    );
    assert_clean(&*store).await;
    engine.shutdown().await;
}

/// The operator's chain: pool `a100` falls back to pool `h100` after the wait, for every
/// request that selects `a100`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_chain_moves_its_requests_after_the_wait() {
    let a100 = Pool {
        attributes: PoolAttributes::plain(PoolName::new("a100").unwrap()),
        gpu_type: Some(GpuType::A100_80),
        worker_size: Resources::new(4000, 8192, 1),
        fallback: vec![FallbackStep {
            after_ms: u64::try_from(STEP.as_millis()).unwrap(),
            pool: Some(PoolName::new("h100").unwrap()),
            gpu: Vec::new(),
        }],
    };
    let (store, engine) = sold_out_a100_with(&Backend::Memory, slow_backoff(), vec![a100]).await;
    let submitted = engine.now_ms();
    let request = ContainerRequest {
        gpu: GpuPreference::Any,
        pool_selector: Some(PoolName::new("a100").unwrap()),
        ..a100_request("selects-a100", submitted, Vec::new())
    };
    let placed = outcome(engine.submit(request).await.unwrap()).await;
    let waited = Duration::from_millis(engine.now_ms() - submitted);
    assert!(
        matches!(placed, Outcome::Placed { ref worker } if worker.as_str() == "h100"),
        "{placed:?}"
    );
    assert!(
        STEP <= waited && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_clean(&*store).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_step_the_request_keeps_waiting() {
    let (store, engine) = sold_out_a100(slow_backoff()).await;
    let request = a100_request("only-a100", engine.now_ms(), Vec::new());
    let id = request.id.clone();
    drop(engine.submit(request).await.unwrap());
    tokio::time::sleep(STEP * 4).await;
    let seen: ContainerRecord = record(&*store, &id).await;
    assert_eq!(seen.state, ContainerState::Pending, "{seen:?}");
    assert!(seen.deferrals >= 1, "{seen:?}");
    assert_clean(&*store).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_choice_that_frees_up_before_the_wait_wins() {
    let config = EngineConfig {
        // Releases here bypass the engine: a short TTL lets its cache see them.
        cache_ttl: Duration::from_millis(100),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(200),
        ..engine_config(berth_engine::Strategy::BatchScript, "engine-0")
    };
    let (store, engine) = sold_out_a100(config).await;
    let ticket = engine
        .submit(a100_request(
            "patient",
            engine.now_ms(),
            h100_after(Duration::from_secs(30)),
        ))
        .await
        .unwrap();
    tokio::time::sleep(STEP).await;
    finish(&*store, &common::cid("filler")).await;
    let placed = outcome(ticket).await;
    assert!(
        matches!(placed, Outcome::Placed { ref worker } if worker.as_str() == "a100"),
        "{placed:?}"
    );
    assert_clean(&*store).await;
    engine.shutdown().await;
}
