//! The operator views: unmet demand and the invariant check.

use super::ResourcesView;
use berth_core::{PoolDemand, Violation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The unmet demand of one pool: requests waiting for room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolDemandView {
    /// The pool that would have to grow (`null`: no pool matches closely enough).
    pub pool: Option<String>,
    /// How many requests wait.
    pub requests: u64,
    /// Their resources, summed.
    pub resources: ResourcesView,
    /// Their GPUs by type (`any` for requests that accept any type).
    pub gpus_by_type: BTreeMap<String, u64>,
}

impl From<&PoolDemand> for PoolDemandView {
    fn from(d: &PoolDemand) -> PoolDemandView {
        PoolDemandView {
            pool: d.pool.as_ref().map(ToString::to_string),
            requests: d.requests,
            resources: d.resources.into(),
            gpus_by_type: d.gpus_by_type.clone(),
        }
    }
}

/// The unmet demand, per pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DemandView {
    /// One entry per pool with waiting requests, by pool name.
    pub pools: Vec<PoolDemandView>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViolationView {
    /// The worker, container or key concerned.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

impl From<&Violation> for ViolationView {
    fn from(v: &Violation) -> ViolationView {
        ViolationView {
            subject: v.subject.clone(),
            detail: v.detail.clone(),
        }
    }
}

/// The result of checking every invariant of the store (empty when all hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// What is broken.
    pub violations: Vec<ViolationView>,
}

/// The answer of the health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

/// Placements per second and their median latency over the last minutes, from the
/// container records' timestamps (`GET /v1/throughput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputView {
    /// The server's clock when the series was read (ms since the Unix epoch).
    pub now_ms: u64,
    /// One entry per second of the window, oldest first; the last is the second that ended
    /// at `now_ms`.
    pub seconds: Vec<ThroughputSecond>,
    /// How many container records were read to build the series.
    pub records_read: u64,
    /// True when the read stopped at its limit: placements of records not read are
    /// missing and the series undercounts (the embedded store gives the newest records by
    /// submission, Redis a random sample).
    pub truncated: bool,
}

/// One second of [`ThroughputView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputSecond {
    /// The start of the second (ms since the Unix epoch).
    pub at_ms: u64,
    /// How many containers were placed in it (by their `scheduled_at_ms`).
    pub placed: u64,
    /// The median time from submit to placement of those of them placed the first time,
    /// in ms (`null` when there were none).
    pub p50_latency_ms: Option<u64>,
}
