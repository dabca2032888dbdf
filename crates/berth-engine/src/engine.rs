//! The engine replica: takes requests from the store's durable intake in micro-batches,
//! runs the configured commit strategy on each batch, and settles every claim: placed,
//! replanned after a lost race, deferred to the backlog with capped exponential backoff, or
//! failed with a reason. While one batch is planned and committed, the next is claimed.

use crate::cache::{FleetView, WorkerCache};
use crate::clock::Clock;
use crate::provision::{self, PoolController};
use crate::stats::{Counter, EngineStats};
use crate::strategy::{self, BatchOutcome, Ctx};
use crate::ticket::{Outcome, Ticket, Waiters};
use crate::{EngineConfig, EngineError};
use berth_core::feasibility::demand_target;
use berth_core::{ContainerId, ContainerRequest, Pool, UnplacedReason, WorkerId};
use berth_store::{Claim, SettleItem, SettleOutcome, Settlement, Store, SubmitOutcome};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
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

    /// Starts a replica that also asks `controller` to grow pools for unmet demand.
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
            clock: Clock::new(),
            waiters: Arc::new(Waiters::default()),
            changed: Mutex::new(Vec::new()),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(shared.clone(), cancel.clone()));
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

/// A batch's settlement, sent while the next batch is claimed or processed.
type Settling = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The engine loop. While a batch is planned and committed, the previous batch's
/// settlement and the claim of the next batch go out at the same time (they touch other
/// requests), so the store is not left idle while this replica plans or decodes: a batch
/// costs the store its claim, commit and settlement back to back. When nothing was claimed
/// ahead, the next claim waits for requests (with the settlement in flight). On
/// cancellation, the settlement in flight and the claims already taken are finished; no
/// new claim is made.
async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut cache = WorkerCache::new(
        shared.config.cache_ttl,
        shared.pools.clone(),
        shared.stats.clone(),
        shared.fleet.clone(),
    );
    let mut carry: Vec<(Claim, u32)> = Vec::new();
    let mut ahead: Vec<Claim> = Vec::new();
    let mut timers = Timers::default();
    let mut settling: Option<Settling> = None;
    while !cancel.is_cancelled() || !ahead.is_empty() {
        let batch = if ahead.is_empty() {
            let settle = finish(settling.take());
            let claim = async {
                tokio::select! {
                    () = cancel.cancelled() => None,
                    batch = housekeep_then_claim(&shared, &mut timers, &mut carry) => Some(batch),
                }
            };
            let ((), batch) = tokio::join!(settle, claim);
            batch
        } else {
            Some(Ok(take_batch(
                &mut carry,
                &mut ahead,
                shared.config.max_batch,
            )))
        };
        match batch {
            None => break,
            Some(Ok(batch)) if batch.is_empty() => {}
            Some(Ok(batch)) => {
                for worker in std::mem::take(&mut *shared.changed.lock()) {
                    cache.invalidate(&worker);
                }
                // Kept to be tried again at once if the batch fails (a connection lost in a
                // failover): waiting for the intake's visibility timeout would hold the
                // requests for its whole length. Committing and settling again under the
                // same attempts is idempotent.
                let again = batch.clone();
                let settle = finish(settling.take());
                let room = shared.config.max_batch.saturating_sub(ahead.len());
                let claim = claim_ahead(&shared, &mut timers, &cancel, room);
                let processed = process(&shared, &mut cache, batch, &mut carry);
                let (result, (), claimed) = tokio::join!(processed, settle, claim);
                ahead.extend(claimed);
                match result {
                    Ok(settle) => settling = settle.map(|s| settle_later(&shared, s)),
                    Err(error) => {
                        tracing::warn!(%error, claims = again.len(), "batch failed; retrying its claims");
                        metrics::counter!("berth_batches_failed_total").increment(1);
                        carry.extend(again);
                        cache.expire();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                // A store that never waits (the memory store) must not starve the other
                // tasks of this thread: submitters, tickets, other replicas.
                tokio::task::yield_now().await;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "claiming from the intake failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    finish(settling).await;
}

/// Waits for a settlement in flight, if any.
async fn finish(settling: Option<Settling>) {
    if let Some(settling) = settling {
        settling.await;
    }
}

/// Claims the next batch while the current one is processed: housekeeping when due, then
/// whatever the intake holds, up to `room` (what the claims already ahead leave of a
/// batch), without waiting. Nothing once cancelled; a failed claim is logged and yields
/// nothing (the loop claims again, waiting, when it runs out of claims).
async fn claim_ahead(
    shared: &Shared,
    timers: &mut Timers,
    cancel: &CancellationToken,
    room: usize,
) -> Vec<Claim> {
    if cancel.is_cancelled() {
        return Vec::new();
    }
    housekeep(shared, timers).await;
    if room == 0 {
        return Vec::new();
    }
    let claimed = shared
        .store
        .claim(&shared.config.replica, room, Duration::ZERO)
        .await;
    claimed.unwrap_or_else(|error| {
        tracing::warn!(%error, "claiming from the intake failed");
        Vec::new()
    })
}

/// The next batch from the carried-over claims and those claimed ahead: every carried
/// claim, then claims from `ahead` up to `max` in all, one claim per container. What does
/// not fit stays in `ahead`.
fn take_batch(
    carry: &mut Vec<(Claim, u32)>,
    ahead: &mut Vec<Claim>,
    max: usize,
) -> Vec<(Claim, u32)> {
    let mut batch = std::mem::take(carry);
    let room = max.saturating_sub(batch.len()).min(ahead.len());
    batch.extend(ahead.drain(..room).map(|claim| (claim, 0)));
    let mut seen = HashSet::new();
    batch.retain(|(claim, _)| seen.insert(claim.request.id.clone()));
    batch
}

/// When the backlog and the unmet demand were last looked at.
struct Timers {
    promoted: tokio::time::Instant,
    provisioned: tokio::time::Instant,
}

impl Default for Timers {
    fn default() -> Self {
        let now = tokio::time::Instant::now();
        Timers {
            promoted: now,
            provisioned: now,
        }
    }
}

/// Housekeeping, then the next batch (see [`next_batch`]).
async fn housekeep_then_claim(
    shared: &Shared,
    timers: &mut Timers,
    carry: &mut Vec<(Claim, u32)>,
) -> berth_store::Result<Vec<(Claim, u32)>> {
    housekeep(shared, timers).await;
    next_batch(shared, carry).await
}

/// Promotes due backlog entries and reads the unmet demand, each when it is due.
async fn housekeep(shared: &Shared, timers: &mut Timers) {
    if timers.promoted.elapsed() >= shared.config.promote_every {
        promote(shared).await;
        timers.promoted = tokio::time::Instant::now();
    }
    if timers.provisioned.elapsed() >= shared.config.provision_every {
        provision(shared).await;
        timers.provisioned = tokio::time::Instant::now();
    }
}

/// How many times a batch's settlement is sent before its claims are left to the intake's
/// visibility timeout.
const SETTLE_ATTEMPTS: u32 = 5;

/// The settlement of a processed batch, as a future of its own. A failed settlement is
/// sent again (settling twice under the same attempts is idempotent), with a growing pause,
/// up to [`SETTLE_ATTEMPTS`] times; then the claims come back after the visibility timeout.
fn settle_later(shared: &Arc<Shared>, (settle, now): (Settle, u64)) -> Settling {
    let shared = shared.clone();
    Box::pin(async move {
        let mut pause = Duration::from_millis(100);
        for attempt in 1..=SETTLE_ATTEMPTS {
            match apply(&shared, &settle, now).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, attempt, "settling a batch failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::error!(
            items = settle.items.len(),
            "gave up settling a batch; its claims come back after the visibility timeout"
        );
    })
}

async fn promote(shared: &Shared) {
    let now = shared.clock.now_ms();
    match shared
        .store
        .promote_due(now, shared.config.max_batch * 4)
        .await
    {
        Ok(moved) if moved > 0 => tracing::debug!(moved, "backlog entries due again"),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "promoting due backlog entries failed"),
    }
    if let Ok(depth) = shared.store.backlog_len().await {
        metrics::gauge!("berth_backlog_depth").set(depth as f64);
    }
}

async fn provision(shared: &Shared) {
    let controller = shared.controller.as_deref();
    let (config, pools) = (&shared.config, &shared.pools);
    let result = provision::run_once(
        &*shared.store,
        pools,
        controller,
        &config.replica,
        config.provision_ttl,
    );
    if let Err(error) = result.await {
        tracing::warn!(%error, "reading the unmet demand failed");
    }
}

/// The carried-over claims plus new ones from the intake, one claim per container.
async fn next_batch(
    shared: &Shared,
    carry: &mut Vec<(Claim, u32)>,
) -> berth_store::Result<Vec<(Claim, u32)>> {
    let room = shared.config.max_batch.saturating_sub(carry.len());
    let wait = if carry.is_empty() {
        IDLE_WAIT
    } else {
        Duration::ZERO
    };
    let mut fresh = shared
        .store
        .claim(&shared.config.replica, room, wait)
        .await?;
    if !shared.config.linger.is_zero() && fresh.len() < room && !fresh.is_empty() {
        tokio::time::sleep(shared.config.linger).await;
        let more = room - fresh.len();
        fresh.extend(
            shared
                .store
                .claim(&shared.config.replica, more, Duration::ZERO)
                .await?,
        );
    }
    Ok(take_batch(carry, &mut fresh, usize::MAX))
}

/// Plans and commits one batch; returns its settlement (and the time it was planned at)
/// for [`apply`], or nothing when there is nothing to settle.
async fn process(
    shared: &Shared,
    cache: &mut WorkerCache,
    batch: Vec<(Claim, u32)>,
    carry: &mut Vec<(Claim, u32)>,
) -> berth_store::Result<Option<(Settle, u64)>> {
    let now = shared.clock.now_ms();
    let (expired, live): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|(claim, _)| waited(claim, now) > shared.config.deadline);
    let mut settle = Settle::default();
    let live = adopt_orphans(shared, live, &mut settle).await?;
    let (claims, retries): (Vec<Claim>, Vec<u32>) = live.into_iter().unzip();
    shared.stats.add(Counter::Batches, 1);
    metrics::histogram!("berth_batch_size", "strategy" => shared.config.strategy.as_str())
        .record(claims.len() as f64);
    let ctx = Ctx {
        store: &*shared.store,
        config: &shared.config,
        cache,
        stats: &shared.stats,
        pools: &shared.pools,
    };
    let before = shared.store.stats().snapshot();
    let outcome = strategy::run(shared.config.strategy, ctx, &claims).await?;
    record_store_cost(shared, &before);
    for (claim, _) in &expired {
        settle.fail(claim, TIMED_OUT.to_owned());
    }
    let fresh = cache.younger_than(shared.config.recheck_before_defer);
    let view = View { now, fresh };
    let refresh = sort(shared, view, &claims, &retries, outcome, &mut settle, carry);
    if refresh {
        cache.expire();
    }
    target_demand(shared, cache, &claims, &mut settle).await?;
    Ok((!settle.items.is_empty()).then_some((settle, now)))
}

/// A redelivered claim's previous claimer may have died between its commit and its
/// settlement, leaving a reservation that nobody settles. Such a reservation is adopted
/// (settled as the placement) instead of placing the request a second time. Other holders
/// are left alone: the record decides, and a holder it does not name is released by its own
/// superseded settlement or by its worker's agent (which never runs what the record does
/// not name). Returns the claims that still need placing.
async fn adopt_orphans(
    shared: &Shared,
    live: Vec<(Claim, u32)>,
    settle: &mut Settle,
) -> berth_store::Result<Vec<(Claim, u32)>> {
    let mut rest = Vec::with_capacity(live.len());
    for (claim, retries) in live {
        if !claim.redelivered {
            rest.push((claim, retries));
            continue;
        }
        let mut owners = shared.store.owners(&claim.request.id).await?;
        owners.sort();
        let Some((worker, attempt)) = owners.first().cloned() else {
            rest.push((claim, retries));
            continue;
        };
        tracing::info!(container = %claim.request.id, %worker, "adopting a reservation left by a dead claimer");
        settle.scheduled(&claim, worker, attempt);
    }
    Ok(rest)
}

fn waited(claim: &Claim, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(claim.request.submitted_at_ms))
}

fn record_store_cost(shared: &Shared, before: &berth_store::StatsSnapshot) {
    let spent = shared.store.stats().snapshot().since(before);
    let strategy = shared.config.strategy.as_str();
    metrics::histogram!("berth_batch_round_trips", "strategy" => strategy)
        .record(spent.round_trips as f64);
    metrics::histogram!("berth_batch_commands", "strategy" => strategy)
        .record(spent.commands as f64);
}

/// The settlements of one batch, and the outcomes to tell local submitters.
#[derive(Default)]
struct Settle {
    items: Vec<SettleItem>,
    /// When each item's request was submitted (ms since the epoch), by item index.
    submitted_at_ms: Vec<u64>,
    /// The placement each scheduled item stands for (worker, attempt), by item index.
    placements: HashMap<usize, (berth_core::WorkerId, berth_store::AttemptId)>,
}

impl Settle {
    fn push(&mut self, claim: &Claim, settlement: Settlement) {
        self.submitted_at_ms.push(claim.request.submitted_at_ms);
        self.items.push(SettleItem {
            entry: claim.entry.clone(),
            container: claim.request.id.clone(),
            settlement,
        });
    }

    fn scheduled(
        &mut self,
        claim: &Claim,
        worker: berth_core::WorkerId,
        attempt: berth_store::AttemptId,
    ) {
        self.placements
            .insert(self.items.len(), (worker.clone(), attempt.clone()));
        self.push(claim, Settlement::Scheduled { worker, attempt });
    }

    fn fail(&mut self, claim: &Claim, reason: String) {
        self.push(claim, Settlement::Failed { reason });
    }
}

/// What a batch was planned against: when, and whether the fleet snapshot was read whole
/// recently enough to defer on it.
#[derive(Debug, Clone, Copy)]
struct View {
    now: u64,
    fresh: bool,
}

/// Sorts a batch's outcome into settlements and requests to plan again; true when the
/// cache must be read again first (a request found nothing in a snapshot that may be
/// stale).
fn sort(
    shared: &Shared,
    view: View,
    claims: &[Claim],
    retries: &[u32],
    outcome: BatchOutcome,
    settle: &mut Settle,
    carry: &mut Vec<(Claim, u32)>,
) -> bool {
    let now = view.now;
    let mut refresh = false;
    for placed in outcome.placed {
        settle.scheduled(&claims[placed.claim], placed.worker, placed.attempt);
    }
    for index in outcome.conflicts {
        let claim = &claims[index];
        if retries[index] < shared.config.max_conflict_retries {
            carry.push((claim.clone(), retries[index] + 1));
        } else {
            defer(
                shared,
                now,
                claim,
                "lost every commit race; retrying later",
                settle,
            );
        }
    }
    for (index, reason) in outcome.unplaced {
        let claim = &claims[index];
        match reason {
            // No room in a snapshot that may predate releases: look once more against a
            // fresh one before deferring.
            UnplacedReason::NoRoomNow if !view.fresh && retries[index] == 0 => {
                carry.push((claim.clone(), 1));
                refresh = true;
            }
            UnplacedReason::NoRoomNow => defer(shared, now, claim, &reason.to_string(), settle),
            UnplacedReason::Invalid(_) => settle.fail(claim, reason.to_string()),
            // Hopeless against this snapshot; the snapshot may predate a registration, so
            // look once more against a fresh one before failing for good.
            _ if retries[index] == 0 => {
                carry.push((claim.clone(), 1));
                refresh = true;
            }
            other => settle.fail(claim, other.to_string()),
        }
    }
    refresh
}

/// Sends a claim to the backlog. The delay doubles with the time already waited (capped
/// exponential backoff without a per-request counter).
fn defer(shared: &Shared, now: u64, claim: &Claim, reason: &str, settle: &mut Settle) {
    let waited = waited(claim, now);
    let config = &shared.config;
    let delay = waited.clamp(config.backoff_base, config.backoff_cap);
    let not_before_ms = now.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
    settle.push(
        claim,
        Settlement::Deferred {
            not_before_ms,
            reason: reason.to_owned(),
            pool: None,
            gpu_type: None,
        },
    );
}

/// Names, for every deferred request, the pool that would have to grow for it (the unmet
/// demand an autoscaler reads). Reads the fleet from the cache.
async fn target_demand(
    shared: &Shared,
    cache: &mut WorkerCache,
    claims: &[Claim],
    settle: &mut Settle,
) -> berth_store::Result<()> {
    let deferred = |item: &SettleItem| matches!(item.settlement, Settlement::Deferred { .. });
    if !settle.items.iter().any(deferred) {
        return Ok(());
    }
    let snapshot = cache.snapshot(&*shared.store).await?;
    let requests: HashMap<&ContainerId, &ContainerRequest> =
        claims.iter().map(|c| (&c.request.id, &c.request)).collect();
    for item in &mut settle.items {
        let Settlement::Deferred { pool, gpu_type, .. } = &mut item.settlement else {
            continue;
        };
        if let Some(request) = requests.get(&item.container) {
            let target = demand_target(snapshot, request);
            *gpu_type = target.as_ref().and_then(|(_, gpu)| gpu.clone());
            *pool = target.map(|(name, _)| name);
        }
    }
    Ok(())
}

/// Settles the batch in the store, undoes placements another replica beat us to, and tells
/// local submitters.
async fn apply(shared: &Shared, settle: &Settle, now: u64) -> berth_store::Result<()> {
    if settle.items.is_empty() {
        return Ok(());
    }
    let outcomes = shared.store.settle(&settle.items).await?;
    for (index, (item, outcome)) in settle.items.iter().zip(outcomes).enumerate() {
        let ours = settle.placements.get(&index);
        match outcome {
            SettleOutcome::Done => {
                let waited =
                    Duration::from_millis(now.saturating_sub(settle.submitted_at_ms[index]));
                report(shared, item, waited)
            }
            SettleOutcome::Superseded { holder, .. } => {
                if let Some((worker, attempt)) = ours.filter(|ours| holder.as_ref() != Some(ours)) {
                    shared.stats.add(Counter::Superseded, 1);
                    // The batch is settled: a failed release must not skip the rest of it.
                    // The worker's agent releases the reservation when it gets a 409.
                    let released =
                        shared
                            .store
                            .release(worker, &item.container, Some(attempt), None);
                    if let Err(error) = released.await {
                        tracing::warn!(%error, container = %item.container, "releasing a superseded reservation failed");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Counts a settled item and tells its local submitters, if any.
fn report(shared: &Shared, item: &SettleItem, waited: Duration) {
    let outcome = match &item.settlement {
        Settlement::Scheduled { worker, .. } => {
            shared.stats.add(Counter::Placed, 1);
            metrics::histogram!("berth_placement_latency_seconds", "strategy" => shared.config.strategy.as_str())
                .record(waited.as_secs_f64());
            Outcome::Placed {
                worker: worker.clone(),
            }
        }
        Settlement::Failed { reason } => {
            shared.stats.add(Counter::Failed, 1);
            Outcome::Failed {
                reason: reason.clone(),
            }
        }
        Settlement::Deferred { .. } => {
            shared.stats.add(Counter::Deferred, 1);
            return;
        }
    };
    let waiters = shared.waiters.lock().remove(&item.container);
    for waiter in waiters.into_iter().flatten() {
        let _ = waiter.send(outcome.clone());
    }
}
