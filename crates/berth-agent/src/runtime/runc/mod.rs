//! [`RuncRuntime`]: runs each container as an OCI bundle under runc, with the booked CPU,
//! memory and pids enforced by its cgroup, in its own namespaces, as an unprivileged user.
//!
//! ## How a container runs
//! 1. Its image is prepared once per worker ([`berth_image::ImageStore`]) and shared
//!    read-only; no image means berth's default root filesystem (a static busybox).
//! 2. A bundle is written (`bundle.rs`): config.json from `spec.rs`, berth's own metadata,
//!    and a writable `/work` owned by the container's user.
//! 3. A shim (`/bin/sh` in its own process group) runs `runc run --keep` with the
//!    container's stdout and stderr on a file in the bundle, and writes runc's exit status
//!    to the bundle when it returns. The shim, not the agent, is the container's parent,
//!    so a container outlives a crash of the agent, and a restarted agent adopts it
//!    ([`ContainerRuntime::adopt`]) with its output, its deadline and its exit status.
//! 4. When it ends: the OOM counter of its memory cgroup is read (an OOM kill is reported
//!    as `oom_killed`), then `runc delete` removes its cgroups and state, and the bundle
//!    is removed.
//!
//! Each agent keeps its own runc state root (`<dir>/state`) and cgroup parent
//! (`/berth/<worker>`), so agents sharing a host never touch each other's containers.

mod bundle;
mod cgroup;
mod cli;
mod devices;
mod follow;
mod handle;
mod spec;

pub use cgroup::CgroupVersion;
pub use devices::DeviceNode;
pub use spec::{BindMount, CPU_PERIOD_US, cpu_limits, memory_limit};

use crate::logs::{LogRing, SharedLog};
use crate::runtime::gpus::AssignedGpus;
use crate::runtime::{
    ContainerHandle, ContainerRuntime, ContainerSpec, ENV_ATTEMPT_ID, ENV_CONTAINER_ID,
    ENV_WORKER_ID, ImageLease, Leftover, StartError, timeout_for,
};
use async_trait::async_trait;
use berth_core::GpuDevice;
use berth_image::{ImageStore, PreparedImage, RegistryOptions};
use bundle::{Bundle, Meta};
use cli::Runc;
use handle::{Context, RuncHandle, Waiter};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::Command;
use tokio::time::{Instant, sleep};

/// The uid and gid a container runs as when its image names no user (`nobody`).
pub const UNPRIVILEGED: (u32, u32) = (65534, 65534);
/// How long a destroyed container's shim gets to write its exit file and end.
const SHIM_EXIT_WAIT: Duration = Duration::from_secs(5);
/// How often a starting container is checked for having started.
const START_POLL: Duration = Duration::from_millis(2);
/// The shim: runs runc in the foreground, then writes its exit status next to the bundle
/// (atomically, so a reader never sees half a number). `$0` is runc, `$1` its state root,
/// `$2` the bundle, `$3` the container id.
const SHIM: &str = r#""$0" --root "$1" run --keep --bundle "$2" --pid-file "$2/pid" "$3"
echo $? > "$2/exit.tmp" && mv "$2/exit.tmp" "$2/exit""#;

/// How [`RuncRuntime`] runs containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncConfig {
    /// The runc binary (a path, or a name looked up on `PATH`).
    pub runc: PathBuf,
    /// The runtime's own directory: runc's state root (`state/`) and the bundles
    /// (`bundles/`).
    pub dir: PathBuf,
    /// Where images are unpacked (shared by the worker's containers).
    pub images: PathBuf,
    /// The most bytes the image cache keeps of images not in use (default
    /// [`berth_image::DEFAULT_CACHE_LIMIT`], 20 GiB).
    pub image_cache_limit: u64,
    /// How registries are reached: credentials file (default `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json` if present), plain-HTTP registries (default none besides
    /// loopback ones).
    pub registry: RegistryOptions,
    /// The parent of every container's cgroup, e.g. `/berth/<worker>`.
    pub cgroup_parent: String,
    /// The timeout of a container whose request does not set one.
    pub default_timeout: Duration,
    /// How long a container may take to stop after SIGTERM before it gets SIGKILL.
    pub stop_grace: Duration,
    /// How long creating and starting a container may take.
    pub start_timeout: Duration,
    /// How many lines of output are kept per container.
    pub log_lines: usize,
    /// Longer output lines are cut to this many bytes.
    pub max_line_bytes: usize,
    /// The most processes and threads one container may have.
    pub pids_limit: i64,
    /// Share the host's network namespace (a pool's opt-in) instead of an own one with
    /// only a loopback interface.
    pub host_network: bool,
    /// Host paths bound into every container (chosen by the worker's operator).
    pub mounts: Vec<BindMount>,
    /// The worker's GPU devices, which containers' device shares refer to (default none).
    pub gpus: Vec<GpuDevice>,
    /// Where the host's device nodes are (default `/dev`): a container with GPUs gets its
    /// devices' `nvidia<index>` and the driver's shared nodes from here.
    pub device_dir: PathBuf,
}

impl RuncConfig {
    /// The defaults under `dir` for the worker `worker`: `runc` from `PATH`, images in
    /// `dir/images`, 1 hour timeout, 5 s stop grace, 30 s to start, 1000 lines of 16 KiB,
    /// 4096 pids, an own network namespace, no GPUs, device nodes from `/dev`.
    pub fn new(dir: impl Into<PathBuf>, worker: &str) -> RuncConfig {
        let dir = dir.into();
        RuncConfig {
            runc: PathBuf::from("runc"),
            images: dir.join("images"),
            image_cache_limit: berth_image::DEFAULT_CACHE_LIMIT,
            registry: RegistryOptions {
                auth_file: berth_image::default_auth_file(),
                insecure: Vec::new(),
            },
            dir,
            cgroup_parent: format!("/berth/{}", path_safe(worker)),
            default_timeout: Duration::from_secs(3600),
            stop_grace: Duration::from_secs(5),
            start_timeout: Duration::from_secs(30),
            log_lines: 1000,
            max_line_bytes: 16 * 1024,
            pids_limit: 4096,
            host_network: false,
            mounts: Vec::new(),
            gpus: Vec::new(),
            device_dir: PathBuf::from("/dev"),
        }
    }
}

/// Why the runc runtime could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuncSetupError {
    /// runc cannot be run.
    #[error(
        "cannot run {runc}: {message}; install runc (Debian: apt-get install runc) or choose the process runtime"
    )]
    NoRunc {
        /// The binary tried.
        runc: String,
        /// What went wrong.
        message: String,
    },
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The image store could not be opened.
    #[error("cannot open the image store: {0}")]
    Images(String),
}

/// Runs containers under runc. See the [module docs](self).
pub struct RuncRuntime {
    config: RuncConfig,
    context: Context,
}

impl std::fmt::Debug for RuncRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuncRuntime")
            .field("config", &self.config)
            .field("cgroups", &self.context.cgroups)
            .finish_non_exhaustive()
    }
}

impl RuncRuntime {
    /// Checks that runc runs, creates the directories, opens the image store and detects
    /// the cgroup hierarchy (logged).
    pub async fn new(config: RuncConfig) -> Result<RuncRuntime, RuncSetupError> {
        let runc = Runc::new(&config.runc, config.dir.join("state"));
        let version = runc.version().await.map_err(|err| RuncSetupError::NoRunc {
            runc: config.runc.display().to_string(),
            message: err.message,
        })?;
        for dir in [runc.root().to_path_buf(), config.dir.join("bundles")] {
            std::fs::create_dir_all(&dir).map_err(|source| RuncSetupError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let images = ImageStore::open(&config.images)
            .map_err(|err| RuncSetupError::Images(err.to_string()))?
            .with_registry(config.registry.clone())
            .with_cache_limit(config.image_cache_limit);
        let cgroups = CgroupVersion::detect();
        tracing::info!(%version, %cgroups, state = %runc.root().display(),
            host_network = config.host_network, "runc runtime ready");
        Ok(RuncRuntime {
            context: Context {
                runc,
                cgroups,
                stop_grace: config.stop_grace,
                images: Arc::new(images),
            },
            config,
        })
    }

    /// True if `runc` can be run.
    pub async fn available(runc: &Path) -> bool {
        Runc::new(runc, "/nonexistent").version().await.is_ok()
    }

    /// The cgroup hierarchy in use.
    pub fn cgroups(&self) -> CgroupVersion {
        self.context.cgroups
    }

    /// The configuration.
    pub fn config(&self) -> &RuncConfig {
        &self.config
    }

    /// The worker's image store (e.g. for [`ImageStore::held`] in heartbeats).
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.context.images
    }

    fn bundle(&self, id: &str) -> Bundle {
        Bundle::at(self.config.dir.join("bundles").join(id))
    }

    async fn prepare_image(&self, image: Option<&str>) -> Result<Arc<PreparedImage>, StartError> {
        let images = self.context.images.clone();
        let image = image.map(str::to_owned);
        tokio::task::spawn_blocking(move || images.prepare(image.as_deref()))
            .await
            .map_err(|err| StartError::Image(format!("preparing the image panicked: {err}")))?
            .map_err(|err| {
                if err.is_pull_failure() {
                    StartError::ImagePull(err.to_string())
                } else {
                    StartError::Image(err.to_string())
                }
            })
    }

    /// A lease on the prepared image `id` (an adopted container's, or one found held), if
    /// it is still there. Failures are logged: an adopted container runs on either way,
    /// and an image not leased is pulled.
    async fn lease_image(&self, id: Option<&str>) -> Option<Arc<PreparedImage>> {
        let images = self.context.images.clone();
        let id = id?.to_owned();
        match tokio::task::spawn_blocking(move || images.lease(&id)).await {
            Ok(Ok(image)) => image,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot lease a prepared image");
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, "leasing a prepared image panicked");
                None
            }
        }
    }

    /// Writes the bundle and starts the shim; the shim's child handle.
    fn launch(&self, id: &str, bundle: &Bundle) -> Result<tokio::process::Child, StartError> {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(bundle.output())
            .map_err(|err| StartError::Runtime(format!("cannot create the output file: {err}")))?;
        let stderr = output
            .try_clone()
            .map_err(|err| StartError::Runtime(format!("cannot share the output file: {err}")))?;
        Command::new("/bin/sh")
            .arg("-c")
            .arg(SHIM)
            .arg(self.context.runc.binary())
            .arg(self.context.runc.root())
            .arg(bundle.dir())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            // Its own process group: signals meant for the agent never reach it, and it
            // outlives the agent.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|err| StartError::Runtime(format!("cannot start the shim: {err}")))
    }

    /// Waits until runc wrote the pid file (the process runs) or the shim gave up.
    async fn await_start(
        &self,
        bundle: &Bundle,
        shim: &mut tokio::process::Child,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + self.config.start_timeout;
        loop {
            if bundle.started() {
                return Ok(());
            }
            if let Ok(Some(_)) = shim.try_wait() {
                if bundle.started() {
                    return Ok(()); // It started and already ended.
                }
                return Err(start_failure(bundle.output_tail(2048)));
            }
            if Instant::now() >= deadline {
                return Err(StartError::Runtime(format!(
                    "the container did not start within {} s",
                    self.config.start_timeout.as_secs_f64()
                )));
            }
            sleep(START_POLL).await;
        }
    }

    fn handle(
        &self,
        id: String,
        bundle: Bundle,
        meta: &Meta,
        waiter: Waiter,
        image: Option<Arc<PreparedImage>>,
    ) -> Box<dyn ContainerHandle> {
        let log: SharedLog = Arc::new(Mutex::new(LogRing::new(self.config.log_lines)));
        let deadline = meta.deadline_unix_ms.map(instant_of);
        Box::new(RuncHandle::new(
            self.context.clone(),
            id,
            bundle,
            meta.cgroup.clone(),
            waiter,
            deadline,
            Duration::from_millis(meta.timeout_ms),
            log,
            self.config.max_line_bytes,
            image,
        ))
    }

    /// Kills and deletes the runc container `id` (`runc delete --force` kills what runs)
    /// and removes its bundle.
    async fn destroy(&self, id: &str) {
        if let Err(err) = self.context.runc.delete(id).await
            && !cli::is_gone(&err)
        {
            tracing::warn!(id, error = %err, "cannot delete a leftover container");
        }
        let bundle = self.bundle(id);
        // The shim writes its exit file once runc returns: let it finish before the bundle
        // goes, or it would write into a directory being removed.
        if let Some(shim) = bundle.read_meta().ok().and_then(|meta| meta.shim_pid) {
            let deadline = Instant::now() + SHIM_EXIT_WAIT;
            while handle::alive(shim) && Instant::now() < deadline {
                sleep(Duration::from_millis(10)).await;
            }
        }
        bundle.remove().await;
    }
}

/// The runc id of an attempt: the attempt id itself, which the store draws at random, once
/// it is checked to be safe as a runc id, a directory name and a cgroup name.
pub fn runc_id(attempt: &str) -> Result<String, StartError> {
    let safe = !attempt.is_empty()
        && attempt.len() <= 64
        && attempt
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        Ok(attempt.to_owned())
    } else {
        Err(StartError::Runtime(format!(
            "attempt id {attempt:?} cannot name a container (letters, digits, - and _ only, at most 64)"
        )))
    }
}

/// `name` with every character but letters, digits, `-` and `_` replaced by `_`, so it
/// is one safe path component.
fn path_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "_".into() } else { safe }
}

/// The hostname of a container: its id, made a valid host name (at most 63 letters,
/// digits and `-`).
fn hostname(container: &str) -> String {
    let name: String = container
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    if name.is_empty() {
        "berth".into()
    } else {
        name
    }
}

/// The error for a container that runc could not start, from runc's last words.
fn start_failure(tail: String) -> StartError {
    let last = tail.lines().last().unwrap_or_default().to_owned();
    if last.contains("executable file not found") || last.contains("no such file or directory") {
        let program = last
            .split("exec: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("the command")
            .to_owned();
        return StartError::CommandNotFound { program };
    }
    if last.is_empty() {
        return StartError::Runtime("runc exited before the container started".into());
    }
    StartError::Runtime(last)
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant of a Unix time in milliseconds (now, if it has passed).
fn instant_of(unix_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(unix_ms.saturating_sub(now_unix_ms()))
}

/// The command a container runs: the request's command, else the image's entrypoint and
/// command.
fn command_of(spec: &ContainerSpec, image: &PreparedImage) -> Result<Vec<String>, StartError> {
    let args = if spec.payload.command.is_empty() {
        let config = &image.config;
        config
            .entrypoint
            .iter()
            .chain(&config.cmd)
            .cloned()
            .collect()
    } else {
        spec.payload.command.clone()
    };
    if args.is_empty() {
        return Err(StartError::NoCommand);
    }
    Ok(args)
}

/// The environment: the image's, `HOME`, the request's, then the GPU variables
/// ([`crate::runtime::gpus`]) and berth's own (later ones win).
fn env_of(spec: &ContainerSpec, image: &PreparedImage, gpus: &AssignedGpus) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for pair in &image.config.env {
        if let Some((key, value)) = pair.split_once('=') {
            set(key, value);
        }
    }
    set("HOME", "/work");
    for (key, value) in spec
        .payload
        .env
        .iter()
        .chain(spec.payload.secret_env.iter())
    {
        set(key, value);
    }
    for (key, value) in gpus.env() {
        set(key, &value);
    }
    set(ENV_CONTAINER_ID, spec.container.as_str());
    set(ENV_ATTEMPT_ID, spec.attempt.as_str());
    set(ENV_WORKER_ID, spec.worker.as_str());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Checks that `program` exists in the image, looked up on the container's `PATH` when it
/// has no slash, so a typo fails before anything is created.
fn check_program(rootfs: &Path, program: &str, env: &[String]) -> Result<(), StartError> {
    let exists = |path: &str| {
        rootfs
            .join(path.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
    };
    let found = if program.contains('/') {
        !program.starts_with('/') || exists(program)
    } else {
        let path = env
            .iter()
            .find_map(|pair| pair.strip_prefix("PATH="))
            .unwrap_or("");
        path.split(':')
            .any(|dir| exists(&format!("{dir}/{program}")))
    };
    if found {
        Ok(())
    } else {
        Err(StartError::CommandNotFound {
            program: program.to_owned(),
        })
    }
}

/// The uid and gid: the image's user, else [`UNPRIVILEGED`].
fn user_of(image: &PreparedImage) -> Result<(u32, u32), StartError> {
    match image.config.user.as_deref().filter(|u| !u.is_empty()) {
        Some(user) => berth_image::resolve_user(&image.rootfs, user)
            .map_err(|err| StartError::Image(err.to_string())),
        None => Ok(UNPRIVILEGED),
    }
}

/// Creates the writable work directory, owned by the container's user.
fn make_work_dir(bundle: &Bundle, user: (u32, u32)) -> Result<(), StartError> {
    let work = bundle.work();
    std::fs::create_dir_all(&work)
        .and_then(|()| {
            nix::unistd::chown(
                &work,
                Some(nix::unistd::Uid::from_raw(user.0)),
                Some(nix::unistd::Gid::from_raw(user.1)),
            )
            .map_err(std::io::Error::from)
        })
        .map_err(|source| StartError::WorkDir {
            path: work.display().to_string(),
            source,
        })
}

/// What [`RuncRuntime::held_images`] reports of `held` (most recently used first): the
/// references, then their digest forms in the room left, once each, at most
/// [`berth_core::MAX_WORKER_IMAGES`] (the references are what most requests name).
fn held_names(held: &[berth_image::HeldImage]) -> Vec<String> {
    let references = held.iter().map(|image| image.reference.clone());
    let pinned = held.iter().filter_map(berth_image::HeldImage::pinned);
    let mut names: Vec<String> = Vec::new();
    for name in references.chain(pinned) {
        if berth_core::plausible_image(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names.truncate(berth_core::MAX_WORKER_IMAGES);
    names
}

#[async_trait]
impl ContainerRuntime for RuncRuntime {
    fn name(&self) -> berth_core::RuntimeName {
        berth_core::RuntimeName::RUNC
    }

    /// Found by the reference or its digest form; the lease is the store's own.
    async fn lease_held(&self, image: &str) -> Option<ImageLease> {
        let digest = (self.context.images.held(usize::MAX).into_iter())
            .find(|held| held.reference == image || held.pinned().as_deref() == Some(image))?
            .digest;
        let leased = self.lease_image(Some(&digest)).await?;
        Some(ImageLease::holding(leased))
    }

    /// The lease holds the prepared image, which garbage collection keeps while it lives.
    async fn pull(&self, image: &str) -> Result<ImageLease, StartError> {
        self.prepare_image(Some(image))
            .await
            .map(ImageLease::holding)
    }

    /// The images the store holds, as requests named them, then their digest forms
    /// ([`berth_image::HeldImage::pinned`]) for requests that pin them (see `held_names`);
    /// a name the server would refuse in a report (too long, with whitespace) is left out
    /// rather than losing the whole list.
    fn held_images(&self) -> Vec<String> {
        held_names(&self.context.images.held(berth_core::MAX_WORKER_IMAGES))
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn ContainerHandle>, StartError> {
        let limit = timeout_for(&spec, self.config.default_timeout)?;
        let resources = spec.resources;
        if resources.cpu_millicores == 0 || resources.memory_mib == 0 {
            return Err(StartError::Unenforceable {
                resources,
                why: "a container must book some CPU and memory to be limited to them".into(),
            });
        }
        let id = runc_id(spec.attempt.as_str())?;
        let image = self.prepare_image(spec.payload.image.as_deref()).await?;
        let args = command_of(&spec, &image)?;
        let gpus = AssignedGpus::resolve(&spec.devices, &self.config.gpus)?;
        let env = env_of(&spec, &image, &gpus);
        check_program(&image.rootfs, &args[0], &env)?;
        let user = user_of(&image)?;
        let bundle = self.bundle(&id);
        if bundle.dir().exists() {
            tracing::warn!(%id, "a bundle of the same attempt is left over; removing it");
            self.destroy(&id).await;
        }
        let cgroup = format!("{}/{id}", self.config.cgroup_parent);
        // Shared layers: the container gets its own overlay of them, in which runc may
        // create its mount points; a flattened image's rootfs is used as it is.
        let own_rootfs = !image.layers.is_empty();
        let rootfs = if own_rootfs {
            bundle.rootfs()
        } else {
            image.rootfs.clone()
        };
        let plan = spec::Plan {
            args,
            env,
            cwd: image
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/work".into()),
            user,
            rootfs,
            work: bundle.work(),
            hostname: hostname(spec.container.as_str()),
            cgroup: cgroup.clone(),
            resources,
            pids_limit: self.config.pids_limit,
            host_network: self.config.host_network,
            mounts: self.config.mounts.clone(),
            devices: devices::gpu_nodes(&self.config.device_dir, &gpus.indices()),
        };
        let oci = spec::build(&plan)
            .map_err(|err| StartError::Runtime(format!("cannot build config.json: {err}")))?;
        let deadline_unix_ms = u64::try_from(limit.as_millis())
            .ok()
            .and_then(|ms| now_unix_ms().checked_add(ms));
        let mut meta = Meta {
            container: spec.container.clone(),
            attempt: spec.attempt.clone(),
            worker: spec.worker.clone(),
            deadline_unix_ms,
            timeout_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            cgroup,
            shim_pid: None,
            image: Some(image.id.clone()),
        };
        let write = || -> Result<(), String> {
            std::fs::create_dir_all(bundle.dir()).map_err(|e| e.to_string())?;
            if own_rootfs {
                bundle
                    .mount_rootfs(&image.layers)
                    .map_err(|e| format!("mounting the container's rootfs: {e}"))?;
            }
            oci.save(bundle.config()).map_err(|e| e.to_string())?;
            bundle.write_meta(&meta).map_err(|e| e.to_string())
        };
        if let Err(message) = write() {
            bundle.remove().await;
            return Err(StartError::Runtime(format!(
                "cannot write the bundle: {message}"
            )));
        }
        if let Err(err) = make_work_dir(&bundle, user) {
            bundle.remove().await;
            return Err(err);
        }
        let started = std::time::Instant::now();
        let mut shim = match self.launch(&id, &bundle) {
            Ok(shim) => shim,
            Err(err) => {
                bundle.remove().await;
                return Err(err);
            }
        };
        meta.shim_pid = shim.id();
        if let Err(err) = bundle.write_meta(&meta) {
            tracing::warn!(%id, error = %err, "cannot record the shim's pid");
        }
        if let Err(err) = self.await_start(&bundle, &mut shim).await {
            self.destroy(&id).await;
            let _ = shim.wait().await;
            return Err(err);
        }
        metrics::histogram!(crate::metrics::RUNC_START_SECONDS)
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(container = %spec.container, %id, ?limit, "runc container started");
        Ok(self.handle(id, bundle, &meta, Waiter::Shim(shim), Some(image)))
    }

    /// Every bundle with valid metadata is a leftover; a bundle without, or a runc
    /// container without a bundle, is destroyed at once. Call it before this runtime
    /// starts containers (the agent does, once, after registering).
    async fn leftovers(&self) -> Vec<Leftover> {
        let mut found = Vec::new();
        let mut known = HashSet::new();
        let dirs = match std::fs::read_dir(self.config.dir.join("bundles")) {
            Ok(dirs) => dirs,
            Err(err) => {
                tracing::warn!(error = %err, "cannot list the bundles");
                return found;
            }
        };
        for entry in dirs.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            known.insert(id.clone());
            match self.bundle(&id).read_meta() {
                Ok(meta) if runc_id(meta.attempt.as_str()).ok().as_deref() == Some(id.as_str()) => {
                    found.push(Leftover {
                        container: meta.container,
                        attempt: meta.attempt,
                    });
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(%id, "a bundle without valid metadata; destroying it");
                    self.destroy(&id).await;
                }
            }
        }
        match self.context.runc.list().await {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !known.contains(id)) {
                    tracing::warn!(%id, "a runc container without a bundle; destroying it");
                    self.destroy(&id).await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot list runc's containers"),
        }
        found
    }

    async fn adopt(&self, leftover: &Leftover) -> Result<Box<dyn ContainerHandle>, StartError> {
        let id = runc_id(leftover.attempt.as_str())?;
        let bundle = self.bundle(&id);
        let meta = bundle.read_meta().map_err(StartError::Runtime)?;
        tracing::info!(container = %meta.container, %id, "adopting a container left running");
        let image = self.lease_image(meta.image.as_deref()).await;
        Ok(self.handle(id, bundle, &meta, Waiter::Adopted(meta.shim_pid), image))
    }

    async fn discard(&self, leftover: &Leftover) {
        if let Ok(id) = runc_id(leftover.attempt.as_str()) {
            tracing::info!(container = %leftover.container, %id, "killing a container this worker does not own");
            self.destroy(&id).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_made_safe() {
        assert_eq!(runc_id("00000000000000ff").unwrap(), "00000000000000ff");
        assert!(runc_id("../x").is_err());
        assert!(runc_id("").is_err());
        assert!(runc_id(&"a".repeat(65)).is_err());
        assert_eq!(path_safe("pool:w.1"), "pool_w_1");
        assert_eq!(path_safe(".."), "__");
        assert_eq!(hostname("job:42.a"), "job-42-a");
        assert_eq!(hostname(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn held_images_are_reported_with_their_digest_forms_bounded() {
        let held = |reference: &str, digest: &str| berth_image::HeldImage {
            reference: reference.to_owned(),
            digest: digest.to_owned(),
        };
        let names = held_names(&[
            held("app:v2", "sha256:b"),
            held("oci:/images/tools:1", "sha256:c"),
            held("app@sha256:b", "sha256:b"),
            held("has space", "sha256:d"),
            held("app:v1", "sha256:a"),
        ]);
        assert_eq!(
            names,
            [
                "app:v2",
                "oci:/images/tools:1",
                "app@sha256:b",
                "app:v1",
                "app@sha256:a"
            ],
            "references most recent first, then digest forms, each once, none the server \
             would refuse"
        );
        let many: Vec<_> = (0..40)
            .map(|i| held(&format!("img{i}:t"), &format!("sha256:{i}")))
            .collect();
        let names = held_names(&many);
        assert_eq!(names.len(), berth_core::MAX_WORKER_IMAGES);
        assert_eq!(names[..2], ["img0:t", "img1:t"]);
        assert_eq!(
            names[39..41],
            ["img39:t", "img0@sha256:0"],
            "every tag, then digests"
        );
    }

    #[test]
    fn runc_start_errors_name_the_missing_program() {
        let tail = "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert!(matches!(
            start_failure(tail.into()),
            StartError::CommandNotFound { program } if program == "nope"
        ));
        assert!(matches!(
            start_failure("some other error".into()),
            StartError::Runtime(m) if m == "some other error"
        ));
        assert!(matches!(
            start_failure(String::new()),
            StartError::Runtime(_)
        ));
    }

    #[test]
    fn programs_are_looked_up_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("busybox", dir.path().join("bin/sh")).unwrap();
        let env = vec!["PATH=/usr/bin:/bin".to_owned()];
        assert!(check_program(dir.path(), "sh", &env).is_ok());
        assert!(check_program(dir.path(), "/bin/sh", &env).is_ok());
        assert!(matches!(
            check_program(dir.path(), "python3", &env),
            Err(StartError::CommandNotFound { program }) if program == "python3"
        ));
        assert!(check_program(dir.path(), "/usr/bin/env", &env).is_err());
    }
}
