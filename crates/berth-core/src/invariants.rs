//! The invariant check over a dump of a store, shared by both stores so that they judge
//! alike. Reading the dump is the store's job; judging it is this module's, and it is pure:
//! the time it judges at is given.

use crate::{AttemptId, ContainerId, ContainerRecord, ContainerState, Resources, Worker};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// One broken invariant found by a store's check (`berth_store::Inspection::check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The key or entity concerned (a worker id, a container id, a Redis key).
    pub subject: String,
    /// What is wrong, with the numbers.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)
    }
}

/// One container a worker owns, as its ownership entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEntry {
    /// The container.
    pub container: ContainerId,
    /// The attempt that reserved it.
    pub attempt: AttemptId,
    /// What it holds.
    pub resources: Resources,
}

/// One entry of a worker's assignment queue (delivered or not, not acknowledged yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAssignment {
    /// The entry's delivery id (on Redis: the stream entry id).
    pub delivery: String,
    /// The container it assigns.
    pub container: ContainerId,
    /// The attempt it was committed under.
    pub attempt: AttemptId,
}

/// One worker as the check sees it.
#[derive(Debug, Clone)]
pub struct WorkerDump {
    /// The worker: capacity, status.
    pub worker: Worker,
    /// The containers it owns.
    pub owned: Vec<OwnedEntry>,
    /// Its last heartbeat, in ms since the Unix epoch (registration counts as one).
    pub heartbeat_ms: u64,
    /// What its assignment queue holds.
    pub assignments: Vec<QueuedAssignment>,
    /// Where that queue lives, to name it in a violation (on Redis: its key).
    pub queue: String,
}

/// Everything the check looks at.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Every registered worker.
    pub workers: Vec<WorkerDump>,
    /// Every container record.
    pub records: Vec<ContainerRecord>,
    /// The ids waiting for placement: those with an entry in the intake (claimed or not)
    /// and those in the backlog.
    pub queued: HashSet<ContainerId>,
    /// Records and entries that could not be read, already phrased as violations.
    pub unreadable: Vec<Violation>,
}

/// When the check runs and how long a silent worker still counts as alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// The time the check judges at, in ms since the Unix epoch.
    pub now_ms: u64,
    /// A worker whose last heartbeat is older than this (in ms) is dead: nothing scheduled
    /// or running may be owned by it. A server passes more than its reaper needs to declare
    /// a worker lost and reclaim what it owns.
    pub dead_after_ms: u64,
    /// How long a change made in two atomic steps on two slots may show its middle state
    /// before the check reports it (0: report at once). A server's final-report handler
    /// moves the record to its end and then releases the reservation; a check between the
    /// two sees an ended container still owned. If the second step never comes (the server
    /// died), the worker's next heartbeat or the reaper releases it, so a server passes its
    /// dead-after time. It also covers the Redis check's own reads: the workers are read
    /// before the records, so a placement settled after the check began can look unowned.
    pub in_flight_ms: u64,
}

impl CheckOptions {
    /// The dead-after time `berth check --redis` uses unless told otherwise.
    pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(60);

    /// A check at `now_ms` that calls a worker dead after `dead_after` of silence.
    pub fn at(now_ms: u64, dead_after: Duration) -> CheckOptions {
        CheckOptions {
            now_ms,
            dead_after_ms: u64::try_from(dead_after.as_millis()).unwrap_or(u64::MAX),
            in_flight_ms: 0,
        }
    }

    /// The same check, leaving two-step changes younger than `in_flight` alone (see
    /// [`CheckOptions::in_flight_ms`]).
    pub fn with_in_flight(self, in_flight: Duration) -> CheckOptions {
        CheckOptions {
            in_flight_ms: u64::try_from(in_flight.as_millis()).unwrap_or(u64::MAX),
            ..self
        }
    }

    /// True when something done at `at_ms` may still be half-way through a two-step change.
    /// Never with an in-flight time of 0.
    fn in_flight(&self, at_ms: Option<u64>) -> bool {
        self.in_flight_ms > 0
            && at_ms.is_some_and(|at| at.saturating_add(self.in_flight_ms) >= self.now_ms)
    }

    /// True when a placement settled at `at_ms` may have been settled after this check read
    /// its workers: at or after the check began, give or take a second of clock difference
    /// between processes (no more than [`CheckOptions::in_flight_ms`]).
    /// Never with an in-flight time of 0.
    fn settled_during(&self, at_ms: Option<u64>) -> bool {
        let margin = self.in_flight_ms.min(CLOCK_MARGIN_MS);
        self.in_flight_ms > 0 && at_ms.is_some_and(|at| at.saturating_add(margin) >= self.now_ms)
    }

    /// A check that takes every registered worker for alive: for stores whose workers do
    /// not heartbeat (benchmarks, the demo, tests that are not about liveness). Time plays
    /// no part in it (nothing is dead and nothing is in flight), so it judges at time 0.
    pub fn ignoring_heartbeats() -> CheckOptions {
        CheckOptions {
            now_ms: 0,
            dead_after_ms: u64::MAX,
            in_flight_ms: 0,
        }
    }

    /// How long ago `heartbeat_ms` was (0 for a heartbeat from the future).
    pub fn silence_ms(&self, heartbeat_ms: u64) -> u64 {
        self.now_ms.saturating_sub(heartbeat_ms)
    }

    /// True when a worker last heard from at `heartbeat_ms` counts as alive.
    pub fn is_alive(&self, heartbeat_ms: u64) -> bool {
        self.silence_ms(heartbeat_ms) <= self.dead_after_ms
    }
}

/// Clock difference allowed between the process that stamps a placement and the one that
/// checks (see [`CheckOptions::settled_during`]).
const CLOCK_MARGIN_MS: u64 = 1000;

/// Every broken invariant in the dump (see a store's check (`berth_store::Inspection::check`)).
pub fn violations(dump: &Dump, options: &CheckOptions) -> Vec<Violation> {
    let mut found = dump.unreadable.clone();
    let mut owners: HashMap<&ContainerId, Vec<(&WorkerDump, &OwnedEntry)>> = HashMap::new();
    for worker in &dump.workers {
        check_capacity(&worker.worker, &worker.owned, &mut found);
        check_assignments(worker, &mut found);
        for entry in &worker.owned {
            owners
                .entry(&entry.container)
                .or_default()
                .push((worker, entry));
        }
    }
    let mut shared: Vec<_> = owners.iter().filter(|(_, h)| h.len() > 1).collect();
    shared.sort_by_key(|(container, _)| *container);
    for (container, holders) in shared {
        let names: Vec<String> = holders
            .iter()
            .map(|(w, _)| w.worker.id.to_string())
            .collect();
        found.push(violation(
            container,
            format!("owned by {} workers: {}", holders.len(), names.join(", ")),
        ));
    }
    for record in &dump.records {
        let holders = owners
            .get(&record.request.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        check_record(record, holders, dump, options, &mut found);
    }
    found
}

fn check_capacity(worker: &Worker, owned: &[OwnedEntry], found: &mut Vec<Violation>) {
    let held = owned
        .iter()
        .try_fold(Resources::ZERO, |sum, e| sum.checked_add(e.resources));
    let accounted = held.and_then(|held| held.checked_add(worker.free));
    if accounted != Some(worker.total) {
        found.push(violation(
            &worker.id,
            format!(
                "free ({}) + owned ({}) != total ({})",
                worker.free,
                held.map_or("overflow".to_owned(), |h| h.to_string()),
                worker.total
            ),
        ));
    }
    if !worker.free.fits_in(&worker.total) {
        found.push(violation(
            &worker.id,
            format!("free ({}) exceeds total ({})", worker.free, worker.total),
        ));
    }
}

/// Every queued assignment must be for a container the worker owns under the same attempt.
fn check_assignments(worker: &WorkerDump, found: &mut Vec<Violation>) {
    let owned: HashMap<&ContainerId, &AttemptId> = worker
        .owned
        .iter()
        .map(|e| (&e.container, &e.attempt))
        .collect();
    for entry in &worker.assignments {
        let problem = match owned.get(&entry.container) {
            None => format!(
                "but worker {} does not own {}",
                worker.worker.id, entry.container
            ),
            Some(attempt) if **attempt != entry.attempt => format!(
                "but worker {} owns {} under attempt {attempt}",
                worker.worker.id, entry.container
            ),
            Some(_) => continue,
        };
        found.push(violation(
            &worker.queue,
            format!(
                "entry {} assigns {} (attempt {}) {problem}",
                entry.delivery, entry.container, entry.attempt
            ),
        ));
    }
}

fn check_record(
    record: &ContainerRecord,
    holders: &[(&WorkerDump, &OwnedEntry)],
    dump: &Dump,
    options: &CheckOptions,
    found: &mut Vec<Violation>,
) {
    let id = &record.request.id;
    match record.state {
        ContainerState::Scheduled | ContainerState::Running => {
            let holder = holders.iter().find(|(w, e)| {
                Some(&w.worker.id) == record.worker.as_ref()
                    && Some(&e.attempt) == record.attempt.as_ref()
            });
            match holder {
                None if options.settled_during(record.scheduled_at_ms) => {}
                None => found.push(violation(
                    id,
                    format!(
                        "{} on worker {} (attempt {}) but that worker does not own it",
                        record.state,
                        display(record.worker.as_ref()),
                        display(record.attempt.as_ref())
                    ),
                )),
                Some((worker, _)) if !options.is_alive(worker.heartbeat_ms) => {
                    found.push(violation(
                        id,
                        format!(
                            "{} on worker {} (attempt {}) but that worker is dead: last \
                             heartbeat {} ms ago, dead after {} ms",
                            record.state,
                            worker.worker.id,
                            display(record.attempt.as_ref()),
                            options.silence_ms(worker.heartbeat_ms),
                            options.dead_after_ms
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        ContainerState::Pending if !dump.queued.contains(id) => {
            found.push(violation(
                id,
                format!(
                    "{} but neither in the intake nor in the backlog (deferred {} times)",
                    record.state, record.deferrals
                ),
            ));
        }
        state
            if state.is_terminal()
                && !holders.is_empty()
                && !options.in_flight(record.finished_at_ms) =>
        {
            let (worker, entry) = holders[0];
            found.push(violation(
                id,
                format!(
                    "{state} but still owned by worker {} ({} leaked)",
                    worker.worker.id, entry.resources
                ),
            ));
        }
        _ => {}
    }
}

fn display<T: std::fmt::Display>(value: Option<&T>) -> String {
    value.map_or("none".to_owned(), ToString::to_string)
}

fn violation(subject: &impl std::fmt::Display, detail: String) -> Violation {
    Violation {
        subject: subject.to_string(),
        detail,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::{
        ContainerRequest, GpuPreference, Payload, PoolAttributes, PoolName, WorkerId, WorkerStatus,
    };

    const NOW: u64 = 1_000_000;
    const DEAD_AFTER: Duration = Duration::from_secs(60);

    fn options() -> CheckOptions {
        CheckOptions::at(NOW, DEAD_AFTER)
    }

    fn cid(id: &str) -> ContainerId {
        ContainerId::new(id).unwrap()
    }

    fn attempt(id: &str) -> AttemptId {
        AttemptId(id.to_owned())
    }

    /// Worker `id` with 4000m / 4096 MiB, owning `owned` (100m / 100 MiB each, under
    /// `(container, attempt)`), last heard from at `heartbeat_ms`.
    fn worker(id: &str, owned: &[(&str, &str)], heartbeat_ms: u64) -> WorkerDump {
        let each = Resources::new(100, 100, 0);
        let total = Resources::new(4000, 4096, 0);
        let held = Resources::new(100 * owned.len() as u64, 100 * owned.len() as u64, 0);
        WorkerDump {
            worker: Worker {
                id: WorkerId::new(id).unwrap(),
                pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
                status: WorkerStatus::Available,
                total,
                free: total.checked_sub(held).unwrap(),
                gpu_type: None,
                version: 1,
                epoch: 1,
            },
            owned: owned
                .iter()
                .map(|(c, a)| OwnedEntry {
                    container: cid(c),
                    attempt: attempt(a),
                    resources: each,
                })
                .collect(),
            heartbeat_ms,
            assignments: Vec::new(),
            queue: format!("{id}:assign"),
        }
    }

    fn queued(delivery: &str, container: &str, attempt_id: &str) -> QueuedAssignment {
        QueuedAssignment {
            delivery: delivery.to_owned(),
            container: cid(container),
            attempt: attempt(attempt_id),
        }
    }

    fn record(id: &str, state: ContainerState, holder: Option<(&str, &str)>) -> ContainerRecord {
        let mut record = crate::lifecycle::pending(ContainerRequest {
            id: cid(id),
            tenant: "t".into(),
            resources: Resources::new(100, 100, 0),
            gpu: GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority: 0,
            submitted_at_ms: 1,
            payload: Payload::default(),
        });
        record.state = state;
        if let Some((w, a)) = holder {
            record.worker = Some(WorkerId::new(w).unwrap());
            record.attempt = Some(attempt(a));
        }
        record
    }

    #[test]
    fn a_healthy_dump_has_no_violations() {
        let mut w1 = worker("w1", &[("c1", "a1"), ("c2", "a2")], NOW - 1000);
        w1.assignments = vec![queued("1-0", "c1", "a1")];
        let dump = Dump {
            workers: vec![w1],
            records: vec![
                record("c1", ContainerState::Scheduled, Some(("w1", "a1"))),
                record("c2", ContainerState::Running, Some(("w1", "a2"))),
                record("c3", ContainerState::Pending, None),
                record("c4", ContainerState::Exited, Some(("w1", "a4"))),
            ],
            queued: [cid("c3")].into_iter().collect(),
            unreadable: Vec::new(),
        };
        assert_eq!(violations(&dump, &options()), Vec::new());
    }

    #[test]
    fn a_dead_owner_is_a_violation() {
        let dump = Dump {
            workers: vec![worker("w1", &[("c1", "a1")], NOW - 90_000)],
            records: vec![record("c1", ContainerState::Running, Some(("w1", "a1")))],
            ..Dump::default()
        };
        let found = violations(&dump, &options());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].subject, "c1");
        assert_eq!(
            found[0].detail,
            "running on worker w1 (attempt a1) but that worker is dead: last heartbeat \
             90000 ms ago, dead after 60000 ms"
        );
        // Exactly at the limit it is still alive.
        let mut dump = dump;
        dump.workers[0].heartbeat_ms = NOW - 60_000;
        assert!(violations(&dump, &options()).is_empty());
    }

    #[test]
    fn a_lost_worker_with_a_fresh_heartbeat_is_alive() {
        // The reaper has declared it lost and not reclaimed its containers yet.
        let mut w1 = worker("w1", &[("c1", "a1")], NOW - 5_000);
        w1.worker.status = WorkerStatus::Lost;
        w1.assignments = vec![queued("1-0", "c1", "a1")];
        let dump = Dump {
            workers: vec![w1],
            records: vec![record("c1", ContainerState::Scheduled, Some(("w1", "a1")))],
            ..Dump::default()
        };
        assert_eq!(violations(&dump, &options()), Vec::new());
    }

    #[test]
    fn ignoring_heartbeats_takes_every_worker_for_alive() {
        let dump = Dump {
            workers: vec![worker("w1", &[("c1", "a1")], 0)],
            records: vec![record("c1", ContainerState::Running, Some(("w1", "a1")))],
            ..Dump::default()
        };
        assert!(violations(&dump, &CheckOptions::ignoring_heartbeats()).is_empty());
        assert_eq!(violations(&dump, &options()).len(), 1);
    }

    /// What the check says of worker w1 owning `owned` with `assignments` queued.
    fn judge_queue(owned: &[(&str, &str)], assignments: Vec<QueuedAssignment>) -> Vec<String> {
        let mut w1 = worker("w1", owned, NOW);
        w1.assignments = assignments;
        let dump = Dump {
            workers: vec![w1],
            ..Dump::default()
        };
        violations(&dump, &options())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn an_assignment_without_ownership_is_a_violation() {
        assert_eq!(
            judge_queue(&[], vec![queued("7-0", "c1", "a1")]),
            vec!["w1:assign: entry 7-0 assigns c1 (attempt a1) but worker w1 does not own c1"]
        );
    }

    #[test]
    fn an_assignment_under_another_attempt_is_a_violation() {
        let entries = vec![queued("7-0", "c1", "a1"), queued("8-0", "c1", "a2")];
        assert_eq!(
            judge_queue(&[("c1", "a2")], entries),
            vec![
                "w1:assign: entry 7-0 assigns c1 (attempt a1) but worker w1 owns c1 under \
                 attempt a2"
            ]
        );
    }

    #[test]
    fn a_pending_record_neither_in_the_intake_nor_in_the_backlog_is_a_violation() {
        let mut lost = record("c1", ContainerState::Pending, None);
        lost.deferrals = 2;
        let dump = Dump {
            records: vec![lost, record("c2", ContainerState::Pending, None)],
            queued: [cid("c2")].into_iter().collect(),
            ..Dump::default()
        };
        let found = violations(&dump, &options());
        assert_eq!(
            found,
            vec![Violation {
                subject: "c1".to_owned(),
                detail: "pending but neither in the intake nor in the backlog (deferred 2 \
                         times)"
                    .to_owned(),
            }]
        );
    }

    #[test]
    fn a_pending_record_owned_between_commit_and_settlement_is_fine() {
        // Committed, not settled yet: owned and queued to the worker, still in the intake.
        let mut w1 = worker("w1", &[("c1", "a1")], NOW);
        w1.assignments = vec![queued("1-0", "c1", "a1")];
        let dump = Dump {
            workers: vec![w1],
            records: vec![record("c1", ContainerState::Pending, None)],
            queued: [cid("c1")].into_iter().collect(),
            unreadable: Vec::new(),
        };
        assert!(violations(&dump, &options()).is_empty());
    }

    #[test]
    fn unreadable_entries_and_the_old_rules_still_count() {
        let mut w1 = worker("w1", &[("c1", "a1")], NOW);
        w1.worker.free = Resources::new(4000, 4096, 0);
        let w2 = worker("w2", &[("c1", "a9")], NOW);
        let dump = Dump {
            workers: vec![w1, w2],
            records: vec![record("c1", ContainerState::Failed, None)],
            unreadable: vec![Violation {
                subject: "k".to_owned(),
                detail: "unreadable".to_owned(),
            }],
            ..Dump::default()
        };
        let found: Vec<String> = violations(&dump, &options())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            vec![
                "k: unreadable",
                "w1: free (cpu=4000m memory=4096Mi gpu=0) + owned (cpu=100m memory=100Mi \
                 gpu=0) != total (cpu=4000m memory=4096Mi gpu=0)",
                "c1: owned by 2 workers: w1, w2",
                "c1: failed but still owned by worker w1 (cpu=100m memory=100Mi gpu=0 leaked)",
            ]
        );
    }

    #[test]
    fn an_ended_container_still_owned_is_in_flight_for_a_while_then_a_leak() {
        let dump = |finished_ms| {
            let mut ended = record("c1", ContainerState::Exited, Some(("w1", "a1")));
            ended.finished_at_ms = Some(finished_ms);
            Dump {
                workers: vec![worker("w1", &[("c1", "a1")], NOW)],
                records: vec![ended],
                ..Dump::default()
            }
        };
        let patient = options().with_in_flight(Duration::from_secs(10));
        // Ended 2 s ago, release not through yet: the second step of the final report.
        assert!(violations(&dump(NOW - 2_000), &patient).is_empty());
        // Ended 11 s ago and still owned: nothing will release it any more.
        let found = violations(&dump(NOW - 11_000), &patient);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("leaked"), "{found:?}");
        // Without an in-flight time, at once.
        assert_eq!(violations(&dump(NOW - 2_000), &options()).len(), 1);
        assert_eq!(violations(&dump(NOW), &options()).len(), 1);
    }

    #[test]
    fn a_placement_settled_after_the_check_began_is_not_judged_unowned() {
        let dump = |scheduled_ms| {
            let mut placed = record("c1", ContainerState::Scheduled, Some(("w1", "a1")));
            placed.scheduled_at_ms = Some(scheduled_ms);
            Dump {
                workers: vec![worker("w1", &[], NOW)],
                records: vec![placed],
                ..Dump::default()
            }
        };
        let patient = options().with_in_flight(Duration::from_secs(10));
        // Settled while the check read (its workers were read before the commit).
        assert!(violations(&dump(NOW + 5), &patient).is_empty());
        assert!(violations(&dump(NOW - 500), &patient).is_empty());
        // Without an in-flight time, even a placement stamped in the check's millisecond.
        assert_eq!(violations(&dump(NOW), &options()).len(), 1);
        // Settled well before the check began and still unowned: a violation.
        let found = violations(&dump(NOW - 5_000), &patient);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("does not own it"), "{found:?}");
        assert_eq!(violations(&dump(NOW - 500), &options()).len(), 1);
    }
}
