//! Unmet demand and provisioning: every so often a replica reads the unmet demand from the
//! store, exports it as metrics, and, when a pool controller is configured, asks it to add
//! workers to the pools that need them. The intent to provision is recorded in the store
//! first (one replica per pool per TTL), so two replicas never provision twice for the same
//! demand.

use async_trait::async_trait;
use berth_core::{Pool, Resources};
use berth_store::{PoolDemand, Store};

/// What an autoscaler implements to let the engine grow pools.
#[async_trait]
pub trait PoolController: Send + Sync {
    /// Adds `count` workers of the pool's `worker_size` to `pool`. The workers register
    /// themselves when they are up.
    async fn add_workers(&self, pool: &Pool, count: u32) -> Result<(), String>;
}

/// How many workers of `size` hold `demand` (at least one; zero if `size` is zero).
pub fn workers_needed(demand: &Resources, size: &Resources) -> u32 {
    let part = |need: u64, per: u64| if per == 0 { 0 } else { need.div_ceil(per) };
    let most = part(demand.cpu_millicores, size.cpu_millicores)
        .max(part(demand.memory_mib, size.memory_mib))
        .max(part(demand.gpu_count.into(), size.gpu_count.into()));
    if size.is_zero() {
        return 0;
    }
    u32::try_from(most.max(1)).unwrap_or(u32::MAX)
}

/// Reads the unmet demand, exports it, and provisions where a controller is configured.
pub(crate) async fn run_once(
    store: &dyn Store,
    pools: &[Pool],
    controller: Option<&dyn PoolController>,
    replica: &str,
    ttl: std::time::Duration,
) -> berth_store::Result<()> {
    let demand = store.unmet_demand().await?;
    for entry in by_label(&demand, pools) {
        export(&entry);
    }
    let Some(controller) = controller else {
        return Ok(());
    };
    for entry in demand {
        let Some(pool) = entry
            .pool
            .as_ref()
            .and_then(|name| pools.iter().find(|p| p.attributes.pool == *name))
        else {
            continue;
        };
        let count = workers_needed(&entry.resources, &pool.worker_size);
        if count == 0 {
            continue;
        }
        let intent = format!("{replica}: {count} workers for {} requests", entry.requests);
        if store
            .claim_provisioning(&pool.attributes.pool, &intent, ttl)
            .await?
        {
            tracing::info!(pool = %pool.attributes.pool, count, "provisioning workers");
            metrics::counter!("berth_provisioned_workers_total", "pool" => pool.attributes.pool.to_string())
                .increment(count.into());
            if let Err(error) = controller.add_workers(pool, count).await {
                tracing::warn!(pool = %pool.attributes.pool, %error, "the pool controller failed");
            }
        }
    }
    Ok(())
}

/// The metric label of demand for `pool`: a configured pool by name, no pool as `none`, any
/// other (a name a request or registration made up) as `unconfigured`, so that made-up
/// names cannot grow the number of series.
fn pool_label(pool: Option<&berth_core::PoolName>, pools: &[Pool]) -> String {
    match pool {
        None => "none".to_owned(),
        Some(name) if pools.iter().any(|p| p.attributes.pool == *name) => name.to_string(),
        Some(_) => "unconfigured".to_owned(),
    }
}

/// The demand summed per metric label ([`pool_label`]), by label (each sum's own `pool`
/// is left `None`: the label names it).
fn by_label(demand: &[PoolDemand], pools: &[Pool]) -> Vec<(String, PoolDemand)> {
    let mut out: std::collections::BTreeMap<String, PoolDemand> = Default::default();
    for entry in demand {
        let sum = out
            .entry(pool_label(entry.pool.as_ref(), pools))
            .or_insert_with(|| PoolDemand {
                pool: None,
                requests: 0,
                resources: Resources::ZERO,
                gpus_by_type: Default::default(),
            });
        sum.requests = sum.requests.saturating_add(entry.requests);
        sum.resources = sum
            .resources
            .checked_add(entry.resources)
            .unwrap_or(sum.resources);
        for (gpu_type, count) in &entry.gpus_by_type {
            let total = sum.gpus_by_type.entry(gpu_type.clone()).or_default();
            *total = total.saturating_add(*count);
        }
    }
    out.into_iter().collect()
}

fn export((pool, entry): &(String, PoolDemand)) {
    let gauge = |name: &'static str, value: f64| {
        metrics::gauge!(name, "pool" => pool.clone()).set(value);
    };
    gauge("berth_unmet_demand_requests", entry.requests as f64);
    gauge(
        "berth_unmet_demand_cpu_millicores",
        entry.resources.cpu_millicores as f64,
    );
    gauge(
        "berth_unmet_demand_memory_mib",
        entry.resources.memory_mib as f64,
    );
    for (gpu_type, count) in &entry.gpus_by_type {
        metrics::gauge!("berth_unmet_demand_gpus", "pool" => pool.clone(), "gpu_type" => gpu_type.clone())
            .set(*count as f64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::PoolName;

    #[test]
    fn demand_of_unconfigured_pools_is_one_label() {
        let pools = [Pool {
            attributes: berth_core::PoolAttributes::plain(PoolName::new("cpu").unwrap()),
            gpu_type: None,
            worker_size: Resources::new(4000, 16_384, 0),
            fallback: Vec::new(),
        }];
        let entry = |pool: Option<&str>, requests: u64| PoolDemand {
            pool: pool.map(|p| PoolName::new(p).unwrap()),
            requests,
            resources: Resources::new(100 * requests, 10 * requests, 0),
            gpus_by_type: Default::default(),
        };
        let demand = [
            entry(Some("cpu"), 1),
            entry(Some("made-up-1"), 2),
            entry(Some("made-up-2"), 3),
            entry(None, 4),
        ];
        let labels: Vec<(String, u64, u64)> = by_label(&demand, &pools)
            .into_iter()
            .map(|(label, d)| (label, d.requests, d.resources.cpu_millicores))
            .collect();
        assert_eq!(
            labels,
            [
                ("cpu".to_owned(), 1, 100),
                ("none".to_owned(), 4, 400),
                ("unconfigured".to_owned(), 5, 500),
            ]
        );
    }

    #[test]
    fn workers_needed_rounds_up_on_the_tightest_resource() {
        let size = Resources::new(4000, 16_384, 0);
        assert_eq!(workers_needed(&Resources::new(4001, 1, 0), &size), 2);
        assert_eq!(workers_needed(&Resources::new(1, 40_000, 0), &size), 3);
        assert_eq!(workers_needed(&Resources::new(1, 1, 0), &size), 1);
        assert_eq!(
            workers_needed(&Resources::new(1, 1, 0), &Resources::ZERO),
            0
        );
        let gpu = Resources::new(8000, 65_536, 8);
        assert_eq!(workers_needed(&Resources::new(100, 100, 17), &gpu), 3);
    }
}
