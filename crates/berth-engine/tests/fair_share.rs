//! Fair share between tenants through the engine: a light tenant's few requests, submitted
//! behind a heavy tenant's flood on a full fleet that frees room as containers end, are
//! placed long before the flood drains, because each batch goes first to the tenant that
//! holds the least (weighted dominant resource fairness).

#![allow(clippy::unwrap_used)]

mod common;

use berth_core::*;
use berth_engine::{Engine, EngineConfig, Strategy};
use berth_store::prelude::*;
use berth_store::*;
use common::*;
use std::time::Duration;

fn of(tenant: &str, prefix: &str, n: usize, at_ms: u64) -> Vec<ContainerRequest> {
    requests(prefix, n, 1000, 0, at_ms)
        .into_iter()
        .map(|r| ContainerRequest {
            tenant: tenant.to_owned(),
            ..r
        })
        .collect()
}

/// How long each placed one of `ids` waited to be placed (ms), for those placed so far.
async fn waits(store: &dyn Store, ids: &[ContainerId]) -> Vec<u64> {
    records(store, ids)
        .await
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r.scheduled_at_ms
                .map(|at| at.saturating_sub(r.request.submitted_at_ms))
        })
        .collect()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_light_tenant_is_not_starved_by_a_heavy_tenants_flood() {
    let store = Backend::Memory
        .store("fair-share", StoreConfig::default())
        .await;
    fleet(&*store, 2, 10_000, 65_536).await;
    let config = EngineConfig {
        backoff_cap: Duration::from_millis(200),
        ..engine_config(Strategy::BatchScript, "r")
    };
    let engine = Engine::start(store.clone(), config, Vec::new());
    let heavy = of("heavy", "h", 400, engine.now_ms());
    let heavy_ids = ids_of(&heavy);
    drop(engine.submit_many(heavy).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let light = of("light", "l", 10, engine.now_ms());
    let light_ids = ids_of(&light);
    drop(engine.submit_many(light).await.unwrap());
    // The fleet holds 20 at once; end the oldest placed ones as a worker would, a few at
    // a time, until every light request has been placed.
    let all: Vec<ContainerId> = heavy_ids.iter().chain(&light_ids).cloned().collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while waits(&*store, &light_ids).await.len() < light_ids.len() {
        assert!(tokio::time::Instant::now() < deadline, "light never placed");
        let placed: Vec<ContainerId> = records(&*store, &all)
            .await
            .into_iter()
            .flatten()
            .filter(|r| r.state == ContainerState::Scheduled)
            .map(|r| r.request.id)
            .take(4)
            .collect();
        for id in &placed {
            finish(&*store, id).await;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let light_p50 = median(waits(&*store, &light_ids).await);
    let heavy_done = waits(&*store, &heavy_ids).await.len();
    engine.shutdown().await;
    eprintln!("light p50 {light_p50} ms; heavy placed by then: {heavy_done} of 400");
    assert!(
        heavy_done < 200,
        "the light tenant waited for half the flood: {heavy_done} heavy placed first"
    );
    assert_clean(&*store).await;
}
