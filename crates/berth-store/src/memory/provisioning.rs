//! [`Provisioning`] in memory: one map per pool, under the store's lock.

use super::MemoryStore;
use crate::{PendingWorker, Provisioning, Result};
use async_trait::async_trait;
use berth_core::{PoolName, WorkerId};

#[async_trait]
impl Provisioning for MemoryStore {
    async fn record_provisioned(&self, pool: &PoolName, workers: &[PendingWorker]) -> Result<()> {
        self.with(1, |state| {
            let recorded = state.provisioned.entry(pool.clone()).or_default();
            for pending in workers {
                recorded.insert(pending.worker.clone(), pending.clone());
            }
        });
        Ok(())
    }

    async fn provisioned(&self, pool: &PoolName) -> Result<Vec<PendingWorker>> {
        Ok(self.with(1, |state| {
            state
                .provisioned
                .get(pool)
                .map(|recorded| recorded.values().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn forget_provisioned(&self, pool: &PoolName, workers: &[WorkerId]) -> Result<usize> {
        Ok(self.with(1, |state| {
            let Some(recorded) = state.provisioned.get_mut(pool) else {
                return 0;
            };
            let forgotten = workers
                .iter()
                .filter(|id| recorded.remove(*id).is_some())
                .count();
            // An empty map is dropped so pools that stopped growing leave nothing behind.
            if recorded.is_empty() {
                state.provisioned.remove(pool);
            }
            forgotten
        }))
    }
}
