//! Unmet demand: the requests waiting for room, summed per pool that would have to grow.

use crate::{GpuType, PoolName, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The demand that waits for room in one pool: what an autoscaler would have to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDemand {
    /// The pool (`None`: requests that no pool matches closely enough to grow).
    pub pool: Option<PoolName>,
    /// How many requests wait.
    pub requests: u64,
    /// Their CPU, memory and GPUs, summed.
    pub resources: Resources,
    /// Their GPUs by GPU type.
    pub gpus_by_type: BTreeMap<String, u64>,
}

/// Sums waiting requests into demand per pool, sorted by pool name.
pub fn aggregate_demand<'a>(
    waiting: impl IntoIterator<Item = (Option<&'a PoolName>, Option<&'a GpuType>, Resources)>,
) -> Vec<PoolDemand> {
    let mut by_pool: BTreeMap<Option<PoolName>, PoolDemand> = BTreeMap::new();
    for (pool, gpu_type, resources) in waiting {
        let demand = by_pool.entry(pool.cloned()).or_insert_with(|| PoolDemand {
            pool: pool.cloned(),
            ..PoolDemand::default()
        });
        demand.requests += 1;
        demand.resources = demand
            .resources
            .checked_add(resources)
            .unwrap_or(demand.resources);
        if resources.gpu_count > 0 {
            let name = gpu_type.map_or("any".to_owned(), |t| t.to_string());
            *demand.gpus_by_type.entry(name).or_insert(0) += u64::from(resources.gpu_count);
        }
    }
    by_pool.into_values().collect()
}
