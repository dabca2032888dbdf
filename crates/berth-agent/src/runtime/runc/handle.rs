//! [`RuncHandle`]: one container under runc, from start (or adoption) to cleanup.

use super::bundle::Bundle;
use super::cgroup::CgroupVersion;
use super::cli::{Runc, is_gone};
use super::follow;
use crate::logs::SharedLog;
use crate::runtime::{ContainerHandle, Exit};
use async_trait::async_trait;
use berth_image::{ImageStore, PreparedImage};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

/// How often an adopted container's exit file is looked for.
const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// How long the output follower may take to read the rest once the container ended.
const FOLLOW_DRAIN: Duration = Duration::from_secs(2);

/// How the handle learns that the container ended.
pub enum Waiter {
    /// This agent started the shim: wait for it, then read the exit file it wrote.
    Shim(Child),
    /// An earlier life of the agent started it: poll for the exit file, and watch that the
    /// shim (with this pid) still runs.
    Adopted(Option<u32>),
}

/// What a handle shares with its runtime.
#[derive(Debug, Clone)]
pub struct Context {
    /// runc under the agent's state root.
    pub runc: Runc,
    /// The host's cgroup hierarchy.
    pub cgroups: CgroupVersion,
    /// How long the container has to stop after SIGTERM.
    pub stop_grace: Duration,
    /// The worker's image store, to collect garbage when a container releases its image.
    pub images: Arc<ImageStore>,
}

/// One container under runc.
pub struct RuncHandle {
    pub(super) context: Context,
    /// The runc container id.
    pub(super) id: String,
    pub(super) bundle: Bundle,
    /// The container's cgroup path, read back for the OOM counter.
    pub(super) cgroup: String,
    pub(super) waiter: Waiter,
    /// When its timeout fires (`None`: never).
    pub(super) deadline: Option<Instant>,
    pub(super) limit: Duration,
    pub(super) log: SharedLog,
    pub(super) follower: Option<JoinHandle<()>>,
    /// Tells the follower to read to the end of the output and stop.
    pub(super) follow_done: CancellationToken,
    /// Set before the timeout's stop starts, so a cancelled `wait` still reports it.
    pub(super) timed_out: bool,
    /// Set before a `kill` starts.
    pub(super) killed: bool,
    /// How it ended, once cleaned up.
    pub(super) exit: Option<Exit>,
    /// The lease on the container's image: while it is held, the image store's garbage
    /// collection keeps the image. Released when the container is deleted.
    pub(super) image: Option<Arc<PreparedImage>>,
}

impl RuncHandle {
    /// A handle for the container `id` in `bundle`, whose output the follower starts reading.
    #[allow(clippy::too_many_arguments)] // One constructor for both start and adoption.
    pub(super) fn new(
        context: Context,
        id: String,
        bundle: Bundle,
        cgroup: String,
        waiter: Waiter,
        deadline: Option<Instant>,
        limit: Duration,
        log: SharedLog,
        max_line_bytes: usize,
        image: Option<Arc<PreparedImage>>,
    ) -> RuncHandle {
        let follow_done = CancellationToken::new();
        let follower = follow::spawn(
            bundle.output(),
            log.clone(),
            max_line_bytes,
            follow_done.clone(),
        );
        RuncHandle {
            context,
            id,
            bundle,
            cgroup,
            waiter,
            deadline,
            limit,
            log,
            follower: Some(follower),
            follow_done,
            timed_out: false,
            killed: false,
            image,
            exit: None,
        }
    }

    /// Waits for the container to end; runc's exit status, `None` if it is unknown.
    async fn ended(&mut self) -> Option<i32> {
        match &mut self.waiter {
            Waiter::Shim(child) => {
                if let Err(err) = child.wait().await {
                    tracing::warn!(id = %self.id, error = %err, "waiting for the shim failed");
                }
                self.bundle.read_exit()
            }
            Waiter::Adopted(shim) => loop {
                if let Some(code) = self.bundle.read_exit() {
                    return Some(code);
                }
                if shim.is_none_or(|pid| !alive(pid)) {
                    // The shim may have written the file between the two looks.
                    return self.bundle.read_exit();
                }
                sleep(ADOPTED_POLL).await;
            },
        }
    }

    async fn signal(&self, signal: &str, all: bool) {
        if let Err(err) = self.context.runc.kill(&self.id, signal, all).await
            && !is_gone(&err)
        {
            tracing::warn!(id = %self.id, signal, error = %err, "cannot signal a container");
        }
    }

    /// SIGTERM, then SIGKILL to every process of the container once the grace has passed.
    async fn stop(&mut self) -> Option<i32> {
        self.signal("TERM", false).await;
        let grace = self.context.stop_grace;
        if let Ok(code) = timeout(grace, self.ended()).await {
            return code;
        }
        self.signal("KILL", true).await;
        self.ended().await
    }

    /// Reads the rest of the output, the OOM counter, then deletes the container and its
    /// bundle.
    async fn finish(&mut self, code: Option<i32>) -> Exit {
        self.follow_done.cancel();
        if let Some(mut follower) = self.follower.take()
            && timeout(FOLLOW_DRAIN, &mut follower).await.is_err()
        {
            follower.abort();
        }
        let oom_kills = self.context.cgroups.oom_kills(&self.cgroup).unwrap_or(0);
        if let Err(err) = self.context.runc.delete(&self.id).await
            && !is_gone(&err)
        {
            tracing::warn!(id = %self.id, error = %err, "cannot delete a container");
        }
        self.bundle.remove().await;
        self.release_image().await;
        let exit = self.exit_of(code, oom_kills);
        self.exit = Some(exit.clone());
        exit
    }

    /// Drops the lease on the image; with no container of it left, the image may go now
    /// rather than at the next start's collection.
    async fn release_image(&mut self) {
        if self.image.take().is_some() {
            let images = self.context.images.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || images.collect_garbage()).await {
                tracing::warn!(error = %err, "collecting image garbage panicked");
            }
        }
    }

    fn exit_of(&self, code: Option<i32>, oom_kills: u64) -> Exit {
        classify(self.timed_out, self.killed, oom_kills, self.limit, code)
    }
}

/// How a container ended, from what is known: the agent's own stops first, then an OOM
/// kill (whatever the exit status: a process of the container outgrew its booking), then
/// runc's exit status.
pub fn classify(
    timed_out: bool,
    killed: bool,
    oom_kills: u64,
    limit: Duration,
    code: Option<i32>,
) -> Exit {
    if timed_out {
        return Exit::TimedOut { after: limit };
    }
    if killed {
        return Exit::Killed;
    }
    if oom_kills > 0 {
        return Exit::OomKilled;
    }
    match code {
        Some(code) => Exit::Exited { code },
        None => Exit::Lost {
            reason: "its exit status was never written (the shim that waited for it is gone)"
                .into(),
        },
    }
}

/// True if a process with this pid runs (a zombie, ended but not reaped, does not).
pub fn alive(pid: u32) -> bool {
    let exists = i32::try_from(pid).is_ok_and(|pid| kill(Pid::from_raw(pid), None).is_ok());
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    });
    exists && !zombie
}

#[async_trait]
impl ContainerHandle for RuncHandle {
    async fn wait(&mut self) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let code = match (self.timed_out || self.killed, self.deadline) {
            (true, _) => self.stop().await,
            (false, None) => self.ended().await,
            (false, Some(deadline)) => {
                let ended = tokio::select! {
                    code = self.ended() => Some(code),
                    () = sleep_until(deadline) => None,
                };
                match ended {
                    Some(code) => code,
                    None => {
                        self.timed_out = true;
                        self.stop().await
                    }
                }
            }
        };
        self.finish(code).await
    }

    async fn kill(&mut self) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        if let Some(code) = self.bundle.read_exit() {
            return self.finish(Some(code)).await;
        }
        self.killed = !self.timed_out;
        let code = self.stop().await;
        self.finish(code).await
    }

    fn logs_since(&self, seq: u64) -> (Vec<String>, u64) {
        self.log.lock().since(seq)
    }
}

impl Drop for RuncHandle {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        self.follow_done.cancel();
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        self.context.runc.destroy_blocking(&self.id);
        // Never remove through the container's own rootfs mount: that would delete from
        // its view (as whiteouts in its upper layer) rather than the bundle's files.
        if !berth_image::unmount_container_rootfs(&self.bundle.rootfs()) {
            tracing::warn!(dir = %self.bundle.dir().display(), "cannot unmount a bundle's rootfs; the bundle stays");
            return;
        }
        if let Err(err) = std::fs::remove_dir_all(self.bundle.dir())
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.bundle.dir().display(), error = %err, "cannot remove a bundle");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_stops_win_then_oom_then_the_exit_status() {
        let limit = Duration::from_secs(3);
        assert_eq!(
            classify(true, true, 1, limit, Some(0)),
            Exit::TimedOut { after: limit }
        );
        assert_eq!(classify(false, true, 1, limit, Some(143)), Exit::Killed);
        assert_eq!(classify(false, false, 1, limit, Some(0)), Exit::OomKilled);
        assert_eq!(classify(false, false, 1, limit, None), Exit::OomKilled);
        assert_eq!(
            classify(false, false, 0, limit, Some(137)),
            Exit::Exited { code: 137 }
        );
        assert!(matches!(
            classify(false, false, 0, limit, None),
            Exit::Lost { .. }
        ));
    }
}
