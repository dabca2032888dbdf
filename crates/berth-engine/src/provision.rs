//! Unmet demand and provisioning: every so often a replica reads the unmet demand from the
//! store, exports it as metrics, and, when a pool controller is configured, asks it to add
//! workers to the pools that need them. The intent to provision is recorded in the store
//! first (one replica per pool per TTL), so two replicas never provision twice for the same
//! demand; the workers a controller says it started are recorded too, and count toward the
//! demand until they have been registered for a settling time (the backlog's longest wait,
//! so that every waiting request has been tried on them) or their registration timeout
//! passes, so a burst read again before the new workers are up, or before the backlog has
//! moved onto them, does not provision twice either. Pools with an idle
//! timeout shrink too (`scale_down`, measured by [`IdleTracker`]).

mod scale_down;

use crate::clock::millis;
use async_trait::async_trait;
use berth_core::{Pool, PoolName, Resources, Worker, WorkerId, WorkerStatus};
use berth_store::{PendingWorker, PoolDemand, Store};
use std::collections::HashSet;
use std::time::Duration;

pub use scale_down::IdleTracker;

/// What an autoscaler implements to let the engine grow (and shrink) pools.
#[async_trait]
pub trait PoolController: Send + Sync {
    /// Whether this controller grows `pool` at all (default: every pool).
    fn manages(&self, _pool: &PoolName) -> bool {
        true
    }

    /// Adds `count` workers of the pool's `worker_size` to `pool` for `demand`, and returns
    /// the ids of the workers it started (they register themselves when they are up, and
    /// count toward the pool's demand until then). An empty list is allowed: nothing then
    /// counts as pending, and only the provisioning intent's TTL holds off the next call.
    async fn add_workers(
        &self,
        pool: &Pool,
        demand: &PoolDemand,
        count: u32,
    ) -> Result<Vec<WorkerId>, String>;

    /// How long a worker of `pool` may own nothing before it is drained and removed;
    /// `None` (the default): never.
    fn idle_timeout(&self, _pool: &PoolName) -> Option<Duration> {
        None
    }

    /// Stops `workers` of `pool`: drained, owning nothing, and taking no new work. The
    /// default refuses (a controller with no idle timeout is never asked).
    async fn remove_workers(&self, pool: &Pool, workers: &[WorkerId]) -> Result<(), String> {
        let _ = workers;
        Err(format!(
            "this controller cannot remove workers of {}",
            pool.attributes.pool
        ))
    }
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

/// What one provisioning round needs besides the store.
pub(crate) struct Round<'a> {
    /// The configured pools.
    pub pools: &'a [Pool],
    /// The controller, if any.
    pub controller: Option<&'a dyn PoolController>,
    /// This replica's name, written into the intents it records.
    pub replica: &'a str,
    /// How long a provisioning intent holds off other replicas.
    pub ttl: Duration,
    /// How long a started worker counts as pending before it is presumed lost.
    pub registration_timeout: Duration,
    /// How long a started worker still counts toward the demand once it has registered:
    /// the longest a backlog entry waits before it is tried again, so that the backlog
    /// (the demand) has been tried on the new worker before it is read without it.
    pub settling: Duration,
    /// How often rounds run: the scale-down intent's TTL, so one replica acts per round.
    pub every: Duration,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

/// Reads the unmet demand, exports it, and grows or shrinks the pools a controller manages.
pub(crate) async fn run_once(
    store: &dyn Store,
    round: &Round<'_>,
    idle: &IdleTracker,
) -> berth_store::Result<()> {
    let demand = store.unmet_demand().await?;
    for entry in by_label(&demand, round.pools) {
        export(&entry);
    }
    let Some(controller) = round.controller else {
        return Ok(());
    };
    let fleet = store.workers().await?;
    idle.observe(&fleet, round.now_ms);
    for pool in round.pools {
        if !controller.manages(&pool.attributes.pool) {
            continue;
        }
        // Every round, so that workers registered after the demand was met are forgotten.
        let coming = coming_workers(store, &pool.attributes.pool, &fleet, round).await?;
        let wanted = demand
            .iter()
            .find(|entry| entry.pool.as_ref() == Some(&pool.attributes.pool));
        match wanted {
            Some(entry) => grow(store, round, controller, pool, entry, (&fleet, coming)).await?,
            None => scale_down::shrink(store, round, controller, pool, &fleet, idle).await?,
        }
    }
    Ok(())
}

/// Asks the controller for the workers `entry` needs beyond the `recorded` ones (on their
/// way, or registered and settling) and those of `fleet` already up and empty (about to
/// take it), if this replica wins the intent.
async fn grow(
    store: &dyn Store,
    round: &Round<'_>,
    controller: &dyn PoolController,
    pool: &Pool,
    entry: &PoolDemand,
    (fleet, recorded): (&[Worker], HashSet<WorkerId>),
) -> berth_store::Result<()> {
    let name = &pool.attributes.pool;
    let needed = workers_needed(&entry.resources, &pool.worker_size);
    // A worker both recorded and empty is one worker: the union counts it once.
    let mut coming = recorded;
    coming.extend(empty_workers(fleet, name).map(|w| w.id.clone()));
    let coming = u32::try_from(coming.len()).unwrap_or(u32::MAX);
    let count = needed.saturating_sub(coming);
    if count == 0 {
        return Ok(());
    }
    let intent = format!(
        "{}: {count} workers for {} requests",
        round.replica, entry.requests
    );
    if !store.claim_provisioning(name, &intent, round.ttl).await? {
        return Ok(());
    }
    tracing::info!(pool = %name, count, coming, "provisioning workers");
    let started = match controller.add_workers(pool, entry, count).await {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(pool = %name, %error, "the pool controller failed to add workers");
            count_call(name, "add", "error");
            return Ok(());
        }
    };
    count_call(name, "add", "ok");
    metrics::counter!("berth_provisioned_workers_total", "pool" => name.to_string())
        .increment(started.len() as u64);
    record_started(store, name, &started, round).await
}

/// Records the workers a controller started as pending until `registration_timeout`.
async fn record_started(
    store: &dyn Store,
    pool: &PoolName,
    started: &[WorkerId],
    round: &Round<'_>,
) -> berth_store::Result<()> {
    let timeout = millis(round.registration_timeout);
    let pending: Vec<PendingWorker> = started
        .iter()
        .map(|worker| PendingWorker {
            worker: worker.clone(),
            started_ms: round.now_ms,
            expires_ms: round.now_ms.saturating_add(timeout),
        })
        .collect();
    store.record_provisioned(pool, &pending).await
}

/// The recorded workers of `pool` that still count toward its demand: those on their way,
/// and those registered less than the round's settling time ago (their expiry is brought
/// forward to that the first time they are seen registered). The others, registered and
/// settled or past their registration timeout (logged), are forgotten.
async fn coming_workers(
    store: &dyn Store,
    pool: &PoolName,
    fleet: &[Worker],
    round: &Round<'_>,
) -> berth_store::Result<HashSet<WorkerId>> {
    let registered: HashSet<&WorkerId> = fleet.iter().map(|w| &w.id).collect();
    let settled_ms = round.now_ms.saturating_add(millis(round.settling));
    let (mut gone, mut settling, mut coming) = (Vec::new(), Vec::new(), HashSet::new());
    for entry in store.provisioned(pool).await? {
        let up = registered.contains(&entry.worker);
        if entry.expires_ms <= round.now_ms {
            if !up {
                tracing::warn!(%pool, worker = %entry.worker, started_ms = entry.started_ms,
                    "a provisioned worker never registered; it no longer counts toward the demand");
            }
            gone.push(entry.worker);
            continue;
        }
        if up && entry.expires_ms > settled_ms {
            settling.push(PendingWorker {
                expires_ms: settled_ms,
                ..entry.clone()
            });
        }
        coming.insert(entry.worker);
    }
    store.record_provisioned(pool, &settling).await?;
    store.forget_provisioned(pool, &gone).await?;
    Ok(coming)
}

/// The available workers of `pool` that own nothing: their capacity is about to take the
/// waiting demand (a worker registered by hand, or one freed, before the backlog's next
/// promotion).
fn empty_workers<'a>(fleet: &'a [Worker], pool: &'a PoolName) -> impl Iterator<Item = &'a Worker> {
    fleet
        .iter()
        .filter(move |w| w.pool.pool == *pool && is_empty(w))
}

/// Available and owning nothing (all of its capacity free).
fn is_empty(worker: &Worker) -> bool {
    worker.status == WorkerStatus::Available && worker.free == worker.total
}

/// Counts one call of the controller by pool, action and result.
fn count_call(pool: &PoolName, action: &'static str, result: &'static str) {
    metrics::counter!("berth_provisioner_calls_total",
        "pool" => pool.to_string(), "action" => action, "result" => result)
    .increment(1);
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
