//! Batch-commit latency of `RedisStore` on a local redis-server: 100 containers over 20
//! workers per commit (one pipelined round trip, one script call per worker), its p50/p99,
//! and the scripts' server-side cost from `INFO commandstats`.
//!
//! Run: `cargo bench -p berth-store --bench commit` (`BERTH_BENCH_ITERS` sets the number of
//! measured commits, 2000 by default). Needs `redis-server` on `PATH`.

#![allow(clippy::unwrap_used)]

use berth_core::*;
use berth_localredis::LocalRedis;
use berth_store::prelude::*;
use berth_store::*;
use std::time::{Duration, Instant};

const WORKERS: usize = 20;
const PER_WORKER: usize = 5;
const WARMUP: usize = 200;

fn registration(id: &WorkerId) -> WorkerRegistration {
    WorkerRegistration {
        devices: Vec::new(),
        id: id.clone(),
        pool: PoolAttributes::plain(PoolName::new("bench").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(1 << 40, 1 << 40, 0),
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
    }
}

/// One batch: `PER_WORKER` fresh containers on each worker.
fn batch(workers: &[WorkerId], iteration: usize) -> Vec<CommitGroup> {
    workers
        .iter()
        .map(|w| CommitGroup {
            worker: w.clone(),
            reservations: (0..PER_WORKER)
                .map(|c| Reservation {
                    devices: Vec::new(),
                    container: ContainerId::new(format!("i{iteration}-{w}-{c}")).unwrap(),
                    attempt: berth_store::new_attempt(),
                    resources: Resources::new(250, 512, 0),
                    payload: Payload {
                        image: Some("busybox".into()),
                        command: vec!["sleep".into(), "1".into()],
                        env: Default::default(),
                        secret_env: Default::default(),
                    },
                })
                .collect(),
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `usec_per_call` and `calls` of one command in `INFO commandstats`.
fn command_cost(redis: &LocalRedis, command: &str) -> Option<(f64, u64)> {
    let text: String = berth_localredis::query(redis.port(), &["INFO", "commandstats"]).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))?;
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name))
            .map(str::to_owned)
    };
    Some((
        field("usec_per_call=")?.parse().ok()?,
        field("calls=")?.parse().ok()?,
    ))
}

async fn run(redis: &LocalRedis, iterations: usize) {
    let config = StoreConfig {
        prefix: "bench".into(),
        ..StoreConfig::default()
    };
    let store = RedisStore::connect(&redis.url(), config).await.unwrap();
    let workers: Vec<WorkerId> = (0..WORKERS)
        .map(|w| WorkerId::new(format!("w{w:02}")).unwrap())
        .collect();
    for w in &workers {
        store.register_worker(&registration(w)).await.unwrap();
    }
    for i in 0..WARMUP {
        store.commit(&batch(&workers, i)).await.unwrap();
    }
    redis.command(&["CONFIG", "RESETSTAT"]).unwrap();

    let mut latencies = Vec::with_capacity(iterations);
    let before = store.stats().snapshot();
    let started = Instant::now();
    for i in WARMUP..WARMUP + iterations {
        let groups = batch(&workers, i);
        let t = Instant::now();
        let out = store.commit(&groups).await.unwrap();
        latencies.push(t.elapsed());
        assert!(
            out.iter()
                .all(|o| matches!(o, CommitOutcome::Committed { .. }))
        );
    }
    let wall = started.elapsed();
    let spent = store.stats().snapshot().since(&before);
    latencies.sort();

    let n = iterations as u64;
    println!(
        "commit of {} containers over {WORKERS} workers, {iterations} times:",
        WORKERS * PER_WORKER
    );
    println!(
        "  per commit: {} round trip(s), {} script calls",
        spent.round_trips / n,
        spent.script_calls / n
    );
    println!(
        "  latency p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  throughput {:.0} commits/s = {:.0} containers/s (one client, sequential)",
        n as f64 / wall.as_secs_f64(),
        (n as usize * WORKERS * PER_WORKER) as f64 / wall.as_secs_f64()
    );
    if let Some((usec, calls)) = command_cost(redis, "evalsha") {
        println!(
            "  server: evalsha {usec:.2} us per call ({calls} calls) = {:.0} us of server time per commit",
            usec * WORKERS as f64
        );
    }
    let inside: Vec<String> = ["hgetall", "type", "hmget", "hset", "xadd"]
        .iter()
        .filter_map(|c| {
            command_cost(redis, c).map(|(usec, calls)| format!("{c} {usec:.2} us x {}", calls / n))
        })
        .collect();
    println!("  inside the script, per commit: {}", inside.join(", "));

    let t = Instant::now();
    let snapshot = store.workers().await.unwrap();
    println!("workers() of {}: {:?}", snapshot.len(), t.elapsed());
    let violations = store
        .check(CheckOptions::ignoring_heartbeats())
        .await
        .unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

fn main() {
    let iterations = std::env::var("BERTH_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let redis = LocalRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&redis, iterations));
}
