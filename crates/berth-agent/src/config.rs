//! The agent's configuration, and the host capacity it registers.

use crate::error::AgentError;
use crate::gpu::{self, GpuDetectError};
use crate::retry::RetryPolicy;
use crate::runtime::runc::BindMount;
use crate::runtime::{ProcessRuntimeConfig, RuncConfig};
use berth_core::{GpuDevice, GpuType, PoolName, Resources, WorkerId};
use berth_image::RegistryOptions;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// The capacity a worker registers. CPU and memory left `None` are detected on the host;
/// GPUs are detected only when [`GpuConfig::Detect`] says so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityConfig {
    /// CPU in millicores; detected: 1000 per CPU the agent may use.
    pub cpu_millicores: Option<u64>,
    /// Memory in MiB; detected: the host's memory, or its cgroup's limit when lower.
    pub memory_mib: Option<u64>,
    /// Where the worker's GPUs come from (default: it has none).
    pub gpus: GpuConfig,
}

/// Where a worker's GPU devices come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GpuConfig {
    /// The worker has no GPUs.
    #[default]
    None,
    /// `count` devices of `gpu_type` as the operator declares them (`--gpu A10G:2`):
    /// indices 0 to `count - 1`, memory and UUID unknown, all healthy. For a worker whose
    /// GPUs cannot be queried, and for tests.
    Declared {
        /// Their type.
        gpu_type: GpuType,
        /// How many (above 0).
        count: u32,
    },
    /// Detected at startup by running this `nvidia-smi` (`--gpu auto`; a name without a
    /// slash is looked up on `PATH`), then run again every
    /// [`AgentConfig::gpu_check_every`] to follow the devices' health. Finding no healthy
    /// GPU at startup is an error: the operator asked for GPUs.
    Detect {
        /// The program to run.
        nvidia_smi: PathBuf,
    },
}

impl GpuConfig {
    /// [`GpuConfig::Detect`] with `nvidia-smi` from `PATH`.
    pub fn detect() -> GpuConfig {
        GpuConfig::Detect {
            nvidia_smi: PathBuf::from("nvidia-smi"),
        }
    }

    /// The worker's devices: none, the declared ones, or the detected ones (checked to be
    /// one worker's, with at least one healthy).
    pub fn devices(&self) -> Result<Vec<GpuDevice>, AgentError> {
        match self {
            GpuConfig::None => Ok(Vec::new()),
            GpuConfig::Declared { gpu_type, count } => declared(gpu_type, *count),
            GpuConfig::Detect { nvidia_smi } => {
                let (program, devices) = detect_all(nvidia_smi)?;
                if !devices.iter().any(|device| device.healthy) {
                    return Err(AgentError::NoGpus {
                        program: program.display().to_string(),
                        unhealthy: devices.len(),
                    });
                }
                Ok(devices)
            }
        }
    }

    /// The devices as they are now, for the periodic health check: `None` when the
    /// devices are not detected (declared devices have no health to follow). Unlike
    /// [`GpuConfig::devices`], every device may be unhealthy: that is a state to report.
    pub fn probe(&self) -> Option<Result<Vec<GpuDevice>, AgentError>> {
        match self {
            GpuConfig::Detect { nvidia_smi } => {
                Some(detect_all(nvidia_smi).map(|(_, devices)| devices))
            }
            GpuConfig::None | GpuConfig::Declared { .. } => None,
        }
    }
}

fn declared(gpu_type: &GpuType, count: u32) -> Result<Vec<GpuDevice>, AgentError> {
    if count == 0 {
        return Err(config_error(format!(
            "{count} GPUs of type {gpu_type} declared: declare at least one, or none at all"
        )));
    }
    Ok((0..count)
        .map(|index| GpuDevice {
            index,
            gpu_type: gpu_type.clone(),
            memory_mib: 0,
            uuid: None,
            healthy: true,
        })
        .collect())
}

/// The program found on `PATH` and every device it lists.
fn detect_all(nvidia_smi: &Path) -> Result<(PathBuf, Vec<GpuDevice>), AgentError> {
    let path = std::env::var_os("PATH");
    let program =
        gpu::find_program(nvidia_smi, path.as_deref()).ok_or_else(|| GpuDetectError::NotFound {
            program: format!("{} on PATH", nvidia_smi.display()),
        })?;
    let devices = gpu::detect_nvidia(&program)?;
    Ok((program, devices))
}

/// What a worker registers, resolved from a [`CapacityConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCapacity {
    /// Its total capacity; `gpu_count` is the number of devices, healthy or not (the
    /// scheduler books only the healthy ones).
    pub total: Resources,
    /// The type of its GPUs, `None` without GPUs.
    pub gpu_type: Option<GpuType>,
    /// Every device, unhealthy ones too: the runtimes resolve a container's device shares
    /// against them.
    pub gpus: Vec<GpuDevice>,
}

impl CapacityConfig {
    /// The capacity to register and the GPU devices: configured values, the rest
    /// detected. Detecting GPUs runs `nvidia-smi`, which blocks for as long as it takes
    /// (at most [`gpu::DETECT_TIMEOUT`]).
    pub fn resolve(&self) -> Result<ResolvedCapacity, AgentError> {
        let gpus = self.gpus.devices()?;
        let gpu_type = gpus.first().map(|device| device.gpu_type.clone());
        let host = match (self.cpu_millicores, self.memory_mib) {
            (Some(cpu), Some(memory)) => Resources::new(cpu, memory, 0),
            _ => detect_host()?,
        };
        let total = Resources::new(
            self.cpu_millicores.unwrap_or(host.cpu_millicores),
            self.memory_mib.unwrap_or(host.memory_mib),
            u32::try_from(gpus.len()).unwrap_or(u32::MAX),
        );
        if total.cpu_millicores == 0 || total.memory_mib == 0 {
            return Err(config_error(format!(
                "the capacity {total} has no CPU or memory"
            )));
        }
        Ok(ResolvedCapacity {
            total,
            gpu_type,
            gpus,
        })
    }
}

/// The CPU (1000 millicores per usable CPU) and memory (MiB; the cgroup's limit when lower
/// than the host's) of this host, without GPUs.
pub fn detect_host() -> Result<Resources, AgentError> {
    let refresh = RefreshKind::nothing()
        .with_cpu(CpuRefreshKind::nothing())
        .with_memory(MemoryRefreshKind::nothing().with_ram());
    let system =
        System::new_with_specifics(refresh).map_err(|err| AgentError::Detect(err.to_string()))?;
    let mut cpus = system.cpus().len();
    if let Ok(usable) = std::thread::available_parallelism() {
        cpus = if cpus == 0 {
            usable.get()
        } else {
            cpus.min(usable.get())
        };
    }
    let mut memory = system.total_memory();
    if let Some(limits) = system.cgroup_limits()
        && limits.total_memory > 0
    {
        memory = memory.min(limits.total_memory);
    }
    let cpu_millicores = u64::try_from(cpus).unwrap_or(u64::MAX / 1000) * 1000;
    Ok(Resources::new(cpu_millicores, memory / (1024 * 1024), 0))
}

fn config_error(message: impl Into<String>) -> AgentError {
    AgentError::Config(message.into())
}

/// Which runtime runs the worker's containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// runc if it can be run on this host, else the process runtime (with a warning).
    #[default]
    Auto,
    /// runc: OCI bundles with the booked limits enforced. The agent refuses to start
    /// without runc.
    Runc,
    /// A plain process group on the host, nothing enforced: for development.
    Process,
}

impl fmt::Display for RuntimeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeChoice::Auto => "auto",
            RuntimeChoice::Runc => "runc",
            RuntimeChoice::Process => "process",
        })
    }
}

impl FromStr for RuntimeChoice {
    type Err = AgentError;

    fn from_str(value: &str) -> Result<RuntimeChoice, AgentError> {
        match value {
            "auto" => Ok(RuntimeChoice::Auto),
            "runc" => Ok(RuntimeChoice::Runc),
            "process" => Ok(RuntimeChoice::Process),
            other => Err(config_error(format!(
                "unknown runtime {other:?}: choose runc, process or auto (runc where installed)"
            ))),
        }
    }
}

/// Everything the agent needs to know. [`AgentConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:7070`.
    pub server_url: String,
    /// This worker's id.
    pub worker_id: WorkerId,
    /// The pool it joins.
    pub pool: PoolName,
    /// What it registers.
    pub capacity: CapacityConfig,
    /// Where containers get their working directories (created if missing).
    pub work_dir: PathBuf,
    /// How often it heartbeats (default 1 s).
    pub heartbeat_every: Duration,
    /// How often detected GPUs ([`GpuConfig::Detect`]) are queried again for their health
    /// (default 30 s); a change registers the worker again with the new health.
    pub gpu_check_every: Duration,
    /// How long one long-poll for assignments waits on the server (default 20 s).
    pub poll_wait: Duration,
    /// At most this many assignments per poll (default 64).
    pub poll_max: u32,
    /// On shutdown, how long running containers may go on before they are killed
    /// (default 30 s).
    pub grace: Duration,
    /// On shutdown, how long the final reports of the killed containers may take before
    /// the agent gives up on them (default 30 s).
    pub report_timeout: Duration,
    /// The timeout of a container whose request does not set `BERTH_TIMEOUT_SECS`
    /// (default 1 hour).
    pub default_timeout: Duration,
    /// How long a container may take to stop after SIGTERM before SIGKILL (default 5 s).
    pub stop_grace: Duration,
    /// How many lines of output are kept and reported per container (default 1000).
    pub log_lines: usize,
    /// How often a running container's new output lines are sent to the server
    /// (default 5 s; `None`: only with the final status).
    pub log_flush_every: Option<Duration>,
    /// The most bytes of output lines one report carries; the oldest lines are left out
    /// beyond it (default 256 KiB, well under the server's body limit).
    pub max_report_log_bytes: usize,
    /// How long one call to the server may take (a long-poll adds its wait; default 10 s).
    pub call_timeout: Duration,
    /// Longer output lines are cut to this many bytes (default 16 KiB).
    pub max_line_bytes: usize,
    /// How calls to an unavailable server are retried.
    pub retry: RetryPolicy,
    /// How many times deregistration is tried while the server still sees containers on
    /// the worker (default 10).
    pub deregister_attempts: u32,
    /// The container runtime (default [`RuntimeChoice::Auto`]: runc where installed).
    pub runtime: RuntimeChoice,
    /// The runc binary (default `runc`, looked up on `PATH`).
    pub runc: PathBuf,
    /// Give containers the host's network namespace instead of an own one (a pool's
    /// opt-in; default false).
    pub host_network: bool,
    /// The most processes and threads one container may have under runc (default 4096).
    pub pids_limit: i64,
    /// Host paths bound into every container under runc (default none).
    pub mounts: Vec<BindMount>,
    /// The most bytes the image cache keeps of images not in use (default 20 GiB).
    pub image_cache_limit: u64,
    /// How registries are reached: a docker `config.json` with credentials (default
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` if present) and the
    /// registries reached over plain HTTP besides loopback ones (default none).
    pub registry: RegistryOptions,
    /// The join token the worker registers with the first time (default none: a server
    /// that needs one refuses the registration). The registration answers with the
    /// worker's own credential, kept in [`AgentConfig::credential_file`].
    pub join_token: Option<berth_core::Token>,
}

impl AgentConfig {
    /// Where the worker's own credential is kept between runs: `credential.<worker id>` in
    /// the work directory, readable by its owner only. Named by the id because a work
    /// directory outlives a worker id (a machine's next worker may take a new id and find
    /// the old one's credential, which may not act for it).
    pub fn credential_file(&self) -> PathBuf {
        self.work_dir.join(format!("credential.{}", self.worker_id))
    }

    /// A configuration with the defaults, capacity detected.
    pub fn new(
        server_url: impl Into<String>,
        worker_id: WorkerId,
        pool: PoolName,
        work_dir: impl Into<PathBuf>,
    ) -> AgentConfig {
        let runtime = ProcessRuntimeConfig::new(PathBuf::new());
        let runc = RuncConfig::new(PathBuf::new(), worker_id.as_str());
        AgentConfig {
            server_url: server_url.into(),
            worker_id,
            pool,
            capacity: CapacityConfig::default(),
            work_dir: work_dir.into(),
            heartbeat_every: Duration::from_secs(1),
            gpu_check_every: Duration::from_secs(30),
            poll_wait: Duration::from_secs(20),
            poll_max: 64,
            grace: Duration::from_secs(30),
            report_timeout: Duration::from_secs(30),
            default_timeout: runtime.default_timeout,
            stop_grace: runtime.stop_grace,
            log_lines: runtime.log_lines,
            log_flush_every: Some(Duration::from_secs(5)),
            max_report_log_bytes: 256 * 1024,
            call_timeout: Duration::from_secs(10),
            max_line_bytes: runtime.max_line_bytes,
            retry: RetryPolicy::default(),
            deregister_attempts: 10,
            runtime: RuntimeChoice::default(),
            runc: runc.runc,
            host_network: runc.host_network,
            pids_limit: runc.pids_limit,
            mounts: runc.mounts,
            image_cache_limit: runc.image_cache_limit,
            registry: runc.registry,
            join_token: None,
        }
    }

    /// The process runtime's part of this configuration, without GPU devices (they are
    /// resolved from [`AgentConfig::capacity`]; [`crate::runtime_for`] adds them).
    pub fn process_runtime(&self) -> ProcessRuntimeConfig {
        ProcessRuntimeConfig {
            work_dir: self.work_dir.clone(),
            default_timeout: self.default_timeout,
            stop_grace: self.stop_grace,
            log_lines: self.log_lines,
            max_line_bytes: self.max_line_bytes,
            // The devices come from the resolved capacity: see `crate::runtime_for`.
            gpus: Vec::new(),
        }
    }

    /// The runc runtime's part of this configuration: its directory is `work_dir/runc`,
    /// its images are in `work_dir/images`; without GPU devices (they are resolved from
    /// [`AgentConfig::capacity`]; [`crate::runtime_for`] adds them).
    pub fn runc_runtime(&self) -> RuncConfig {
        let mut config = RuncConfig::new(self.work_dir.join("runc"), self.worker_id.as_str());
        config.runc = self.runc.clone();
        config.images = self.work_dir.join("images");
        config.default_timeout = self.default_timeout;
        config.stop_grace = self.stop_grace;
        config.log_lines = self.log_lines;
        config.max_line_bytes = self.max_line_bytes;
        config.pids_limit = self.pids_limit;
        config.host_network = self.host_network;
        config.mounts = self.mounts.clone();
        config.image_cache_limit = self.image_cache_limit;
        config.registry = self.registry.clone();
        config
    }

    /// Checks the values that would make the agent misbehave.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.heartbeat_every.is_zero() {
            return Err(config_error("heartbeat_every must be above 0"));
        }
        if self.gpu_check_every.is_zero() {
            return Err(config_error("gpu_check_every must be above 0"));
        }
        if self.log_flush_every.is_some_and(|every| every.is_zero()) {
            return Err(config_error("log_flush_every must be above 0"));
        }
        if self.call_timeout.is_zero() {
            return Err(config_error("call_timeout must be above 0"));
        }
        if self.poll_wait < Duration::from_millis(100) {
            return Err(config_error(
                "poll_wait must be at least 100 ms: assignments are long-polled",
            ));
        }
        if self.pids_limit < 1 {
            return Err(config_error("pids_limit must be at least 1"));
        }
        if self.poll_max == 0 {
            return Err(config_error("poll_max must be above 0"));
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return Err(config_error(
                "retry.initial must be above 0 and at most retry.max",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn detects_some_cpu_and_memory() {
        let host = detect_host().unwrap();
        assert!(host.cpu_millicores >= 1000);
        assert!(host.memory_mib > 0);
        assert_eq!(host.gpu_count, 0);
    }

    #[test]
    fn configured_values_win_and_declared_gpus_are_devices() {
        let mut capacity = CapacityConfig {
            cpu_millicores: Some(4000),
            memory_mib: Some(8192),
            gpus: GpuConfig::Declared {
                gpu_type: GpuType::H100,
                count: 2,
            },
        };
        let resolved = capacity.resolve().unwrap();
        assert_eq!(resolved.total, Resources::new(4000, 8192, 2));
        assert_eq!(resolved.gpu_type, Some(GpuType::H100));
        let indices: Vec<u32> = resolved.gpus.iter().map(|d| d.index).collect();
        assert_eq!(indices, [0, 1]);
        assert!(resolved.gpus.iter().all(|d| d.healthy && d.uuid.is_none()));
        capacity.gpus = GpuConfig::Declared {
            gpu_type: GpuType::T4,
            count: 0,
        };
        assert!(matches!(capacity.resolve(), Err(AgentError::Config(_))));
    }

    fn fake_smi(dir: &Path, rows: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("nvidia-smi");
        std::fs::write(&path, format!("#!/bin/sh\ncat <<'EOF'\n{rows}EOF\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn detected_gpus_register_every_device_unhealthy_ones_marked() {
        let dir = tempfile::tempdir().unwrap();
        let rows = "index, uuid, name, memory.total [MiB]\n\
            0, GPU-a, NVIDIA L4, 23034 MiB\n\
            1, GPU-b, NVIDIA L4, [GPU requires reset]\n\
            2, GPU-c, NVIDIA L4, 23034 MiB\n";
        let capacity = CapacityConfig {
            cpu_millicores: Some(1000),
            memory_mib: Some(1024),
            gpus: GpuConfig::Detect {
                nvidia_smi: fake_smi(dir.path(), rows),
            },
        };
        let resolved = capacity.resolve().unwrap();
        // All three count; the scheduler books only the healthy ones.
        assert_eq!(resolved.total.gpu_count, 3);
        assert_eq!(resolved.gpu_type, Some(GpuType::L4));
        assert_eq!(resolved.gpus.len(), 3);
        assert!(!resolved.gpus[1].healthy);
    }

    #[test]
    fn detecting_no_healthy_gpu_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, unhealthy) in [
            ("index, uuid, name, memory.total [MiB]\n", 0),
            ("0, [N/A], ERR!, ERR!\n", 1),
        ] {
            let capacity = CapacityConfig {
                cpu_millicores: Some(1000),
                memory_mib: Some(1024),
                gpus: GpuConfig::Detect {
                    nvidia_smi: fake_smi(dir.path(), rows),
                },
            };
            let err = capacity.resolve().unwrap_err();
            assert!(
                matches!(&err, AgentError::NoGpus { unhealthy: n, .. } if *n == unhealthy),
                "{err}"
            );
        }
        let missing = CapacityConfig {
            gpus: GpuConfig::Detect {
                nvidia_smi: dir.path().join("absent"),
            },
            ..CapacityConfig::default()
        };
        let err = missing.resolve().unwrap_err();
        assert!(
            matches!(err, AgentError::GpuDetect(GpuDetectError::NotFound { .. })),
            "{err}"
        );
    }

    #[test]
    fn runtime_choices_parse_and_explain_a_typo() {
        for choice in [
            RuntimeChoice::Auto,
            RuntimeChoice::Runc,
            RuntimeChoice::Process,
        ] {
            assert_eq!(choice.to_string().parse::<RuntimeChoice>().unwrap(), choice);
        }
        let err = "runsc".parse::<RuntimeChoice>().unwrap_err().to_string();
        assert!(err.contains("runc, process or auto"), "{err}");
    }

    #[test]
    fn detection_fills_what_is_not_configured() {
        let capacity = CapacityConfig {
            cpu_millicores: Some(1500),
            ..CapacityConfig::default()
        };
        let resolved = capacity.resolve().unwrap();
        assert_eq!(resolved.total.cpu_millicores, 1500);
        assert!(resolved.total.memory_mib > 0);
        assert_eq!(resolved.gpu_type, None);
        assert!(resolved.gpus.is_empty());
    }
}
