//! Priority preemption in the engine: a claim the planner found no room for, against a
//! fresh view of the fleet, may stop running containers of lower priority that accept
//! interruption ([`berth_core::preempt`] chooses them) to take their place.
//!
//! Per such claim, at most [`EngineConfig::max_preemptions`] a batch:
//! 1. the running containers of up to [`MAX_WORKERS`] workers it could run on are read
//!    (their ownership entries, then their records for priority and preemptibility);
//! 2. a claim requeued because it was preempted may not preempt in turn (no cascade);
//! 3. a tenant with a quota is held for it first, as for any placement;
//! 4. [`berth_store::Bookings::preempt`] swaps the victims for it in one atomic step on
//!    the worker, so the capacity they free is never free to anyone else; the worker's
//!    agent stops them (SIGTERM, then SIGKILL after its stop grace) before it starts it;
//! 5. each victim's record ends PREEMPTED, or goes back to the intake while its retries
//!    last ([`berth_store::Bookings::preempted`]), with the reason `preempted: by ...`.
//!
//! The claim is then placed like any other and settled with its batch. A preemption that
//! loses a race (a victim ended, the worker filled) changes nothing, and the claim is
//! deferred as it would have been.

use crate::EngineConfig;
use crate::cache::WorkerCache;
use crate::quota::Policies;
use crate::strategy::{BatchOutcome, Placed};
use berth_core::preempt::{self, Preemption, Running};
use berth_core::{Charge, ContainerState, UnplacedReason, Worker, feasibility, lifecycle};
use berth_store::{
    Claim, CommitOutcome, Hold, HoldOutcome, PreemptionCommit, Reservation, Result, Store,
};

/// The most workers whose running containers one claim's preemption reads.
pub const MAX_WORKERS: usize = 16;

/// The batch a preemption works on: its claims, which of them were judged against a fresh
/// view of the fleet, and when it is planned (ms since the epoch).
pub(crate) struct Batch<'a, F: Fn(usize) -> bool> {
    /// The claims.
    pub claims: &'a [Claim],
    /// True for the claims judged against a fresh view.
    pub eligible: F,
    /// When the batch is planned.
    pub now_ms: u64,
}

/// Tries preemption for the claims of `outcome` left without room; moves those it places
/// to `outcome.placed`.
pub(crate) async fn for_unplaced<F: Fn(usize) -> bool>(
    store: &dyn Store,
    config: &EngineConfig,
    cache: &mut WorkerCache,
    policies: &Policies,
    batch: Batch<'_, F>,
    outcome: &mut BatchOutcome,
) -> Result<()> {
    let Batch {
        claims,
        eligible,
        now_ms,
    } = batch;
    let mut tries = 0;
    let mut index = 0;
    while index < outcome.unplaced.len() && tries < config.max_preemptions {
        let (claim, reason) = &outcome.unplaced[index];
        if *reason != UnplacedReason::NoRoomNow || !eligible(*claim) {
            index += 1;
            continue;
        }
        tries += 1;
        let claim = *claim;
        match try_one(store, cache, policies, &claims[claim], now_ms).await? {
            Some(placed) => {
                outcome.unplaced.remove(index);
                outcome.placed.push(Placed { claim, ..placed });
            }
            None => index += 1,
        }
    }
    Ok(())
}

/// Preempts for one claim, if some victims make room; the placement (its `claim` index
/// left for the caller to set) when it did.
async fn try_one(
    store: &dyn Store,
    cache: &mut WorkerCache,
    policies: &Policies,
    claim: &Claim,
    now_ms: u64,
) -> Result<Option<Placed>> {
    let request = &claim.request;
    let workers: Vec<Worker> = cache
        .snapshot(store)
        .await?
        .workers
        .iter()
        .filter(|w| could_run(w, request))
        .take(MAX_WORKERS)
        .cloned()
        .collect();
    if workers.is_empty() {
        return Ok(None);
    }
    let running = running_on(store, &workers).await?;
    let Some(chosen) = preempt::choose(request, &workers, &running) else {
        return Ok(None);
    };
    let own = store.container(&request.id).await?;
    if own
        .as_ref()
        .is_none_or(|own| lifecycle::was_preempted(own, now_ms))
    {
        metrics::counter!("berth_preemptions_refused_total", "why" => "cascade").increment(1);
        return Ok(None);
    }
    let gpu_type = workers
        .iter()
        .find(|w| w.id == chosen.worker)
        .and_then(|w| feasibility::worker_gpu_type(w).cloned());
    if policies.limits(&request.tenant) {
        let hold = Hold {
            container: request.id.clone(),
            charge: Charge::of(request, gpu_type.as_ref()),
        };
        if store.hold(&[hold]).await?.first() != Some(&HoldOutcome::Held) {
            metrics::counter!("berth_preemptions_refused_total", "why" => "quota").increment(1);
            return Ok(None);
        }
    }
    let swap = PreemptionCommit {
        worker: chosen.worker.clone(),
        victims: chosen
            .victims
            .iter()
            .map(|v| (v.container.clone(), v.attempt.clone()))
            .collect(),
        reservation: Reservation {
            container: request.id.clone(),
            attempt: claim.attempt.clone(),
            resources: request.resources,
            devices: chosen.devices.clone(),
            payload: request.payload.clone(),
        },
    };
    let attempt = match store.preempt(&swap).await? {
        CommitOutcome::Committed {
            worker,
            already_owned,
        } => {
            cache.apply(&worker);
            already_owned
                .into_iter()
                .find(|(c, _)| *c == request.id)
                .map_or_else(|| claim.attempt.clone(), |(_, a)| a)
        }
        CommitOutcome::Rejected { rejection, worker } => {
            tracing::debug!(container = %request.id, ?rejection, "preemption lost a race");
            match worker {
                Some(worker) => cache.apply(&worker),
                None => cache.invalidate(&chosen.worker),
            }
            return Ok(None);
        }
    };
    end_victims(store, claim, &chosen).await;
    Ok(Some(Placed {
        claim: 0,
        worker: chosen.worker,
        attempt,
        gpu_type,
    }))
}

/// Ends each victim's record (PREEMPTED, or requeued while it has retries). A failure is
/// logged and left: the victim is no longer owned, so its worker stops it and its report
/// ends the record.
async fn end_victims(store: &dyn Store, claim: &Claim, chosen: &Preemption) {
    let reason = chosen.reason(&claim.request);
    for victim in &chosen.victims {
        let ended = store
            .preempted(&victim.worker, &victim.container, &victim.attempt, &reason)
            .await;
        match ended {
            Ok(outcome) => {
                tracing::info!(victim = %victim.container, preemptor = %claim.request.id,
                    worker = %victim.worker, priority = victim.priority, ?outcome, "preempted");
                metrics::counter!("berth_preemptions_total").increment(1);
                if outcome == berth_core::ReclaimOutcome::Retried {
                    metrics::counter!("berth_retries_total", "reason" => "preempted").increment(1);
                }
            }
            Err(error) => {
                tracing::warn!(victim = %victim.container, worker = %victim.worker, %error,
                    "ending a preempted container's record failed; its worker's report will end it");
            }
        }
    }
    metrics::counter!("berth_preemptors_total").increment(1);
}

/// True when `worker` could run `request` were it empty enough: it takes work, its class
/// matches, and its total holds the request.
fn could_run(worker: &Worker, request: &berth_core::ContainerRequest) -> bool {
    worker.status.accepts_work()
        && feasibility::check_static(&worker.pool, feasibility::worker_gpu_type(worker), request)
            .is_ok()
        && request.resources.fits_in(&worker.total)
}

/// The running containers of `workers`: their ownership entries, with the priority and
/// preemptibility their records give (a record not running under that worker and attempt
/// is not a candidate).
async fn running_on(store: &dyn Store, workers: &[Worker]) -> Result<Vec<Running>> {
    let mut running = Vec::new();
    for worker in workers {
        for entry in store.owned(&worker.id).await? {
            let Some(record) = store.container(&entry.container).await? else {
                continue;
            };
            let holds = record.worker.as_ref() == Some(&worker.id)
                && record.attempt.as_ref() == Some(&entry.attempt);
            if record.state != ContainerState::Running || !holds {
                continue;
            }
            running.push(Running {
                container: entry.container,
                attempt: entry.attempt,
                worker: worker.id.clone(),
                priority: record.request.priority,
                preemptible: record.request.preemptible,
                resources: entry.resources,
                devices: entry.devices,
            });
        }
    }
    Ok(running)
}
