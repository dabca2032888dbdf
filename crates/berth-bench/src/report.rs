//! The bench's results: the JSON document, the tables (comfy-table) and the verdicts on the
//! targets.
//!
//! ## What the seed rows count (per repetition, averaged over the repetitions)
//! - **Total time**: from just before the one `submit_many` of all requests to the last
//!   ticket's outcome (all committed and settled). p50 is the nearest-rank median.
//! - **Average time per container**: the mean over requests of submit -> that request's
//!   outcome.
//! - **Lock acquisitions / collisions**: the store's counters (a collision is a lock
//!   attempt that found the lock held); the rate is collisions / attempts.
//! - **Redis reads**: read operations, as the seed counts them: full fleet reads
//!   (`workers()`, the seed's GetAllWorkers) plus single worker reads (`worker()`). The
//!   worker records those read are counted separately.
//! - **Scheduler round trips**: the round trips of the engine's placement work: fleet and
//!   worker reads (a fleet read is 2: the index, then every worker in one pipeline), locks
//!   and unlocks, commits, and the settle that records the placements. Not counted there:
//!   the submit and the intake claim, backlog housekeeping and ticket checks, which every
//!   strategy pays alike; they are in **all store round trips**, the store's own counter
//!   over the window.
//! - **Version conflicts**: commits rejected because the worker changed since it was read.
//! - **Cache hit rate**: as the seed counts it, per request: the share of requests planned
//!   without a fleet read of their own (1 - fleet reads / requests, at least 0).
//! - **Containers per worker**: min and max over the fleet, including idle workers.
//! - **Throughput**: requests / p50 total time.
//! - **Simulated network**: with `--rtt-ms`, the delay the [`crate::simulated_rtt::SimulatedRttStore`]
//!   added, summed over calls (concurrent calls overlap, so it can exceed the wall time).

use crate::fleet::Machine;
use crate::simulated_rtt::Op;
use crate::store_choice::{RedisMemory, StoreInfo};

/// The whole result: what `--json` writes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The store the bench ran on.
    pub store: StoreInfo,
    /// The machine it ran on.
    pub machine: Machine,
    /// One entry per scenario, strategy, rtt, fleet size (and replica count).
    pub runs: Vec<RunResult>,
    /// The API scenario's results, if it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api: Vec<ApiResult>,
    /// The start scenario's results, one per runtime, if it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub start: Vec<StartResult>,
    /// The gpu-sharing scenario's results, if it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu_sharing: Vec<GpuSharingResult>,
    /// The start scenario's cold and warm image starts, if they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_starts: Vec<ImageStartResult>,
    /// The start scenario's warm-start share, if it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locality: Vec<LocalityResult>,
    /// The verdicts on the targets.
    pub targets: Vec<Verdict>,
    /// Remarks on the run (store fallback, reduced repetitions, ...).
    pub notes: Vec<String>,
}

impl BenchReport {
    /// The run of `scenario` and `strategy` on `workers` workers at `rtt_ms`, if it ran.
    pub fn find(
        &self,
        scenario: &str,
        strategy: &str,
        rtt_ms: f64,
        workers: usize,
    ) -> Option<&RunResult> {
        self.runs.iter().find(|r| {
            r.scenario == scenario
                && r.strategy == strategy
                && (r.rtt_ms - rtt_ms).abs() < 1e-9
                && r.workers == workers
        })
    }

    /// An empty report.
    pub fn new(store: StoreInfo, machine: Machine) -> BenchReport {
        BenchReport {
            store,
            machine,
            runs: Vec::new(),
            api: Vec::new(),
            start: Vec::new(),
            gpu_sharing: Vec::new(),
            image_starts: Vec::new(),
            locality: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Starts of a container of a registry image through runc, cold and warm (in the JSON
/// under `image_starts`; see [`crate::image_start`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageStartResult {
    /// The image's data besides busybox, in MiB.
    pub image_mib: usize,
    /// Samples of each.
    pub samples: usize,
    /// The start call with an empty image cache (pull, verify, unpack, start).
    pub cold_start_ms: Spread,
    /// The start call with the image cached.
    pub warm_start_ms: Spread,
}

/// The warm-start share over a stream of containers of many images (in the JSON under
/// `locality`; see [`crate::locality`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalityResult {
    /// Workers in the fleet.
    pub workers: usize,
    /// Distinct images in the stream.
    pub images: usize,
    /// Containers in the stream.
    pub containers: usize,
    /// Images each worker keeps.
    pub cache_images: usize,
    /// The stream's seed.
    pub seed: u64,
    /// With image locality off: the share chance gives.
    pub off: LocalityRun,
    /// With image locality on.
    pub on: LocalityRun,
}

/// One pass of the stream.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LocalityRun {
    /// Containers placed.
    pub placed: usize,
    /// Placed on a worker that held the image.
    pub warm: usize,
    /// `warm / placed`.
    pub warm_share: f64,
    /// Containers no worker had room for when they came (dropped).
    pub refused: usize,
}

#[cfg(test)]
impl BenchReport {
    /// An empty report on a store of `kind` (`redis` or `memory`) and a 2-core machine.
    pub(crate) fn empty(kind: &'static str) -> BenchReport {
        let store = StoreInfo {
            kind,
            url: None,
            started_by_bench: false,
            version: None,
            description: String::new(),
        };
        let machine = Machine {
            cores: 2,
            memory_bytes: 0,
            memory_gib: 0.0,
        };
        BenchReport::new(store, machine)
    }
}

/// Round trips by kind of work (see the module documentation).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RoundTrips {
    /// Fleet and worker reads.
    pub reads: f64,
    /// Lock and unlock calls.
    pub locks: f64,
    /// Commits, lock-free or locked.
    pub commits: f64,
    /// Settlements and releases.
    pub settle: f64,
    /// Submit (seed only) and claims: not part of the scheduler's round trips.
    pub intake: f64,
    /// Backlog housekeeping, ticket checks: not part of the scheduler's round trips.
    pub other: f64,
}

impl RoundTrips {
    /// Round trips by kind from `trips`, the simulated round trips of some operations;
    /// `intake` names the operations counted as intake.
    pub fn by_kind(trips: impl Fn(&[Op]) -> f64, intake: &[Op]) -> RoundTrips {
        RoundTrips {
            reads: trips(&[Op::Workers, Op::Worker, Op::Owners]),
            locks: trips(&[Op::LockWorker, Op::UnlockWorker]),
            commits: trips(&[Op::Commit, Op::CommitLocked]),
            settle: trips(&[Op::Settle, Op::Release]),
            intake: trips(intake),
            other: trips(&[Op::PromoteDue, Op::BacklogLen, Op::Container, Op::Check]),
        }
    }

    /// The scheduler's round trips: reads, locks, commits and settle.
    pub fn scheduler(&self) -> f64 {
        self.reads + self.locks + self.commits + self.settle
    }
}

/// Latency percentiles, in ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    /// Requests measured.
    pub samples: u64,
    /// Sampled requests without a scheduled time (not placed).
    pub unscheduled: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One strategy on one fleet size at one rtt (and replica count): the JSON's `runs` entry.
/// Counts are per `counts_per`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunResult {
    /// `seed`, `sustained` or `c1m`.
    pub scenario: &'static str,
    /// Scale runs with `--tenants` or `--quotas`: the tenants and whether they had quotas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<crate::tenants::Tenancy>,
    /// The commit strategy.
    pub strategy: String,
    /// The simulated round-trip time, in ms (0: loopback).
    pub rtt_ms: f64,
    /// Workers in the fleet.
    pub workers: usize,
    /// Requests per repetition.
    pub containers: usize,
    /// Measured repetitions.
    pub repetitions: usize,
    /// Engine replicas.
    pub replicas: usize,
    /// What the counts are per.
    pub counts_per: &'static str,
    /// Total time to place all requests: median over repetitions, ms.
    pub p50_ms: f64,
    /// Fastest repetition, ms.
    pub min_ms: f64,
    /// Slowest repetition, ms.
    pub max_ms: f64,
    /// Mean over repetitions, ms.
    pub mean_ms: f64,
    /// Mean time from submit to a request's outcome, ms.
    pub avg_container_ms: f64,
    /// Scheduler round trips (reads, locks, commits, settle).
    pub round_trips: f64,
    /// The scheduler's round trips by kind, and the intake's.
    pub round_trips_detail: RoundTrips,
    /// Every round trip of the engine's store client (its own counter).
    pub store_round_trips: f64,
    /// Commands sent by the engine's store client.
    pub commands: f64,
    /// Lua script calls by the engine's store client.
    pub script_calls: f64,
    /// Read operations: fleet reads plus single worker reads.
    pub redis_reads: f64,
    /// Worker records read.
    pub worker_records_read: f64,
    /// Worker locks taken.
    pub lock_acquisitions: f64,
    /// Lock attempts that found the lock held.
    pub lock_collisions: f64,
    /// Collisions / lock attempts.
    pub lock_collision_rate: f64,
    /// Commits rejected because the worker changed.
    pub version_conflicts: f64,
    /// Seed: requests planned without their own fleet read; scale runs: the engine's
    /// cache hits per snapshot.
    pub cache_hit_rate: f64,
    /// The engine cache's own hit counter (one per batch snapshot).
    pub engine_cache_hits: f64,
    /// The engine cache's own miss counter.
    pub engine_cache_misses: f64,
    /// The fewest containers on one worker.
    pub per_worker_min: f64,
    /// The most containers on one worker.
    pub per_worker_max: f64,
    /// Workers that received at least one container.
    pub touched_workers: f64,
    /// Containers per worker in worker order, of the last repetition (seed only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub distribution: Vec<usize>,
    /// Requests placed per second of total time.
    pub placements_per_sec: f64,
    /// Requests placed.
    pub placed: f64,
    /// Requests failed.
    pub failed: f64,
    /// True when every request was placed in every repetition.
    pub all_placed: bool,
    /// Round trips the delay wrapper simulated.
    pub simulated_round_trips: f64,
    /// The delay it asked for, summed over calls, ms.
    pub simulated_network_ms: f64,
    /// The delay it actually slept, summed over calls, ms.
    pub slept_ms: f64,
    /// Every repetition's total time, ms, in run order.
    pub times_ms: Vec<f64>,
    /// Scale runs: placement latency percentiles, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Percentiles>,
    /// Scale runs: batches the engines processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<u64>,
    /// Scale runs: round trips of the submitting client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit_round_trips: Option<u64>,
    /// Scale runs: the in-flight window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Scale runs: this process's peak resident memory during the run, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_scheduler_memory_bytes: Option<u64>,
    /// Scale runs on Redis: `INFO memory` right after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_memory: Option<RedisMemory>,
    /// CPU time the Redis server used during the measured window (seed: per repetition,
    /// averaged), ms; `None` on the memory store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_ms: Option<f64>,
    /// CPU time this process (engines, submitter, runtime) used during the measured window
    /// (seed: per repetition, averaged), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_cpu_ms: Option<f64>,
    /// False when a scale run hit its time limit.
    pub complete: bool,
}

/// The verdict on one target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// The target, as the issue states it.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// `met`, `missed`, `partly` or `not run`.
    pub verdict: &'static str,
    /// Why, when it is not simply met.
    pub why: String,
}

/// The API scenario's results (in the JSON under `api`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiResult {
    /// Workers in the fleet.
    pub workers: usize,
    /// Single submits: repetitions measured (after one warm-up).
    pub repetitions: usize,
    /// Single submits: time until all 100 were placed, p50, min and max, in ms.
    pub singles_p50_ms: f64,
    /// See `singles_p50_ms`.
    pub singles_min_ms: f64,
    /// See `singles_p50_ms`.
    pub singles_max_ms: f64,
    /// Batch submits: requests placed.
    pub batch_requests: usize,
    /// Batch submits: placements per second (first submit to last placement).
    pub batch_placements_per_sec: f64,
}

/// A latency's median, 99th percentile and maximum, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// The start scenario's results for one runtime (in the JSON under `start`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartResult {
    /// `runc` or `process`.
    pub runtime: String,
    /// Containers measured (after the warm-up).
    pub containers: usize,
    /// The most containers submitted and not yet ended at any time.
    pub in_flight: usize,
    /// Local workers.
    pub workers: usize,
    /// Submit to RUNNING (the agent's claim), from the store's timestamps.
    pub submit_to_running_ms: Spread,
    /// Submit to EXITED, from the store's timestamps.
    pub submit_to_exited_ms: Spread,
    /// The runtime alone, no server: the call that creates and starts a container, until
    /// its process runs.
    pub runtime_start_ms: Spread,
    /// The runtime alone: from that call to the container's end and clean-up.
    pub runtime_start_to_exit_ms: Spread,
}

impl Spread {
    /// The spread of `samples` (any order; empty gives zeros).
    pub fn of(mut samples: Vec<f64>) -> Spread {
        samples.sort_by(f64::total_cmp);
        Spread {
            p50: crate::percentile::percentile(&samples, 50.0),
            p99: crate::percentile::percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// A GPU fleet's state during an arrival-only fill.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyFill {
    /// Pods placed so far.
    pub placed: usize,
    /// The share of the fleet's GPU capacity (in milli-GPUs) allocated.
    pub gpu_allocation_rate: f64,
    /// The GPUs not allocated (milli-GPUs / 1000): with the stream's pods refused, free but
    /// unusable for them.
    pub unallocated_gpus: f64,
}

/// The gpu-sharing scenario's results (in the JSON under `gpu_sharing`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuSharingResult {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// GPUs in the fleet.
    pub gpus: u64,
    /// Pods in the stream.
    pub pods: usize,
    /// The seed of the fleet and the stream.
    pub seed: u64,
    /// Whether a third of the GPU pods accept only some GPU types (`--typed-pods`).
    pub typed: bool,
    /// Per policy: its name and its fill.
    pub policies: Vec<(String, Fill)>,
}

/// One policy's arrival-only fill.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fill {
    /// At the first GPU pod refused.
    pub first_refusal: PolicyFill,
    /// When the GPUs the arrived pods asked for first exceed the fleet's GPUs (the point
    /// the FGD paper compares policies at).
    pub at_capacity: PolicyFill,
    /// After the whole stream.
    pub end: PolicyFill,
    /// The time the planner took over the whole stream, in ms.
    pub planning_ms: f64,
}
