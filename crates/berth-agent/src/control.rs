//! What the agent needs from the server: the [`Control`] contract, its values and its
//! errors. [`crate::HttpControl`] implements it over the server's HTTP API; tests and an
//! in-process server may implement it directly.

use async_trait::async_trait;
use berth_core::AttemptId;
use berth_core::{
    ContainerId, DeviceShare, GpuDevice, GpuType, Payload, PoolName, Resources, RuntimeName,
    WorkerId,
};
use std::time::Duration;

/// What the worker registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The worker's id.
    pub worker: WorkerId,
    /// Its pool.
    pub pool: PoolName,
    /// Its whole capacity.
    pub total: Resources,
    /// Its GPU type, if it has GPUs.
    pub gpu_type: Option<GpuType>,
    /// Its GPU devices, one per GPU of `total` (unhealthy ones too: the scheduler does not
    /// book those).
    pub devices: Vec<GpuDevice>,
    /// The container runtime it runs containers with ([`crate::ContainerRuntime::name`]).
    pub runtime: RuntimeName,
    /// The images its runtime holds already ([`crate::ContainerRuntime::held_images`]), so
    /// that placement prefers it for them from its first plan (a restarted worker keeps its
    /// cache); heartbeats report later changes.
    pub images: Vec<String>,
}

/// What a registration grants: the epoch the worker's calls carry from now on, and the
/// containers it owns (the only ones it may keep running).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// The worker's epoch; calls under an older one are refused ([`ControlError::StaleEpoch`]).
    pub epoch: u64,
    /// The containers the worker owns, with the attempts they are reserved under.
    pub owned: Vec<(ContainerId, AttemptId)>,
    /// The owned containers that hold a share of a device the registration reported
    /// unhealthy.
    pub on_unhealthy_gpus: Vec<ContainerId>,
}

/// One assignment delivered to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery's id; acknowledge it once the container is reported.
    pub id: String,
    /// The container.
    pub container: ContainerId,
    /// The placement attempt it was reserved under.
    pub attempt: AttemptId,
    /// What it reserved.
    pub resources: Resources,
    /// The GPU device shares it reserved: it gets exactly these devices.
    pub devices: Vec<DeviceShare>,
    /// What to run.
    pub payload: Payload,
    /// Kill it once it has run this long, if its request set a timeout.
    pub timeout: Option<Duration>,
    /// The containers it preempted here: they are stopped before it starts.
    pub preempts: Vec<ContainerId>,
}

/// The server's answer to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Running containers whose cancellation was asked for: stop them.
    pub cancel: Vec<ContainerId>,
    /// Running containers the worker does not own any more: stop them at once.
    pub stop: Vec<ContainerId>,
    /// The server declared the worker lost after it missed heartbeats and gave its
    /// containers back: stop them all and register again.
    pub lost: bool,
}

/// The state a worker reports for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportedState {
    /// Its image is being fetched; it starts next (reported before the pull).
    Pulling,
    /// It is about to start (reported before starting it), or runs on (reported again to
    /// send new output lines).
    Running,
    /// It ended with an exit code.
    Exited {
        /// The exit code.
        exit_code: i32,
    },
    /// It could not start, or was stopped.
    Failed {
        /// Why.
        reason: String,
    },
}

impl ReportedState {
    /// True for the states that end the container (and release its capacity).
    pub fn is_final(&self) -> bool {
        !matches!(self, ReportedState::Pulling | ReportedState::Running)
    }
}

/// One status report for a container, by the worker and attempt that hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The worker.
    pub worker: WorkerId,
    /// The attempt it runs under.
    pub attempt: AttemptId,
    /// The epoch the worker registered under.
    pub epoch: u64,
    /// The new state.
    pub state: ReportedState,
    /// Output lines the server has not been sent yet (it appends them to the container's
    /// log).
    pub logs: Vec<String>,
}

/// Why a call to the server did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The server refused because the state moved on (HTTP 409): the container is not held
    /// by this worker and attempt any more, or the worker still owns containers.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The call carried a stale epoch (HTTP 409 `stale_epoch`): the worker registered again,
    /// or the server declared it lost. Register again.
    #[error("stale epoch: {0}")]
    StaleEpoch(String),
    /// The worker or container is unknown to the server (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The server refused the call itself (another 4xx); sending it again will not help.
    #[error("refused with status {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// The server could not be reached, failed (5xx), or answered something unreadable;
    /// the call may be retried.
    #[error("server unavailable: {0}")]
    Unavailable(String),
}

impl ControlError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ControlError::Unavailable(_))
    }
}

/// The worker-facing API of the server.
#[async_trait]
pub trait Control: Send + Sync {
    /// Registers (or re-registers) the worker with its capacity; starts a new epoch.
    async fn register(&self, registration: &Registration) -> Result<Lease, ControlError>;

    /// Tells the server which containers run here and, with `images`, which images the
    /// worker now holds; learns which containers to cancel or stop.
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        epoch: u64,
        running: &[ContainerId],
        images: Option<&[String]>,
    ) -> Result<HeartbeatReply, ControlError>;

    /// Waits up to `wait` for at most `max` new or redelivered assignments.
    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: u64,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ControlError>;

    /// Acknowledges a delivery so it is not delivered again.
    async fn ack(&self, worker: &WorkerId, epoch: u64, delivery: &str) -> Result<(), ControlError>;

    /// Gives back a reservation the worker will not run because the record is held by
    /// another worker or attempt; true if capacity was given back (idempotent).
    async fn release(
        &self,
        worker: &WorkerId,
        epoch: u64,
        container: &ContainerId,
        attempt: &AttemptId,
    ) -> Result<bool, ControlError>;

    /// Reports a container's state. [`ControlError::Conflict`] means the record is not
    /// held by this worker and attempt any more.
    async fn report(
        &self,
        container: &ContainerId,
        report: &StatusReport,
    ) -> Result<(), ControlError>;

    /// Removes the worker. [`ControlError::Conflict`] while it still owns containers.
    async fn deregister(&self, worker: &WorkerId) -> Result<(), ControlError>;
}
