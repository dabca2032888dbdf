//! Starting the six nodes and joining them into a cluster with
//! `redis-cli --cluster create`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{CLUSTER_NODES, CLUSTER_START_TIMEOUT, LocalCluster, Node, POLL_INTERVAL};
use crate::LocalRedisError;
use crate::process::{ServerProcess, log_tail, spawn_error, temp_dir};
use crate::security::{Secured, Security};
use crate::standalone::STANDALONE_START_TIMEOUT;

impl LocalCluster {
    /// Starts the six nodes, joins them with `redis-cli --cluster create
    /// ... --cluster-replicas 1 --cluster-yes`, and waits (up to
    /// [`CLUSTER_START_TIMEOUT`] in total) until every node reports
    /// `cluster_state:ok`, all 16384 slots are served, every node agrees on
    /// which primary serves which slots, and each of the three primaries has
    /// a replica whose link to it is up (so that a failover can happen right
    /// away).
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::RedisServerNotFound`] or
    /// [`LocalRedisError::RedisCliNotFound`] if a program is missing;
    /// otherwise an error saying what did not work, with log tails.
    pub fn start() -> Result<LocalCluster, LocalRedisError> {
        LocalCluster::start_with(Security::default())
    }

    /// Like [`start`](Self::start), with every node secured as `security` says (with
    /// TLS, also the cluster bus and replication; with a password, also `masterauth`).
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start), and [`LocalRedisError::Certificates`] if the test
    /// certificates cannot be generated.
    pub fn start_with(security: Security) -> Result<LocalCluster, LocalRedisError> {
        let started = Instant::now();
        let dir = temp_dir("berth-localcluster-")?;
        let secured = Secured::prepare(security, dir.path())?;
        let mut cluster = LocalCluster {
            nodes: Vec::with_capacity(CLUSTER_NODES),
            killed: HashMap::new(),
            secured,
            dir,
        };
        for i in 0..CLUSTER_NODES {
            cluster.start_node(i)?;
        }
        cluster.create(CLUSTER_START_TIMEOUT.saturating_sub(started.elapsed()))?;
        match cluster.wait_started(CLUSTER_START_TIMEOUT.saturating_sub(started.elapsed())) {
            Ok(()) => Ok(cluster),
            Err((_, problem)) => Err(LocalRedisError::ClusterTimeout {
                waited: started.elapsed(),
                problem,
                log_tails: cluster.log_tails(),
            }),
        }
    }

    /// Starts node number `i` in its own subdirectory and adds it.
    fn start_node(&mut self, i: usize) -> Result<(), LocalRedisError> {
        let node_dir = self.dir.path().join(format!("node-{i}"));
        fs::create_dir(&node_dir).map_err(|source| LocalRedisError::TempDir {
            what: "a node directory",
            source,
        })?;
        let process =
            ServerProcess::start(&node_dir, &self.node_setup(), STANDALONE_START_TIMEOUT)?;
        self.nodes.push(Node {
            port: process.port(),
            ports: process.ports().to_vec(),
            process: Some(process),
            log_path: node_dir.join("redis.log"),
            dir: node_dir,
        });
        Ok(())
    }

    /// Runs `redis-cli --cluster create`, killing it after `timeout`.
    fn create(&self, timeout: Duration) -> Result<(), LocalRedisError> {
        let out_path = self.dir.path().join("cluster-create.log");
        let temp_err = |source| LocalRedisError::TempDir {
            what: "the redis-cli log file",
            source,
        };
        let out = File::create(&out_path).map_err(temp_err)?;
        let err = out.try_clone().map_err(temp_err)?;
        let mut cmd = Command::new("redis-cli");
        cmd.args(self.secured.cli_args())
            .args(["--cluster", "create"])
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd.spawn().map_err(|source| {
            spawn_error("redis-cli", LocalRedisError::RedisCliNotFound, source)
        })?;
        wait_for_create(child, timeout, || log_tail(&out_path))
    }
}

/// Waits for `redis-cli --cluster create` to succeed, killing it after
/// `timeout`; `output` reads the tail of its output for error messages.
fn wait_for_create(
    mut child: Child,
    timeout: Duration,
    output: impl Fn() -> String,
) -> Result<(), LocalRedisError> {
    let started = Instant::now();
    loop {
        let status = match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => status.to_string(),
            Ok(None) if started.elapsed() < timeout => {
                thread::sleep(POLL_INTERVAL);
                continue;
            }
            Ok(None) => format!("killed after {timeout:?} without finishing"),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LocalRedisError::Spawn {
                    program: "redis-cli",
                    source,
                });
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        return Err(LocalRedisError::ClusterCreate {
            status,
            output: output(),
        });
    }
}
