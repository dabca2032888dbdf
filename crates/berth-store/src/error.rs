//! The store's error type.

use crate::ContainerState;
use berth_core::{ContainerId, WorkerId};

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The worker is not registered.
    #[error("worker {0} is not registered")]
    UnknownWorker(WorkerId),
    /// The container is not known.
    #[error("container {0} is not known")]
    UnknownContainer(ContainerId),
    /// A registration would shrink a worker below what is already reserved on it.
    #[error(
        "worker {worker}: the new total {total} is below the {reserved} already reserved; drain the worker first"
    )]
    BelowReserved {
        /// The worker.
        worker: WorkerId,
        /// The total asked for.
        total: String,
        /// What its containers hold.
        reserved: String,
    },
    /// A worker agent's call under an epoch that is not the worker's current one: the worker
    /// registered again since, or was declared lost. Nothing was written.
    #[error(
        "worker {worker}: epoch {presented} is stale (the worker is at epoch {current}: it registered again or was declared lost); register again and stop the containers the registration does not list"
    )]
    StaleEpoch {
        /// The worker.
        worker: WorkerId,
        /// The epoch the call carried.
        presented: u64,
        /// The worker's current epoch.
        current: u64,
    },
    /// A worker cannot be removed while it owns containers.
    #[error("worker {worker} still owns {count} containers; drain it and wait for them to end")]
    StillOwns {
        /// The worker.
        worker: WorkerId,
        /// How many containers it owns.
        count: usize,
    },
    /// A container record cannot make the asked move (states only move forward, and only
    /// the worker and attempt that hold a container may report on it).
    #[error("container {container}: cannot move from {from} ({why})")]
    InvalidTransition {
        /// The container.
        container: ContainerId,
        /// Its current state.
        from: ContainerState,
        /// What was refused and why.
        why: String,
    },
    /// An argument was malformed; nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A record read back from the store is corrupt.
    #[error("corrupt record {key}: field {field}: {problem}")]
    Corrupt {
        /// The key (or entity) read.
        key: String,
        /// The field that is missing or malformed.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A baseline strategy asked for the lock-based path of a store that has none.
    #[error(
        "this store has no lock-based commit path; use the batch-script strategy (the default)"
    )]
    NoWorkerLocks,
    /// Connecting to Redis failed (refused credentials, a missing password, a user without
    /// rights, a TLS handshake that failed, an unreachable server). `target` is redacted.
    #[error("connecting to Redis at {target}: {hint} ({cause})")]
    Connect {
        /// The URLs, passwords redacted.
        target: String,
        /// What was most likely wrong, and how to fix it.
        hint: String,
        /// The redis crate's error.
        cause: redis::RedisError,
    },
    /// A file named in the configuration (a password, a certificate) cannot be used.
    #[error("{what} {}: {problem}", path.display())]
    File {
        /// Which file this is, e.g. "the Redis password file".
        what: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value could not be encoded or decoded as JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
