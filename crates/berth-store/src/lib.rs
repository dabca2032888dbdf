//! # berth-store
//!
//! The scheduler's shared state behind one async trait, [`Store`], with two
//! implementations that pass one contract test suite:
//! - [`MemoryStore`]: the embedded default, for one process and no Redis;
//! - [`RedisStore`]: Redis standalone or Cluster, for many scheduler replicas. Each worker's
//!   commit is one Lua script on keys that share the worker's hash tag, and the scripts of
//!   a batch go out in one pipelined round trip. No lock is taken on that path.
//!
//! ## Layout
//! - [`store`]: the store's role traits ([`Fleet`], [`Bookings`], [`Intake`], [`Records`],
//!   [`Inspection`], and [`WorkerLocks`] for the baseline strategies), their union
//!   [`Store`], and their guarantees.
//! - [`quotas`]: the [`Quotas`] role: tenants' policies, usage and the hold before a
//!   commit.
//! - [`provisioning`]: the [`Provisioning`] role, workers started and not registered yet.
//! - [`model`]: the values crossing the boundary (the shared model, records, states,
//!   attempts, assignments, demand and violations, is `berth-core`'s and re-exported here).
//! - [`memory`]: the in-memory store.
//! - [`redis`](mod@redis): the Redis store, its key schema and Lua scripts.
//! - [`stats`]: round trips, commands, scripts, lock counts.
//! - [`error`](mod@error): the error type, [`StoreError`].

pub mod error;
pub mod memory;
pub mod model;
pub mod provisioning;
pub mod quotas;
pub mod redis;
pub mod stats;
pub mod store;

pub use berth_core::{
    Assignment, AttemptId, CheckOptions, ContainerRecord, ContainerState, PoolDemand,
    ReclaimOutcome, Transition, Violation, WorkerRegistration, aggregate_demand,
};
pub use error::{Result, StoreError};
pub use memory::MemoryStore;
pub use model::*;
pub use provisioning::{PendingWorker, Provisioning};
pub use quotas::{Hold, HoldOutcome, Quotas};
pub use redis::{RedisStore, RedisTarget, read_secret_file, redact};
pub use stats::{StatsSnapshot, StoreStats};
pub use store::{
    Bookings, Credentials, Fleet, Inspection, Intake, Records, SettleItem, Store, StoreConfig,
    WorkerLocks,
};

/// The store's role traits, for code that calls their methods on a `dyn Store`:
/// `use berth_store::prelude::*;`.
pub mod prelude {
    pub use crate::provisioning::Provisioning;
    pub use crate::quotas::Quotas;
    pub use crate::store::{
        Bookings, Credentials, Fleet, Inspection, Intake, Records, Store, WorkerLocks,
    };
}

/// Validates requests before a store writes any of them.
pub(crate) fn validate_requests(requests: &[berth_core::ContainerRequest]) -> Result<()> {
    for request in requests {
        request.validate().map_err(|error| {
            StoreError::InvalidArgument(format!("request {}: {error}", request.id))
        })?;
    }
    Ok(())
}

/// Refuses a list of held images that [`berth_core::check_images`] refuses, as
/// [`StoreError::InvalidArgument`].
pub fn check_images(images: &[String]) -> Result<()> {
    berth_core::check_images(images)
        .map_err(|error| StoreError::InvalidArgument(format!("images: {error}")))
}

/// Refuses a worker agent's call under `presented` unless it is `worker`'s current epoch
/// ([`StoreError::StaleEpoch`]).
pub fn fence(worker: &berth_core::Worker, presented: u64) -> Result<()> {
    if presented == worker.epoch {
        return Ok(());
    }
    Err(StoreError::StaleEpoch {
        worker: worker.id.clone(),
        presented,
        current: worker.epoch,
    })
}

/// A fresh random attempt id for a new claim of a request (see [`AttemptId`]).
pub fn new_attempt() -> AttemptId {
    AttemptId::from_bits(rand::random())
}

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
