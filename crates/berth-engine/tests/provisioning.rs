//! Unmet demand and provisioning: requests that find no room are counted against the pool
//! that should grow, a pool controller is asked to grow it once however many replicas run,
//! and the new workers take the waiting requests.

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
    async fn add_workers(&self, pool: &Pool, count: u32) -> Result<(), String> {
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
        Ok(())
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
    let ids_ref = &ids;
    eventually("every request placed on provisioned workers", WAIT, || {
        let store = store.clone();
        async move {
            let tally = tally(&*store, ids_ref).await;
            if tally.scheduled == 12 {
                Ok(())
            } else {
                Err(tally.brief())
            }
        }
    })
    .await;
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
