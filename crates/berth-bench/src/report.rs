//! The bench's results: the JSON document, the tables (comfy-table) and the verdicts on the
//! targets.
//!
//! ## What the seed rows count (per repetition, averaged over the repetitions)
//! - **Total time**: from just before the one `submit_many` of all requests to the last
//!   ticket's outcome (all committed and settled). p50 is the nearest-rank median.
//! - **Average time per container**: the mean over requests of submit -> that request's
//!   outcome.
//! - **Lock acquisitions / collisions**: the store's counters (a collision is a lock
//!   attempt that found the lock held); the rate is collisions / attempts.
//! - **Redis reads**: read operations, as the seed counts them: full fleet reads
//!   (`workers()`, the seed's GetAllWorkers) plus single worker reads (`worker()`). The
//!   worker records those read are counted separately.
//! - **Scheduler round trips**: the round trips of the engine's placement work: fleet and
//!   worker reads (a fleet read is 2: the index, then every worker in one pipeline), locks
//!   and unlocks, commits, and the settle that records the placements. Not counted there:
//!   the submit and the intake claim, backlog housekeeping and ticket checks, which every
//!   strategy pays alike; they are in **all store round trips**, the store's own counter
//!   over the window.
//! - **Version conflicts**: commits rejected because the worker changed since it was read.
//! - **Cache hit rate**: as the seed counts it, per request: the share of requests planned
//!   without a fleet read of their own (1 - fleet reads / requests, at least 0).
//! - **Containers per worker**: min and max over the fleet, including idle workers.
//! - **Throughput**: requests / p50 total time.
//! - **Simulated network**: with `--rtt-ms`, the delay the [`crate::simulated_rtt::SimulatedRttStore`]
//!   added, summed over calls (concurrent calls overlap, so it can exceed the wall time).

use super::fleet::Machine;
use super::store_choice::{RedisMemory, StoreInfo};
use super::{Scenario, Settings};
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use std::time::Duration;

/// The whole result: what `--json` writes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The store the bench ran on.
    pub store: StoreInfo,
    /// The machine it ran on.
    pub machine: Machine,
    /// One entry per scenario, strategy, rtt, fleet size (and replica count).
    pub runs: Vec<RunResult>,
    /// The API scenario's results, if it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api: Vec<super::api::ApiResult>,
    /// The verdicts on the targets.
    pub targets: Vec<Verdict>,
    /// Remarks on the run (store fallback, reduced repetitions, ...).
    pub notes: Vec<String>,
}

impl BenchReport {
    /// An empty report.
    pub fn new(store: StoreInfo, machine: Machine) -> BenchReport {
        BenchReport {
            store,
            machine,
            runs: Vec::new(),
            api: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Round trips by kind of work (see the module documentation).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RoundTrips {
    /// Fleet and worker reads.
    pub reads: f64,
    /// Lock and unlock calls.
    pub locks: f64,
    /// Commits, lock-free or locked.
    pub commits: f64,
    /// Settlements and releases.
    pub settle: f64,
    /// Submit (seed only) and claims: not part of the scheduler's round trips.
    pub intake: f64,
    /// Backlog housekeeping, ticket checks: not part of the scheduler's round trips.
    pub other: f64,
}

impl RoundTrips {
    /// The scheduler's round trips: reads, locks, commits and settle.
    pub fn scheduler(&self) -> f64 {
        self.reads + self.locks + self.commits + self.settle
    }
}

/// Latency percentiles, in ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    /// Requests measured.
    pub samples: u64,
    /// Sampled requests without a scheduled time (not placed).
    pub unscheduled: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One strategy on one fleet size at one rtt (and replica count): the JSON's `runs` entry.
/// Counts are per `counts_per`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunResult {
    /// `seed`, `sustained` or `c1m`.
    pub scenario: &'static str,
    /// The commit strategy.
    pub strategy: String,
    /// The simulated round-trip time, in ms (0: loopback).
    pub rtt_ms: f64,
    /// Workers in the fleet.
    pub workers: usize,
    /// Requests per repetition.
    pub containers: usize,
    /// Measured repetitions.
    pub repetitions: usize,
    /// Engine replicas.
    pub replicas: usize,
    /// What the counts are per.
    pub counts_per: &'static str,
    /// Total time to place all requests: median over repetitions, ms.
    pub p50_ms: f64,
    /// Fastest repetition, ms.
    pub min_ms: f64,
    /// Slowest repetition, ms.
    pub max_ms: f64,
    /// Mean over repetitions, ms.
    pub mean_ms: f64,
    /// Mean time from submit to a request's outcome, ms.
    pub avg_container_ms: f64,
    /// Scheduler round trips (reads, locks, commits, settle).
    pub round_trips: f64,
    /// The scheduler's round trips by kind, and the intake's.
    pub round_trips_detail: RoundTrips,
    /// Every round trip of the engine's store client (its own counter).
    pub store_round_trips: f64,
    /// Commands sent by the engine's store client.
    pub commands: f64,
    /// Lua script calls by the engine's store client.
    pub script_calls: f64,
    /// Read operations: fleet reads plus single worker reads.
    pub redis_reads: f64,
    /// Worker records read.
    pub worker_records_read: f64,
    /// Worker locks taken.
    pub lock_acquisitions: f64,
    /// Lock attempts that found the lock held.
    pub lock_collisions: f64,
    /// Collisions / lock attempts.
    pub lock_collision_rate: f64,
    /// Commits rejected because the worker changed.
    pub version_conflicts: f64,
    /// Seed: requests planned without their own fleet read; scale runs: the engine's
    /// cache hits per snapshot.
    pub cache_hit_rate: f64,
    /// The engine cache's own hit counter (one per batch snapshot).
    pub engine_cache_hits: f64,
    /// The engine cache's own miss counter.
    pub engine_cache_misses: f64,
    /// The fewest containers on one worker.
    pub per_worker_min: f64,
    /// The most containers on one worker.
    pub per_worker_max: f64,
    /// Workers that received at least one container.
    pub touched_workers: f64,
    /// Containers per worker in worker order, of the last repetition (seed only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub distribution: Vec<usize>,
    /// Requests placed per second of total time.
    pub placements_per_sec: f64,
    /// Requests placed.
    pub placed: f64,
    /// Requests failed.
    pub failed: f64,
    /// True when every request was placed in every repetition.
    pub all_placed: bool,
    /// Round trips the delay wrapper simulated.
    pub simulated_round_trips: f64,
    /// The delay it asked for, summed over calls, ms.
    pub simulated_network_ms: f64,
    /// The delay it actually slept, summed over calls, ms.
    pub slept_ms: f64,
    /// Every repetition's total time, ms, in run order.
    pub times_ms: Vec<f64>,
    /// Scale runs: placement latency percentiles, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Percentiles>,
    /// Scale runs: batches the engines processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<u64>,
    /// Scale runs: round trips of the submitting client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit_round_trips: Option<u64>,
    /// Scale runs: the in-flight window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Scale runs: this process's peak resident memory during the run, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_scheduler_memory_bytes: Option<u64>,
    /// Scale runs on Redis: `INFO memory` right after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_memory: Option<RedisMemory>,
    /// CPU time the Redis server used during the measured window (seed: per repetition,
    /// averaged), ms; `None` on the memory store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_ms: Option<f64>,
    /// CPU time this process (engines, submitter, runtime) used during the measured window
    /// (seed: per repetition, averaged), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_cpu_ms: Option<f64>,
    /// False when a scale run hit its time limit.
    pub complete: bool,
}

/// The verdict on one target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// The target, as the issue states it.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// `met`, `missed`, `partly` or `not run`.
    pub verdict: &'static str,
    /// Why, when it is not simply met.
    pub why: String,
}

/// A duration in ms for labels: `0`, `1`, `0.5`.
pub fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    format!("{ms}")
}

/// The nearest-rank `p`th percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A time in ms with sensible precision.
fn t(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A count that may be a fractional average.
fn n(x: f64) -> String {
    if (x - x.round()).abs() < 0.05 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

fn table(header: Vec<String>) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(header);
    table
}

/// A table whose long cells wrap: to the terminal's width, or to 160 columns when the
/// output is not a terminal.
fn wrapping(header: Vec<String>) -> Table {
    let mut table = table(header);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if table.width().is_none() {
        table.set_width(160);
    }
    table
}

fn right(table: &mut Table, from: usize) {
    let columns = table.column_count();
    for i in from..columns {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// How one row of a seed table shows a run.
type RowFn = Box<dyn Fn(&RunResult) -> String>;

fn find<'a>(
    report: &'a BenchReport,
    scenario: &str,
    strategy: &str,
    rtt_ms: f64,
    workers: usize,
) -> Option<&'a RunResult> {
    report.runs.iter().find(|r| {
        r.scenario == scenario
            && r.strategy == strategy
            && (r.rtt_ms - rtt_ms).abs() < 1e-9
            && r.workers == workers
    })
}

/// Prints the seed scenario's tables: one per rtt and fleet size, the distributions, and
/// the seed's figures beside berth's.
pub fn print_seed(report: &BenchReport, settings: &Settings) {
    let strategies: Vec<String> = settings
        .strategies
        .iter()
        .map(ToString::to_string)
        .collect();
    for rtt in &settings.rtts {
        let rtt_ms = rtt.as_secs_f64() * 1e3;
        for &workers in &settings.fleets {
            let runs: Vec<&RunResult> = strategies
                .iter()
                .filter_map(|s| find(report, "seed", s, rtt_ms, workers))
                .collect();
            let Some(first) = runs.first() else { continue };
            let distance = if rtt.is_zero() {
                "loopback".to_owned()
            } else {
                format!("simulated rtt {} ms", ms(*rtt))
            };
            println!(
                "\nSeed scenario: {} requests on {workers} workers, {distance}, {} repetitions (+1 warm-up) on {}",
                first.containers, first.repetitions, report.store.kind
            );
            let mut header = vec!["metric".to_owned()];
            header.extend(runs.iter().map(|r| r.strategy.clone()));
            let mut tab = table(header);
            let rows: Vec<(&str, RowFn)> = vec![
                (
                    "Total time for all: p50 (min-max)",
                    Box::new(|r| format!("{} ({}-{})", t(r.p50_ms), t(r.min_ms), t(r.max_ms))),
                ),
                (
                    "Average time per container",
                    Box::new(|r| t(r.avg_container_ms)),
                ),
                (
                    "Throughput",
                    Box::new(|r| format!("{:.0}/s", r.placements_per_sec)),
                ),
                ("Lock acquisitions", Box::new(|r| n(r.lock_acquisitions))),
                (
                    "Lock collisions (rate)",
                    Box::new(|r| {
                        format!("{} ({})", n(r.lock_collisions), pct(r.lock_collision_rate))
                    }),
                ),
                (
                    "Redis reads (worker records)",
                    Box::new(|r| format!("{} ({})", n(r.redis_reads), n(r.worker_records_read))),
                ),
                (
                    "Scheduler round trips: reads+locks+commits+settle",
                    Box::new(|r| {
                        let d = &r.round_trips_detail;
                        format!(
                            "{} = {}+{}+{}+{}",
                            n(r.round_trips),
                            n(d.reads),
                            n(d.locks),
                            n(d.commits),
                            n(d.settle)
                        )
                    }),
                ),
                (
                    "All store round trips (incl. submit, claim)",
                    Box::new(|r| n(r.store_round_trips)),
                ),
                ("Version conflicts", Box::new(|r| n(r.version_conflicts))),
                ("Cache hit rate", Box::new(|r| pct(r.cache_hit_rate))),
                (
                    "Containers per worker: min-max (workers used)",
                    Box::new(|r| {
                        format!(
                            "{}-{} ({} of {})",
                            n(r.per_worker_min),
                            n(r.per_worker_max),
                            n(r.touched_workers),
                            r.workers
                        )
                    }),
                ),
                (
                    "Placed / failed (per repetition)",
                    Box::new(|r| {
                        let all = if r.all_placed {
                            "all, every time"
                        } else {
                            "NOT ALL"
                        };
                        format!("{}/{} ({all})", n(r.placed), n(r.failed))
                    }),
                ),
            ];
            for (label, value) in &rows {
                let mut row = vec![Cell::new(label)];
                row.extend(runs.iter().map(|r| Cell::new(value(r))));
                tab.add_row(row);
            }
            if runs
                .iter()
                .any(|r| r.redis_cpu_ms.is_some() || r.process_cpu_ms.is_some())
            {
                let mut row = vec![Cell::new("CPU used in the window: Redis / bench process")];
                row.extend(runs.iter().map(|r| {
                    let show = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), t);
                    Cell::new(format!(
                        "{} / {}",
                        show(r.redis_cpu_ms),
                        show(r.process_cpu_ms)
                    ))
                }));
                tab.add_row(row);
            }
            if !rtt.is_zero() {
                let mut row = vec![Cell::new("Simulated network (summed over calls; slept)")];
                row.extend(runs.iter().map(|r| {
                    Cell::new(format!(
                        "{} rtts = {} ({})",
                        n(r.simulated_round_trips),
                        t(r.simulated_network_ms),
                        t(r.slept_ms)
                    ))
                }));
                tab.add_row(row);
            }
            right(&mut tab, 1);
            println!("{tab}");
        }
    }
    if let Some(rtt) = settings.rtts.first() {
        print_distributions(report, settings, &strategies, rtt.as_secs_f64() * 1e3);
    }
    for rtt in &settings.rtts {
        print_comparison(report, settings, rtt.as_secs_f64() * 1e3);
    }
    println!("\nWhat the seed rows count:");
    for line in [
        "- Total time: from just before one submit_many of all requests to the last outcome (all committed and settled); p50 is the nearest-rank median of the repetitions.",
        "- Average time per container: mean over requests of submit -> that request's outcome.",
        "- Lock collisions: lock attempts that found the lock held (the serial and batch-lock strategies retry them); rate = collisions / attempts.",
        "- Redis reads: read operations as the seed counts them: full fleet reads (GetAllWorkers = workers()) + single worker reads (worker()); in brackets, the worker records they read.",
        "- Scheduler round trips: the engine's placement work: reads (a fleet read is 2: the index, then all workers in one pipeline), locks + unlocks, commits, settle (one call recording every outcome of the batch). Submit and intake claims (which every strategy pays alike) are in 'all store round trips', the store's own counter over the window, with housekeeping.",
        "- Cache hit rate: per request, as the seed counts it: requests planned without a fleet read of their own. Each repetition starts a fresh engine, so batch strategies pay one cold fleet read (2 round trips) per repetition.",
        "- Containers per worker: min and max over the whole fleet (idle workers count as 0); bars show the last repetition.",
        "- Every repetition ends with the store's invariant check (no double booking, no leak); a violation fails the bench.",
    ] {
        println!("{line}");
    }
}

fn print_distributions(
    report: &BenchReport,
    settings: &Settings,
    strategies: &[String],
    rtt_ms: f64,
) {
    for &workers in &settings.fleets {
        let runs: Vec<&RunResult> = strategies
            .iter()
            .filter_map(|s| find(report, "seed", s, rtt_ms, workers))
            .collect();
        if runs.is_empty() {
            continue;
        }
        println!(
            "\nWorker distribution, {workers} workers (last repetition, rtt {rtt_ms} ms): containers per worker"
        );
        let mut header = vec!["worker".to_owned()];
        header.extend(runs.iter().map(|r| r.strategy.clone()));
        let mut tab = table(header);
        for i in 0..workers {
            let mut row = vec![Cell::new(format!("Worker {}", i + 1))];
            row.extend(runs.iter().map(|r| {
                let c = r.distribution.get(i).copied().unwrap_or(0);
                Cell::new(format!("{} ({c})", "█".repeat(c)))
            }));
            tab.add_row(row);
        }
        println!("{tab}");
    }
}

/// The seed's published figures: (before, after) as text and as a midpoint.
struct Published {
    metric: &'static str,
    before: (&'static str, f64),
    after: (&'static str, f64),
    /// Lower is better (times, locks, reads, collisions).
    lower_is_better: bool,
    value: fn(&RunResult) -> f64,
    show: fn(f64) -> String,
}

const PUBLISHED: [Published; 8] = [
    Published {
        metric: "Total time (100 containers)",
        before: ("5-8 s", 6500.0),
        after: ("1.5-2 s", 1750.0),
        lower_is_better: true,
        value: |r| r.p50_ms,
        show: t,
    },
    Published {
        metric: "Average time per container",
        before: ("150-300 ms", 225.0),
        after: ("15-20 ms", 17.5),
        lower_is_better: true,
        value: |r| r.avg_container_ms,
        show: t,
    },
    Published {
        metric: "Lock acquisitions",
        before: ("100", 100.0),
        after: ("20", 20.0),
        lower_is_better: true,
        value: |r| r.lock_acquisitions,
        show: n,
    },
    Published {
        metric: "Redis reads",
        before: ("200", 200.0),
        after: ("21", 21.0),
        lower_is_better: true,
        value: |r| r.redis_reads,
        show: n,
    },
    Published {
        metric: "Lock collision rate",
        before: ("~80%", 0.8),
        after: ("~10%", 0.1),
        lower_is_better: true,
        value: |r| r.lock_collision_rate,
        show: pct,
    },
    Published {
        metric: "Cache hit rate",
        before: ("0%", 0.0),
        after: ("95%+", 0.95),
        lower_is_better: false,
        value: |r| r.cache_hit_rate,
        show: pct,
    },
    Published {
        metric: "Throughput",
        before: ("~14/s", 14.0),
        after: ("~67/s", 67.0),
        lower_is_better: false,
        value: |r| r.placements_per_sec,
        show: |x| format!("{x:.0}/s"),
    },
    Published {
        metric: "Most containers on one worker",
        before: ("40 (uneven)", 40.0),
        after: ("5 (even)", 5.0),
        lower_is_better: true,
        value: |r| r.per_worker_max,
        show: n,
    },
];

/// berth's value against the seed's: for times and rates "N× faster/better"; for counts the
/// plain ratio berth / seed.
fn ratio(p: &Published, berth: f64, seed: f64) -> String {
    if seed == 0.0 {
        return if berth == 0.0 {
            "same".to_owned()
        } else {
            "-".to_owned()
        };
    }
    let r = berth / seed;
    if p.metric.contains("time") || p.metric == "Throughput" {
        let factor = if p.lower_is_better {
            1.0 / r.max(1e-12)
        } else {
            r
        };
        if factor >= 1.0 {
            format!("{factor:.1}× better")
        } else {
            format!("{:.1}× worse", 1.0 / factor.max(1e-12))
        }
    } else {
        format!("×{r:.2}")
    }
}

fn print_comparison(report: &BenchReport, settings: &Settings, rtt_ms: f64) {
    let workers = if settings.fleets.contains(&20) {
        20
    } else {
        settings.fleets[settings.fleets.len() / 2]
    };
    let serial = find(report, "seed", "serial", rtt_ms, workers);
    let lock = find(report, "seed", "batch-lock", rtt_ms, workers);
    let script = find(report, "seed", "batch-script", rtt_ms, workers);
    if serial.is_none() && lock.is_none() && script.is_none() {
        return;
    }
    println!(
        "\nThe seed's published figures beside berth's: {workers} workers, {} (ratio = berth against the seed; × = berth / seed)",
        if rtt_ms == 0.0 {
            "loopback".to_owned()
        } else {
            format!("simulated rtt {rtt_ms} ms (the seed's Redis calls took 5-10 ms)")
        }
    );
    let mut tab = table(
        [
            "metric",
            "seed before",
            "berth serial",
            "ratio",
            "seed after",
            "berth batch-lock",
            "ratio",
            "berth batch-script",
            "ratio to seed after",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let cell = |p: &Published, run: Option<&RunResult>| {
        run.map_or_else(|| "-".to_owned(), |r| (p.show)((p.value)(r)))
    };
    let rat = |p: &Published, run: Option<&RunResult>, seed: f64| {
        run.map_or_else(|| "-".to_owned(), |r| ratio(p, (p.value)(r), seed))
    };
    for p in &PUBLISHED {
        tab.add_row(vec![
            p.metric.to_owned(),
            p.before.0.to_owned(),
            cell(p, serial),
            rat(p, serial, p.before.1),
            p.after.0.to_owned(),
            cell(p, lock),
            rat(p, lock, p.after.1),
            cell(p, script),
            rat(p, script, p.after.1),
        ]);
    }
    right(&mut tab, 1);
    println!("{tab}");
}

/// Prints the table of a scale scenario.
pub fn print_scale(report: &BenchReport, scenario: Scenario) {
    let runs: Vec<&RunResult> = report
        .runs
        .iter()
        .filter(|r| r.scenario == scenario.as_str())
        .collect();
    let Some(first) = runs.first() else { return };
    println!(
        "\n{} scenario: {} requests on {} workers, on {} (counts per 100 placements)",
        scenario.as_str(),
        first.containers,
        first.workers,
        report.store.kind
    );
    let mut speed = table(
        [
            "strategy",
            "rtt",
            "replicas",
            "placed",
            "time",
            "placements/s",
            "latency p50 / p90 / p99 / max",
            "in flight",
            "batches",
            "conflicts",
            "per worker",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let mut cost = table(
        [
            "strategy",
            "rtt",
            "replicas",
            "engine round trips",
            "commands",
            "submit round trips",
            "CPU: redis",
            "CPU: bench",
            "peak memory",
            "redis memory (now / peak)",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let some = |x: Option<u64>| x.map_or_else(|| "-".to_owned(), |x| x.to_string());
    for r in &runs {
        let latency = r.latency_ms.map_or_else(
            || "-".to_owned(),
            |l| format!("{} / {} / {} / {}", t(l.p50), t(l.p90), t(l.p99), t(l.max)),
        );
        let placed = format!(
            "{}{}",
            n(r.placed),
            if r.all_placed { "" } else { " (INCOMPLETE)" }
        );
        speed.add_row(vec![
            r.strategy.clone(),
            format!("{} ms", r.rtt_ms),
            r.replicas.to_string(),
            placed,
            t(r.p50_ms),
            format!("{:.0}", r.placements_per_sec),
            latency,
            some(r.in_flight.map(|x| x as u64)),
            some(r.batches),
            n(r.version_conflicts),
            format!("{}-{}", n(r.per_worker_min), n(r.per_worker_max)),
        ]);
        cost.add_row(vec![
            r.strategy.clone(),
            format!("{} ms", r.rtt_ms),
            r.replicas.to_string(),
            format!("{:.2}", r.store_round_trips),
            format!("{:.1}", r.commands),
            some(r.submit_round_trips),
            cpu_busy(r, r.redis_cpu_ms),
            cpu_busy(r, r.process_cpu_ms),
            r.peak_scheduler_memory_bytes
                .map_or_else(|| "-".to_owned(), bytes),
            r.redis_memory.map_or_else(
                || "-".to_owned(),
                |m| format!("{} / {}", bytes(m.used_memory), bytes(m.used_memory_peak)),
            ),
        ]);
    }
    right(&mut speed, 1);
    right(&mut cost, 1);
    println!("{speed}");
    println!("Cost (per 100 placements where it says so):");
    println!("{cost}");
    for line in [
        "- time: first submit to the last outcome; a separate client submits chunks of 512, keeping at most the in-flight window submitted and undecided (a closed loop).",
        "- latency: record's scheduled time (stamped at settle) - submitted_at_ms (stamped just before the submit), ms resolution, read back from the records after the run.",
        "- engine round trips / commands: the replicas' store clients (claim, reads, commits, settle, housekeeping) per 100 placements; submit round trips: the submitting client's, in total.",
        "- CPU: CPU time during the run over its wall time (100% = one core) and per placement; redis from INFO cpu (all its threads), bench from every thread of this process (engines, submitter, runtime). Both share this machine's cores.",
        "- peak memory: this process's VmHWM, reset to the current resident size just before the run: engine replicas + submitting client + runtime (with --store memory, the store's data too); a later run of the same invocation also carries the heap the earlier runs' checks left behind.",
        "- redis memory: INFO memory right after the run (used_memory / used_memory_peak since the server started).",
    ] {
        println!("{line}");
    }
}

/// `93.0% (45 µs)`: CPU time over wall time (100% = one core), and per placement.
fn cpu_busy(r: &RunResult, cpu_ms: Option<f64>) -> String {
    cpu_ms.map_or_else(
        || "-".to_owned(),
        |ms| {
            let busy = if r.p50_ms > 0.0 { ms / r.p50_ms } else { 0.0 };
            let per = if r.placed > 0.0 {
                ms * 1e3 / r.placed
            } else {
                0.0
            };
            format!("{} ({per:.0} µs)", pct(busy))
        },
    )
}

/// Judges the targets against the runs, stores the verdicts in the report and prints them.
pub fn print_targets(report: &mut BenchReport) {
    report.targets = judge(report);
    if report.targets.is_empty() {
        return;
    }
    println!("\nTargets");
    let mut tab = wrapping(
        ["target", "measured", "verdict", "why / what it would take"]
            .map(str::to_owned)
            .to_vec(),
    );
    for v in &report.targets {
        tab.add_row(vec![
            v.target.clone(),
            v.measured.clone(),
            v.verdict.to_owned(),
            v.why.clone(),
        ]);
    }
    println!("{tab}");
    for note in &report.notes {
        println!("note: {note}");
    }
}

fn verdict(target: &str, measured: String, met: bool, why_not: String) -> Verdict {
    Verdict {
        target: target.to_owned(),
        measured,
        verdict: if met { "met" } else { "missed" },
        why: if met { String::new() } else { why_not },
    }
}

fn seed_runs<'a>(report: &'a BenchReport, strategy: &str, rtt_ms: f64) -> Vec<&'a RunResult> {
    report
        .runs
        .iter()
        .filter(|r| {
            r.scenario == "seed" && r.strategy == strategy && (r.rtt_ms - rtt_ms).abs() < 1e-9
        })
        .collect()
}

/// The verdicts on every target the runs in the report can speak to.
fn judge(report: &BenchReport) -> Vec<Verdict> {
    let mut out = Vec::new();
    let redis = report.store.kind == "redis";
    let script0 = seed_runs(report, "batch-script", 0.0);
    if !script0.is_empty() {
        let target =
            "batch-script, seed scenario, loopback Redis: p50 under 2 ms for all 100 committed";
        let measured = script0
            .iter()
            .map(|r| {
                let cpu = r
                    .redis_cpu_ms
                    .map_or_else(String::new, |c| format!(" (Redis CPU {})", t(c)));
                format!("{} workers: {}{cpu}", r.workers, t(r.p50_ms))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let met = script0.iter().all(|r| r.p50_ms < 2.0 && r.all_placed);
        let redis_cpu = script0
            .iter()
            .filter_map(|r| r.redis_cpu_ms)
            .fold(0.0, f64::max);
        let why = if redis_cpu >= 1.5 {
            format!(
                "Redis alone spends up to {} of CPU per burst in the scripts on the critical path, one after the other: submit (100 records), claim wake-up + screen, commit (one script per worker), settle (100 items). Under 2 ms needs the store's scripts to cost well under 15 µs of server time per request (today ~{:.0} µs): fewer checks and smaller replies per call, or fewer calls (e.g. one commit script per batch and slot instead of per worker)",
                t(redis_cpu),
                redis_cpu * 1e3 / 100.0
            )
        } else {
            "the burst is 5 sequential store calls (submit, claim wake-up + screen, cold fleet read, commit pipeline, settle); see the per-run rows for where the time goes".to_owned()
        };
        let mut v = verdict(target, measured, met, why);
        if !redis {
            v.verdict = "not run";
            v.why = "the bench ran on the memory store; the target is for Redis".to_owned();
        }
        out.push(v);
        let commit = script0
            .iter()
            .map(|r| {
                r.round_trips_detail.commits
                    + r.round_trips_detail.settle
                    + r.round_trips_detail.locks
            })
            .fold(0.0, f64::max);
        let total = script0.iter().map(|r| r.round_trips).fold(0.0, f64::max);
        out.push(Verdict {
            target: "batch-script: at most 2 Redis round trips".to_owned(),
            measured: format!(
                "commit + settle: {}; with the cold-cache fleet read of a fresh engine: {}",
                n(commit),
                n(total)
            ),
            verdict: if total <= 2.0 {
                "met"
            } else if commit <= 2.0 {
                "partly"
            } else {
                "missed"
            },
            why: if total <= 2.0 {
                String::new()
            } else {
                "each repetition starts a fresh engine whose worker cache is empty: its first batch reads the fleet (SMEMBERS + one HGETALL pipeline = 2 round trips). A running engine's cache is warm (write-through from commit replies, 5 s TTL backstop), so its batches cost the commit pipeline + the settle = 2. One round trip could be saved by keeping the worker index inside the fleet read's pipeline (e.g. one script returning every worker)".to_owned()
            },
        });
        let locks = script0
            .iter()
            .map(|r| r.lock_acquisitions)
            .fold(0.0, f64::max);
        out.push(verdict(
            "batch-script: 0 lock acquisitions",
            n(locks),
            locks == 0.0,
            "batch-script should never lock".to_owned(),
        ));
    }
    for rtt in distinct_rtts(report) {
        let serial = seed_runs(report, "serial", rtt);
        let lock = seed_runs(report, "batch-lock", rtt);
        let script = seed_runs(report, "batch-script", rtt);
        let label = if rtt == 0.0 {
            "loopback".to_owned()
        } else {
            format!("rtt {rtt} ms")
        };
        if !serial.is_empty() && !lock.is_empty() {
            let pairs: Vec<(f64, f64, usize)> = serial
                .iter()
                .filter_map(|s| {
                    let l = lock.iter().find(|l| l.workers == s.workers)?;
                    Some((
                        s.p50_ms / l.p50_ms.max(1e-9),
                        s.lock_collision_rate,
                        s.workers,
                    ))
                })
                .collect();
            let measured = pairs
                .iter()
                .map(|(x, c, w)| format!("{w} workers: {x:.1}× slower, {} collisions", pct(*c)))
                .collect::<Vec<_>>()
                .join("; ");
            let met = pairs.iter().all(|(x, c, _)| *x >= 3.0 && *c >= 0.5);
            out.push(verdict(
                &format!("serial reproduces the seed's 'before' ({label}): far slower than batch-lock (taken as >= 3×) with many lock collisions (taken as >= 50%)"),
                measured,
                met,
                "on loopback a round trip costs tens of microseconds, so serial's extra round trips and lock retries cost little wall time; the shape shows with network distance (--rtt-ms)".to_owned(),
            ));
        }
        if !lock.is_empty() {
            let measured = lock
                .iter()
                .map(|r| {
                    format!(
                        "{} workers: {} locks for {} touched workers",
                        r.workers,
                        n(r.lock_acquisitions),
                        n(r.touched_workers)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let met = lock.iter().all(|r| {
                let per = r.lock_acquisitions / r.touched_workers.max(1.0);
                (0.9..=1.25).contains(&per)
            });
            out.push(verdict(
                &format!("batch-lock takes about one lock per touched worker ({label})"),
                measured,
                met,
                "lock retries after version conflicts take extra locks".to_owned(),
            ));
        }
        if rtt > 0.0 && !script.is_empty() {
            for (other, want, runs) in [("serial", 100.0, &serial), ("batch-lock", 10.0, &lock)] {
                if runs.is_empty() {
                    continue;
                }
                let pairs: Vec<(usize, f64)> = script
                    .iter()
                    .filter_map(|s| {
                        let o = runs.iter().find(|o| o.workers == s.workers)?;
                        Some((s.workers, o.p50_ms / s.p50_ms.max(1e-9)))
                    })
                    .collect();
                let measured = pairs
                    .iter()
                    .map(|(w, x)| format!("{w} workers: {x:.1}×"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let met = pairs.iter().all(|(_, x)| *x >= want);
                let why = if other == "batch-lock" {
                    "both strategies pay the same sequential round trips for submit, claim, the cold fleet read (2) and settle; batch-lock's per-worker commits run in parallel, so it adds only about 4 sequential round trips (lock, read, commit, unlock) to batch-script's 1. The ratio is bounded by (shared + 4) / (shared + 1) < 4×; 10× would need batch-lock to serialize its workers, which berth's batch-lock (like the seed's, with a goroutine per worker) does not".to_owned()
                } else {
                    let script_trips = script
                        .iter()
                        .map(|r| r.simulated_round_trips)
                        .fold(0.0, f64::max);
                    let serial_trips = runs
                        .iter()
                        .map(|r| r.p50_ms / rtt)
                        .fold(f64::INFINITY, f64::min);
                    format!(
                        "batch-script cannot go below its {} sequential round trips (submit, claim, the cold fleet read's 2, commit, settle) plus its loopback cost, so 100× needs serial's critical path to be >= {:.0} round-trip times; berth's serial takes about {:.0} ({} ms each): requests spread over the workers by rendezvous hashing, ~3 round trips per locked commit, version-conflict restarts of ~6, and short lock-retry pauses (0.2-5 ms). The seed's 5-8 s at 5-10 ms per call (~800 call-times, with 80-120 ms lock waits by its own account) reflects a slower lock wait than berth's serial reproduces; the ratio grows with rtt only while batch-script's loopback cost matters",
                        n(script_trips),
                        script_trips * 100.0,
                        serial_trips,
                        rtt
                    )
                };
                out.push(verdict(
                    &format!(
                        "{label}: batch-script >= {want}× faster than {other} (seed scenario)"
                    ),
                    measured,
                    met,
                    why,
                ));
            }
        }
    }
    let sustained: Vec<&RunResult> = report
        .runs
        .iter()
        .filter(|r| r.scenario == "sustained" && r.strategy == "batch-script" && r.rtt_ms == 0.0)
        .collect();
    if let Some(best) = sustained
        .iter()
        .max_by(|a, b| a.placements_per_sec.total_cmp(&b.placements_per_sec))
    {
        let measured = sustained
            .iter()
            .map(|r| format!("{} replicas: {:.0}/s", r.replicas, r.placements_per_sec))
            .collect::<Vec<_>>()
            .join(", ");
        let redis_us = best
            .redis_cpu_ms
            .filter(|_| best.placed > 0.0)
            .map(|ms| ms * 1e3 / best.placed);
        let busy = best
            .redis_cpu_ms
            .filter(|_| best.p50_ms > 0.0)
            .map(|ms| ms / best.p50_ms);
        let why = match (redis_us, busy) {
            (Some(us), Some(busy)) => format!(
                "Redis is single-threaded and was {} busy at the best point, spending {us:.0} µs of CPU per placement (submit, claim, commit, settle scripts); 50,000/s needs at most 20 µs per placement on one Redis thread, i.e. {:.1}× cheaper scripts, or more Redis threads of work (Redis Cluster with the intake sharded, {{q0}}..{{qN}}), on a machine where Redis does not share {} cores with the engines and the load generator",
                pct(busy),
                us / 20.0,
                report.machine.cores
            ),
            _ => "see the CPU columns of the sustained table".to_owned(),
        };
        let mut v = verdict(
            "batch-script sustained: >= 50,000 placements/s with 1,000 workers on one Redis",
            measured,
            best.placements_per_sec >= 50_000.0 && best.all_placed,
            why,
        );
        if !redis {
            v.verdict = "not run";
            v.why = "the bench ran on the memory store; the target is for Redis".to_owned();
        }
        out.push(v);
    }
    let c1m: Vec<&RunResult> = report.runs.iter().filter(|r| r.scenario == "c1m").collect();
    for r in c1m {
        out.push(verdict(
            "c1m: 1,000,000 placements on 10,000 workers in under 60 s",
            format!(
                "{} placed on {} workers in {} ({:.0}/s, {} replicas)",
                n(r.placed),
                r.workers,
                t(r.p50_ms),
                r.placements_per_sec,
                r.replicas
            ),
            r.p50_ms < 60_000.0 && r.all_placed && r.containers >= 1_000_000 && r.workers >= 10_000,
            c1m_why(r),
        ));
        let memory = r.peak_scheduler_memory_bytes;
        out.push(Verdict {
            target: "c1m: scheduler memory under 1 GiB".to_owned(),
            measured: memory.map_or_else(
                || "not measured (VmHWM could not be reset)".to_owned(),
                bytes,
            ),
            verdict: match memory {
                Some(m) if m < 1 << 30 => "met",
                Some(_) => "missed",
                None => "not run",
            },
            why: String::new(),
        });
    }
    out
}

/// Why a c1m run missed 60 s, from its CPU figures.
fn c1m_why(r: &RunResult) -> String {
    let (Some(redis), Some(bench)) = (r.redis_cpu_ms, r.process_cpu_ms) else {
        return "needs >= 16,700 placements/s; see the sustained scenario for the per-placement cost".to_owned();
    };
    if r.placed <= 0.0 || r.p50_ms <= 0.0 {
        return "nothing was placed".to_owned();
    }
    let wall_us = r.p50_ms * 1e3 / r.placed;
    let redis_us = redis * 1e3 / r.placed;
    let bench_us = bench * 1e3 / r.placed;
    format!(
        "needs <= 60 µs of wall time per placement, took {wall_us:.0} µs. Redis spent {redis_us:.0} µs of CPU per placement ({} busy; on 10,000 workers nearly every placement is a commit script call of its own, plus submit, claim and settle) and the engines {bench_us:.0} µs (their per-batch work grows with the fleet: the cache snapshot clones every worker, the planner indexes all of them, and the cache reloads all 10,000 every 5 s). A replica's claim, plan, commit and settle run one after the other, so Redis idles while it plans: more replicas overlap them until Redis or the 2 cores saturate. Under 60 s needs Redis under ~50 µs per placement with the engine work overlapped, i.e. cheaper commit scripts (smaller replies, fewer checks, one call per batch and slot) and less per-batch work proportional to the fleet",
        pct(redis / r.p50_ms)
    )
}

fn distinct_rtts(report: &BenchReport) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for r in report.runs.iter().filter(|r| r.scenario == "seed") {
        if !out.iter().any(|x| (x - r.rtt_ms).abs() < 1e-9) {
            out.push(r.rtt_ms);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn ratios_read_the_right_way() {
        let time = &PUBLISHED[0];
        assert_eq!(ratio(time, 10.0, 1000.0), "100.0× better");
        let locks = &PUBLISHED[2];
        assert_eq!(ratio(locks, 20.0, 20.0), "×1.00");
    }
}
