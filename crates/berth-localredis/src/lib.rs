//! Local redis-server processes for tests and benchmarks.
//!
//! - [`LocalRedis`]: one standalone `redis-server` on a free port of
//!   127.0.0.1, in its own temporary directory, persistence off.
//! - [`LocalCluster`]: a 6-node Redis Cluster (3 primaries, 3 replicas),
//!   with helpers to find the primary of a slot or key, kill a node, wait
//!   for the failover, and restart the node (it rejoins as a replica).
//!
//! Both kill their processes (SIGKILL, then wait) and remove their
//! directories when dropped. They run the `redis-server` and `redis-cli`
//! found on `PATH`. If those are missing, starting fails with
//! [`LocalRedisError::RedisServerNotFound`] (or
//! [`LocalRedisError::RedisCliNotFound`]), which tells how to install them;
//! there is deliberately no way to skip tests when redis is missing.
//!
//! Servers are polled with the `redis` crate's synchronous connection
//! ([`command`], [`query`]), a fresh one per command with short timeouts;
//! `redis-cli` is only used for `redis-cli --cluster create`. Key slots are
//! computed by [`key_slot`].
//!
//! # Layout
//!
//! - `client`: one command to one local server ([`command`], [`query`]).
//! - `process`: spawning one `redis-server`, waiting for PING, killing it.
//! - `standalone`: [`LocalRedis`].
//! - `cluster`: [`LocalCluster`] and its node bookkeeping; `cluster::start`
//!   starts and creates the cluster, `cluster::health` checks it and waits
//!   for startup, failover and rejoin, `cluster::topology` reads
//!   `CLUSTER INFO`, `CLUSTER SLOTS` and `ROLE`.
//! - `slot`: [`key_slot`] and [`crc16`].
//! - `error`: [`LocalRedisError`].

mod client;
mod cluster;
mod error;
mod process;
mod slot;
mod standalone;

pub use client::{command, query};
/// The reply type of [`command`] and [`LocalRedis::command`], re-exported so
/// that users need no direct dependency on the `redis` crate.
pub use redis::Value;

pub use cluster::{
    CLUSTER_NODE_TIMEOUT, CLUSTER_NODES, CLUSTER_START_TIMEOUT, LocalCluster, SlotRange,
};
pub use error::LocalRedisError;
pub use slot::{SLOT_COUNT, crc16, key_slot};
pub use standalone::{LocalRedis, STANDALONE_START_TIMEOUT};
