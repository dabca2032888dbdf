//! The seed's published figures (before and after its fix) beside berth's.

use crate::args::Settings;
use crate::format::{n, pct, right, t, table};
use crate::report::{BenchReport, RunResult};

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

/// Prints the seed's published figures beside berth's on the middle fleet at `rtt_ms`.
pub fn print_comparison(report: &BenchReport, settings: &Settings, rtt_ms: f64) {
    let workers = if settings.fleets.contains(&20) {
        20
    } else {
        settings.fleets[settings.fleets.len() / 2]
    };
    let serial = report.find("seed", "serial", rtt_ms, workers);
    let lock = report.find("seed", "batch-lock", rtt_ms, workers);
    let script = report.find("seed", "batch-script", rtt_ms, workers);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_the_right_way() {
        let time = &PUBLISHED[0];
        assert_eq!(ratio(time, 10.0, 1000.0), "100.0× better");
        let locks = &PUBLISHED[2];
        assert_eq!(ratio(locks, 20.0, 20.0), "×1.00");
    }
}
