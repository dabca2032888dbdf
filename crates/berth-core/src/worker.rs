//! Workers (the machines containers run on) and pools (groups of alike workers).

use crate::gpu_fit::DeviceSlot;
use crate::{
    DeviceShare, GPU_MILLI, GpuDevice, GpuType, PoolName, Resources, RuntimeName, WorkerId,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whether a worker takes new containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Up and taking containers.
    Available,
    /// Being provisioned; takes containers, but available workers are preferred.
    Pending,
    /// Finishing its containers; takes no new ones.
    Draining,
    /// Switched off by an operator; takes no new containers.
    Disabled,
    /// Missed its heartbeats for too long: presumed dead; its work was given back.
    Lost,
}

impl WorkerStatus {
    /// True when new containers may be placed on a worker in this status.
    pub fn accepts_work(self) -> bool {
        matches!(self, WorkerStatus::Available | WorkerStatus::Pending)
    }

    /// The status as stored and shown: `available`, `pending`, `draining`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Available => "available",
            WorkerStatus::Pending => "pending",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Disabled => "disabled",
            WorkerStatus::Lost => "lost",
        }
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a worker status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown worker status {0:?}; expected available, pending, draining, disabled or lost")]
pub struct WorkerStatusError(pub String);

impl FromStr for WorkerStatus {
    type Err = WorkerStatusError;
    fn from_str(s: &str) -> Result<Self, WorkerStatusError> {
        match s {
            "available" => Ok(WorkerStatus::Available),
            "pending" => Ok(WorkerStatus::Pending),
            "draining" => Ok(WorkerStatus::Draining),
            "disabled" => Ok(WorkerStatus::Disabled),
            "lost" => Ok(WorkerStatus::Lost),
            other => Err(WorkerStatusError(other.to_owned())),
        }
    }
}

/// How a pool chooses among equally good workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Prefer the worker with the most room left (worst fit): even load.
    #[default]
    Spread,
    /// Prefer the worker with the least room left after placing (best fit): fewer busy
    /// machines, so idle ones can be scaled down.
    Pack,
    /// Fragmentation-aware (GPU pools): where the placement grows the expected
    /// fragmentation of the pool's GPU demand least (see [`crate::gpu_fit`]), in the spirit
    /// of FGD (Weng et al., USENIX ATC '23). On workers without GPUs it packs.
    Fgd,
}

impl PlacementPolicy {
    /// The policy as stored and shown: `spread` or `pack`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::Spread => "spread",
            PlacementPolicy::Pack => "pack",
            PlacementPolicy::Fgd => "fgd",
        }
    }
}

/// A string that is not a placement policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placement policy {0:?}; expected spread, pack or fgd")]
pub struct PlacementPolicyError(pub String);

impl FromStr for PlacementPolicy {
    type Err = PlacementPolicyError;
    fn from_str(s: &str) -> Result<Self, PlacementPolicyError> {
        match s {
            "spread" => Ok(PlacementPolicy::Spread),
            "pack" => Ok(PlacementPolicy::Pack),
            "fgd" => Ok(PlacementPolicy::Fgd),
            other => Err(PlacementPolicyError(other.to_owned())),
        }
    }
}

/// The attributes a worker inherits from its pool, copied onto the worker when it registers
/// so that planning needs nothing but the workers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAttributes {
    /// The pool's name.
    pub pool: PoolName,
    /// Higher-priority pools are preferred.
    pub priority: i32,
    /// Workers of this pool may be reclaimed; non-preemptible requests never go there.
    pub preemptible: bool,
    /// Only requests that name this pool in their selector may go there.
    pub requires_pool_selector: bool,
    /// How to choose among the pool's workers.
    pub policy: PlacementPolicy,
    /// Whether CPU-only requests may run on the pool's GPU workers, and what each such worker
    /// keeps free for GPU work when they do. `None` (the default, and how a worker stored
    /// before the switch reads): never, so GPU workers stay whole for GPU requests. Set, a
    /// CPU-only request may take a GPU worker's idle cores, but only as long as the worker
    /// keeps at least the reserve free (see [`crate::rules::KeepsGpuReserve`]); CPU workers
    /// are still preferred (see [`crate::scoring::GroupScore`]).
    #[serde(default)]
    pub cpu_on_gpu: Option<CpuReserve>,
}

/// The CPU and memory a GPU worker keeps free for GPU requests while CPU-only requests run
/// on it: without it, CPU work could take every core of a GPU worker and leave its GPUs
/// unusable. A CPU-only request fits a GPU worker only if its free capacity less the request
/// stays at or above the reserve in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuReserve {
    /// CPU millicores kept free for GPU work.
    pub cpu_millicores: u64,
    /// Memory MiB kept free for GPU work.
    pub memory_mib: u64,
}

impl CpuReserve {
    /// The reserve as resources (no GPUs: CPU-only requests take none).
    pub fn as_resources(self) -> Resources {
        Resources::new(self.cpu_millicores, self.memory_mib, 0)
    }

    /// The reserve as stored and shown: `<cpu_millicores>,<memory_mib>`, e.g. `8000,32768`.
    pub fn as_text(self) -> String {
        format!("{},{}", self.cpu_millicores, self.memory_mib)
    }
}

impl fmt::Display for CpuReserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} millicores and {} MiB",
            self.cpu_millicores, self.memory_mib
        )
    }
}

/// A string that is not a CPU reserve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CPU reserve; expected <cpu_millicores>,<memory_mib>, e.g. 8000,32768")]
pub struct CpuReserveError(pub String);

impl FromStr for CpuReserve {
    type Err = CpuReserveError;
    fn from_str(s: &str) -> Result<Self, CpuReserveError> {
        let error = || CpuReserveError(s.to_owned());
        let (cpu, memory) = s.split_once(',').ok_or_else(error)?;
        Ok(CpuReserve {
            cpu_millicores: cpu.trim().parse().map_err(|_| error())?,
            memory_mib: memory.trim().parse().map_err(|_| error())?,
        })
    }
}

impl PoolAttributes {
    /// A pool without preferences: priority 0, not preemptible, open to every request,
    /// spreading its placements, its GPU workers (if any) for GPU requests only.
    pub fn plain(pool: PoolName) -> PoolAttributes {
        PoolAttributes {
            pool,
            priority: 0,
            preemptible: false,
            requires_pool_selector: false,
            policy: PlacementPolicy::Spread,
            cpu_on_gpu: None,
        }
    }
}

/// A worker machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// The worker's id.
    pub id: WorkerId,
    /// Its pool and the attributes inherited from it.
    pub pool: PoolAttributes,
    /// Whether it takes new containers.
    pub status: WorkerStatus,
    /// Everything the worker has.
    pub total: Resources,
    /// What is not reserved yet. Always at most `total`.
    pub free: Resources,
    /// The worker's one GPU type, if it has GPUs.
    pub gpu_type: Option<GpuType>,
    /// Its GPU devices and what is free on each. Empty on a record from before devices were
    /// kept: then [`Worker::device_slots`] derives them from the counts.
    #[serde(default)]
    pub gpus: Vec<WorkerGpu>,
    /// The container runtime it runs containers with, as it stated when it registered.
    pub runtime: RuntimeName,
    /// Bumped by every change of capacity or status; read by the lock-based commit paths.
    pub version: u64,
    /// The worker's lease: bumped by every registration and when the worker is declared
    /// lost. The agent's calls carry the epoch it registered under, and the store refuses
    /// those of an older one (fencing a worker that was presumed dead and came back).
    pub epoch: u64,
    /// The images it holds unpacked, as requests name them (most recently used first, at
    /// most [`MAX_WORKER_IMAGES`]), as its agent last reported them: placement prefers a
    /// worker that holds a request's image ([`crate::scoring::WARM_BONUS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

/// The most images a worker reports holding: enough for a serverless worker's working set,
/// few enough that the report stays small in every heartbeat and snapshot.
pub const MAX_WORKER_IMAGES: usize = 64;

/// The longest image reference a worker may report.
pub const MAX_IMAGE_REFERENCE: usize = 512;

/// Why a worker's list of held images is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageListError {
    /// More than [`MAX_WORKER_IMAGES`].
    #[error("lists {0} images; report at most {MAX_WORKER_IMAGES}, the most recently used")]
    TooMany(usize),
    /// An entry that is not a plausible image reference.
    #[error(
        "image {0} is empty, longer than {MAX_IMAGE_REFERENCE} bytes, or holds whitespace or a control character"
    )]
    BadReference(usize),
}

/// Checks a worker's report of the images it holds: at most [`MAX_WORKER_IMAGES`], each
/// a non-empty reference of at most [`MAX_IMAGE_REFERENCE`] bytes without whitespace or
/// control characters (so a list stores as lines).
pub fn check_images(images: &[String]) -> Result<(), ImageListError> {
    if images.len() > MAX_WORKER_IMAGES {
        return Err(ImageListError::TooMany(images.len()));
    }
    match images.iter().position(|image| !plausible_image(image)) {
        Some(index) => Err(ImageListError::BadReference(index)),
        None => Ok(()),
    }
}

/// True for a non-empty reference of at most [`MAX_IMAGE_REFERENCE`] bytes without
/// whitespace or control characters.
pub fn plausible_image(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= MAX_IMAGE_REFERENCE
        && !image.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// One GPU device of a worker and what of it is not booked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerGpu {
    /// The device.
    pub device: GpuDevice,
    /// Its free milli-GPUs, 0 to [`GPU_MILLI`].
    pub free_milli: u32,
}

impl Worker {
    /// True when the worker holds `image` unpacked (as it last reported).
    pub fn holds_image(&self, image: &str) -> bool {
        self.images.iter().any(|held| held == image)
    }

    /// True when the worker has at least one GPU.
    pub fn has_gpus(&self) -> bool {
        self.gpu_type.is_some() && self.total.gpu_count > 0
    }

    /// Books `shares` on its devices, all or nothing: false (and nothing changed) when a
    /// share names a device it cannot book (unknown or unhealthy) or more than the device has
    /// free (a whole share needs a wholly free device). Its free GPU count then counts the
    /// wholly free healthy devices.
    pub fn book_devices(&mut self, shares: &[DeviceShare]) -> bool {
        let mut gpus = self.gpus.clone();
        for share in shares {
            let Some(gpu) = gpus
                .iter_mut()
                .find(|g| g.device.index == share.index && g.device.healthy)
            else {
                return false;
            };
            let Some(left) = gpu.free_milli.checked_sub(share.milli) else {
                return false;
            };
            gpu.free_milli = left;
        }
        self.gpus = gpus;
        self.count_free_gpus();
        true
    }

    /// Credits `shares` back to its devices, all or nothing: false (and nothing changed)
    /// when a credit would raise a device above the whole. A share on a device it no
    /// longer lists is dropped (nothing to credit).
    pub fn credit_devices(&mut self, shares: &[DeviceShare]) -> bool {
        let mut gpus = self.gpus.clone();
        for share in shares {
            if let Some(gpu) = gpus.iter_mut().find(|g| g.device.index == share.index) {
                match gpu.free_milli.checked_add(share.milli) {
                    Some(free) if free <= GPU_MILLI => gpu.free_milli = free,
                    _ => return false,
                }
            }
        }
        self.gpus = gpus;
        self.count_free_gpus();
        true
    }

    /// Sets what is free on each device to the whole less `owned`, the shares its
    /// containers hold (healthy or not), as a (re-)registration finds them. Fails with
    /// the first device whose shares exceed the whole (nothing changed then). A share on a
    /// device it does not list is dropped: nothing there to account.
    pub fn account_owned_devices(&mut self, owned: &[DeviceShare]) -> Result<(), u32> {
        let mut gpus = self.gpus.clone();
        for gpu in &mut gpus {
            gpu.free_milli = GPU_MILLI;
        }
        for share in owned {
            if let Some(gpu) = gpus.iter_mut().find(|g| g.device.index == share.index) {
                gpu.free_milli = gpu.free_milli.checked_sub(share.milli).ok_or(share.index)?;
            }
        }
        self.gpus = gpus;
        self.count_free_gpus();
        Ok(())
    }

    /// Sets the free GPU count to the wholly free healthy devices (with a device list).
    fn count_free_gpus(&mut self) {
        if !self.gpus.is_empty() {
            let whole = self
                .gpus
                .iter()
                .filter(|g| g.device.healthy && g.free_milli >= GPU_MILLI)
                .count();
            self.free.gpu_count = u32::try_from(whole).unwrap_or(u32::MAX);
        }
    }

    /// The devices it can book (the healthy ones) with their free milli-GPUs, by index.
    /// A worker without a device list (a record from before devices were kept) has devices
    /// 0 to `total.gpu_count - 1`, the first `free.gpu_count` of them wholly free.
    pub fn device_slots(&self) -> Vec<DeviceSlot> {
        if !self.has_gpus() {
            return Vec::new();
        }
        if self.gpus.is_empty() {
            return (0..self.total.gpu_count)
                .map(|index| DeviceSlot {
                    index,
                    free: if index < self.free.gpu_count {
                        GPU_MILLI
                    } else {
                        0
                    },
                })
                .collect();
        }
        let mut slots: Vec<DeviceSlot> = self
            .gpus
            .iter()
            .filter(|gpu| gpu.device.healthy)
            .map(|gpu| DeviceSlot {
                index: gpu.device.index,
                free: gpu.free_milli.min(GPU_MILLI),
            })
            .collect();
        slots.sort_by_key(|slot| slot.index);
        slots
    }
}

/// A pool: a named group of alike workers, and the size of worker an autoscaler would add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Name, priority, preemptibility, selector rule and policy.
    pub attributes: PoolAttributes,
    /// The GPU type of the pool's workers, if they have GPUs.
    pub gpu_type: Option<GpuType>,
    /// The capacity of one worker an autoscaler would add to this pool.
    pub worker_size: Resources,
    /// Steps every request that selects this pool may fall back to, each after its wait
    /// (see [`crate::fallback`]). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<crate::FallbackStep>,
}

/// What a worker says about itself when it (re-)registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// The worker's id.
    pub id: WorkerId,
    /// Its pool and the attributes it inherits from the pool.
    pub pool: PoolAttributes,
    /// The status to register with (usually available).
    pub status: WorkerStatus,
    /// Its whole capacity.
    pub total: Resources,
    /// Its GPU type, if it has GPUs.
    pub gpu_type: Option<GpuType>,
    /// Its GPU devices (empty: devices 0 to `total.gpu_count - 1` of `gpu_type`, details
    /// unknown).
    #[serde(default)]
    pub devices: Vec<GpuDevice>,
    /// The container runtime it runs containers with ([`RuntimeName::PROCESS`] for an agent
    /// that does not say).
    pub runtime: RuntimeName,
}

impl WorkerRegistration {
    /// The registration with its device list complete and checked: a worker that counts
    /// GPUs without listing them gets [`GpuDevice::unlisted`] devices; a listed one must
    /// list each GPU once, of the worker's type. A worker without GPUs lists none.
    pub fn with_devices(mut self) -> Result<WorkerRegistration, crate::DeviceError> {
        let count = if self.gpu_type.is_some() {
            self.total.gpu_count
        } else {
            0
        };
        match &self.gpu_type {
            Some(ty) if self.devices.is_empty() => {
                self.devices = GpuDevice::unlisted(ty, count);
            }
            Some(ty) => {
                for device in &mut self.devices {
                    if device.gpu_type != *ty {
                        return Err(crate::DeviceError::MixedTypes {
                            index: device.index,
                            expected: ty.clone(),
                            found: device.gpu_type.clone(),
                        });
                    }
                }
            }
            None => {}
        }
        if u32::try_from(self.devices.len()) != Ok(count) {
            return Err(crate::DeviceError::CountMismatch {
                count,
                listed: self.devices.len(),
            });
        }
        GpuDevice::validate_all(&self.devices)?;
        Ok(self)
    }

    /// The worker this registration describes, with the given free capacity, version and
    /// epoch (a store's bookkeeping). Its listed devices start wholly free as far as
    /// `free`'s GPU count goes (lowest indices first, healthy ones only), the rest fully
    /// booked; a store that keeps per-device state then sets each device's own. The free
    /// GPU count is then the wholly free healthy devices.
    pub fn into_worker(self, free: Resources, version: u64, epoch: u64) -> Worker {
        let mut worker = Worker {
            images: Vec::new(),
            id: self.id,
            pool: self.pool,
            status: self.status,
            total: self.total,
            free,
            gpus: devices_with_free(self.devices, free.gpu_count),
            gpu_type: self.gpu_type,
            runtime: self.runtime,
            version,
            epoch,
        };
        worker.count_free_gpus();
        worker
    }
}

/// `devices` with the first `whole_free` of them (by index) wholly free and the rest fully
/// booked: per-device state from the aggregate count, for a worker whose store has only the
/// count.
fn devices_with_free(mut devices: Vec<GpuDevice>, whole_free: u32) -> Vec<WorkerGpu> {
    devices.sort_by_key(|device| device.index);
    let mut left = whole_free;
    devices
        .into_iter()
        .map(|device| {
            let free = left > 0 && device.healthy;
            if free {
                left -= 1;
            }
            WorkerGpu {
                device,
                free_milli: if free { GPU_MILLI } else { 0 },
            }
        })
        .collect()
}
