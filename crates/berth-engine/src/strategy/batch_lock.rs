//! `batch-lock`, the seed's "after": plan the batch against the cached fleet (affinity by
//! rendezvous hash, staged reservations), then commit each touched worker's group under that
//! worker's lock, all workers in parallel (read once, apply all, bump the version, write
//! once, unlock), then invalidate the cache entries of the touched workers.

use super::batch_script::absorb;
use super::locking::commit_under_lock;
use super::{BatchOutcome, Ctx, commit_group, requests};
use berth_core::{PlanOptions, plan_with};
use berth_store::{Claim, Result};
use futures::future::join_all;

pub(super) async fn run(ctx: Ctx<'_>, claims: &[Claim]) -> Result<BatchOutcome> {
    let snapshot = ctx.cache.snapshot(ctx.store).await?;
    let plan = plan_with(snapshot, &requests(claims), PlanOptions::at(ctx.now_ms));
    let commits =
        plan.workers.iter().map(|worker_plan| {
            let group = commit_group(worker_plan, claims);
            let (ttl, wait) = (ctx.config.lock_ttl, ctx.config.lock_wait);
            async move {
                commit_under_lock(ctx.store, &group, worker_plan.base_version, ttl, wait).await
            }
        });
    let outcomes = join_all(commits).await;
    let mut out = BatchOutcome {
        unplaced: plan
            .unplaced
            .into_iter()
            .map(|u| (u.request, u.reason))
            .collect(),
        ..BatchOutcome::default()
    };
    for (worker_plan, outcome) in plan.workers.iter().zip(outcomes) {
        absorb(
            ctx.cache,
            ctx.stats,
            worker_plan,
            &outcome?,
            claims,
            &mut out,
        );
        ctx.cache.invalidate(&worker_plan.worker);
    }
    Ok(out)
}
