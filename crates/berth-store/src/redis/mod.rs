//! The Redis store: [`RedisStore`], on one standalone server or a Redis Cluster.
//!
//! - Every atomic step is one Lua script on keys that share one hash tag, so it runs on
//!   one slot and works unchanged on Redis Cluster ([`keys`] documents the schema).
//! - A batch commit is one `commit.lua` call per worker, all in one pipelined round trip
//!   (on cluster: one pipeline per slot, sent together). No lock is taken on that path.
//! - Scripts are loaded at connect and called with EVALSHA; a NOSCRIPT answer (restart,
//!   failover, SCRIPT FLUSH) is retried once with EVAL, which reloads the script.
//! - Requests wait in a stream with a consumer group (`engine`): a claim not settled within
//!   the visibility timeout is claimed again by another replica. Assignments wait in one
//!   stream per worker (group `agent`), redelivered until acknowledged.
//! - Blocking reads use dedicated connections, never the shared multiplexed one.
//! - A [`RedisTarget`] says where Redis is and how to log in (user, password, from the URL
//!   or given apart) and verify it (`rediss://`, a private CA, a client certificate).
//!   Every URL shown in a log or an error goes through [`redact`] first.
//!
//! ## Layout
//! - [`keys`]: the key schema.
//! - `codec`: stored hashes to domain values and back, with errors naming key and field.
//! - `reply`: reading replies; script error replies to [`crate::StoreError`].
//! - `scripts`: the Lua scripts (`scripts/*.lua`) and script calls.
//! - `target`: [`RedisTarget`], [`redact`], [`read_secret_file`].
//! - `connection`: the shared connection, batches per slot, blocking connections.
//! - `diagnose`: connect errors to messages that say what to fix.
//! - `store`: [`RedisStore`], its round trips and the [`crate::Store`] implementation;
//!   `workers`, `commit`, `queue`, `intake`, `check`, `credentials` and `provisioning` do the work.

mod check;
mod codec;
mod commit;
mod connection;
mod credentials;
mod diagnose;
mod intake;
pub mod keys;
mod provisioning;
mod queue;
mod quotas;
mod reply;
mod scripts;
mod service;
mod store;
mod target;
mod workers;

pub use keys::Keys;
pub use store::RedisStore;
pub use target::{RedisTarget, read_secret_file, redact};
