//! The run's summary: its figures, the reasons it failed (if any), printed for people and
//! written as JSON.

use crate::checks::{CheckLog, SeenViolation};
use crate::faults::FaultRecord;
use crate::load::LoadReport;
use crate::verify::{Finding, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The violations the check reported.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Violations {
    /// How many distinct violations.
    pub count: u64,
    /// Each, with when it was seen.
    pub details: Vec<SeenViolation>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// The length of the load, in seconds.
    pub seconds: u64,
    /// Whether Redis was a cluster.
    pub cluster: bool,
    /// Whether the run passed.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub failures: Vec<String>,
    /// Requests the load generator made (probes not included).
    pub requests: u64,
    /// Accepted containers (load and probes): those that got a 2xx.
    pub accepted: u64,
    /// Of those, the fault injector's probes.
    pub probes: u64,
    /// Requests refused with a 4xx.
    pub rejected: u64,
    /// Requests no replica acknowledged in time.
    pub unacknowledged: u64,
    /// Submit calls retried on an unavailable replica.
    pub retried_calls: u64,
    /// Accepted containers placed at least once.
    pub placed: u64,
    /// Accepted containers by final state.
    pub outcomes: BTreeMap<String, u64>,
    /// Why those that did not exit failed, were lost or still wait (`state: reason`), with
    /// how many gave each reason.
    pub reasons: BTreeMap<String, u64>,
    /// Faults injected, by kind (not those skipped for want of a target).
    pub faults: BTreeMap<String, u64>,
    /// Each fault as it happened.
    pub fault_log: Vec<FaultRecord>,
    /// The longest recovery time of a fault, in ms (see `faults`): from the injection until
    /// a probe submitted right after it exited 0.
    pub max_recovery_ms: Option<u64>,
    /// Injected faults whose probe never finished.
    pub unrecovered: u64,
    /// The invariant check's violations.
    pub violations: Violations,
    /// The violations the final check, on the idle fleet, still reports (the others were
    /// transient).
    pub final_violations: Vec<Finding>,
    /// Whether a replica answered the final check.
    pub final_check_answered: bool,
    /// Check samples answered.
    pub check_samples: u64,
    /// Check samples no replica answered.
    pub check_unanswered: u64,
    /// How many accepted containers were lost.
    pub lost: u64,
    /// Which, and why.
    pub lost_details: Vec<Finding>,
    /// How many were still scheduled or running after the drain.
    pub stuck: u64,
    /// Which.
    pub stuck_details: Vec<Finding>,
    /// How many containers started twice or were owned twice.
    pub duplicates: u64,
    /// Which.
    pub duplicate_details: Vec<Finding>,
    /// How many live workers had capacity missing once idle.
    pub leaked: u64,
    /// Which.
    pub leak_details: Vec<Finding>,
    /// How many processes crashed or panicked.
    pub crashes: u64,
    /// Which, and how (a process that exited by itself, or a panic line from its log).
    pub crash_details: Vec<Finding>,
    /// Whether the fleet went idle before the drain's time-out.
    pub drained: bool,
    /// How long the drain took, in ms.
    pub drain_ms: u64,
    /// Where the logs are, when the directory was kept.
    pub log_dir: Option<String>,
}

impl Summary {
    /// Fills in the figures from the parts of the run, and decides whether it passed.
    pub fn new(
        (seed, seconds, cluster): (u64, u64, bool),
        load: &LoadReport,
        accepted: u64,
        faults: Vec<FaultRecord>,
        checks: CheckLog,
        verdict: Verdict,
    ) -> Summary {
        let mut by_kind = BTreeMap::new();
        for fault in faults.iter().filter(|f| f.injected) {
            *by_kind.entry(fault.kind.as_str().to_owned()).or_default() += 1;
        }
        let mut summary = Summary {
            seed,
            seconds,
            cluster,
            requests: load.requests,
            accepted,
            probes: accepted.saturating_sub(load.accepted.len() as u64),
            rejected: load.rejected.len() as u64,
            unacknowledged: load.unacknowledged.len() as u64,
            retried_calls: load.retried_calls,
            placed: verdict.placed,
            outcomes: verdict.outcomes,
            reasons: verdict.reasons,
            faults: by_kind,
            max_recovery_ms: faults.iter().filter_map(|f| f.recovery_ms).max(),
            unrecovered: faults
                .iter()
                .filter(|f| f.injected && f.recovery_ms.is_none())
                .count() as u64,
            fault_log: faults,
            violations: Violations {
                count: checks.violations.len() as u64,
                details: checks.violations,
            },
            check_samples: checks.samples,
            check_unanswered: checks.unanswered,
            lost: verdict.lost.len() as u64,
            lost_details: verdict.lost,
            stuck: verdict.stuck.len() as u64,
            stuck_details: verdict.stuck,
            duplicates: verdict.duplicates.len() as u64,
            duplicate_details: verdict.duplicates,
            leaked: verdict.leaked.len() as u64,
            leak_details: verdict.leaked,
            ..Summary::default()
        };
        summary.judge();
        summary
    }

    /// Lists the reasons the run failed and sets `passed`.
    pub fn judge(&mut self) {
        let mut failures = Vec::new();
        let mut fail = |n: u64, what: &str| {
            if n > 0 {
                failures.push(format!("{n} {what}"));
            }
        };
        fail(self.violations.count, "invariant violations");
        fail(self.lost, "accepted containers lost");
        fail(
            self.stuck,
            "containers still scheduled or running after the drain",
        );
        fail(self.duplicates, "containers placed twice");
        fail(self.leaked, "workers with leaked capacity");
        fail(self.unrecovered, "faults without recovery");
        fail(self.crashes, "crashed processes or panics");
        let errors = self.fault_log.iter().filter(|f| f.error.is_some()).count() as u64;
        fail(errors, "faults that could not be injected or healed");
        if !self.final_check_answered {
            failures.push("no replica answered the final invariant check".to_owned());
        }
        if !self.drained {
            failures.push("the fleet did not go idle before the drain's time-out".to_owned());
        }
        self.passed = failures.is_empty();
        self.failures = failures;
    }

    /// The summary for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let store = if self.cluster {
            "Redis Cluster"
        } else {
            "standalone Redis"
        };
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(
            out,
            "berth-chaos {verdict}: seed {}, {} s, {store}",
            self.seed, self.seconds
        );
        let _ = writeln!(
            out,
            "  requests {} (accepted {} and {} probes, rejected {}, unacknowledged {}), placed {}, outcomes {:?}",
            self.requests,
            self.accepted - self.probes,
            self.probes,
            self.rejected,
            self.unacknowledged,
            self.placed,
            self.outcomes
        );
        for (reason, count) in &self.reasons {
            let _ = writeln!(out, "    {count} x {reason}");
        }
        let _ = writeln!(
            out,
            "  faults {:?}; max recovery {} ms",
            self.faults,
            self.max_recovery_ms
                .map_or("-".to_owned(), |m| m.to_string())
        );
        for fault in &self.fault_log {
            let recovery = match (fault.injected, fault.recovery_ms) {
                (false, _) => "not injected".to_owned(),
                (true, None) => "UNRECOVERED".to_owned(),
                (true, Some(m)) => format!("recovered in {m} ms"),
            };
            let error = fault
                .error
                .as_deref()
                .map(|e| format!("; ERROR: {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {:>7} ms {} {}: {}; {recovery}{error}",
                fault.at_ms, fault.kind, fault.target, fault.note
            );
        }
        let _ = writeln!(
            out,
            "  check: {} samples ({} unanswered), {} violations; lost {}, stuck {}, duplicates {}, leaked {}; drained {} in {} ms",
            self.check_samples,
            self.check_unanswered,
            self.violations.count,
            self.lost,
            self.stuck,
            self.duplicates,
            self.leaked,
            self.drained,
            self.drain_ms
        );
        for v in &self.violations.details {
            let _ = writeln!(
                out,
                "    violation at {}-{} ms ({} samples, gone on an immediate re-check after {}): {}: {}",
                v.first_at_ms, v.last_at_ms, v.samples, v.vanished_on_recheck, v.subject, v.detail
            );
        }
        if self.final_check_answered {
            let _ = writeln!(
                out,
                "  final check: {} violations",
                self.final_violations.len()
            );
        }
        for (what, findings) in [
            ("final violation", &self.final_violations),
            ("crash", &self.crash_details),
            ("lost", &self.lost_details),
            ("stuck", &self.stuck_details),
            ("duplicate", &self.duplicate_details),
            ("leak", &self.leak_details),
        ] {
            for f in findings.iter().take(20) {
                let _ = writeln!(out, "    {what}: {}: {}", f.id, f.why);
            }
        }
        for failure in &self.failures {
            let _ = writeln!(out, "  failure: {failure}");
        }
        if let Some(dir) = &self.log_dir {
            let _ = writeln!(out, "  logs kept in {dir}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> Summary {
        let mut summary = Summary {
            final_check_answered: true,
            drained: true,
            ..Summary::default()
        };
        summary.judge();
        summary
    }

    #[test]
    fn a_clean_run_passes() {
        let summary = passing();
        assert!(summary.passed, "{:?}", summary.failures);
    }

    #[test]
    fn each_kind_of_finding_fails_the_run() {
        let finding = Finding {
            id: "x".into(),
            why: "y".into(),
        };
        let cases: [fn(&mut Summary, Finding); 6] = [
            |s, _| s.violations.count = 1,
            |s, f| {
                s.lost = 1;
                s.lost_details = vec![f];
            },
            |s, _| s.duplicates = 1,
            |s, _| s.leaked = 1,
            |s, _| s.drained = false,
            |s, _| s.crashes = 1,
        ];
        for case in cases {
            let mut summary = passing();
            case(&mut summary, finding.clone());
            summary.judge();
            assert!(!summary.passed);
            assert_eq!(summary.failures.len(), 1, "{:?}", summary.failures);
        }
    }

    #[test]
    fn the_json_has_the_promised_fields() {
        let json = serde_json::to_value(passing()).unwrap_or_default();
        for field in [
            "requests",
            "placed",
            "faults",
            "violations",
            "lost",
            "duplicates",
            "leaked",
            "max_recovery_ms",
            "seed",
            "seconds",
            "cluster",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert!(
            json["violations"].get("count").is_some()
                && json["violations"].get("details").is_some()
        );
    }
}
