//! The provisioning role: the workers a provisioner said it started and that have not
//! registered yet. They count toward the capacity a pool is growing by, so that a burst of
//! demand, read again before the new workers are up, does not provision twice, on any
//! replica.

use crate::Result;
use async_trait::async_trait;
use berth_core::{PoolName, WorkerId};

/// A worker a provisioner said it started, waiting to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWorker {
    /// The id the worker will register under.
    pub worker: WorkerId,
    /// When the provisioner said it started (ms since the epoch).
    pub started_ms: u64,
    /// When to stop waiting for it (ms since the epoch): a worker not registered by then
    /// is presumed never to come and no longer counts.
    pub expires_ms: u64,
}

/// The started-but-not-registered workers of each pool. Each call is atomic on its own;
/// whether a pending worker has registered or expired is the caller's judgement (it holds
/// the fleet), and forgetting one twice is harmless.
#[async_trait]
pub trait Provisioning: Send + Sync {
    /// Records workers of `pool` that a provisioner started, replacing any recorded entry
    /// with the same id. Atomic.
    async fn record_provisioned(&self, pool: &PoolName, workers: &[PendingWorker]) -> Result<()>;

    /// The recorded workers of `pool`, sorted by id. An entry that does not read back is
    /// logged and left out.
    async fn provisioned(&self, pool: &PoolName) -> Result<Vec<PendingWorker>>;

    /// Forgets these recorded workers of `pool` (they registered, or expired); returns how
    /// many were recorded. Atomic.
    async fn forget_provisioned(&self, pool: &PoolName, workers: &[WorkerId]) -> Result<usize>;
}
