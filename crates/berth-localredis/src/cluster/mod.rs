//! A 6-node Redis Cluster (3 primaries, 3 replicas).
//!
//! This file holds the type, its node bookkeeping and the queries and
//! faults on single nodes; [`start`] starts and creates the cluster,
//! [`health`] checks it and waits for it (startup, failover, rejoin), and
//! [`topology`] reads a node's `CLUSTER INFO`, `CLUSTER SLOTS` and `ROLE`.

mod health;
mod start;
mod topology;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

pub use self::topology::SlotRange;
use self::topology::{Role, cluster_slots, role};
use crate::LocalRedisError;
use crate::process::{Mode, ServerProcess, Setup, log_tail};
use crate::security::Secured;
use crate::slot::{SLOT_COUNT, key_slot};
use crate::standalone::STANDALONE_START_TIMEOUT;

/// How long [`LocalCluster::start`] waits, in total, for the nodes to start
/// and the cluster to become healthy.
pub const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The `cluster-node-timeout` of every node. Failure detection, and so a
/// failover, takes a little more than this.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(2000);
/// The number of nodes: 3 primaries with one replica each.
pub const CLUSTER_NODES: usize = 6;
/// The number of primaries.
const PRIMARIES: usize = 3;
/// How often the cluster's state is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One node of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    /// The port and the cluster bus port, which a restart uses again.
    ports: Vec<u16>,
    /// `None` once the node was killed (until it is restarted).
    process: Option<ServerProcess>,
    dir: PathBuf,
    log_path: PathBuf,
}

/// A 6-node Redis Cluster (3 primaries, 3 replicas) on free ports of
/// 127.0.0.1, each node in its own subdirectory of one temporary directory,
/// with persistence off and `cluster-node-timeout` [`CLUSTER_NODE_TIMEOUT`].
///
/// Dropping it kills every node (SIGKILL, then waits for it) and removes the
/// directory.
///
/// ```no_run
/// use std::time::Duration;
/// use berth_localredis::LocalCluster;
///
/// let mut cluster = LocalCluster::start()?;
/// let seeds = cluster.urls(); // hand these to a cluster client
/// let old = cluster.primary_for_key("foo")?;
/// cluster.kill_node(old)?;
/// let new = cluster.wait_for_failover(old, Duration::from_secs(20))?;
/// assert_eq!(cluster.primary_for_key("foo")?, new);
/// # Ok::<(), berth_localredis::LocalRedisError>(())
/// ```
#[derive(Debug)]
pub struct LocalCluster {
    // Field order matters: the nodes are dropped (killed) before the
    // directory they work in is removed.
    nodes: Vec<Node>,
    /// The slot ranges each killed node served as a primary when it was killed.
    killed: HashMap<u16, Vec<SlotRange>>,
    /// Password, users and TLS of every node.
    secured: Arc<Secured>,
    dir: TempDir,
}

impl LocalCluster {
    /// The ports of the nodes that have not been killed.
    #[must_use]
    pub fn ports(&self) -> Vec<u16> {
        self.live_nodes().map(|n| n.port).collect()
    }

    /// The URLs (`redis://127.0.0.1:PORT/`, `rediss://` with TLS, without credentials)
    /// of the nodes that have not been killed, to use as a cluster client's seed nodes.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        let scheme = self.secured.scheme();
        self.live_nodes()
            .map(|n| format!("{scheme}://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The test CA's certificate file (PEM), when the nodes use TLS.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.secured.tls.as_ref().map(|t| t.ca_file.as_path())
    }

    /// The slot map (`CLUSTER SLOTS`) as seen by the first live node that
    /// answers, sorted by first slot.
    ///
    /// # Errors
    ///
    /// The error of the last node tried if no live node answers.
    pub fn slots(&self) -> Result<Vec<SlotRange>, LocalRedisError> {
        let mut last_err = LocalRedisError::ClusterUnhealthy {
            problem: String::from("every node has been killed"),
        };
        for node in self.live_nodes() {
            match cluster_slots(node.port) {
                Ok(slots) => return Ok(slots),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// The port of the primary that serves `slot`, according to the first
    /// live node that answers. Right after a primary was killed, and until a
    /// replica took over, this is the dead primary's port.
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::SlotOutOfRange`] if `slot` is 16384 or more,
    /// [`LocalRedisError::SlotUnassigned`] if no node serves it, or the error
    /// of [`slots`](Self::slots).
    pub fn primary_for_slot(&self, slot: u16) -> Result<u16, LocalRedisError> {
        if slot >= SLOT_COUNT {
            return Err(LocalRedisError::SlotOutOfRange { slot });
        }
        self.slots()?
            .iter()
            .find(|r| r.contains(slot))
            .map(|r| r.primary)
            .ok_or(LocalRedisError::SlotUnassigned { slot })
    }

    /// The port of the primary that serves `key` (see [`key_slot`] and
    /// [`primary_for_slot`](Self::primary_for_slot)).
    ///
    /// # Errors
    ///
    /// As for [`primary_for_slot`](Self::primary_for_slot).
    pub fn primary_for_key(&self, key: &str) -> Result<u16, LocalRedisError> {
        self.primary_for_slot(key_slot(key.as_bytes()))
    }

    /// The ports of the replicas connected to the primary on `port`,
    /// according to its `ROLE`; empty if the node is a replica.
    ///
    /// Unlike [`SlotRange::replicas`], this lists replicas as soon as they
    /// are connected.
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::UnknownNode`], [`LocalRedisError::NodeAlreadyKilled`],
    /// or an error talking to the node.
    pub fn replicas_of(&self, port: u16) -> Result<Vec<u16>, LocalRedisError> {
        self.live_node_index(port)?;
        Ok(match role(port)? {
            Role::Primary { replicas } => replicas,
            Role::Replica { .. } => Vec::new(),
        })
    }

    /// Kills the node on `port` with SIGKILL (no clean shutdown, like a
    /// crash) and reaps it. If it was a primary, the slots it served are
    /// remembered for [`wait_for_failover`](Self::wait_for_failover).
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::UnknownNode`], [`LocalRedisError::NodeAlreadyKilled`],
    /// or the error of [`slots`](Self::slots) (the node is then not killed).
    pub fn kill_node(&mut self, port: u16) -> Result<(), LocalRedisError> {
        let index = self.live_node_index(port)?;
        let served: Vec<SlotRange> = self
            .slots()?
            .into_iter()
            .filter(|r| r.primary == port)
            .collect();
        if let Some(mut process) = self.nodes[index].process.take() {
            process.kill();
        }
        self.killed.insert(port, served);
        Ok(())
    }

    /// Starts the [killed](Self::kill_node) node on `port` again, on the same ports and in
    /// the same directory (so with the `nodes.conf` it left), and waits (up to
    /// [`STANDALONE_START_TIMEOUT`]) until it answers PING. A primary that was replaced
    /// meanwhile rejoins as a replica of the node that took over; see
    /// [`wait_for_rejoin`](Self::wait_for_rejoin).
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::UnknownNode`], [`LocalRedisError::NodeNotKilled`] if it runs,
    /// [`LocalRedisError::PortRace`] if another process took one of its ports meanwhile, or
    /// why it did not start.
    pub fn restart_node(&mut self, port: u16) -> Result<(), LocalRedisError> {
        let index = self.node_index(port)?;
        let setup = self.node_setup();
        let node = &mut self.nodes[index];
        if node.process.is_some() {
            return Err(LocalRedisError::NodeNotKilled { port });
        }
        node.process = Some(ServerProcess::restart(
            &node.dir,
            &setup,
            &node.ports,
            STANDALONE_START_TIMEOUT,
        )?);
        self.killed.remove(&port);
        Ok(())
    }

    /// The last lines of the log of the node on `port`, killed or not.
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::UnknownNode`] if no node has that port.
    pub fn log_tail(&self, port: u16) -> Result<String, LocalRedisError> {
        let index = self.node_index(port)?;
        Ok(log_tail(&self.nodes[index].log_path))
    }

    /// How every node is started.
    fn node_setup(&self) -> Setup {
        Setup {
            mode: Mode::Cluster {
                node_timeout: CLUSTER_NODE_TIMEOUT,
            },
            secured: Arc::clone(&self.secured),
        }
    }

    /// The nodes that have not been killed.
    fn live_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.process.is_some())
    }

    /// The index of the node on `port`, or [`LocalRedisError::UnknownNode`].
    fn node_index(&self, port: u16) -> Result<usize, LocalRedisError> {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .ok_or_else(|| LocalRedisError::UnknownNode {
                port,
                nodes: self.nodes.iter().map(|n| n.port).collect(),
            })
    }

    /// Like [`node_index`](Self::node_index), but a killed node is
    /// [`LocalRedisError::NodeAlreadyKilled`].
    fn live_node_index(&self, port: u16) -> Result<usize, LocalRedisError> {
        let index = self.node_index(port)?;
        if self.nodes[index].process.is_none() {
            return Err(LocalRedisError::NodeAlreadyKilled { port });
        }
        Ok(index)
    }

    /// The log tails of all nodes, for error messages.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let state = if node.process.is_some() {
                ""
            } else {
                " (killed)"
            };
            let _ = writeln!(
                out,
                "--- node 127.0.0.1:{}{state} ---\n{}",
                node.port,
                log_tail(&node.log_path)
            );
        }
        out
    }
}
