//! Scale-down: a worker that has owned nothing for longer than its pool's idle timeout is
//! drained and handed to the controller to stop.
//!
//! Idle time is measured by each replica from what it sees: every provisioning round it
//! reads the fleet, and a worker that is available with all of its capacity free is idle
//! since the first round that saw it so, until a round sees it busy (or not available)
//! again. A replica that just started has seen nothing yet, so it waits a whole timeout
//! before it removes anything: the error is always on the side of keeping a worker. A
//! container that starts and ends between two rounds goes unseen; rounds are seconds apart
//! and idle timeouts minutes, so that only delays a removal by less than a timeout.

use super::{PoolController, Round, count_call, is_empty};
use berth_core::{Pool, PoolName, Worker, WorkerId, WorkerStatus};
use berth_store::Store;
use parking_lot::Mutex;
use std::collections::HashMap;

/// When this replica first saw each worker idle, in ms since the epoch.
#[derive(Debug, Default)]
pub struct IdleTracker {
    since: Mutex<HashMap<WorkerId, u64>>,
}

impl IdleTracker {
    /// Takes in one reading of the whole fleet at `now_ms`.
    pub fn observe(&self, fleet: &[Worker], now_ms: u64) {
        let mut since = self.since.lock();
        let idle: HashMap<WorkerId, u64> = fleet
            .iter()
            .filter(|worker| is_empty(worker))
            .map(|worker| {
                let first = since.get(&worker.id).copied().unwrap_or(now_ms);
                (worker.id.clone(), first)
            })
            .collect();
        *since = idle;
    }

    /// The workers of `pool` in `fleet` idle since `before_ms` or earlier.
    fn idle_before(&self, fleet: &[Worker], pool: &PoolName, before_ms: u64) -> Vec<WorkerId> {
        let since = self.since.lock();
        fleet
            .iter()
            .filter(|w| w.pool.pool == *pool)
            .filter(|w| since.get(&w.id).is_some_and(|first| *first <= before_ms))
            .map(|w| w.id.clone())
            .collect()
    }
}

/// Drains and removes the idle workers of `pool`, if it has an idle timeout, it has any,
/// and this replica wins the pool's scale-down intent.
pub(super) async fn shrink(
    store: &dyn Store,
    round: &Round<'_>,
    controller: &dyn PoolController,
    pool: &Pool,
    fleet: &[Worker],
    idle: &IdleTracker,
) -> berth_store::Result<()> {
    let Some(timeout) = controller.idle_timeout(&pool.attributes.pool) else {
        return Ok(());
    };
    let timeout_ms = crate::clock::millis(timeout);
    let cutoff = round.now_ms.saturating_sub(timeout_ms);
    let candidates = idle.idle_before(fleet, &pool.attributes.pool, cutoff);
    if candidates.is_empty() || !claim_scale_down(store, round, &pool.attributes.pool).await? {
        return Ok(());
    }
    let drained = drain_idle(store, &candidates).await?;
    if drained.is_empty() {
        return Ok(());
    }
    remove(store, controller, pool, &drained).await
}

/// Wins the pool's scale-down intent: the provisioning intent of `POOL:down`, so that it
/// never blocks (nor is blocked by) growing the pool. It lives one round.
async fn claim_scale_down(
    store: &dyn Store,
    round: &Round<'_>,
    pool: &PoolName,
) -> berth_store::Result<bool> {
    let Ok(key) = PoolName::new(format!("{pool}:down")) else {
        // A pool name at the length limit has no room for the suffix: never shrunk.
        tracing::warn!(%pool, "the pool's name is too long for a scale-down intent");
        return Ok(false);
    };
    let intent = format!("{}: remove idle workers", round.replica);
    store.claim_provisioning(&key, &intent, round.every).await
}

/// Sets each candidate draining (nothing new is placed on it: commits check the status in
/// their atomic step), then reads what it owns: one that got work since it was seen idle
/// is set available again and kept. Returns the drained workers that own nothing.
async fn drain_idle(
    store: &dyn Store,
    candidates: &[WorkerId],
) -> berth_store::Result<Vec<WorkerId>> {
    let mut drained = Vec::new();
    for worker in candidates {
        store
            .set_worker_status(worker, WorkerStatus::Draining)
            .await?;
        if store.owned(worker).await?.is_empty() {
            drained.push(worker.clone());
        } else {
            tracing::info!(%worker, "an idle worker got work meanwhile; it stays");
            store
                .set_worker_status(worker, WorkerStatus::Available)
                .await?;
        }
    }
    Ok(drained)
}

/// Asks the controller to stop the drained workers. If it fails they are set available
/// again, so they are not left taking nothing forever; the next round tries again.
async fn remove(
    store: &dyn Store,
    controller: &dyn PoolController,
    pool: &Pool,
    drained: &[WorkerId],
) -> berth_store::Result<()> {
    let name = &pool.attributes.pool;
    tracing::info!(pool = %name, workers = ?drained, "removing idle workers");
    match controller.remove_workers(pool, drained).await {
        Ok(()) => {
            count_call(name, "remove", "ok");
            metrics::counter!("berth_removed_workers_total", "pool" => name.to_string())
                .increment(drained.len() as u64);
            Ok(())
        }
        Err(error) => {
            count_call(name, "remove", "error");
            tracing::warn!(pool = %name, %error, "the pool controller failed to remove workers");
            for worker in drained {
                store
                    .set_worker_status(worker, WorkerStatus::Available)
                    .await?;
            }
            Ok(())
        }
    }
}
