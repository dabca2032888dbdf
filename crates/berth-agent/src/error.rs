//! The agent's error type. Only what stops the agent from starting is an error: once it
//! runs, trouble with the server or a container is logged and retried, never returned.

use crate::control::ControlError;
use berth_core::WorkerId;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration value is invalid.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// The host's CPUs and memory could not be read.
    #[error("cannot detect the host's capacity: {0}; configure CPU and memory instead")]
    Detect(String),
    /// The worker's GPUs could not be detected (`--gpu auto`).
    #[error("cannot detect the worker's GPUs: {0}")]
    GpuDetect(crate::gpu::GpuDetectError),
    /// GPU detection ran but found no healthy GPU, though the worker was told to have some.
    #[error(
        "{program} found no healthy GPU ({unhealthy} unhealthy); fix the GPUs, declare them as TYPE:COUNT, or run the worker without GPUs"
    )]
    NoGpus {
        /// The program run.
        program: String,
        /// How many devices it listed, all unhealthy.
        unhealthy: usize,
    },
    /// The work directory could not be created or used.
    #[error("cannot use the work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another agent runs in the work directory (each worker needs its own).
    #[error(
        "the work directory {path} is in use by another agent ({}); give each worker its own --work-dir, or stop the other one first",
        holder.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}"))
    )]
    WorkDirInUse {
        /// The directory.
        path: String,
        /// The pid of the agent holding it, if it could be read.
        holder: Option<u32>,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for {url}: {message}")]
    Client {
        /// The server URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The container runtime could not be set up.
    #[error("cannot set up the {runtime} runtime: {message}")]
    Runtime {
        /// The runtime.
        runtime: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused the worker's registration (not a transient failure).
    #[error("the server refused to register worker {worker}: {source}")]
    RegistrationRefused {
        /// The worker.
        worker: WorkerId,
        /// What the server said.
        source: ControlError,
    },
}

// By hand, not `#[from]`: the message already holds the cause, and a source would make
// error reports (anyhow's chain) say it twice.
impl From<crate::gpu::GpuDetectError> for AgentError {
    fn from(err: crate::gpu::GpuDetectError) -> AgentError {
        AgentError::GpuDetect(err)
    }
}
