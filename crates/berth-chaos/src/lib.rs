//! # berth-chaos
//!
//! A chaos harness for berth with real processes: a Redis (standalone, or a 6-node
//! cluster), three `berth server` replicas and eight `berth worker` processes (some with
//! GPUs), a load generator submitting through the HTTP API, and a seeded fault injector
//! that kills and restarts replicas, kills and replaces workers, freezes workers past
//! their heartbeat timeout, kills Redis primaries and pauses Redis clients. Meanwhile the
//! store's invariant check is sampled; at the end the fleet is healed and drained, and the
//! harness verifies that no accepted request was lost, none was placed twice and no
//! capacity leaked.
//!
//! ```sh
//! cargo run --release -p berth-chaos -- --seconds 60 --seed 7 [--cluster] [--json out.json]
//! ```
//!
//! ## Layout
//! - [`args`]: the command line.
//! - [`binary`]: finding (or building) the `berth` binary.
//! - [`processes`]: child processes in their own groups, killed when their guard drops.
//! - [`redis`]: the Redis backend and the Redis faults.
//! - [`fleet`]: the server replicas and worker slots.
//! - [`gateway`]: calls to any live replica, retried on unavailable ones.
//! - [`load`]: the seeded request stream and its submission.
//! - [`schedule`]: the seeded fault schedule (pure).
//! - [`faults`]: executing the schedule, and the recovery probes.
//! - [`checks`]: sampling the invariant check.
//! - [`observe`]: healing, draining and reading what the run left behind.
//! - [`verify`]: the verdict on it (pure).
//! - [`summary`]: the summary, for people and as JSON.
//! - [`run`]: the phases of a run.

pub mod args;
pub mod binary;
pub mod checks;
pub mod faults;
pub mod fleet;
pub mod gateway;
pub mod load;
pub mod observe;
pub mod processes;
pub mod redis;
pub mod run;
pub mod schedule;
pub mod summary;
pub mod verify;

/// Something the harness needs is missing: the run cannot start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The `berth` binary could not be found or built.
    #[error("the berth binary: {detail}")]
    Berth {
        /// What was tried and what went wrong.
        detail: String,
    },
    /// `redis-server` or `redis-cli` is not installed.
    #[error("{0}")]
    Redis(berth_localredis::LocalRedisError),
}

impl SetupError {
    /// The process exit code for this error: 2, like a usage error.
    pub fn exit_code(&self) -> i32 {
        2
    }
}
