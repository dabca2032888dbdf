//! The host's cgroup hierarchy as runc uses it: which version is mounted, and what the
//! kernel counted in a container's memory cgroup.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup hierarchy in use on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Only the v1 controllers (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`, ...).
    V1,
    /// The v1 controllers, plus an empty v2 hierarchy at `/sys/fs/cgroup/unified`: the
    /// controllers (and so the limits) are v1.
    Hybrid,
    /// The unified v2 hierarchy at `/sys/fs/cgroup`.
    V2,
}

impl CgroupVersion {
    /// Detects the hierarchy mounted under `/sys/fs/cgroup`.
    pub fn detect() -> CgroupVersion {
        CgroupVersion::detect_under(Path::new(CGROUP_ROOT))
    }

    fn detect_under(root: &Path) -> CgroupVersion {
        if root.join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else if root.join("unified").join("cgroup.controllers").exists() {
            CgroupVersion::Hybrid
        } else {
            CgroupVersion::V1
        }
    }

    /// The directories a container's cgroup at `path` (runc's `cgroupsPath`) occupies: one
    /// per v1 controller that holds a limit berth sets, or the one v2 directory.
    pub fn dirs(self, path: &str) -> Vec<PathBuf> {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupVersion::V2 => vec![Path::new(CGROUP_ROOT).join(relative)],
            CgroupVersion::V1 | CgroupVersion::Hybrid => ["memory", "cpu", "pids", "devices"]
                .iter()
                .map(|controller| Path::new(CGROUP_ROOT).join(controller).join(relative))
                .collect(),
        }
    }

    /// How many processes the kernel's OOM killer killed in the cgroup at `path`; `None`
    /// when the cgroup or its counter cannot be read (it is gone, or the kernel is older
    /// than 4.13 and does not count).
    pub fn oom_kills(self, path: &str) -> Option<u64> {
        let relative = path.trim_start_matches('/');
        let file = match self {
            CgroupVersion::V2 => Path::new(CGROUP_ROOT).join(relative).join("memory.events"),
            CgroupVersion::V1 | CgroupVersion::Hybrid => Path::new(CGROUP_ROOT)
                .join("memory")
                .join(relative)
                .join("memory.oom_control"),
        };
        let text = std::fs::read_to_string(file).ok()?;
        oom_kill_count(&text)
    }
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::Hybrid => "cgroup v1 (hybrid: v1 controllers, empty v2 hierarchy)",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

/// The `oom_kill` counter of a v1 `memory.oom_control` or a v2 `memory.events` file.
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn reads_the_oom_kill_counter_of_both_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kill_count(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v2), Some(1));
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert_eq!(oom_kill_count("oom_kill x\n"), None);
    }

    #[test]
    fn detects_each_layout() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CgroupVersion::detect_under(dir.path()), CgroupVersion::V1);
        std::fs::create_dir(dir.path().join("unified")).unwrap();
        std::fs::write(dir.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(
            CgroupVersion::detect_under(dir.path()),
            CgroupVersion::Hybrid
        );
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory").unwrap();
        assert_eq!(CgroupVersion::detect_under(dir.path()), CgroupVersion::V2);
    }

    #[test]
    fn v1_spreads_a_container_over_its_controllers() {
        let dirs = CgroupVersion::V1.dirs("/berth/w1/abc");
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/memory/berth/w1/abc")));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/pids/berth/w1/abc")));
        assert_eq!(
            CgroupVersion::V2.dirs("/berth/w1/abc"),
            vec![PathBuf::from("/sys/fs/cgroup/berth/w1/abc")]
        );
    }
}
