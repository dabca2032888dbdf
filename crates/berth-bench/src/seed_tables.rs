//! The seed scenario's tables: one per rtt and fleet size, with the worker distributions.

use crate::args::Settings;
use crate::format::{ms, n, pct, right, t, table};
use crate::published::print_comparison;
use crate::report::{BenchReport, RunResult};
use comfy_table::Cell;
use std::time::Duration;

/// How one row of a seed table shows a run.
type RowFn = fn(&RunResult) -> String;

/// The rows of a seed table: the label, and how a run shows in it.
const ROWS: &[(&str, RowFn)] = &[
    ("Total time for all: p50 (min-max)", |r| {
        format!("{} ({}-{})", t(r.p50_ms), t(r.min_ms), t(r.max_ms))
    }),
    ("Average time per container", |r| t(r.avg_container_ms)),
    ("Throughput", |r| format!("{:.0}/s", r.placements_per_sec)),
    ("Lock acquisitions", |r| n(r.lock_acquisitions)),
    ("Lock collisions (rate)", |r| {
        format!("{} ({})", n(r.lock_collisions), pct(r.lock_collision_rate))
    }),
    ("Redis reads (worker records)", |r| {
        format!("{} ({})", n(r.redis_reads), n(r.worker_records_read))
    }),
    ("Scheduler round trips: reads+locks+commits+settle", |r| {
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
    ("All store round trips (incl. submit, claim)", |r| {
        n(r.store_round_trips)
    }),
    ("Version conflicts", |r| n(r.version_conflicts)),
    ("Cache hit rate", |r| pct(r.cache_hit_rate)),
    ("Containers per worker: min-max (workers used)", |r| {
        format!(
            "{}-{} ({} of {})",
            n(r.per_worker_min),
            n(r.per_worker_max),
            n(r.touched_workers),
            r.workers
        )
    }),
    ("Placed / failed (per repetition)", |r| {
        let all = if r.all_placed {
            "all, every time"
        } else {
            "NOT ALL"
        };
        format!("{}/{} ({all})", n(r.placed), n(r.failed))
    }),
];

/// What the seed rows count, printed under the tables.
const NOTES: &[&str] = &[
    "- Total time: from just before one submit_many of all requests to the last outcome (all committed and settled); p50 is the nearest-rank median of the repetitions.",
    "- Average time per container: mean over requests of submit -> that request's outcome.",
    "- Lock collisions: lock attempts that found the lock held (the serial and batch-lock strategies retry them); rate = collisions / attempts.",
    "- Redis reads: read operations as the seed counts them: full fleet reads (GetAllWorkers = workers()) + single worker reads (worker()); in brackets, the worker records they read.",
    "- Scheduler round trips: the engine's placement work: reads (a fleet read is 2: the index, then all workers in one pipeline), locks + unlocks, commits, settle (one call recording every outcome of the batch). Submit and intake claims (which every strategy pays alike) are in 'all store round trips', the store's own counter over the window, with housekeeping.",
    "- Cache hit rate: per request, as the seed counts it: requests planned without a fleet read of their own. Each repetition starts a fresh engine, so batch strategies pay one cold fleet read (2 round trips) per repetition.",
    "- Containers per worker: min and max over the whole fleet (idle workers count as 0); bars show the last repetition.",
    "- Every repetition ends with the store's invariant check (no double booking, no leak); a violation fails the bench.",
];

/// Prints the seed scenario's tables: one per rtt and fleet size, the distributions, and
/// the seed's figures beside berth's.
pub fn print_seed(report: &BenchReport, settings: &Settings) {
    let strategies: Vec<String> = settings
        .strategies
        .iter()
        .map(ToString::to_string)
        .collect();
    if settings.gpu_devices > 0 {
        println!(
            "Workers with {} A10G devices each; every request also asks a quarter of one GPU.",
            settings.gpu_devices
        );
    }
    for rtt in &settings.rtts {
        let rtt_ms = rtt.as_secs_f64() * 1e3;
        for &workers in &settings.fleets {
            let runs: Vec<&RunResult> = strategies
                .iter()
                .filter_map(|s| report.find("seed", s, rtt_ms, workers))
                .collect();
            print_table(report, *rtt, workers, &runs);
        }
    }
    if let Some(rtt) = settings.rtts.first() {
        print_distributions(report, settings, &strategies, rtt.as_secs_f64() * 1e3);
    }
    for rtt in &settings.rtts {
        print_comparison(report, settings, rtt.as_secs_f64() * 1e3);
    }
    println!("\nWhat the seed rows count:");
    for line in NOTES {
        println!("{line}");
    }
}

/// Prints the table of one rtt and fleet size: a column per strategy that ran.
fn print_table(report: &BenchReport, rtt: Duration, workers: usize, runs: &[&RunResult]) {
    let Some(first) = runs.first() else { return };
    let distance = if rtt.is_zero() {
        "loopback".to_owned()
    } else {
        format!("simulated rtt {} ms", ms(rtt))
    };
    println!(
        "\nSeed scenario: {} requests on {workers} workers, {distance}, {} repetitions (+1 warm-up) on {}",
        first.containers, first.repetitions, report.store.kind
    );
    let mut header = vec!["metric".to_owned()];
    header.extend(runs.iter().map(|r| r.strategy.clone()));
    let mut tab = table(header);
    for (label, value) in ROWS {
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

/// Prints containers per worker of the last repetition, per fleet size, as bars.
fn print_distributions(
    report: &BenchReport,
    settings: &Settings,
    strategies: &[String],
    rtt_ms: f64,
) {
    for &workers in &settings.fleets {
        let runs: Vec<&RunResult> = strategies
            .iter()
            .filter_map(|s| report.find("seed", s, rtt_ms, workers))
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
