//! The targets and their verdicts: [`TARGETS`](crate::target_table::TARGETS) is a table,
//! one row per target, and [`judge`] walks it. A row names the target, the runs it applies
//! to ([`Scope`]) and the store it is for, how to measure it from the report, and the
//! bounds the figures must keep.

use crate::format::wrapping;
use crate::report::{BenchReport, RunResult, Verdict};
use crate::target_table::TARGETS;

/// Why a Redis target has no verdict on the memory store.
const MEMORY_STORE: &str = "the bench ran on the memory store; the target is for Redis";

/// The runs a target is judged on; each scope yields its subjects in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The seed scenario's runs on loopback (one subject).
    SeedLoopback,
    /// The seed scenario's runs at one rtt (one subject per rtt that ran).
    SeedRtt,
    /// The sustained scenario's batch-script runs on loopback (one subject).
    Sustained,
    /// One c1m run (one subject per run).
    C1mRun,
}

impl Scope {
    /// Every scope, in the order the verdicts are listed.
    pub const ALL: [Scope; 4] = [
        Scope::SeedLoopback,
        Scope::SeedRtt,
        Scope::Sustained,
        Scope::C1mRun,
    ];

    /// The subjects of this scope in `report`.
    pub fn subjects(self, report: &BenchReport) -> Vec<Subject<'_>> {
        let seed = |rtt_ms: f64| Subject {
            report,
            rtt_ms,
            runs: report
                .runs
                .iter()
                .filter(|r| r.scenario == "seed" && (r.rtt_ms - rtt_ms).abs() < 1e-9)
                .collect(),
        };
        match self {
            Scope::SeedLoopback => vec![seed(0.0)],
            Scope::SeedRtt => distinct_rtts(report).into_iter().map(seed).collect(),
            Scope::Sustained => vec![Subject {
                report,
                rtt_ms: 0.0,
                runs: report
                    .runs
                    .iter()
                    .filter(|r| {
                        r.scenario == "sustained" && r.strategy == "batch-script" && r.rtt_ms == 0.0
                    })
                    .collect(),
            }],
            Scope::C1mRun => report
                .runs
                .iter()
                .filter(|r| r.scenario == "c1m")
                .map(|r| Subject {
                    report,
                    rtt_ms: r.rtt_ms,
                    runs: vec![r],
                })
                .collect(),
        }
    }
}

/// What a target is judged on: some runs of one scope.
#[derive(Debug)]
pub struct Subject<'a> {
    /// The whole report (its store and machine).
    pub report: &'a BenchReport,
    /// The simulated rtt of the runs, in ms.
    pub rtt_ms: f64,
    /// The runs.
    pub runs: Vec<&'a RunResult>,
}

impl<'a> Subject<'a> {
    /// The runs of one strategy.
    pub fn strategy(&self, strategy: &str) -> Vec<&'a RunResult> {
        self.runs
            .iter()
            .copied()
            .filter(|r| r.strategy == strategy)
            .collect()
    }

    /// `loopback` or `rtt N ms`.
    pub fn label(&self) -> String {
        if self.rtt_ms == 0.0 {
            "loopback".to_owned()
        } else {
            format!("rtt {} ms", self.rtt_ms)
        }
    }
}

/// A bound one figure must keep.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Less than.
    Below(f64),
    /// At most.
    AtMost(f64),
    /// At least.
    AtLeast(f64),
    /// From the first to the second, both included.
    Between(f64, f64),
}

impl Bound {
    /// True when `x` keeps the bound.
    pub fn holds(self, x: f64) -> bool {
        match self {
            Bound::Below(bound) => x < bound,
            Bound::AtMost(bound) => x <= bound,
            Bound::AtLeast(bound) => x >= bound,
            Bound::Between(low, high) => (low..=high).contains(&x),
        }
    }
}

/// What a target's measure read from its subject.
#[derive(Debug)]
pub struct Measured {
    /// What was measured, for people.
    pub text: String,
    /// The samples (e.g. one per fleet size), each a figure per bound of the target; the
    /// target is met when every sample keeps every bound.
    pub samples: Vec<Vec<f64>>,
    /// Samples that, keeping the bounds where `samples` do not, make the target partly met.
    pub partly: Vec<Vec<f64>>,
    /// False when a run did not do the rest of what the target asks (place every request,
    /// at the target's size): the target is missed whatever the figures.
    pub complete: bool,
    /// False when the figure could not be measured: the target was not run.
    pub measured: bool,
}

impl Measured {
    /// Complete, measured samples without a partial verdict.
    pub fn new(text: String, samples: Vec<Vec<f64>>) -> Measured {
        Measured {
            text,
            samples,
            partly: Vec::new(),
            complete: true,
            measured: true,
        }
    }
}

/// One row of the targets table.
#[derive(Debug)]
pub struct Target {
    /// The target as the issue states it (some name their subject's rtt).
    pub name: fn(&Subject) -> String,
    /// The runs it applies to.
    pub scope: Scope,
    /// True when it is a target for Redis: on the memory store it is not run.
    pub redis_only: bool,
    /// Reads the figures from the subject; `None` when the runs it needs did not run.
    pub measure: fn(&Subject) -> Option<Measured>,
    /// The bounds, one per figure of a sample.
    pub bounds: &'static [Bound],
    /// Why it was missed, or what it would take.
    pub why: fn(&Subject) -> String,
}

impl Target {
    /// The verdict on this target for one subject; `None` when it does not apply.
    pub fn judge(&self, subject: &Subject) -> Option<Verdict> {
        let measured = (self.measure)(subject)?;
        let keeps = |sample: &Vec<f64>| {
            sample
                .iter()
                .zip(self.bounds)
                .all(|(&x, bound)| bound.holds(x))
        };
        let met = measured.complete && measured.samples.iter().all(keeps);
        let partly = !measured.partly.is_empty() && measured.partly.iter().all(keeps);
        let verdict = match (measured.measured, met, partly) {
            (false, _, _) => "not run",
            (true, true, _) => "met",
            (true, false, true) => "partly",
            (true, false, false) => "missed",
        };
        let mut out = Verdict {
            target: (self.name)(subject),
            measured: measured.text,
            verdict,
            why: if met || !measured.measured {
                String::new()
            } else {
                (self.why)(subject)
            },
        };
        if self.redis_only && subject.report.store.kind != "redis" {
            out.verdict = "not run";
            out.why = MEMORY_STORE.to_owned();
        }
        Some(out)
    }
}

/// The verdicts on every target the runs in the report can speak to: the table walked
/// scope by scope, subject by subject.
pub fn judge(report: &BenchReport) -> Vec<Verdict> {
    let mut out = Vec::new();
    for scope in Scope::ALL {
        for subject in scope.subjects(report) {
            for target in TARGETS.iter().filter(|t| t.scope == scope) {
                out.extend(target.judge(&subject));
            }
        }
    }
    out
}

/// The rtts the seed scenario ran at, in report order.
fn distinct_rtts(report: &BenchReport) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for r in report.runs.iter().filter(|r| r.scenario == "seed") {
        if !out.iter().any(|x| (x - r.rtt_ms).abs() < 1e-9) {
            out.push(r.rtt_ms);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Machine;
    use crate::store_choice::StoreInfo;

    fn report(kind: &'static str) -> BenchReport {
        let store = StoreInfo {
            kind,
            url: None,
            started_by_bench: false,
            version: None,
            description: String::new(),
        };
        let machine = Machine {
            cores: 2,
            memory_bytes: 0,
            memory_gib: 0.0,
        };
        BenchReport::new(store, machine)
    }

    fn seed(strategy: &str, rtt_ms: f64, p50_ms: f64, locks: f64) -> RunResult {
        RunResult {
            scenario: "seed",
            strategy: strategy.to_owned(),
            rtt_ms,
            workers: 20,
            p50_ms,
            lock_acquisitions: locks,
            touched_workers: 20.0,
            lock_collision_rate: if strategy == "serial" { 0.7 } else { 0.0 },
            round_trips: 2.0,
            all_placed: true,
            ..RunResult::default()
        }
    }

    fn verdicts(report: &BenchReport) -> Vec<(String, &'static str)> {
        judge(report)
            .into_iter()
            .map(|v| (v.target, v.verdict))
            .collect()
    }

    #[test]
    fn the_table_is_walked_scope_by_scope_and_subject_by_subject() {
        let mut report = report("redis");
        for rtt in [0.0, 1.0] {
            report.runs.push(seed("serial", rtt, 400.0, 40.0));
            report.runs.push(seed("batch-lock", rtt, 10.0, 20.0));
            report.runs.push(seed("batch-script", rtt, 1.5, 0.0));
        }
        let got = verdicts(&report);
        let names: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(got.len(), 3 + 2 + 4, "{names:#?}");
        assert!(names[0].starts_with("batch-script, seed scenario"));
        assert!(names[3].contains("(loopback)") && names[5].contains("(rtt 1 ms)"));
        assert_eq!(
            names[7],
            "rtt 1 ms: batch-script >= 100× faster than serial (seed scenario)"
        );
        let verdicts: Vec<&str> = got.iter().map(|(_, v)| *v).collect();
        assert_eq!(
            verdicts,
            [
                "met", "met", "met", "met", "met", "met", "met", "met", "missed"
            ]
        );
    }

    #[test]
    fn redis_targets_are_not_run_on_the_memory_store_and_partly_is_kept() {
        let mut report = report("memory");
        let mut script = seed("batch-script", 0.0, 1.0, 0.0);
        script.round_trips = 4.0;
        script.round_trips_detail.commits = 1.0;
        script.round_trips_detail.settle = 1.0;
        report.runs.push(script);
        let got = judge(&report);
        assert_eq!(got[0].verdict, "not run");
        assert_eq!(got[0].why, MEMORY_STORE);
        assert_eq!(got[1].verdict, "partly");
        assert!(!got[1].why.is_empty());
    }

    #[test]
    fn c1m_needs_its_full_size_and_a_measured_memory() {
        let mut report = report("redis");
        report.runs.push(RunResult {
            scenario: "c1m",
            workers: 10_000,
            containers: 999_999,
            p50_ms: 1_000.0,
            all_placed: true,
            ..RunResult::default()
        });
        let got = verdicts(&report);
        assert_eq!(got[0].1, "missed", "{got:?}");
        assert_eq!(got[1].1, "not run", "{got:?}");
    }
}
