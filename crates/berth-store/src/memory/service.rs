//! The in-memory store's service operations: liveness, listing, logs, cancellation and
//! dead workers. Each runs under the store's one mutex.

use super::intake;
use super::state::State;
use crate::{LogSlice, Result, StoreError};
use berth_core::invariants::OwnedEntry;
use berth_core::lifecycle;
use berth_core::{AttemptId, ContainerRecord, ContainerState, ReclaimOutcome};
use berth_core::{ContainerId, WorkerId};

pub(super) fn deregister(state: &mut State, worker: &WorkerId) -> Result<()> {
    let Some(entry) = state.workers.get(worker) else {
        return Ok(());
    };
    if !entry.owned.is_empty() {
        return Err(StoreError::StillOwns {
            worker: worker.clone(),
            count: entry.owned.len(),
        });
    }
    state.workers.remove(worker);
    Ok(())
}

pub(super) fn containers(
    state: &State,
    wanted: Option<ContainerState>,
    limit: usize,
) -> Vec<ContainerRecord> {
    let mut records: Vec<ContainerRecord> = state
        .records
        .values()
        .filter(|r| wanted.is_none_or(|s| r.state == s))
        .cloned()
        .collect();
    records.sort_by(|a, b| {
        (b.request.submitted_at_ms, &b.request.id).cmp(&(a.request.submitted_at_ms, &a.request.id))
    });
    records.truncate(limit);
    records
}

pub(super) fn append_logs(
    state: &mut State,
    container: &ContainerId,
    lines: &[String],
    keep: usize,
) {
    let log = state.logs.entry(container.clone()).or_default();
    log.lines.extend(lines.iter().cloned());
    let excess = log.lines.len().saturating_sub(keep.max(1));
    log.lines.drain(..excess);
    log.dropped += excess as u64;
}

pub(super) fn logs(state: &State, container: &ContainerId, after: u64) -> LogSlice {
    let Some(log) = state.logs.get(container) else {
        return LogSlice::default();
    };
    let end = log.dropped + log.lines.len() as u64;
    let first = after.clamp(log.dropped, end);
    let skip = usize::try_from(first - log.dropped).unwrap_or(usize::MAX);
    LogSlice {
        first,
        lines: log.lines.iter().skip(skip).cloned().collect(),
    }
}

pub(super) fn cancel(state: &mut State, container: &ContainerId) -> Result<ContainerRecord> {
    let record = state
        .records
        .get_mut(container)
        .ok_or_else(|| StoreError::UnknownContainer(container.clone()))?;
    lifecycle::cancel(record, crate::now_ms());
    let record = record.clone();
    if record.state.is_terminal() {
        state.quota.uncharge(container);
    }
    Ok(record)
}

/// [`crate::Bookings::reclaim`] (`end` [`ContainerState::Lost`]) and
/// [`crate::Bookings::preempted`] (`end` [`ContainerState::Preempted`]).
pub(super) fn reclaim(
    state: &mut State,
    worker: &WorkerId,
    container: &ContainerId,
    attempt: &AttemptId,
    end: ContainerState,
    reason: &str,
) -> Result<ReclaimOutcome> {
    let give_back = match end {
        ContainerState::Preempted => lifecycle::preempted,
        _ => lifecycle::reclaim,
    };
    let outcome = match state.records.get_mut(container) {
        Some(record) => give_back(record, worker, attempt, reason, crate::now_ms()),
        None => None,
    };
    match outcome {
        // Back to pending: its charge is taken again when a claim holds it once more.
        Some(ReclaimOutcome::Requeued | ReclaimOutcome::Retried) => {
            state.quota.uncharge(container);
            intake::enqueue_id(state, container);
        }
        Some(ReclaimOutcome::Lost | ReclaimOutcome::Preempted) => state.quota.uncharge(container),
        _ => {}
    }
    state.release(worker, container, Some(attempt))?;
    Ok(outcome.unwrap_or(ReclaimOutcome::Released))
}

pub(super) fn owned(state: &State, worker: &WorkerId) -> Result<Vec<OwnedEntry>> {
    Ok(state.entry(worker)?.owned.values().cloned().collect())
}
