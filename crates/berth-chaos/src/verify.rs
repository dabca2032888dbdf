//! The verdict on what a run left behind, as a pure function of what was observed once the
//! fleet was idle: the accepted ids and their records, the start log, the workers, and the
//! violations the check reported.
//!
//! - **Lost**: an accepted container unknown to the store, or FAILED, LOST, PREEMPTED or
//!   PENDING without a reason (a PENDING one deferred for capacity counts as having one).
//! - **Stuck**: an accepted container still SCHEDULED or RUNNING after the drain.
//! - **Duplicate**: a container that started more than once (more than one line in the
//!   start log), or that the check found owned by several workers.
//! - **Leak**: a worker that is not lost whose free capacity is not its total once idle.

use berth_core::ContainerState;
use berth_core::WorkerStatus;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the store says about one accepted container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFacts {
    /// Its state.
    pub state: ContainerState,
    /// Why it failed, was lost, or waits.
    pub reason: Option<String>,
    /// How often it was deferred for lack of room.
    pub deferrals: u32,
    /// Whether it was ever placed on a worker (scheduled or started at some point).
    pub placed: bool,
}

/// One line of the start log: a container started by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLine {
    /// The container id.
    pub id: String,
    /// Its working directory's name: `ID.ATTEMPT`.
    pub dir: String,
    /// The worker that started it.
    pub worker: String,
}

/// Parses the start log (`ID DIR WORKER` a line); malformed lines are skipped.
pub fn parse_starts(text: &str) -> Vec<StartLine> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(StartLine {
                id: fields.next()?.to_owned(),
                dir: fields.next()?.to_owned(),
                worker: fields.next().unwrap_or("?").to_owned(),
            })
        })
        .collect()
}

/// CPU millicores, MiB and GPUs.
pub type Amount = (u64, u64, u32);

/// A worker as listed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFacts {
    /// Its id.
    pub id: String,
    /// Its status.
    pub status: WorkerStatus,
    /// What is free.
    pub free: Amount,
    /// What it has.
    pub total: Amount,
}

/// Everything the verdict is drawn from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The ids that got a 2xx.
    pub accepted: BTreeSet<String>,
    /// What the store says of each accepted id (`None`: it does not know it).
    pub records: BTreeMap<String, Option<RecordFacts>>,
    /// The start log.
    pub starts: Vec<StartLine>,
    /// The workers once idle.
    pub workers: Vec<WorkerFacts>,
    /// Every violation the check reported during the run and at the end, as
    /// `(subject, detail)`.
    pub violations: Vec<(String, String)>,
}

/// One problem found, about one container or worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The container or worker.
    pub id: String,
    /// What is wrong.
    pub why: String,
}

/// The verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Accepted containers that were placed at least once.
    pub placed: u64,
    /// Accepted containers by final state.
    pub outcomes: BTreeMap<String, u64>,
    /// The reasons of the accepted containers that ended FAILED or LOST or still wait,
    /// as `state: reason`, with how many gave each.
    pub reasons: BTreeMap<String, u64>,
    /// Accepted containers lost.
    pub lost: Vec<Finding>,
    /// Accepted containers still scheduled or running after the drain.
    pub stuck: Vec<Finding>,
    /// Containers started more than once or owned by several workers.
    pub duplicates: Vec<Finding>,
    /// Live workers whose capacity did not all come back.
    pub leaked: Vec<Finding>,
}

/// Draws the verdict from what was observed.
pub fn verify(observed: &Observed) -> Verdict {
    let mut verdict = Verdict::default();
    for id in &observed.accepted {
        let facts = observed.records.get(id).and_then(Option::as_ref);
        let state = facts.map_or("unknown", |f| f.state.as_str());
        *verdict.outcomes.entry(state.to_owned()).or_default() += 1;
        if facts.is_some_and(|f| f.placed) {
            verdict.placed += 1;
        }
        if let Some(f) = facts.filter(|f| f.state != ContainerState::Exited)
            && let Some(reason) = &f.reason
        {
            *verdict
                .reasons
                .entry(format!("{}: {reason}", f.state))
                .or_default() += 1;
        }
        judge_record(id, facts, &mut verdict);
    }
    verdict.duplicates = duplicates(&observed.starts, &observed.violations);
    verdict.lost.extend(unrecorded(observed));
    verdict.leaked = observed
        .workers
        .iter()
        .filter(|w| w.status != WorkerStatus::Lost && w.free != w.total)
        .map(|w| Finding {
            id: w.id.clone(),
            why: format!(
                "{} with {:?} free of {:?} (cpu m, MiB, GPUs) once idle",
                w.status, w.free, w.total
            ),
        })
        .collect();
    verdict
}

/// Containers that exited without a line in the start log: their command never ran where
/// the harness could see it (the start log must be reachable from every runtime), so a
/// duplicate run could hide there too.
fn unrecorded(observed: &Observed) -> Vec<Finding> {
    let started: std::collections::HashSet<&str> =
        observed.starts.iter().map(|s| s.id.as_str()).collect();
    observed
        .accepted
        .iter()
        .filter(|id| {
            let exited = observed
                .records
                .get(*id)
                .and_then(Option::as_ref)
                .is_some_and(|f| f.state == ContainerState::Exited);
            exited && !started.contains(id.as_str())
        })
        .map(|id| Finding {
            id: id.clone(),
            why: "exited without a line in the start log: its command never ran where the harness can see".to_owned(),
        })
        .collect()
}

fn judge_record(id: &str, facts: Option<&RecordFacts>, verdict: &mut Verdict) {
    let finding = |why: String| Finding {
        id: id.to_owned(),
        why,
    };
    let Some(facts) = facts else {
        verdict
            .lost
            .push(finding("accepted but unknown to the store".to_owned()));
        return;
    };
    let has_reason = facts
        .reason
        .as_deref()
        .is_some_and(|r| !r.trim().is_empty());
    match facts.state {
        ContainerState::Exited => {}
        ContainerState::Failed | ContainerState::Lost | ContainerState::Preempted if has_reason => {
        }
        ContainerState::Pending if has_reason || facts.deferrals > 0 => {}
        state if state.is_placed() => {
            verdict
                .stuck
                .push(finding(format!("still {} after the drain", facts.state)));
        }
        state => verdict
            .lost
            .push(finding(format!("{state} without a reason"))),
    }
}

/// Containers with more than one start, and those the check found owned by several workers.
fn duplicates(starts: &[StartLine], violations: &[(String, String)]) -> Vec<Finding> {
    let mut by_id: BTreeMap<&str, Vec<&StartLine>> = BTreeMap::new();
    for start in starts {
        by_id.entry(&start.id).or_default().push(start);
    }
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for (id, lines) in by_id.into_iter().filter(|(_, lines)| lines.len() > 1) {
        let shown: Vec<String> = lines
            .iter()
            .map(|l| format!("{} on {}", l.dir, l.worker))
            .collect();
        found.insert(
            id.to_owned(),
            format!("started {} times: {}", lines.len(), shown.join(", ")),
        );
    }
    for (subject, detail) in violations {
        if detail.starts_with("owned by ") && !found.contains_key(subject) {
            found.insert(subject.clone(), detail.clone());
        }
    }
    found
        .into_iter()
        .map(|(id, why)| Finding { id, why })
        .collect()
}

/// The lines of a process's log (`name`) that report a panic.
pub fn panics_in(name: &str, log: &str) -> Vec<Finding> {
    log.lines()
        .filter(|line| line.contains("panicked at"))
        .map(|line| Finding {
            id: name.to_owned(),
            why: line.trim().to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: ContainerState, reason: Option<&str>, deferrals: u32) -> Option<RecordFacts> {
        Some(RecordFacts {
            state,
            reason: reason.map(str::to_owned),
            deferrals,
            placed: matches!(state, ContainerState::Exited | ContainerState::Lost),
        })
    }

    fn worker(id: &str, status: WorkerStatus, free: Amount) -> WorkerFacts {
        WorkerFacts {
            id: id.to_owned(),
            status,
            free,
            total: (2000, 2048, 0),
        }
    }

    fn start(id: &str, attempt: &str, worker: &str) -> StartLine {
        StartLine {
            id: id.to_owned(),
            dir: format!("{id}.{attempt}"),
            worker: worker.to_owned(),
        }
    }

    fn clean() -> Observed {
        let mut observed = Observed::default();
        let cases = [
            ("a", facts(ContainerState::Exited, None, 0)),
            (
                "b",
                facts(
                    ContainerState::Lost,
                    Some("worker w1 missed its heartbeats"),
                    0,
                ),
            ),
            ("c", facts(ContainerState::Pending, None, 3)),
            (
                "d",
                facts(
                    ContainerState::Failed,
                    Some("timed out waiting for capacity"),
                    9,
                ),
            ),
        ];
        for (id, record) in cases {
            observed.accepted.insert(id.to_owned());
            observed.records.insert(id.to_owned(), record);
        }
        observed.starts = vec![start("a", "x1", "w1"), start("b", "x2", "w1")];
        observed.workers = vec![
            worker("w1", WorkerStatus::Lost, (0, 0, 0)),
            worker("w2", WorkerStatus::Available, (2000, 2048, 0)),
        ];
        observed
    }

    #[test]
    fn a_clean_run_has_no_findings() {
        let verdict = verify(&clean());
        assert_eq!(verdict.placed, 2);
        assert!(
            verdict.lost.is_empty() && verdict.stuck.is_empty(),
            "{verdict:?}"
        );
        assert!(
            verdict.duplicates.is_empty() && verdict.leaked.is_empty(),
            "{verdict:?}"
        );
        assert_eq!(verdict.outcomes.get("exited"), Some(&1));
        assert_eq!(verdict.outcomes.get("pending"), Some(&1));
        assert_eq!(
            verdict.reasons.get("lost: worker w1 missed its heartbeats"),
            Some(&1)
        );
        assert_eq!(verdict.reasons.len(), 2, "{:?}", verdict.reasons);
    }

    #[test]
    fn an_exited_container_without_a_start_line_is_a_finding() {
        let mut observed = clean();
        observed.starts.clear();
        let verdict = verify(&observed);
        let unrecorded: Vec<&Finding> = verdict
            .lost
            .iter()
            .filter(|f| f.why.contains("start log"))
            .collect();
        assert_eq!(unrecorded.len(), 1, "{verdict:?}");
    }

    #[test]
    fn a_container_started_twice_is_a_duplicate() {
        let mut observed = clean();
        observed.starts.push(start("a", "x9", "w2"));
        let verdict = verify(&observed);
        assert_eq!(verdict.duplicates.len(), 1);
        assert_eq!(verdict.duplicates[0].id, "a");
        assert!(
            verdict.duplicates[0].why.contains("a.x9 on w2"),
            "{verdict:?}"
        );
    }

    #[test]
    fn ownership_by_two_workers_is_a_duplicate() {
        let mut observed = clean();
        observed
            .violations
            .push(("c".into(), "owned by 2 workers: w1, w2".into()));
        observed
            .violations
            .push(("w2".into(), "free (1) + owned (0) != total (2)".into()));
        let verdict = verify(&observed);
        assert_eq!(
            verdict.duplicates,
            vec![Finding {
                id: "c".into(),
                why: "owned by 2 workers: w1, w2".into()
            }]
        );
    }

    #[test]
    fn capacity_missing_on_a_live_worker_is_a_leak() {
        let mut observed = clean();
        observed
            .workers
            .push(worker("w3", WorkerStatus::Available, (1500, 2048, 0)));
        observed
            .workers
            .push(worker("w4", WorkerStatus::Lost, (1500, 2048, 0)));
        let verdict = verify(&observed);
        assert_eq!(
            verdict.leaked.len(),
            1,
            "a lost worker's capacity does not count"
        );
        assert_eq!(verdict.leaked[0].id, "w3");
    }

    #[test]
    fn unknown_or_unexplained_containers_are_lost_and_busy_ones_stuck() {
        let mut observed = clean();
        for (id, record) in [
            ("gone", None),
            ("mute", facts(ContainerState::Failed, Some(" "), 0)),
            ("waiting", facts(ContainerState::Pending, None, 0)),
            ("busy", facts(ContainerState::Running, None, 0)),
            ("cut", facts(ContainerState::Preempted, None, 0)),
            (
                "ousted",
                facts(ContainerState::Preempted, Some("by p (priority 9)"), 0),
            ),
        ] {
            observed.accepted.insert(id.to_owned());
            observed.records.insert(id.to_owned(), record);
        }
        observed.accepted.insert("never-read".to_owned());
        let verdict = verify(&observed);
        let lost: Vec<&str> = verdict.lost.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(lost, ["cut", "gone", "mute", "never-read", "waiting"]);
        assert_eq!(verdict.stuck.len(), 1);
        assert_eq!(verdict.outcomes.get("unknown"), Some(&2));
    }

    #[test]
    fn panics_in_a_log_are_found() {
        let log =
            "INFO started\nthread 'tokio-runtime-worker' panicked at crates/x.rs:1:2:\nboom\n";
        let found = panics_in("server-0.1.log", log);
        assert_eq!(found.len(), 1);
        assert!(found[0].why.contains("panicked at crates/x.rs"));
        assert!(panics_in("w", "all fine\n").is_empty());
    }

    #[test]
    fn the_start_log_parses_and_skips_broken_lines() {
        let starts = parse_starts("a a.x1 w1\n\nb\nc c.x2 w2\n");
        assert_eq!(starts, vec![start("a", "x1", "w1"), start("c", "x2", "w2")]);
    }
}
