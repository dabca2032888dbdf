//! `batch-script`, berth's default: plan the batch against the cached fleet, then commit
//! every worker's group with the store's lock-free single-slot script, all in one pipelined
//! round trip, and update the cache from the replies.

use super::{BatchOutcome, Ctx, Placed, commit_group, requests};
use crate::cache::WorkerCache;
use crate::stats::{Counter, EngineStats};
use berth_core::{PlanOptions, WorkerPlan, plan_with};
use berth_store::{Claim, CommitOutcome, Result};

pub(super) async fn run(ctx: Ctx<'_>, claims: &[Claim]) -> Result<BatchOutcome> {
    let snapshot = ctx.cache.snapshot(ctx.store).await?;
    let plan = plan_with(snapshot, &requests(claims), PlanOptions::at(ctx.now_ms));
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
        unplaced: plan
            .unplaced
            .into_iter()
            .map(|u| (u.request, u.reason))
            .collect(),
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
