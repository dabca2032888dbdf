//! The scale driver behind `sustained` and `c1m`: N engine replicas (each with its own store
//! connection, through a [`SimulatedRttStore`]) place a stream of requests that a separate
//! client submits in chunks, keeping at most `in_flight` requests submitted and not yet
//! placed (a closed loop, so the intake never holds the whole run). The time runs from the
//! first submit until every request has an outcome.
//!
//! Latency per request = the record's `scheduled_at_ms` (stamped by the engine when it
//! settles the placement) minus `submitted_at_ms` (the engine clock's `now_ms()` when the
//! chunk was built, just before its submit round trip): milliseconds, read back from the
//! records after the run (every record, or a sample of `latency_samples`).

use crate::args::{Scenario, Settings};
use crate::format::ms;
use crate::report::{BenchReport, Percentiles, RoundTrips, RunResult};
use crate::scale_tables::print_scale;
use crate::simulated_rtt::{DelaySnapshot, Op, SimulatedRttStore};
use crate::store_choice::{Namespace, RedisMemory, StoreChoice};
use crate::tenants::{self, Tenancy};
use crate::{fleet, progress};
use anyhow::{Context, bail};
use berth_engine::{Engine, EngineConfig, EngineStats, Strategy};
use berth_store::prelude::*;
use berth_store::{CheckOptions, StatsSnapshot, Store};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long fresh engines get to reach their idle wait on the intake.
const SETTLE_IN: Duration = Duration::from_millis(50);
/// Requests per submit call.
const CHUNK: usize = 512;
/// Submit calls in flight at once.
const SUBMITTERS: usize = 2;
/// The default in-flight window per replica.
pub const IN_FLIGHT_PER_REPLICA: usize = 4096;
/// Record reads in flight at once when reading latencies back.
const READ_CONCURRENCY: usize = 256;
/// The longest a scale run may take before it is reported as incomplete.
const RUN_LIMIT: Duration = Duration::from_secs(900);

/// One scale run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `sustained` or `c1m`.
    pub scenario: &'static str,
    /// The commit strategy of every replica.
    pub strategy: Strategy,
    /// The simulated round-trip time of the replicas' stores.
    pub rtt: Duration,
    /// Workers in the fleet.
    pub workers: usize,
    /// Requests to place.
    pub requests: usize,
    /// Engine replicas.
    pub replicas: usize,
    /// The most requests submitted and not yet placed.
    pub in_flight: usize,
    /// How many records to read back for latency percentiles (0: none).
    pub latency_samples: usize,
    /// Reset the process's peak memory before the run (for the c1m memory figure).
    pub reset_peak_memory: bool,
    /// The tenants the requests are spread over, and their quotas (`None`: every request
    /// is tenant `bench`, no quotas).
    pub tenancy: Option<Tenancy>,
}

impl LoadSpec {
    /// Tenants the requests are spread over.
    fn tenants(&self) -> usize {
        self.tenancy.map_or(1, |t| t.tenants)
    }
}

/// The engine replicas of a run, each on its own store connection through the simulated
/// round trip.
type Replicas = (Vec<Arc<SimulatedRttStore<dyn Store>>>, Vec<Engine>);

/// Runs one scale run and returns its row.
pub async fn run(choice: &StoreChoice, spec: &LoadSpec) -> anyhow::Result<RunResult> {
    let namespace = choice.namespace();
    let client = choice.connect(&namespace).await?;
    let setup = progress::spinner(&format!("registering {} workers", spec.workers));
    let per_worker = spec.requests.div_ceil(spec.workers);
    let worker = fleet::worker_for(per_worker);
    fleet::register(&*client, spec.workers, worker).await?;
    if spec.tenancy.is_some_and(|t| t.quotas) {
        let fleet = tenants::fleet_total(worker, spec.workers);
        tenants::put_quotas(&*client, fleet, spec.tenants()).await?;
    }
    setup.finish_and_clear();
    let (stores, engines) = start_replicas(choice, &namespace, spec).await?;
    tokio::time::sleep(SETTLE_IN).await;
    let memory_reset = spec.reset_peak_memory && fleet::reset_peak_rss();
    let (redis0, process0) = (choice.redis_cpu().await?, fleet::process_cpu());
    let before = Counters::take(&stores, &engines, &*client);
    let started = Instant::now();
    let outcome = drive(spec, &engines, &client, namespace.prefix(), started).await;
    let elapsed = started.elapsed();
    let after = Counters::take(&stores, &engines, &*client);
    let (redis1, process1) = (choice.redis_cpu().await?, fleet::process_cpu());
    let cpu = Cpu {
        redis: redis1.zip(redis0).map(|(b, a)| b.saturating_sub(a)),
        process: process1.zip(process0).map(|(b, a)| b.saturating_sub(a)),
    };
    let peak_rss = fleet::peak_rss();
    let redis_memory = choice.redis_memory().await?;
    for engine in engines {
        engine.shutdown().await;
    }
    let complete = outcome?;
    let spent = after.since(&before);
    let (latency, distribution) = read_back(&*client, namespace.prefix(), spec).await?;
    check(&*client).await?;
    // Each tenant is charged exactly its requests once all are placed; an incomplete run
    // is reported as such instead.
    if complete && spent.engine.placed as usize == spec.requests {
        tenants::check_usage(&*client, spec.requests, spec.tenants()).await?;
    }
    drop(client);
    clean_up(choice, namespace).await;
    Ok(row(
        spec,
        elapsed,
        complete,
        &spent,
        latency,
        &distribution,
        memory_reset.then_some(peak_rss).flatten(),
        redis_memory,
        cpu,
    ))
}

/// Starts the run's engine replicas, each on its own connection to the namespace.
async fn start_replicas(
    choice: &StoreChoice,
    namespace: &Namespace,
    spec: &LoadSpec,
) -> anyhow::Result<Replicas> {
    let mut stores = Vec::with_capacity(spec.replicas);
    let mut engines = Vec::with_capacity(spec.replicas);
    for i in 0..spec.replicas {
        let inner = choice.connect(namespace).await?;
        let store = Arc::new(SimulatedRttStore::new(inner, spec.rtt));
        let config = EngineConfig {
            strategy: spec.strategy,
            replica: format!("bench-{i}"),
            ..EngineConfig::default()
        };
        engines.push(Engine::start(store.clone(), config, Vec::new()));
        stores.push(store);
    }
    Ok((stores, engines))
}

/// Reads the latencies (if the spec asks for them) and the placements per worker back.
async fn read_back(
    client: &dyn Store,
    prefix: &str,
    spec: &LoadSpec,
) -> anyhow::Result<(Option<Percentiles>, Vec<usize>)> {
    let read = progress::spinner("reading placements and latencies back");
    let latency = if spec.latency_samples > 0 {
        Some(latencies(client, prefix, spec.requests, spec.latency_samples).await?)
    } else {
        None
    };
    let workers = client.workers().await.context("reading the fleet back")?;
    let distribution = fleet::per_worker_from_capacity(&workers);
    read.finish_and_clear();
    Ok((latency, distribution))
}

/// Fails the run if the store's invariant check finds a violation.
async fn check(client: &dyn Store) -> anyhow::Result<()> {
    let check = progress::spinner("checking the invariants");
    let violations = client
        .check(CheckOptions::ignoring_heartbeats())
        .await
        .context("checking the invariants")?;
    check.finish_and_clear();
    if !violations.is_empty() {
        let shown: Vec<_> = violations.iter().take(10).collect();
        bail!(
            "{} invariant violations after the run, e.g. {shown:?}",
            violations.len()
        );
    }
    Ok(())
}

/// Deletes what the run wrote; a failure is only warned about.
async fn clean_up(choice: &StoreChoice, namespace: Namespace) {
    let clean = progress::spinner("cleaning up");
    if let Err(error) = choice.cleanup(namespace).await {
        tracing::warn!(
            error = format!("{error:#}"),
            "cleaning up after the run failed"
        );
    }
    clean.finish_and_clear();
}

/// Runs a scale scenario: every strategy, rtt and replica count asked for (each without
/// and with quotas when asked), one run each on a fresh fleet, reading `latency_samples`
/// records back per run; then prints its table.
pub async fn run_scenario(
    choice: &StoreChoice,
    settings: &Settings,
    report: &mut BenchReport,
    scenario: Scenario,
    latency_samples: usize,
) -> anyhow::Result<()> {
    for spec in specs(settings, scenario, latency_samples) {
        report.runs.push(run_labelled(choice, &spec).await?);
    }
    print_scale(report, scenario);
    Ok(())
}

/// The runs of a scale scenario, in order: by strategy, rtt, replica count, then tenancy
/// (so `--quotas both` runs without and with quotas one after the other).
fn specs(settings: &Settings, scenario: Scenario, latency_samples: usize) -> Vec<LoadSpec> {
    let mut out = Vec::new();
    for &strategy in &settings.strategies {
        for &rtt in &settings.rtts {
            for &replicas in &settings.replicas {
                out.extend(tenants::tenancies(settings).into_iter().map(|tenancy| {
                    LoadSpec {
                        scenario: scenario.as_str(),
                        strategy,
                        rtt,
                        workers: settings.workers,
                        requests: settings.requests,
                        replicas,
                        in_flight: settings
                            .in_flight
                            .unwrap_or(IN_FLIGHT_PER_REPLICA * replicas),
                        latency_samples,
                        reset_peak_memory: true,
                        tenancy,
                    }
                }));
            }
        }
    }
    out
}

/// Runs one scale run; an error names the run.
async fn run_labelled(choice: &StoreChoice, spec: &LoadSpec) -> anyhow::Result<RunResult> {
    run(choice, spec).await.with_context(|| {
        format!(
            "{}: {}, {} replicas, rtt {} ms{}",
            spec.scenario,
            spec.strategy,
            spec.replicas,
            ms(spec.rtt),
            spec.tenancy.map_or_else(String::new, |t| format!(
                ", {} tenants{}",
                t.tenants,
                if t.quotas { " with quotas" } else { "" }
            ))
        )
    })
}

/// CPU time used during the run.
struct Cpu {
    redis: Option<Duration>,
    process: Option<Duration>,
}

/// Submits in chunks within the in-flight window until every request is submitted, and
/// waits until every request has an outcome. False if the run limit was hit first.
async fn drive(
    spec: &LoadSpec,
    engines: &[Engine],
    client: &Arc<dyn Store>,
    prefix: &str,
    started: Instant,
) -> anyhow::Result<bool> {
    let stats: Vec<Arc<EngineStats>> = engines.iter().map(Engine::stats).collect();
    let done = || decided(&stats);
    let base = done();
    let next = AtomicUsize::new(0);
    let bar = progress::bar(spec.requests as u64, spec.scenario);
    let submitter = || async {
        loop {
            let first = next.fetch_add(CHUNK, Ordering::Relaxed);
            if first >= spec.requests {
                return anyhow::Ok(());
            }
            let last = (first + CHUNK).min(spec.requests);
            // Wait for room in the window: requests submitted (or being submitted) and
            // not yet decided.
            while last.saturating_sub(done() - base) > spec.in_flight {
                if started.elapsed() > RUN_LIMIT {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let now = engines
                .first()
                .map_or_else(berth_store::now_ms, Engine::now_ms);
            let chunk = (first..last)
                .map(|i| request(prefix, i, spec, now))
                .collect::<anyhow::Result<Vec<_>>>()?;
            client.submit(&chunk).await.context("submitting a chunk")?;
        }
    };
    let submitters = futures::future::try_join_all((0..SUBMITTERS).map(|_| submitter()));
    let watch = async {
        loop {
            let finished = done() - base;
            bar.set_position(finished as u64);
            let secs = started.elapsed().as_secs_f64();
            if secs > 0.0 {
                bar.set_message(format!("{:.0}/s", finished as f64 / secs));
            }
            if finished >= spec.requests {
                return true;
            }
            if started.elapsed() > RUN_LIMIT {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let (submitted, complete) = tokio::join!(submitters, watch);
    bar.finish_and_clear();
    submitted?;
    Ok(complete)
}

/// Request `index` of the run, of its tenant (round-robin over the run's tenants).
fn request(
    prefix: &str,
    index: usize,
    spec: &LoadSpec,
    now: u64,
) -> anyhow::Result<berth_core::ContainerRequest> {
    let mut request = fleet::request(format!("{prefix}-{index}"), now)?;
    request.tenant = tenants::tenant_of(index, spec.tenants());
    Ok(request)
}

/// Requests the engines have decided (placed or failed) so far.
fn decided(stats: &[Arc<EngineStats>]) -> usize {
    stats
        .iter()
        .map(|s| {
            let s = s.snapshot();
            usize::try_from(s.placed + s.failed).unwrap_or(usize::MAX)
        })
        .sum()
}

/// The counters of every replica's store and engine, and of the submitting client.
struct Counters {
    delays: DelaySnapshot,
    store: StatsSnapshot,
    engine: berth_engine::EngineStatsSnapshot,
    client: StatsSnapshot,
}

impl Counters {
    fn take(
        stores: &[Arc<SimulatedRttStore<dyn Store>>],
        engines: &[Engine],
        client: &dyn Store,
    ) -> Counters {
        let mut out = Counters {
            delays: DelaySnapshot::default(),
            store: StatsSnapshot::default(),
            engine: berth_engine::EngineStatsSnapshot::default(),
            client: client.stats().snapshot(),
        };
        for store in stores {
            out.delays = out.delays.plus(&store.delays());
            out.store = add_stats(&out.store, &store.stats().snapshot());
        }
        for engine in engines {
            out.engine = add_engine(&out.engine, &engine.stats().snapshot());
        }
        out
    }

    fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            delays: self.delays.since(&earlier.delays),
            store: self.store.since(&earlier.store),
            engine: self.engine.since(&earlier.engine),
            client: self.client.since(&earlier.client),
        }
    }
}

fn add_stats(a: &StatsSnapshot, b: &StatsSnapshot) -> StatsSnapshot {
    StatsSnapshot {
        round_trips: a.round_trips + b.round_trips,
        commands: a.commands + b.commands,
        script_calls: a.script_calls + b.script_calls,
        worker_reads: a.worker_reads + b.worker_reads,
        lock_acquisitions: a.lock_acquisitions + b.lock_acquisitions,
        lock_collisions: a.lock_collisions + b.lock_collisions,
        unreplicated: a.unreplicated + b.unreplicated,
    }
}

fn add_engine(
    a: &berth_engine::EngineStatsSnapshot,
    b: &berth_engine::EngineStatsSnapshot,
) -> berth_engine::EngineStatsSnapshot {
    berth_engine::EngineStatsSnapshot {
        batches: a.batches + b.batches,
        placed: a.placed + b.placed,
        failed: a.failed + b.failed,
        deferred: a.deferred + b.deferred,
        version_conflicts: a.version_conflicts + b.version_conflicts,
        cache_hits: a.cache_hits + b.cache_hits,
        cache_misses: a.cache_misses + b.cache_misses,
        superseded: a.superseded + b.superseded,
    }
}

/// Reads `samples` records (evenly spread over the run) back and returns the latency
/// percentiles in ms.
async fn latencies(
    client: &dyn Store,
    prefix: &str,
    requests: usize,
    samples: usize,
) -> anyhow::Result<Percentiles> {
    let step = requests.div_ceil(samples.max(1)).max(1);
    let ids = (0..requests)
        .step_by(step)
        .map(|i| berth_core::ContainerId::new(format!("{prefix}-{i}")))
        .collect::<Result<Vec<_>, _>>()
        .context("a bench container id")?;
    let mut histogram = Histogram::<u64>::new(3).context("a latency histogram")?;
    let mut reads = futures::stream::iter(ids)
        .map(|id| async move { (client.container(&id).await, id) })
        .buffer_unordered(READ_CONCURRENCY);
    let mut missing = 0u64;
    while let Some((record, id)) = reads.next().await {
        let record = record.with_context(|| format!("reading record {id}"))?;
        match record
            .and_then(|r| Some(r.scheduled_at_ms?.saturating_sub(r.request.submitted_at_ms)))
        {
            Some(ms) => histogram.record(ms).context("recording a latency")?,
            None => missing += 1,
        }
    }
    Ok(Percentiles {
        samples: histogram.len(),
        unscheduled: missing,
        p50: histogram.value_at_quantile(0.50) as f64,
        p90: histogram.value_at_quantile(0.90) as f64,
        p99: histogram.value_at_quantile(0.99) as f64,
        p999: histogram.value_at_quantile(0.999) as f64,
        max: histogram.max() as f64,
        mean: histogram.mean(),
    })
}

/// A scale run's row: its identity, time and what was measured around the run here, the
/// store's and engines' counts in [`counts`].
#[allow(clippy::too_many_arguments)]
fn row(
    spec: &LoadSpec,
    elapsed: Duration,
    complete: bool,
    spent: &Counters,
    latency: Option<Percentiles>,
    distribution: &[usize],
    peak_rss: Option<u64>,
    redis_memory: Option<RedisMemory>,
    cpu: Cpu,
) -> RunResult {
    let placed = spent.engine.placed as f64;
    let ms = elapsed.as_secs_f64() * 1e3;
    RunResult {
        scenario: spec.scenario,
        strategy: spec.strategy.to_string(),
        rtt_ms: spec.rtt.as_secs_f64() * 1e3,
        workers: spec.workers,
        containers: spec.requests,
        repetitions: 1,
        replicas: spec.replicas,
        counts_per: "100 placements",
        p50_ms: ms,
        min_ms: ms,
        max_ms: ms,
        mean_ms: ms,
        avg_container_ms: latency.as_ref().map_or(0.0, |l| l.mean),
        per_worker_min: distribution.iter().copied().min().unwrap_or(0) as f64,
        per_worker_max: distribution.iter().copied().max().unwrap_or(0) as f64,
        touched_workers: distribution.iter().filter(|&&c| c > 0).count() as f64,
        distribution: Vec::new(),
        placements_per_sec: if elapsed.is_zero() {
            0.0
        } else {
            placed / elapsed.as_secs_f64()
        },
        all_placed: complete && spent.engine.placed as usize == spec.requests,
        times_ms: vec![ms],
        latency_ms: latency,
        in_flight: Some(spec.in_flight),
        peak_scheduler_memory_bytes: peak_rss,
        redis_memory,
        redis_cpu_ms: cpu.redis.map(|d| d.as_secs_f64() * 1e3),
        process_cpu_ms: cpu.process.map(|d| d.as_secs_f64() * 1e3),
        complete,
        tenancy: spec.tenancy,
        ..counts(spent)
    }
}

/// The counts of a scale run (per 100 placements where the report says so): round trips,
/// reads, locks, the cache, placements and the simulated network.
fn counts(spent: &Counters) -> RunResult {
    let placed = spent.engine.placed as f64;
    let per100 = |n: u64| {
        if placed > 0.0 {
            n as f64 * 100.0 / placed
        } else {
            0.0
        }
    };
    let d = &spent.delays;
    let trips = |ops: &[Op]| per100(ops.iter().map(|&op| d.round_trips_of(op)).sum());
    let round_trips = RoundTrips::by_kind(trips, &[Op::Claim]);
    let attempts = spent.store.lock_acquisitions + spent.store.lock_collisions;
    let cache_reads = spent.engine.cache_hits + spent.engine.cache_misses;
    RunResult {
        round_trips: round_trips.scheduler(),
        round_trips_detail: round_trips,
        store_round_trips: per100(spent.store.round_trips),
        commands: per100(spent.store.commands),
        script_calls: per100(spent.store.script_calls),
        redis_reads: per100(d.calls(Op::Workers) + d.calls(Op::Worker) + d.calls(Op::Owners)),
        worker_records_read: per100(spent.store.worker_reads),
        lock_acquisitions: per100(spent.store.lock_acquisitions),
        lock_collisions: per100(spent.store.lock_collisions),
        lock_collision_rate: share(spent.store.lock_collisions, attempts),
        version_conflicts: per100(spent.engine.version_conflicts),
        cache_hit_rate: share(spent.engine.cache_hits, cache_reads),
        engine_cache_hits: spent.engine.cache_hits as f64,
        engine_cache_misses: spent.engine.cache_misses as f64,
        placed,
        failed: spent.engine.failed as f64,
        simulated_round_trips: d.round_trips as f64,
        simulated_network_ms: d.simulated.as_secs_f64() * 1e3,
        slept_ms: d.slept.as_secs_f64() * 1e3,
        batches: Some(spent.engine.batches),
        submit_round_trips: Some(spent.client.round_trips),
        ..RunResult::default()
    }
}

/// `part / whole`, or 0 when `whole` is 0.
fn share(part: u64, whole: u64) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64
    } else {
        0.0
    }
}
