//! The JSON bodies of every endpoint other than the submit spec: what clients see of
//! containers and workers, the worker protocol (registration, heartbeats, assignments,
//! status reports) and the operator views (demand, invariant check).
//!
//! Request bodies refuse unknown fields. Ids follow berth's id alphabet (ASCII letters,
//! digits, `.`, `_`, `-`, `:`; at most 128 bytes); states and statuses are lower-case words.

use crate::error::ApiError;
use crate::spec::{ContainerSpec, GpuSpec, GpuTypes, TIMEOUT_ENV, parse_gpu_type, timeout_secs};
use berth_core::request::{MAX_CPU_MILLICORES, MAX_GPU_COUNT, MAX_MEMORY_MIB};
use berth_core::{
    Assignment, AttemptId, ContainerRecord, ContainerState, PoolDemand, Violation,
    WorkerRegistration,
};
use berth_core::{
    ContainerId, GpuPreference, PlacementPolicy, Pool, PoolAttributes, PoolName, Resources, Worker,
    WorkerId, WorkerStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// `pending`, `scheduled`, `running`, `exited`, `failed` or `lost`.
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
    /// `pending`, `scheduled`, `running`, `exited`, `failed` or `lost`.
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
    /// Whether it may run on preemptible workers.
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
}

impl From<&ContainerRecord> for ContainerView {
    fn from(record: &ContainerRecord) -> ContainerView {
        let request = &record.request;
        let gpu = (request.resources.gpu_count > 0).then(|| GpuSpec {
            count: request.resources.gpu_count,
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
        }
    }
}

/// A list of containers, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerList {
    /// The containers.
    pub containers: Vec<ContainerView>,
}

/// A container's kept output lines (the last ones; the server keeps a bounded number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    /// The container.
    #[schema(value_type = String)]
    pub id: ContainerId,
    /// Its output, oldest line first.
    pub lines: Vec<String>,
}

/// A worker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Its id.
    #[schema(value_type = String)]
    pub id: WorkerId,
    /// Its pool.
    #[schema(value_type = String)]
    pub pool: PoolName,
    /// The pool's priority (higher is preferred).
    pub pool_priority: i32,
    /// Whether it is preemptible.
    pub preemptible: bool,
    /// Whether only requests selecting its pool go there.
    pub requires_pool_selector: bool,
    /// `spread` or `pack`.
    #[schema(value_type = String, example = "spread")]
    pub policy: PlacementPolicy,
    /// `available`, `pending`, `draining`, `disabled` or `lost`.
    #[schema(value_type = String, example = "available")]
    pub status: WorkerStatus,
    /// Its whole capacity.
    pub total: ResourcesView,
    /// What is not reserved.
    pub free: ResourcesView,
    /// Its GPU type, if it has GPUs.
    pub gpu_type: Option<String>,
    /// Bumped by every change of its capacity or status.
    pub version: u64,
    /// Its lease: bumped by every registration and when it is declared lost. The agent's
    /// calls carry the epoch it registered under; older ones are refused (`stale_epoch`).
    pub epoch: u64,
    /// Its last heartbeat (ms since the Unix epoch), if known.
    pub last_heartbeat_ms: Option<u64>,
    /// How long ago that was, in ms.
    pub heartbeat_age_ms: Option<u64>,
}

impl WorkerView {
    /// The view of `worker` with its last heartbeat, as seen at `now_ms`.
    pub fn new(worker: &Worker, last_heartbeat_ms: Option<u64>, now_ms: u64) -> WorkerView {
        WorkerView {
            id: worker.id.clone(),
            pool: worker.pool.pool.clone(),
            pool_priority: worker.pool.priority,
            preemptible: worker.pool.preemptible,
            requires_pool_selector: worker.pool.requires_pool_selector,
            policy: worker.pool.policy,
            status: worker.status,
            total: worker.total.into(),
            free: worker.free.into(),
            gpu_type: worker.gpu_type.as_ref().map(ToString::to_string),
            version: worker.version,
            epoch: worker.epoch,
            last_heartbeat_ms,
            heartbeat_age_ms: last_heartbeat_ms.map(|at| now_ms.saturating_sub(at)),
        }
    }
}

/// One container a worker owns (holds a reservation for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnedView {
    /// The container.
    #[schema(value_type = String)]
    pub container: ContainerId,
    /// The attempt it is reserved under.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
}

/// The answer to a registration: the worker, with the epoch its calls must carry from now
/// on, and what it owns. A worker that registers again (after a restart, or after it was
/// declared lost) keeps running exactly the containers listed here and stops any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    /// The worker as registered; `worker.epoch` is its new lease.
    pub worker: WorkerView,
    /// The containers it owns, under their attempts.
    pub owned: Vec<OwnedView>,
}

/// A list of workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers, by id.
    pub workers: Vec<WorkerView>,
}

/// A worker's GPUs at registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerGpu {
    /// How many GPUs, at least 1.
    pub count: u32,
    /// Their type (all of a worker's GPUs are of one type), e.g. `A100-40`.
    #[serde(rename = "type")]
    pub gpu_type: String,
}

/// What a worker agent says about itself when it (re-)registers. If `pool` names a pool of
/// the server's configuration, the pool's attributes come from there (attributes given
/// here must then agree with it); otherwise they come from here, with defaults (priority 0,
/// not preemptible, no selector required, `spread`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWorker {
    /// The worker's id.
    #[schema(value_type = String)]
    pub id: WorkerId,
    /// Its pool's name.
    pub pool: String,
    /// The pool's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Whether the worker is preemptible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
    /// Whether only requests selecting the pool may go there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_pool_selector: Option<bool>,
    /// `spread` or `pack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub policy: Option<PlacementPolicy>,
    /// `available` (the default) or `pending`. A worker an operator drained or disabled
    /// keeps that status when it registers again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub status: Option<WorkerStatus>,
    /// Its CPU in millicores.
    pub cpu_millicores: u64,
    /// Its memory in MiB.
    pub memory_mib: u64,
    /// Its GPUs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<WorkerGpu>,
}

impl RegisterWorker {
    /// A registration in pool `pool` with this capacity and everything else at its default.
    pub fn new(id: WorkerId, pool: &PoolName, cpu_millicores: u64, memory_mib: u64) -> Self {
        RegisterWorker {
            id,
            pool: pool.to_string(),
            priority: None,
            preemptible: None,
            requires_pool_selector: None,
            policy: None,
            status: None,
            cpu_millicores,
            memory_mib,
            gpu: None,
        }
    }

    /// Validates the registration and resolves its pool against the configured `pools`.
    pub fn resolve(&self, pools: &[Pool]) -> Result<WorkerRegistration, ApiError> {
        let name = PoolName::new(self.pool.as_str())
            .map_err(|e| ApiError::invalid("pool", e.to_string()))?;
        let pool = match pools.iter().find(|p| p.attributes.pool == name) {
            Some(configured) => self.agree_with(&configured.attributes)?,
            None => PoolAttributes {
                pool: name,
                priority: self.priority.unwrap_or(0),
                preemptible: self.preemptible.unwrap_or(false),
                requires_pool_selector: self.requires_pool_selector.unwrap_or(false),
                policy: self.policy.unwrap_or_default(),
            },
        };
        let status = self.status.unwrap_or(WorkerStatus::Available);
        if !matches!(status, WorkerStatus::Available | WorkerStatus::Pending) {
            return Err(ApiError::invalid(
                "status",
                format!("a worker registers as available or pending, not {status}"),
            ));
        }
        check_capacity("cpu_millicores", self.cpu_millicores, MAX_CPU_MILLICORES)?;
        check_capacity("memory_mib", self.memory_mib, MAX_MEMORY_MIB)?;
        let (gpu_count, gpu_type) = match &self.gpu {
            None => (0, None),
            Some(gpu) => {
                check_capacity("gpu.count", gpu.count.into(), MAX_GPU_COUNT.into())?;
                (gpu.count, Some(parse_gpu_type("gpu.type", &gpu.gpu_type)?))
            }
        };
        Ok(WorkerRegistration {
            id: self.id.clone(),
            pool,
            status,
            total: Resources::new(self.cpu_millicores, self.memory_mib, gpu_count),
            gpu_type,
        })
    }

    fn agree_with(&self, configured: &PoolAttributes) -> Result<PoolAttributes, ApiError> {
        let differs = |field: &str, given: String, wanted: String| {
            ApiError::invalid(
                field,
                format!(
                    "pool {} is configured with {field} {wanted}, the registration says {given}; omit it or make it agree",
                    configured.pool
                ),
            )
        };
        if let Some(p) = self.priority.filter(|p| *p != configured.priority) {
            return Err(differs(
                "priority",
                p.to_string(),
                configured.priority.to_string(),
            ));
        }
        if let Some(p) = self.preemptible.filter(|p| *p != configured.preemptible) {
            return Err(differs(
                "preemptible",
                p.to_string(),
                configured.preemptible.to_string(),
            ));
        }
        if let Some(r) = self
            .requires_pool_selector
            .filter(|r| *r != configured.requires_pool_selector)
        {
            return Err(differs(
                "requires_pool_selector",
                r.to_string(),
                configured.requires_pool_selector.to_string(),
            ));
        }
        if let Some(p) = self.policy.filter(|p| *p != configured.policy) {
            return Err(differs(
                "policy",
                p.as_str().into(),
                configured.policy.as_str().into(),
            ));
        }
        Ok(configured.clone())
    }
}

fn check_capacity(field: &str, value: u64, limit: u64) -> Result<(), ApiError> {
    if value == 0 {
        return Err(ApiError::invalid(field, "must be at least 1"));
    }
    if value > limit {
        return Err(ApiError::invalid(
            field,
            format!("{value} is above the limit of {limit}"),
        ));
    }
    Ok(())
}

/// A worker's heartbeat: it is alive, and runs these containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The epoch the worker registered under (from its registration's `worker.epoch`).
    pub epoch: u64,
    /// The containers it runs (at most 100,000), to learn which of them to stop.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub running: Vec<ContainerId>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The running containers to stop: a cancellation was asked for. Stop each and report
    /// it `failed` with reason `cancelled`.
    #[schema(value_type = Vec<String>)]
    pub cancel: Vec<ContainerId>,
    /// Running containers this worker does not own any more (they were given back after
    /// it was presumed dead, or the store lost them in a failover): stop them at once. They
    /// hold no capacity here, so running them on would overbook the worker.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub stop: Vec<ContainerId>,
    /// The worker's status. `lost` means the server gave its containers back after it
    /// missed its heartbeats: stop them and register again.
    #[schema(value_type = String, example = "available")]
    pub status: WorkerStatus,
}

/// One container delivered to a worker. Acknowledge the delivery once it is taken care of,
/// or it is delivered again after the redelivery timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// The delivery's id, to acknowledge.
    pub delivery: String,
    /// The container.
    #[schema(value_type = String)]
    pub container: ContainerId,
    /// The placement attempt; report status with it.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
    /// What it reserved.
    pub resources: ResourcesView,
    /// Its image, if any.
    pub image: Option<String>,
    /// Its command.
    pub command: Vec<String>,
    /// Its environment (without the reserved timeout variable).
    pub env: BTreeMap<String, String>,
    /// Kill it after this many seconds, if set.
    pub timeout_secs: Option<u64>,
}

impl From<&Assignment> for AssignmentView {
    fn from(a: &Assignment) -> AssignmentView {
        let mut env = a.payload.env.clone();
        env.remove(TIMEOUT_ENV);
        AssignmentView {
            delivery: a.delivery.clone(),
            container: a.container.clone(),
            attempt: a.attempt.clone(),
            resources: a.resources.into(),
            image: a.payload.image.clone(),
            command: a.payload.command.clone(),
            env,
            timeout_secs: timeout_secs(&a.payload),
        }
    }
}

/// A worker's assignments (empty when none arrived within the wait).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentList {
    /// The assignments, in commit order.
    pub assignments: Vec<AssignmentView>,
}

/// A worker gives back a reservation it will not run (one whose record names another
/// worker or attempt: left by a scheduler replica that died between commit and settle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The epoch the worker registered under.
    pub epoch: u64,
    /// The container.
    #[schema(value_type = String)]
    pub container: ContainerId,
    /// The attempt it was reserved under.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResponse {
    /// True when capacity was given back; false when the worker did not own the container
    /// under that attempt (nothing changed).
    pub released: bool,
}

/// What a worker reports about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedState {
    /// It started.
    Running,
    /// It ended with an exit code.
    Exited,
    /// It could not be started, was killed (timeout, cancellation) or crashed.
    Failed,
}

/// A worker's report on one container, by the worker and attempt that hold it. `exited` and
/// `failed` give the container's capacity back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// The reporting worker.
    #[schema(value_type = String)]
    pub worker: WorkerId,
    /// The attempt from the assignment.
    #[schema(value_type = String)]
    pub attempt: AttemptId,
    /// The epoch the worker registered under.
    pub epoch: u64,
    /// What happened.
    pub state: ReportedState,
    /// The exit code; required with `exited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why, with `failed` (e.g. `cancelled`, `timed out after 60 s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Output lines to append to the container's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// The longest attempt id accepted, in bytes.
pub const MAX_ATTEMPT_LEN: usize = 64;

/// Checks an attempt id from outside: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn check_attempt(field: &str, attempt: &AttemptId) -> Result<(), ApiError> {
    let s = attempt.0.as_str();
    let ok = !s.is_empty()
        && s.len() <= MAX_ATTEMPT_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("an attempt id is 1 to {MAX_ATTEMPT_LEN} ASCII letters, digits, '-' or '_'"),
        ))
    }
}

/// The unmet demand of one pool: requests waiting for room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolDemandView {
    /// The pool that would have to grow (`null`: no pool matches closely enough).
    pub pool: Option<String>,
    /// How many requests wait.
    pub requests: u64,
    /// Their resources, summed.
    pub resources: ResourcesView,
    /// Their GPUs by type (`any` for requests that accept any type).
    pub gpus_by_type: BTreeMap<String, u64>,
}

impl From<&PoolDemand> for PoolDemandView {
    fn from(d: &PoolDemand) -> PoolDemandView {
        PoolDemandView {
            pool: d.pool.as_ref().map(ToString::to_string),
            requests: d.requests,
            resources: d.resources.into(),
            gpus_by_type: d.gpus_by_type.clone(),
        }
    }
}

/// The unmet demand, per pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DemandView {
    /// One entry per pool with waiting requests, by pool name.
    pub pools: Vec<PoolDemandView>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViolationView {
    /// The worker, container or key concerned.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

impl From<&Violation> for ViolationView {
    fn from(v: &Violation) -> ViolationView {
        ViolationView {
            subject: v.subject.clone(),
            detail: v.detail.clone(),
        }
    }
}

/// The result of checking every invariant of the store (empty when all hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// What is broken.
    pub violations: Vec<ViolationView>,
}

/// The answer of the health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::GpuType;

    fn pool(name: &str, priority: i32) -> Pool {
        Pool {
            attributes: PoolAttributes {
                pool: PoolName::new(name).unwrap(),
                priority,
                preemptible: false,
                requires_pool_selector: false,
                policy: PlacementPolicy::Pack,
            },
            gpu_type: None,
            worker_size: Resources::new(1000, 1000, 0),
        }
    }

    #[test]
    fn a_configured_pool_supplies_the_attributes() {
        let pools = [pool("gpu", 5)];
        let mut register = RegisterWorker::new(
            WorkerId::new("w1").unwrap(),
            &PoolName::new("gpu").unwrap(),
            4000,
            8192,
        );
        register.gpu = Some(WorkerGpu {
            count: 4,
            gpu_type: "a100-40".into(),
        });
        let registration = register.resolve(&pools).unwrap();
        assert_eq!(registration.pool.priority, 5);
        assert_eq!(registration.pool.policy, PlacementPolicy::Pack);
        assert_eq!(registration.gpu_type, Some(GpuType::A100_40));
        assert_eq!(registration.total, Resources::new(4000, 8192, 4));
        register.priority = Some(1);
        assert_eq!(
            register.resolve(&pools).unwrap_err().field.as_deref(),
            Some("priority")
        );
    }

    #[test]
    fn an_unconfigured_pool_takes_the_given_attributes() {
        let mut register = RegisterWorker::new(
            WorkerId::new("w1").unwrap(),
            &PoolName::new("adhoc").unwrap(),
            1,
            1,
        );
        register.preemptible = Some(true);
        let registration = register.resolve(&[]).unwrap();
        assert!(registration.pool.preemptible);
        assert_eq!(registration.pool.priority, 0);
        register.cpu_millicores = 0;
        assert_eq!(
            register.resolve(&[]).unwrap_err().field.as_deref(),
            Some("cpu_millicores")
        );
        register.cpu_millicores = 1;
        register.status = Some(WorkerStatus::Lost);
        assert_eq!(
            register.resolve(&[]).unwrap_err().field.as_deref(),
            Some("status")
        );
    }

    #[test]
    fn attempts_are_checked() {
        assert!(check_attempt("attempt", &AttemptId("0123abcd".into())).is_ok());
        assert!(check_attempt("attempt", &AttemptId("a b".into())).is_err());
        assert!(check_attempt("attempt", &AttemptId(String::new())).is_err());
    }

    #[test]
    fn status_reports_parse_strictly() {
        let report: StatusReport = serde_json::from_str(
            r#"{"worker": "w1", "attempt": "a1", "epoch": 1, "state": "exited", "exit_code": 0}"#,
        )
        .unwrap();
        assert_eq!(report.state, ReportedState::Exited);
        let bad: Result<StatusReport, _> = serde_json::from_str(
            r#"{"worker": "w{1}", "attempt": "a1", "epoch": 1, "state": "exited"}"#,
        );
        assert!(bad.is_err());
        let bad: Result<StatusReport, _> =
            serde_json::from_str(r#"{"worker": "w1", "attempt": "a1", "state": "done"}"#);
        assert!(bad.is_err());
    }
}
