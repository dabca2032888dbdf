//! `serial`, the seed's "before": every request on its own concurrent task reads every
//! worker from the store (no cache), picks the best, takes that worker's lock, reads it
//! again, compares the version, writes, unlocks; on a version conflict it starts over.

use super::locking::commit_under_lock;
use super::{BatchOutcome, Ctx, Placed, commit_group};
use crate::quota;
use crate::stats::Counter;
use berth_core::{PlanOptions, Snapshot, UnplacedReason, plan_with};
use berth_store::{Claim, CommitOutcome, Result};
use futures::future::join_all;

/// How often one request starts over after losing a race before it is handed back.
const MAX_ATTEMPTS: u32 = 50;

/// What became of one request.
enum Single {
    Placed(Placed),
    Conflict,
    Unplaced(UnplacedReason),
}

pub(super) async fn run(ctx: Ctx<'_>, claims: &[Claim]) -> Result<BatchOutcome> {
    let tasks = (0..claims.len()).map(|index| place_one(&ctx, claims, index));
    let mut out = BatchOutcome::default();
    for (index, single) in join_all(tasks).await.into_iter().enumerate() {
        match single? {
            Single::Placed(placed) => out.placed.push(placed),
            Single::Conflict => out.conflicts.push(index),
            Single::Unplaced(reason) => out.unplaced.push((index, reason)),
        }
    }
    Ok(out)
}

async fn place_one(ctx: &Ctx<'_>, claims: &[Claim], index: usize) -> Result<Single> {
    let (store, config, stats) = (ctx.store, ctx.config, ctx.stats);
    let claim = std::slice::from_ref(&claims[index]);
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot {
            workers: store.workers().await?,
            pools: ctx.pools.to_vec(),
        };
        let options = PlanOptions::at(ctx.now_ms);
        let mut plan = plan_with(&snapshot, &[claim[0].request.clone()], options);
        if let Some(unplaced) = plan.unplaced.pop() {
            return Ok(Single::Unplaced(unplaced.reason));
        }
        let (mut plan, mut refused) =
            quota::hold(store, ctx.policies, &snapshot, plan, claim).await?;
        if let Some((_, reason)) = refused.pop() {
            return Ok(Single::Unplaced(reason));
        }
        let Some(worker_plan) = plan.workers.pop() else {
            return Ok(Single::Conflict);
        };
        let group = commit_group(&worker_plan, claim);
        let outcome = commit_under_lock(
            store,
            &group,
            worker_plan.base_version,
            config.lock_ttl,
            config.lock_wait,
        )
        .await?;
        match outcome {
            CommitOutcome::Committed {
                worker,
                already_owned,
            } => {
                let attempt = already_owned
                    .first()
                    .map_or_else(|| claim[0].attempt.clone(), |(_, a)| a.clone());
                return Ok(Single::Placed(Placed {
                    claim: index,
                    worker: worker.id,
                    attempt,
                    gpu_type: worker.gpu_type,
                }));
            }
            CommitOutcome::Rejected { .. } => stats.add(Counter::VersionConflicts, 1),
        }
    }
    Ok(Single::Conflict)
}
