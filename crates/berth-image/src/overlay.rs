//! overlayfs mounts: an image's rootfs as a read-only overlay of its shared layer
//! directories, the probe that decides whether the store can make them, and finding
//! mounts under a directory (to unmount what a dead process left).
//!
//! Every mount is made private (`MS_PRIVATE`) right after it is made: nothing mounted on
//! or under a rootfs later (by a runtime setting up a container) propagates back into it
//! or out of it, so unmounting a rootfs here only ever affects the host's own view.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The kernel takes at most a page of mount options; below that, paths are given as they
/// are (readable in `/proc/self/mountinfo`), above it as `/proc/self/fd/<n>`.
const MAX_OPTIONS: usize = 4000;

/// Mounts `lowers` (top layer first, at least two: this kernel refuses one lower without
/// an upper) read-only on `target`, and makes the mount private.
pub(crate) fn mount_lowers(lowers: &[PathBuf], target: &Path) -> io::Result<()> {
    mount_overlay(lowers, None, target)
}

/// Gives one container its own root file system on `target`: an overlay of an image's
/// `layers` (a [`crate::PreparedImage::layers`], top first) with the container's own
/// `upper` and `work` directories (empty, on one file system, not shared), made private.
/// The layers stay read-only and shared; what the runtime creates in the rootfs (mount
/// points) goes to `upper`. Undo it with [`unmount_container_rootfs`] before removing
/// `upper`.
pub fn mount_container_rootfs(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    mount_overlay(layers, Some((upper, work)), target)
}

/// Unmounts a rootfs [`mount_container_rootfs`] made (detached: a process still in it
/// keeps its view); one that is not mounted is left alone. Whether nothing is mounted on
/// `target` any more.
pub fn unmount_container_rootfs(target: &Path) -> bool {
    let Some(parent) = target.parent() else {
        return true;
    };
    match is_mounted(target, parent) {
        Ok(false) => true,
        Ok(true) => unmount(target, true).is_ok(),
        Err(_) => false,
    }
}

/// Mounts an overlay of `lowers` (top first) on `target`: read-only without an upper
/// directory, writable into `upper` (with its `work` directory) otherwise; then makes the
/// mount private.
fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> io::Result<()> {
    // Room for `,upperdir=...,workdir=...`, appended below.
    let extra = upper.map_or(0, |(upper, work)| {
        upper.as_os_str().len() + work.as_os_str().len() + ",upperdir=,workdir=".len()
    });
    let plain = lowers
        .iter()
        .map(|p| p.to_str().filter(|s| !s.contains([':', ',', '\\'])))
        .collect::<Option<Vec<&str>>>()
        .map(|paths| format!("lowerdir={}", paths.join(":")));
    // Open directories keep the `/proc/self/fd` names valid until the mount is made.
    let mut open = Vec::new();
    let options = match plain {
        Some(options) if options.len() + extra <= MAX_OPTIONS => options,
        // Too long, or a path overlayfs would split: name them by descriptor.
        _ => {
            for lower in lowers {
                open.push(File::open(lower)?);
            }
            let fds: Vec<String> = open
                .iter()
                .map(|f| format!("/proc/self/fd/{}", f.as_raw_fd()))
                .collect();
            format!("lowerdir={}", fds.join(":"))
        }
    };
    let (options, flags) = match upper {
        None => (options, MsFlags::MS_RDONLY),
        Some((upper, work)) => {
            let (upper, work) = (upper.to_str(), work.to_str());
            let (Some(upper), Some(work)) = (upper, work) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an overlay's upper and work directories must be UTF-8 paths",
                ));
            };
            if [upper, work].iter().any(|p| p.contains([':', ','])) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an overlay's upper and work directories may not hold ':' or ','",
                ));
            }
            let options = format!("{options},upperdir={upper},workdir={work}");
            (options, MsFlags::empty())
        }
    };
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )?;
    drop(open);
    if let Err(e) = mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        let _ = umount2(target, MntFlags::MNT_DETACH);
        return Err(e.into());
    }
    Ok(())
}

/// Unmounts `target`; `detach` lets a busy mount go lazily (`MNT_DETACH`), otherwise a
/// busy one fails and stays.
pub(crate) fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    let flags = if detach {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    umount2(target, flags).map_err(io::Error::from)
}

/// Whether `dir` is a mount point: on another device than its parent `parent`.
pub(crate) fn is_mounted(dir: &Path, parent: &Path) -> io::Result<bool> {
    let below = match fs::symlink_metadata(dir) {
        Ok(meta) => meta.dev(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(below != fs::symlink_metadata(parent)?.dev())
}

/// Whether this process can mount read-only overlays of layers: tries one with two empty
/// lowers on `work/merged` (an empty work directory) and unmounts it.
pub(crate) fn probe(work: &Path) -> bool {
    let lowers = [work.join("upper"), work.join("lower")];
    let merged = work.join("merged");
    for dir in lowers.iter().chain([&merged]) {
        if fs::create_dir(dir).is_err() {
            return false;
        }
    }
    match mount_lowers(&lowers, &merged) {
        Ok(()) => unmount(&merged, true).is_ok(),
        Err(e) => {
            tracing::debug!(error = %e, "no overlayfs: images are flattened");
            false
        }
    }
}

/// Unmounts every mount at or under `dir` (deepest first, detached: what a dead process
/// left). Whether none is left.
pub(crate) fn unmount_under(dir: &Path) -> bool {
    let Ok(mut under) = mount_points_under(dir) else {
        return false;
    };
    under.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    under.iter().all(|m| unmount(m, true).is_ok())
}

/// The mount points at or under `dir`, in mountinfo's order.
pub(crate) fn mount_points_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    // mountinfo names mount points by their canonical paths.
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    Ok(mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(&dir))
        .collect())
}

/// The mount points of this process's mount namespace, from `/proc/self/mountinfo`.
pub(crate) fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(mounts()?.into_iter().map(|m| m.point).collect())
}

/// One line of `/proc/self/mountinfo`, the fields tests and cleanup look at.
#[derive(Debug, Clone)]
pub(crate) struct MountInfo {
    /// Where it is mounted.
    pub(crate) point: PathBuf,
    /// Its file system type (`overlay`): tests check what a rootfs is.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fs_type: String,
    /// Its propagation (`shared:N`, `master:N`; none if private): tests check it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) propagation: String,
}

/// The mounts of this process's mount namespace.
pub(crate) fn mounts() -> io::Result<Vec<MountInfo>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_mountinfo).collect())
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`: the mount point is
/// the fifth field, the optional fields run to `-`, the type follows.
fn parse_mountinfo(line: &str) -> Option<MountInfo> {
    let fields: Vec<&str> = line.split(' ').collect();
    let point = unescape(fields.get(4)?);
    let dash = fields.iter().position(|f| *f == "-")?;
    Some(MountInfo {
        point: PathBuf::from(point),
        fs_type: (*fields.get(dash + 1)?).to_owned(),
        propagation: fields.get(6..dash)?.join(" "),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and tab, newline, backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes() {
        let line = "36 35 98:0 / /a\\040b rw,noatime shared:1 master:2 - overlay overlay ro";
        let info = parse_mountinfo(line).unwrap();
        assert_eq!(info.point, Path::new("/a b"));
        assert_eq!(info.fs_type, "overlay");
        assert_eq!(info.propagation, "shared:1 master:2");
        let private = parse_mountinfo("1 2 0:1 / /x rw - tmpfs t rw").unwrap();
        assert_eq!(private.propagation, "");
    }
}
