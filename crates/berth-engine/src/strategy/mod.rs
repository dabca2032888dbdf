//! The three commit strategies. Each takes a batch of claims and says, per claim, whether it
//! was placed (and where, under which attempt), must be replanned (its group lost a race),
//! or could not be placed (and why). They differ only in how they read the fleet and how
//! they commit; the planner and the store's atomic steps are the same for all.

mod batch_lock;
mod batch_script;
mod locking;
mod serial;

use crate::cache::WorkerCache;
use crate::quota::{self, Policies};
use crate::stats::EngineStats;
use crate::{EngineConfig, Strategy};
use berth_core::{ContainerRequest, GpuType, Plan, Pool, UnplacedReason, WorkerId, WorkerPlan};
use berth_store::{AttemptId, Claim, CommitGroup, Reservation, Result, Store};

/// What a strategy may use.
pub(crate) struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub config: &'a EngineConfig,
    pub cache: &'a mut WorkerCache,
    pub stats: &'a EngineStats,
    pub pools: &'a [Pool],
    /// The tenants with a quota, whose placements are held before their commit.
    pub policies: &'a Policies,
    /// When the batch is planned (ms since the epoch): decides which fallback steps are due.
    pub now_ms: u64,
}

/// A claim placed by a strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Index of the claim in the batch.
    pub claim: usize,
    /// The worker that holds it.
    pub worker: WorkerId,
    /// The attempt it is held under (the claim's, or an earlier one of a retried commit).
    pub attempt: AttemptId,
    /// The GPU type of the worker (what its tenant is charged for GPUs).
    pub gpu_type: Option<GpuType>,
}

/// What a strategy did with a batch.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    /// Placed claims.
    pub placed: Vec<Placed>,
    /// Claims whose group lost a race: replan them against fresh state.
    pub conflicts: Vec<usize>,
    /// Claims the planner could not place, with the reason.
    pub unplaced: Vec<(usize, UnplacedReason)>,
}

/// Runs `strategy` on a batch.
pub(crate) async fn run(
    strategy: Strategy,
    ctx: Ctx<'_>,
    claims: &[Claim],
) -> Result<BatchOutcome> {
    match strategy {
        Strategy::Serial => serial::run(ctx, claims).await,
        Strategy::BatchLock => batch_lock::run(ctx, claims).await,
        Strategy::BatchScript => batch_script::run(ctx, claims).await,
    }
}

/// The batch planned against the cached fleet, fairly between its tenants
/// ([`berth_core::fair`]), with the placements of tenants with a quota
/// held (see [`quota::hold`]): the plan to commit, and every claim it does not place with
/// the reason (the planner's and the hold's).
async fn planned(
    ctx: &mut Ctx<'_>,
    claims: &[Claim],
) -> Result<(Plan, Vec<(usize, UnplacedReason)>)> {
    let snapshot = ctx.cache.snapshot(ctx.store).await?;
    let options = berth_core::PlanOptions::at(ctx.now_ms);
    let shares = ctx.policies.shares();
    let mut plan = berth_core::plan_fair(snapshot, &requests(claims), options, shares);
    let mut unplaced: Vec<(usize, UnplacedReason)> = std::mem::take(&mut plan.unplaced)
        .into_iter()
        .map(|u| (u.request, u.reason))
        .collect();
    let (plan, refused) = quota::hold(ctx.store, ctx.policies, snapshot, plan, claims).await?;
    unplaced.extend(refused);
    Ok((plan, unplaced))
}

/// The requests of a batch, in claim order.
fn requests(claims: &[Claim]) -> Vec<ContainerRequest> {
    claims.iter().map(|c| c.request.clone()).collect()
}

/// The commit group for one worker's share of a plan.
fn commit_group(plan: &WorkerPlan, claims: &[Claim]) -> CommitGroup {
    CommitGroup {
        worker: plan.worker.clone(),
        reservations: plan
            .placements
            .iter()
            .map(|p| {
                let claim = &claims[p.request];
                Reservation {
                    container: claim.request.id.clone(),
                    attempt: claim.attempt.clone(),
                    resources: claim.request.resources,
                    devices: p.devices.clone(),
                    payload: claim.request.payload.clone(),
                }
            })
            .collect(),
    }
}
