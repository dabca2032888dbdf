//! Files that hold a secret (a token, a worker's credential): written readable and writable
//! by their owner only.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Writes `text` and a newline to `path` (creating its directory), readable and writable
/// by its owner only: written to `<path>.tmp` created with mode 0600 (a leftover one is set
/// to 0600 before the secret is written), synced, then renamed over `path`, so `path`
/// holds the old text or the new, never a part.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Written aside and renamed over: a reader (or the next life of a process that
    // crashed mid-write) sees the old text or the new, never a part.
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = std::path::PathBuf::from(aside);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&aside)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{text}")?;
    file.sync_all()?;
    std::fs::rename(&aside, path)
}
