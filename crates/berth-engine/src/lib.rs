//! # berth-engine
//!
//! The scheduling engine: it turns a stream of container requests into committed placements
//! as fast as the store allows, with any number of replicas sharing one store.
//!
//! ## Layout
//! - [`config`]: [`EngineConfig`] and the commit [`Strategy`] (`serial`, `batch-lock`,
//!   `batch-script`).
//! - [`engine`]: the replica loop: claim a micro-batch, plan, commit, settle.
//! - [`provision`]: unmet demand, growing pools (counting the workers on their way) and
//!   shrinking idle ones, and the [`PoolController`] an autoscaler implements.
//! - [`quota`]: the tenants with a quota, and the hold their placements take before the
//!   commit.
//! - [`cache`]: the worker cache (TTL backstop, write-through, per-worker invalidation).
//! - `strategy`: the three commit strategies.
//! - [`ticket`]: what a submitter waits on.
//! - [`stats`]: the engine's counters.
//! - [`clock`]: wall-clock time that follows tokio's pausable clock.

pub mod cache;
pub mod clock;
pub mod config;
pub mod engine;
mod error;
pub mod preempt;
pub mod provision;
pub mod quota;
pub mod stats;
mod strategy;
pub mod ticket;

pub use config::{EngineConfig, Strategy, StrategyError};
pub use engine::{Engine, TIMED_OUT};
pub use error::EngineError;
pub use provision::PoolController;
pub use stats::{EngineStats, EngineStatsSnapshot};
pub use ticket::{Outcome, Ticket};
