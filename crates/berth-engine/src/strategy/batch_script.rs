//! `batch-script`, berth's default: plan the batch against the cached fleet, then commit
//! every worker's group with the store's lock-free single-slot script, all in one pipelined
//! round trip, and update the cache from the replies.

use super::{BatchOutcome, Ctx, Placed, commit_group, planned};
use crate::cache::WorkerCache;
use crate::stats::{Counter, EngineStats};
use berth_core::WorkerPlan;
use berth_store::{Claim, CommitOutcome, Result};

pub(super) async fn run(mut ctx: Ctx<'_>, claims: &[Claim]) -> Result<BatchOutcome> {
    let (plan, unplaced) = planned(&mut ctx, claims).await?;
    let groups: Vec<_> = plan
        .workers
        .iter()
        .map(|w| commit_group(w, claims))
        .collect();
    let outcomes = if groups.is_empty() {
        Vec::new()
    } else {
        ctx.store.commit(&groups).await?
    };
    let mut out = BatchOutcome {
        unplaced,
        ..BatchOutcome::default()
    };
    for (worker_plan, outcome) in plan.workers.iter().zip(&outcomes) {
        absorb(ctx.cache, ctx.stats, worker_plan, outcome, claims, &mut out);
    }
    Ok(out)
}

/// Folds one group's commit outcome into the batch outcome and the cache.
pub(super) fn absorb(
    cache: &mut WorkerCache,
    stats: &EngineStats,
    worker_plan: &WorkerPlan,
    outcome: &CommitOutcome,
    claims: &[Claim],
    out: &mut BatchOutcome,
) {
    match outcome {
        CommitOutcome::Committed {
            worker,
            already_owned,
        } => {
            cache.apply(worker);
            for placement in &worker_plan.placements {
                let claim = &claims[placement.request];
                let earlier = already_owned.iter().find(|(c, _)| *c == claim.request.id);
                out.placed.push(Placed {
                    claim: placement.request,
                    worker: worker.id.clone(),
                    attempt: earlier.map_or_else(|| claim.attempt.clone(), |(_, a)| a.clone()),
                    gpu_type: worker.gpu_type.clone(),
                });
            }
        }
        CommitOutcome::Rejected { worker, .. } => {
            match worker {
                Some(worker) => cache.apply(worker),
                None => cache.invalidate(&worker_plan.worker),
            }
            stats.add(Counter::VersionConflicts, 1);
            out.conflicts
                .extend(worker_plan.placements.iter().map(|p| p.request));
        }
    }
}
