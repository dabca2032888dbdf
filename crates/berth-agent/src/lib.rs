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
//! - [`runtime`]: the [`ContainerRuntime`] contract, [`RuncRuntime`] (OCI bundles under runc,
//!   limits enforced) and [`ProcessRuntime`], which runs a
//!   command as a process group with a timeout.
//! - [`logs`]: the ring of last output lines.
//! - [`config`]: [`AgentConfig`] and host capacity detection.
//! - [`gpu`]: the worker's GPU devices, detected with `nvidia-smi`.
//! - [`retry`]: the backoff used for every call to the server.
//! - [`metrics`]: the metric names.

pub mod agent;
pub mod config;
pub mod control;
mod error;
pub mod gpu;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod retry;
pub mod runtime;

pub use agent::{Agent, PULL_ATTEMPTS};
pub use config::{
    AgentConfig, CapacityConfig, GpuConfig, ResolvedCapacity, RuntimeChoice, detect_host,
};
pub use control::{
    Control, ControlError, Delivery, HeartbeatReply, Lease, Registration, ReportedState,
    StatusReport,
};
pub use error::AgentError;
pub use http::HttpControl;
pub use logs::LogRing;
pub use retry::RetryPolicy;
pub use runtime::{
    ContainerHandle, ContainerRuntime, ContainerSpec, Exit, ImageLease, Leftover, ProcessRuntime,
    ProcessRuntimeConfig, RuncConfig, RuncRuntime, StartError,
};

use berth_core::GpuDevice;
use std::sync::Arc;
/// The shutdown signal [`run_agent`] and [`Agent::run`] take (re-exported from tokio-util).
pub use tokio_util::sync::CancellationToken;

/// Runs a worker agent against the server at [`AgentConfig::server_url`] with the runtime
/// [`AgentConfig::runtime`] chooses ([`runtime_for`]), until `shutdown` fires; then drains
/// (see [`agent`]) and deregisters. Fails only on an invalid configuration, a runtime that
/// cannot be set up, a work directory that cannot be created, or a registration the server
/// refuses; an unavailable server is waited for.
pub async fn run_agent(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let client = berth_api::Client::new(&config.server_url)
        .map_err(|err| AgentError::Client {
            url: config.server_url.clone(),
            message: err.to_string(),
        })?
        .with_timeout(config.call_timeout);
    let credential_file = config.credential_file();
    let control = Arc::new(HttpControl::joining(
        client,
        config.join_token.as_ref().map(berth_core::Token::expose),
        credential_file,
    ));
    config.validate()?;
    // Resolved once: the runtime and the registration must see the same devices, and
    // detection runs nvidia-smi.
    let capacity = config.capacity.resolve()?;
    let runtime = runtime_for(&config, &capacity.gpus).await?;
    Agent::with_capacity(config, capacity, control, runtime)?
        .run(shutdown)
        .await
}

/// The runtime `config` chooses, given the worker's GPU devices (from
/// [`CapacityConfig::resolve`]): runc (set up and checked), or the process runtime; with
/// [`RuntimeChoice::Auto`], runc if it can be run here, else the process runtime with a
/// warning that nothing is enforced.
pub async fn runtime_for(
    config: &AgentConfig,
    gpus: &[GpuDevice],
) -> Result<Arc<dyn ContainerRuntime>, AgentError> {
    let use_runc = match config.runtime {
        RuntimeChoice::Runc => true,
        RuntimeChoice::Process => false,
        RuntimeChoice::Auto => {
            let found = RuncRuntime::available(&config.runc).await;
            if !found {
                tracing::warn!(runc = %config.runc.display(),
                    "runc not found: containers run as plain processes, with no limits enforced (install runc)");
            }
            found
        }
    };
    if !use_runc {
        let mut process = config.process_runtime();
        process.gpus = gpus.to_vec();
        return Ok(Arc::new(ProcessRuntime::new(process)));
    }
    let mut runc = config.runc_runtime();
    runc.gpus = gpus.to_vec();
    let runtime = RuncRuntime::new(runc)
        .await
        .map_err(|err| AgentError::Runtime {
            runtime: "runc".into(),
            message: err.to_string(),
        })?;
    Ok(Arc::new(runtime))
}
