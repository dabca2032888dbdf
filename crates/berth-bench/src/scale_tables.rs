//! The scale scenarios' tables (sustained and c1m): speed, and cost per placement.

use crate::args::Scenario;
use crate::format::{bytes, n, pct, right, t, table};
use crate::report::{BenchReport, RunResult};
use crate::tenants::{quota_pairs, ratio};

/// The speed table's columns.
const SPEED: [&str; 11] = [
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
];

/// The cost table's columns.
const COST: [&str; 10] = [
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
];

/// What the scale tables count, printed under them.
const NOTES: &[&str] = &[
    "- time: first submit to the last outcome; a separate client submits chunks of 512, keeping at most the in-flight window submitted and undecided (a closed loop).",
    "- latency: record's scheduled time (stamped at settle) - submitted_at_ms (stamped just before the submit), ms resolution, read back from the records after the run.",
    "- engine round trips / commands: the replicas' store clients (claim, reads, commits, settle, housekeeping) per 100 placements; submit round trips: the submitting client's, in total.",
    "- CPU: CPU time during the run over its wall time (100% = one core) and per placement; redis from INFO cpu (all its threads), bench from every thread of this process (engines, submitter, runtime). Both share this machine's cores.",
    "- peak memory: this process's VmHWM, reset to the current resident size just before the run: engine replicas + submitting client + runtime (with --store memory, the store's data too); a later run of the same invocation also carries the heap the earlier runs' checks left behind.",
    "- redis memory: INFO memory right after the run (used_memory / used_memory_peak since the server started).",
];

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
    let mut speed = table(SPEED.map(str::to_owned).to_vec());
    let mut cost = table(COST.map(str::to_owned).to_vec());
    for r in &runs {
        speed.add_row(speed_row(r));
        cost.add_row(cost_row(r));
    }
    right(&mut speed, 1);
    right(&mut cost, 1);
    println!("{speed}");
    println!("Cost (per 100 placements where it says so):");
    println!("{cost}");
    for line in NOTES {
        println!("{line}");
    }
    print_quota_pairs(&runs);
}

/// The quotas' table: each run with quotas beside the run before it without them.
fn print_quota_pairs(runs: &[&RunResult]) {
    let pairs = quota_pairs(runs);
    if pairs.is_empty() {
        return;
    }
    println!("\nQuotas (every placement held before its commit) against none:");
    let columns = [
        "replicas",
        "tenants",
        "placements/s without",
        "with quotas",
        "ratio",
        "engine round trips without / with",
        "CPU: redis without / with",
    ];
    let mut tab = table(columns.map(str::to_owned).to_vec());
    for (without, with) in pairs {
        tab.add_row(vec![
            with.replicas.to_string(),
            with.tenancy.map_or(1, |t| t.tenants).to_string(),
            format!("{:.0}", without.placements_per_sec),
            format!("{:.0}", with.placements_per_sec),
            pct(ratio(without, with)),
            format!(
                "{:.2} / {:.2}",
                without.store_round_trips, with.store_round_trips
            ),
            format!(
                "{} / {}",
                cpu_busy(without, without.redis_cpu_ms),
                cpu_busy(with, with.redis_cpu_ms)
            ),
        ]);
    }
    right(&mut tab, 0);
    println!("{tab}");
}

/// The strategy column: the strategy, and the tenants and quotas when the run had them.
fn strategy_label(r: &RunResult) -> String {
    match r.tenancy {
        None => r.strategy.clone(),
        Some(t) => format!(
            "{}, {} tenants{}",
            r.strategy,
            t.tenants,
            if t.quotas { ", quotas" } else { "" }
        ),
    }
}

/// `-` for a figure that was not measured.
fn some(x: Option<u64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

/// A run's row of the speed table.
fn speed_row(r: &RunResult) -> Vec<String> {
    let latency = r.latency_ms.map_or_else(
        || "-".to_owned(),
        |l| format!("{} / {} / {} / {}", t(l.p50), t(l.p90), t(l.p99), t(l.max)),
    );
    let placed = format!(
        "{}{}",
        n(r.placed),
        if r.all_placed { "" } else { " (INCOMPLETE)" }
    );
    vec![
        strategy_label(r),
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
    ]
}

/// A run's row of the cost table.
fn cost_row(r: &RunResult) -> Vec<String> {
    vec![
        strategy_label(r),
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
    ]
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
