//! The replica loop: claim a micro-batch (the next one while the current one is planned and
//! committed), run the commit strategy on it, and hand the outcome to [`super::settle`].

use super::settle::{Settle, View, apply, sort, target_demand, waited};
use super::{IDLE_WAIT, Shared, TIMED_OUT};
use crate::cache::WorkerCache;
use crate::provision::{self};
use crate::quota::Policies;
use crate::stats::Counter;
use crate::strategy::{self, Ctx};
use berth_store::Claim;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A batch's settlement, sent while the next batch is claimed or processed.
type Settling = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The engine loop. While a batch is planned and committed, the previous batch's
/// settlement and the claim of the next batch go out at the same time (they touch other
/// requests), so the store is not left idle while this replica plans or decodes: a batch
/// costs the store its claim, commit and settlement back to back. When nothing was claimed
/// ahead, the next claim waits for requests (with the settlement in flight). On
/// cancellation, the settlement in flight and the claims already taken are finished; no
/// new claim is made.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut cache = WorkerCache::new(
        shared.config.cache_ttl,
        shared.pools.clone(),
        shared.stats.clone(),
        shared.fleet.clone(),
    );
    let mut policies = Policies::default();
    let mut preemptor = crate::preempt::Preemptor::default();
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
                let processed = process(
                    &shared,
                    &mut cache,
                    (&mut policies, &mut preemptor),
                    batch,
                    &mut carry,
                );
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

/// Reads the unmet demand and promotes due backlog entries, each when it is due. The demand
/// is read first: it is the backlog, and a promotion empties it of every entry due, which
/// the demand would miss until they are deferred again.
async fn housekeep(shared: &Shared, timers: &mut Timers) {
    if timers.provisioned.elapsed() >= shared.config.provision_every {
        provision(shared).await;
        timers.provisioned = tokio::time::Instant::now();
    }
    if timers.promoted.elapsed() >= shared.config.promote_every {
        promote(shared).await;
        timers.promoted = tokio::time::Instant::now();
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
    let config = &shared.config;
    let round = provision::Round {
        pools: &shared.pools,
        controller: shared.controller.as_deref(),
        replica: &config.replica,
        ttl: config.provision_ttl,
        registration_timeout: config.registration_timeout,
        settling: config.backoff_cap.saturating_add(config.promote_every),
        every: config.provision_every,
        now_ms: shared.clock.now_ms(),
    };
    if let Err(error) = provision::run_once(&*shared.store, &round, &shared.idle).await {
        tracing::warn!(%error, "reading the unmet demand or provisioning failed");
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
    (policies, preemptor): (&mut Policies, &mut crate::preempt::Preemptor),
    batch: Vec<(Claim, u32)>,
    carry: &mut Vec<(Claim, u32)>,
) -> berth_store::Result<Option<(Settle, u64)>> {
    let now = shared.clock.now_ms();
    let (expired, live): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|(claim, _)| waited(claim, now) > shared.config.deadline);
    let mut settle = Settle::default();
    let live = adopt_orphans(shared, cache, live, &mut settle).await?;
    policies.refresh(&*shared.store).await;
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
        policies,
        now_ms: now,
    };
    let before = shared.store.stats().snapshot();
    let mut outcome = strategy::run(shared.config.strategy, ctx, &claims).await?;
    record_store_cost(shared, &before);
    for (claim, _) in &expired {
        settle.fail(claim, TIMED_OUT.to_owned());
    }
    let fresh = cache.younger_than(shared.config.recheck_before_defer);
    // Only a claim that would now be deferred for want of room (judged against a fresh
    // view) may preempt: a stale view may just have missed a release.
    let batch = crate::preempt::Batch {
        claims: &claims,
        eligible: |claim: usize| fresh || retries[claim] > 0,
        now_ms: now,
    };
    let store = &*shared.store;
    let config = &shared.config;
    crate::preempt::for_unplaced(
        preemptor,
        store,
        config,
        cache,
        policies,
        batch,
        &mut outcome,
    )
    .await?;
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
    cache: &mut WorkerCache,
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
        let snapshot = cache.snapshot(&*shared.store).await?;
        let gpu_type = snapshot
            .workers
            .iter()
            .find(|w| w.id == worker)
            .and_then(|w| w.gpu_type.clone());
        settle.scheduled(&claim, worker, attempt, gpu_type.as_ref());
    }
    Ok(rest)
}

fn record_store_cost(shared: &Shared, before: &berth_store::StatsSnapshot) {
    let spent = shared.store.stats().snapshot().since(before);
    let strategy = shared.config.strategy.as_str();
    metrics::histogram!("berth_batch_round_trips", "strategy" => strategy)
        .record(spent.round_trips as f64);
    metrics::histogram!("berth_batch_commands", "strategy" => strategy)
        .record(spent.commands as f64);
}
