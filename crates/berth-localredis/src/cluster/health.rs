//! Checking the cluster's health and waiting for it: after startup, after a
//! failover, and after a killed node rejoined.

use std::thread;
use std::time::{Duration, Instant};

use super::topology::{Role, SlotRange, cluster_info, cluster_slots, role};
use super::{CLUSTER_NODES, LocalCluster, POLL_INTERVAL, PRIMARIES};
use crate::LocalRedisError;
use crate::slot::SLOT_COUNT;

impl LocalCluster {
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
        self.live_node_index(port)?;
        poll(timeout, || self.rejoined(port)).map_err(|(waited, problem)| {
            LocalRedisError::ClusterTimeout {
                waited,
                problem,
                log_tails: self.log_tails(),
            }
        })
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
        let slot = first.start;
        let taken_over = || {
            let map = self.observe(false)?;
            map.iter()
                .find(|r| r.contains(slot))
                .map(|r| r.primary)
                .ok_or_else(|| format!("slot {slot} is not served"))
        };
        poll(timeout, taken_over).map_err(|(waited, problem)| LocalRedisError::FailoverTimeout {
            old_port,
            waited,
            problem,
            log_tails: self.log_tails(),
        })
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

    /// Waits up to `timeout` until the cluster passes the startup checks of
    /// [`observe`](Self::observe); the error says how long it waited and
    /// the last problem.
    pub(super) fn wait_started(&self, timeout: Duration) -> Result<(), (Duration, String)> {
        poll(timeout, || self.observe(true)).map(drop)
    }

    /// Whether the node on `port` rejoined (see
    /// [`wait_for_rejoin`](Self::wait_for_rejoin)), or what is still missing.
    fn rejoined(&self, port: u16) -> Result<(), String> {
        match (role(port), self.observe(false)) {
            (Ok(Role::Replica { primary, link }), Ok(_)) if link == "connected" => {
                match role(primary) {
                    Ok(Role::Primary { replicas }) if replicas.contains(&port) => Ok(()),
                    Ok(_) => Err(format!("primary {primary} does not list node {port} yet")),
                    Err(e) => Err(e.to_string()),
                }
            }
            (Ok(Role::Replica { link, .. }), Ok(_)) => Err(format!("node {port}: link {link}")),
            (Ok(Role::Primary { .. }), Ok(_)) => Err(format!("node {port} is still a primary")),
            (Err(e), _) => Err(e.to_string()),
            (_, Err(problem)) => Err(problem),
        }
    }

    /// Checks the cluster's health once; returns the slot map all live
    /// nodes agree on, or a description of the first problem found.
    ///
    /// With `startup`, also requires that all six nodes know each other,
    /// that there are three primaries, that each has a connected replica
    /// and that every replica's link to its primary is up (`ROLE`).
    pub(super) fn observe(&self, startup: bool) -> Result<Vec<SlotRange>, String> {
        let live: Vec<u16> = self.ports();
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        for &port in &live {
            check_info(port, startup)?;
            let map = cluster_slots(port).map_err(|e| e.to_string())?;
            check_coverage(port, &map, &live)?;
            if startup {
                check_startup_roles(port, &map)?;
            }
            match &agreed {
                None => agreed = Some((port, map)),
                Some((first_port, first)) => check_agreement((*first_port, first), (port, &map))?,
            }
        }
        agreed
            .map(|(_, map)| map)
            .ok_or_else(|| String::from("every node has been killed"))
    }
}

/// Calls `attempt` every [`POLL_INTERVAL`] until it succeeds, or until it
/// failed and `timeout` has passed: then returns how long it waited and the
/// last problem. It always makes at least one attempt.
fn poll<T>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> Result<T, (Duration, String)> {
    let started = Instant::now();
    loop {
        let problem = match attempt() {
            Ok(done) => return Ok(done),
            Err(problem) => problem,
        };
        if started.elapsed() >= timeout {
            return Err((started.elapsed(), problem));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Checks the node's `CLUSTER INFO`: state ok, all slots ok and, with
/// `startup`, all six nodes known.
fn check_info(port: u16, startup: bool) -> Result<(), String> {
    let info = cluster_info(port).map_err(|e| e.to_string())?;
    let field = |name: &str| info.get::<String>(name).unwrap_or_else(|| "?".to_owned());
    let mut expected = vec![
        ("cluster_state", String::from("ok")),
        ("cluster_slots_ok", SLOT_COUNT.to_string()),
    ];
    if startup {
        expected.push(("cluster_known_nodes", CLUSTER_NODES.to_string()));
    }
    for (name, want) in expected {
        let got = field(name);
        if got.trim() != want {
            return Err(format!("node {port}: {name}:{}", got.trim()));
        }
    }
    Ok(())
}

/// Checks that the node's slot map serves every slot, each from a live
/// primary.
fn check_coverage(port: u16, map: &[SlotRange], live: &[u16]) -> Result<(), String> {
    let mut next: u32 = 0;
    for r in map {
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
    Ok(())
}

/// The startup checks of one node: three primaries serve slots, a primary
/// has a connected replica, a replica's link to its primary is up.
fn check_startup_roles(port: u16, map: &[SlotRange]) -> Result<(), String> {
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
            Err(format!("node {port}: primary has no replica yet"))
        }
        Role::Replica { link, .. } if link != "connected" => Err(format!(
            "node {port}: replica link to its primary is {link}"
        )),
        _ => Ok(()),
    }
}

/// Checks that two nodes see the same ranges served by the same primaries.
fn check_agreement(
    (first_port, first): (u16, &[SlotRange]),
    (port, map): (u16, &[SlotRange]),
) -> Result<(), String> {
    let key = |m: &[SlotRange]| -> Vec<(u16, u16, u16)> {
        m.iter().map(|r| (r.start, r.end, r.primary)).collect()
    };
    if key(first) != key(map) {
        return Err(format!(
            "nodes {first_port} and {port} disagree on the slot map: {first:?} vs {map:?}"
        ));
    }
    Ok(())
}
