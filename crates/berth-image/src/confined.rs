//! Paths inside a root directory, resolved the way the container will see them: symlinks
//! are followed with absolute targets taken relative to the root, and nothing may climb
//! above the root.
//!
//! Unpacking and [`crate::resolve_user`] go through [`resolve`], so a hostile image can
//! neither write outside its rootfs nor make berth read a host file.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// At most this many symlinks are followed in one resolution (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Why a path could not be resolved inside its root.
#[derive(Debug)]
pub(crate) enum Escape {
    /// The path (or a symlink on the way) climbs above the root with `..`.
    AboveRoot,
    /// More than [`MAX_SYMLINKS`] symlinks.
    TooManySymlinks,
    /// Reading the file system failed.
    Io(io::Error),
}

impl std::fmt::Display for Escape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Escape::AboveRoot => f.write_str("it climbs above the root (`..` or a symlink)"),
            Escape::TooManySymlinks => write!(f, "more than {MAX_SYMLINKS} symlinks"),
            Escape::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Checks that an entry path is relative and has no `..`: what a layer may name.
/// Returns its normal components (`.` dropped).
pub(crate) fn entry_components(path: &Path) -> Result<Vec<OsString>, &'static str> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("it has a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(parts)
}

/// Resolves `path` (relative to `root`, or absolute meaning relative to `root`) inside
/// `root`, following every symlink, the last component's too when `follow_last`.
/// Components that do not exist yet are taken as they are. The answer is under `root`.
pub(crate) fn resolve(root: &Path, path: &Path, follow_last: bool) -> Result<PathBuf, Escape> {
    // What is left to walk, last component first (so pushing a symlink's target in front is
    // a push onto the end), and the resolved components so far.
    let mut pending: Vec<OsString> = Vec::new();
    push_front(&mut pending, path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut symlinks = 0;
    while let Some(name) = pending.pop() {
        match name.to_str() {
            Some(".") => continue,
            Some("..") => {
                resolved.pop().ok_or(Escape::AboveRoot)?;
                continue;
            }
            Some("/") => {
                resolved.clear();
                continue;
            }
            _ => {}
        }
        let candidate = join(root, &resolved).join(&name);
        let is_last = pending.is_empty();
        let link = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() && (follow_last || !is_last) => {
                Some(std::fs::read_link(&candidate).map_err(Escape::Io)?)
            }
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Escape::Io(e)),
        };
        match link {
            Some(target) => {
                symlinks += 1;
                if symlinks > MAX_SYMLINKS {
                    return Err(Escape::TooManySymlinks);
                }
                push_front(&mut pending, &target);
            }
            None => resolved.push(name),
        }
    }
    Ok(join(root, &resolved))
}

/// Puts `path`'s components in front of `pending` (which is kept in reverse order); an
/// absolute path starts with a `/` marker that resets the walk to the root.
fn push_front(pending: &mut Vec<OsString>, path: &Path) {
    let mut parts: Vec<OsString> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => parts.push("/".into()),
            Component::CurDir => {}
            Component::ParentDir => parts.push("..".into()),
            Component::Normal(name) => parts.push(name.to_owned()),
        }
    }
    pending.extend(parts.into_iter().rev());
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(parts);
    path
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr", root.join("abs")).unwrap();
        assert_eq!(
            resolve(root, Path::new("lib/x"), false).unwrap(),
            root.join("usr/lib/x")
        );
        assert_eq!(
            resolve(root, Path::new("/abs/lib"), true).unwrap(),
            root.join("usr/lib")
        );
        assert_eq!(
            resolve(root, Path::new("lib"), false).unwrap(),
            root.join("lib")
        );
    }

    #[test]
    fn refuses_climbing_above_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("../..", root.join("up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert!(matches!(
            resolve(root, Path::new("up/x"), false),
            Err(Escape::AboveRoot)
        ));
        assert!(matches!(
            resolve(root, Path::new("../x"), false),
            Err(Escape::AboveRoot)
        ));
        assert!(matches!(
            resolve(root, Path::new("loop/x"), false),
            Err(Escape::TooManySymlinks)
        ));
    }

    #[test]
    fn entry_paths_must_be_relative_without_dotdot() {
        assert_eq!(entry_components(Path::new("./a/b")).unwrap(), ["a", "b"]);
        assert!(entry_components(Path::new("a/../b")).is_err());
        assert!(entry_components(Path::new("/etc/passwd")).is_err());
    }
}
