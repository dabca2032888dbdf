//! The seed's experiment: 100 concurrent CPU-only requests onto 10, 20 and 40 equal workers
//! with room for all, for every strategy and simulated network distance; R repetitions
//! after a warm-up, each on a fresh fleet (a fresh namespace, a fresh engine).
//!
//! With `--gpu-devices N` every worker has N A10G devices and every request asks a quarter
//! of one GPU, so each commit books (and the check verifies) device shares.
//!
//! One repetition: register the fleet (not timed, not delayed), start an engine on the
//! namespace through a [`SimulatedRttStore`], let it settle into its idle wait on the intake,
//! then submit every request in one `submit_many` and wait for every ticket. The time runs
//! from just before the submit to the last outcome. Counters are the differences over that
//! window (see [`super::report`] for exactly what each row counts).

use super::args::{Scenario, Settings};
use super::fleet::{self, SEED_WORKER};
use super::format::ms;
use super::percentile::percentile;
use super::progress;
use super::report::{BenchReport, RoundTrips, RunResult};
use super::seed_tables::print_seed;
use super::store_choice::StoreChoice;
use crate::simulated_rtt::{DelaySnapshot, Op, SimulatedRttStore};
use anyhow::{Context, bail};
use berth_core::{GpuType, Resources, WorkerId};
use berth_engine::{Engine, EngineConfig, EngineStatsSnapshot, Outcome, Strategy};
use berth_store::prelude::*;
use berth_store::{CheckOptions, StatsSnapshot, Store};
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fresh engine gets to reach its idle wait on the intake before the burst.
const SETTLE_IN: Duration = Duration::from_millis(30);

/// The most one repetition may take.
const REPETITION_TIMEOUT: Duration = Duration::from_secs(120);

/// What one repetition measured.
struct Rep {
    total: Duration,
    mean_latency: Duration,
    placed: usize,
    failed: usize,
    per_worker: Vec<usize>,
    delays: DelaySnapshot,
    store: StatsSnapshot,
    engine: EngineStatsSnapshot,
    redis_cpu: Option<Duration>,
    process_cpu: Option<Duration>,
}

/// Measured repetitions of `strategy` at `rtt`: fewer for serial at a non-zero rtt if asked.
fn reps_of(settings: &Settings, strategy: Strategy, rtt: Duration) -> usize {
    if strategy == Strategy::Serial && !rtt.is_zero() {
        settings.serial_repetitions
    } else {
        settings.repetitions
    }
}

/// Runs the seed scenario and prints its tables.
pub async fn run(
    choice: &StoreChoice,
    settings: &Settings,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    let total: usize = settings
        .rtts
        .iter()
        .map(|&rtt| {
            settings.fleets.len()
                * settings
                    .strategies
                    .iter()
                    .map(|&s| 1 + reps_of(settings, s, rtt))
                    .sum::<usize>()
        })
        .sum();
    let bar = progress::bar(total as u64, "seed");
    for &rtt in &settings.rtts {
        for &workers in &settings.fleets {
            let mut reps = repetitions(choice, settings, rtt, workers, &bar).await?;
            for &strategy in &settings.strategies {
                let runs = reps.remove(&strategy).unwrap_or_default();
                report.runs.push(summarize(
                    strategy,
                    rtt,
                    workers,
                    settings.containers,
                    &runs,
                ));
            }
        }
    }
    bar.finish_and_clear();
    if settings.rtts.iter().any(|r| !r.is_zero())
        && settings.serial_repetitions != settings.repetitions
        && settings.strategies.contains(&Strategy::Serial)
    {
        report.notes.push(format!(
            "serial ran {} repetitions (not {}) at a non-zero rtt (--serial-repetitions)",
            settings.serial_repetitions, settings.repetitions
        ));
    }
    print_seed(report, settings);
    Ok(())
}

/// Every strategy's repetitions on one fleet size at one rtt. Warm-up first, then the
/// repetitions interleaved across strategies, so that drift of the machine affects every
/// strategy alike.
async fn repetitions(
    choice: &StoreChoice,
    settings: &Settings,
    rtt: Duration,
    workers: usize,
    bar: &ProgressBar,
) -> anyhow::Result<HashMap<Strategy, Vec<Rep>>> {
    let mut reps: HashMap<Strategy, Vec<Rep>> = HashMap::new();
    let rounds = settings
        .strategies
        .iter()
        .map(|&s| reps_of(settings, s, rtt))
        .max()
        .unwrap_or(0);
    for round in 0..=rounds {
        for &strategy in &settings.strategies {
            if round > reps_of(settings, strategy, rtt) {
                continue;
            }
            bar.set_message(format!("{strategy}, {workers} workers, rtt {} ms", ms(rtt)));
            let tag = format!("r{round}");
            let rep = repetition(choice, strategy, rtt, workers, settings, &tag)
                .await
                .with_context(|| {
                    format!(
                        "seed scenario: {strategy} on {workers} workers at rtt {} ms",
                        ms(rtt)
                    )
                })?;
            if round > 0 {
                reps.entry(strategy).or_default().push(rep);
            }
            bar.inc(1);
        }
    }
    Ok(reps)
}

/// One repetition on a fresh fleet.
async fn repetition(
    choice: &StoreChoice,
    strategy: Strategy,
    rtt: Duration,
    workers: usize,
    settings: &Settings,
    tag: &str,
) -> anyhow::Result<Rep> {
    let namespace = choice.namespace();
    let inner = choice.connect(&namespace).await?;
    let ids = match settings.gpu_devices {
        0 => fleet::register(&*inner, workers, SEED_WORKER).await?,
        devices => {
            let total = Resources {
                gpu_count: devices,
                ..SEED_WORKER
            };
            fleet::register_with_gpus(&*inner, workers, total, Some(GpuType::A10G)).await?
        }
    };
    let store = Arc::new(SimulatedRttStore::new(inner.clone(), rtt));
    let config = EngineConfig {
        strategy,
        replica: "bench-0".to_owned(),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), config, Vec::new());
    tokio::time::sleep(SETTLE_IN).await;
    let (redis0, process0) = (choice.redis_cpu().await?, fleet::process_cpu());
    let measured = tokio::time::timeout(
        REPETITION_TIMEOUT,
        burst(
            &engine,
            &store,
            (settings.containers, settings.gpu_devices > 0),
            tag,
            namespace.prefix(),
        ),
    )
    .await;
    let (redis1, process1) = (choice.redis_cpu().await?, fleet::process_cpu());
    engine.shutdown().await;
    let (total, outcomes, mean_latency, delays, stats, engine_stats) = match measured {
        Ok(result) => result?,
        Err(_) => bail!("not every request had an outcome after {REPETITION_TIMEOUT:?}"),
    };
    let violations = inner
        .check(CheckOptions::ignoring_heartbeats())
        .await
        .context("checking the invariants")?;
    if !violations.is_empty() {
        bail!("invariant violations after the run: {violations:?}");
    }
    drop(inner);
    drop(store);
    choice.cleanup(namespace).await?;
    let (placed, failed, per_worker) = tally(&ids, outcomes);
    Ok(Rep {
        total,
        mean_latency,
        placed,
        failed,
        per_worker,
        delays,
        store: stats,
        engine: engine_stats,
        redis_cpu: redis1.zip(redis0).map(|(b, a)| b.saturating_sub(a)),
        process_cpu: process1.zip(process0).map(|(b, a)| b.saturating_sub(a)),
    })
}

/// Placed and failed requests, and containers per worker in the order of `ids`.
fn tally(ids: &[WorkerId], outcomes: Vec<Outcome>) -> (usize, usize, Vec<usize>) {
    let index: HashMap<_, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut per_worker = vec![0; ids.len()];
    let (mut placed, mut failed) = (0, 0);
    for outcome in outcomes {
        match outcome {
            Outcome::Placed { worker } => {
                placed += 1;
                if let Some(&i) = index.get(&worker) {
                    per_worker[i] += 1;
                }
            }
            Outcome::Failed { reason } => {
                failed += 1;
                tracing::warn!(%reason, "a seed request was not placed");
            }
        }
    }
    (placed, failed, per_worker)
}

type Burst = (
    Duration,
    Vec<Outcome>,
    Duration,
    DelaySnapshot,
    StatsSnapshot,
    EngineStatsSnapshot,
);

/// Submits every request in one call and waits for every outcome; the counters are taken
/// just before the submit and just after the last outcome.
async fn burst(
    engine: &Engine,
    store: &SimulatedRttStore<dyn Store>,
    (containers, fractions): (usize, bool),
    tag: &str,
    prefix: &str,
) -> anyhow::Result<Burst> {
    let engine_stats = engine.stats();
    let (d0, s0, e0) = (
        store.delays(),
        store.stats().snapshot(),
        engine_stats.snapshot(),
    );
    let started = Instant::now();
    let now = engine.now_ms();
    let requests = (0..containers)
        .map(|i| {
            let request = fleet::request(format!("{prefix}-{tag}-{i}"), now)?;
            Ok(if fractions {
                fleet::quarter_gpu(request)
            } else {
                request
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tickets = engine.submit_many(requests).await.context("submitting")?;
    let waits = tickets.into_iter().map(|ticket| async move {
        let outcome = ticket.outcome().await;
        (outcome, started.elapsed())
    });
    let finished = futures::future::join_all(waits).await;
    let total = started.elapsed();
    let (d1, s1, e1) = (
        store.delays(),
        store.stats().snapshot(),
        engine_stats.snapshot(),
    );
    let mut outcomes = Vec::with_capacity(finished.len());
    let mut latency_sum = Duration::ZERO;
    for (outcome, at) in finished {
        outcomes.push(outcome.context("waiting for an outcome")?);
        latency_sum += at;
    }
    let mean = latency_sum / u32::try_from(outcomes.len().max(1)).unwrap_or(u32::MAX);
    Ok((
        total,
        outcomes,
        mean,
        d1.since(&d0),
        s1.since(&s0),
        e1.since(&e0),
    ))
}

/// Averages the repetitions of one strategy on one fleet size at one rtt: its times here,
/// its counts in [`counts`].
fn summarize(
    strategy: Strategy,
    rtt: Duration,
    workers: usize,
    containers: usize,
    reps: &[Rep],
) -> RunResult {
    let n = reps.len().max(1) as f64;
    let mut times: Vec<f64> = reps.iter().map(|r| r.total.as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    let p50 = percentile(&times, 50.0);
    RunResult {
        scenario: Scenario::Seed.as_str(),
        strategy: strategy.to_string(),
        rtt_ms: rtt.as_secs_f64() * 1e3,
        workers,
        containers,
        repetitions: reps.len(),
        replicas: 1,
        counts_per: "batch of requests (one repetition), averaged over the repetitions",
        p50_ms: p50,
        min_ms: times.first().copied().unwrap_or(0.0),
        max_ms: times.last().copied().unwrap_or(0.0),
        mean_ms: times.iter().sum::<f64>() / n,
        avg_container_ms: avg(reps, |r| r.mean_latency.as_secs_f64() * 1e3),
        placements_per_sec: if p50 > 0.0 {
            containers as f64 / (p50 / 1e3)
        } else {
            0.0
        },
        times_ms: reps.iter().map(|r| r.total.as_secs_f64() * 1e3).collect(),
        redis_cpu_ms: average_cpu(reps.iter().map(|r| r.redis_cpu)),
        process_cpu_ms: average_cpu(reps.iter().map(|r| r.process_cpu)),
        complete: true,
        ..counts(containers, reps)
    }
}

/// The mean of `figure` over the repetitions (over 1 when there are none).
fn avg(reps: &[Rep], figure: impl Fn(&Rep) -> f64) -> f64 {
    reps.iter().map(figure).sum::<f64>() / reps.len().max(1) as f64
}

/// The counts of a seed row, averaged over the repetitions: round trips, reads, locks,
/// the cache, placements and the simulated network.
fn counts(containers: usize, reps: &[Rep]) -> RunResult {
    let trips = |r: &Rep, ops: &[Op]| {
        ops.iter()
            .map(|&op| r.delays.round_trips_of(op))
            .sum::<u64>() as f64
    };
    let round_trips =
        RoundTrips::by_kind(|ops| avg(reps, |r| trips(r, ops)), &[Op::Submit, Op::Claim]);
    let attempts = |r: &Rep| (r.store.lock_acquisitions + r.store.lock_collisions) as f64;
    let collisions = avg(reps, |r| r.store.lock_collisions as f64);
    let lock_attempts = avg(reps, attempts);
    let fleet_reads = avg(reps, |r| r.delays.calls(Op::Workers) as f64);
    let reads = |r: &Rep| {
        (r.delays.calls(Op::Workers) + r.delays.calls(Op::Worker) + r.delays.calls(Op::Owners))
            as f64
    };
    RunResult {
        round_trips: round_trips.scheduler(),
        round_trips_detail: round_trips,
        store_round_trips: avg(reps, |r| r.store.round_trips as f64),
        commands: avg(reps, |r| r.store.commands as f64),
        script_calls: avg(reps, |r| r.store.script_calls as f64),
        redis_reads: avg(reps, reads),
        worker_records_read: avg(reps, |r| r.store.worker_reads as f64),
        lock_acquisitions: avg(reps, |r| r.store.lock_acquisitions as f64),
        lock_collisions: collisions,
        lock_collision_rate: if lock_attempts > 0.0 {
            collisions / lock_attempts
        } else {
            0.0
        },
        version_conflicts: avg(reps, |r| r.engine.version_conflicts as f64),
        cache_hit_rate: (1.0 - fleet_reads / containers.max(1) as f64).max(0.0),
        engine_cache_hits: avg(reps, |r| r.engine.cache_hits as f64),
        engine_cache_misses: avg(reps, |r| r.engine.cache_misses as f64),
        per_worker_min: avg(reps, |r| {
            r.per_worker.iter().copied().min().unwrap_or(0) as f64
        }),
        per_worker_max: avg(reps, |r| {
            r.per_worker.iter().copied().max().unwrap_or(0) as f64
        }),
        touched_workers: avg(reps, |r| {
            r.per_worker.iter().filter(|&&c| c > 0).count() as f64
        }),
        distribution: reps
            .last()
            .map(|r| r.per_worker.clone())
            .unwrap_or_default(),
        placed: avg(reps, |r| r.placed as f64),
        failed: avg(reps, |r| r.failed as f64),
        all_placed: !reps.is_empty() && reps.iter().all(|r| r.placed == containers),
        simulated_round_trips: avg(reps, |r| r.delays.round_trips as f64),
        simulated_network_ms: avg(reps, |r| r.delays.simulated.as_secs_f64() * 1e3),
        slept_ms: avg(reps, |r| r.delays.slept.as_secs_f64() * 1e3),
        ..RunResult::default()
    }
}

/// The mean of the measured CPU times in ms; `None` unless every repetition measured one.
fn average_cpu(times: impl Iterator<Item = Option<Duration>>) -> Option<f64> {
    let times: Option<Vec<Duration>> = times.collect();
    let times = times.filter(|t| !t.is_empty())?;
    Some(times.iter().map(|t| t.as_secs_f64() * 1e3).sum::<f64>() / times.len() as f64)
}
