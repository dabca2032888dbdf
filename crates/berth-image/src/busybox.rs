//! berth's default rootfs: the host's static busybox, a symlink per applet, a minimal
//! `/etc/passwd` and `/etc/group`, and the empty directories a runtime mounts over.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ImageError, IoContext};
use crate::layout::HashingReader;

/// Where the host's busybox is looked for unless the store is told otherwise.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// The empty directories of the default rootfs (`etc` gets its two files).
const DIRS: &[&str] = &["bin", "proc", "sys", "dev", "tmp", "etc", "work"];
const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// The `PT_INTERP` program header type: present in a dynamically linked executable.
const PT_INTERP: u32 = 3;

/// The default image's id for the busybox at `path`: `default-<sha256 of busybox>`, so an
/// upgraded busybox builds a new rootfs. Fails if busybox is missing or not static.
pub(crate) fn default_id(busybox: &Path) -> Result<String, ImageError> {
    check_static(busybox)?;
    let file = File::open(busybox).map_err(|e| busybox_error(busybox, e.to_string()))?;
    let mut hashing = HashingReader::new(BufReader::new(file));
    io::copy(&mut hashing, &mut io::sink()).context(|| format!("reading {}", busybox.display()))?;
    Ok(format!("default-{}", hashing.finish().0))
}

/// Builds the default rootfs in `rootfs` (an empty directory) from `busybox`.
pub(crate) fn build(busybox: &Path, rootfs: &Path) -> Result<(), ImageError> {
    for dir in DIRS {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).context(|| format!("creating {}", path.display()))?;
    }
    let tmp = rootfs.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .context(|| format!("setting the mode of {}", tmp.display()))?;
    let target = rootfs.join("bin/busybox");
    fs::copy(busybox, &target).context(|| format!("copying {}", busybox.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .context(|| format!("setting the mode of {}", target.display()))?;
    for applet in applets(busybox)? {
        let link = rootfs.join("bin").join(&applet);
        symlink("busybox", &link).context(|| format!("linking {}", link.display()))?;
    }
    write(&rootfs.join("etc/passwd"), PASSWD)?;
    write(&rootfs.join("etc/group"), GROUP)
}

/// The applet names `busybox --list` prints, without `busybox` itself and anything that
/// is not a plain file name.
fn applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| busybox_error(busybox, format!("running `--list`: {e}")))?;
    if !output.status.success() {
        return Err(busybox_error(
            busybox,
            format!("`--list` failed: {}", output.status),
        ));
    }
    let list = String::from_utf8_lossy(&output.stdout);
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox" && *name != "." && *name != "..")
        .filter(|name| !name.contains('/'))
        .map(str::to_owned)
        .collect())
}

fn write(path: &Path, text: &str) -> Result<(), ImageError> {
    fs::write(path, text).context(|| format!("writing {}", path.display()))
}

/// Fails unless `path` is an ELF executable without a `PT_INTERP` program header (a
/// static one: it runs in a rootfs that has no dynamic loader).
fn check_static(path: &Path) -> Result<(), ImageError> {
    let mut header = Vec::new();
    File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut header))
        .map_err(|e| busybox_error(path, e.to_string()))?;
    match has_interpreter(&header) {
        Some(false) => Ok(()),
        Some(true) => Err(busybox_error(
            path,
            "it is dynamically linked (it has an ELF interpreter)".to_owned(),
        )),
        None => Err(busybox_error(
            path,
            "it is not an ELF executable berth can read".to_owned(),
        )),
    }
}

/// Whether an ELF image (its first bytes, program headers included) names an
/// interpreter; `None` if it is not ELF or is cut short.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is_64 = match *elf.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match *elf.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let read = |offset: usize, width: usize| -> Option<u64> {
        let bytes = elf.get(offset..offset.checked_add(width)?)?;
        let fold = |acc: u64, b: &u8| (acc << 8) | u64::from(*b);
        Some(if little {
            bytes.iter().rev().fold(0, fold)
        } else {
            bytes.iter().fold(0, fold)
        })
    };
    // e_phoff, e_phentsize and e_phnum sit at different offsets in 32- and 64-bit ELF.
    let (phoff, phentsize, phnum) = if is_64 {
        (read(0x20, 8)?, read(0x36, 2)?, read(0x38, 2)?)
    } else {
        (read(0x1C, 4)?, read(0x2A, 2)?, read(0x2C, 2)?)
    };
    for i in 0..phnum {
        let offset = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if read(offset, 4)? == u64::from(PT_INTERP) {
            return Some(true);
        }
    }
    Some(false)
}

fn busybox_error(path: &Path, reason: String) -> ImageError {
    ImageError::Busybox {
        path: PathBuf::from(path),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_has_an_interpreter() {
        // Whatever runs these tests is dynamically linked on a Debian host.
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let sh = fs::read("/bin/sh").unwrap();
        assert!(has_interpreter(&exe).unwrap() || has_interpreter(&sh).unwrap());
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
        assert_eq!(has_interpreter(b"\x7fELF\x02\x01"), None);
    }

    #[test]
    fn a_missing_or_dynamic_busybox_says_install_busybox_static() {
        let missing = default_id(Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(
            missing.to_string().contains("install busybox-static"),
            "{missing}"
        );
        let dynamic = check_static(Path::new("/bin/sh")).unwrap_err();
        assert!(
            dynamic.to_string().contains("dynamically linked"),
            "{dynamic}"
        );
        assert!(dynamic.to_string().contains("install busybox-static"));
    }
}
