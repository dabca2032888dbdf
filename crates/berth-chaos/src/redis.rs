//! The Redis the servers share: a standalone server or a 6-node cluster, and the Redis
//! faults: pausing every client on every primary, and killing a primary so that its
//! replica takes over (then restarting it: it rejoins as a replica). All of it blocks (the local Redis helpers poll with sleeps): call it
//! from a blocking thread.

use berth_localredis::{LocalCluster, LocalRedis, LocalRedisError, Value};
use std::time::Duration;

/// How long a failover may take before the fault counts as failed.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis fault could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum RedisFaultError {
    /// Talking to Redis, killing a node or waiting for the failover failed.
    #[error(transparent)]
    Redis(#[from] LocalRedisError),
    /// A node refused `CLIENT PAUSE`.
    #[error("CLIENT PAUSE on port {port} answered {reply}")]
    Refused {
        /// The node.
        port: u16,
        /// What it answered.
        reply: String,
    },
}

/// Standalone Redis or a Redis Cluster, killed when dropped.
#[derive(Debug)]
pub enum RedisBackend {
    /// One `redis-server`.
    Standalone(LocalRedis),
    /// Three primaries with a replica each.
    Cluster(LocalCluster),
}

impl RedisBackend {
    /// Starts a standalone server, or a cluster with `cluster`.
    pub fn start(cluster: bool) -> Result<RedisBackend, LocalRedisError> {
        Ok(if cluster {
            RedisBackend::Cluster(LocalCluster::start()?)
        } else {
            RedisBackend::Standalone(LocalRedis::start()?)
        })
    }

    /// The URLs a server connects with: the server's, or the live cluster nodes' (seeds).
    pub fn urls(&self) -> Vec<String> {
        match self {
            RedisBackend::Standalone(redis) => vec![redis.url()],
            RedisBackend::Cluster(cluster) => cluster.urls(),
        }
    }

    /// The ports of the primaries (the standalone server's port).
    pub fn primaries(&self) -> Result<Vec<u16>, LocalRedisError> {
        match self {
            RedisBackend::Standalone(redis) => Ok(vec![redis.port()]),
            RedisBackend::Cluster(cluster) => cluster_primaries(cluster),
        }
    }

    /// `CLIENT PAUSE <pause> ALL` on every primary; returns how many were paused.
    pub fn pause_clients(&self, pause: Duration) -> Result<usize, RedisFaultError> {
        let ports = self.primaries()?;
        let millis = pause.as_millis().to_string();
        for &port in &ports {
            let reply = match berth_localredis::command(port, &["CLIENT", "PAUSE", &millis, "ALL"])
            {
                Ok(Value::Okay) => continue,
                Ok(other) => format!("{other:?}"),
                Err(LocalRedisError::ServerError { message, .. }) => message,
                Err(e) => return Err(e.into()),
            };
            return Err(RedisFaultError::Refused { port, reply });
        }
        Ok(ports.len())
    }

    /// On a cluster, SIGKILLs one of the primaries that has a connected replica (`pick`
    /// modulo their number) and returns its port. `None` on a standalone Redis, or when no
    /// primary has a replica (killed nodes not restarted yet).
    pub fn kill_primary(&mut self, pick: usize) -> Result<Option<u16>, RedisFaultError> {
        let RedisBackend::Cluster(cluster) = self else {
            return Ok(None);
        };
        let mut eligible = Vec::new();
        for port in cluster_primaries(cluster)? {
            if !cluster.replicas_of(port)?.is_empty() {
                eligible.push(port);
            }
        }
        if eligible.is_empty() {
            return Ok(None);
        }
        let old = eligible[pick % eligible.len()];
        cluster.kill_node(old)?;
        Ok(Some(old))
    }

    /// Restarts the node killed on port `old` and waits (up to [`FAILOVER_TIMEOUT`]) until
    /// it is a connected replica again. Nothing to do on a standalone Redis.
    pub fn restart_node(&mut self, old: u16) -> Result<(), RedisFaultError> {
        if let RedisBackend::Cluster(cluster) = self {
            cluster.restart_node(old)?;
            cluster.wait_for_rejoin(old, FAILOVER_TIMEOUT)?;
        }
        Ok(())
    }

    /// Waits (up to [`FAILOVER_TIMEOUT`]) until a replica serves the slots of the primary
    /// killed on port `old`; returns the new primary's port.
    pub fn wait_failover(&self, old: u16) -> Result<u16, RedisFaultError> {
        match self {
            RedisBackend::Cluster(cluster) => Ok(cluster.wait_for_failover(old, FAILOVER_TIMEOUT)?),
            RedisBackend::Standalone(redis) => Ok(redis.port()),
        }
    }
}

/// The ports of the cluster's primaries, sorted.
fn cluster_primaries(cluster: &LocalCluster) -> Result<Vec<u16>, LocalRedisError> {
    let mut ports: Vec<u16> = cluster.slots()?.iter().map(|r| r.primary).collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pause_clients_pauses_a_standalone_server() {
        let backend = RedisBackend::start(false).unwrap();
        assert_eq!(backend.pause_clients(Duration::from_millis(50)).unwrap(), 1);
    }
}
