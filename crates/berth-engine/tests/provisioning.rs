//! Unmet demand and provisioning: requests that find no room are counted against the pool
//! that should grow, a pool controller is asked to grow it once however many replicas run,
//! and the new workers take the waiting requests; workers started and not registered yet
//! count toward the demand, so a burst is provisioned for once; an idle worker is drained
//! and handed back to the controller.

#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use berth_core::*;
use berth_engine::*;
use berth_store::prelude::*;
use berth_store::*;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An autoscaler stand-in: registers the asked-for workers right away and remembers every
/// call.
struct Autoscaler {
    store: Arc<dyn Store>,
    calls: Mutex<Vec<(PoolName, u32)>>,
}

#[async_trait]
impl PoolController for Autoscaler {
    async fn add_workers(
        &self,
        pool: &Pool,
        _demand: &PoolDemand,
        count: u32,
    ) -> Result<Vec<WorkerId>, String> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((pool.attributes.pool.clone(), count));
            calls.len() * 100
        };
        for i in 0..count as usize {
            let registration = WorkerRegistration {
                devices: Vec::new(),
                id: WorkerId::new(format!("{}-new-{}", pool.attributes.pool, first + i)).unwrap(),
                pool: pool.attributes.clone(),
                status: WorkerStatus::Available,
                total: pool.worker_size,
                gpu_type: pool.gpu_type.clone(),
                runtime: RuntimeName::PROCESS,
            };
            self.store
                .register_worker(&registration)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Vec::new())
    }
}

fn cpu_pool_config() -> Pool {
    Pool {
        attributes: cpu_pool(),
        gpu_type: None,
        worker_size: Resources::new(4000, 16_384, 0),
        fallback: Vec::new(),
    }
}

async fn two_replicas_provision_once(backend: &Backend) {
    let stores = backend.stores("provision", StoreConfig::default(), 2).await;
    fleet(&*stores[0], 1, 4000, 16_384).await;
    let autoscaler = Arc::new(Autoscaler {
        store: stores[0].clone(),
        calls: Mutex::new(Vec::new()),
    });
    let config = |replica: &str| EngineConfig {
        provision_every: Duration::from_millis(100),
        provision_ttl: Duration::from_secs(3600),
        backoff_cap: Duration::from_millis(200),
        cache_ttl: Duration::from_millis(200),
        ..engine_config(Strategy::BatchScript, replica)
    };
    let engines: Vec<Engine> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let controller: Arc<dyn PoolController> = autoscaler.clone();
            Engine::start_with_controller(
                store.clone(),
                config(&format!("r{i}")),
                vec![cpu_pool_config()],
                Some(controller),
            )
        })
        .collect();
    // 12 one-core requests: 4 fit the one worker, 8 wait for two more workers.
    let now = engines[0].now_ms();
    let batch = requests("p", 12, 1000, 0, now);
    let ids = ids_of(&batch);
    engines[0].submit_many(batch).await.unwrap();
    let store = stores[0].clone();
    all_scheduled(&*store, &ids).await;
    let calls = autoscaler.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![(PoolName::new("cpu").unwrap(), 2)],
        "one replica provisions, once, for the demand"
    );
    assert!(store.unmet_demand().await.unwrap().is_empty());
    assert_clean(&*store).await;
    for engine in engines {
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_two_replicas_provision_once_and_the_new_workers_take_the_backlog() {
    two_replicas_provision_once(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_replicas_provision_once_and_the_new_workers_take_the_backlog() {
    two_replicas_provision_once(&Backend::redis()).await;
}

/// A controller that starts workers which register only when the test says so, and
/// remembers every call; its pool's workers may idle for `idle`.
struct Slow {
    adds: Mutex<Vec<u32>>,
    removed: Mutex<Vec<WorkerId>>,
    idle: Option<Duration>,
}

impl Slow {
    fn new(idle: Option<Duration>) -> Arc<Slow> {
        Arc::new(Slow {
            adds: Mutex::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
            idle,
        })
    }

    /// The counts it was asked for, call by call (a copy: an assertion on it must not
    /// hold the lock the engine's calls take).
    fn adds(&self) -> Vec<u32> {
        self.adds.lock().unwrap().clone()
    }

    /// Waits until it has been called `calls` times.
    async fn wait_for_adds(&self, calls: usize) {
        eventually("the controller called", WAIT, || async move {
            let adds = self.adds();
            if adds.len() >= calls {
                Ok(())
            } else {
                Err(format!("{adds:?}"))
            }
        })
        .await;
    }
}

#[async_trait]
impl PoolController for Slow {
    async fn add_workers(
        &self,
        pool: &Pool,
        _demand: &PoolDemand,
        count: u32,
    ) -> Result<Vec<WorkerId>, String> {
        let mut adds = self.adds.lock().unwrap();
        adds.push(count);
        let call = adds.len();
        Ok((0..count)
            .map(|i| WorkerId::new(format!("{}-slow-{call}-{i}", pool.attributes.pool)).unwrap())
            .collect())
    }

    fn idle_timeout(&self, _pool: &PoolName) -> Option<Duration> {
        self.idle
    }

    async fn remove_workers(&self, _pool: &Pool, workers: &[WorkerId]) -> Result<(), String> {
        self.removed.lock().unwrap().extend_from_slice(workers);
        Ok(())
    }
}

/// Waits until every one of `ids` is scheduled.
async fn all_scheduled(store: &dyn Store, ids: &[ContainerId]) {
    eventually("every request placed", WAIT, || async move {
        let tally = tally(store, ids).await;
        if tally.scheduled == ids.len() {
            Ok(())
        } else {
            Err(tally.brief())
        }
    })
    .await;
}

/// An engine config that provisions every 50 ms with an intent that lasts only 100 ms, so
/// only the pending workers hold off a second provisioning.
fn eager(replica: &str) -> EngineConfig {
    EngineConfig {
        provision_every: Duration::from_millis(50),
        provision_ttl: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(200),
        cache_ttl: Duration::from_millis(200),
        ..engine_config(Strategy::BatchScript, replica)
    }
}

fn register(pool: &Pool, id: &WorkerId) -> WorkerRegistration {
    WorkerRegistration {
        devices: Vec::new(),
        id: id.clone(),
        pool: pool.attributes.clone(),
        status: WorkerStatus::Available,
        total: pool.worker_size,
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
    }
}

async fn a_burst_is_provisioned_for_once(backend: &Backend) {
    let stores = backend.stores("burst", StoreConfig::default(), 2).await;
    let slow = Slow::new(None);
    let engines: Vec<Engine> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let controller: Arc<dyn PoolController> = slow.clone();
            let config = eager(&format!("r{i}"));
            Engine::start_with_controller(
                store.clone(),
                config,
                vec![cpu_pool_config()],
                Some(controller),
            )
        })
        .collect();
    // 8 one-core requests and no worker: two 4-core workers.
    let now = engines[0].now_ms();
    let batch = requests("b", 8, 1000, 0, now);
    let ids = ids_of(&batch);
    engines[0].submit_many(batch).await.unwrap();
    slow.wait_for_adds(1).await;
    // Many provisioning rounds and intent TTLs pass while the workers are on their way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slow.adds(), vec![2], "provisioned once");
    let store = stores[0].clone();
    let started = store.provisioned(&cpu_pool().pool).await.unwrap();
    assert_eq!(started.len(), 2, "{started:?}");
    for pending in &started {
        store
            .register_worker(&register(&cpu_pool_config(), &pending.worker))
            .await
            .unwrap();
    }
    all_scheduled(&*store, &ids).await;
    assert_eq!(slow.adds(), vec![2], "still once");
    eventually("the registered workers forgotten as pending", WAIT, || {
        let store = store.clone();
        async move {
            let left = store.provisioned(&cpu_pool().pool).await.unwrap();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        }
    })
    .await;
    for engine in engines {
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_burst_is_provisioned_for_once() {
    a_burst_is_provisioned_for_once(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_burst_is_provisioned_for_once() {
    a_burst_is_provisioned_for_once(&Backend::redis()).await;
}

/// One engine with `controller`; the backlog's waits are `backoff`, and a request that
/// finds no room is planned again on a fresh read of the fleet before it waits (so a
/// worker registered by the test is seen by the next request).
fn engine_with(
    store: &Arc<dyn Store>,
    controller: Arc<dyn PoolController>,
    backoff: Duration,
) -> Engine {
    let config = EngineConfig {
        backoff_base: backoff,
        backoff_cap: backoff,
        recheck_before_defer: Duration::ZERO,
        ..eager("r0")
    };
    Engine::start_with_controller(
        store.clone(),
        config,
        vec![cpu_pool_config()],
        Some(controller),
    )
}

/// Requests that are due again at once spend nearly all their time in the backlog's
/// promotion, claim and deferral; the demand (the backlog) must be read before a promotion
/// takes them out of it, or it is seen only by chance.
async fn requests_due_at_once_are_still_demand(backend: &Backend) {
    let store = backend.store("due", StoreConfig::default()).await;
    let slow = Slow::new(None);
    let engine = engine_with(&store, slow.clone(), Duration::from_millis(1));
    let now = engine.now_ms();
    engine
        .submit_many(requests("d", 4, 1000, 0, now))
        .await
        .unwrap();
    slow.wait_for_adds(1).await;
    assert_eq!(
        slow.adds()[0],
        1,
        "four one-core requests: one 4-core worker"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_requests_due_at_once_are_still_demand() {
    requests_due_at_once_are_still_demand(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_requests_due_at_once_are_still_demand() {
    requests_due_at_once_are_still_demand(&Backend::redis()).await;
}

/// Workers a controller registers itself (naming none as started) are empty until the
/// backlog is tried on them again; an empty worker of the pool counts toward the demand,
/// so the provisioning intent's expiry meanwhile does not provision again.
async fn empty_workers_count_toward_the_demand(backend: &Backend) {
    let store = backend.store("empty", StoreConfig::default()).await;
    let autoscaler = Arc::new(Autoscaler {
        store: store.clone(),
        calls: Mutex::new(Vec::new()),
    });
    let calls = || autoscaler.calls.lock().unwrap().clone();
    let engine = engine_with(&store, autoscaler.clone(), Duration::from_secs(2));
    let now = engine.now_ms();
    let batch = requests("e", 8, 1000, 0, now);
    let ids = ids_of(&batch);
    engine.submit_many(batch).await.unwrap();
    eventually("the controller called", WAIT, || async {
        if calls().is_empty() {
            Err("no call".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    // Many intent expiries (100 ms) pass before the backlog is tried again (2 s).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let once = vec![(cpu_pool().pool, 2)];
    assert_eq!(calls(), once, "the registered empty workers count");
    all_scheduled(&*store, &ids).await;
    assert_eq!(calls(), once, "still once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_empty_workers_count_toward_the_demand() {
    empty_workers_count_toward_the_demand(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_empty_workers_count_toward_the_demand() {
    empty_workers_count_toward_the_demand(&Backend::redis()).await;
}

/// A started worker that registers and takes other work before the backlog is tried on it
/// still counts toward the demand until the backlog's longest wait has passed: the
/// backlog read in the meantime is the demand the worker was started for.
async fn a_registered_worker_counts_until_the_backlog_is_tried_on_it(backend: &Backend) {
    let store = backend.store("settling", StoreConfig::default()).await;
    let slow = Slow::new(None);
    // The backlog waits 2 s: long enough for many provisioning rounds in between.
    let engine = engine_with(&store, slow.clone(), Duration::from_secs(2));
    let now = engine.now_ms();
    let batch = requests("b", 7, 1000, 0, now);
    let mut ids = ids_of(&batch);
    engine.submit_many(batch).await.unwrap();
    slow.wait_for_adds(1).await;
    assert_eq!(
        slow.adds(),
        vec![2],
        "seven one-core requests: two 4-core workers"
    );
    let started = store.provisioned(&cpu_pool().pool).await.unwrap();
    assert_eq!(started.len(), 2, "{started:?}");
    let pool = cpu_pool_config();
    store
        .register_worker(&register(&pool, &started[0].worker))
        .await
        .unwrap();
    // New work of a higher priority (a later one of the same would wait behind the eight)
    // lands on the first worker at once; the seven wait in the backlog.
    let extra = requests("x", 1, 1000, 5, engine.now_ms());
    let extra_id = ids_of(&extra);
    engine.submit_many(extra).await.unwrap();
    all_scheduled(&*store, &extra_id).await;
    // Several provisioning rounds see the first worker busy and the backlog unchanged.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(slow.adds(), vec![2], "the registered worker still counts");
    store
        .register_worker(&register(&pool, &started[1].worker))
        .await
        .unwrap();
    ids.extend(extra_id);
    all_scheduled(&*store, &ids).await;
    assert_eq!(slow.adds(), vec![2], "still once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_registered_worker_counts_until_the_backlog_is_tried_on_it() {
    a_registered_worker_counts_until_the_backlog_is_tried_on_it(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_registered_worker_counts_until_the_backlog_is_tried_on_it() {
    a_registered_worker_counts_until_the_backlog_is_tried_on_it(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_drained_and_removed_and_a_busy_one_kept() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let pool = cpu_pool_config();
    let (idle, busy) = (
        WorkerId::new("idle").unwrap(),
        WorkerId::new("busy").unwrap(),
    );
    for id in [&idle, &busy] {
        store.register_worker(&register(&pool, id)).await.unwrap();
    }
    let slow = Slow::new(Some(Duration::from_millis(300)));
    let controller: Arc<dyn PoolController> = slow.clone();
    let engine =
        Engine::start_with_controller(store.clone(), eager("r0"), vec![pool], Some(controller));
    // A long request keeps one worker busy; it is never removed.
    let now = engine.now_ms();
    engine
        .submit_many(requests("long", 1, 1000, 0, now))
        .await
        .unwrap();
    eventually("the idle worker removed", WAIT, || {
        let slow = slow.clone();
        async move {
            let removed = slow.removed.lock().unwrap().clone();
            if removed.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(())
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removed = slow.removed.lock().unwrap().clone();
    let (kept, gone) = if removed == [idle.clone()] {
        (&busy, &idle)
    } else {
        (&idle, &busy)
    };
    assert_eq!(removed, vec![gone.clone()], "exactly the idle one");
    let status = |w: Option<Worker>| w.unwrap().status;
    assert_eq!(
        status(store.worker(gone).await.unwrap()),
        WorkerStatus::Draining
    );
    assert_eq!(
        status(store.worker(kept).await.unwrap()),
        WorkerStatus::Available
    );
    assert_eq!(
        store.owned(kept).await.unwrap().len(),
        1,
        "the busy one holds the request"
    );
    engine.shutdown().await;
}
