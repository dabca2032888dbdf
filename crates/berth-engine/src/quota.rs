//! Quotas and fair shares in the engine: which tenants have a policy, their weights and what
//! each holds (read from the store at most once a [`POLICY_MAX_AGE`]), and the hold a plan's placements of those tenants take in the store
//! before they are committed ([`berth_store::Quotas::hold`]). A placement the hold refuses
//! is taken out of the plan and handed back as unplaced: over the quota now (deferred with
//! a `quota: ...` reason) or never within it (failed).
//!
//! Tenants without a policy pay nothing here: their placements are charged by their
//! settlement. A policy set for a tenant that had none is enforced by every replica within
//! [`POLICY_MAX_AGE`]; a changed limit of a tenant that had one is enforced at once (the
//! hold reads the stored policy).

use berth_core::fair::Shares;
use berth_core::{Charge, GpuType, Plan, Snapshot, Tenant, UnplacedReason, WorkerId};
use berth_store::{Claim, Hold, HoldOutcome, Result, Store};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long the engine trusts its list of tenants with a policy.
pub const POLICY_MAX_AGE: Duration = Duration::from_secs(1);

/// The tenants' policies and what each holds, as last read (at most once a
/// [`POLICY_MAX_AGE`]): the quotas to hold against and the shares fair sharing weighs.
#[derive(Debug, Default)]
pub struct Policies {
    tenants: HashMap<String, Tenant>,
    shares: Shares,
    read_at: Option<Instant>,
}

impl Policies {
    /// Reads the policies again when the last read is older than [`POLICY_MAX_AGE`]. A failed
    /// read keeps the last list (logged) and is tried again at the next batch.
    pub async fn refresh(&mut self, store: &dyn Store) {
        if self.read_at.is_some_and(|at| at.elapsed() < POLICY_MAX_AGE) {
            return;
        }
        let (tenants, usage) = match tokio::join!(store.tenants(), store.usage()) {
            (Ok(tenants), Ok(usage)) => (tenants, usage),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "reading the tenants' policies and usage failed");
                return;
            }
        };
        self.shares = Shares {
            weights: tenants
                .iter()
                .map(|t| (t.name.to_string(), t.weight))
                .collect(),
            usage: usage.into_iter().collect(),
        };
        self.tenants = tenants
            .into_iter()
            .map(|t| (t.name.to_string(), t))
            .collect();
        self.read_at = Some(Instant::now());
    }

    /// The tenants' weights and usage, for fair sharing.
    pub fn shares(&self) -> &Shares {
        &self.shares
    }

    /// The policy of `tenant`, if it has one.
    pub fn tenant(&self, tenant: &str) -> Option<&Tenant> {
        self.tenants.get(tenant)
    }

    /// True when `tenant` has a quota to hold against.
    pub fn limits(&self, tenant: &str) -> bool {
        self.tenants
            .get(tenant)
            .is_some_and(|t| !t.quota.is_unlimited())
    }

    /// True when no tenant has a quota (the hold is skipped).
    pub fn none_limited(&self) -> bool {
        self.tenants.values().all(|t| t.quota.is_unlimited())
    }
}

/// Holds the placements of `plan` whose tenants have a quota; returns the plan without the
/// refused ones, and those as unplaced with their reason. No store call when no placement
/// needs a hold.
pub(crate) async fn hold(
    store: &dyn Store,
    policies: &Policies,
    snapshot: &Snapshot,
    mut plan: Plan,
    claims: &[Claim],
) -> Result<(Plan, Vec<(usize, UnplacedReason)>)> {
    if policies.none_limited() {
        return Ok((plan, Vec::new()));
    }
    let gpu_types = gpu_types(snapshot, &plan);
    let mut holds = Vec::new();
    let mut held_claims = Vec::new();
    for worker_plan in &plan.workers {
        let gpu_type = gpu_types.get(&worker_plan.worker).and_then(Option::as_ref);
        for placement in &worker_plan.placements {
            let request = &claims[placement.request].request;
            if policies.limits(&request.tenant) {
                holds.push(Hold {
                    container: request.id.clone(),
                    charge: Charge::of(request, gpu_type),
                });
                held_claims.push(placement.request);
            }
        }
    }
    if holds.is_empty() {
        return Ok((plan, Vec::new()));
    }
    let outcomes = store.hold(&holds).await?;
    let refused: Vec<(usize, UnplacedReason)> = held_claims
        .into_iter()
        .zip(outcomes)
        .filter_map(|(claim, outcome)| match outcome {
            HoldOutcome::Held => None,
            HoldOutcome::Over(exceeded) => {
                Some((claim, UnplacedReason::OverQuota(exceeded.to_string())))
            }
            HoldOutcome::Never(exceeded) => Some((
                claim,
                UnplacedReason::NeverWithinQuota(exceeded.to_string()),
            )),
        })
        .collect();
    if !refused.is_empty() {
        metrics::counter!("berth_quota_refusals_total").increment(refused.len() as u64);
        let out: HashSet<usize> = refused.iter().map(|(claim, _)| *claim).collect();
        for worker_plan in &mut plan.workers {
            worker_plan.placements.retain(|p| !out.contains(&p.request));
        }
        plan.workers.retain(|w| !w.placements.is_empty());
    }
    Ok((plan, refused))
}

/// The GPU type of each worker the plan places on.
fn gpu_types(snapshot: &Snapshot, plan: &Plan) -> HashMap<WorkerId, Option<GpuType>> {
    let wanted: HashSet<&WorkerId> = plan.workers.iter().map(|w| &w.worker).collect();
    snapshot
        .workers
        .iter()
        .filter(|w| wanted.contains(&w.id))
        .map(|w| (w.id.clone(), w.gpu_type.clone()))
        .collect()
}
