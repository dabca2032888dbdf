//! Child processes in their own process groups, with their output in a log file, killed
//! (the whole group, SIGKILL) and reaped when their guard is dropped: on a normal end, an
//! error or a panic alike.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Starting or signalling a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be created.
    #[error("cannot create the log file {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A signal could not be sent (the process is gone, or not ours).
    #[error("cannot send {signal} to {name} (pid {pid}): {source}")]
    Signal {
        /// The child's name.
        name: String,
        /// Its pid.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// Why.
        source: nix::Error,
    },
}

/// A running child, leader of its own process group. Dropping it kills the group with
/// SIGKILL (which also ends a stopped process) and reaps the child.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `program` with `args` in a new process group, stdin closed, stdout and stderr
    /// appended to `log`, and `env` added to the environment.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<ChildGuard, ProcessError> {
        let log_error = |source| ProcessError::Log {
            path: log.to_owned(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(log_error)?;
        let err = out.try_clone().map_err(log_error)?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started");
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// The child's name (e.g. `server-1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file its output goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the process has exited (it is reaped then).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    fn signal_error(&self, signal: Signal, source: nix::Error) -> ProcessError {
        ProcessError::Signal {
            name: self.name.clone(),
            pid: self.child.id(),
            signal,
            source,
        }
    }

    /// Sends `signal` to the child alone.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        kill(self.pid(), signal).map_err(|e| self.signal_error(signal, e))
    }

    /// SIGKILLs the child's process group and reaps the child (like a crash: no clean
    /// shutdown).
    pub fn kill9(mut self) {
        self.kill_group();
    }

    fn kill_group(&mut self) {
        if let Err(error) = killpg(self.pid(), Signal::SIGKILL)
            && !self.has_exited()
        {
            tracing::warn!(name = %self.name, %error, "killing the process group failed; killing the child");
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_group();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_kills_a_stopped_child() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut guard = ChildGuard::spawn(
            "sleeper",
            Path::new("sh"),
            &["-c".into(), "echo started; exec sleep 600".into()],
            &[],
            &log,
        )
        .unwrap();
        assert!(!guard.has_exited());
        guard.signal(Signal::SIGSTOP).unwrap();
        let pid = guard.pid();
        drop(guard);
        assert!(kill(pid, None).is_err(), "the child is gone and reaped");
    }
}
