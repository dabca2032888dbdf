//! Spawning one redis-server process, waiting for it to answer PING, and
//! killing it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redis::Value;
use tempfile::TempDir;

use crate::LocalRedisError;
use crate::client;
use crate::security::Secured;

/// How many times a server is restarted on fresh ports when it loses the
/// race for its port to another process.
const PORT_ATTEMPTS: u32 = 5;
/// How often to poll a starting server.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How many log lines go into error messages.
const LOG_TAIL_LINES: usize = 30;

/// Cluster settings of a node, or none for a standalone server.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// A standalone server.
    Standalone,
    /// A cluster node with the given `cluster-node-timeout`.
    Cluster { node_timeout: Duration },
}

/// A running redis-server child process. Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    /// The port, then (for a cluster node) the cluster bus port.
    ports: Vec<u16>,
    log_path: PathBuf,
}

/// What one redis-server is started as: standalone or a cluster node, and how it is
/// secured.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// Standalone or a cluster node.
    pub(crate) mode: Mode,
    /// Password, users and TLS (with its generated certificates).
    pub(crate) secured: Arc<Secured>,
}

impl ServerProcess {
    /// Starts redis-server in `dir` on a free port and waits until it
    /// answers PING, restarting it on new ports if it loses a port race.
    pub(crate) fn start(
        dir: &Path,
        setup: &Setup,
        timeout: Duration,
    ) -> Result<ServerProcess, LocalRedisError> {
        let log_path = dir.join("redis.log");
        let mut last_tail = String::new();
        for _ in 0..PORT_ATTEMPTS {
            // The cluster bus port is set explicitly (`cluster-port`) so that
            // it is free too; the default, port + 10000, may be taken or above
            // 65535.
            let ports = free_ports(match setup.mode {
                Mode::Standalone => 1,
                Mode::Cluster { .. } => 2,
            })?;
            client::register(ports[0], &setup.secured);
            let child = spawn(dir, &log_path, setup, &ports, Log::Fresh)?;
            let mut process = ServerProcess {
                child,
                ports,
                log_path: log_path.clone(),
            };
            match process.wait_ready(timeout)? {
                Ready::Yes => return Ok(process),
                Ready::PortTaken => {
                    last_tail = process.log_tail();
                    process.kill();
                }
            }
        }
        Err(LocalRedisError::PortRace {
            attempts: PORT_ATTEMPTS,
            log_tail: last_tail,
        })
    }

    /// Starts redis-server again in `dir` on the `ports` a killed one had (the port, and a
    /// cluster node's bus port), keeping the files it left (a cluster node's
    /// `nodes.conf`) and appending to its log, and waits until it answers PING.
    pub(crate) fn restart(
        dir: &Path,
        setup: &Setup,
        ports: &[u16],
        timeout: Duration,
    ) -> Result<ServerProcess, LocalRedisError> {
        let log_path = dir.join("redis.log");
        if let Some(&port) = ports.first() {
            client::register(port, &setup.secured);
        }
        let child = spawn(dir, &log_path, setup, ports, Log::Append)?;
        let mut process = ServerProcess {
            child,
            ports: ports.to_vec(),
            log_path,
        };
        match process.wait_ready(timeout)? {
            Ready::Yes => Ok(process),
            Ready::PortTaken => {
                let log_tail = process.log_tail();
                process.kill();
                Err(LocalRedisError::PortRace {
                    attempts: 1,
                    log_tail,
                })
            }
        }
    }

    /// The port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.ports[0]
    }

    /// The port, then (for a cluster node) the cluster bus port.
    pub(crate) fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The operating system's process id of the server.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's log (its stdout and stderr).
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Sends SIGKILL to the server and reaps it. Errors are ignored: the
    /// process may already have exited, and there is nothing else to do.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls until the server answers PING, exits, or `timeout` passes.
    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, LocalRedisError> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    let log_tail = self.log_tail();
                    if log_tail.contains("Address already in use") {
                        return Ok(Ready::PortTaken);
                    }
                    return Err(LocalRedisError::Exited {
                        port: self.port(),
                        status,
                        log_tail,
                    });
                }
                Ok(None) => {}
                Err(source) => {
                    self.kill();
                    return Err(LocalRedisError::Spawn {
                        program: "redis-server",
                        source,
                    });
                }
            }
            let last_problem = match client::command(self.port(), &["PING"]) {
                Ok(Value::SimpleString(s)) if s == "PONG" => return Ok(Ready::Yes),
                Ok(other) => format!("PING answered {other:?}"),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                let log_tail = self.log_tail();
                self.kill();
                return Err(LocalRedisError::StartTimeout {
                    port: self.port(),
                    waited: start.elapsed(),
                    last_problem,
                    log_tail,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        client::unregister(self.port());
    }
}

/// The outcome of waiting for a server.
enum Ready {
    /// It answers PING.
    Yes,
    /// It exited because another process took its port.
    PortTaken,
}

/// Whether a server's log starts afresh or goes on after a killed one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// Truncate it.
    Fresh,
    /// Append to it.
    Append,
}

/// Spawns redis-server with its stdout and stderr going to `log_path`.
fn spawn(
    dir: &Path,
    log_path: &Path,
    setup: &Setup,
    ports: &[u16],
    log: Log,
) -> Result<Child, LocalRedisError> {
    let log = File::options()
        .create(true)
        .write(true)
        .append(log == Log::Append)
        .truncate(log == Log::Fresh)
        .open(log_path)
        .map_err(|source| LocalRedisError::TempDir {
            what: "the log file",
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| LocalRedisError::TempDir {
        what: "the log file",
        source,
    })?;
    let mut cmd = Command::new("redis-server");
    let cluster = matches!(setup.mode, Mode::Cluster { .. });
    cmd.args(setup.secured.server_args(ports[0], cluster))
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .args(["--logfile", ""])
        .arg("--dir")
        .arg(dir);
    if let Mode::Cluster { node_timeout } = setup.mode {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .arg("--cluster-node-timeout")
            .arg(node_timeout.as_millis().to_string())
            .arg("--cluster-port")
            .arg(ports[1].to_string())
            // Replicas sync right away instead of after the default 5 s
            // wait for more replicas to join the same diskless transfer.
            .args(["--repl-diskless-sync-delay", "0"]);
    }
    // The child stays in our process group on purpose: if the test process
    // is killed (nextest's timeout kills the whole group, Ctrl-C signals the
    // whole foreground group), the servers die with it.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    cmd.spawn()
        .map_err(|source| spawn_error("redis-server", LocalRedisError::RedisServerNotFound, source))
}

/// The error for `program`, which could not be started: `not_found` if it
/// is not on `PATH`, otherwise [`LocalRedisError::Spawn`].
pub(crate) fn spawn_error(
    program: &'static str,
    not_found: LocalRedisError,
    source: io::Error,
) -> LocalRedisError {
    if source.kind() == io::ErrorKind::NotFound {
        not_found
    } else {
        LocalRedisError::Spawn { program, source }
    }
}

/// Creates a temporary directory whose name starts with `prefix`.
pub(crate) fn temp_dir(prefix: &str) -> Result<TempDir, LocalRedisError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| LocalRedisError::TempDir {
            what: "a temporary directory",
            source,
        })
}

/// Returns `n` distinct ports that were free on 127.0.0.1 a moment ago.
///
/// All listeners are held until all ports are chosen, so the ports are
/// distinct; they are released before returning, so another process may
/// take one before redis-server binds it (the caller retries then).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, LocalRedisError> {
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(LocalRedisError::FreePort)?;
        ports.push(
            listener
                .local_addr()
                .map_err(LocalRedisError::FreePort)?
                .port(),
        );
        listeners.push(listener);
    }
    Ok(ports)
}

/// The last [`LOG_TAIL_LINES`] lines of a log file, or a note saying why
/// it could not be read.
pub(crate) fn log_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            if tail.is_empty() {
                String::from("(the log is empty)")
            } else {
                tail
            }
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}
