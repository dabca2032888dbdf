//! The agent's metrics, recorded through the `metrics` facade (a no-op until the binary
//! installs a recorder).
//!
//! | name | kind | what |
//! |---|---|---|
//! | `berth_agent_containers_started_total` | counter | containers whose process started |
//! | `berth_agent_containers_exited_total` | counter | containers reported EXITED |
//! | `berth_agent_containers_failed_total` | counter | containers reported FAILED (could not start, timed out, cancelled, killed) |
//! | `berth_agent_containers_running` | gauge | containers whose process runs now |
//! | `berth_agent_stale_deliveries_total` | counter | deliveries not run because the server said the record moved on (409) |
//! | `berth_agent_server_errors_total` | counter | calls to the server that failed and were retried |
//! | `berth_agent_reregistrations_total` | counter | registrations after a stale epoch, a lost status or an unknown worker |
//! | `berth_agent_image_pull_retries_total` | counter | container starts tried again because the image could not be pulled |
//! | `berth_agent_runc_start_seconds` | histogram | runc create and start of one container (shim spawned to pid file written) |
//! | `berth_agent_leftovers_total` | counter | containers an earlier life of the agent left, by `action` (`adopted`, `discarded`) |
//! | `berth_agent_gpus_unhealthy` | gauge | the worker's GPU devices found unhealthy by the latest check |
//! | `berth_agent_gpu_check_failures_total` | counter | GPU health checks that could not run (`nvidia-smi` missing, failing or hanging) |

/// Containers whose process started.
pub const STARTED: &str = "berth_agent_containers_started_total";
/// Containers reported EXITED.
pub const EXITED: &str = "berth_agent_containers_exited_total";
/// Containers reported FAILED.
pub const FAILED: &str = "berth_agent_containers_failed_total";
/// Containers whose process runs now.
pub const RUNNING: &str = "berth_agent_containers_running";
/// Deliveries not run because the record is held by another worker or attempt.
pub const STALE: &str = "berth_agent_stale_deliveries_total";
/// Calls to the server that failed and were retried.
pub const SERVER_ERRORS: &str = "berth_agent_server_errors_total";
/// Registrations after a stale epoch, a lost status or an unknown worker.
pub const REREGISTRATIONS: &str = "berth_agent_reregistrations_total";
/// Container starts tried again because the image could not be pulled.
pub const PULL_RETRIES: &str = "berth_agent_image_pull_retries_total";

/// runc create and start of one container, in seconds.
pub const RUNC_START_SECONDS: &str = "berth_agent_runc_start_seconds";
/// Containers an earlier life of the agent left, by `action`.
pub const LEFTOVERS: &str = "berth_agent_leftovers_total";

/// The worker's GPU devices found unhealthy by the latest check.
pub const GPUS_UNHEALTHY: &str = "berth_agent_gpus_unhealthy";
/// GPU health checks that could not run.
pub const GPU_CHECK_FAILURES: &str = "berth_agent_gpu_check_failures_total";

pub(crate) fn gpus_unhealthy(count: usize) {
    metrics::gauge!(GPUS_UNHEALTHY).set(count as f64);
}

pub(crate) fn gpu_check_failed() {
    metrics::counter!(GPU_CHECK_FAILURES).increment(1);
}

pub(crate) fn leftover(action: &'static str) {
    metrics::counter!(LEFTOVERS, "action" => action).increment(1);
}

pub(crate) fn started() {
    metrics::counter!(STARTED).increment(1);
    metrics::gauge!(RUNNING).increment(1.0);
}

pub(crate) fn ended() {
    metrics::gauge!(RUNNING).decrement(1.0);
}

pub(crate) fn exited() {
    metrics::counter!(EXITED).increment(1);
}

pub(crate) fn failed() {
    metrics::counter!(FAILED).increment(1);
}

pub(crate) fn stale() {
    metrics::counter!(STALE).increment(1);
}

pub(crate) fn reregistered() {
    metrics::counter!(REREGISTRATIONS).increment(1);
}

pub(crate) fn pull_retried() {
    metrics::counter!(PULL_RETRIES).increment(1);
}

pub(crate) fn server_error() {
    metrics::counter!(SERVER_ERRORS).increment(1);
}
