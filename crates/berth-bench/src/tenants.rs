//! Tenants in the scale runs (`--tenants N`, `--quotas`): the requests are spread
//! round-robin over N tenants and, with quotas, every tenant gets a policy before the run
//! whose limits never bind (twice its share of the fleet) but make the engines hold every
//! placement on the intake's slot before its commit ([`berth_store::Quotas::hold`]).
//!
//! After the run, what the store charges each tenant must be exactly the requests it was
//! given: every one of them placed and charged once, by its hold or by its settlement.

use crate::args::Settings;
use crate::fleet::REQUEST;
use crate::report::RunResult;
use anyhow::{Context, bail};
use berth_core::{Quota, Resources, Tenant, TenantName};
use berth_store::prelude::*;
use std::collections::HashMap;

/// The one tenant of a run without `--tenants`.
const DEFAULT_TENANT: &str = "bench";

/// How a scale run spreads its requests over tenants, when the options ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tenancy {
    /// Tenants, round-robin over the requests.
    pub tenants: usize,
    /// True when every tenant has a (never binding) quota.
    pub quotas: bool,
}

/// The tenancy of each run the settings ask for, in order: `None` alone when neither
/// `--tenants` above 1 nor `--quotas` was given (the runs as they were before the options).
pub fn tenancies(settings: &Settings) -> Vec<Option<Tenancy>> {
    if settings.tenants == 1 && settings.quotas == [false] {
        return vec![None];
    }
    settings
        .quotas
        .iter()
        .map(|&quotas| {
            Some(Tenancy {
                tenants: settings.tenants,
                quotas,
            })
        })
        .collect()
}

/// The tenant of request `index` out of `tenants` (`bench` when there is one).
pub fn tenant_of(index: usize, tenants: usize) -> String {
    if tenants <= 1 {
        DEFAULT_TENANT.to_owned()
    } else {
        format!("{DEFAULT_TENANT}-{:04}", index % tenants)
    }
}

/// How many of `requests` requests go to tenant number `tenant` out of `tenants`.
fn share_of_requests(tenant: usize, requests: usize, tenants: usize) -> u64 {
    let extra = usize::from(tenant < requests % tenants);
    u64::try_from(requests / tenants + extra).unwrap_or(u64::MAX)
}

/// The CPU and memory of `workers` workers of size `worker`.
pub fn fleet_total(worker: Resources, workers: usize) -> Resources {
    let n = u64::try_from(workers).unwrap_or(u64::MAX);
    Resources::new(
        worker.cpu_millicores.saturating_mul(n),
        worker.memory_mib.saturating_mul(n),
        0,
    )
}

/// A quota of twice a tenant's share of `fleet` (the whole fleet's capacity) in containers,
/// CPU and memory: it never binds, since the fleet cannot hold more than its capacity.
pub fn generous_quota(fleet: Resources, tenants: usize) -> Quota {
    let tenants = u64::try_from(tenants.max(1)).unwrap_or(u64::MAX);
    let twice_share = |total: u64| total.div_ceil(tenants).saturating_mul(2);
    let containers = fleet.cpu_millicores / REQUEST.cpu_millicores.max(1);
    Quota {
        containers: Some(twice_share(containers)),
        cpu_millicores: Some(twice_share(fleet.cpu_millicores)),
        memory_mib: Some(twice_share(fleet.memory_mib)),
        ..Quota::default()
    }
}

/// Stores a generous quota ([`generous_quota`]) for every one of `tenants` tenants.
pub async fn put_quotas(store: &dyn Store, fleet: Resources, tenants: usize) -> anyhow::Result<()> {
    let quota = generous_quota(fleet, tenants);
    for index in 0..tenants {
        let name = TenantName::new(tenant_of(index, tenants)).context("a bench tenant name")?;
        let tenant = Tenant {
            name,
            quota: quota.clone(),
            weight: berth_core::quota::DEFAULT_WEIGHT,
        };
        store
            .put_tenant(&tenant)
            .await
            .with_context(|| format!("storing the policy of {}", tenant.name))?;
    }
    Ok(())
}

/// Fails unless the store charges each tenant exactly the containers it was given (every
/// request placed once): `requests` spread over `tenants` by [`tenant_of`].
pub async fn check_usage(store: &dyn Store, requests: usize, tenants: usize) -> anyhow::Result<()> {
    let usage: HashMap<String, u64> = store
        .usage()
        .await
        .context("reading the tenants' usage")?
        .into_iter()
        .map(|(tenant, usage)| (tenant, usage.containers))
        .collect();
    let wrong = mismatches(&usage, requests, tenants);
    if !wrong.is_empty() {
        let shown: Vec<_> = wrong.iter().take(5).collect();
        bail!(
            "{} tenants are charged other than the containers they were given, e.g. (tenant, charged, given) {shown:?}",
            wrong.len()
        );
    }
    Ok(())
}

/// The tenants whose charged containers differ from the requests they were given, with
/// both counts; tenants charged but never given any are included.
fn mismatches(
    usage: &HashMap<String, u64>,
    requests: usize,
    tenants: usize,
) -> Vec<(String, u64, u64)> {
    let tenants = tenants.max(1);
    let mut out = Vec::new();
    for index in 0..tenants {
        let name = tenant_of(index, tenants);
        let given = share_of_requests(index, requests, tenants);
        let charged = usage.get(&name).copied().unwrap_or(0);
        if charged != given {
            out.push((name, charged, given));
        }
    }
    let known = |name: &str| (0..tenants).any(|i| tenant_of(i, tenants) == name);
    for (name, &charged) in usage {
        if !known(name) {
            out.push((name.clone(), charged, 0));
        }
    }
    out
}

/// Each run with quotas paired with the last run before it without them, on the same
/// fleet, replicas and tenants: `(without, with)`, in report order.
pub fn quota_pairs<'a>(runs: &[&'a RunResult]) -> Vec<(&'a RunResult, &'a RunResult)> {
    let mut out = Vec::new();
    for (i, with) in runs.iter().enumerate() {
        let Some(tenancy) = with.tenancy.filter(|t| t.quotas) else {
            continue;
        };
        let without = runs[..i].iter().rev().find(|r| {
            r.tenancy
                .is_some_and(|t| !t.quotas && t.tenants == tenancy.tenants)
                && r.replicas == with.replicas
                && r.workers == with.workers
                && r.containers == with.containers
        });
        if let Some(without) = without {
            out.push((*without, *with));
        }
    }
    out
}

/// Placements/s with quotas over placements/s without (0 when nothing ran without).
pub fn ratio(without: &RunResult, with: &RunResult) -> f64 {
    if without.placements_per_sec > 0.0 {
        with.placements_per_sec / without.placements_per_sec
    } else {
        0.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::args::Scenario;

    fn settings(tenants: usize, quotas: Vec<bool>) -> Settings {
        Settings {
            scenario: Scenario::Sustained,
            rtts: Vec::new(),
            strategies: Vec::new(),
            repetitions: 1,
            serial_repetitions: 1,
            fleets: Vec::new(),
            gpu_devices: 0,
            containers: 1,
            stream_seeds: Vec::new(),
            typed_pods: false,
            replicas: vec![1],
            workers: 1_000,
            requests: 100_000,
            in_flight: None,
            tenants,
            quotas,
        }
    }

    #[test]
    fn without_the_options_a_run_has_no_tenancy() {
        assert_eq!(tenancies(&settings(1, vec![false])), [None]);
        let both = tenancies(&settings(100, vec![false, true]));
        let quotas: Vec<bool> = both.iter().map(|t| t.unwrap().quotas).collect();
        assert_eq!(quotas, [false, true]);
        assert_eq!(both[0].unwrap().tenants, 100);
        assert!(tenancies(&settings(1, vec![true]))[0].is_some());
    }

    #[test]
    fn requests_are_spread_round_robin() {
        assert_eq!(tenant_of(7, 1), "bench");
        assert_eq!(tenant_of(0, 100), "bench-0000");
        assert_eq!(tenant_of(101, 100), "bench-0001");
        let given: u64 = (0..3).map(|t| share_of_requests(t, 10, 3)).sum();
        assert_eq!(given, 10);
        assert_eq!(share_of_requests(0, 10, 3), 4);
        assert_eq!(share_of_requests(2, 10, 3), 3);
        for i in 0..100 {
            assert!(TenantName::new(tenant_of(i, 100)).is_ok());
        }
    }

    #[test]
    fn the_quota_is_twice_the_share_of_the_fleet() {
        let fleet = fleet_total(Resources::new(126_000, 126 * 1_024, 0), 1_000);
        let quota = generous_quota(fleet, 100);
        assert_eq!(quota.containers, Some(2_520));
        assert_eq!(quota.cpu_millicores, Some(2_520_000));
        assert_eq!(quota.memory_mib, Some(2_520 * 1_024));
        assert!(!quota.is_unlimited());
    }

    #[test]
    fn usage_must_match_the_spread() {
        let mut usage: HashMap<String, u64> = (0..3)
            .map(|t| (tenant_of(t, 3), share_of_requests(t, 10, 3)))
            .collect();
        assert!(mismatches(&usage, 10, 3).is_empty());
        usage.insert("bench-0001".to_owned(), 2);
        usage.insert("stranger".to_owned(), 1);
        let mut wrong = mismatches(&usage, 10, 3);
        wrong.sort();
        assert_eq!(
            wrong,
            [
                ("bench-0001".to_owned(), 2, 3),
                ("stranger".to_owned(), 1, 0)
            ]
        );
    }

    fn run(replicas: usize, quotas: bool, per_sec: f64) -> RunResult {
        RunResult {
            scenario: "sustained",
            replicas,
            placements_per_sec: per_sec,
            tenancy: Some(Tenancy {
                tenants: 100,
                quotas,
            }),
            ..RunResult::default()
        }
    }

    #[test]
    fn a_run_with_quotas_pairs_with_the_last_one_without() {
        let runs = [
            run(1, false, 100.0),
            run(1, true, 90.0),
            run(2, false, 200.0),
            run(1, false, 120.0),
            run(2, true, 150.0),
            run(1, true, 60.0),
        ];
        let refs: Vec<&RunResult> = runs.iter().collect();
        let ratios: Vec<f64> = quota_pairs(&refs)
            .into_iter()
            .map(|(a, b)| ratio(a, b))
            .collect();
        assert_eq!(ratios, [0.9, 0.75, 0.5]);
    }
}
