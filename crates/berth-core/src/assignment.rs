//! What a worker is told to run: one assignment per placed container.

use crate::{AttemptId, ContainerId, DeviceShare, Payload, Resources};
use serde::{Deserialize, Serialize};

/// One container delivered to its worker through the worker's assignment queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The delivery's id in the queue; acknowledge it when done.
    pub delivery: String,
    /// The container.
    pub container: ContainerId,
    /// The placement attempt it was reserved under.
    pub attempt: AttemptId,
    /// What it reserved.
    pub resources: Resources,
    /// The GPU device shares it reserved (empty without GPUs).
    #[serde(default)]
    pub devices: Vec<DeviceShare>,
    /// What to run.
    pub payload: Payload,
    /// The containers this one preempted on the worker (empty for most): the worker stops
    /// them, each with its stop grace, before it starts this one, since their capacity is
    /// now this one's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preempts: Vec<ContainerId>,
}
