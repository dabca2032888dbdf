//! The worker protocol's bodies: heartbeats, assignments, releases and status reports.

use super::ResourcesView;
use crate::error::ApiError;
use crate::spec::{TIMEOUT_ENV, timeout_secs};
use berth_core::{Assignment, AttemptId, DeviceShare, SecretEnv};
use berth_core::{ContainerId, WorkerId, WorkerStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A worker's heartbeat: it is alive, and runs these containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The epoch the worker registered under (from its registration's `worker.epoch`).
    pub epoch: u64,
    /// The containers it runs (at most 100,000), to learn which of them to stop.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub running: Vec<ContainerId>,
    /// The images it holds unpacked, as requests name them, most recently used first (at
    /// most 64, each 1 to 512 bytes without whitespace): placement prefers a worker holding
    /// a request's image. Absent: unchanged since its last report (a new registration
    /// starts with those it lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub images: Option<Vec<String>>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The running containers to stop: a cancellation was asked for. Stop each and report
    /// it `failed` with reason `cancelled`.
    #[schema(value_type = Vec<String>)]
    pub cancel: Vec<ContainerId>,
    /// Running containers this worker does not own any more (they were given back after
    /// it was presumed dead, or the store lost them in a failover): stop them at once. They
    /// hold no capacity here, so running them on would overbook the worker.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub stop: Vec<ContainerId>,
    /// The worker's status. `lost` means the server gave its containers back after it
    /// missed its heartbeats: stop them and register again.
    #[schema(value_type = String, example = "available")]
    pub status: WorkerStatus,
}

/// One container delivered to a worker. Acknowledge the delivery once it is taken care of,
/// or it is delivered again after the redelivery timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// The delivery's id, to acknowledge.
    pub delivery: String,
    /// The container.
    #[schema(value_type = String)]
    pub container: ContainerId,
    /// The placement attempt; report status with it.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
    /// What it reserved.
    pub resources: ResourcesView,
    /// The GPU device shares it reserved (empty without GPUs): give it exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceShareView>,
    /// Its image, if any.
    pub image: Option<String>,
    /// Its command.
    pub command: Vec<String>,
    /// Its environment (without the reserved timeout variable).
    pub env: BTreeMap<String, String>,
    /// Its secret environment variables: set them like `env`, and never log them.
    #[serde(default, skip_serializing_if = "SecretEnv::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secret_env: SecretEnv,
    /// Kill it after this many seconds, if set.
    pub timeout_secs: Option<u64>,
    /// The containers it preempted on this worker (empty for most): stop each of them
    /// (SIGTERM, then SIGKILL after the stop grace) and start this one only once they have
    /// stopped, since their capacity is now this one's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub preempts: Vec<ContainerId>,
}

impl From<&Assignment> for AssignmentView {
    fn from(a: &Assignment) -> AssignmentView {
        let mut env = a.payload.env.clone();
        env.remove(TIMEOUT_ENV);
        AssignmentView {
            delivery: a.delivery.clone(),
            container: a.container.clone(),
            attempt: a.attempt.clone(),
            resources: a.resources.into(),
            devices: a.devices.iter().map(DeviceShareView::from).collect(),
            image: a.payload.image.clone(),
            command: a.payload.command.clone(),
            env,
            secret_env: a.payload.secret_env.clone(),
            timeout_secs: timeout_secs(&a.payload),
            preempts: a.preempts.clone(),
        }
    }
}

/// A share of one GPU device: `milli` milli-GPUs (1000: the whole device) of device
/// `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceShareView {
    /// The device's index on the worker.
    pub index: u32,
    /// The share, 1 to 1000 milli-GPUs.
    #[schema(minimum = 1, maximum = 1000)]
    pub milli: u32,
}

impl From<&DeviceShare> for DeviceShareView {
    fn from(share: &DeviceShare) -> DeviceShareView {
        DeviceShareView {
            index: share.index,
            milli: share.milli,
        }
    }
}

/// A worker's assignments (empty when none arrived within the wait).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentList {
    /// The assignments, in commit order.
    pub assignments: Vec<AssignmentView>,
}

/// A worker gives back a reservation it will not run (one whose record names another
/// worker or attempt: left by a scheduler replica that died between commit and settle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The epoch the worker registered under.
    pub epoch: u64,
    /// The container.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", min_length = 1, max_length = 128)]
    pub container: ContainerId,
    /// The attempt it was reserved under.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResponse {
    /// True when capacity was given back; false when the worker did not own the container
    /// under that attempt (nothing changed).
    pub released: bool,
}

/// What a worker reports about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedState {
    /// It is fetching the container's image before it starts it (a cold start). Optional:
    /// a worker that holds the image reports `running` straight away.
    Pulling,
    /// It started.
    Running,
    /// It ended with an exit code.
    Exited,
    /// It could not be started, was killed (timeout, cancellation) or crashed.
    Failed,
}

/// A worker's report on one container, by the worker and attempt that hold it. `exited` and
/// `failed` give the container's capacity back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// The reporting worker.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", min_length = 1, max_length = 128)]
    pub worker: WorkerId,
    /// The attempt from the assignment.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
    /// The epoch the worker registered under.
    pub epoch: u64,
    /// What happened.
    pub state: ReportedState,
    /// The exit code; required with `exited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why, with `failed` (e.g. `cancelled`, `timed out after 60 s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Output lines to append to the container's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// The longest attempt id accepted, in bytes.
pub const MAX_ATTEMPT_LEN: usize = 64;

/// Checks an attempt id from outside: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn check_attempt(field: &str, attempt: &AttemptId) -> Result<(), ApiError> {
    let s = attempt.0.as_str();
    let ok = !s.is_empty()
        && s.len() <= MAX_ATTEMPT_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("an attempt id is 1 to {MAX_ATTEMPT_LEN} ASCII letters, digits, '-' or '_'"),
        ))
    }
}
