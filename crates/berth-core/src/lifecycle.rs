//! The container record's state machine: which [`Transition`] is allowed from which state.
//! The memory store applies it directly; the Redis store's `transition` script mirrors it.

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
    /// Scheduled -> Running, by the worker and attempt it is scheduled with.
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
    /// Scheduled or Running -> Lost.
    Lost {
        /// Why.
        reason: String,
    },
}

/// Applies `transition` to `record` at `now_ms`, or says why it is refused. Repeating a
/// transition that already happened (same worker and attempt) succeeds and changes nothing.
pub fn apply(
    record: &mut ContainerRecord,
    transition: &Transition,
    now_ms: u64,
) -> Result<(), String> {
    use ContainerState as S;
    match transition {
        Transition::Scheduled { worker, attempt } => match record.state {
            S::Pending if record.revoked_attempts.contains(attempt) => Err(format!(
                "attempt {attempt} was revoked: its worker was declared lost"
            )),
            S::Pending => {
                record.state = S::Scheduled;
                record.worker = Some(worker.clone());
                record.attempt = Some(attempt.clone());
                record.scheduled_at_ms = Some(now_ms);
                record.reason = None;
                Ok(())
            }
            S::Scheduled | S::Running if holds(record, worker, attempt) => Ok(()),
            _ => Err(format!(
                "it is {} by another worker or attempt",
                record.state
            )),
        },
        Transition::Running { worker, attempt } => {
            if !holds(record, worker, attempt) {
                return Err(format!(
                    "worker {worker} attempt {attempt} does not hold it"
                ));
            }
            match record.state {
                S::Scheduled => {
                    record.state = S::Running;
                    record.started_at_ms = Some(now_ms);
                    Ok(())
                }
                S::Running => Ok(()),
                other => Err(format!(
                    "only a scheduled container can start, it is {other}"
                )),
            }
        }
        Transition::Exited {
            worker,
            attempt,
            exit_code,
        } => {
            if !holds(record, worker, attempt) {
                return Err(format!(
                    "worker {worker} attempt {attempt} does not hold it"
                ));
            }
            match record.state {
                S::Running => {
                    record.state = S::Exited;
                    record.exit_code = Some(*exit_code);
                    record.finished_at_ms = Some(now_ms);
                    Ok(())
                }
                S::Exited if record.exit_code == Some(*exit_code) => Ok(()),
                other => Err(format!("only a running container can exit, it is {other}")),
            }
        }
        Transition::Failed { reason } => match record.state {
            S::Failed => Ok(()),
            state if state.is_terminal() => Err(format!("it already ended as {state}")),
            _ => finish(record, S::Failed, reason, now_ms),
        },
        Transition::Lost { reason } => match record.state {
            S::Lost => Ok(()),
            S::Scheduled | S::Running => finish(record, S::Lost, reason, now_ms),
            other => Err(format!(
                "only a scheduled or running container can be lost, it is {other}"
            )),
        },
    }
}

fn holds(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> bool {
    record.worker.as_ref() == Some(worker) && record.attempt.as_ref() == Some(attempt)
}

fn finish(
    record: &mut ContainerRecord,
    state: ContainerState,
    reason: &str,
    now_ms: u64,
) -> Result<(), String> {
    record.state = state;
    record.reason = Some(reason.to_owned());
    record.finished_at_ms = Some(now_ms);
    Ok(())
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
    }
}

/// Gives back a container held by `worker` and `attempt` whose worker died: a scheduled
/// one goes back to pending (a new attempt will place it), a running one becomes lost. On a
/// pending record the attempt is revoked, so its settlement, if it comes later, cannot
/// schedule the record on the released reservation. `None` when the record is not held by
/// them (nothing to do but release the reservation).
pub fn reclaim(
    record: &mut ContainerRecord,
    worker: &WorkerId,
    attempt: &AttemptId,
    reason: &str,
    now_ms: u64,
) -> Option<ReclaimOutcome> {
    if record.state == ContainerState::Pending {
        if !record.revoked_attempts.contains(attempt) {
            record.revoked_attempts.push(attempt.clone());
        }
        return None;
    }
    if !holds(record, worker, attempt) {
        return None;
    }
    match record.state {
        ContainerState::Scheduled => {
            record.state = ContainerState::Pending;
            record.worker = None;
            record.attempt = None;
            record.scheduled_at_ms = None;
            record.reason = Some(reason.to_owned());
            Some(ReclaimOutcome::Requeued)
        }
        ContainerState::Running => {
            finish(record, ContainerState::Lost, reason, now_ms).ok()?;
            Some(ReclaimOutcome::Lost)
        }
        _ => None,
    }
}

/// Applies a cancellation: a pending container fails with reason `cancelled`; a scheduled
/// or running one is flagged for its worker; an ended one is left alone.
pub fn cancel(record: &mut ContainerRecord, now_ms: u64) {
    match record.state {
        ContainerState::Pending => {
            record.state = ContainerState::Failed;
            record.reason = Some("cancelled".to_owned());
            record.finished_at_ms = Some(now_ms);
        }
        ContainerState::Scheduled | ContainerState::Running => record.cancel_requested = true,
        _ => {}
    }
}
