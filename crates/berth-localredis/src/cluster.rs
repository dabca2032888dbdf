//! A 6-node Redis Cluster (3 primaries, 3 replicas).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::LocalRedisError;
use crate::process::{Mode, ServerProcess, log_tail};
use crate::resp::{self, Value};
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

/// A range of hash slots and the nodes that serve it, as reported by
/// `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// The first slot of the range.
    pub start: u16,
    /// The last slot of the range (inclusive).
    pub end: u16,
    /// The port of the primary serving the range.
    pub primary: u16,
    /// The ports of its replicas, as `CLUSTER SLOTS` lists them: only those
    /// not known to have failed and whose replication offset is non-zero,
    /// which in an idle cluster takes up to 10 s (`repl-ping-replica-period`)
    /// after startup. See [`LocalCluster::replicas_of`] for connected
    /// replicas.
    pub replicas: Vec<u16>,
}

impl SlotRange {
    /// Whether `slot` is in this range.
    #[must_use]
    pub fn contains(&self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

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
    dir: TempDir,
}

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
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("berth-localcluster-")
            .tempdir()
            .map_err(|source| LocalRedisError::TempDir {
                what: "a temporary directory",
                source,
            })?;
        let mut cluster = LocalCluster {
            nodes: Vec::with_capacity(CLUSTER_NODES),
            killed: HashMap::new(),
            dir,
        };
        for i in 0..CLUSTER_NODES {
            let node_dir = cluster.dir.path().join(format!("node-{i}"));
            fs::create_dir(&node_dir).map_err(|source| LocalRedisError::TempDir {
                what: "a node directory",
                source,
            })?;
            let process = ServerProcess::start(
                &node_dir,
                Mode::Cluster {
                    node_timeout: CLUSTER_NODE_TIMEOUT,
                },
                STANDALONE_START_TIMEOUT,
            )?;
            cluster.nodes.push(Node {
                port: process.port(),
                ports: process.ports().to_vec(),
                process: Some(process),
                log_path: node_dir.join("redis.log"),
                dir: node_dir,
            });
        }
        cluster.create(CLUSTER_START_TIMEOUT.saturating_sub(started.elapsed()))?;
        loop {
            let problem = match cluster.observe(true) {
                Ok(_) => return Ok(cluster),
                Err(problem) => problem,
            };
            if started.elapsed() >= CLUSTER_START_TIMEOUT {
                return Err(LocalRedisError::ClusterTimeout {
                    waited: started.elapsed(),
                    problem,
                    log_tails: cluster.log_tails(),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
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
        cmd.args(["--cluster", "create"])
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                LocalRedisError::RedisCliNotFound
            } else {
                LocalRedisError::Spawn {
                    program: "redis-cli",
                    source,
                }
            }
        })?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(LocalRedisError::ClusterCreate {
                        status: status.to_string(),
                        output: log_tail(&out_path),
                    });
                }
                Ok(None) if started.elapsed() < timeout => thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LocalRedisError::ClusterCreate {
                        status: format!("killed after {timeout:?} without finishing"),
                        output: log_tail(&out_path),
                    });
                }
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LocalRedisError::Spawn {
                        program: "redis-cli",
                        source,
                    });
                }
            }
        }
    }

    /// The ports of the nodes that have not been killed.
    #[must_use]
    pub fn ports(&self) -> Vec<u16> {
        self.live_nodes().map(|n| n.port).collect()
    }

    /// The URLs (`redis://127.0.0.1:PORT/`) of the nodes that have not been
    /// killed, to use as a cluster client's seed nodes.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.live_nodes()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
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
        let index = self.node_index(port)?;
        if self.nodes[index].process.is_none() {
            return Err(LocalRedisError::NodeAlreadyKilled { port });
        }
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
        let index = self.node_index(port)?;
        if self.nodes[index].process.is_none() {
            return Err(LocalRedisError::NodeAlreadyKilled { port });
        }
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
        let node = &mut self.nodes[index];
        if node.process.is_some() {
            return Err(LocalRedisError::NodeNotKilled { port });
        }
        let mode = Mode::Cluster {
            node_timeout: CLUSTER_NODE_TIMEOUT,
        };
        node.process = Some(ServerProcess::restart(
            &node.dir,
            mode,
            &node.ports,
            STANDALONE_START_TIMEOUT,
        )?);
        self.killed.remove(&port);
        Ok(())
    }

    /// Waits until the [restarted](Self::restart_node) node on `port` is a replica whose
    /// link to its primary is up and whom its primary lists among its replicas (the two
    /// sides learn of the link one after the other), and the cluster is healthy (as
    /// [`check_healthy`](Self::check_healthy) sees it).
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::UnknownNode`], [`LocalRedisError::NodeAlreadyKilled`] if it does
    /// not run, [`LocalRedisError::ClusterTimeout`] after `timeout`.
    pub fn wait_for_rejoin(&self, port: u16, timeout: Duration) -> Result<(), LocalRedisError> {
        let index = self.node_index(port)?;
        if self.nodes[index].process.is_none() {
            return Err(LocalRedisError::NodeAlreadyKilled { port });
        }
        let started = Instant::now();
        loop {
            let problem = match (role(port), self.observe(false)) {
                (Ok(Role::Replica { primary, link }), Ok(_)) if link == "connected" => {
                    match role(primary) {
                        Ok(Role::Primary { replicas }) if replicas.contains(&port) => {
                            return Ok(());
                        }
                        Ok(_) => format!("primary {primary} does not list node {port} yet"),
                        Err(e) => e.to_string(),
                    }
                }
                (Ok(Role::Replica { link, .. }), Ok(_)) => format!("node {port}: link {link}"),
                (Ok(Role::Primary { .. }), Ok(_)) => format!("node {port} is still a primary"),
                (Err(e), _) => e.to_string(),
                (_, Err(problem)) => problem,
            };
            if started.elapsed() >= timeout {
                return Err(LocalRedisError::ClusterTimeout {
                    waited: started.elapsed(),
                    problem,
                    log_tails: self.log_tails(),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the slots the primary on `old_primary_port` served when
    /// it was [killed](Self::kill_node) are served by a promoted replica,
    /// every live node reports `cluster_state:ok` and serves all 16384 slots
    /// from live primaries, and all live nodes agree on the slot map.
    /// Returns the port of the new primary.
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::NodeNotKilled`] or [`LocalRedisError::UnknownNode`]
    /// for a wrong port, [`LocalRedisError::NotAPrimary`] if the node served
    /// no slots, [`LocalRedisError::FailoverTimeout`] after `timeout`.
    pub fn wait_for_failover(
        &self,
        old_primary_port: u16,
        timeout: Duration,
    ) -> Result<u16, LocalRedisError> {
        let old_port = old_primary_port;
        let Some(served) = self.killed.get(&old_port) else {
            self.node_index(old_port)?;
            return Err(LocalRedisError::NodeNotKilled { port: old_port });
        };
        let Some(first) = served.first() else {
            return Err(LocalRedisError::NotAPrimary { port: old_port });
        };
        let started = Instant::now();
        loop {
            let problem = match self.observe(false) {
                Ok(map) => match map.iter().find(|r| r.contains(first.start)) {
                    Some(r) => return Ok(r.primary),
                    None => format!("slot {} is not served", first.start),
                },
                Err(p) => p,
            };
            if started.elapsed() >= timeout {
                return Err(LocalRedisError::FailoverTimeout {
                    old_port,
                    waited: started.elapsed(),
                    problem,
                    log_tails: self.log_tails(),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Checks, once, that every live node reports `cluster_state:ok` and
    /// serves all 16384 slots from live primaries, and that all live nodes
    /// agree on the slot map. Returns that slot map.
    ///
    /// # Errors
    ///
    /// [`LocalRedisError::ClusterUnhealthy`] saying what is wrong.
    pub fn check_healthy(&self) -> Result<Vec<SlotRange>, LocalRedisError> {
        self.observe(false)
            .map_err(|problem| LocalRedisError::ClusterUnhealthy { problem })
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

    fn live_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.process.is_some())
    }

    fn node_index(&self, port: u16) -> Result<usize, LocalRedisError> {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .ok_or_else(|| LocalRedisError::UnknownNode {
                port,
                nodes: self.nodes.iter().map(|n| n.port).collect(),
            })
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

    /// Checks the cluster's health once; returns the slot map all live
    /// nodes agree on, or a description of the first problem found.
    ///
    /// With `startup`, also requires that all six nodes know each other,
    /// that there are three primaries, that each has a connected replica
    /// and that every replica's link to its primary is up (`ROLE`).
    fn observe(&self, startup: bool) -> Result<Vec<SlotRange>, String> {
        let live: Vec<u16> = self.ports();
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        for &port in &live {
            let info = resp::query_text(port, &["CLUSTER", "INFO"]).map_err(|e| e.to_string())?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
                    .unwrap_or("?")
            };
            if field("cluster_state") != "ok" {
                return Err(format!(
                    "node {port}: cluster_state:{}",
                    field("cluster_state")
                ));
            }
            let slots_ok = SLOT_COUNT.to_string();
            if field("cluster_slots_ok") != slots_ok {
                return Err(format!(
                    "node {port}: cluster_slots_ok:{}",
                    field("cluster_slots_ok")
                ));
            }
            let nodes = CLUSTER_NODES.to_string();
            if startup && field("cluster_known_nodes") != nodes {
                return Err(format!(
                    "node {port}: cluster_known_nodes:{}",
                    field("cluster_known_nodes")
                ));
            }

            let map = cluster_slots(port).map_err(|e| e.to_string())?;
            let mut next: u32 = 0;
            for r in &map {
                if u32::from(r.start) != next {
                    return Err(format!("node {port}: slot {next} is not served"));
                }
                next = u32::from(r.end) + 1;
                if !live.contains(&r.primary) {
                    return Err(format!(
                        "node {port}: slots {}-{} are still served by {}, which is not running",
                        r.start, r.end, r.primary
                    ));
                }
            }
            if next != u32::from(SLOT_COUNT) {
                return Err(format!("node {port}: slot {next} is not served"));
            }
            if startup {
                let mut primaries: Vec<u16> = map.iter().map(|r| r.primary).collect();
                primaries.sort_unstable();
                primaries.dedup();
                if primaries.len() != PRIMARIES {
                    return Err(format!(
                        "node {port}: {} primaries serve slots, expected {PRIMARIES}",
                        primaries.len()
                    ));
                }
                let serves_slots = map.iter().any(|r| r.primary == port);
                match role(port).map_err(|e| e.to_string())? {
                    Role::Primary { replicas } if serves_slots && replicas.is_empty() => {
                        return Err(format!("node {port}: primary has no replica yet"));
                    }
                    Role::Replica { link, .. } if link != "connected" => {
                        return Err(format!(
                            "node {port}: replica link to its primary is {link}"
                        ));
                    }
                    _ => {}
                }
            }

            match &agreed {
                None => agreed = Some((port, map)),
                Some((first_port, first)) => {
                    let key = |m: &[SlotRange]| -> Vec<(u16, u16, u16)> {
                        m.iter().map(|r| (r.start, r.end, r.primary)).collect()
                    };
                    if key(first) != key(&map) {
                        return Err(format!(
                            "nodes {first_port} and {port} disagree on the slot map: \
                             {first:?} vs {map:?}"
                        ));
                    }
                }
            }
        }
        agreed
            .map(|(_, map)| map)
            .ok_or_else(|| String::from("every node has been killed"))
    }
}

/// What `ROLE` says about a node.
enum Role {
    /// A primary, with the ports of its connected replicas.
    Primary { replicas: Vec<u16> },
    /// A replica, with the port of its primary and the state of its link
    /// to it (`connected` once in sync).
    Replica { primary: u16, link: String },
}

/// Reads and parses `ROLE` from the node on `port`.
fn role(port: u16) -> Result<Role, LocalRedisError> {
    let reply = resp::query(port, &["ROLE"])?;
    let bad = || LocalRedisError::Protocol {
        port,
        detail: format!("unexpected ROLE reply {reply:?}"),
    };
    let items = reply.as_array().ok_or_else(bad)?;
    match items.first().and_then(Value::as_text) {
        // ["master", offset, [[ip, port, offset], ...]]
        Some("master") => {
            let replicas = items.get(2).and_then(Value::as_array).ok_or_else(bad)?;
            let replicas = replicas
                .iter()
                .map(|r| {
                    r.as_array()
                        .and_then(|r| r.get(1))
                        .and_then(Value::as_text)
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(bad)
                })
                .collect::<Result<_, _>>()?;
            Ok(Role::Primary { replicas })
        }
        // ["slave", ip, port, state, offset]
        Some("slave") => {
            let primary = match items.get(2) {
                Some(Value::Integer(port)) => u16::try_from(*port).ok(),
                Some(other) => other.as_text().and_then(|p| p.parse().ok()),
                None => None,
            }
            .ok_or_else(bad)?;
            let link = items.get(3).and_then(Value::as_text).ok_or_else(bad)?;
            Ok(Role::Replica {
                primary,
                link: link.to_owned(),
            })
        }
        _ => Err(bad()),
    }
}

/// Reads and parses `CLUSTER SLOTS` from the node on `port`, sorted by
/// first slot.
fn cluster_slots(port: u16) -> Result<Vec<SlotRange>, LocalRedisError> {
    let reply = resp::query(port, &["CLUSTER", "SLOTS"])?;
    let bad = |detail: String| LocalRedisError::Protocol {
        port,
        detail: format!("in CLUSTER SLOTS: {detail}"),
    };
    let entries = reply
        .as_array()
        .ok_or_else(|| bad(format!("expected an array, got {reply:?}")))?;
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        let fields = entry
            .as_array()
            .ok_or_else(|| bad(format!("expected an array entry, got {entry:?}")))?;
        let slot = |i: usize| {
            fields
                .get(i)
                .and_then(Value::as_integer)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|&s| s < SLOT_COUNT)
                .ok_or_else(|| bad(format!("bad slot number in {entry:?}")))
        };
        let node_port = |node: &Value| {
            node.as_array()
                .and_then(|n| n.get(1))
                .and_then(Value::as_integer)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad(format!("bad node in {entry:?}")))
        };
        let primary = fields
            .get(2)
            .ok_or_else(|| bad(format!("no primary in {entry:?}")))?;
        ranges.push(SlotRange {
            start: slot(0)?,
            end: slot(1)?,
            primary: node_port(primary)?,
            replicas: fields
                .iter()
                .skip(3)
                .map(node_port)
                .collect::<Result<_, _>>()?,
        });
    }
    ranges.sort_by_key(|r| r.start);
    Ok(ranges)
}
