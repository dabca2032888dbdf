//! # berth-agent
//!
//! The worker agent behind `berth worker`: it registers the worker's capacity with the
//! server, heartbeats, receives its assignments by long-poll (never a busy poll), runs each
//! container, reports RUNNING then EXITED or FAILED with the last lines of output, and
//! drains on shutdown.
//!
//! ## Layout
//! - [`agent`]: the [`Agent`] loop (register, heartbeat, long-poll, supervise, drain,
//!   deregister) and the shutdown protocol.
//! - [`control`]: the [`Control`] contract the agent needs from the server, its values
//!   and [`ControlError`].
//! - [`http`]: [`HttpControl`], the contract over the server's HTTP API
//!   ([`berth_api::Client`]).
//! - [`runtime`]: the [`ContainerRuntime`] contract and [`ProcessRuntime`], which runs a
//!   command as a process group with a timeout.
//! - [`logs`]: the ring of last output lines.
//! - [`config`]: [`AgentConfig`] and host capacity detection.
//! - [`retry`]: the backoff used for every call to the server.
//! - [`metrics`]: the metric names.

pub mod agent;
pub mod config;
pub mod control;
mod error;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod retry;
pub mod runtime;

pub use agent::Agent;
pub use config::{AgentConfig, CapacityConfig, detect_host};
pub use control::{
    Control, ControlError, Delivery, HeartbeatReply, Lease, Registration, ReportedState,
    StatusReport,
};
pub use error::AgentError;
pub use http::HttpControl;
pub use logs::LogRing;
pub use retry::RetryPolicy;
pub use runtime::{
    ContainerHandle, ContainerRuntime, ContainerSpec, Exit, ProcessRuntime, ProcessRuntimeConfig,
    StartError,
};

use std::sync::Arc;
/// The shutdown signal [`run_agent`] and [`Agent::run`] take (re-exported from tokio-util).
pub use tokio_util::sync::CancellationToken;

/// Runs a worker agent against the server at [`AgentConfig::server_url`] with the
/// [`ProcessRuntime`], until `shutdown` fires; then drains (see [`agent`]) and
/// deregisters. Fails only on an invalid configuration, a work directory that cannot be
/// created, or a registration the server refuses; an unavailable server is waited for.
pub async fn run_agent(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let client = berth_api::Client::new(&config.server_url)
        .map_err(|err| AgentError::Client {
            url: config.server_url.clone(),
            message: err.to_string(),
        })?
        .with_timeout(config.call_timeout);
    let control = Arc::new(HttpControl::new(client));
    let runtime = Arc::new(ProcessRuntime::new(config.process_runtime()));
    Agent::new(config, control, runtime)?.run(shutdown).await
}
