//! `berth demo`: the engine on the embedded store, placing a burst of requests on a
//! generated fleet, with a table of where they went.

use anyhow::{Context, bail};
use berth_core::*;
use berth_engine::{Engine, EngineConfig, Outcome, Strategy};
use berth_store::{CheckOptions, MemoryStore, Store, WorkerRegistration};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `berth demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of workers (16 cores, 64 GiB each).
    #[arg(long, default_value_t = 20)]
    workers: usize,
    /// Number of requests (1 core, 1 GiB each), submitted concurrently.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Commit strategy: serial, batch-lock or batch-script.
    #[arg(long, default_value = "batch-script")]
    strategy: Strategy,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.workers == 0 || args.workers > 100_000 {
        bail!(
            "--workers must be between 1 and 100000 (got {})",
            args.workers
        );
    }
    if args.requests > 1_000_000 {
        bail!("--requests must be at most 1000000 (got {})", args.requests);
    }
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    register_fleet(&*store, args.workers).await?;
    let config = EngineConfig {
        strategy: args.strategy,
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), config, Vec::new());
    let started = Instant::now();
    let outcomes = place_all(&engine, args.requests).await?;
    let elapsed = started.elapsed();
    print_table(&outcomes, args.workers);
    println!(
        "{} requests on {} workers with {}: {:.2} ms ({} placed)",
        args.requests,
        args.workers,
        args.strategy,
        elapsed.as_secs_f64() * 1e3,
        outcomes.values().sum::<usize>()
    );
    let violations = store.check(CheckOptions::ignoring_heartbeats()).await?;
    if !violations.is_empty() {
        bail!("invariant violations: {violations:?}");
    }
    engine.shutdown().await;
    Ok(())
}

async fn register_fleet(store: &dyn Store, workers: usize) -> anyhow::Result<()> {
    let pool = PoolAttributes::plain(PoolName::new("default")?);
    for i in 0..workers {
        let registration = WorkerRegistration {
            devices: Vec::new(),
            id: WorkerId::new(format!("worker-{i:03}"))?,
            pool: pool.clone(),
            status: WorkerStatus::Available,
            total: Resources::new(16_000, 65_536, 0),
            gpu_type: None,
            runtime: RuntimeName::PROCESS,
        };
        store.register_worker(&registration).await?;
    }
    Ok(())
}

/// Submits every request concurrently and waits for all outcomes; counts per worker.
async fn place_all(engine: &Engine, count: usize) -> anyhow::Result<BTreeMap<WorkerId, usize>> {
    let now = engine.now_ms();
    let submits = (0..count).map(|i| {
        let request = ContainerRequest {
            gpu_fraction_milli: None,
            id: ContainerId::new(format!("demo-{i}")).expect("demo ids are valid"),
            tenant: "demo".to_owned(),
            resources: Resources::new(1000, 1024, 0),
            gpu: GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority: 0,
            submitted_at_ms: now,
            payload: Payload::default(),
            fallback: Vec::new(),
            max_retries: 0,
        };
        async move {
            engine
                .submit(request)
                .await?
                .outcome()
                .await
                .context("waiting")
        }
    });
    let mut per_worker = BTreeMap::new();
    for outcome in futures::future::try_join_all(submits).await? {
        match outcome {
            Outcome::Placed { worker } => *per_worker.entry(worker).or_insert(0) += 1,
            Outcome::Failed { reason } => println!("not placed: {reason}"),
        }
    }
    Ok(per_worker)
}

fn print_table(per_worker: &BTreeMap<WorkerId, usize>, workers: usize) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["worker", "containers", ""]);
    for (worker, count) in per_worker {
        table.add_row([worker.to_string(), count.to_string(), "█".repeat(*count)]);
    }
    println!("{table}");
    let idle = workers - per_worker.len();
    if idle > 0 {
        println!("{idle} workers received nothing");
    }
}
