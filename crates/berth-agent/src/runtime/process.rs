//! [`ProcessRuntime`]: runs a container's command as a plain process group on the host.

use super::gpus::AssignedGpus;
use super::{
    ContainerHandle, ContainerRuntime, ContainerSpec, ENV_ATTEMPT_ID, ENV_CONTAINER_ID,
    ENV_WORKER_ID, Exit, StartError, timeout_for,
};
use crate::logs::{LogRing, SharedLog, pump_lines};
use async_trait::async_trait;
use berth_core::{GpuDevice, RuntimeName};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use parking_lot::Mutex;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

/// The `PATH` a container gets when the agent itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the output pumps may take to drain once the process group is gone.
const PUMP_DRAIN: Duration = Duration::from_secs(2);

/// How [`ProcessRuntime`] runs containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRuntimeConfig {
    /// The directory under which each container gets its own working directory
    /// (`<container>.<attempt>`), created before it starts and removed after it ends.
    pub work_dir: PathBuf,
    /// The timeout of a container whose request does not set [`ENV_TIMEOUT_SECS`](super::ENV_TIMEOUT_SECS).
    pub default_timeout: Duration,
    /// How long a container may take to stop after SIGTERM before it gets SIGKILL.
    pub stop_grace: Duration,
    /// How many lines of output are kept per container.
    pub log_lines: usize,
    /// Longer output lines are cut to this many bytes.
    pub max_line_bytes: usize,
    /// The worker's GPU devices, which containers' device shares refer to (default none).
    pub gpus: Vec<GpuDevice>,
}

impl ProcessRuntimeConfig {
    /// The defaults under `work_dir`: 1 hour timeout, 5 s stop grace, 1000 lines of
    /// 16 KiB at most.
    pub fn new(work_dir: impl Into<PathBuf>) -> ProcessRuntimeConfig {
        ProcessRuntimeConfig {
            work_dir: work_dir.into(),
            default_timeout: Duration::from_secs(3600),
            stop_grace: Duration::from_secs(5),
            log_lines: 1000,
            max_line_bytes: 16 * 1024,
            gpus: Vec::new(),
        }
    }
}

/// Runs a container's command directly on the host: argv without a shell, in its own
/// process group (so killing it kills its children too), in its own working directory.
///
/// The environment is not inherited from the agent: a container gets `PATH` (the
/// agent's), `HOME` (its working directory), its request's variables, then its GPU
/// variables ([`super::gpus`]: the only fence this runtime puts around GPUs, which a
/// process may ignore), [`ENV_CONTAINER_ID`], [`ENV_ATTEMPT_ID`] and [`ENV_WORKER_ID`]. Its timeout is the spec's, else
/// [`ENV_TIMEOUT_SECS`](super::ENV_TIMEOUT_SECS) from its environment, else the configured default. The image is
/// ignored.
#[derive(Debug)]
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    image_noted: AtomicBool,
}

impl ProcessRuntime {
    /// A runtime with this configuration.
    pub fn new(config: ProcessRuntimeConfig) -> ProcessRuntime {
        ProcessRuntime {
            config,
            image_noted: AtomicBool::new(false),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ProcessRuntimeConfig {
        &self.config
    }

    fn note_image(&self, spec: &ContainerSpec) {
        if let Some(image) = &spec.payload.image
            && !self.image_noted.swap(true, Ordering::Relaxed)
        {
            tracing::debug!(%image, container = %spec.container, "the process runtime ignores images");
        }
    }

    fn command(
        &self,
        spec: &ContainerSpec,
        gpus: &AssignedGpus,
        program: &str,
        dir: &Path,
    ) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let mut command = Command::new(program);
        command
            .args(spec.payload.command.iter().skip(1))
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir)
            .envs(&spec.payload.env)
            .envs(spec.payload.secret_env.iter())
            .envs(gpus.env())
            .env(ENV_CONTAINER_ID, spec.container.as_str())
            .env(ENV_ATTEMPT_ID, spec.attempt.as_str())
            .env(ENV_WORKER_ID, spec.worker.as_str())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    /// [`RuntimeName::PROCESS`].
    fn name(&self) -> RuntimeName {
        RuntimeName::PROCESS
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn ContainerHandle>, StartError> {
        let program = spec.payload.command.first().ok_or(StartError::NoCommand)?;
        let limit = timeout_for(&spec, self.config.default_timeout)?;
        let gpus = AssignedGpus::resolve(&spec.devices, &self.config.gpus)?;
        self.note_image(&spec);
        let dir = self
            .config
            .work_dir
            .join(format!("{}.{}", spec.container, spec.attempt));
        prepare_dir(&dir).await?;
        let mut child = match self.command(&spec, &gpus, program, &dir).spawn() {
            Ok(child) => child,
            Err(err) => {
                remove_dir(&dir).await;
                return Err(spawn_error(program, err));
            }
        };
        let log: SharedLog = Arc::new(Mutex::new(LogRing::new(self.config.log_lines)));
        let pumps = start_pumps(&mut child, &log, self.config.max_line_bytes);
        tracing::debug!(container = %spec.container, pid = ?child.id(), ?limit, "process started");
        Ok(Box::new(ProcessHandle {
            group: child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
            child,
            deadline: Instant::now().checked_add(limit),
            limit,
            stop_grace: self.config.stop_grace,
            log,
            pumps,
            dir: Some(dir),
            timed_out: false,
            killed: false,
            exit: None,
        }))
    }
}

async fn prepare_dir(dir: &Path) -> Result<(), StartError> {
    let fail = |source| StartError::WorkDir {
        path: dir.display().to_string(),
        source,
    };
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => tracing::warn!(dir = %dir.display(), "removed a leftover working directory"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(fail(err)),
    }
    tokio::fs::create_dir_all(dir).await.map_err(fail)
}

async fn remove_dir(dir: &Path) {
    if let Err(err) = tokio::fs::remove_dir_all(dir).await
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot remove a working directory");
    }
}

fn spawn_error(program: &str, source: io::Error) -> StartError {
    let program = program.to_owned();
    match source.kind() {
        io::ErrorKind::NotFound => StartError::CommandNotFound { program },
        io::ErrorKind::PermissionDenied => StartError::PermissionDenied { program },
        _ => StartError::Spawn { program, source },
    }
}

fn start_pumps(child: &mut Child, log: &SharedLog, max_line_bytes: usize) -> Vec<JoinHandle<()>> {
    let mut pumps = Vec::with_capacity(2);
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump_lines(
            stdout,
            log.clone(),
            max_line_bytes,
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump_lines(
            stderr,
            log.clone(),
            max_line_bytes,
        )));
    }
    pumps
}

/// A running process group.
struct ProcessHandle {
    /// The process group (the leader's pid), `None` if the pid was unknown.
    group: Option<Pid>,
    child: Child,
    /// When the timeout fires (`None`: too far away to represent).
    deadline: Option<Instant>,
    limit: Duration,
    stop_grace: Duration,
    log: SharedLog,
    /// The tasks copying stdout and stderr into `log`.
    pumps: Vec<JoinHandle<()>>,
    /// The working directory, until it is removed.
    dir: Option<PathBuf>,
    /// Set before the timeout's stop starts, so a cancelled `wait` still reports it.
    timed_out: bool,
    /// Set before a `kill` starts.
    killed: bool,
    /// How it ended, once cleaned up.
    exit: Option<Exit>,
}

impl ProcessHandle {
    fn signal_group(&self, signal: Signal) {
        if let Some(group) = self.group
            && let Err(err) = killpg(group, signal)
            && err != nix::errno::Errno::ESRCH
        {
            tracing::warn!(?group, ?signal, error = %err, "cannot signal a process group");
        }
    }

    /// SIGTERM to the group, then SIGKILL once the stop grace has passed.
    async fn stop(&mut self) -> io::Result<ExitStatus> {
        self.signal_group(Signal::SIGTERM);
        match timeout(self.stop_grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.signal_group(Signal::SIGKILL);
                self.child.wait().await
            }
        }
    }

    /// Kills what is left of the group, drains the output, removes the directory.
    async fn finish(&mut self, status: io::Result<ExitStatus>) -> Exit {
        self.signal_group(Signal::SIGKILL);
        for mut pump in std::mem::take(&mut self.pumps) {
            if timeout(PUMP_DRAIN, &mut pump).await.is_err() {
                pump.abort();
            }
        }
        if let Some(dir) = self.dir.take() {
            remove_dir(&dir).await;
        }
        let exit = self.exit_of(status);
        self.exit = Some(exit.clone());
        exit
    }

    fn exit_of(&self, status: io::Result<ExitStatus>) -> Exit {
        if self.timed_out {
            return Exit::TimedOut { after: self.limit };
        }
        if self.killed {
            return Exit::Killed;
        }
        match status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Exited { code },
                (None, Some(signal)) => Exit::Signalled { signal },
                (None, None) => Exit::Lost {
                    reason: format!("unexpected wait status {status}"),
                },
            },
            Err(err) => Exit::Lost {
                reason: err.to_string(),
            },
        }
    }
}

#[async_trait]
impl ContainerHandle for ProcessHandle {
    async fn wait(&mut self) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let status = match (self.timed_out || self.killed, self.deadline) {
            (true, _) => self.stop().await,
            (false, None) => self.child.wait().await,
            (false, Some(deadline)) => tokio::select! {
                status = self.child.wait() => status,
                () = sleep_until(deadline) => {
                    self.timed_out = true;
                    self.stop().await
                }
            },
        };
        self.finish(status).await
    }

    async fn kill(&mut self) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            return self.finish(Ok(status)).await;
        }
        self.killed = !self.timed_out;
        let status = self.stop().await;
        self.finish(status).await
    }

    fn logs_since(&self, seq: u64) -> (Vec<String>, u64) {
        self.log.lock().since(seq)
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.signal_group(Signal::SIGKILL);
        }
        if let Some(dir) = self.dir.take()
            && let Err(err) = std::fs::remove_dir_all(&dir)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot remove a working directory");
        }
    }
}
