//! The worker protocol and the reaper through the API on the Redis store (a local
//! redis-server, one key prefix per test).
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use berth_api::{ContainerSpec, HeartbeatRequest, ReportedState, StatusReport};
use berth_core::{ContainerId, WorkerStatus};
use berth_localredis::LocalRedis;
use berth_server::reap_once;
use berth_store::{ContainerState, RedisStore, Store, StoreConfig};
use common::Server;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A redis-server shared by the tests of this binary that run at the same time.
fn redis() -> Arc<LocalRedis> {
    static SERVER: Mutex<Weak<LocalRedis>> = Mutex::new(Weak::new());
    let mut slot = SERVER.lock().unwrap();
    if let Some(server) = slot.upgrade() {
        return server;
    }
    let server = Arc::new(
        LocalRedis::start().unwrap_or_else(|error| panic!("starting redis-server: {error}")),
    );
    *slot = Arc::downgrade(&server);
    server
}

/// A server whose store and engine are two clients of the same Redis keys (as two replicas
/// would be), so the server's store counts only the server's round trips.
async fn server(redis: &LocalRedis, test: &str) -> Server {
    let config = StoreConfig {
        prefix: format!("api:{test}:{}", std::process::id()),
        ..StoreConfig::default()
    };
    let connect = || async {
        let store = RedisStore::connect(&redis.url(), config.clone())
            .await
            .unwrap();
        Arc::new(store) as Arc<dyn Store>
    };
    Server::start_on(connect().await, Some(connect().await), common::config()).await
}

fn cid(id: &str) -> ContainerId {
    ContainerId::new(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_a_container_on_redis() {
    let redis = redis();
    let server = server(&redis, "flow").await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    client
        .heartbeat(
            &w1,
            &HeartbeatRequest {
                epoch: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut job = ContainerSpec::new(1000, 1024, vec!["true".into()]);
    job.id = Some("r-1".into());
    client.submit(&job).await.unwrap();
    assert!(client.submit(&job).await.unwrap().duplicate);

    let started = Instant::now();
    let delivered = client
        .assignments(&w1, 1, 8, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(delivered.len(), 1);
    let attempt = delivered[0].attempt.clone();
    client.ack(&w1, 1, &delivered[0].delivery).await.unwrap();
    server.wait_for(&cid("r-1"), "scheduled").await;
    let report = |state, exit_code, logs: Vec<String>| StatusReport {
        worker: w1.clone(),
        attempt: attempt.clone(),
        epoch: 1,
        state,
        exit_code,
        reason: None,
        logs,
    };
    client
        .report(&cid("r-1"), &report(ReportedState::Running, None, vec![]))
        .await
        .unwrap();
    let lines = vec!["out".to_owned()];
    let exited = client
        .report(
            &cid("r-1"),
            &report(ReportedState::Exited, Some(0), lines.clone()),
        )
        .await
        .unwrap();
    assert_eq!(exited.state, ContainerState::Exited);
    assert_eq!(client.logs(&cid("r-1")).await.unwrap().lines, lines);
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.free, worker.total);
    assert!(client.check().await.unwrap().violations.is_empty());

    // Nothing to deliver: the long-poll blocks in Redis, it does not poll.
    let before = server.store.stats().snapshot();
    let started = Instant::now();
    let empty = client
        .assignments(&w1, 1, 8, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(empty.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    let spent = server.store.stats().snapshot().since(&before);
    assert!(spent.round_trips <= 3, "{spent:?}");
    server.stop().await;
}

/// Regression: `reclaim` requeues the record before it releases the reservation; in between
/// the engine may plan the requeued request on the lost worker from a stale cache. The commit
/// must not take the old attempt's ownership for a retry (it is rejected as owned under
/// another attempt), or the record would end scheduled on a worker that does not own it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_reclaims_on_redis() {
    let redis = redis();
    let server = server(&redis, "reap").await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    for id in ["s-1", "r-1"] {
        let mut job = ContainerSpec::new(1000, 1024, vec!["true".into()]);
        job.id = Some(id.into());
        client.submit(&job).await.unwrap();
    }
    server.wait_for(&cid("s-1"), "scheduled").await;
    let running = server.wait_for(&cid("r-1"), "scheduled").await;
    client
        .report(
            &cid("r-1"),
            &StatusReport {
                worker: w1.clone(),
                attempt: running.attempt.clone().unwrap(),
                epoch: 1,
                state: ReportedState::Running,
                exit_code: None,
                reason: None,
                logs: vec![],
            },
        )
        .await
        .unwrap();
    let later = server.state.now_ms() + 60_000;
    let report = reap_once(&server.state, later).await.unwrap();
    assert_eq!(report.lost_workers, vec![w1.clone()]);
    assert_eq!((report.requeued, report.lost_containers), (1, 1));
    let s1 = client.container(&cid("s-1")).await.unwrap();
    assert_eq!(s1.state, ContainerState::Pending, "{s1:?}");
    assert_eq!(
        client.container(&cid("r-1")).await.unwrap().state,
        ContainerState::Lost
    );
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.status, WorkerStatus::Lost);
    assert_eq!(worker.free, worker.total);
    let again = reap_once(&server.state, later).await.unwrap();
    assert_eq!(again, berth_server::ReapReport::default());
    server.assert_clean().await;
    server.stop().await;
}

/// Listing the workers reads the fleet once (not once for the workers and again for the
/// quarantined ones), and showing one worker reads its own heartbeat, not every worker's:
/// its cost does not grow with the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reads_do_not_repeat_or_grow_with_the_fleet() {
    let redis = redis();
    let server = server(&redis, "reads").await;
    let stats = server.store.stats();
    server.register("w0", 4000, 8192).await;
    let before = stats.snapshot();
    server
        .client
        .worker(&berth_core::WorkerId::new("w0").unwrap())
        .await
        .unwrap();
    let alone = stats.snapshot().since(&before);
    for i in 1..6 {
        server.register(&format!("w{i}"), 4000, 8192).await;
    }
    let before = stats.snapshot();
    server
        .client
        .worker(&berth_core::WorkerId::new("w0").unwrap())
        .await
        .unwrap();
    let in_a_fleet = stats.snapshot().since(&before);
    assert_eq!(
        (in_a_fleet.commands, in_a_fleet.round_trips),
        (alone.commands, alone.round_trips),
        "GET /v1/workers/w0 costs more in a fleet of 6"
    );

    let before = stats.snapshot();
    let listed = server.client.worker_list().await.unwrap();
    let listing = stats.snapshot().since(&before);
    assert_eq!(listed.workers.len(), 6);
    assert_eq!(
        listing.worker_reads, 6,
        "each worker record read once: {listing:?}"
    );
    server.stop().await;
}
