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
