//! Tenants' quotas through the engine: replicas racing on one store (the memory store and a
//! local 6-node Redis Cluster) never let a tenant hold more than its quota while its
//! containers start and end; a request over the quota waits with a `quota` reason and is
//! placed when room in the quota comes back; one that can never fit fails.

#![allow(clippy::unwrap_used)]

mod common;

use berth_core::quota::{Quota, Tenant};
use berth_core::*;
use berth_engine::{Engine, EngineConfig, Strategy};
use berth_localredis::LocalCluster;
use berth_store::prelude::*;
use berth_store::*;
use common::*;
use std::sync::Arc;
use std::time::Duration;

fn for_tenant(tenant: &str, prefix: &str, n: usize, at_ms: u64) -> Vec<ContainerRequest> {
    requests(prefix, n, 500, 0, at_ms)
        .into_iter()
        .map(|r| ContainerRequest {
            tenant: tenant.to_owned(),
            ..r
        })
        .collect()
}

fn limited(containers: u64) -> Tenant {
    Tenant {
        name: TenantName::new("acme").unwrap(),
        quota: Quota {
            containers: Some(containers),
            ..Quota::default()
        },
        weight: 1,
    }
}

fn quick(replica: &str) -> EngineConfig {
    EngineConfig {
        max_batch: 16,
        backoff_cap: Duration::from_millis(200),
        ..engine_config(Strategy::BatchScript, replica)
    }
}

/// How many of `ids` are scheduled or running.
async fn placed(store: &dyn Store, ids: &[ContainerId]) -> (u64, Vec<ContainerId>) {
    let mut live = Vec::new();
    for (id, record) in ids.iter().zip(records(store, ids).await) {
        if record
            .is_some_and(|r| matches!(r.state, ContainerState::Scheduled | ContainerState::Running))
        {
            live.push(id.clone());
        }
    }
    (live.len() as u64, live)
}

/// Three replicas place 60 containers of a tenant limited to 8 at once, on a fleet with room
/// for all, while the test ends each placed container: at no sample does the tenant hold
/// more than 8, all 60 run in the end, and the store is clean with nothing charged.
async fn replicas_keep_a_tenant_within_its_quota(stores: Vec<Arc<dyn Store>>) {
    let store = stores[0].clone();
    fleet(&*store, 6, 16_000, 65_536).await;
    let limit = 8;
    store.put_tenant(&limited(limit)).await.unwrap();
    let engines: Vec<Engine> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| Engine::start(s.clone(), quick(&format!("r{i}")), Vec::new()))
        .collect();
    let now = engines[0].now_ms();
    let acme = for_tenant("acme", "a", 60, now);
    let other = for_tenant("other", "o", 30, now);
    let ids = ids_of(&acme);
    for (i, chunk) in acme.chunks(10).enumerate() {
        drop(
            engines[i % engines.len()]
                .submit_many(chunk.to_vec())
                .await
                .unwrap(),
        );
    }
    drop(engines[1].submit_many(other.clone()).await.unwrap());
    let mut finished = 0;
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while finished < ids.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {finished} finished"
        );
        let (count, live) = placed(&*store, &ids).await;
        assert!(count <= limit, "tenant acme holds {count} > {limit}");
        let usage = store.usage().await.unwrap();
        let held = usage
            .iter()
            .find(|(t, _)| t == "acme")
            .map_or(0, |(_, u)| u.containers);
        assert!(held <= limit, "usage {held} > {limit}");
        most = most.max(count);
        for id in live.iter().take(3) {
            finish(&*store, id).await;
            finished += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most, limit, "the quota was filled, not just respected");
    let others = ids_of(&other);
    let others_placed = placed(&*store, &others).await.0;
    assert_eq!(
        others_placed, 30,
        "a tenant without a quota is not held back"
    );
    for id in &others {
        finish(&*store, id).await;
    }
    for engine in engines {
        engine.shutdown().await;
    }
    assert_clean(&*store).await;
    assert!(
        store.usage().await.unwrap().is_empty(),
        "nothing stays charged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_a_tenant_within_its_quota_on_the_memory_store() {
    let stores = Backend::Memory
        .stores("quota-memory", StoreConfig::default(), 3)
        .await;
    replicas_keep_a_tenant_within_its_quota(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_a_tenant_within_its_quota_on_redis_cluster() {
    let cluster = Arc::new(LocalCluster::start().unwrap_or_else(|e| panic!("{e}")));
    let config = StoreConfig {
        prefix: format!("q{}", std::process::id()),
        ..StoreConfig::default()
    };
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::connect_cluster(&cluster.urls(), config.clone())
            .await
            .unwrap();
        assert!(store.is_cluster());
        stores.push(Arc::new(store));
    }
    replicas_keep_a_tenant_within_its_quota(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_quota_waits_and_never_within_it_fails() {
    let store = Backend::Memory
        .store("quota-wait", StoreConfig::default())
        .await;
    fleet(&*store, 2, 16_000, 65_536).await;
    let mut tenant = limited(1);
    tenant.quota.cpu_millicores = Some(4000);
    store.put_tenant(&tenant).await.unwrap();
    let engine = Engine::start(store.clone(), quick("r"), Vec::new());
    let now = engine.now_ms();
    let pair = for_tenant("acme", "p", 2, now);
    let mut huge = for_tenant("acme", "huge", 1, now).remove(0);
    huge.resources.cpu_millicores = 5000;
    drop(engine.submit_many(pair.clone()).await.unwrap());
    let failed = outcome(engine.submit(huge.clone()).await.unwrap()).await;
    let berth_engine::Outcome::Failed { reason } = failed else {
        panic!("5 cores never fit a quota of 4: {failed:?}");
    };
    assert!(reason.contains("never run within this quota"), "{reason}");
    let ids = ids_of(&pair);
    let (store_ref, ids_ref) = (&store, &ids);
    let waiting = eventually(
        "one placed, one waiting for the quota",
        WAIT,
        || async move {
            let records = records(&**store_ref, ids_ref).await;
            let states: Vec<(ContainerState, Option<String>)> = records
                .into_iter()
                .map(|r| r.map(|r| (r.state, r.reason)).unwrap())
                .collect();
            let waits = |(s, r): &(ContainerState, Option<String>)| {
                *s == ContainerState::Pending
                    && r.as_deref().is_some_and(|r| r.starts_with("quota:"))
            };
            match states.iter().position(waits) {
                Some(i) if states[1 - i].0 == ContainerState::Scheduled => Ok(i),
                _ => Err(format!("{states:?}")),
            }
        },
    )
    .await;
    let (done, next) = if waiting == 0 {
        (&pair[1].id, &pair[0].id)
    } else {
        (&pair[0].id, &pair[1].id)
    };
    finish(&*store, done).await;
    eventually(
        "the waiting one placed once room in the quota came back",
        WAIT,
        || async {
            let r = record(&*store, next).await;
            if r.state == ContainerState::Scheduled {
                Ok(())
            } else {
                Err(format!("{:?}", r.state))
            }
        },
    )
    .await;
    let demand = store.unmet_demand().await.unwrap();
    assert!(
        demand.is_empty(),
        "waiting for a quota is not unmet demand: {demand:?}"
    );
    engine.shutdown().await;
    assert_clean(&*store).await;
}
