//! The store's role for tenants' quotas: the policies, what each tenant holds, and the
//! atomic hold a placement takes before its commit.
//!
//! Every container placed is charged to its tenant ([`berth_core::Charge`]), in one
//! `charges` table keyed by container, with a usage sum per tenant kept beside it in the same
//! atomic steps. A charge is taken by [`Quotas::hold`] (a tenant with a quota, before the
//! commit) or by the settlement that schedules the container (any other tenant), and given
//! back by the step that ends the record, sends it back to waiting (deferred, reclaimed from
//! a dead worker unstarted or, with retries left, running; its attempt revoked) or fails it. On Redis every one of these keys shares
//! the intake's hash tag `{q}`, so each of those steps is one script on one slot, on
//! standalone Redis or Cluster alike: the record's move and its charge never part.

use crate::Result;
use async_trait::async_trait;
use berth_core::quota::Exceeded;
use berth_core::{Charge, ContainerId, Tenant, TenantName, Usage};

/// A placement about to be committed, to be charged to its tenant first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The container.
    pub container: ContainerId,
    /// What it would hold (its tenant, resources and the GPU type of its planned worker).
    pub charge: Charge,
}

/// The answer to one [`Hold`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Charged (or charged already with the same charge): commit it.
    Held,
    /// Over the tenant's quota now: do not commit; defer it (its reason says which limit).
    Over(Exceeded),
    /// Above the tenant's quota on its own: it can never run while the quota stands.
    Never(Exceeded),
}

/// Tenants' quotas and weights, their usage, and holds.
#[async_trait]
pub trait Quotas: Send + Sync {
    /// Stores a tenant's policy, replacing its earlier one. Atomic. The next hold judges by
    /// it. A policy that does not validate ([`Tenant::validate`]) is refused with
    /// [`crate::StoreError::InvalidArgument`].
    async fn put_tenant(&self, tenant: &Tenant) -> Result<()>;

    /// Removes a tenant's policy (its containers keep their charges); `false` if it had
    /// none.
    async fn remove_tenant(&self, name: &TenantName) -> Result<bool>;

    /// Every stored policy, by name. A stored policy that does not read back is logged and
    /// left out (its tenant is then unlimited, as one without a policy).
    async fn tenants(&self) -> Result<Vec<Tenant>>;

    /// What each tenant holds now, by tenant; tenants holding nothing are left out.
    async fn usage(&self) -> Result<Vec<(String, Usage)>>;

    /// Charges each placement to its tenant if the tenant's quota admits it, atomically and
    /// in order, one after another: no interleaving of callers can take a tenant above a
    /// limit. A container already charged with the same charge is [`HoldOutcome::Held`]
    /// again without being judged (a retried batch); one charged differently (replanned
    /// onto another GPU type) gives its old charge back and is judged anew. A tenant
    /// without a policy is held without a charge (its settlement charges it). Outcomes come
    /// back in the order of `holds`. On Redis: one script on the intake's slot.
    async fn hold(&self, holds: &[Hold]) -> Result<Vec<HoldOutcome>>;
}
