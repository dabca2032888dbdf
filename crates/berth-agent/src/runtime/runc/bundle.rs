//! One container's bundle directory: what runc runs, what berth needs to take the
//! container over after a restart, and what the container leaves behind.
//!
//! ```text
//! <dir>/bundles/<runc id>/
//!   config.json   the OCI runtime spec (written with oci-spec)
//!   berth.json    [`Meta`]: whose container this is, and its deadline
//!   output.log    stdout and stderr, appended by the container
//!   work/         the container's writable /work (owned by its user)
//!   rootfs/       for an image of shared layers: the container's own overlay of them
//!   upper/        that overlay's upper directory (the mount points runc creates)
//!   overlay-work/ that overlay's work directory
//!   pid           written by runc once the container's process runs
//!   exit          written by the shim with runc's exit status once it ended
//! ```

use berth_core::{AttemptId, ContainerId, WorkerId};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// What berth keeps about a container in its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The container.
    pub container: ContainerId,
    /// The attempt it runs under.
    pub attempt: AttemptId,
    /// The worker that started it.
    pub worker: WorkerId,
    /// When its timeout fires, in milliseconds since the Unix epoch (`None`: never).
    pub deadline_unix_ms: Option<u64>,
    /// Its timeout in milliseconds, for the report.
    pub timeout_ms: u64,
    /// Its cgroup (runc's `cgroupsPath`).
    pub cgroup: String,
    /// The shim process that waits for runc and writes `exit`.
    pub shim_pid: Option<u32>,
    /// Its image's id, leased again when a restarted agent adopts the container (absent
    /// in bundles written before images were garbage collected).
    #[serde(default)]
    pub image: Option<String>,
}

/// The paths of one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// The bundle at `dir`.
    pub fn at(dir: PathBuf) -> Bundle {
        Bundle { dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The OCI runtime spec.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// berth's [`Meta`].
    pub fn meta_path(&self) -> PathBuf {
        self.dir.join("berth.json")
    }

    /// The container's output.
    pub fn output(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    /// The container's writable work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The container's own root file system (an overlay of its image's layers), when its
    /// image is made of shared layers.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts the container's own overlay of `layers` (top first) on [`Bundle::rootfs`],
    /// creating its directories; the bundle directory must exist.
    pub fn mount_rootfs(&self, layers: &[PathBuf]) -> io::Result<()> {
        let (upper, work) = (self.dir.join("upper"), self.dir.join("overlay-work"));
        for dir in [self.rootfs(), upper.clone(), work.clone()] {
            std::fs::create_dir(&dir)?;
        }
        berth_image::mount_container_rootfs(layers, &upper, &work, &self.rootfs())
    }

    /// runc's pid file.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The shim's exit status file.
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit")
    }

    /// Writes `meta` atomically (a temporary file renamed into place).
    pub fn write_meta(&self, meta: &Meta) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        let tmp = self.dir.join("berth.json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, self.meta_path())
    }

    /// Reads the [`Meta`]; an error says what is wrong with it.
    pub fn read_meta(&self) -> Result<Meta, String> {
        let path = self.meta_path();
        let bytes = std::fs::read(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// runc's exit status as the shim wrote it: `None` while the container runs (or if
    /// the file is unreadable).
    pub fn read_exit(&self) -> Option<i32> {
        std::fs::read_to_string(self.exit())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// True once runc wrote the pid file: the container's process runs.
    pub fn started(&self) -> bool {
        std::fs::metadata(self.pid()).is_ok_and(|m| m.len() > 0)
    }

    /// The last `max` bytes of the container's output, for an error message.
    pub fn output_tail(&self, max: usize) -> String {
        let bytes = std::fs::read(self.output()).unwrap_or_default();
        let start = bytes.len().saturating_sub(max);
        String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
    }

    /// Removes the whole bundle (unmounting its rootfs first); one that is already gone is
    /// fine. A rootfs that cannot be unmounted is left, bundle and all: removing through
    /// the mount would delete from the container's view instead.
    pub async fn remove(&self) {
        if !berth_image::unmount_container_rootfs(&self.rootfs()) {
            tracing::warn!(dir = %self.dir.display(), "cannot unmount a bundle's rootfs; the bundle stays");
            return;
        }
        if let Err(err) = tokio::fs::remove_dir_all(&self.dir).await
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %err, "cannot remove a bundle");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_bad_meta_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::at(dir.path().to_path_buf());
        let meta = Meta {
            container: ContainerId::new("c-1").unwrap(),
            attempt: AttemptId::from_bits(7),
            worker: WorkerId::new("w-1").unwrap(),
            deadline_unix_ms: Some(1_700_000_000_000),
            timeout_ms: 3_600_000,
            cgroup: "/berth/w-1/0000000000000007".into(),
            shim_pid: Some(42),
            image: Some("sha256:0123".into()),
        };
        bundle.write_meta(&meta).unwrap();
        assert_eq!(bundle.read_meta().unwrap(), meta);
        std::fs::write(bundle.meta_path(), b"{").unwrap();
        assert!(bundle.read_meta().unwrap_err().contains("berth.json"));
    }

    #[test]
    fn exit_and_start_markers() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::at(dir.path().to_path_buf());
        assert!(!bundle.started());
        assert_eq!(bundle.read_exit(), None);
        std::fs::write(bundle.pid(), "123").unwrap();
        std::fs::write(bundle.exit(), "137\n").unwrap();
        assert!(bundle.started());
        assert_eq!(bundle.read_exit(), Some(137));
    }
}
