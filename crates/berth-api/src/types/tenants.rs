//! Tenants: their quotas and weights (set by an admin), and what each holds now.

use berth_core::quota::{DEFAULT_WEIGHT, MAX_WEIGHT};
use berth_core::{GpuType, Quota, Tenant, TenantName, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The most a tenant may hold at once (scheduled plus running containers). An absent
/// limit does not apply. GPUs count in milli-GPUs: a whole GPU is 1000, half of one 500.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaView {
    /// Containers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9007199254740991_u64)]
    pub containers: Option<u64>,
    /// CPU in millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9007199254740991_u64)]
    pub cpu_millicores: Option<u64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9007199254740991_u64)]
    pub memory_mib: Option<u64>,
    /// GPUs of every type together, in milli-GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9007199254740991_u64)]
    pub gpu_milli: Option<u64>,
    /// GPUs of one type, in milli-GPUs, by type (e.g. `{"H100": 2000}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_milli_by_type: BTreeMap<String, u64>,
}

/// `PUT /v1/tenants/{name}`: a tenant's policy, replacing its earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Its limits.
    #[serde(default)]
    pub quota: QuotaView,
    /// Its share of contended capacity relative to other tenants (1 to 10000; default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub weight: Option<u32>,
}

/// What a tenant holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// Containers scheduled or running (or held for a placement in flight).
    pub containers: u64,
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPUs of every type, in milli-GPUs.
    pub gpu_milli: u64,
    /// GPUs by type, in milli-GPUs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_milli_by_type: BTreeMap<String, u64>,
}

/// A tenant: its policy (if it has one) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// The tenant.
    pub name: String,
    /// Whether a policy is stored for it (without one: no limits, weight 1).
    pub has_policy: bool,
    /// Its limits.
    pub quota: QuotaView,
    /// Its weight in fair sharing.
    pub weight: u32,
    /// What it holds now.
    pub usage: UsageView,
}

/// `GET /v1/tenants`: every tenant with a policy or holding something, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// The tenants.
    pub tenants: Vec<TenantView>,
}

/// Why a [`TenantSpec`] cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantSpecError {
    /// A GPU type is not a GPU type name.
    #[error("quota.gpu_milli_by_type: {0}")]
    GpuType(String),
    /// A limit is above what the store counts exactly.
    #[error("quota.{field}: {value} is above the limit of 9007199254740991")]
    TooLarge {
        /// The field.
        field: String,
        /// The value given.
        value: u64,
    },
    /// The weight is outside 1 to 10000.
    #[error("weight: {0} is outside 1 to {MAX_WEIGHT}")]
    Weight(u32),
}

/// The largest limit accepted: what a Lua number (a double) holds exactly.
const MAX_LIMIT: u64 = (1 << 53) - 1;

impl TenantSpec {
    /// The policy of tenant `name`, checked.
    pub fn to_tenant(&self, name: TenantName) -> Result<Tenant, TenantSpecError> {
        let q = &self.quota;
        let limits = [
            ("containers", q.containers),
            ("cpu_millicores", q.cpu_millicores),
            ("memory_mib", q.memory_mib),
            ("gpu_milli", q.gpu_milli),
        ];
        let typed = q
            .gpu_milli_by_type
            .iter()
            .map(|(name, milli)| (format!("gpu_milli_by_type.{name}"), Some(*milli)));
        for (field, value) in limits
            .into_iter()
            .map(|(f, v)| (f.to_owned(), v))
            .chain(typed)
        {
            if let Some(value) = value.filter(|v| *v > MAX_LIMIT) {
                return Err(TenantSpecError::TooLarge { field, value });
            }
        }
        let mut by_type = BTreeMap::new();
        for (name, milli) in &q.gpu_milli_by_type {
            let gpu_type: GpuType = name
                .parse()
                .map_err(|e: berth_core::GpuTypeError| TenantSpecError::GpuType(e.to_string()))?;
            by_type.insert(gpu_type, *milli);
        }
        let weight = self.weight.unwrap_or(DEFAULT_WEIGHT);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(TenantSpecError::Weight(weight));
        }
        Ok(Tenant {
            name,
            quota: Quota {
                containers: q.containers,
                cpu_millicores: q.cpu_millicores,
                memory_mib: q.memory_mib,
                gpu_milli: q.gpu_milli,
                gpu_milli_by_type: by_type,
            },
            weight,
        })
    }
}

impl From<&Quota> for QuotaView {
    fn from(q: &Quota) -> QuotaView {
        QuotaView {
            containers: q.containers,
            cpu_millicores: q.cpu_millicores,
            memory_mib: q.memory_mib,
            gpu_milli: q.gpu_milli,
            gpu_milli_by_type: q
                .gpu_milli_by_type
                .iter()
                .map(|(t, m)| (t.to_string(), *m))
                .collect(),
        }
    }
}

impl From<&Usage> for UsageView {
    fn from(u: &Usage) -> UsageView {
        UsageView {
            containers: u.containers,
            cpu_millicores: u.cpu_millicores,
            memory_mib: u.memory_mib,
            gpu_milli: u.gpu_milli,
            gpu_milli_by_type: u
                .gpu_milli_by_type
                .iter()
                .map(|(t, m)| (t.to_string(), *m))
                .collect(),
        }
    }
}

impl TenantView {
    /// The view of tenant `name` with its policy (if any) and its usage.
    pub fn of(name: &str, policy: Option<&Tenant>, usage: Option<&Usage>) -> TenantView {
        TenantView {
            name: name.to_owned(),
            has_policy: policy.is_some(),
            quota: policy
                .map(|p| QuotaView::from(&p.quota))
                .unwrap_or_default(),
            weight: policy.map_or(DEFAULT_WEIGHT, |p| p.weight),
            usage: usage.map(UsageView::from).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn a_spec_becomes_a_checked_policy() {
        let spec: TenantSpec = serde_json::from_str(
            r#"{"quota": {"containers": 4, "gpu_milli_by_type": {"h100": 2000}}, "weight": 3}"#,
        )
        .unwrap();
        let tenant = spec.to_tenant(TenantName::new("acme").unwrap()).unwrap();
        assert_eq!(tenant.weight, 3);
        assert_eq!(
            tenant.quota.gpu_milli_by_type.get(&GpuType::H100),
            Some(&2000)
        );
        let mut bad = spec.clone();
        bad.weight = Some(0);
        assert_eq!(
            bad.to_tenant(tenant.name.clone()),
            Err(TenantSpecError::Weight(0))
        );
        let mut huge = spec;
        huge.quota.cpu_millicores = Some(1 << 60);
        assert!(matches!(
            huge.to_tenant(tenant.name.clone()),
            Err(TenantSpecError::TooLarge { .. })
        ));
        assert!(serde_json::from_str::<TenantSpec>(r#"{"quota": {"cpus": 1}}"#).is_err());
    }
}
