//! The host's NVIDIA device nodes a container is given: one per assigned device, plus the
//! driver's shared nodes, each read from the host so that the container's node and its
//! device cgroup rule name the same major and minor numbers.

use nix::sys::stat::{major, minor};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The driver's nodes every container with a GPU needs (control, unified memory), and the
/// display driver's, which some tools open; each only where the host has it.
const SHARED_NODES: [&str; 4] = [
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];

/// A character device of the host, as it appears in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Its path in the container, e.g. `/dev/nvidia0`.
    pub path: String,
    /// Its major number.
    pub major: i64,
    /// Its minor number.
    pub minor: i64,
    /// Its permission bits on the host.
    pub mode: u32,
    /// Its owner on the host.
    pub uid: u32,
    /// Its group on the host.
    pub gid: u32,
}

/// The nodes of the GPUs with these indices in `dev_dir` (the host's `/dev`):
/// `nvidia<index>` for each, then the [shared ones](SHARED_NODES) when there is any. A node
/// the host lacks is left out (a missing `nvidia<index>` with a warning: the container
/// will not reach that GPU).
pub fn gpu_nodes(dev_dir: &Path, indices: &[u32]) -> Vec<DeviceNode> {
    if indices.is_empty() {
        return Vec::new();
    }
    let mut nodes = Vec::new();
    for index in indices {
        let name = format!("nvidia{index}");
        match read_node(dev_dir, &name) {
            Some(node) => nodes.push(node),
            None => tracing::warn!(dir = %dev_dir.display(), %name,
                "the GPU's device node is missing: the container cannot use that GPU"),
        }
    }
    nodes.extend(
        SHARED_NODES
            .iter()
            .filter_map(|name| read_node(dev_dir, name)),
    );
    nodes
}

/// The character device `dev_dir/name`, or `None` when it is absent or something else.
fn read_node(dev_dir: &Path, name: &str) -> Option<DeviceNode> {
    let path = dev_dir.join(name);
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read a device node");
            return None;
        }
    };
    if !meta.file_type().is_char_device() {
        tracing::warn!(path = %path.display(), "not a character device; not given to containers");
        return None;
    }
    let rdev = meta.rdev();
    Some(DeviceNode {
        path: format!("/dev/{name}"),
        major: i64::try_from(major(rdev)).ok()?,
        minor: i64::try_from(minor(rdev)).ok()?,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Test help: makes fake NVIDIA character nodes (major 195) in a directory. Needs root.
#[cfg(test)]
pub(crate) fn make_fake_nodes(dir: &Path, nodes: &[(&str, u64)]) {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    assert!(
        nix::unistd::geteuid().is_root(),
        "making device nodes needs root"
    );
    for (name, minor) in nodes {
        mknod(
            &dir.join(name),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(195, *minor),
        )
        .unwrap_or_else(|err| panic!("mknod {name}: {err}"));
        // mknod applies the umask; the driver's nodes are 0666.
        std::fs::set_permissions(
            dir.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap_or_else(|err| panic!("chmod {name}: {err}"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn only_the_assigned_gpus_and_the_shared_nodes_present() {
        let dir = tempfile::tempdir().unwrap();
        make_fake_nodes(
            dir.path(),
            &[("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)],
        );
        std::fs::write(dir.path().join("nvidia-uvm"), "a plain file").unwrap();
        assert_eq!(gpu_nodes(dir.path(), &[]), []);
        let nodes = gpu_nodes(dir.path(), &[1, 7]);
        let seen: Vec<(&str, i64, i64)> = nodes
            .iter()
            .map(|n| (n.path.as_str(), n.major, n.minor))
            .collect();
        assert_eq!(
            seen,
            [("/dev/nvidia1", 195, 1), ("/dev/nvidiactl", 195, 255)]
        );
        assert_eq!(nodes[0].mode, 0o666);
        assert_eq!((nodes[0].uid, nodes[0].gid), (0, 0));
    }
}
