//! The container record's state machine: which [`Transition`] is allowed from which state.
//! [`cell`] is the one table of it, (state, transition kind) -> arms of (guard, outcome);
//! [`apply`] follows it for the memory store, and the Redis store renders it as a Lua table
//! into its `transition` and `settle` scripts, which follow it. [`reclaim`] (with
//! [`end_or_retry`], which decides whether a container that ends involuntarily is requeued)
//! and [`cancel`] are not forward transitions and are not in the table.

use crate::{AttemptId, ContainerRecord, ContainerState, ReclaimOutcome, WorkerId};

/// A forward move of a container record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Pending -> Scheduled on `worker` by `attempt`. Succeeds again (idempotently) if the
    /// record is already scheduled by the same worker and attempt.
    Scheduled {
        /// The worker that owns the reservation.
        worker: WorkerId,
        /// The attempt that reserved it.
        attempt: AttemptId,
    },
    /// Scheduled -> Pulling, by the worker and attempt it is scheduled with: the worker
    /// holds it and is fetching its image. Repeating it, or reporting it once the record
    /// runs, is a no-op.
    Pulling {
        /// The worker fetching the image.
        worker: WorkerId,
        /// The attempt it was scheduled with.
        attempt: AttemptId,
    },
    /// Scheduled or Pulling -> Running, by the worker and attempt it is scheduled with.
    Running {
        /// The worker that started it.
        worker: WorkerId,
        /// The attempt it was scheduled with.
        attempt: AttemptId,
    },
    /// Running -> Exited, by the worker running it.
    Exited {
        /// The worker that ran it.
        worker: WorkerId,
        /// The attempt it was scheduled with.
        attempt: AttemptId,
        /// The process's exit code.
        exit_code: i32,
    },
    /// Any non-terminal state -> Failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Scheduled, Pulling or Running -> Lost.
    Lost {
        /// Why.
        reason: String,
    },
}

/// Applies `transition` to `record` at `now_ms`, or says why it is refused: the outcome is
/// the [`cell`] table's; an allowed move also sets what the transition brings (worker,
/// attempt and scheduled time; start time; exit code and end time; reason and end time).
/// Repeating a transition that already happened (same worker and attempt) succeeds and
/// changes nothing.
pub fn apply(
    record: &mut ContainerRecord,
    transition: &Transition,
    now_ms: u64,
) -> Result<(), String> {
    let facts = Facts::of(record, transition);
    let next = match cell(record.state, transition.kind()).outcome(facts) {
        Outcome::Allowed(next) => next,
        Outcome::Idempotent => return Ok(()),
        Outcome::Refused(refusal) => return Err(refusal.why(record.state, transition)),
    };
    match transition {
        Transition::Scheduled { worker, attempt } => {
            record.state = next;
            record.worker = Some(worker.clone());
            record.attempt = Some(attempt.clone());
            record.scheduled_at_ms = Some(now_ms);
            record.reason = None;
        }
        Transition::Pulling { .. } => record.state = next,
        Transition::Running { .. } => {
            record.state = next;
            record.started_at_ms = Some(now_ms);
        }
        Transition::Exited { exit_code, .. } => {
            record.state = next;
            record.exit_code = Some(*exit_code);
            record.finished_at_ms = Some(now_ms);
        }
        Transition::Failed { reason } | Transition::Lost { reason } => {
            finish(record, next, reason, now_ms);
        }
    }
    Ok(())
}

/// What a [`Transition`] is, without its data: the column of the [`cell`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// [`Transition::Scheduled`].
    Scheduled,
    /// [`Transition::Pulling`].
    Pulling,
    /// [`Transition::Running`].
    Running,
    /// [`Transition::Exited`].
    Exited,
    /// [`Transition::Failed`].
    Failed,
    /// [`Transition::Lost`].
    Lost,
}

impl TransitionKind {
    /// Every kind, in the table's column order.
    pub const ALL: [TransitionKind; 6] = [
        TransitionKind::Scheduled,
        TransitionKind::Pulling,
        TransitionKind::Running,
        TransitionKind::Exited,
        TransitionKind::Failed,
        TransitionKind::Lost,
    ];

    /// The kind as the Redis script names it: `scheduled`, `running`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Scheduled => "scheduled",
            TransitionKind::Pulling => "pulling",
            TransitionKind::Running => "running",
            TransitionKind::Exited => "exited",
            TransitionKind::Failed => "failed",
            TransitionKind::Lost => "lost",
        }
    }
}

impl Transition {
    /// This transition's kind.
    pub fn kind(&self) -> TransitionKind {
        match self {
            Transition::Scheduled { .. } => TransitionKind::Scheduled,
            Transition::Pulling { .. } => TransitionKind::Pulling,
            Transition::Running { .. } => TransitionKind::Running,
            Transition::Exited { .. } => TransitionKind::Exited,
            Transition::Failed { .. } => TransitionKind::Failed,
            Transition::Lost { .. } => TransitionKind::Lost,
        }
    }
}

/// Every container state, in the table's row order.
pub const STATES: [ContainerState; 8] = [
    ContainerState::Pending,
    ContainerState::Scheduled,
    ContainerState::Pulling,
    ContainerState::Running,
    ContainerState::Exited,
    ContainerState::Failed,
    ContainerState::Lost,
    ContainerState::Preempted,
];

/// A condition an [`Arm`] of the table requires, on the record and the transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guard {
    /// Always holds.
    Always,
    /// The transition's worker and attempt are the ones the record holds.
    Holder,
    /// They are not (another worker, another attempt, or the record holds none).
    NotHolder,
    /// The transition's attempt is among the record's revoked attempts.
    Revoked,
    /// The transition's exit code is the one the record already has.
    SameExitCode,
}

impl Guard {
    /// Every guard.
    pub const ALL: [Guard; 5] = [
        Guard::Always,
        Guard::Holder,
        Guard::NotHolder,
        Guard::Revoked,
        Guard::SameExitCode,
    ];

    /// The guard as the Redis script names it: `always`, `holder`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Always => "always",
            Guard::Holder => "holder",
            Guard::NotHolder => "not_holder",
            Guard::Revoked => "revoked",
            Guard::SameExitCode => "same_exit_code",
        }
    }

    /// Whether the guard holds for these facts.
    pub fn holds(self, facts: Facts) -> bool {
        match self {
            Guard::Always => true,
            Guard::Holder => facts.holder,
            Guard::NotHolder => !facts.holder,
            Guard::Revoked => facts.revoked,
            Guard::SameExitCode => facts.same_exit_code,
        }
    }
}

/// What the guards read about a record and a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// The transition's worker and attempt are the ones the record holds.
    pub holder: bool,
    /// The transition's attempt was revoked on the record.
    pub revoked: bool,
    /// The transition's exit code is the record's (only an exit has one).
    pub same_exit_code: bool,
}

impl Facts {
    /// The facts of `transition` on `record`.
    pub fn of(record: &ContainerRecord, transition: &Transition) -> Facts {
        let by = match transition {
            Transition::Scheduled { worker, attempt }
            | Transition::Pulling { worker, attempt }
            | Transition::Running { worker, attempt }
            | Transition::Exited {
                worker, attempt, ..
            } => Some((worker, attempt)),
            Transition::Failed { .. } | Transition::Lost { .. } => None,
        };
        Facts {
            holder: by.is_some_and(|(worker, attempt)| holds(record, worker, attempt)),
            revoked: by.is_some_and(|(_, attempt)| record.revoked_attempts.contains(attempt)),
            same_exit_code: matches!(transition, Transition::Exited { exit_code, .. }
                if record.exit_code == Some(*exit_code)),
        }
    }
}

/// Why the table refuses a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The attempt was revoked while the record was pending.
    Revoked,
    /// Scheduling a record that is placed (or ended) by another worker or attempt.
    HeldByAnother,
    /// A report by a worker and attempt that do not hold the record.
    NotHolder,
    /// Starting a record that is not scheduled.
    CannotStart,
    /// Pulling for a record that is not scheduled.
    CannotPull,
    /// Exiting a record that is not running.
    CannotExit,
    /// Failing a record that already ended.
    Ended,
    /// Losing a record that is neither scheduled nor running.
    CannotBeLost,
}

impl Refusal {
    /// Every refusal.
    pub const ALL: [Refusal; 8] = [
        Refusal::Revoked,
        Refusal::HeldByAnother,
        Refusal::NotHolder,
        Refusal::CannotStart,
        Refusal::CannotPull,
        Refusal::CannotExit,
        Refusal::Ended,
        Refusal::CannotBeLost,
    ];

    /// The refusal's name as the Redis script knows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Revoked => "revoked",
            Refusal::HeldByAnother => "held_by_another",
            Refusal::NotHolder => "not_holder",
            Refusal::CannotStart => "cannot_start",
            Refusal::CannotPull => "cannot_pull",
            Refusal::CannotExit => "cannot_exit",
            Refusal::Ended => "ended",
            Refusal::CannotBeLost => "cannot_be_lost",
        }
    }

    /// The message, with `{state}`, `{worker}` and `{attempt}` standing for the record's
    /// state and the transition's worker and attempt.
    pub fn template(self) -> &'static str {
        match self {
            Refusal::Revoked => "attempt {attempt} was revoked: its worker was declared lost",
            Refusal::HeldByAnother => "it is {state} by another worker or attempt",
            Refusal::NotHolder => "worker {worker} attempt {attempt} does not hold it",
            Refusal::CannotStart => {
                "only a scheduled or pulling container can start, it is {state}"
            }
            Refusal::CannotPull => "only a scheduled container can pull its image, it is {state}",
            Refusal::CannotExit => "only a running container can exit, it is {state}",
            Refusal::Ended => "it already ended as {state}",
            Refusal::CannotBeLost => {
                "only a scheduled, pulling or running container can be lost, it is {state}"
            }
        }
    }

    /// The message for a record in `state` and `transition`.
    pub fn why(self, state: ContainerState, transition: &Transition) -> String {
        let (worker, attempt) = match transition {
            Transition::Scheduled { worker, attempt }
            | Transition::Pulling { worker, attempt }
            | Transition::Running { worker, attempt }
            | Transition::Exited {
                worker, attempt, ..
            } => (worker.as_str(), attempt.0.as_str()),
            Transition::Failed { .. } | Transition::Lost { .. } => ("", ""),
        };
        let mut out = String::new();
        let mut rest = self.template();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let (value, len) = if after.starts_with("{state}") {
                (state.as_str(), "{state}".len())
            } else if after.starts_with("{worker}") {
                (worker, "{worker}".len())
            } else if after.starts_with("{attempt}") {
                (attempt, "{attempt}".len())
            } else {
                ("{", 1)
            };
            out.push_str(value);
            rest = &after[len..];
        }
        out.push_str(rest);
        out
    }
}

/// What the table says a transition does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The record moves to this state, with the transition's side effects.
    Allowed(ContainerState),
    /// It already happened: the record stays as it is and the call succeeds.
    Idempotent,
    /// The record stays as it is and the call fails.
    Refused(Refusal),
}

/// One arm of a [`Cell`]: when `when` holds (and no earlier arm's did), `then`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm {
    /// The condition.
    pub when: Guard,
    /// The outcome.
    pub then: Outcome,
}

/// One cell of the table: a transition kind applied to a record in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// What the cell says, in a line.
    pub doc: &'static str,
    /// The arms in order; the last one is [`Guard::Always`].
    pub arms: &'static [Arm],
}

impl Cell {
    /// The outcome of the first arm whose guard holds. Every cell of [`cell`] ends in
    /// [`Guard::Always`]; a cell without an arm that holds would refuse.
    pub fn outcome(&self, facts: Facts) -> Outcome {
        self.arms
            .iter()
            .find(|arm| arm.when.holds(facts))
            .map_or(Outcome::Refused(Refusal::HeldByAnother), |arm| arm.then)
    }
}

/// The arms of a cell, `guard => outcome` in order.
macro_rules! arms {
    ($($when:expr => $then:expr),+ $(,)?) => {
        &[$(Arm { when: $when, then: $then }),+]
    };
}

/// The state machine: what `kind` does to a record in state `from`. The one table the memory
/// store ([`apply`]) and the Redis store's `transition` and `settle` scripts (which get it
/// rendered as a Lua table) follow.
pub fn cell(from: ContainerState, kind: TransitionKind) -> Cell {
    use ContainerState as S;
    use Guard::{Always, Holder, NotHolder, Revoked, SameExitCode};
    use Outcome::{Allowed, Idempotent, Refused};
    use Refusal as R;
    use TransitionKind as K;

    let (doc, arms): (&'static str, &'static [Arm]) = match (from, kind) {
        (S::Pending, K::Scheduled) => (
            "a pending record is scheduled, unless the attempt was revoked",
            arms![
                Revoked => Refused(R::Revoked),
                Always => Allowed(S::Scheduled),
            ],
        ),
        (S::Scheduled | S::Pulling | S::Running, K::Scheduled) => (
            "a placed record is scheduled again only by its holder, as a no-op",
            arms![
                Holder => Idempotent,
                Always => Refused(R::HeldByAnother),
            ],
        ),
        (S::Exited | S::Failed | S::Lost | S::Preempted, K::Scheduled) => (
            "an ended record is never scheduled",
            arms![Always => Refused(R::HeldByAnother)],
        ),
        (S::Scheduled, K::Pulling) => (
            "the holder says it fetches a scheduled record's image",
            arms![NotHolder => Refused(R::NotHolder), Always => Allowed(S::Pulling)],
        ),
        (S::Pulling | S::Running, K::Pulling) => (
            "the holder saying so again, or once it runs, is a no-op",
            arms![NotHolder => Refused(R::NotHolder), Always => Idempotent],
        ),
        (S::Pending | S::Exited | S::Failed | S::Lost | S::Preempted, K::Pulling) => (
            "only a scheduled record pulls; anyone but the holder is told so first",
            arms![NotHolder => Refused(R::NotHolder), Always => Refused(R::CannotPull)],
        ),
        (S::Scheduled | S::Pulling, K::Running) => (
            "the holder starts a scheduled or pulling record",
            arms![NotHolder => Refused(R::NotHolder), Always => Allowed(S::Running)],
        ),
        (S::Running, K::Running) => (
            "the holder starting it again is a no-op",
            arms![NotHolder => Refused(R::NotHolder), Always => Idempotent],
        ),
        (S::Pending | S::Exited | S::Failed | S::Lost | S::Preempted, K::Running) => (
            "only a scheduled record starts; anyone but the holder is told so first",
            arms![NotHolder => Refused(R::NotHolder), Always => Refused(R::CannotStart)],
        ),
        (S::Running, K::Exited) => (
            "the holder's report ends a running record as exited with its code",
            arms![NotHolder => Refused(R::NotHolder), Always => Allowed(S::Exited)],
        ),
        (S::Exited, K::Exited) => (
            "the holder repeating the same exit code is a no-op; another code is refused",
            arms![
                NotHolder => Refused(R::NotHolder),
                SameExitCode => Idempotent,
                Always => Refused(R::CannotExit),
            ],
        ),
        (
            S::Pending | S::Scheduled | S::Pulling | S::Failed | S::Lost | S::Preempted,
            K::Exited,
        ) => (
            "only a running record exits; anyone but the holder is told so first",
            arms![NotHolder => Refused(R::NotHolder), Always => Refused(R::CannotExit)],
        ),
        (S::Pending | S::Scheduled | S::Pulling | S::Running, K::Failed) => (
            "any record that has not ended can fail",
            arms![Always => Allowed(S::Failed)],
        ),
        (S::Failed, K::Failed) => ("failing again is a no-op", arms![Always => Idempotent]),
        (S::Exited | S::Lost | S::Preempted, K::Failed) => (
            "a record that ended otherwise does not fail",
            arms![Always => Refused(R::Ended)],
        ),
        (S::Scheduled | S::Pulling | S::Running, K::Lost) => (
            "a placed record is lost with its worker",
            arms![Always => Allowed(S::Lost)],
        ),
        (S::Lost, K::Lost) => ("losing it again is a no-op", arms![Always => Idempotent]),
        (S::Pending | S::Exited | S::Failed | S::Preempted, K::Lost) => (
            "only a placed record can be lost",
            arms![Always => Refused(R::CannotBeLost)],
        ),
    };
    Cell { doc, arms }
}

fn holds(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> bool {
    record.worker.as_ref() == Some(worker) && record.attempt.as_ref() == Some(attempt)
}

fn finish(record: &mut ContainerRecord, state: ContainerState, reason: &str, now_ms: u64) {
    record.state = state;
    record.reason = Some(reason.to_owned());
    record.finished_at_ms = Some(now_ms);
}

/// A fresh pending record for an accepted request.
pub fn pending(request: crate::ContainerRequest) -> ContainerRecord {
    ContainerRecord {
        request,
        state: ContainerState::Pending,
        worker: None,
        attempt: None,
        scheduled_at_ms: None,
        started_at_ms: None,
        finished_at_ms: None,
        exit_code: None,
        reason: None,
        deferrals: 0,
        cancel_requested: false,
        revoked_attempts: Vec::new(),
        retries: 0,
        preempted_at_ms: None,
    }
}

/// Gives back a container held by `worker` and `attempt` whose worker died: a scheduled
/// or pulling one (it never started) goes back to pending (a new attempt will place it), a running one ends lost or, with
/// retries left, goes back to pending too ([`end_or_retry`]). On a pending record the
/// attempt is revoked, so its settlement, if it comes later, cannot schedule the record on
/// the released reservation. `None` when the record is not held by them (nothing to do but
/// release the reservation). On [`ReclaimOutcome::Requeued`] and
/// [`ReclaimOutcome::Retried`] the caller puts the container back in the intake.
pub fn reclaim(
    record: &mut ContainerRecord,
    worker: &WorkerId,
    attempt: &AttemptId,
    reason: &str,
    now_ms: u64,
) -> Option<ReclaimOutcome> {
    give_back(
        record,
        worker,
        attempt,
        ContainerState::Lost,
        reason,
        now_ms,
    )
}

/// Gives back a container held by `worker` and `attempt` that was stopped to make room for
/// a request of higher priority (see [`crate::preempt`]), as [`reclaim`] does for a dead
/// worker's, but a running one ends [`ContainerState::Preempted`] (or, with retries left,
/// is requeued with the reason `preempted: <reason>; retry 1 of 3`). The Redis store's
/// `reclaim.lua` mirrors this with its end argument `preempted`.
pub fn preempted(
    record: &mut ContainerRecord,
    worker: &WorkerId,
    attempt: &AttemptId,
    reason: &str,
    now_ms: u64,
) -> Option<ReclaimOutcome> {
    give_back(
        record,
        worker,
        attempt,
        ContainerState::Preempted,
        reason,
        now_ms,
    )
}

/// How long after its preemption a requeued container may not preempt others.
pub const NO_CASCADE_MS: u64 = 60_000;

/// True for a pending container, at `now_ms`, that is waiting again because it was
/// preempted less than [`NO_CASCADE_MS`] ago: it may not preempt others yet (no cascade of
/// preemptions).
pub fn was_preempted(record: &ContainerRecord, now_ms: u64) -> bool {
    record.state == ContainerState::Pending
        && record
            .preempted_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < NO_CASCADE_MS)
}

/// [`reclaim`] and [`preempted`]: a running container held by `worker` and `attempt` ends
/// as `end` (or is retried).
fn give_back(
    record: &mut ContainerRecord,
    worker: &WorkerId,
    attempt: &AttemptId,
    end: ContainerState,
    reason: &str,
    now_ms: u64,
) -> Option<ReclaimOutcome> {
    if record.state == ContainerState::Pending {
        revoke(record, attempt);
        return None;
    }
    if !holds(record, worker, attempt) {
        return None;
    }
    match record.state {
        ContainerState::Scheduled | ContainerState::Pulling => {
            // A preempted pull may not preempt others for a while either (no cascade).
            if end == ContainerState::Preempted && record.state == ContainerState::Pulling {
                record.preempted_at_ms = Some(now_ms);
            }
            // Revoked, so a settlement of that attempt repeated late (a retried settle)
            // cannot schedule it again on the reservation being released.
            revoke(record, attempt);
            requeue(record, reason);
            Some(ReclaimOutcome::Requeued)
        }
        ContainerState::Running => match end_or_retry(record, end, reason, now_ms) {
            Ending::Retried => Some(ReclaimOutcome::Retried),
            Ending::Ended if end == ContainerState::Preempted => Some(ReclaimOutcome::Preempted),
            Ending::Ended => Some(ReclaimOutcome::Lost),
        },
        _ => None,
    }
}

/// What [`end_or_retry`] did with a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Ending {
    /// It is pending again, with one retry more counted: the caller puts it back in the
    /// intake.
    Retried,
    /// It ended in the state it was given.
    Ended,
}

/// Ends a placed container that stopped through no fault of its own (its worker died:
/// `end` is [`ContainerState::Lost`]) or, while its request allows more retries and no
/// cancellation was asked for, puts it back to pending instead: worker, attempt, scheduled
/// and start times cleared, the attempt revoked (a late report or adoption by it is
/// refused), `retries` counted up, the reason `lost: <reason>; retry 1 of 3`. With retries
/// allowed and used up, the reason says so: `<reason>; all 3 retries used`. The Redis
/// store's `reclaim.lua` mirrors this exactly.
pub fn end_or_retry(
    record: &mut ContainerRecord,
    end: ContainerState,
    reason: &str,
    now_ms: u64,
) -> Ending {
    let max = record.request.max_retries;
    if end == ContainerState::Preempted {
        record.preempted_at_ms = Some(now_ms);
    }
    if record.retries < max && !record.cancel_requested {
        record.retries += 1;
        if let Some(attempt) = record.attempt.clone() {
            revoke(record, &attempt);
        }
        requeue(record, &retry_reason(end, reason, record.retries, max));
        record.started_at_ms = None;
        return Ending::Retried;
    }
    finish(record, end, &exhausted_reason(reason, max), now_ms);
    Ending::Ended
}

/// The reason of a container put back by retry `retry` of `max`, which would otherwise
/// have ended as `end`.
pub fn retry_reason(end: ContainerState, reason: &str, retry: u32, max: u32) -> String {
    format!("{end}: {reason}; retry {retry} of {max}")
}

/// The reason of a container that ends although its request allowed `max` retries: they
/// were all used. Without retries the reason is unchanged, as before retries existed.
pub fn exhausted_reason(reason: &str, max: u32) -> String {
    if max == 0 {
        return reason.to_owned();
    }
    let retries = if max == 1 { "retry" } else { "retries" };
    format!("{reason}; all {max} {retries} used")
}

/// Back to pending, unplaced: a new claim places it under a new attempt.
fn requeue(record: &mut ContainerRecord, reason: &str) {
    record.state = ContainerState::Pending;
    record.worker = None;
    record.attempt = None;
    record.scheduled_at_ms = None;
    record.reason = Some(reason.to_owned());
}

fn revoke(record: &mut ContainerRecord, attempt: &AttemptId) {
    if !record.revoked_attempts.contains(attempt) {
        record.revoked_attempts.push(attempt.clone());
    }
}

/// Applies a cancellation: a pending container fails with reason `cancelled`; a scheduled,
/// pulling or running one is flagged for its worker; an ended one is left alone.
pub fn cancel(record: &mut ContainerRecord, now_ms: u64) {
    match record.state {
        ContainerState::Pending => {
            record.state = ContainerState::Failed;
            record.reason = Some("cancelled".to_owned());
            record.finished_at_ms = Some(now_ms);
        }
        state if state.is_placed() => record.cancel_requested = true,
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests unwrap freely: a panic is a failed test.
mod tests {
    use super::*;
    use crate::{ContainerId, ContainerRequest, GpuPreference, Payload, Resources};

    /// A record running on `w1` under attempt `a1`, allowing `max_retries`.
    fn running(max_retries: u32) -> ContainerRecord {
        let mut record = pending(ContainerRequest {
            id: ContainerId::new("c1").unwrap(),
            tenant: "tenant".into(),
            resources: Resources::new(100, 64, 0),
            gpu_fraction_milli: None,
            gpu: GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority: 0,
            submitted_at_ms: 1,
            payload: Payload::default(),
            fallback: Vec::new(),
            max_retries,
        });
        record.state = ContainerState::Running;
        record.worker = Some(WorkerId::new("w1").unwrap());
        record.attempt = Some(AttemptId("a1".into()));
        record.scheduled_at_ms = Some(10);
        record.started_at_ms = Some(20);
        record
    }

    fn reclaim_held(record: &mut ContainerRecord) -> Option<ReclaimOutcome> {
        let worker = record.worker.clone().unwrap();
        let attempt = record.attempt.clone().unwrap();
        reclaim(record, &worker, &attempt, "worker w1 died", 30)
    }

    #[test]
    fn a_running_container_with_retries_left_is_requeued_unplaced() {
        let mut record = running(3);
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Retried));
        assert_eq!(record.state, ContainerState::Pending);
        assert_eq!(record.retries, 1);
        assert_eq!(
            (record.worker.as_ref(), record.attempt.as_ref()),
            (None, None)
        );
        assert_eq!((record.scheduled_at_ms, record.started_at_ms), (None, None));
        assert_eq!(record.finished_at_ms, None);
        assert_eq!(
            record.reason.as_deref(),
            Some("lost: worker w1 died; retry 1 of 3")
        );
        assert_eq!(record.revoked_attempts, vec![AttemptId("a1".into())]);
    }

    #[test]
    fn retries_used_up_end_it_lost_and_say_so() {
        let mut record = running(2);
        record.retries = 2;
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Lost));
        assert_eq!(record.state, ContainerState::Lost);
        assert_eq!(record.retries, 2);
        assert_eq!(record.finished_at_ms, Some(30));
        assert_eq!(
            record.reason.as_deref(),
            Some("worker w1 died; all 2 retries used")
        );
    }

    #[test]
    fn without_retries_it_is_lost_as_before() {
        let mut record = running(0);
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Lost));
        assert_eq!(record.reason.as_deref(), Some("worker w1 died"));
        assert!(record.revoked_attempts.is_empty());
    }

    #[test]
    fn a_container_being_cancelled_is_not_retried() {
        let mut record = running(3);
        record.cancel_requested = true;
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Lost));
        assert_eq!(record.retries, 0);
    }

    #[test]
    fn the_revoked_attempt_cannot_adopt_the_retried_record() {
        let mut record = running(1);
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Retried));
        let late = Transition::Scheduled {
            worker: WorkerId::new("w1").unwrap(),
            attempt: AttemptId("a1".into()),
        };
        assert!(apply(&mut record, &late, 40).is_err());
        assert_eq!(record.state, ContainerState::Pending);
    }

    fn preempt_held(record: &mut ContainerRecord, now_ms: u64) -> Option<ReclaimOutcome> {
        let worker = record.worker.clone().unwrap();
        let attempt = record.attempt.clone().unwrap();
        preempted(
            record,
            &worker,
            &attempt,
            "by p (priority 9) on worker w1",
            now_ms,
        )
    }

    #[test]
    fn a_preempted_container_ends_preempted_or_retries() {
        let mut ended = running(0);
        assert_eq!(
            preempt_held(&mut ended, 50),
            Some(ReclaimOutcome::Preempted)
        );
        assert_eq!(ended.state, ContainerState::Preempted);
        assert_eq!(
            ended.reason.as_deref(),
            Some("by p (priority 9) on worker w1")
        );
        assert_eq!(
            (ended.finished_at_ms, ended.preempted_at_ms),
            (Some(50), Some(50))
        );
        assert!(!was_preempted(&ended, 50), "an ended one waits for nothing");

        let mut retried = running(1);
        assert_eq!(
            preempt_held(&mut retried, 50),
            Some(ReclaimOutcome::Retried)
        );
        assert_eq!(
            retried.reason.as_deref(),
            Some("preempted: by p (priority 9) on worker w1; retry 1 of 1")
        );
        assert_eq!(retried.preempted_at_ms, Some(50));
        // A lost one is not marked preempted.
        let mut lost = running(1);
        assert_eq!(reclaim_held(&mut lost), Some(ReclaimOutcome::Retried));
        assert_eq!(lost.preempted_at_ms, None);
        assert!(!was_preempted(&lost, 31));
    }

    #[test]
    fn a_requeued_victim_may_not_preempt_until_the_no_cascade_time_has_passed() {
        let mut record = running(1);
        assert_eq!(
            preempt_held(&mut record, 1_000),
            Some(ReclaimOutcome::Retried)
        );
        assert!(was_preempted(&record, 1_000));
        assert!(was_preempted(&record, 1_000 + NO_CASCADE_MS - 1));
        assert!(!was_preempted(&record, 1_000 + NO_CASCADE_MS));
        record.state = ContainerState::Scheduled;
        assert!(
            !was_preempted(&record, 1_001),
            "placed again, it is free to"
        );
    }

    #[test]
    fn a_reclaimed_scheduled_container_cannot_be_scheduled_again_by_its_old_attempt() {
        let mut record = running(0);
        record.state = ContainerState::Scheduled;
        record.started_at_ms = None;
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Requeued));
        let late = Transition::Scheduled {
            worker: WorkerId::new("w1").unwrap(),
            attempt: AttemptId("a1".into()),
        };
        assert!(apply(&mut record, &late, 40).is_err());
        assert_eq!(record.state, ContainerState::Pending);
        let fresh = Transition::Scheduled {
            worker: WorkerId::new("w2").unwrap(),
            attempt: AttemptId("a2".into()),
        };
        assert!(apply(&mut record, &fresh, 41).is_ok());
    }

    #[test]
    fn a_scheduled_victim_goes_back_to_pending_without_a_retry() {
        let mut record = running(0);
        record.state = ContainerState::Scheduled;
        record.started_at_ms = None;
        assert_eq!(
            preempt_held(&mut record, 50),
            Some(ReclaimOutcome::Requeued)
        );
        assert_eq!(record.state, ContainerState::Pending);
        assert_eq!((record.retries, record.preempted_at_ms), (0, None));
    }

    #[test]
    fn a_pulling_container_is_given_back_like_a_scheduled_one_and_can_be_cancelled() {
        let mut record = running(2);
        record.state = ContainerState::Pulling;
        record.started_at_ms = None;
        cancel(&mut record, 45);
        assert!(
            record.cancel_requested,
            "its worker is told to stop the pull"
        );
        assert_eq!(record.state, ContainerState::Pulling);
        record.cancel_requested = false;
        let mut preempted = record.clone();
        assert_eq!(reclaim_held(&mut record), Some(ReclaimOutcome::Requeued));
        assert_eq!(record.state, ContainerState::Pending);
        assert_eq!(record.retries, 0, "it never started: no retry is counted");
        assert_eq!(record.preempted_at_ms, None, "lost, not preempted");
        assert_eq!(
            preempt_held(&mut preempted, 47),
            Some(ReclaimOutcome::Requeued)
        );
        assert_eq!(
            (preempted.state, preempted.preempted_at_ms),
            (ContainerState::Pending, Some(47)),
            "a preempted pull may not preempt others at once"
        );
        let late = Transition::Running {
            worker: WorkerId::new("w1").unwrap(),
            attempt: AttemptId("a1".into()),
        };
        assert!(
            apply(&mut record, &late, 46).is_err(),
            "the old attempt is revoked"
        );
    }

    #[test]
    fn pulling_comes_between_scheduled_and_running() {
        let mut record = running(0);
        record.state = ContainerState::Scheduled;
        record.started_at_ms = None;
        let (worker, attempt) = (WorkerId::new("w1").unwrap(), AttemptId("a1".into()));
        let pulling = Transition::Pulling {
            worker: worker.clone(),
            attempt: attempt.clone(),
        };
        apply(&mut record, &pulling, 50).unwrap();
        assert_eq!(
            (record.state, record.started_at_ms),
            (ContainerState::Pulling, None)
        );
        apply(&mut record, &Transition::Running { worker, attempt }, 60).unwrap();
        assert_eq!(
            (record.state, record.started_at_ms),
            (ContainerState::Running, Some(60))
        );
        apply(&mut record, &pulling, 70).unwrap();
        assert_eq!(
            record.state,
            ContainerState::Running,
            "a late report is a no-op"
        );
    }

    #[test]
    fn cancelling_fails_a_pending_container_flags_a_placed_one_and_leaves_an_ended_one() {
        let mut pending = running(0);
        pending.state = ContainerState::Pending;
        cancel(&mut pending, 9);
        assert_eq!(
            (
                pending.state,
                pending.reason.as_deref(),
                pending.finished_at_ms
            ),
            (ContainerState::Failed, Some("cancelled"), Some(9))
        );
        assert!(!pending.cancel_requested);
        for state in [ContainerState::Exited, ContainerState::Lost] {
            let mut ended = running(0);
            ended.state = state;
            let before = ended.clone();
            cancel(&mut ended, 9);
            assert_eq!(ended, before, "{state} is left alone");
        }
    }

    /// The names the Redis scripts read: distinct, non-empty, snake case.
    fn assert_script_names(names: &[&str]) {
        let distinct: std::collections::BTreeSet<&&str> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        for name in names {
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name:?}"
            );
        }
    }

    #[test]
    fn the_table_names_what_the_scripts_read_distinctly() {
        let kinds = TransitionKind::ALL.map(TransitionKind::as_str);
        assert_script_names(&kinds);
        for kind in kinds {
            // A forward move is named after the state it leads to.
            assert!(ContainerState::parse(kind).is_some(), "{kind}");
        }
        assert_script_names(&Guard::ALL.map(Guard::as_str));
        assert_script_names(&Refusal::ALL.map(Refusal::as_str));
    }

    #[test]
    fn one_retry_is_named_in_the_singular() {
        assert_eq!(exhausted_reason("gone", 1), "gone; all 1 retry used");
        assert_eq!(exhausted_reason("gone", 0), "gone");
    }
}
