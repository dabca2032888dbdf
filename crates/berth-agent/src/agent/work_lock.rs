//! One agent per work directory. Two agents on one directory would take each other's
//! containers for leftovers of an earlier life (and stop them), and evict images the other
//! runs; the second one to start is refused instead, naming the first.

use crate::error::AgentError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file in the work directory: locked (`flock`, exclusive) while an agent runs
/// there, holding that agent's pid. The kernel drops the lock when its holder dies, so a
/// crashed agent never leaves it held.
const LOCK_FILE: &str = "agent.lock";

/// The work directory's lock, held while it lives.
#[derive(Debug)]
pub(crate) struct WorkDirLock {
    _held: Flock<File>,
}

impl WorkDirLock {
    /// Takes the lock of `work_dir` (which exists), or says which process holds it.
    pub(crate) fn take(work_dir: &Path) -> Result<WorkDirLock, AgentError> {
        let path = work_dir.join(LOCK_FILE);
        let io_error = |source: std::io::Error| AgentError::WorkDir {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                // Only for the message: an unreadable pid is said as unknown.
                let _ = file.read_to_string(&mut holder);
                return Err(AgentError::WorkDirInUse {
                    path: work_dir.display().to_string(),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io_error(errno.into())),
        };
        lock.set_len(0).map_err(io_error)?;
        lock.rewind().map_err(io_error)?;
        write!(lock, "{}", std::process::id()).map_err(io_error)?;
        Ok(WorkDirLock { _held: lock })
    }
}
