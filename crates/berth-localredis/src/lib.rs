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
//! Servers are polled over plain [`std::net::TcpStream`]s with the small
//! RESP2 client in [`resp`]; `redis-cli` is only used for
//! `redis-cli --cluster create`. Key slots are computed by [`key_slot`].

mod cluster;
mod error;
mod process;
pub mod resp;
mod slot;
mod standalone;

pub use cluster::{
    CLUSTER_NODE_TIMEOUT, CLUSTER_NODES, CLUSTER_START_TIMEOUT, LocalCluster, SlotRange,
};
pub use error::LocalRedisError;
pub use slot::{SLOT_COUNT, crc16, key_slot};
pub use standalone::{LocalRedis, STANDALONE_START_TIMEOUT};
