//! Settling a batch: what each claim becomes (scheduled, deferred with backoff, failed), the
//! settlement sent to the store, and the outcomes told to local submitters.

use super::Shared;
use crate::cache::WorkerCache;
use crate::stats::Counter;
use crate::strategy::BatchOutcome;
use crate::ticket::Outcome;
use berth_core::fallback::next_step_due_ms;
use berth_core::feasibility::demand_target_at;
use berth_core::{ContainerId, ContainerRequest, UnplacedReason};
use berth_store::{Claim, SettleItem, SettleOutcome, Settlement};
use std::collections::HashMap;
use std::time::Duration;

/// The settlements of one batch, and the outcomes to tell local submitters.
#[derive(Default)]
pub(super) struct Settle {
    pub(super) items: Vec<SettleItem>,
    /// When each item's request was submitted (ms since the epoch), by item index.
    pub(super) submitted_at_ms: Vec<u64>,
    /// The placement each scheduled item stands for (worker, attempt), by item index.
    pub(super) placements: HashMap<usize, (berth_core::WorkerId, berth_store::AttemptId)>,
    /// The deferred requests that wait for their tenant's quota, not for room: no pool
    /// would have to grow for them.
    pub(super) quota_bound: std::collections::HashSet<ContainerId>,
}

impl Settle {
    pub(super) fn push(&mut self, claim: &Claim, settlement: Settlement) {
        self.submitted_at_ms.push(claim.request.submitted_at_ms);
        self.items.push(SettleItem {
            entry: claim.entry.clone(),
            container: claim.request.id.clone(),
            settlement,
        });
    }

    /// Settles `claim` as placed on `worker` (whose GPUs are of `gpu_type`) under
    /// `attempt`, charged to its tenant.
    pub(super) fn scheduled(
        &mut self,
        claim: &Claim,
        worker: berth_core::WorkerId,
        attempt: berth_store::AttemptId,
        gpu_type: Option<&berth_core::GpuType>,
    ) {
        self.placements
            .insert(self.items.len(), (worker.clone(), attempt.clone()));
        let charge = berth_core::Charge::of(&claim.request, gpu_type);
        self.push(
            claim,
            Settlement::Scheduled {
                worker,
                attempt,
                charge,
            },
        );
    }

    pub(super) fn fail(&mut self, claim: &Claim, reason: String) {
        self.push(claim, Settlement::Failed { reason });
    }
}

/// What a batch was planned against: when, and whether the fleet snapshot was read whole
/// recently enough to defer on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    pub(super) now: u64,
    pub(super) fresh: bool,
}

/// Sorts a batch's outcome into settlements and requests to plan again; true when the
/// cache must be read again first (a request found nothing in a snapshot that may be
/// stale).
pub(super) fn sort(
    shared: &Shared,
    view: View,
    claims: &[Claim],
    retries: &[u32],
    outcome: BatchOutcome,
    settle: &mut Settle,
    carry: &mut Vec<(Claim, u32)>,
) -> bool {
    let now = view.now;
    let mut refresh = false;
    for placed in outcome.placed {
        let claim = &claims[placed.claim];
        settle.scheduled(
            claim,
            placed.worker,
            placed.attempt,
            placed.gpu_type.as_ref(),
        );
    }
    for index in outcome.conflicts {
        let claim = &claims[index];
        if retries[index] < shared.config.max_conflict_retries {
            carry.push((claim.clone(), retries[index] + 1));
        } else {
            let why = "lost every commit race; retrying later";
            defer(shared, now, claim, (why, shared.config.backoff_cap), settle);
        }
    }
    for (index, reason) in outcome.unplaced {
        let claim = &claims[index];
        match reason {
            // No room in a snapshot that may predate releases: look once more against a
            // fresh one before deferring.
            UnplacedReason::NoRoomNow if !view.fresh && retries[index] == 0 => {
                carry.push((claim.clone(), 1));
                refresh = true;
            }
            UnplacedReason::NoRoomNow => {
                let cap = shared.config.backoff_cap;
                defer(shared, now, claim, (&reason.to_string(), cap), settle);
            }
            // Growing a pool would not help: not unmet demand.
            UnplacedReason::OverQuota(_) => {
                settle.quota_bound.insert(claim.request.id.clone());
                let cap = shared.config.quota_backoff_cap;
                defer(shared, now, claim, (&reason.to_string(), cap), settle);
            }
            UnplacedReason::Invalid(_) | UnplacedReason::NeverWithinQuota(_) => {
                settle.fail(claim, reason.to_string());
            }
            // Hopeless against this snapshot; the snapshot may predate a registration, so
            // look once more against a fresh one before failing for good.
            _ if retries[index] == 0 => {
                carry.push((claim.clone(), 1));
                refresh = true;
            }
            other => settle.fail(claim, other.to_string()),
        }
    }
    refresh
}

/// Sends a claim to the backlog. The delay doubles with the time already waited (capped
/// exponential backoff without a per-request counter), but the request is looked at again
/// no later than its next fallback step becomes due: the step may have room now.
fn defer(
    shared: &Shared,
    now: u64,
    claim: &Claim,
    (reason, cap): (&str, Duration),
    settle: &mut Settle,
) {
    let waited = waited(claim, now);
    let config = &shared.config;
    let delay = waited.clamp(config.backoff_base, cap.max(config.backoff_base));
    let backoff_ms = now.saturating_add(crate::clock::millis(delay));
    let next_step = next_step_due_ms(&claim.request, &shared.pools, now);
    let not_before_ms = next_step.map_or(backoff_ms, |due| due.min(backoff_ms));
    settle.push(
        claim,
        Settlement::Deferred {
            not_before_ms,
            reason: reason.to_owned(),
            pool: None,
            gpu_type: None,
        },
    );
}

/// Names, for every deferred request, the pool that would have to grow for it (the unmet
/// demand an autoscaler reads): that of the most preferred choice it accepts by now. Reads the fleet from the cache.
pub(super) async fn target_demand(
    shared: &Shared,
    cache: &mut WorkerCache,
    claims: &[Claim],
    settle: &mut Settle,
) -> berth_store::Result<()> {
    let deferred = |item: &SettleItem| matches!(item.settlement, Settlement::Deferred { .. });
    if !settle.items.iter().any(deferred) {
        return Ok(());
    }
    let now = shared.clock.now_ms();
    let snapshot = cache.snapshot(&*shared.store).await?;
    let requests: HashMap<&ContainerId, &ContainerRequest> =
        claims.iter().map(|c| (&c.request.id, &c.request)).collect();
    for item in &mut settle.items {
        let Settlement::Deferred { pool, gpu_type, .. } = &mut item.settlement else {
            continue;
        };
        if settle.quota_bound.contains(&item.container) {
            continue;
        }
        if let Some(request) = requests.get(&item.container) {
            // The pool of the best choice the request accepts by now.
            let waited = now.saturating_sub(request.submitted_at_ms);
            let target = demand_target_at(snapshot, request, waited);
            *gpu_type = target.as_ref().and_then(|(_, gpu)| gpu.clone());
            *pool = target.map(|(name, _)| name);
        }
    }
    Ok(())
}

/// Settles the batch in the store, undoes placements another replica beat us to, and tells
/// local submitters.
pub(super) async fn apply(shared: &Shared, settle: &Settle, now: u64) -> berth_store::Result<()> {
    if settle.items.is_empty() {
        return Ok(());
    }
    let outcomes = shared.store.settle(&settle.items).await?;
    for (index, (item, outcome)) in settle.items.iter().zip(outcomes).enumerate() {
        let ours = settle.placements.get(&index);
        match outcome {
            SettleOutcome::Done => {
                let waited =
                    Duration::from_millis(now.saturating_sub(settle.submitted_at_ms[index]));
                report(shared, item, waited)
            }
            SettleOutcome::Superseded { holder, .. } => {
                if let Some((worker, attempt)) = ours.filter(|ours| holder.as_ref() != Some(ours)) {
                    shared.stats.add(Counter::Superseded, 1);
                    // The batch is settled: a failed release must not skip the rest of it.
                    // The worker's agent releases the reservation when it gets a 409.
                    let released =
                        shared
                            .store
                            .release(worker, &item.container, Some(attempt), None);
                    if let Err(error) = released.await {
                        tracing::warn!(%error, container = %item.container, "releasing a superseded reservation failed");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Counts a settled item and tells its local submitters, if any.
fn report(shared: &Shared, item: &SettleItem, waited: Duration) {
    let outcome = match &item.settlement {
        Settlement::Scheduled { worker, .. } => {
            shared.stats.add(Counter::Placed, 1);
            metrics::histogram!("berth_placement_latency_seconds", "strategy" => shared.config.strategy.as_str())
                .record(waited.as_secs_f64());
            Outcome::Placed {
                worker: worker.clone(),
            }
        }
        Settlement::Failed { reason } => {
            shared.stats.add(Counter::Failed, 1);
            Outcome::Failed {
                reason: reason.clone(),
            }
        }
        Settlement::Deferred { .. } => {
            shared.stats.add(Counter::Deferred, 1);
            return;
        }
    };
    let waiters = shared.waiters.lock().remove(&item.container);
    for waiter in waiters.into_iter().flatten() {
        let _ = waiter.send(outcome.clone());
    }
}

/// How long a claimed request has waited since it was submitted.
pub(super) fn waited(claim: &Claim, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(claim.request.submitted_at_ms))
}
