//! [`resolve_user`]: an image's `user` string to a uid and gid, read from the rootfs's own
//! `/etc/passwd` and `/etc/group` (never the host's).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::confined;
use crate::error::{ImageError, IoContext};

/// Most bytes of `/etc/passwd` or `/etc/group` that are read (1 MiB).
const MAX_DB_BYTES: u64 = 1 << 20;

/// Resolves an image `user` (`"1000"`, `"1000:1000"`, `"name"`, `"name:group"`, and the
/// mixed forms) against the rootfs's `/etc/passwd` and `/etc/group` into `(uid, gid)`.
///
/// Without a group, the gid is the user's primary group from `/etc/passwd`, or 0 for a
/// numeric uid that has no entry there (as Docker does). A name that is not found is
/// [`ImageError::UnknownUser`] or [`ImageError::UnknownGroup`]. The files are looked up
/// inside `rootfs`, following its symlinks as the container would.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32), ImageError> {
    let invalid = || ImageError::InvalidUser {
        user: user.to_owned(),
    };
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name, Some(group)),
        None => (user, None),
    };
    if name.is_empty() || group.is_some_and(str::is_empty) {
        return Err(invalid());
    }
    let passwd = read_db(rootfs, "etc/passwd")?;
    let (uid, primary_gid) = match name.parse::<u32>() {
        Ok(uid) => (
            uid,
            find(&passwd, |f| f.get(2) == Some(&name)).and_then(gid_of),
        ),
        Err(_) => {
            let entry = find(&passwd, |f| f.first() == Some(&name)).ok_or_else(|| {
                ImageError::UnknownUser {
                    name: name.to_owned(),
                }
            })?;
            let uid = entry
                .get(2)
                .and_then(|u| u.parse().ok())
                .ok_or_else(invalid)?;
            (uid, gid_of(entry))
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(0),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_id(rootfs, group)?,
        },
    };
    Ok((uid, gid))
}

/// A group name's gid from the rootfs's `/etc/group`.
fn group_id(rootfs: &Path, group: &str) -> Result<u32, ImageError> {
    let groups = read_db(rootfs, "etc/group")?;
    find(&groups, |f| f.first() == Some(&group))
        .and_then(|f| f.get(2)?.parse().ok())
        .ok_or_else(|| ImageError::UnknownGroup {
            name: group.to_owned(),
        })
}

/// The gid field of a passwd entry.
fn gid_of(fields: Vec<&str>) -> Option<u32> {
    fields.get(3)?.parse().ok()
}

/// The first line of a colon-separated database whose fields match.
fn find(db: &str, matches: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    db.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| matches(fields))
}

/// Reads `/etc/passwd` or `/etc/group` inside the rootfs; a missing file is empty.
fn read_db(rootfs: &Path, relative: &str) -> Result<String, ImageError> {
    let path = confined::resolve(rootfs, Path::new(relative), true).map_err(|e| {
        ImageError::io(
            format!("resolving /{relative} in {}", rootfs.display()),
            io::Error::other(e.to_string()),
        )
    })?;
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(ImageError::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_DB_BYTES)
        .read_to_end(&mut bytes)
        .context(|| format!("reading {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nstaff:x:50:app\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn numeric_users_and_groups() {
        let dir = rootfs();
        assert_eq!(resolve_user(dir.path(), "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(dir.path(), "1000:7").unwrap(), (1000, 7));
        // Not in /etc/passwd: gid 0, as Docker does.
        assert_eq!(resolve_user(dir.path(), "4242").unwrap(), (4242, 0));
    }

    #[test]
    fn names_and_groups() {
        let dir = rootfs();
        assert_eq!(resolve_user(dir.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(dir.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_user(dir.path(), "root").unwrap(), (0, 0));
        assert_eq!(resolve_user(dir.path(), "1000:staff").unwrap(), (1000, 50));
    }

    #[test]
    fn unknown_names_and_malformed_users_are_errors() {
        let dir = rootfs();
        let user = resolve_user(dir.path(), "nosuch").unwrap_err();
        assert!(matches!(user, ImageError::UnknownUser { .. }), "{user}");
        let group = resolve_user(dir.path(), "app:nosuch").unwrap_err();
        assert!(matches!(group, ImageError::UnknownGroup { .. }), "{group}");
        for bad in ["", ":", "app:", ":50"] {
            assert!(matches!(
                resolve_user(dir.path(), bad),
                Err(ImageError::InvalidUser { .. })
            ));
        }
    }

    #[test]
    fn a_passwd_symlink_out_of_the_rootfs_is_not_followed_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        // It loops back onto itself inside the rootfs rather than reading the host's file.
        assert!(resolve_user(dir.path(), "root").is_err());
    }
}
