//! The in-memory intake: submit, claim, settle and the delayed-retry backlog.

use super::state::{IntakeEntry, State};
use crate::SettleItem;
use crate::model::*;
use berth_core::ContainerRequest;
use berth_core::lifecycle;
use berth_core::{ContainerRecord, ContainerState, Transition};
use std::time::Duration;
use tokio::time::Instant;

/// Records each new request as pending and queues it; duplicates change nothing.
pub(super) fn submit(state: &mut State, requests: &[ContainerRequest]) -> Vec<SubmitOutcome> {
    requests
        .iter()
        .map(|request| {
            if let Some(existing) = state.records.get(&request.id) {
                return SubmitOutcome::Duplicate(existing.state);
            }
            state
                .records
                .insert(request.id.clone(), lifecycle::pending(request.clone()));
            enqueue(state, request);
            SubmitOutcome::Accepted
        })
        .collect()
}

fn enqueue(state: &mut State, request: &ContainerRequest) {
    enqueue_id(state, &request.id);
}

/// Appends a container to the intake.
pub(super) fn enqueue_id(state: &mut State, container: &berth_core::ContainerId) {
    let seq = state.next_seq();
    state.intake.insert(
        seq,
        IntakeEntry {
            container: container.clone(),
            claimed: None,
        },
    );
}

/// Claims up to `max` entries: unclaimed ones, and ones whose claim is older than
/// `visibility`. Reclaimed entries whose record moved on are dropped.
pub(super) fn claim(state: &mut State, max: usize, visibility: Duration) -> Vec<Claim> {
    let now = Instant::now();
    let mut claims = Vec::new();
    let mut stale = Vec::new();
    for (&seq, entry) in state.intake.iter_mut() {
        if claims.len() >= max {
            break;
        }
        if entry
            .claimed
            .is_some_and(|at| now.duration_since(at) < visibility)
        {
            continue;
        }
        let record = state.records.get(&entry.container);
        match record {
            Some(record) if record.state == ContainerState::Pending => {
                let redelivered = entry.claimed.is_some();
                entry.claimed = Some(now);
                claims.push(Claim {
                    entry: seq.to_string(),
                    request: record.request.clone(),
                    attempt: crate::new_attempt(),
                    redelivered,
                });
            }
            _ => stale.push(seq),
        }
    }
    for seq in stale {
        state.intake.remove(&seq);
    }
    claims
}

/// Settles one claim; see [`crate::Intake::settle`].
pub(super) fn settle(state: &mut State, item: &SettleItem) -> SettleOutcome {
    if let Ok(seq) = item.entry.parse::<u64>() {
        state.intake.remove(&seq);
    }
    state.demand.remove(&item.container);
    let Some(record) = state.records.get_mut(&item.container) else {
        return SettleOutcome::Superseded {
            state: ContainerState::Failed,
            holder: None,
        };
    };
    let superseded = |record: &ContainerRecord| SettleOutcome::Superseded {
        state: record.state,
        holder: record.worker.clone().zip(record.attempt.clone()),
    };
    let now = crate::now_ms();
    match &item.settlement {
        Settlement::Scheduled {
            worker,
            attempt,
            charge,
        } => {
            let transition = Transition::Scheduled {
                worker: worker.clone(),
                attempt: attempt.clone(),
            };
            match lifecycle::apply(record, &transition, now) {
                Ok(()) => {
                    state.quota.charge(&item.container, charge);
                    SettleOutcome::Done
                }
                Err(_) if record.state == ContainerState::Pending => {
                    // A revoked attempt: the record goes back into the intake, so it is
                    // placed again instead of being left in neither intake nor backlog.
                    let outcome = superseded(record);
                    state.quota.uncharge(&item.container);
                    enqueue_id(state, &item.container);
                    outcome
                }
                Err(_) => superseded(record),
            }
        }
        Settlement::Deferred {
            not_before_ms,
            reason,
            pool,
            gpu_type,
        } => {
            if record.state != ContainerState::Pending {
                return superseded(record);
            }
            record.deferrals += 1;
            record.reason = Some(reason.clone());
            state.quota.uncharge(&item.container);
            state.defer(&item.container, *not_before_ms);
            state
                .demand
                .insert(item.container.clone(), (pool.clone(), gpu_type.clone()));
            SettleOutcome::Done
        }
        Settlement::Failed { reason } => {
            if record.state != ContainerState::Pending {
                return superseded(record);
            }
            let failed = Transition::Failed {
                reason: reason.clone(),
            };
            match lifecycle::apply(record, &failed, now) {
                Ok(()) => {
                    state.quota.uncharge(&item.container);
                    SettleOutcome::Done
                }
                Err(_) => superseded(record),
            }
        }
    }
}

/// Moves up to `max` due backlog entries to the intake.
pub(super) fn promote_due(state: &mut State, now_ms: u64, max: usize) -> usize {
    let due: Vec<(u64, berth_core::ContainerId)> = state
        .backlog
        .iter()
        .take_while(|(at, _)| *at <= now_ms)
        .take(max)
        .cloned()
        .collect();
    for key in &due {
        state.undefer(key);
        let seq = state.next_seq();
        state.intake.insert(
            seq,
            IntakeEntry {
                container: key.1.clone(),
                claimed: None,
            },
        );
    }
    due.len()
}
