//! The contract suite against `RedisStore` on a local 6-node Redis Cluster (3 primaries,
//! 3 replicas), plus cluster-specific tests: per-slot pipelines are still one round trip,
//! scripts reload on every node, and commits survive the failover of a primary.
//! They start local redis-server processes and fail (never skip) when redis is missing.

#![allow(clippy::unwrap_used)]

mod contract;

use berth_core::*;
use berth_localredis::{LocalCluster, key_slot};
use berth_store::prelude::*;
use berth_store::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The cluster the tests of this binary share (each test uses its own key prefix): started
/// on first use, killed when the last test runtime holding it ends. The failover test
/// starts its own, since it kills a node.
fn shared_cluster() -> Arc<LocalCluster> {
    static SHARED: Mutex<Weak<LocalCluster>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = slot.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(LocalCluster::start().unwrap_or_else(|e| panic!("{e}")));
    *slot = Arc::downgrade(&cluster);
    cluster
}

/// Keeps the cluster alive until the current test's runtime shuts down.
fn hold_for_this_test(cluster: Arc<LocalCluster>) {
    tokio::spawn(async move {
        let _held = cluster;
        std::future::pending::<()>().await;
    });
}

async fn connect(config: StoreConfig) -> Arc<dyn Store> {
    Arc::new(client(config).await)
}

async fn client(config: StoreConfig) -> RedisStore {
    let cluster = shared_cluster();
    let store = RedisStore::connect_cluster(&cluster.urls(), config)
        .await
        .unwrap();
    assert!(store.is_cluster());
    hold_for_this_test(cluster);
    store
}

contract_tests!(connect);

// ----- cluster-specific tests -----

fn config(case: &str) -> StoreConfig {
    StoreConfig {
        prefix: format!("rc{}:{case}", rand::random::<u32>()),
        claim_visibility: Duration::from_millis(300),
        redelivery: Duration::from_millis(300),
        ..StoreConfig::default()
    }
}

fn wid(id: &str) -> WorkerId {
    WorkerId::new(id).unwrap()
}

fn registration(id: &WorkerId, cpu: u64) -> WorkerRegistration {
    WorkerRegistration {
        devices: Vec::new(),
        id: id.clone(),
        pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(cpu, cpu, 0),
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
    }
}

fn reservation(container: &str) -> Reservation {
    Reservation {
        devices: Vec::new(),
        container: ContainerId::new(container).unwrap(),
        attempt: AttemptId(format!("a-{container}")),
        resources: Resources::new(1, 1, 0),
        payload: Payload::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_every_primary_is_one_round_trip() {
    let store = client(config("one-trip")).await;
    let ids: Vec<WorkerId> = (0..20).map(|w| wid(&format!("w{w}"))).collect();
    let slots: BTreeSet<u16> = ids
        .iter()
        .map(|id| key_slot(store.keys().worker(id).as_bytes()))
        .collect();
    assert!(slots.len() > 10, "the workers spread over slots: {slots:?}");
    for id in &ids {
        store
            .register_worker(&registration(id, 100_000))
            .await
            .unwrap();
    }
    let groups: Vec<CommitGroup> = ids
        .iter()
        .map(|id| CommitGroup {
            worker: id.clone(),
            reservations: (0..5).map(|c| reservation(&format!("{id}-c{c}"))).collect(),
        })
        .collect();
    let before = store.stats().snapshot();
    let out = store.commit(&groups).await.unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert!(
        out.iter()
            .all(|o| matches!(o, CommitOutcome::Committed { .. })),
        "{out:?}"
    );
    assert_eq!(
        (spent.round_trips, spent.script_calls),
        (1, 20),
        "{spent:?}"
    );

    let before = store.stats().snapshot();
    assert_eq!(store.workers().await.unwrap().len(), 20);
    let spent = store.stats().snapshot().since(&before);
    assert_eq!(
        (spent.round_trips, spent.worker_reads),
        (2, 20),
        "{spent:?}"
    );
    contract::assert_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_after_every_node_flushed_its_cache() {
    let store = client(config("noscript")).await;
    let cluster = shared_cluster();
    let ids: Vec<WorkerId> = (0..9).map(|w| wid(&format!("n{w}"))).collect();
    for id in &ids {
        store
            .register_worker(&registration(id, 1000))
            .await
            .unwrap();
    }
    for port in cluster.ports() {
        berth_localredis::command(port, &["SCRIPT", "FLUSH"]).unwrap();
    }
    let groups: Vec<CommitGroup> = ids
        .iter()
        .map(|id| CommitGroup {
            worker: id.clone(),
            reservations: vec![reservation(&format!("{id}-c"))],
        })
        .collect();
    let out = store.commit(&groups).await.unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, CommitOutcome::Committed { .. })),
        "{out:?}"
    );
    contract::assert_clean(&store).await;
}

/// Worker ids whose keys all live on the primary that serves the first of them.
fn workers_on_one_primary(
    cluster: &LocalCluster,
    keys: &berth_store::redis::Keys,
    n: usize,
) -> (u16, Vec<WorkerId>) {
    let primary_of = |id: &WorkerId| cluster.primary_for_key(&keys.worker(id)).unwrap();
    let first = wid("f0");
    let primary = primary_of(&first);
    let ids = (0..)
        .map(|i| wid(&format!("f{i}")))
        .filter(|id| primary_of(id) == primary)
        .take(n)
        .collect();
    (primary, ids)
}

/// Waits until every replica of `primary` has received everything written so far, so
/// that the failover below cannot lose the setup (replication is asynchronous).
fn wait_for_replication(primary: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = berth_localredis::query(primary, &["INFO", "replication"]).unwrap();
        let field = |line: &str, name: &str| {
            line.split(',')
                .find_map(|kv| kv.strip_prefix(name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let master = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let replicas: Vec<u64> = info
            .lines()
            .filter(|l| l.starts_with("slave"))
            .filter_map(|l| field(l, "offset="))
            .collect();
        if !replicas.is_empty() && replicas.iter().all(|&o| Some(o) == master) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not catch up: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Commits `container` on `worker`, retrying with backoff while the cluster fails over.
/// Returns how many attempts failed first.
async fn commit_with_retry(store: &RedisStore, worker: &WorkerId, container: &str) -> u32 {
    let group = CommitGroup {
        worker: worker.clone(),
        reservations: vec![reservation(container)],
    };
    let mut failures = 0;
    let mut backoff = Duration::from_millis(50);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match store.commit(std::slice::from_ref(&group)).await {
            Ok(out) => {
                assert!(
                    matches!(out[0], CommitOutcome::Committed { .. }),
                    "{container}: {out:?}"
                );
                return failures;
            }
            Err(error) => {
                failures += 1;
                assert!(
                    Instant::now() < deadline,
                    "no recovery within 60 s: {error}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One acknowledged commit of the failover runs: on which worker, which container, and
/// whether every replica wait of its call was met.
struct Acknowledged {
    worker: WorkerId,
    container: String,
    replicated: bool,
}

/// Commits on four workers of one primary while that primary is killed and its replica
/// takes over; returns every acknowledged commit with whether it is still held afterwards.
async fn commit_through_a_failover(case: &str, replica_acks: u32) -> Vec<(Acknowledged, bool)> {
    let mut cluster = LocalCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let config = StoreConfig {
        replica_acks,
        replica_timeout: Duration::from_secs(2),
        ..config(case)
    };
    let store = Arc::new(
        RedisStore::connect_cluster(&cluster.urls(), config)
            .await
            .unwrap(),
    );
    let (primary, ids) = workers_on_one_primary(&cluster, store.keys(), 4);
    for id in &ids {
        store
            .register_worker(&registration(id, 1_000_000))
            .await
            .unwrap();
    }

    wait_for_replication(primary);

    let stop = Arc::new(AtomicBool::new(false));
    let committer = {
        let (store, ids, stop) = (store.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut done, mut failures) = (Vec::new(), 0);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let worker = &ids[i % ids.len()];
                let container = format!("c{i}");
                let before = store.stats().snapshot();
                failures += commit_with_retry(&store, worker, &container).await;
                let spent = store.stats().snapshot().since(&before);
                done.push(Acknowledged {
                    worker: worker.clone(),
                    container,
                    replicated: replica_acks > 0 && spent.unreplicated == 0,
                });
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (done, failures)
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill_node(primary).unwrap();
    let killed = Instant::now();
    let new_primary =
        tokio::task::block_in_place(|| cluster.wait_for_failover(primary, Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "failover from {primary} to {new_primary} took {:?}",
        killed.elapsed()
    );
    // Keep committing on the promoted replica for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (done, failures) = committer.await.unwrap();
    eprintln!(
        "{} commits acknowledged, {failures} failed attempts retried",
        done.len()
    );
    assert!(done.len() > 20, "commits went on: {}", done.len());

    let mut held = Vec::with_capacity(done.len());
    for ack in done {
        let id = ContainerId::new(ack.container.as_str()).unwrap();
        let out = store.release(&ack.worker, &id, None, None).await.unwrap();
        let kept = matches!(out, ReleaseOutcome::Released { .. });
        held.push((ack, kept));
    }
    let lost = held.iter().filter(|(_, kept)| !kept).count();
    eprintln!("{lost} acknowledged commits lost in the failover (replica_acks {replica_acks})");
    let violations = store.check(contract::now()).await.unwrap();
    assert!(
        violations.is_empty(),
        "violations after failover: {violations:?}"
    );
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_continue_after_a_primary_fails_over() {
    let held = commit_through_a_failover("failover", 0).await;
    // Replication is asynchronous: a commit acknowledged just before the kill may be lost.
    // Those acknowledged after the failover are held.
    assert!(
        held.iter().rev().take(10).all(|(_, kept)| *kept),
        "commits made after the failover are held"
    );
}

/// With `replica_acks = 1`, a commit whose wait was met is on the replica that the failover
/// promotes: no such commit is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_a_replica_acknowledged_survive_a_failover() {
    let held = commit_through_a_failover("failover-wait", 1).await;
    let replicated: Vec<_> = held.iter().filter(|(ack, _)| ack.replicated).collect();
    assert!(
        replicated.len() > 20,
        "most waits were met: {}",
        replicated.len()
    );
    let lost: Vec<&str> = replicated
        .iter()
        .filter(|(_, kept)| !kept)
        .map(|(ack, _)| ack.container.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "replicated commits lost in the failover: {lost:?}"
    );
}

/// With `replica_acks`, a batch's commits and one WAIT per written slot still go out in one
/// round trip, and each primary's replica has them before the call returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_can_wait_for_a_replica_in_the_same_round_trip() {
    let store = client(StoreConfig {
        replica_acks: 1,
        replica_timeout: Duration::from_secs(10),
        ..config("wait")
    })
    .await;
    let ids: Vec<WorkerId> = (0..8).map(|w| wid(&format!("w{w}"))).collect();
    for id in &ids {
        store
            .register_worker(&registration(id, 100_000))
            .await
            .unwrap();
    }
    let groups: Vec<CommitGroup> = ids
        .iter()
        .map(|id| CommitGroup {
            worker: id.clone(),
            reservations: vec![reservation(&format!("{id}-c"))],
        })
        .collect();
    let before = store.stats().snapshot();
    let out = store.commit(&groups).await.unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert!(
        out.iter()
            .all(|o| matches!(o, CommitOutcome::Committed { .. })),
        "{out:?}"
    );
    assert_eq!(
        (
            spent.round_trips,
            spent.script_calls,
            spent.commands,
            spent.unreplicated
        ),
        (1, 8, 16, 0),
        "8 commits and 8 waits (one per worker slot) in one round trip: {spent:?}"
    );
    assert!(store.check(contract::now()).await.unwrap().is_empty());
}
