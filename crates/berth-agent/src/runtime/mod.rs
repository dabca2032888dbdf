//! How a container is run: the [`ContainerRuntime`] contract and what it returns.
//!
//! The agent only talks to this contract. Two runtimes implement it: [`RuncRuntime`]
//! (OCI bundles under runc, with the booked limits enforced; the default where runc is
//! installed) and [`ProcessRuntime`] (a plain process group, for development). Both give a
//! container exactly its GPU devices ([`gpus`]).

pub mod gpus;
mod process;
pub mod runc;

pub use gpus::{AssignedGpu, AssignedGpus};
pub use process::{ProcessRuntime, ProcessRuntimeConfig};
pub use runc::{RuncConfig, RuncRuntime};

use async_trait::async_trait;
use berth_core::AttemptId;
use berth_core::{ContainerId, DeviceShare, Payload, Resources, RuntimeName, WorkerId};
use std::fmt;
use std::time::Duration;

/// The environment variable naming the container's id, set for every container.
pub const ENV_CONTAINER_ID: &str = "BERTH_CONTAINER_ID";
/// The environment variable naming the placement attempt the container runs under, set for
/// every container (with the container id, it names one run).
pub const ENV_ATTEMPT_ID: &str = "BERTH_ATTEMPT_ID";
/// The environment variable naming the worker that runs the container, set for every container.
pub const ENV_WORKER_ID: &str = "BERTH_WORKER_ID";
/// The environment variable a request sets to choose its own timeout, in whole seconds.
pub const ENV_TIMEOUT_SECS: &str = "BERTH_TIMEOUT_SECS";

/// Everything a runtime needs to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container.
    pub container: ContainerId,
    /// The placement attempt it runs under.
    pub attempt: AttemptId,
    /// The worker running it.
    pub worker: WorkerId,
    /// What it reserved on the worker.
    pub resources: Resources,
    /// What to run: image, command, environment. The GPU variables of [`gpus`] override
    /// the environment's values for the same names.
    pub payload: Payload,
    /// The GPU device shares it was assigned on this worker; none means it sees no GPU.
    /// The runtime resolves them against the worker's devices ([`AssignedGpus`]).
    pub devices: Vec<DeviceShare>,
    /// Its timeout, if its request set one; otherwise [`ENV_TIMEOUT_SECS`] in its
    /// environment, then the runtime's default, apply.
    pub timeout: Option<Duration>,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Its process exited on its own with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// Its process was ended by a signal the agent did not send.
    Signalled {
        /// The signal number.
        signal: i32,
    },
    /// It ran past its timeout and was killed.
    TimedOut {
        /// The timeout it had.
        after: Duration,
    },
    /// It was stopped through [`ContainerHandle::kill`].
    Killed,
    /// The kernel's OOM killer killed a process of the container: it used more memory than
    /// it booked. Reported as FAILED with the reason `oom_killed`, whatever its exit code.
    OomKilled,
    /// The runtime lost track of it (waiting for it failed).
    Lost {
        /// What went wrong.
        reason: String,
    },
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Exited { code } => write!(f, "exited with code {code}"),
            Exit::Signalled { signal } => write!(f, "killed by signal {signal}"),
            Exit::TimedOut { after } => write!(f, "timed out after {} s", after.as_secs_f64()),
            Exit::Killed => f.write_str("killed"),
            Exit::OomKilled => f.write_str("oom_killed"),
            Exit::Lost { reason } => write!(f, "lost track of the container: {reason}"),
        }
    }
}

/// Why a container could not be started. The message is what the container's record says.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The request has no command to run.
    #[error("the request has no command to run")]
    NoCommand,
    /// The command's program does not exist (or is not on `PATH`).
    #[error("command not found: {program}")]
    CommandNotFound {
        /// The program asked for.
        program: String,
    },
    /// The command's program may not be executed.
    #[error("permission denied running {program}")]
    PermissionDenied {
        /// The program asked for.
        program: String,
    },
    /// The timeout the request asked for is not a positive whole number of seconds.
    #[error("{ENV_TIMEOUT_SECS}={value:?} is not a positive whole number of seconds")]
    BadTimeout {
        /// The value given.
        value: String,
    },
    /// The container's working directory could not be prepared.
    #[error("cannot prepare the working directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The request's image could not be prepared (a bad reference, a broken image).
    #[error("image: {0}")]
    Image(String),
    /// The request's image could not be fetched from its registry (unreachable, refused
    /// credentials, not found, a digest that does not match). The agent tries again a few
    /// times ([`crate::PULL_ATTEMPTS`]) before it reports the container failed with this.
    #[error("image_pull: {0}")]
    ImagePull(String),
    /// The container runtime failed to create or start the container.
    #[error("the container runtime failed: {0}")]
    Runtime(String),
    /// The booking cannot be turned into limits (e.g. no memory booked).
    #[error("cannot enforce the booking {resources}: {why}")]
    Unenforceable {
        /// What was booked.
        resources: Resources,
        /// Why it cannot be enforced.
        why: String,
    },
    /// The assigned GPU device shares cannot be given on this worker (a device it does not
    /// have, one listed twice, a share out of range).
    #[error("cannot give the container its GPUs: {why}")]
    Gpus {
        /// What is wrong with the shares.
        why: String,
    },
    /// Starting the process failed for another reason.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program asked for.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A container a runtime started in an earlier life of the agent (before a crash or a
/// restart) and that is still there: running, or ended and not cleaned up yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The container.
    pub container: ContainerId,
    /// The attempt it was started under.
    pub attempt: AttemptId,
}

/// Starts containers. Implementations must be usable from many tasks at once.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// The runtime's name, which the worker states when it registers (the server shows it
    /// with the worker, e.g. in `berth workers`): [`RuntimeName::PROCESS`] for
    /// [`ProcessRuntime`], [`RuntimeName::RUNC`] for a runtime that runs OCI bundles with
    /// runc. The same on every call.
    fn name(&self) -> RuntimeName;

    /// Starts a container and returns its handle once it runs.
    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn ContainerHandle>, StartError>;

    /// The containers an earlier life of the agent left behind. A runtime whose containers
    /// cannot outlive the agent has none.
    async fn leftovers(&self) -> Vec<Leftover> {
        Vec::new()
    }

    /// Takes over a leftover the worker still owns: its handle waits for it, stops it and
    /// reads its output as if this life had started it.
    async fn adopt(&self, leftover: &Leftover) -> Result<Box<dyn ContainerHandle>, StartError> {
        Err(StartError::Runtime(format!(
            "this runtime cannot adopt container {}",
            leftover.container
        )))
    }

    /// Kills and removes a leftover the worker does not own any more.
    async fn discard(&self, _leftover: &Leftover) {}

    /// A lease on `image` (as a request names it) if it is ready here, so that a start
    /// fetches nothing: the agent then reports the container RUNNING at once rather than
    /// PULLING first, and holds the lease until the start has returned, so the image cannot
    /// be evicted in between. `None`: not here, to be pulled. A runtime without images has
    /// every image it can run.
    async fn lease_held(&self, _image: &str) -> Option<ImageLease> {
        Some(ImageLease::none())
    }

    /// Fetches and unpacks `image` ahead of a start, which then finds it ready while the
    /// returned lease lives (hold it until the start has returned). Failures are those of
    /// [`ContainerRuntime::start`] (a pull that fails is [`StartError::ImagePull`]). A
    /// runtime without images has nothing to do.
    async fn pull(&self, _image: &str) -> Result<ImageLease, StartError> {
        Ok(ImageLease::none())
    }

    /// The images it holds ready, as requests name them, most recently used first, at
    /// most [`berth_core::MAX_WORKER_IMAGES`]: the agent reports them when it registers and
    /// in its heartbeats, so that placement prefers this worker for them. A runtime without
    /// images holds none.
    fn held_images(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A runtime's hold on an image it pulled ahead of a start: while the lease lives, the
/// runtime's cache keeps the image, so that the start finds it rather than pull it again
/// (another container's pull in between may otherwise evict it). Opaque to the agent,
/// which keeps it until the start has returned.
pub struct ImageLease(Option<Box<dyn std::any::Any + Send + Sync>>);

impl ImageLease {
    /// A lease that holds nothing: for a runtime whose images are never evicted.
    pub fn none() -> ImageLease {
        ImageLease(None)
    }

    /// A lease that keeps `hold` (what keeps the image in the runtime's cache) alive.
    pub fn holding(hold: impl std::any::Any + Send + Sync) -> ImageLease {
        ImageLease(Some(Box::new(hold)))
    }
}

impl fmt::Debug for ImageLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ImageLease(held)"
        } else {
            "ImageLease(none)"
        })
    }
}

/// The timeout of the container `spec` describes: the spec's, else [`ENV_TIMEOUT_SECS`]
/// from its environment, else `default`.
pub(crate) fn timeout_for(spec: &ContainerSpec, default: Duration) -> Result<Duration, StartError> {
    if let Some(timeout) = spec.timeout {
        return Ok(timeout);
    }
    match spec.payload.env.get(ENV_TIMEOUT_SECS) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(StartError::BadTimeout {
                value: value.clone(),
            }),
        },
    }
}

/// One started container. Dropping a handle whose container still runs kills it.
#[async_trait]
pub trait ContainerHandle: Send {
    /// Waits for the container to end, on its own or by its timeout, and cleans up after
    /// it. Cancel-safe: dropping the future and calling `wait` or `kill` again is fine.
    /// Once it has ended, every call returns the same [`Exit`].
    async fn wait(&mut self) -> Exit;

    /// Stops the container (and everything it started), waits for it to end and cleans up
    /// after it. A container that had already ended keeps its own [`Exit`].
    async fn kill(&mut self) -> Exit;

    /// The kept lines of its output whose sequence number is `seq` or above (stdout and
    /// stderr interleaved, oldest first), and the sequence number to ask from next time.
    /// See [`crate::LogRing::since`].
    fn logs_since(&self, seq: u64) -> (Vec<String>, u64);

    /// The last lines of its output so far, oldest first.
    fn logs(&self) -> Vec<String> {
        self.logs_since(0).0
    }
}
