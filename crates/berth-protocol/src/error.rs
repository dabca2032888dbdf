//! [`ProtocolError`]: why a protocol operation was refused or failed.

use berth_core::{ContainerId, UnplacedReason, WorkerId};
use berth_store::{AttemptId, ContainerState, StoreError};

/// Why a protocol operation was refused or failed. Nothing was changed unless the variant
/// says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The worker is not registered.
    #[error("worker {0} is not registered")]
    UnknownWorker(WorkerId),
    /// The container is not known.
    #[error("container {0} is not known")]
    UnknownContainer(ContainerId),
    /// The worker presented an epoch it no longer holds (it registered again or was
    /// declared lost): it must register again.
    #[error("{}", stale_text(.worker, *.presented, *.current))]
    StaleEpoch {
        /// The worker.
        worker: WorkerId,
        /// The epoch it presented.
        presented: u64,
        /// The epoch it is at.
        current: u64,
    },
    /// The worker and attempt do not hold the container: the worker must not run it, and
    /// should release its reservation instead.
    #[error(
        "worker {worker} attempt {attempt} does not hold container {container} (it is {state}, held by {}); release the reservation instead",
        holder_text(.holder)
    )]
    NotHolder {
        /// The container.
        container: ContainerId,
        /// Its state.
        state: ContainerState,
        /// The worker that asked.
        worker: WorkerId,
        /// The attempt it asked under.
        attempt: AttemptId,
        /// Who holds it, per its record (boxed: the error stays small).
        holder: Option<Box<(WorkerId, AttemptId)>>,
    },
    /// The container has ended (or was cancelled) and cannot start: the worker must stop it.
    #[error(
        "container {container} is {state} and cannot run any more{}; stop it",
        .reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    CannotRun {
        /// The container.
        container: ContainerId,
        /// Its state.
        state: ContainerState,
        /// Why it ended, if recorded.
        reason: Option<String>,
    },
    /// A release of a container whose live record names this worker and attempt: the
    /// worker must report its status instead.
    #[error(
        "container {container} is {state} and held by this worker and attempt; report its status (exited or failed) instead of releasing it"
    )]
    StillHeld {
        /// The container.
        container: ContainerId,
        /// Its state.
        state: ContainerState,
    },
    /// An argument is malformed or out of range.
    #[error("{message}")]
    InvalidArgument {
        /// The argument at fault, if one is named.
        field: Option<String>,
        /// What is wrong with it.
        message: String,
    },
    /// A submitted request that no worker or pool could ever run; nothing was written.
    #[error("container {container} can never be placed: {reason}; nothing was written")]
    Unplaceable {
        /// Its position in the submitted requests.
        index: usize,
        /// The container.
        container: ContainerId,
        /// Why.
        reason: UnplacedReason,
    },
    /// The store answered something that cannot be (e.g. fewer outcomes than requests).
    #[error("{0}")]
    Inconsistent(String),
    /// Any other store failure.
    #[error(transparent)]
    Store(StoreError),
}

impl ProtocolError {
    /// An [`ProtocolError::InvalidArgument`] about `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> ProtocolError {
        ProtocolError::InvalidArgument {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ProtocolError {
    fn from(error: StoreError) -> ProtocolError {
        match error {
            StoreError::UnknownWorker(worker) => ProtocolError::UnknownWorker(worker),
            StoreError::UnknownContainer(container) => ProtocolError::UnknownContainer(container),
            StoreError::StaleEpoch {
                worker,
                presented,
                current,
            } => ProtocolError::StaleEpoch {
                worker,
                presented,
                current,
            },
            StoreError::InvalidArgument(message) => ProtocolError::InvalidArgument {
                field: None,
                message,
            },
            other => ProtocolError::Store(other),
        }
    }
}

fn holder_text(holder: &Option<Box<(WorkerId, AttemptId)>>) -> String {
    match holder.as_deref() {
        Some((worker, attempt)) => format!("worker {worker} attempt {attempt}"),
        None => "no worker".to_owned(),
    }
}

/// The store's words for a stale epoch, so both say the same.
fn stale_text(worker: &WorkerId, presented: u64, current: u64) -> String {
    let worker = worker.clone();
    StoreError::StaleEpoch {
        worker,
        presented,
        current,
    }
    .to_string()
}
