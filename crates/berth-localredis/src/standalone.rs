//! A standalone redis-server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use redis::Value;

use crate::LocalRedisError;
use crate::client;
use crate::process::{Mode, ServerProcess, Setup, temp_dir};
use crate::security::{Secured, Security};

/// How long [`LocalRedis::start`] waits for the server to answer PING.
pub const STANDALONE_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A standalone `redis-server` on a free port of 127.0.0.1, in its own
/// temporary directory, with persistence off (`--save '' --appendonly no`).
///
/// Dropping it kills the server (SIGKILL, then waits for it) and removes
/// the directory.
///
/// ```
/// let redis = berth_localredis::LocalRedis::start()?;
/// assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
/// # Ok::<(), berth_localredis::LocalRedisError>(())
/// ```
#[derive(Debug)]
pub struct LocalRedis {
    // Field order matters: the process is dropped (killed) before the
    // directory it works in is removed.
    process: ServerProcess,
    secured: Arc<Secured>,
    dir: TempDir,
}

impl LocalRedis {
    /// Starts the server and waits (up to [`STANDALONE_START_TIMEOUT`]) until
    /// it answers PING.
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::RedisServerNotFound`] if `redis-server` is not on
    /// `PATH`; otherwise an error saying why the server did not start, with
    /// the tail of its log.
    pub fn start() -> Result<LocalRedis, LocalRedisError> {
        LocalRedis::start_with(Security::default())
    }

    /// Like [`start`](Self::start), secured as `security` says: a password, ACL users,
    /// TLS with a freshly generated test CA (see [`ca_file`](Self::ca_file)).
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start), and [`LocalRedisError::Certificates`] if the test
    /// certificates cannot be generated.
    pub fn start_with(security: Security) -> Result<LocalRedis, LocalRedisError> {
        let dir = temp_dir("berth-localredis-")?;
        let setup = Setup {
            mode: Mode::Standalone,
            secured: Secured::prepare(security, dir.path())?,
        };
        let process = ServerProcess::start(dir.path(), &setup, STANDALONE_START_TIMEOUT)?;
        Ok(LocalRedis {
            process,
            secured: setup.secured,
            dir,
        })
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The connection URL, `redis://127.0.0.1:PORT/` (`rediss://` with TLS), without
    /// credentials.
    #[must_use]
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/", self.secured.scheme(), self.port())
    }

    /// The test CA's certificate file (PEM), when the server uses TLS.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.secured.tls.as_ref().map(|t| t.ca_file.as_path())
    }

    /// The operating system's process id of the server.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The generated client certificate and key files (PEM), signed by the test CA, when
    /// the server uses TLS; a server started with
    /// [`require_client_cert`](crate::Security::require_client_cert) accepts only clients
    /// that present it.
    #[must_use]
    pub fn client_cert_files(&self) -> Option<(&Path, &Path)> {
        self.secured
            .tls
            .as_ref()
            .map(|t| (t.client_cert_file.as_path(), t.client_key_file.as_path()))
    }

    /// The server's working directory (removed on drop).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log, for diagnosing test failures.
    #[must_use]
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Sends one command and returns the reply; see [`command`](crate::command).
    ///
    /// # Errors
    ///
    /// See [`command`](crate::command); an error reply is
    /// [`LocalRedisError::ServerError`].
    pub fn command(&self, args: &[&str]) -> Result<Value, LocalRedisError> {
        client::command(self.port(), args)
    }
}
