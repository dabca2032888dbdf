//! The in-memory store's quota book: tenants' policies, one charge per placed container,
//! and each tenant's usage (the sum of its charges), kept together under the store's one
//! mutex, so every hold, charge and give-back is atomic with the record's move that causes
//! it.

use crate::{Hold, HoldOutcome};
use berth_core::{Charge, ContainerId, Tenant, TenantName, Usage, Verdict};
use std::collections::{BTreeMap, HashMap};

/// Tenants' policies, charges and usage.
#[derive(Debug, Default)]
pub(super) struct QuotaBook {
    pub tenants: BTreeMap<TenantName, Tenant>,
    pub charges: HashMap<ContainerId, Charge>,
    pub usage: HashMap<String, Usage>,
}

impl QuotaBook {
    /// Charges `container` unless it is charged already.
    pub fn charge(&mut self, container: &ContainerId, charge: &Charge) {
        if self.charges.contains_key(container) {
            return;
        }
        self.usage
            .entry(charge.tenant.clone())
            .or_default()
            .add(charge);
        self.charges.insert(container.clone(), charge.clone());
    }

    /// Gives `container`'s charge back, if it has one.
    pub fn uncharge(&mut self, container: &ContainerId) {
        let Some(charge) = self.charges.remove(container) else {
            return;
        };
        if let Some(usage) = self.usage.get_mut(&charge.tenant) {
            usage.sub(&charge);
            if usage.is_empty() {
                self.usage.remove(&charge.tenant);
            }
        }
    }

    /// One hold (see [`crate::Quotas::hold`]); `pending` says whether the container's record
    /// is still waiting. Only a waiting record is charged by a hold: one that moved on was
    /// placed, and charged, by someone else, or ended (and must not be charged again).
    pub fn hold(&mut self, hold: &Hold, pending: bool) -> HoldOutcome {
        if !pending || self.charges.get(&hold.container) == Some(&hold.charge) {
            return HoldOutcome::Held;
        }
        self.uncharge(&hold.container);
        let policy = TenantName::new(&hold.charge.tenant)
            .ok()
            .and_then(|name| self.tenants.get(&name));
        let Some(policy) = policy else {
            return HoldOutcome::Held;
        };
        let usage = self
            .usage
            .get(&hold.charge.tenant)
            .cloned()
            .unwrap_or_default();
        match policy.quota.judge(&usage, &hold.charge) {
            Verdict::Within => {
                self.charge(&hold.container, &hold.charge);
                HoldOutcome::Held
            }
            Verdict::Over(exceeded) => HoldOutcome::Over(exceeded),
            Verdict::Never(exceeded) => HoldOutcome::Never(exceeded),
        }
    }
}
