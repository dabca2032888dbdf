//! The result of batch planning: placements grouped by worker, and what could not be placed.

use crate::{ContainerId, DeviceShare, Pool, Resources, Worker, WorkerId};
use serde::{Deserialize, Serialize};

/// The fleet as the planner sees it: the workers, and the pools an autoscaler could grow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every known worker, in any status.
    pub workers: Vec<Worker>,
    /// The configured pools (may be empty). A request that fits no worker but would fit a
    /// new worker of a matching pool is "no room now", not "never fits".
    pub pools: Vec<Pool>,
}

/// Tuning knobs of the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// In a group of equally scored workers larger than this, the planner scores this many
    /// feasible candidates, starting at a per-request hashed offset, instead of every worker
    /// (as Nomad limits its candidates). Groups this size or smaller are scored exactly.
    pub max_candidates: usize,
    /// When the plan is made, in ms since the epoch: a request's fallback steps whose wait
    /// since its submission has passed by then are tried after its own choice
    /// ([`crate::fallback::effective`]). 0 (the default): no step is due.
    pub now_ms: u64,
    /// Prefer, among equally good workers by every rule above the pool's policy, one that
    /// holds the request's image ([`crate::scoring::WARM_BONUS`]). On by default.
    pub image_locality: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_candidates: 64,
            now_ms: 0,
            image_locality: true,
        }
    }
}

impl PlanOptions {
    /// The default options, planning at `now_ms`.
    pub fn at(now_ms: u64) -> PlanOptions {
        PlanOptions {
            now_ms,
            ..PlanOptions::default()
        }
    }
}

/// One container placed on one worker by a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Index of the request in the slice given to [`crate::plan()`].
    pub request: usize,
    /// The container's id.
    pub container: ContainerId,
    /// What it reserves.
    pub resources: Resources,
    /// The GPU devices it gets, and how much of each (empty without GPUs).
    #[serde(default)]
    pub devices: Vec<DeviceShare>,
}

/// Every placement a plan makes on one worker: the unit a store commits atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// The worker.
    pub worker: WorkerId,
    /// The worker's version in the snapshot the plan was made from.
    pub base_version: u64,
    /// The placements, in the order they were planned.
    pub placements: Vec<Placement>,
}

impl WorkerPlan {
    /// The sum of the placements' resources, or `None` on overflow.
    pub fn total(&self) -> Option<Resources> {
        self.placements
            .iter()
            .try_fold(Resources::ZERO, |sum, p| sum.checked_add(p.resources))
    }
}

/// Why a request was not placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum UnplacedReason {
    /// The request itself is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No worker and no pool matches its selector, GPU types and preemptibility.
    #[error("no pool matches the request's selector, GPU types and preemptibility")]
    NoMatchingPool,
    /// It is larger than any worker of the matching pools could ever hold.
    #[error("larger than any worker of the matching pools could ever hold")]
    NeverFits,
    /// Matching workers exist but none has room right now.
    #[error("no room right now on the matching workers")]
    NoRoomNow,
    /// Its tenant's quota is full now (the detail names the limit and the numbers).
    #[error("{0}")]
    OverQuota(String),
    /// It is above its tenant's quota on its own: it cannot run while the quota stands.
    #[error("{0}; it can never run within this quota: raise the quota or ask for less")]
    NeverWithinQuota(String),
}

impl UnplacedReason {
    /// True when waiting could help: capacity may be freed or added.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            UnplacedReason::NoRoomNow | UnplacedReason::OverQuota(_)
        )
    }
}

/// A request a plan could not place, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    /// Index of the request in the slice given to [`crate::plan()`].
    pub request: usize,
    /// The container's id.
    pub container: ContainerId,
    /// Why it was not placed.
    pub reason: UnplacedReason,
}

/// The outcome of planning one batch. A value: nothing has been reserved yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
pub struct Plan {
    /// Placements grouped by worker, in the order of the snapshot's workers.
    pub workers: Vec<WorkerPlan>,
    /// Requests not placed, in planning order.
    pub unplaced: Vec<Unplaced>,
}

impl Plan {
    /// The number of placements.
    pub fn placed(&self) -> usize {
        self.workers.iter().map(|w| w.placements.len()).sum()
    }
}
