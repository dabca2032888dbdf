//! Tenants' quotas: what a tenant may hold at once, what one container charges against it,
//! what a tenant holds now, and the one judgement both stores make inside their atomic hold.
//!
//! A container is charged to its tenant from the moment its placement is held (just before
//! its commit) until its record ends or goes back to waiting. The charge is what the
//! container holds of each limited dimension: one container, its CPU and memory, and its
//! GPUs in milli-GPUs (a whole GPU is 1,000), in total and of its worker's GPU type.

use crate::{ContainerRequest, GPU_MILLI, GpuType, TenantName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most a tenant may hold at once, in running plus scheduled containers. A limit that is
/// absent does not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Containers scheduled or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<u64>,
    /// CPU in millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// GPUs of every type together, in milli-GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_milli: Option<u64>,
    /// GPUs of one type, in milli-GPUs, by type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_milli_by_type: BTreeMap<GpuType, u64>,
}

/// A tenant's policy: its quota and its weight in fair sharing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant.
    pub name: TenantName,
    /// Its limits.
    #[serde(default)]
    pub quota: Quota,
    /// Its share of contended capacity relative to other tenants (1 to [`MAX_WEIGHT`]); a
    /// tenant without a policy weighs [`DEFAULT_WEIGHT`].
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The weight of a tenant without a policy.
pub const DEFAULT_WEIGHT: u32 = 1;
/// The largest weight accepted.
pub const MAX_WEIGHT: u32 = 10_000;

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// Why a tenant's policy cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The weight is outside 1 to [`MAX_WEIGHT`].
    #[error(
        "weight {0} is outside 1 to {MAX_WEIGHT}; give a tenant a larger weight to give it a larger share"
    )]
    Weight(u32),
}

impl Tenant {
    /// Checks the policy's values.
    pub fn validate(&self) -> Result<(), TenantError> {
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            return Err(TenantError::Weight(self.weight));
        }
        Ok(())
    }
}

/// What one container holds of its tenant's quota.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Charge {
    /// The tenant charged.
    pub tenant: String,
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPUs in milli-GPUs (whole GPUs times 1,000, or the fraction).
    pub gpu_milli: u64,
    /// The GPU type of the worker it is placed on, when it holds GPUs.
    pub gpu_type: Option<GpuType>,
}

impl Charge {
    /// The charge of `request` placed on a worker whose GPUs are of `gpu_type`.
    pub fn of(request: &ContainerRequest, gpu_type: Option<&GpuType>) -> Charge {
        let whole = u64::from(request.resources.gpu_count) * u64::from(GPU_MILLI);
        let gpu_milli = whole + u64::from(request.gpu_fraction_milli.unwrap_or(0));
        Charge {
            tenant: request.tenant.clone(),
            cpu_millicores: request.resources.cpu_millicores,
            memory_mib: request.resources.memory_mib,
            gpu_milli,
            gpu_type: gpu_type.filter(|_| gpu_milli > 0).cloned(),
        }
    }
}

/// What a tenant holds now: the sum of its charges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
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
    pub gpu_milli_by_type: BTreeMap<GpuType, u64>,
}

impl Usage {
    /// Adds a charge (saturating: usage is a sum of validated requests).
    pub fn add(&mut self, charge: &Charge) {
        self.containers = self.containers.saturating_add(1);
        self.cpu_millicores = self.cpu_millicores.saturating_add(charge.cpu_millicores);
        self.memory_mib = self.memory_mib.saturating_add(charge.memory_mib);
        self.gpu_milli = self.gpu_milli.saturating_add(charge.gpu_milli);
        if let Some(gpu_type) = &charge.gpu_type {
            let by_type = self.gpu_milli_by_type.entry(gpu_type.clone()).or_default();
            *by_type = by_type.saturating_add(charge.gpu_milli);
        }
    }

    /// Takes a charge back (saturating at zero; a type that reaches zero is dropped).
    pub fn sub(&mut self, charge: &Charge) {
        self.containers = self.containers.saturating_sub(1);
        self.cpu_millicores = self.cpu_millicores.saturating_sub(charge.cpu_millicores);
        self.memory_mib = self.memory_mib.saturating_sub(charge.memory_mib);
        self.gpu_milli = self.gpu_milli.saturating_sub(charge.gpu_milli);
        if let Some(gpu_type) = &charge.gpu_type
            && let Some(by_type) = self.gpu_milli_by_type.get_mut(gpu_type)
        {
            *by_type = by_type.saturating_sub(charge.gpu_milli);
            if *by_type == 0 {
                self.gpu_milli_by_type.remove(gpu_type);
            }
        }
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// A limit a charge would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The tenant.
    pub tenant: String,
    /// The dimension: `containers`, `cpu_millicores`, `memory_mib`, `gpu_milli` or
    /// `gpu_milli[TYPE]`.
    pub dimension: String,
    /// The limit.
    pub limit: u64,
    /// What the tenant holds of it now.
    pub in_use: u64,
    /// What the container asks of it.
    pub asked: u64,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quota: tenant {} holds {} {} of its limit of {}; this container needs {} more",
            self.tenant, self.in_use, self.dimension, self.limit, self.asked
        )
    }
}

/// The quota's judgement of one charge against what the tenant holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within every limit: the charge may be held.
    Within,
    /// Over a limit now; it may fit once the tenant's containers end.
    Over(Exceeded),
    /// The charge alone is above a limit: it can never fit while the quota stands.
    Never(Exceeded),
}

impl Quota {
    /// Judges `charge` against `usage` (what the tenant holds without it). The limits are
    /// looked at in a fixed order (containers, CPU, memory, GPUs, GPUs of the charge's
    /// type), and the first one that refuses decides; a charge above a limit on its own is
    /// [`Verdict::Never`] even if another limit is merely full.
    pub fn judge(&self, usage: &Usage, charge: &Charge) -> Verdict {
        let typed =
            |of: &BTreeMap<GpuType, u64>| charge.gpu_type.as_ref().and_then(|t| of.get(t).copied());
        // (dimension, limit, in use, asked); "" is the charge's GPU type, named only when
        // it refuses.
        let checks = [
            ("containers", self.containers, usage.containers, 1),
            (
                "cpu_millicores",
                self.cpu_millicores,
                usage.cpu_millicores,
                charge.cpu_millicores,
            ),
            (
                "memory_mib",
                self.memory_mib,
                usage.memory_mib,
                charge.memory_mib,
            ),
            (
                "gpu_milli",
                self.gpu_milli,
                usage.gpu_milli,
                charge.gpu_milli,
            ),
            (
                "",
                typed(&self.gpu_milli_by_type),
                typed(&usage.gpu_milli_by_type).unwrap_or(0),
                charge.gpu_milli,
            ),
        ];
        let limited = || {
            checks
                .iter()
                .filter_map(|&(name, limit, in_use, asked)| Some((name, limit?, in_use, asked)))
        };
        let exceeded = |(name, limit, in_use, asked): (&str, u64, u64, u64)| Exceeded {
            tenant: charge.tenant.clone(),
            dimension: match (name, &charge.gpu_type) {
                ("", Some(t)) => format!("gpu_milli[{t}]"),
                _ => name.to_owned(),
            },
            limit,
            in_use,
            asked,
        };
        if let Some(never) = limited().find(|&(_, limit, _, asked)| asked > limit) {
            return Verdict::Never(exceeded(never));
        }
        match limited().find(|&(_, limit, in_use, asked)| in_use.saturating_add(asked) > limit) {
            Some(over) => Verdict::Over(exceeded(over)),
            None => Verdict::Within,
        }
    }

    /// The limit `request` exceeds on its own wherever it is placed, if any: the whole
    /// limits judged without a GPU type, and the per-type limits only when every GPU type
    /// the request accepts has one below what it asks (with [`crate::GpuPreference::Any`],
    /// never). What admission refuses before anything is written.
    pub fn never_admits(&self, request: &ContainerRequest) -> Option<Exceeded> {
        let charge = Charge::of(request, None);
        if let Verdict::Never(exceeded) = self.judge(&Usage::default(), &charge) {
            return Some(exceeded);
        }
        let crate::GpuPreference::Types(types) = &request.gpu else {
            return None;
        };
        if charge.gpu_milli == 0 || types.is_empty() {
            return None;
        }
        let mut refusals = types.iter().map(|t| {
            let typed = Charge::of(request, Some(t));
            match self.judge(&Usage::default(), &typed) {
                Verdict::Never(exceeded) => Some(exceeded),
                _ => None,
            }
        });
        let first = refusals.next().flatten()?;
        refusals.all(|r| r.is_some()).then_some(first)
    }

    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Quota::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn charge(cpu: u64, gpu_milli: u64, gpu_type: Option<GpuType>) -> Charge {
        Charge {
            tenant: "acme".to_owned(),
            cpu_millicores: cpu,
            memory_mib: 10,
            gpu_milli,
            gpu_type,
        }
    }

    #[test]
    fn the_container_limit_counts_containers() {
        let quota = Quota {
            containers: Some(2),
            ..Quota::default()
        };
        let mut usage = Usage::default();
        let c = charge(100, 0, None);
        assert_eq!(quota.judge(&usage, &c), Verdict::Within);
        usage.add(&c);
        assert_eq!(quota.judge(&usage, &c), Verdict::Within);
        usage.add(&c);
        let Verdict::Over(over) = quota.judge(&usage, &c) else {
            panic!("a third container is over a limit of two");
        };
        assert_eq!((over.dimension.as_str(), over.in_use), ("containers", 2));
        assert_eq!(
            over.to_string(),
            "quota: tenant acme holds 2 containers of its limit of 2; this container needs 1 more"
        );
    }

    #[test]
    fn exactly_at_the_limit_is_within() {
        let quota = Quota {
            cpu_millicores: Some(1000),
            ..Quota::default()
        };
        let mut usage = Usage::default();
        usage.add(&charge(600, 0, None));
        assert_eq!(quota.judge(&usage, &charge(400, 0, None)), Verdict::Within);
        assert!(matches!(
            quota.judge(&usage, &charge(401, 0, None)),
            Verdict::Over(_)
        ));
        assert!(matches!(
            quota.judge(&Usage::default(), &charge(1001, 0, None)),
            Verdict::Never(_)
        ));
        assert_eq!(
            quota.judge(&Usage::default(), &charge(1000, 0, None)),
            Verdict::Within
        );
    }

    #[test]
    fn never_wins_over_a_full_limit() {
        let quota = Quota {
            containers: Some(1),
            memory_mib: Some(5),
            ..Quota::default()
        };
        let mut usage = Usage::default();
        usage.add(&charge(1, 0, None));
        let Verdict::Never(never) = quota.judge(&usage, &charge(1, 0, None)) else {
            panic!("10 MiB can never fit 5");
        };
        assert_eq!(never.dimension, "memory_mib");
    }

    #[test]
    fn a_type_limit_applies_to_that_type_only() {
        let quota = Quota {
            gpu_milli_by_type: [(GpuType::H100, 1000)].into(),
            ..Quota::default()
        };
        let mut usage = Usage::default();
        usage.add(&charge(1, 1000, Some(GpuType::H100)));
        let Verdict::Over(over) = quota.judge(&usage, &charge(1, 500, Some(GpuType::H100))) else {
            panic!("the H100 limit is full");
        };
        assert_eq!(
            (over.dimension.as_str(), over.asked),
            ("gpu_milli[H100]", 500)
        );
        assert_eq!(
            quota.judge(&usage, &charge(1, 4000, Some(GpuType::A10G))),
            Verdict::Within
        );
        assert_eq!(quota.judge(&usage, &charge(1, 0, None)), Verdict::Within);
    }

    /// Tenant acme's request for 500m, 64 MiB and two GPUs of any type.
    fn two_gpus() -> ContainerRequest {
        ContainerRequest {
            id: crate::ContainerId::new("c").unwrap(),
            tenant: "acme".into(),
            resources: crate::Resources::new(500, 64, 2),
            gpu_fraction_milli: None,
            gpu: crate::GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority: 0,
            submitted_at_ms: 0,
            payload: crate::Payload::default(),
            fallback: Vec::new(),
            max_retries: 0,
        }
    }

    #[test]
    fn the_charge_of_a_request_counts_gpus_in_milli() {
        let mut request = two_gpus();
        let h100 = GpuType::H100;
        let whole = Charge::of(&request, Some(&h100));
        assert_eq!(
            (whole.gpu_milli, whole.gpu_type),
            (2000, Some(GpuType::H100))
        );
        request.resources.gpu_count = 0;
        request.gpu_fraction_milli = Some(250);
        assert_eq!(Charge::of(&request, Some(&h100)).gpu_milli, 250);
        request.gpu_fraction_milli = None;
        let cpu = Charge::of(&request, Some(&h100));
        assert_eq!((cpu.gpu_milli, cpu.gpu_type), (0, None));
    }

    #[test]
    fn admission_refuses_only_what_no_gpu_type_admits() {
        let quota = Quota {
            gpu_milli_by_type: [(GpuType::H100, 1000), (GpuType::A10G, 500)].into(),
            ..Quota::default()
        };
        let mut request = ContainerRequest {
            gpu: crate::GpuPreference::Types(vec![GpuType::H100, GpuType::A10G]),
            ..two_gpus()
        };
        let never = quota.never_admits(&request).unwrap();
        assert_eq!(never.dimension, "gpu_milli[H100]");
        request.gpu = crate::GpuPreference::Types(vec![GpuType::H100, GpuType::L4]);
        assert_eq!(quota.never_admits(&request), None, "L4 has no limit");
        request.gpu = crate::GpuPreference::Any;
        assert_eq!(quota.never_admits(&request), None);
        let whole = Quota {
            memory_mib: Some(32),
            ..Quota::default()
        };
        assert_eq!(
            whole.never_admits(&request).unwrap().dimension,
            "memory_mib"
        );
    }

    #[test]
    fn weights_are_bounded() {
        let mut tenant = Tenant {
            name: TenantName::new("t").unwrap(),
            quota: Quota::default(),
            weight: 0,
        };
        assert_eq!(tenant.validate(), Err(TenantError::Weight(0)));
        tenant.weight = MAX_WEIGHT;
        assert_eq!(tenant.validate(), Ok(()));
        tenant.weight = MAX_WEIGHT + 1;
        assert!(tenant.validate().is_err());
    }

    fn arb_charge() -> impl Strategy<Value = Charge> {
        (
            1u64..2000,
            1u64..2000,
            0u64..3000,
            prop_oneof![
                Just(None),
                Just(Some(GpuType::A10G)),
                Just(Some(GpuType::H100))
            ],
        )
            .prop_map(|(cpu, mem, gpu, gpu_type)| Charge {
                tenant: "t".to_owned(),
                cpu_millicores: cpu,
                memory_mib: mem,
                gpu_milli: if gpu_type.is_some() { gpu } else { 0 },
                gpu_type,
            })
    }

    fn arb_quota() -> impl Strategy<Value = Quota> {
        (
            proptest::option::of(0u64..6),
            proptest::option::of(0u64..6000),
            proptest::option::of(0u64..6000),
            proptest::option::of(0u64..6000),
            proptest::option::of(0u64..6000),
        )
            .prop_map(|(containers, cpu, mem, gpu, h100)| Quota {
                containers,
                cpu_millicores: cpu,
                memory_mib: mem,
                gpu_milli: gpu,
                gpu_milli_by_type: h100.map(|l| (GpuType::H100, l)).into_iter().collect(),
            })
    }

    proptest! {
        /// Admitting charges one by one, as a store's hold does, never takes usage above a
        /// limit; a charge refused as never-fitting is above a limit on its own; taking every
        /// charge back leaves nothing held.
        #[test]
        fn holding_by_the_verdict_never_exceeds_the_quota(
            quota in arb_quota(),
            charges in proptest::collection::vec(arb_charge(), 0..40),
        ) {
            let mut usage = Usage::default();
            let mut held = Vec::new();
            for charge in &charges {
                match quota.judge(&usage, charge) {
                    Verdict::Within => {
                        usage.add(charge);
                        held.push(charge.clone());
                    }
                    Verdict::Over(e) => prop_assert!(e.in_use + e.asked > e.limit && e.asked <= e.limit),
                    Verdict::Never(e) => prop_assert!(e.asked > e.limit),
                }
                let within = |limit: Option<u64>, used: u64| limit.is_none_or(|l| used <= l);
                prop_assert!(within(quota.containers, usage.containers));
                prop_assert!(within(quota.cpu_millicores, usage.cpu_millicores));
                prop_assert!(within(quota.memory_mib, usage.memory_mib));
                prop_assert!(within(quota.gpu_milli, usage.gpu_milli));
                for (t, limit) in &quota.gpu_milli_by_type {
                    prop_assert!(usage.gpu_milli_by_type.get(t).copied().unwrap_or(0) <= *limit);
                }
            }
            for charge in &held {
                usage.sub(charge);
            }
            prop_assert!(usage.is_empty());
        }

        /// A charge judged within the quota stays within it when the tenant holds less.
        #[test]
        fn less_usage_never_turns_within_into_a_refusal(
            quota in arb_quota(),
            first in arb_charge(),
            second in arb_charge(),
        ) {
            let mut usage = Usage::default();
            usage.add(&first);
            if quota.judge(&usage, &second) == Verdict::Within {
                prop_assert_eq!(quota.judge(&Usage::default(), &second), Verdict::Within);
            }
        }
    }
}
