//! The contract suite against `RedisStore` on a standalone redis-server, plus tests of what
//! only Redis has: corrupt stored data, a flushed script cache, round-trip counts, blocking
//! reads on dedicated connections. They start a local redis-server and fail (never skip)
//! when it is missing.

#![allow(clippy::unwrap_used)]

mod contract;

use berth_core::*;
use berth_localredis::{LocalRedis, Value};
use berth_store::prelude::*;
use berth_store::*;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The server the tests of this binary share: started on first use, and killed when the
/// last test runtime holding it ends (a plain static would never be dropped and would leak
/// the process).
fn shared_redis() -> Arc<LocalRedis> {
    static SHARED: Mutex<Weak<LocalRedis>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(redis) = slot.upgrade() {
        return redis;
    }
    let redis = Arc::new(LocalRedis::start().unwrap_or_else(|e| panic!("{e}")));
    *slot = Arc::downgrade(&redis);
    redis
}

/// Keeps the server alive until the current test's runtime shuts down.
fn hold_for_this_test(redis: Arc<LocalRedis>) {
    tokio::spawn(async move {
        let _held = redis;
        std::future::pending::<()>().await;
    });
}

/// A new client of the store named by `config.prefix` on the shared server.
async fn connect(config: StoreConfig) -> Arc<dyn Store> {
    Arc::new(client(config).await)
}

async fn client(config: StoreConfig) -> RedisStore {
    let redis = shared_redis();
    let store = RedisStore::connect(&redis.url(), config).await.unwrap();
    hold_for_this_test(redis);
    store
}

contract_tests!(connect);

// ----- Redis-specific tests -----

fn config(case: &str) -> StoreConfig {
    StoreConfig {
        prefix: format!("rs{}:{case}", rand::random::<u32>()),
        claim_visibility: Duration::from_millis(300),
        redelivery: Duration::from_millis(300),
        ..StoreConfig::default()
    }
}

fn raw(args: &[&str]) -> Value {
    shared_redis().command(args).unwrap()
}

fn wid(id: &str) -> WorkerId {
    WorkerId::new(id).unwrap()
}

fn registration(id: &str, cpu: u64, mem: u64) -> WorkerRegistration {
    WorkerRegistration {
        devices: Vec::new(),
        id: wid(id),
        pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(cpu, mem, 0),
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
    }
}

fn reservation(container: &str, cpu: u64) -> Reservation {
    Reservation {
        devices: Vec::new(),
        container: ContainerId::new(container).unwrap(),
        attempt: AttemptId(format!("a-{container}")),
        resources: Resources::new(cpu, 16, 0),
        payload: Payload::default(),
    }
}

fn request(id: &str) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new(id).unwrap(),
        tenant: "t".into(),
        resources: Resources::new(100, 64, 0),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T>, want_key: &str, want_field: &str) {
    match result {
        Err(StoreError::Corrupt { key, field, .. }) => {
            assert_eq!((key.as_str(), field.as_str()), (want_key, want_field));
        }
        other => panic!("expected Corrupt({want_key}, {want_field}), got {other:?}"),
    }
}

fn integer(value: Value) -> i64 {
    match value {
        Value::Int(i) => i,
        other => panic!("expected an integer reply, got {other:?}"),
    }
}

/// The text of a simple or bulk string reply.
fn text(value: &Value) -> Option<String> {
    ::redis::from_redis_value_ref(value).ok()
}

#[tokio::test]
async fn corrupt_worker_fields_are_named_and_never_panic() {
    let store = client(config("corrupt-worker")).await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let key = store.keys().worker(&wid("w1"));

    raw(&["HSET", &key, "free_cpu", "abc"]);
    assert_corrupt(store.worker(&wid("w1")).await, &key, "free_cpu");
    assert!(store.workers().await.unwrap().is_empty(), "quarantined");
    let violations = store.check(contract::now()).await.unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.subject == key && v.detail.contains("free_cpu")),
        "{violations:?}"
    );
    // The commit script reads the same field and refuses before writing anything.
    let out = store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![reservation("c1", 10)],
        }])
        .await;
    assert_corrupt(out, &key, "free_cpu");
    assert_eq!(integer(raw(&["HLEN", &store.keys().owned(&wid("w1"))])), 0);
    assert_eq!(integer(raw(&["XLEN", &store.keys().assign(&wid("w1"))])), 0);

    raw(&["HSET", &key, "free_cpu", "4000"]);
    raw(&["HDEL", &key, "total_mem"]);
    assert_corrupt(store.worker(&wid("w1")).await, &key, "total_mem");
    raw(&["HSET", &key, "total_mem", "4096", "status", "asleep"]);
    assert_corrupt(store.worker(&wid("w1")).await, &key, "status");
    raw(&[
        "HSET",
        &key,
        "status",
        "available",
        "gpu_type",
        "no such gpu",
    ]);
    assert_corrupt(store.worker(&wid("w1")).await, &key, "gpu_type");
    raw(&["HSET", &key, "gpu_type", ""]);
    contract::assert_clean(&store).await;
}

/// One corrupt worker record (a bad field, a negative total, an unknown status, a missing
/// epoch, the hash replaced by a string, a bad id in the index) is quarantined: the rest of
/// the fleet still reads, and the quarantined list names the key and the problem.
#[tokio::test]
async fn a_corrupt_worker_is_quarantined_and_the_rest_read() {
    let store = client(config("quarantine")).await;
    for id in ["good", "bad"] {
        store
            .register_worker(&registration(id, 4000, 4096))
            .await
            .unwrap();
    }
    let bad = store.keys().worker(&wid("bad"));
    let corruptions: [&[&str]; 5] = [
        &["HSET", &bad, "free_cpu", "abc"],
        &["HSET", &bad, "total_cpu", "-5"],
        &["HSET", &bad, "status", "asleep"],
        &["HDEL", &bad, "epoch"],
        &["SET", &bad, "a string"],
    ];
    for corruption in corruptions {
        raw(&["DEL", &bad]);
        store
            .register_worker(&registration("bad", 4000, 4096))
            .await
            .unwrap();
        raw(corruption);
        let workers = store.workers().await.unwrap();
        let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["good"], "{corruption:?}");
        let quarantined = store.quarantined().await.unwrap();
        assert_eq!(quarantined.len(), 1, "{corruption:?}: {quarantined:?}");
        assert_eq!(quarantined[0].subject, bad, "{corruption:?}");
        assert_eq!(
            store.fleet().await.unwrap(),
            (workers, quarantined),
            "{corruption:?}: one read answers both"
        );
        let beats = store.heartbeats().await.unwrap();
        assert!(
            beats.iter().any(|(w, _)| w.as_str() == "good"),
            "{corruption:?}"
        );
    }
    raw(&["DEL", &bad]);
    raw(&["SADD", &store.keys().workers(), "no{good}"]);
    let workers = store.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    let quarantined = store.quarantined().await.unwrap();
    assert!(
        quarantined.iter().any(|v| v.detail.contains("no{good}")),
        "{quarantined:?}"
    );
}

/// A worker hash written before workers stated their runtime has no `runtime` field: it reads
/// as `process`. An invalid runtime is a corrupt field of that worker alone.
#[tokio::test]
async fn a_worker_without_a_runtime_field_reads_as_process() {
    let store = client(config("old-runtime")).await;
    let runc = WorkerRegistration {
        runtime: RuntimeName::RUNC,
        ..registration("w1", 4000, 4096)
    };
    store.register_worker(&runc).await.unwrap();
    let key = store.keys().worker(&wid("w1"));
    assert_eq!(
        text(&raw(&["HGET", &key, "runtime"])).as_deref(),
        Some("runc")
    );

    raw(&["HDEL", &key, "runtime"]);
    let old = store.worker(&wid("w1")).await.unwrap().unwrap();
    assert_eq!(old.runtime, RuntimeName::PROCESS);
    assert_eq!(old.total, Resources::new(4000, 4096, 0));
    assert_eq!(
        store.workers().await.unwrap()[0].runtime,
        RuntimeName::PROCESS
    );
    contract::assert_clean(&store).await;

    raw(&["HSET", &key, "runtime", "Not A Runtime"]);
    assert_corrupt(store.worker(&wid("w1")).await, &key, "runtime");
    let violations = store.check(contract::now()).await.unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.subject == key && v.detail.contains("runtime")),
        "{violations:?}"
    );
    // Registering again writes it anew.
    store.register_worker(&runc).await.unwrap();
    assert_eq!(
        store.worker(&wid("w1")).await.unwrap().unwrap().runtime,
        RuntimeName::RUNC
    );
    contract::assert_clean(&store).await;
}

#[tokio::test]
async fn corrupt_records_and_ownership_are_reported_by_check() {
    let store = client(config("corrupt-records")).await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    store.submit(&[request("r1")]).await.unwrap();
    let record = store.keys().record(&ContainerId::new("r1").unwrap());
    raw(&["HSET", &record, "state", "dancing"]);
    assert_corrupt(
        store.container(&ContainerId::new("r1").unwrap()).await,
        &record,
        "state",
    );
    let owned = store.keys().owned(&wid("w1"));
    raw(&["HSET", &owned, "c9", "not an entry"]);
    let violations = store.check(contract::now()).await.unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.subject == record && v.detail.contains("state")),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.subject == owned && v.detail.contains("c9")),
        "{violations:?}"
    );
    // Releasing the unreadable entry is refused, and changes nothing.
    let release = store
        .release(&wid("w1"), &ContainerId::new("c9").unwrap(), None, None)
        .await;
    assert_corrupt(release, &owned, "c9");
    assert_eq!(
        store.worker(&wid("w1")).await.unwrap().unwrap().free,
        Resources::new(4000, 4096, 0)
    );
}

#[tokio::test]
async fn a_release_that_would_overflow_total_writes_nothing() {
    let store = client(config("overflow")).await;
    store
        .register_worker(&registration("w1", 1000, 1000))
        .await
        .unwrap();
    store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![reservation("c1", 500)],
        }])
        .await
        .unwrap();
    let key = store.keys().worker(&wid("w1"));
    raw(&["HSET", &key, "free_cpu", "900"]);
    let out = store
        .release(&wid("w1"), &ContainerId::new("c1").unwrap(), None, None)
        .await;
    assert_corrupt(out, &key, "free");
    assert_eq!(
        integer(raw(&["HLEN", &store.keys().owned(&wid("w1"))])),
        1,
        "still owned"
    );
}

/// An ownership entry written by no booking (a ghost) is named by the check: the worker's
/// free plus owned no longer adds up to its total.
#[tokio::test]
async fn an_entry_no_booking_made_is_named_by_check() {
    let store = client(config("ghost-entry")).await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let owned = store.keys().owned(&wid("w1"));
    let entry = format!("{} 1000 512 0", berth_core::AttemptId::from_bits(9));
    raw(&["HSET", &owned, "ghost", &entry]);
    let violations = store.check(contract::now()).await.unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.subject == "w1" && v.detail.contains("+ owned (cpu=1000m")),
        "{violations:?}"
    );
}

#[tokio::test]
async fn unreadable_queued_requests_are_failed_not_claimed() {
    let store = client(config("bad-request")).await;
    store.submit(&[request("r1"), request("r2")]).await.unwrap();
    let record = store.keys().record(&ContainerId::new("r1").unwrap());
    raw(&["HSET", &record, "request", "{not json"]);
    let claims = store.claim("e1", 10, Duration::ZERO).await.unwrap();
    let ids: Vec<&str> = claims.iter().map(|c| c.request.id.as_str()).collect();
    assert_eq!(ids, ["r2"]);
    let state = raw(&["HGET", &record, "state"]);
    assert_eq!(text(&state).as_deref(), Some("failed"));
    let reason = raw(&["HGET", &record, "reason"]);
    assert!(
        text(&reason).unwrap().contains("cannot be read"),
        "{reason:?}"
    );
    // Its intake entry was settled: only r2's is left.
    assert_eq!(integer(raw(&["XLEN", &store.keys().intake()])), 1);
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let store = client(config("noscript")).await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    raw(&["SCRIPT", "FLUSH"]);
    let before = store.stats().snapshot();
    let out = store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![reservation("c1", 10)],
        }])
        .await
        .unwrap();
    assert!(matches!(out[0], CommitOutcome::Committed { .. }), "{out:?}");
    let spent = store.stats().snapshot().since(&before);
    assert_eq!(spent.round_trips, 2, "EVALSHA, then EVAL: {spent:?}");
    // EVAL cached the script again: the next call is one round trip.
    let before = store.stats().snapshot();
    store.heartbeat(&wid("w1"), None, 1).await.unwrap();
    store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![reservation("c2", 10)],
        }])
        .await
        .unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert!(spent.round_trips <= 3, "{spent:?}");
    contract::assert_clean(&store).await;
}

#[tokio::test]
async fn a_batch_commit_is_one_round_trip() {
    let store = client(config("one-trip")).await;
    for w in 0..20 {
        store
            .register_worker(&registration(&format!("w{w}"), 100_000, 100_000))
            .await
            .unwrap();
    }
    let groups: Vec<CommitGroup> = (0..20)
        .map(|w| CommitGroup {
            worker: wid(&format!("w{w}")),
            reservations: (0..5)
                .map(|c| reservation(&format!("c{w}-{c}"), 100))
                .collect(),
        })
        .collect();
    let before = store.stats().snapshot();
    let out = store.commit(&groups).await.unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert!(
        out.iter()
            .all(|o| matches!(o, CommitOutcome::Committed { .. }))
    );
    // 20 groups fit one commit_many call.
    assert_eq!(
        (spent.round_trips, spent.script_calls, spent.commands),
        (1, 1, 1),
        "{spent:?}"
    );
    contract::assert_clean(&store).await;

    // 100 groups of one go out as ceil(100 / 32) calls, still one round trip; groups that
    // are rejected (no room, unknown worker) leave the others committed, and a retry of the
    // whole batch reports the committed ones as already owned.
    for w in 20..120 {
        store
            .register_worker(&registration(&format!("w{w}"), 1_000, 1_000))
            .await
            .unwrap();
    }
    let mut groups: Vec<CommitGroup> = (20..120)
        .map(|w| CommitGroup {
            worker: wid(&format!("w{w}")),
            reservations: vec![reservation(&format!("d{w}"), 100)],
        })
        .collect();
    groups[7].reservations = vec![reservation("too-big", 5_000)];
    groups[50].worker = wid("nobody");
    let before = store.stats().snapshot();
    let out = store.commit(&groups).await.unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert_eq!((spent.round_trips, spent.script_calls), (1, 4), "{spent:?}");
    assert_eq!(out.len(), 100);
    for (i, outcome) in out.iter().enumerate() {
        let committed = matches!(outcome, CommitOutcome::Committed { already_owned, .. } if already_owned.is_empty());
        assert_eq!(committed, i != 7 && i != 50, "group {i}: {outcome:?}");
    }
    let again = store.commit(&groups).await.unwrap();
    for (i, outcome) in again.iter().enumerate() {
        if let CommitOutcome::Committed { already_owned, .. } = outcome {
            assert_eq!(already_owned.len(), 1, "group {i}");
        } else {
            assert!(i == 7 || i == 50, "group {i}: {outcome:?}");
        }
    }
    contract::assert_clean(&store).await;
}

#[tokio::test]
async fn a_snapshot_is_two_round_trips() {
    let store = client(config("snapshot")).await;
    for w in 0..40 {
        store
            .register_worker(&registration(&format!("w{w:02}"), 1000, 1000))
            .await
            .unwrap();
    }
    let before = store.stats().snapshot();
    let workers = store.workers().await.unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert_eq!(workers.len(), 40);
    assert_eq!(
        (spent.round_trips, spent.worker_reads),
        (2, 40),
        "{spent:?}"
    );
}

#[tokio::test]
async fn blocking_reads_do_not_stall_the_shared_connection() {
    let store = Arc::new(client(config("blocking")).await);
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let waiters = [
        {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim("e1", 10, Duration::from_secs(3))
                    .await
                    .map(|c| c.len())
            })
        },
        {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .assignments(&wid("w1"), None, 10, Duration::from_secs(3))
                    .await
                    .map(|a| a.len())
            })
        },
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for _ in 0..20 {
        store.worker(&wid("w1")).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "reads waited for the blocked ones: {:?}",
        started.elapsed()
    );
    store.submit(&[request("r1")]).await.unwrap();
    store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![reservation("c1", 10)],
        }])
        .await
        .unwrap();
    for waiter in waiters {
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, 1, "woken by the write");
    }
    // A wait that sees nothing returns empty after about its wait.
    let started = Instant::now();
    let none = store
        .claim("e1", 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn oversized_quantities_are_refused_before_anything_is_written() {
    let store = client(config("oversized")).await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let mut big = reservation("c1", 10);
    big.resources.memory_mib = 1 << 60;
    let out = store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![big],
        }])
        .await;
    assert!(
        matches!(out, Err(StoreError::InvalidArgument(_))),
        "{out:?}"
    );
    let huge = registration("w2", 1 << 60, 1);
    let out = store.register_worker(&huge).await;
    assert!(
        matches!(out, Err(StoreError::InvalidArgument(_))),
        "{out:?}"
    );
    contract::assert_clean(&store).await;
}

#[tokio::test]
async fn bad_prefixes_are_refused() {
    let redis = shared_redis();
    let config = StoreConfig {
        prefix: "a{b}".into(),
        ..StoreConfig::default()
    };
    let out = RedisStore::connect(&redis.url(), config).await;
    assert!(
        matches!(out, Err(StoreError::InvalidArgument(_))),
        "{out:?}"
    );
}

#[tokio::test]
async fn usize_max_means_everything() {
    let store = client(config("everything")).await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    store.submit(&[request("r1"), request("r2")]).await.unwrap();
    let claims = store.claim("e1", usize::MAX, Duration::ZERO).await.unwrap();
    assert_eq!(claims.len(), 2);
    assert_eq!(
        store.promote_due(u64::MAX >> 12, usize::MAX).await.unwrap(),
        0
    );
    store
        .commit(&[CommitGroup {
            worker: wid("w1"),
            reservations: vec![reservation("c1", 10)],
        }])
        .await
        .unwrap();
    let got = store
        .assignments(&wid("w1"), None, usize::MAX, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
}

/// A commit wait that cannot be met (no replica) does not undo or fail the commit: it is
/// counted as unreplicated and the batch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wait_without_replicas_times_out_and_is_counted() {
    let store = client(StoreConfig {
        replica_acks: 1,
        replica_timeout: Duration::from_millis(20),
        ..config("wait")
    })
    .await;
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    let group = CommitGroup {
        worker: wid("w1"),
        reservations: vec![reservation("a", 1000)],
    };
    let before = store.stats().snapshot();
    let out = store.commit(&[group]).await.unwrap();
    let spent = store.stats().snapshot().since(&before);
    assert!(matches!(out[0], CommitOutcome::Committed { .. }), "{out:?}");
    assert_eq!(
        (spent.round_trips, spent.commands, spent.unreplicated),
        (1, 2, 1)
    );
    contract::assert_clean(&store).await;
}

/// The id of the intake entry for `container` (the entry's field `id`).
fn intake_entry_of(store: &RedisStore, container: &str) -> String {
    let entries = raw(&["XRANGE", &store.keys().intake(), "-", "+"]);
    for entry in entries.as_sequence().unwrap() {
        let entry = entry.as_sequence().unwrap();
        let fields = entry[1].as_sequence().unwrap();
        let names: Vec<String> = fields.iter().map(|f| text(f).unwrap()).collect();
        if names.chunks(2).any(|kv| kv == ["id", container]) {
            return text(&entry[0]).unwrap();
        }
    }
    panic!("{container} has no intake entry")
}

#[tokio::test]
async fn check_names_the_key_of_a_missing_or_stray_queue_entry() {
    let store = client(config("check-queues")).await;
    let options = contract::now();
    store
        .register_worker(&registration("w1", 4000, 4096))
        .await
        .unwrap();
    store.submit(&[request("r1"), request("r2")]).await.unwrap();
    assert_eq!(store.check(options).await.unwrap(), Vec::new());

    // A pending record whose intake entry is gone, and which is not in the backlog.
    let intake = store.keys().intake();
    raw(&["XDEL", &intake, &intake_entry_of(&store, "r1")]);
    let violations = store.check(options).await.unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].subject, "r1");
    assert!(
        violations[0]
            .detail
            .starts_with("pending but neither in the intake nor in the backlog"),
        "{violations:?}"
    );
    raw(&["ZADD", &store.keys().backlog(), "1", "r1"]);
    assert_eq!(store.check(options).await.unwrap(), Vec::new());

    // An assignment entry for a container the worker does not own.
    let assign = store.keys().assign(&wid("w1"));
    let stray = raw(&[
        "XADD",
        &assign,
        "*",
        "container",
        "c9",
        "attempt",
        "a9",
        "cpu",
        "1",
        "mem",
        "1",
        "gpu",
        "0",
        "payload",
        "{}",
    ]);
    let stray = text(&stray).unwrap();
    let violations = store.check(options).await.unwrap();
    assert_eq!(
        violations,
        vec![Violation {
            subject: assign.clone(),
            detail: format!("entry {stray} assigns c9 (attempt a9) but worker w1 does not own c9"),
        }]
    );
    raw(&["XDEL", &assign, &stray]);
    assert_eq!(store.check(options).await.unwrap(), Vec::new());

    // Entries that cannot be read are reported with their key, never a panic.
    let bad_intake = raw(&["XADD", &intake, "*", "not-id", "r2"]);
    let bad_assign = raw(&["XADD", &assign, "*", "container", "c9"]);
    let violations = store.check(options).await.unwrap();
    let subjects: Vec<&str> = violations.iter().map(|v| v.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec![assign.as_str(), intake.as_str()],
        "{violations:?}"
    );
    assert!(
        violations[1]
            .detail
            .contains(&format!("{}.id", text(&bad_intake).unwrap())),
        "{violations:?}"
    );
    assert!(
        violations[0].detail.starts_with("unreadable"),
        "{violations:?}"
    );
    raw(&["XDEL", &assign, &text(&bad_assign).unwrap()]);
    raw(&["XDEL", &intake, &text(&bad_intake).unwrap()]);
    // A stream key of another type is unreadable too.
    raw(&["DEL", &assign]);
    raw(&["SET", &assign, "oops"]);
    let violations = store.check(options).await.unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].subject, assign);
    raw(&["DEL", &assign]);
    assert_eq!(store.check(options).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_corrupt_credential_is_refused_and_the_rest_still_read() {
    let redis = shared_redis();
    let config = config("credentials-corrupt");
    let key = format!("{}:{{a}}:credentials", config.prefix);
    let store = RedisStore::connect(&redis.url(), config).await.unwrap();
    let good_token = Token::from_random([1; 8], [1; 32]);
    let good = Credential::issue(&good_token, Role::Admin, "ok", 1).unwrap();
    store.put_credential(&good).await.unwrap();
    let bad_token = Token::from_random([2; 8], [2; 32]);
    let moved = Credential::issue(&bad_token, Role::Admin, "moved", 1).unwrap();
    let moved_json = serde_json::to_string(&moved).unwrap();
    redis
        .command(&["HSET", &key, bad_token.id().as_str(), "{not json"])
        .unwrap();
    redis
        .command(&["HSET", &key, "0303030303030303", &moved_json])
        .unwrap();
    assert!(store.credential(bad_token.id()).await.unwrap().is_none());
    let filed_elsewhere = TokenId::new("0303030303030303").unwrap();
    assert!(store.credential(&filed_elsewhere).await.unwrap().is_none());
    assert_eq!(store.credentials().await.unwrap(), vec![good]);
}
