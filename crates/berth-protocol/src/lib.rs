//! # berth-protocol
//!
//! The worker protocol without a transport: what the HTTP service (and any other front end:
//! a console, a gRPC agent) does when a client submits or a worker agent registers,
//! heartbeats, takes its assignments, reports and releases, and what the reaper does with
//! workers that fall silent. Every operation is a method on [`Protocol`], which holds the
//! store, the engine replica it nudges and the [`ProtocolConfig`]; each returns a
//! [`ProtocolError`] that says what went wrong (unknown worker, stale epoch, not the holder,
//! invalid argument, can never be placed, store failure), for the front end to map to its
//! own answers.
//!
//! ## Layout
//! - [`error`]: the error type, [`ProtocolError`].
//! - [`admission`]: submits, refusing what no worker or pool could ever run
//!   ([`Protocol::submit`], [`Protocol::admit`]), against the engine's worker cache.
//! - [`report`]: a worker's status report ([`Protocol::report`]): fencing, start (adopting a
//!   still-pending record the worker holds), exit and failure, the release that follows,
//!   waking deferred requests and nudging the local engine.
//! - [`workers`]: registration, status changes, removal, heartbeats, assignment delivery
//!   and acknowledgement, and giving back a reservation ([`Protocol::release`]).
//! - [`reconcile`]: heartbeat reconciliation (what a worker runs against what it owns).
//! - [`reaper`]: declaring silent workers lost and reclaiming what they own
//!   ([`Protocol::reap`]).

pub mod admission;
pub mod error;
pub mod reaper;
pub mod reconcile;
pub mod report;
pub mod workers;

pub use error::ProtocolError;
pub use reaper::ReapReport;
pub use reconcile::Reconciled;
pub use report::{Report, ReportKind, Reported};
pub use workers::{Beat, Registered};

use berth_engine::Engine;
use berth_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The protocol's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// A worker whose last heartbeat is older than this is declared lost by the reaper.
    pub heartbeat_timeout: Duration,
    /// How many output lines are kept per container.
    pub log_lines_kept: usize,
    /// How long admission reuses the engine's fleet read (registrations and status changes
    /// through this protocol refresh it at once).
    pub fleet_max_age: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            heartbeat_timeout: Duration::from_secs(30),
            log_lines_kept: 1000,
            fleet_max_age: Duration::from_secs(1),
        }
    }
}

/// The worker protocol of one scheduler replica: the shared store, the replica's engine
/// (its clock, its worker cache, and the nudges a release gives it) and the settings.
pub struct Protocol {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    config: ProtocolConfig,
    /// The tenants' policies as last read, for admission.
    policies: tokio::sync::Mutex<berth_engine::quota::Policies>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Protocol {
    /// The protocol on `store`, with `engine` (started on the same store) and `config`.
    pub fn new(store: Arc<dyn Store>, engine: Arc<Engine>, config: ProtocolConfig) -> Protocol {
        Protocol {
            store,
            engine,
            config,
            policies: Default::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ProtocolConfig {
        &self.config
    }

    /// Now, in ms since the Unix epoch, by the engine's clock (the one request timestamps
    /// and heartbeats use).
    pub fn now_ms(&self) -> u64 {
        self.engine.now_ms()
    }
}
