//! Engine behaviour on the embedded in-memory store: the shared scenarios of
//! `common/scenarios.rs` with [`Backend::Memory`].

#![allow(clippy::unwrap_used)]

mod common;

use berth_engine::Strategy;
use common::Backend;
use common::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_places_the_seed_workload() {
    scenarios::every_strategy_places_the_seed_workload(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_script_spreads_the_seed_workload_exactly() {
    scenarios::batch_script_spreads_the_seed_workload_exactly(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_batch_script_replicas_fill_an_oversubscribed_fleet_exactly() {
    scenarios::four_replicas_oversubscribed(&Backend::Memory, Strategy::BatchScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_batch_lock_replicas_fill_an_oversubscribed_fleet_exactly() {
    scenarios::four_replicas_oversubscribed(&Backend::Memory, Strategy::BatchLock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_aborted_before_its_commit_loses_nothing() {
    for strategy in Strategy::ALL {
        scenarios::aborted_replica_loses_nothing(&Backend::Memory, strategy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_capacity_goes_to_the_highest_priority() {
    scenarios::released_capacity_goes_to_the_highest_priority(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopeless_requests_fail_at_once() {
    scenarios::hopeless_requests_fail_at_once(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_race_for_a_nearly_full_fleet() {
    scenarios::two_replicas_race_for_a_nearly_full_fleet(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused() {
    scenarios::invalid_requests_are_refused(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_does_not_place_twice() {
    scenarios::a_stalled_replica_does_not_place_twice(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drained_behind_the_cache_gets_nothing() {
    for strategy in [Strategy::BatchScript, Strategy::BatchLock] {
        scenarios::a_worker_drained_behind_the_cache_gets_nothing(&Backend::Memory, strategy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_submissions_are_placed_once() {
    scenarios::duplicate_submissions_are_placed_once(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_script_packs_the_seed_workload() {
    scenarios::batch_script_packs_the_seed_workload(&Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tickets_leave_no_waiters_behind() {
    use berth_core::{Pool, PoolAttributes, PoolName, Resources};
    use berth_engine::{Engine, EngineConfig};
    use berth_store::{MemoryStore, Store};
    use common::request;
    use std::sync::Arc;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    // No workers, but a pool that could grow to hold it: the request waits (deferred, not
    // failed as it would be with no pool at all, which would remove its waiter before the
    // first assertion), so only the dropped ticket could remove its waiter.
    let pool = Pool {
        attributes: PoolAttributes::plain(PoolName::new("default").unwrap()),
        gpu_type: None,
        worker_size: Resources::new(4000, 8192, 0),
        fallback: Vec::new(),
    };
    let engine = Engine::start(store.clone(), EngineConfig::default(), vec![pool]);
    let ticket = engine
        .submit(request("lonely", 1000, 0, engine.now_ms()))
        .await
        .unwrap();
    assert_eq!(engine.waiting_submitters(), 1);
    drop(ticket);
    assert_eq!(engine.waiting_submitters(), 0);
    engine.shutdown().await;
}
