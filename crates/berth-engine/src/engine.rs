//! The engine replica: takes requests from the store's durable intake in micro-batches,
//! runs the configured commit strategy on each batch, and settles every claim: placed,
//! replanned after a lost race, deferred to the backlog with capped exponential backoff, or
//! failed with a reason. While one batch is planned and committed, the next is claimed.
//!
//! This file holds the handle ([`Engine`]); `batch_loop` the replica loop, `settle` what
//! each claim of a batch becomes.

mod batch_loop;
mod settle;

use crate::cache::FleetView;
use crate::clock::Clock;
use crate::provision::PoolController;
use crate::stats::EngineStats;
use crate::ticket::{Ticket, Waiters};
use crate::{EngineConfig, EngineError};
use berth_core::{ContainerId, ContainerRequest, Pool, WorkerId};
use berth_store::{Store, SubmitOutcome};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long one claim call waits for requests when the engine is idle.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The message of a request that waited past the deadline.
pub const TIMED_OUT: &str = "timed out waiting for capacity";

/// State shared by the engine's handle and its loop.
struct Shared {
    store: Arc<dyn Store>,
    config: EngineConfig,
    pools: Vec<Pool>,
    /// Grows pools for unmet demand, if configured.
    controller: Option<Arc<dyn PoolController>>,
    /// When this replica first saw each worker idle, for scale-down.
    idle: crate::provision::IdleTracker,
    stats: Arc<EngineStats>,
    clock: Clock,
    /// Submitters waiting for an outcome decided by this replica.
    waiters: Arc<Waiters>,
    /// Workers whose capacity changed outside this replica (a release by a worker's final
    /// report), read again before the next plan.
    changed: Mutex<Vec<WorkerId>>,
    /// The worker cache's published fleet, for readers outside the loop.
    fleet: Arc<FleetView>,
}

/// A running engine replica. Dropping it does not stop the loop: call [`Engine::shutdown`].
pub struct Engine {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    /// The loop; taken by the first `stop`.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts a replica on `store` with `config`, planning against the workers in the store
    /// and the `pools` an autoscaler could grow.
    pub fn start(store: Arc<dyn Store>, config: EngineConfig, pools: Vec<Pool>) -> Engine {
        Engine::start_with_controller(store, config, pools, None)
    }

    /// Starts a replica that also asks `controller` to grow pools for unmet demand, and to
    /// stop the workers that stay idle past their pool's idle timeout.
    pub fn start_with_controller(
        store: Arc<dyn Store>,
        config: EngineConfig,
        pools: Vec<Pool>,
        controller: Option<Arc<dyn PoolController>>,
    ) -> Engine {
        let shared = Arc::new(Shared {
            stats: Arc::new(EngineStats::new(config.strategy)),
            fleet: Arc::new(FleetView::new(store.clone(), pools.clone())),
            store,
            config,
            pools,
            controller,
            idle: Default::default(),
            clock: Clock::new(),
            waiters: Arc::new(Waiters::default()),
            changed: Mutex::new(Vec::new()),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(batch_loop::run(shared.clone(), cancel.clone()));
        Engine {
            shared,
            cancel,
            task: Mutex::new(Some(task)),
        }
    }

    /// Accepts one request: returns once it is durably recorded, with a ticket that resolves
    /// when it is placed or has failed. A known id is not submitted again; its ticket follows
    /// the existing request.
    pub async fn submit(&self, request: ContainerRequest) -> Result<Ticket, EngineError> {
        Ok(self.submit_many(vec![request]).await?.remove(0))
    }

    /// Accepts many requests in one store operation; see [`Engine::submit`].
    pub async fn submit_many(
        &self,
        requests: Vec<ContainerRequest>,
    ) -> Result<Vec<Ticket>, EngineError> {
        for request in &requests {
            request.validate().map_err(|source| EngineError::Invalid {
                id: request.id.to_string(),
                source,
            })?;
        }
        // Tickets first, so no outcome can slip by; on an error they withdraw as they drop.
        let tickets: Vec<Ticket> = requests.iter().map(|r| self.ticket(&r.id)).collect();
        let outcomes = self.shared.store.submit(&requests).await?;
        for (request, outcome) in requests.iter().zip(outcomes) {
            if let SubmitOutcome::Duplicate(state) = outcome {
                tracing::debug!(id = %request.id, %state, "duplicate submit");
            }
        }
        Ok(tickets)
    }

    /// A ticket for a request submitted elsewhere (e.g. straight to the store): it resolves
    /// at once when this replica settles the request, and otherwise when a read of the store
    /// finds it placed or failed (see [`Ticket::outcome`]). Take it before reading the
    /// record, so that no outcome slips by between the read and the wait.
    pub fn watch(&self, id: &ContainerId) -> Ticket {
        self.ticket(id)
    }

    fn ticket(&self, id: &ContainerId) -> Ticket {
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiters
            .lock()
            .entry(id.clone())
            .or_default()
            .push(tx);
        Ticket {
            id: id.clone(),
            local: rx,
            store: self.shared.store.clone(),
            waiters: self.shared.waiters.clone(),
        }
    }

    /// How many submitters of this replica wait for an outcome (tickets not dropped yet).
    pub fn waiting_submitters(&self) -> usize {
        self.shared.waiters.lock().values().map(Vec::len).sum()
    }

    /// This replica's counters.
    pub fn stats(&self) -> Arc<EngineStats> {
        self.shared.stats.clone()
    }

    /// The store this replica runs on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Tells this replica that `worker`'s capacity changed outside it (capacity was given
    /// back): its cache reads that worker again before the next plan, so the room is seen
    /// at once instead of after the cache's TTL.
    pub fn capacity_changed(&self, worker: &WorkerId) {
        self.shared.changed.lock().push(worker.clone());
    }

    /// The fleet as this replica's worker cache last read it whole (for admission).
    pub fn fleet(&self) -> &FleetView {
        &self.shared.fleet
    }

    /// The engine's clock (ms since the epoch, advancing with tokio's clock).
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Stops the loop after its current batch and the batch it claimed ahead. Claims it
    /// held and did not settle (a settlement that kept failing) are claimed again by another
    /// replica after the visibility timeout.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// Like [`Engine::shutdown`], through a shared reference (an engine behind an `Arc`):
    /// stops the loop after its current batch (and the one claimed ahead) and waits for it.
    /// Later calls return at once.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let task = self.task.lock().take();
        if let Some(Err(error)) = match task {
            Some(task) => Some(task.await),
            None => None,
        } {
            tracing::error!(%error, "engine loop ended abnormally");
        }
    }

    /// Stops the loop at once, mid-batch if it is in one (as a crash would).
    pub fn abort(self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}
