//! Workers (the machines containers run on) and pools (groups of alike workers).

use crate::{GpuType, PoolName, Resources, RuntimeName, WorkerId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whether a worker takes new containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Up and taking containers.
    Available,
    /// Being provisioned; takes containers, but available workers are preferred.
    Pending,
    /// Finishing its containers; takes no new ones.
    Draining,
    /// Switched off by an operator; takes no new containers.
    Disabled,
    /// Missed its heartbeats for too long: presumed dead; its work was given back.
    Lost,
}

impl WorkerStatus {
    /// True when new containers may be placed on a worker in this status.
    pub fn accepts_work(self) -> bool {
        matches!(self, WorkerStatus::Available | WorkerStatus::Pending)
    }

    /// The status as stored and shown: `available`, `pending`, `draining`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Available => "available",
            WorkerStatus::Pending => "pending",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Disabled => "disabled",
            WorkerStatus::Lost => "lost",
        }
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a worker status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown worker status {0:?}; expected available, pending, draining, disabled or lost")]
pub struct WorkerStatusError(pub String);

impl FromStr for WorkerStatus {
    type Err = WorkerStatusError;
    fn from_str(s: &str) -> Result<Self, WorkerStatusError> {
        match s {
            "available" => Ok(WorkerStatus::Available),
            "pending" => Ok(WorkerStatus::Pending),
            "draining" => Ok(WorkerStatus::Draining),
            "disabled" => Ok(WorkerStatus::Disabled),
            "lost" => Ok(WorkerStatus::Lost),
            other => Err(WorkerStatusError(other.to_owned())),
        }
    }
}

/// How a pool chooses among equally good workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Prefer the worker with the most room left (worst fit): even load.
    #[default]
    Spread,
    /// Prefer the worker with the least room left after placing (best fit): fewer busy
    /// machines, so idle ones can be scaled down.
    Pack,
}

impl PlacementPolicy {
    /// The policy as stored and shown: `spread` or `pack`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::Spread => "spread",
            PlacementPolicy::Pack => "pack",
        }
    }
}

/// A string that is not a placement policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placement policy {0:?}; expected spread or pack")]
pub struct PlacementPolicyError(pub String);

impl FromStr for PlacementPolicy {
    type Err = PlacementPolicyError;
    fn from_str(s: &str) -> Result<Self, PlacementPolicyError> {
        match s {
            "spread" => Ok(PlacementPolicy::Spread),
            "pack" => Ok(PlacementPolicy::Pack),
            other => Err(PlacementPolicyError(other.to_owned())),
        }
    }
}

/// The attributes a worker inherits from its pool, copied onto the worker when it registers
/// so that planning needs nothing but the workers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAttributes {
    /// The pool's name.
    pub pool: PoolName,
    /// Higher-priority pools are preferred.
    pub priority: i32,
    /// Workers of this pool may be reclaimed; non-preemptible requests never go there.
    pub preemptible: bool,
    /// Only requests that name this pool in their selector may go there.
    pub requires_pool_selector: bool,
    /// How to choose among the pool's workers.
    pub policy: PlacementPolicy,
}

impl PoolAttributes {
    /// A pool without preferences: priority 0, not preemptible, open to every request,
    /// spreading its placements.
    pub fn plain(pool: PoolName) -> PoolAttributes {
        PoolAttributes {
            pool,
            priority: 0,
            preemptible: false,
            requires_pool_selector: false,
            policy: PlacementPolicy::Spread,
        }
    }
}

/// A worker machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// The worker's id.
    pub id: WorkerId,
    /// Its pool and the attributes inherited from it.
    pub pool: PoolAttributes,
    /// Whether it takes new containers.
    pub status: WorkerStatus,
    /// Everything the worker has.
    pub total: Resources,
    /// What is not reserved yet. Always at most `total`.
    pub free: Resources,
    /// The worker's one GPU type, if it has GPUs.
    pub gpu_type: Option<GpuType>,
    /// The container runtime it runs containers with, as it stated when it registered.
    pub runtime: RuntimeName,
    /// Bumped by every change of capacity or status; read by the lock-based commit paths.
    pub version: u64,
    /// The worker's lease: bumped by every registration and when the worker is declared
    /// lost. The agent's calls carry the epoch it registered under, and the store refuses
    /// those of an older one (fencing a worker that was presumed dead and came back).
    pub epoch: u64,
}

impl Worker {
    /// True when the worker has at least one GPU.
    pub fn has_gpus(&self) -> bool {
        self.gpu_type.is_some() && self.total.gpu_count > 0
    }
}

/// A pool: a named group of alike workers, and the size of worker an autoscaler would add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Name, priority, preemptibility, selector rule and policy.
    pub attributes: PoolAttributes,
    /// The GPU type of the pool's workers, if they have GPUs.
    pub gpu_type: Option<GpuType>,
    /// The capacity of one worker an autoscaler would add to this pool.
    pub worker_size: Resources,
}

/// What a worker says about itself when it (re-)registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// The worker's id.
    pub id: WorkerId,
    /// Its pool and the attributes it inherits from the pool.
    pub pool: PoolAttributes,
    /// The status to register with (usually available).
    pub status: WorkerStatus,
    /// Its whole capacity.
    pub total: Resources,
    /// Its GPU type, if it has GPUs.
    pub gpu_type: Option<GpuType>,
    /// The container runtime it runs containers with ([`RuntimeName::PROCESS`] for an agent
    /// that does not say).
    pub runtime: RuntimeName,
}

impl WorkerRegistration {
    /// The worker this registration describes, with the given free capacity, version and
    /// epoch (a store's bookkeeping).
    pub fn into_worker(self, free: Resources, version: u64, epoch: u64) -> Worker {
        Worker {
            id: self.id,
            pool: self.pool,
            status: self.status,
            total: self.total,
            free,
            gpu_type: self.gpu_type,
            runtime: self.runtime,
            version,
            epoch,
        }
    }
}
