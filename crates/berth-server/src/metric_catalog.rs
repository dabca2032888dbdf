//! Every metric the process exports (the server, its engine and store, and the agents
//! `berth up` runs in it), with its help text: described when the recorder is installed,
//! so that each family has HELP and TYPE lines (`promtool check metrics` is clean), and the
//! unlabelled counters and gauges start at 0 instead of appearing at their first change.
//! Latencies and sizes are histograms with fixed buckets, so they sum across replicas.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// Every metric: name, kind, whether it has labels, help.
pub const CATALOG: &[(&str, Kind, bool, &str)] = &[
    (
        "berth_up",
        Kind::Gauge,
        false,
        "1 while the server's store answers its readiness check",
    ),
    (
        "berth_http_requests_total",
        Kind::Counter,
        true,
        "HTTP requests by route, method (other for non-standard ones) and status",
    ),
    (
        "berth_auth_refusals_total",
        Kind::Counter,
        true,
        "Requests refused by authentication, by reason (unauthenticated: no, malformed or unknown token; forbidden: a token outside its role)",
    ),
    (
        "berth_http_request_duration_seconds",
        Kind::Histogram,
        true,
        "Time to answer an HTTP request, by route and method",
    ),
    (
        "berth_api_submits_total",
        Kind::Counter,
        true,
        "Submitted containers by outcome (accepted, duplicate, unplaceable)",
    ),
    (
        "berth_workers_registered_total",
        Kind::Counter,
        false,
        "Worker registrations (first ones and again)",
    ),
    (
        "berth_workers_lost_total",
        Kind::Counter,
        false,
        "Workers the reaper declared lost after their heartbeats stopped",
    ),
    (
        "berth_workers_quarantined",
        Kind::Gauge,
        false,
        "Workers left out of scheduling because their stored record does not read back",
    ),
    (
        "berth_containers_on_unhealthy_gpus_total",
        Kind::Counter,
        false,
        "Containers found holding a GPU their worker reported unhealthy, at registration",
    ),
    (
        "berth_reaper_reclaimed_total",
        Kind::Counter,
        true,
        "Containers of lost workers the reaper handled, by outcome",
    ),
    (
        "berth_retries_total",
        Kind::Counter,
        true,
        "Containers put back in the intake instead of ending, by the reason they would have ended (lost: their worker died)",
    ),
    (
        "berth_reconciled_total",
        Kind::Counter,
        true,
        "Heartbeat reconciliation actions (release of a dead reservation, orphan entry left alone)",
    ),
    (
        "berth_deferred_woken_total",
        Kind::Counter,
        false,
        "Deferred requests woken because capacity was released",
    ),
    (
        "berth_backlog_depth",
        Kind::Gauge,
        false,
        "Requests waiting in the backlog for capacity",
    ),
    (
        "berth_intake_depth",
        Kind::Gauge,
        false,
        "Requests in the intake waiting to be placed (claimed or not, not yet settled); read from the shared store at each scrape, so every replica reports the same value",
    ),
    (
        "berth_batches_total",
        Kind::Counter,
        false,
        "Placement batches planned and committed",
    ),
    (
        "berth_batches_failed_total",
        Kind::Counter,
        false,
        "Placement batches that failed (a store error) and were retried",
    ),
    (
        "berth_placed_total",
        Kind::Counter,
        false,
        "Containers placed on a worker",
    ),
    (
        "berth_failed_total",
        Kind::Counter,
        false,
        "Containers failed by the scheduler (they could never be placed)",
    ),
    (
        "berth_deferred_total",
        Kind::Counter,
        false,
        "Containers deferred to the backlog (no room now)",
    ),
    (
        "berth_version_conflicts_total",
        Kind::Counter,
        false,
        "Commits refused because the worker changed since it was read",
    ),
    (
        "berth_cache_hits_total",
        Kind::Counter,
        false,
        "Worker reads served from the engine's fleet cache",
    ),
    (
        "berth_cache_misses_total",
        Kind::Counter,
        false,
        "Worker reads that went to the store",
    ),
    (
        "berth_superseded_total",
        Kind::Counter,
        false,
        "Placements given back because another attempt of the same container won",
    ),
    (
        "berth_batch_size",
        Kind::Histogram,
        true,
        "Requests per placement batch, by commit strategy",
    ),
    (
        "berth_batch_round_trips",
        Kind::Histogram,
        true,
        "Store round trips per placement batch, by commit strategy",
    ),
    (
        "berth_batch_commands",
        Kind::Histogram,
        true,
        "Store commands per placement batch, by commit strategy",
    ),
    (
        "berth_placement_latency_seconds",
        Kind::Histogram,
        true,
        "Time from submit to placement, by commit strategy",
    ),
    (
        "berth_store_round_trips_total",
        Kind::Counter,
        false,
        "Round trips to the store",
    ),
    (
        "berth_store_commands_total",
        Kind::Counter,
        false,
        "Commands sent to the store",
    ),
    (
        "berth_store_script_calls_total",
        Kind::Counter,
        false,
        "Script calls sent to the store",
    ),
    (
        "berth_store_worker_reads_total",
        Kind::Counter,
        false,
        "Worker records read from the store",
    ),
    (
        "berth_store_lock_acquisitions_total",
        Kind::Counter,
        false,
        "Worker locks taken (lock-based strategies only)",
    ),
    (
        "berth_store_lock_collisions_total",
        Kind::Counter,
        false,
        "Worker lock attempts that found the lock held",
    ),
    (
        "berth_store_unreplicated_commits_total",
        Kind::Counter,
        false,
        "Commits that fewer replicas than asked acknowledged in time",
    ),
    (
        "berth_provisioned_workers_total",
        Kind::Counter,
        true,
        "Workers the pool controller said it started, by pool",
    ),
    (
        "berth_removed_workers_total",
        Kind::Counter,
        true,
        "Idle workers drained and handed to the pool controller to stop, by pool",
    ),
    (
        "berth_provisioner_calls_total",
        Kind::Counter,
        true,
        "Calls of the pool controller, by pool, action (add, remove) and result (ok, error)",
    ),
    (
        "berth_unmet_demand_requests",
        Kind::Gauge,
        true,
        "Requests waiting for capacity, by pool (configured ones by name)",
    ),
    (
        "berth_unmet_demand_cpu_millicores",
        Kind::Gauge,
        true,
        "CPU of the requests waiting for capacity, by pool, in millicores",
    ),
    (
        "berth_unmet_demand_memory_mib",
        Kind::Gauge,
        true,
        "Memory of the requests waiting for capacity, by pool, in MiB",
    ),
    (
        "berth_unmet_demand_gpus",
        Kind::Gauge,
        true,
        "GPUs of the requests waiting for capacity, by pool and GPU type",
    ),
    (
        "berth_agent_containers_started_total",
        Kind::Counter,
        false,
        "Containers whose process an agent started",
    ),
    (
        "berth_agent_containers_exited_total",
        Kind::Counter,
        false,
        "Containers an agent reported EXITED",
    ),
    (
        "berth_agent_containers_failed_total",
        Kind::Counter,
        false,
        "Containers an agent reported FAILED",
    ),
    (
        "berth_agent_containers_running",
        Kind::Gauge,
        false,
        "Containers whose process runs now under an agent",
    ),
    (
        "berth_agent_stale_deliveries_total",
        Kind::Counter,
        false,
        "Deliveries an agent did not run because the record moved on",
    ),
    (
        "berth_agent_server_errors_total",
        Kind::Counter,
        false,
        "Agent calls to the server that failed and were retried",
    ),
    (
        "berth_agent_reregistrations_total",
        Kind::Counter,
        false,
        "Agent registrations after the first",
    ),
    (
        "berth_agent_image_pull_retries_total",
        Kind::Counter,
        false,
        "Container starts tried again because the image could not be pulled",
    ),
    (
        "berth_agent_runc_start_seconds",
        Kind::Histogram,
        false,
        "runc create and start of one container",
    ),
    (
        "berth_agent_leftovers_total",
        Kind::Counter,
        true,
        "Containers an earlier life of an agent left, by action",
    ),
    (
        "berth_agent_gpus_unhealthy",
        Kind::Gauge,
        false,
        "GPU devices an agent's latest check found unhealthy",
    ),
    (
        "berth_agent_gpu_check_failures_total",
        Kind::Counter,
        false,
        "GPU health checks that could not run",
    ),
];

/// Bucket bounds, in seconds, of the latency histograms.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of the count histograms (batch sizes, round trips, commands).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Describes every metric of [`CATALOG`] to the installed recorder and sets the unlabelled
/// counters and gauges to 0 (a gauge's later value replaces it).
pub fn describe() {
    for &(name, kind, labelled, help) in CATALOG {
        match kind {
            Kind::Counter => {
                describe_counter!(name, help);
                if !labelled {
                    metrics::counter!(name).increment(0);
                }
            }
            Kind::Gauge => {
                describe_gauge!(name, help);
                if !labelled {
                    metrics::gauge!(name).increment(0.0);
                }
            }
            Kind::Histogram => describe_histogram!(name, help),
        }
    }
}
