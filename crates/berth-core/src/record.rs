//! Container records: where a container is in its life, and the placement attempt that
//! holds it. The state machine that moves a record is in [`crate::lifecycle`].

use crate::{ContainerRequest, WorkerId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A unique token for one placement attempt of a container. A claim of a request from the
/// intake gets a fresh one; the worker's ownership entry and the container record carry it,
/// so a stale attempt can be recognised and undone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(pub String);

impl AttemptId {
    /// The attempt id for 64 random bits (16 hex digits). The core draws no random numbers
    /// itself: the store that claims a request supplies them.
    pub fn from_bits(bits: u64) -> AttemptId {
        AttemptId(format!("{bits:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a container is in its life. States only move forward:
/// `Pending -> Scheduled [-> Pulling] -> Running -> Exited | Failed | Lost | Preempted`;
/// `Pending`, `Scheduled` and `Pulling` may also go straight to `Failed`, the last two to
/// `Lost`. Only the reaper and preemption move back: a scheduled or pulling container of a
/// dead worker, and a running one with retries left
/// ([`crate::lifecycle::end_or_retry`]), become `Pending` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Accepted, waiting for a placement.
    Pending,
    /// Reserved on a worker, not started yet.
    Scheduled,
    /// Its worker holds it and is fetching its image (a cold start); it runs next.
    Pulling,
    /// Started by its worker.
    Running,
    /// Ended with an exit code.
    Exited,
    /// Could not be placed or started; the record says why.
    Failed,
    /// Its worker died while it was scheduled or running.
    Lost,
    /// It was stopped to make room for a request of higher priority (see
    /// [`crate::preempt`]).
    Preempted,
}

impl ContainerState {
    /// The state as stored: `pending`, `scheduled`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Pending => "pending",
            ContainerState::Scheduled => "scheduled",
            ContainerState::Pulling => "pulling",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Failed => "failed",
            ContainerState::Lost => "lost",
            ContainerState::Preempted => "preempted",
        }
    }

    /// Parses a stored state.
    pub fn parse(s: &str) -> Option<ContainerState> {
        Some(match s {
            "pending" => ContainerState::Pending,
            "scheduled" => ContainerState::Scheduled,
            "pulling" => ContainerState::Pulling,
            "running" => ContainerState::Running,
            "exited" => ContainerState::Exited,
            "failed" => ContainerState::Failed,
            "lost" => ContainerState::Lost,
            "preempted" => ContainerState::Preempted,
            _ => return None,
        })
    }

    /// True for the states of a container held on a worker: scheduled, pulling or running.
    pub fn is_placed(self) -> bool {
        matches!(
            self,
            ContainerState::Scheduled | ContainerState::Pulling | ContainerState::Running
        )
    }

    /// True for a container placed on a worker that has not started its process yet:
    /// scheduled or pulling. Giving one back requeues it without counting a retry.
    pub fn is_unstarted(self) -> bool {
        matches!(self, ContainerState::Scheduled | ContainerState::Pulling)
    }

    /// True for states a container never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ContainerState::Exited
                | ContainerState::Failed
                | ContainerState::Lost
                | ContainerState::Preempted
        )
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the store knows about one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The request as accepted.
    pub request: ContainerRequest,
    /// Where it is in its life.
    pub state: ContainerState,
    /// The worker it is (or was) placed on.
    pub worker: Option<WorkerId>,
    /// The attempt that placed it.
    pub attempt: Option<AttemptId>,
    /// When it was scheduled, in ms since the epoch.
    pub scheduled_at_ms: Option<u64>,
    /// When it started running.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// The exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it failed, was lost, or is still waiting.
    pub reason: Option<String>,
    /// How many times it was put back in the backlog for lack of room.
    pub deferrals: u32,
    /// A cancellation was asked for; its worker stops it.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Attempts whose reservations were given back (their worker was declared lost) while
    /// the record was still pending: they may never schedule it.
    #[serde(default)]
    pub revoked_attempts: Vec<AttemptId>,
    /// How many times it was put back in the intake after ending involuntarily (its worker
    /// died), out of the request's `max_retries`.
    #[serde(default)]
    pub retries: u32,
    /// When it was last preempted (ms since the Unix epoch), if ever: a container requeued
    /// by a preemption may not preempt others for a while
    /// ([`crate::lifecycle::was_preempted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_at_ms: Option<u64>,
}

/// What a reclaim (the store's `reclaim`) did with a dead worker's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimOutcome {
    /// It had not started: it is pending again and back in the intake.
    Requeued,
    /// It was running and had retries left: it is pending again and back in the intake,
    /// with one retry more counted (see [`crate::lifecycle::end_or_retry`]).
    Retried,
    /// It was running: it is lost.
    Lost,
    /// It was running and was preempted: it ended PREEMPTED.
    Preempted,
    /// The record was not held by that worker and attempt any more; only the reservation
    /// was released.
    Released,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::STATES;

    #[test]
    fn every_state_reads_back_as_it_is_stored() {
        for state in STATES {
            assert_eq!(ContainerState::parse(state.as_str()), Some(state));
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(ContainerState::parse("paused"), None);
    }

    #[test]
    fn placed_unstarted_and_terminal_states_are_these() {
        let of = |test: fn(ContainerState) -> bool| -> Vec<ContainerState> {
            STATES.into_iter().filter(|s| test(*s)).collect()
        };
        use ContainerState as S;
        assert_eq!(
            of(ContainerState::is_placed),
            [S::Scheduled, S::Pulling, S::Running]
        );
        assert_eq!(of(ContainerState::is_unstarted), [S::Scheduled, S::Pulling]);
        assert_eq!(
            of(ContainerState::is_terminal),
            [S::Exited, S::Failed, S::Lost, S::Preempted]
        );
    }

    #[test]
    fn an_attempt_id_reads_as_its_text() {
        assert_eq!(AttemptId("a1".into()).as_str(), "a1");
        assert_eq!(AttemptId("a1".into()).to_string(), "a1");
    }
}
