//! # berth-bench
//!
//! `berth bench`: the seed's experiment for every commit strategy in one run, on one store,
//! printed as the seed's table with berth's numbers; two scale runs; and a run through the
//! HTTP API. Each ends with the verdicts on the targets.
//!
//! - `seed` (default): 100 concurrent CPU-only requests onto 10, 20 and 40 equal workers,
//!   for each strategy, each fleet size and each simulated network distance (`--rtt-ms`,
//!   loopback and 1 ms by default), R repetitions after a warm-up, each on a fresh fleet.
//! - `sustained`: 1,000 workers, 100,000 requests, 1 to 4 engine replicas: placements per
//!   second and latency percentiles.
//! - `c1m`: 10,000 workers, 1,000,000 requests: time to place them all, peak scheduler
//!   memory, Redis memory.
//! - `api`: through the HTTP API: 100 concurrent single submits, and batch submits.
//! - `start`: container starts on real local workers, runc and the process runtime side by
//!   side: submit to RUNNING and to EXITED, and the runtime's create and start alone; cold
//!   (pull) and warm (cached) starts of a registry image; then the warm-start share of a
//!   stream of 50 images on 20 workers, image locality on and off.
//! - `gpu-sharing`: an arrival-only fill of a GPU fleet shaped by Alibaba's 2023 GPU trace,
//!   spread, pack and the fragmentation-aware policy side by side (the planner alone).
//!
//! The binary crate's `berth bench` subcommand flattens [`BenchArgs`] and calls [`run`].
//! `berth demo` ([`demo`]), a single burst on a generated fleet with a table of where the
//! requests went, lives here too: it is the bench's smallest sibling, not part of running
//! berth.
//!
//! ## Layout
//! - [`args`]: the command line and the checked settings.
//! - [`store_choice`]: which store, and a fresh namespace per run.
//! - [`simulated_rtt`]: the store wrapper that adds a simulated network round-trip time.
//! - [`fleet`]: workers, requests, and facts about this machine and process.
//! - [`seed`]: the seed's experiment.
//! - [`load`]: the scale driver behind [`sustained`] and [`c1m`]; [`tenants`]: its
//!   requests spread over tenants, and their quotas.
//! - [`api`]: the run through the HTTP API.
//! - [`start`]: the container start run; [`image_start`]: its cold and warm image starts;
//!   [`locality`]: its warm-start share.
//! - [`gpu_sharing`]: the GPU-sharing fill.
//! - [`report`]: the results, as the JSON writes them.
//! - [`percentile`]: nearest-rank percentiles.
//! - [`format`](mod@format): figures and tables for people.
//! - [`seed_tables`], [`published`] and [`scale_tables`]: the scenarios' tables.
//! - [`targets`]: the targets as a table, and the verdicts on them; [`target`]: what a
//!   row of that table is and how it is judged.
//! - [`progress`]: progress bars.
//! - [`demo`]: `berth demo`.

pub mod api;
pub mod args;
pub mod c1m;
pub mod demo;
pub mod fleet;
pub mod format;
pub mod gpu_sharing;
pub mod image_start;
pub mod load;
pub mod locality;
pub mod percentile;
pub mod progress;
pub mod published;
pub mod report;
pub mod scale_tables;
pub mod seed;
pub mod seed_tables;
pub mod simulated_rtt;
pub mod start;
pub mod store_choice;
pub mod sustained;
pub mod target;
pub mod targets;
pub mod tenants;

pub use args::{BenchArgs, Scenario, Settings, StoreKind};

use anyhow::Context;

/// Runs the bench.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    if settings.scenario == Scenario::GpuSharing {
        return run_without_store(&args, &settings);
    }
    let choice = store_choice::StoreChoice::choose(args.store, args.redis.clone())
        .await?
        .with_replica_acks(args.replica_acks);
    let machine = fleet::Machine::detect();
    println!(
        "berth bench --scenario {}: store {}; machine {} cores, {:.1} GiB",
        settings.scenario.as_str(),
        choice.info().description,
        machine.cores,
        machine.memory_gib,
    );
    let mut report = report::BenchReport::new(choice.info().clone(), machine);
    if let Some(note) = choice.note() {
        report.notes.push(note.to_owned());
    }
    let outcome = match settings.scenario {
        Scenario::Seed => seed::run(&choice, &settings, &mut report).await,
        Scenario::Sustained => sustained::run(&choice, &settings, &mut report).await,
        Scenario::C1m => c1m::run(&choice, &settings, &mut report).await,
        Scenario::Api => api::run(&choice, &settings, &mut report).await,
        Scenario::Start => start_scenario(&choice, &settings, &mut report).await,
        Scenario::GpuSharing => unreachable!("run without a store above"),
    };
    let shutdown = choice.shutdown().await;
    outcome?;
    shutdown?;
    finish(&args, report)
}

/// The start scenario: container starts end to end and in the runtimes, cold and warm
/// image starts, and the warm-start share of placement.
async fn start_scenario(
    choice: &store_choice::StoreChoice,
    settings: &Settings,
    report: &mut report::BenchReport,
) -> anyhow::Result<()> {
    start::run(choice, settings, report).await?;
    let root = tempfile::tempdir().context("a directory for the image starts")?;
    image_start::run(root.path(), report).await?;
    locality::run(report)
}

/// The gpu-sharing scenario: the planner alone, so no store is chosen or started.
fn run_without_store(args: &BenchArgs, settings: &Settings) -> anyhow::Result<()> {
    let machine = fleet::Machine::detect();
    println!(
        "berth bench --scenario gpu-sharing: the planner alone; machine {} cores, {:.1} GiB",
        machine.cores, machine.memory_gib,
    );
    let store = store_choice::StoreInfo {
        kind: "none",
        url: None,
        started_by_bench: false,
        version: None,
        description: "none (the planner alone)".to_owned(),
    };
    let mut report = report::BenchReport::new(store, machine);
    for &seed in &settings.stream_seeds {
        let stream = gpu_sharing::Stream {
            nodes: settings.workers,
            pods: settings.requests,
            seed,
            typed: settings.typed_pods,
        };
        gpu_sharing::run(stream, &mut report)?;
    }
    finish(args, report)
}

/// Prints the verdicts and writes the JSON, if asked.
fn finish(args: &BenchArgs, mut report: report::BenchReport) -> anyhow::Result<()> {
    targets::print_targets(&mut report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serializing the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the results to {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
