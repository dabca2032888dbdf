//! Engine behaviour on the Redis store: the shared scenarios of `common/scenarios.rs` with
//! [`Backend::redis`] (one local redis-server shared by the tests of this binary that run
//! at the same time, one key prefix per test).

#![allow(clippy::unwrap_used)]

mod common;

use berth_engine::Strategy;
use common::Backend;
use common::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_places_the_seed_workload() {
    scenarios::every_strategy_places_the_seed_workload(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_script_spreads_the_seed_workload_exactly() {
    scenarios::batch_script_spreads_the_seed_workload_exactly(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_batch_script_replicas_fill_an_oversubscribed_fleet_exactly() {
    scenarios::four_replicas_oversubscribed(&Backend::redis(), Strategy::BatchScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_batch_lock_replicas_fill_an_oversubscribed_fleet_exactly() {
    scenarios::four_replicas_oversubscribed(&Backend::redis(), Strategy::BatchLock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_aborted_before_its_commit_loses_nothing() {
    for strategy in Strategy::ALL {
        scenarios::aborted_replica_loses_nothing(&Backend::redis(), strategy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_capacity_goes_to_the_highest_priority() {
    scenarios::released_capacity_goes_to_the_highest_priority(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopeless_requests_fail_at_once() {
    scenarios::hopeless_requests_fail_at_once(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_race_for_a_nearly_full_fleet() {
    scenarios::two_replicas_race_for_a_nearly_full_fleet(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused() {
    scenarios::invalid_requests_are_refused(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_does_not_place_twice() {
    scenarios::a_stalled_replica_does_not_place_twice(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drained_behind_the_cache_gets_nothing() {
    for strategy in [Strategy::BatchScript, Strategy::BatchLock] {
        scenarios::a_worker_drained_behind_the_cache_gets_nothing(&Backend::redis(), strategy)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_submissions_are_placed_once() {
    scenarios::duplicate_submissions_are_placed_once(&Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_script_packs_the_seed_workload() {
    scenarios::batch_script_packs_the_seed_workload(&Backend::redis()).await;
}
