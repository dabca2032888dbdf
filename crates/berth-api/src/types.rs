//! The JSON bodies of every endpoint other than the submit spec: what clients see of
//! containers and workers, the worker protocol (registration, heartbeats, assignments,
//! status reports) and the operator views (demand, invariant check).
//!
//! Request bodies refuse unknown fields. Ids follow berth's id alphabet (ASCII letters,
//! digits, `.`, `_`, `-`, `:`; at most 128 bytes); states and statuses are lower-case words.

mod ops;
mod protocol;
mod tenants;
#[cfg(test)]
mod tests;
mod tokens;
mod workers;

pub use ops::*;
pub use protocol::*;
pub use tenants::*;
pub use tokens::*;
pub use workers::*;

use crate::spec::{ContainerSpec, FallbackSpec, GpuSpec, GpuTypes, timeout_secs};
use berth_core::{AttemptId, ContainerRecord, ContainerState};
use berth_core::{ContainerId, GpuPreference, Resources, WorkerId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// CPU, memory and GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesView {
    /// CPU in millicores (1000 = one core).
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPUs.
    pub gpu_count: u32,
}

impl From<Resources> for ResourcesView {
    fn from(r: Resources) -> ResourcesView {
        ResourcesView {
            cpu_millicores: r.cpu_millicores,
            memory_mib: r.memory_mib,
            gpu_count: r.gpu_count,
        }
    }
}

impl From<ResourcesView> for Resources {
    fn from(r: ResourcesView) -> Resources {
        Resources::new(r.cpu_millicores, r.memory_mib, r.gpu_count)
    }
}

/// The answer to a submit: the container's id and state. 202 when it was accepted (state
/// `pending`), 200 with `duplicate: true` when a container with this id existed already
/// (nothing was written; the state is the existing container's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// The container's id (generated when the spec had none).
    #[schema(value_type = String)]
    pub id: ContainerId,
    /// `pending`, `scheduled`, `pulling` (its worker fetches its image), `running`,
    /// `exited`, `failed`, `lost` or `preempted`.
    #[schema(value_type = String, example = "pending")]
    pub state: ContainerState,
    /// True when the id was known already and nothing was written.
    pub duplicate: bool,
}

/// Many containers in one submit: all are validated and checked for placeability first,
/// and if any is refused the whole batch is (nothing is written; the error's field names
/// the element, e.g. `containers[3].memory_mib`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmit {
    /// The containers, at most 10,000.
    pub containers: Vec<ContainerSpec>,
}

/// The answer to a batch submit: one result per container, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchSubmitResponse {
    /// One result per container.
    pub results: Vec<SubmitResponse>,
}

/// A container as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerView {
    /// Its id.
    #[schema(value_type = String)]
    pub id: ContainerId,
    /// Who asked.
    pub tenant: String,
    /// `pending`, `scheduled`, `pulling` (its worker fetches its image), `running`,
    /// `exited`, `failed`, `lost` or `preempted`.
    #[schema(value_type = String, example = "running")]
    pub state: ContainerState,
    /// The worker it is (or was) placed on.
    #[schema(value_type = Option<String>)]
    pub worker: Option<WorkerId>,
    /// The placement attempt that holds it.
    #[schema(value_type = Option<String>)]
    pub attempt: Option<AttemptId>,
    /// What it reserves.
    pub resources: ResourcesView,
    /// Its GPU request, if it wants GPUs.
    pub gpu: Option<GpuSpec>,
    /// The pool it is restricted to.
    pub pool: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// Whether it accepts interruption: it may run on preemptible workers and be preempted
    /// for a request of higher priority.
    pub preemptible: bool,
    /// When it was accepted (ms since the Unix epoch).
    pub submitted_at_ms: u64,
    /// When it was placed.
    pub scheduled_at_ms: Option<u64>,
    /// When its worker started it.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Its exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it failed, was lost, or still waits.
    pub reason: Option<String>,
    /// How often it waited in the backlog for room.
    pub deferrals: u32,
    /// A cancellation was asked for.
    pub cancel_requested: bool,
    /// Its image.
    pub image: Option<String>,
    /// Its command.
    pub command: Vec<String>,
    /// Its timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// Its fallback chain, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<FallbackSpec>,
    /// How many times it may be run again after its worker died or it was preempted.
    #[serde(default)]
    pub max_retries: u32,
    /// How many times it was run again after its worker died or it was preempted (the
    /// reason of its latest requeue is in `reason` until it is deferred or placed again).
    #[serde(default)]
    pub retries: u32,
    /// When it was last preempted (ms since the Unix epoch), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_at_ms: Option<u64>,
}

impl From<&ContainerRecord> for ContainerView {
    fn from(record: &ContainerRecord) -> ContainerView {
        let request = &record.request;
        let gpu = request.wants_gpus().then(|| GpuSpec {
            count: request.resources.gpu_count,
            milli: request.gpu_fraction_milli,
            types: match &request.gpu {
                GpuPreference::Any => GpuTypes::Any,
                GpuPreference::Types(types) => {
                    GpuTypes::List(types.iter().map(ToString::to_string).collect())
                }
            },
        });
        ContainerView {
            id: request.id.clone(),
            tenant: request.tenant.clone(),
            state: record.state,
            worker: record.worker.clone(),
            attempt: record.attempt.clone(),
            resources: request.resources.into(),
            gpu,
            pool: request.pool_selector.as_ref().map(ToString::to_string),
            priority: request.priority,
            preemptible: request.preemptible,
            submitted_at_ms: request.submitted_at_ms,
            scheduled_at_ms: record.scheduled_at_ms,
            started_at_ms: record.started_at_ms,
            finished_at_ms: record.finished_at_ms,
            exit_code: record.exit_code,
            reason: record.reason.clone(),
            deferrals: record.deferrals,
            cancel_requested: record.cancel_requested,
            image: request.payload.image.clone(),
            command: request.payload.command.clone(),
            timeout_secs: timeout_secs(&request.payload),
            fallback: request.fallback.iter().map(FallbackSpec::of_step).collect(),
            max_retries: request.max_retries,
            retries: record.retries,
            preempted_at_ms: record.preempted_at_ms,
        }
    }
}

/// A list of containers, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerList {
    /// The containers.
    pub containers: Vec<ContainerView>,
}

/// A container's kept output lines (the last ones; the server keeps a bounded number), from
/// a position on. A line's position counts the lines the container printed before it, kept
/// or not, so it never changes: a follower asks with `after` = the `next` it was given, and
/// gets every kept line once, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    /// The container.
    #[schema(value_type = String)]
    pub id: ContainerId,
    /// Its output, oldest line first, from position `first` on.
    pub lines: Vec<String>,
    /// The position of the first line in `lines`.
    pub first: u64,
    /// The position after the last line: how many lines it has printed so far. Ask with
    /// `after` = this for the lines that follow.
    pub next: u64,
    /// How many lines after the position asked from (0 without `after`) are no longer
    /// kept: `first` - `after` when the server dropped them before they were read.
    pub dropped: u64,
    /// Its state when the lines were read: `pending`, `scheduled`, `pulling`, `running`,
    /// `exited`, `failed`, `lost` or `preempted`.
    #[schema(value_type = String, example = "running")]
    pub state: ContainerState,
    /// It has ended (its state is final): it prints no more lines after these, so a
    /// follower stops here.
    pub ended: bool,
}
