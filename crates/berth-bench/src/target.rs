//! What a row of the targets table ([`TARGETS`](crate::targets::TARGETS)) is: a
//! [`Target`] names the target, the runs it applies to ([`Scope`]) and the store it is for,
//! how to measure it from the report ([`Measured`]), and the bounds the figures must keep
//! ([`Bound`]); [`Target::judge`] gives its verdict on one [`Subject`].

use crate::report::{BenchReport, RunResult, Verdict};

/// Why a Redis target has no verdict on the memory store.
pub const MEMORY_STORE: &str = "the bench ran on the memory store; the target is for Redis";

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
