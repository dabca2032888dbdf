//! Workers as clients see them, and what an agent says when it registers.

use super::DeviceShareView;
use super::ResourcesView;
use crate::error::ApiError;
use crate::spec::parse_gpu_type;
use berth_core::invariants::OwnedEntry;
use berth_core::request::{MAX_CPU_MILLICORES, MAX_GPU_COUNT, MAX_MEMORY_MIB};
use berth_core::{AttemptId, GpuDevice, GpuType, WorkerRegistration};
use berth_core::{
    ContainerId, CpuReserve, PlacementPolicy, Pool, PoolAttributes, PoolName, Resources,
    RuntimeName, Worker, WorkerId, WorkerStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// Set when CPU-only requests may run on the pool's GPU workers: what each keeps free
    /// for GPU work. Absent: GPU workers take GPU requests only (and a view from a server
    /// without the switch reads so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_on_gpu: Option<CpuReserveView>,
    /// `available`, `pending`, `draining`, `disabled` or `lost`.
    #[schema(value_type = String, example = "available")]
    pub status: WorkerStatus,
    /// Its whole capacity.
    pub total: ResourcesView,
    /// What is not reserved.
    pub free: ResourcesView,
    /// Its GPU type, if it has GPUs.
    pub gpu_type: Option<String>,
    /// Its GPU devices and what is free on each (absent without GPUs, or from a server that
    /// does not send them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<DeviceStateView>,
    /// The container runtime it runs containers with, e.g. `process` or `runc`. A view from
    /// a server that does not send it reads as `process`.
    #[serde(default)]
    #[schema(value_type = String, example = "process")]
    pub runtime: RuntimeName,
    /// Bumped by every change of its capacity or status.
    pub version: u64,
    /// Its lease: bumped by every registration and when it is declared lost. The agent's
    /// calls carry the epoch it registered under; older ones are refused (`stale_epoch`).
    pub epoch: u64,
    /// Its last heartbeat (ms since the Unix epoch), if known.
    pub last_heartbeat_ms: Option<u64>,
    /// How long ago that was, in ms.
    pub heartbeat_age_ms: Option<u64>,
    /// The images it holds unpacked, most recently used first, as its agent last
    /// reported them (placement prefers it for these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
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
            cpu_on_gpu: worker.pool.cpu_on_gpu.map(CpuReserveView::from),
            status: worker.status,
            total: worker.total.into(),
            free: worker.free.into(),
            gpu_type: worker.gpu_type.as_ref().map(ToString::to_string),
            gpus: worker
                .gpus
                .iter()
                .map(|g| DeviceStateView {
                    device: DeviceView::from(&g.device),
                    free_milli: g.free_milli,
                })
                .collect(),
            runtime: worker.runtime.clone(),
            version: worker.version,
            epoch: worker.epoch,
            last_heartbeat_ms,
            heartbeat_age_ms: last_heartbeat_ms.map(|at| now_ms.saturating_sub(at)),
            images: worker.images.clone(),
        }
    }
}

/// What a GPU worker keeps free for GPU work while CPU-only requests run on it (see
/// [`PoolAttributes::cpu_on_gpu`]): a CPU-only request goes there only if the worker's free
/// capacity less the request stays at or above both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuReserveView {
    /// CPU millicores kept free.
    pub cpu_millicores: u64,
    /// Memory MiB kept free.
    pub memory_mib: u64,
}

impl From<CpuReserve> for CpuReserveView {
    fn from(reserve: CpuReserve) -> Self {
        CpuReserveView {
            cpu_millicores: reserve.cpu_millicores,
            memory_mib: reserve.memory_mib,
        }
    }
}

impl From<CpuReserveView> for CpuReserve {
    fn from(view: CpuReserveView) -> Self {
        CpuReserve {
            cpu_millicores: view.cpu_millicores,
            memory_mib: view.memory_mib,
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
    /// The GPU devices it holds shares of (none for a container without GPUs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceShareView>,
}

impl From<OwnedEntry> for OwnedView {
    fn from(entry: OwnedEntry) -> Self {
        OwnedView {
            container: entry.container,
            attempt: entry.attempt,
            devices: entry.devices.iter().map(DeviceShareView::from).collect(),
        }
    }
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
    /// The containers it owns that hold a share of a device this registration reports
    /// unhealthy. They are not stopped: the scheduler books nothing more on the device, and
    /// whether a container can go on without it is the container's (or its owner's) call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub on_unhealthy_gpus: Vec<ContainerId>,
    /// The worker's own credential, when this registration issued one (a registration
    /// with a join token or an admin token; one with the worker's own credential keeps
    /// it). Every later call of the worker's agent carries it as its bearer token; the
    /// worker's earlier credentials are revoked. Shown only here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// One worker with the containers it owns and the GPU devices each holds, so that an
/// operator sees who uses a device (e.g. one reported unhealthy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerDetail {
    /// The worker.
    pub worker: WorkerView,
    /// The containers it owns, by id, with their devices.
    pub owned: Vec<OwnedView>,
}

/// A list of workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers, by id.
    pub workers: Vec<WorkerView>,
    /// Workers whose stored record does not read back (a corrupt field, a key of the wrong
    /// type, a bad id in the index): set aside from scheduling until they register again.
    /// Each names the key or entry and what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<super::ViolationView>,
}

/// A worker's GPUs at registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerGpu {
    /// How many GPUs, at least 1: every device, healthy or not.
    pub count: u32,
    /// Their type (all of a worker's GPUs are of one type), e.g. `A100-40`.
    #[serde(rename = "type")]
    pub gpu_type: String,
    /// The devices, one per GPU, if the worker knows them (`berth worker --gpu auto`);
    /// absent: devices 0 to `count - 1`, details unknown, all healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceView>,
}

/// One GPU device of a worker, as it registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceView {
    /// Its index on the worker (`nvidia-smi`'s, and `/dev/nvidia<index>`).
    pub index: u32,
    /// Its UUID, if known (1 to 64 letters, digits, `-`, `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Its memory in MiB (0: unknown).
    #[serde(default)]
    pub memory_mib: u64,
    /// False when the worker found it unhealthy: it is not booked.
    pub healthy: bool,
}

/// One GPU device of a registered worker and what of it is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceStateView {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceView,
    /// Its free milli-GPUs (1000 is the whole device).
    pub free_milli: u32,
}

/// What a worker agent says about itself when it (re-)registers. If `pool` names a pool of
/// the server's configuration, the pool's attributes come from there (attributes given
/// here must then agree with it); otherwise they come from here, with defaults (priority 0,
/// not preemptible, no selector required, `spread`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWorker {
    /// The worker's id.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", min_length = 1, max_length = 128)]
    pub id: WorkerId,
    /// Its pool's name.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
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
    /// Lets CPU-only requests use the pool's GPU workers, each keeping this much free for
    /// GPU work. Absent: as configured for the pool, or (for a pool not configured) GPU
    /// requests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_on_gpu: Option<CpuReserveView>,
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
    /// The container runtime it runs containers with: lowercase ASCII letters, digits and
    /// `-`, 1 to 32 characters, e.g. `process` or `runc`. Absent (an agent older than the
    /// field): `process`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "runc")]
    pub runtime: Option<String>,
    /// The images it holds unpacked already (a restarted worker keeps its cache), as
    /// heartbeats report them: as requests name them, most recently used first, at most
    /// 64, each 1 to 512 bytes without whitespace. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub images: Option<Vec<String>>,
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
            cpu_on_gpu: None,
            status: None,
            cpu_millicores,
            memory_mib,
            gpu: None,
            runtime: None,
            images: None,
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
                cpu_on_gpu: self.cpu_on_gpu.map(CpuReserve::from),
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
        let (gpu_count, gpu_type, devices) = match &self.gpu {
            None => (0, None, Vec::new()),
            Some(gpu) => {
                check_capacity("gpu.count", gpu.count.into(), MAX_GPU_COUNT.into())?;
                let ty = parse_gpu_type("gpu.type", &gpu.gpu_type)?;
                let devices = gpu.devices.iter().map(|d| d.to_device(&ty)).collect();
                (gpu.count, Some(ty), devices)
            }
        };
        let runtime = match &self.runtime {
            None => RuntimeName::PROCESS,
            Some(name) => RuntimeName::new(name.as_str())
                .map_err(|e| ApiError::invalid("runtime", e.to_string()))?,
        };
        WorkerRegistration {
            devices,
            id: self.id.clone(),
            pool,
            status,
            total: Resources::new(self.cpu_millicores, self.memory_mib, gpu_count),
            gpu_type,
            runtime,
        }
        .with_devices()
        .map_err(|e| ApiError::invalid("gpu.devices", e.to_string()))
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
        if let Some(r) = self
            .cpu_on_gpu
            .map(CpuReserve::from)
            .filter(|r| Some(*r) != configured.cpu_on_gpu)
        {
            return Err(differs(
                "cpu_on_gpu",
                r.as_text(),
                configured
                    .cpu_on_gpu
                    .map_or_else(|| "off".to_owned(), CpuReserve::as_text),
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

impl DeviceView {
    /// The device of type `gpu_type` this view describes.
    pub fn to_device(&self, gpu_type: &GpuType) -> GpuDevice {
        GpuDevice {
            index: self.index,
            gpu_type: gpu_type.clone(),
            memory_mib: self.memory_mib,
            uuid: self.uuid.clone(),
            healthy: self.healthy,
        }
    }
}

impl From<&GpuDevice> for DeviceView {
    fn from(device: &GpuDevice) -> DeviceView {
        DeviceView {
            index: device.index,
            uuid: device.uuid.clone(),
            memory_mib: device.memory_mib,
            healthy: device.healthy,
        }
    }
}
