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
use berth_core::{
    Charge, ContainerState, UnplacedReason, Worker, WorkerId, feasibility, lifecycle,
};
use berth_store::{
    Claim, CommitOutcome, Hold, HoldOutcome, PreemptionCommit, Reservation, Result, Store,
};
use std::collections::HashMap;

/// The most workers whose running containers one claim's preemption reads.
pub const MAX_WORKERS: usize = 16;

/// How long, after a claim found no victims, claims of no higher priority skip the search
/// (ms): on a full fleet with nothing to preempt, deferring stays as cheap as without
/// preemption, and the search runs at most about once a second.
pub const QUIET_MS: u64 = 1_000;

/// What one replica remembers between batches: the highest priority that found no
/// victims, and when.
#[derive(Debug, Default)]
pub(crate) struct Preemptor {
    nothing_below: Option<(i32, u64)>,
}

impl Preemptor {
    /// True when a claim of `priority` at `now_ms` need not search: one of at least its
    /// priority found no victims less than [`QUIET_MS`] ago.
    fn quiet(&self, priority: i32, now_ms: u64) -> bool {
        self.nothing_below
            .is_some_and(|(p, at)| priority <= p && now_ms.saturating_sub(at) < QUIET_MS)
    }

    /// Remembers that a claim of `priority` found no victims at `now_ms`.
    fn found_nothing(&mut self, priority: i32, now_ms: u64) {
        // A fresh mark of a higher priority says more than this one: it stays as it is.
        let keep = self
            .nothing_below
            .is_some_and(|(p, at)| p > priority && now_ms.saturating_sub(at) < QUIET_MS);
        if !keep {
            self.nothing_below = Some((priority, now_ms));
        }
    }
}

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
    preemptor: &mut Preemptor,
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
    let mut seen = Seen::default();
    let mut tries = 0;
    let mut index = 0;
    while index < outcome.unplaced.len() && tries < config.max_preemptions {
        let (claim, reason) = &outcome.unplaced[index];
        let priority = claims[*claim].request.priority;
        if *reason != UnplacedReason::NoRoomNow
            || !eligible(*claim)
            || preemptor.quiet(priority, now_ms)
        {
            index += 1;
            continue;
        }
        tries += 1;
        let claim = *claim;
        let ctx = (store, policies, now_ms);
        match try_one(ctx, cache, &mut seen, &claims[claim]).await? {
            Tried::Placed(placed) => {
                outcome.unplaced.remove(index);
                outcome.placed.push(Placed { claim, ..placed });
            }
            Tried::NoVictims => {
                preemptor.found_nothing(priority, now_ms);
                index += 1;
            }
            Tried::Refused => index += 1,
        }
    }
    Ok(())
}

/// What one claim's preemption came to.
enum Tried {
    /// It took the victims' place (its `claim` index left for the caller to set).
    Placed(Placed),
    /// No set of victims makes room for it.
    NoVictims,
    /// Victims were found but it may not preempt (cascade, quota) or lost a race.
    Refused,
}

/// The running containers of the workers read so far in one batch, by worker: the claims
/// of a batch that try to preempt look at much the same workers, so each is read once
/// (and again only after a preemption or a lost race changed it).
type Seen = HashMap<WorkerId, Vec<Running>>;

/// Preempts for one claim, if some victims make room.
async fn try_one(
    (store, policies, now_ms): (&dyn Store, &Policies, u64),
    cache: &mut WorkerCache,
    seen: &mut Seen,
    claim: &Claim,
) -> Result<Tried> {
    let request = &claim.request;
    // No cascade: read first, as it is one read and the search is many.
    let own = store.container(&request.id).await?;
    if own
        .as_ref()
        .is_none_or(|own| lifecycle::was_preempted(own, now_ms))
    {
        metrics::counter!("berth_preemptions_refused_total", "why" => "cascade").increment(1);
        return Ok(Tried::Refused);
    }
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
        return Ok(Tried::NoVictims);
    }
    let running = running_on(store, &workers, seen).await?;
    let Some(chosen) = preempt::choose(request, &workers, &running) else {
        return Ok(Tried::NoVictims);
    };
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
            return Ok(Tried::Refused);
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
    // Whatever comes of it, what runs there is read again before it is used again.
    seen.remove(&chosen.worker);
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
            return Ok(Tried::Refused);
        }
    };
    end_victims(store, claim, &chosen).await;
    Ok(Tried::Placed(Placed {
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

/// The running (or pulling) containers of `workers`: their ownership entries, with the
/// priority and preemptibility their records give (a record not running or pulling under
/// that worker and attempt is not a candidate). Workers in `seen` are not read again; those read are added to it.
async fn running_on(
    store: &dyn Store,
    workers: &[Worker],
    seen: &mut Seen,
) -> Result<Vec<Running>> {
    for worker in workers {
        if !seen.contains_key(&worker.id) {
            let read = running_on_worker(store, worker).await?;
            seen.insert(worker.id.clone(), read);
        }
    }
    Ok(workers
        .iter()
        .flat_map(|w| seen.get(&w.id).into_iter().flatten().cloned())
        .collect())
}

/// The running containers of one worker (see [`running_on`]).
async fn running_on_worker(store: &dyn Store, worker: &Worker) -> Result<Vec<Running>> {
    let mut running = Vec::new();
    for entry in store.owned(&worker.id).await? {
        let Some(record) = store.container(&entry.container).await? else {
            continue;
        };
        let holds = record.worker.as_ref() == Some(&worker.id)
            && record.attempt.as_ref() == Some(&entry.attempt);
        // A pulling container is a victim too: it holds its capacity while the image
        // comes, and stopping it costs no work done.
        let started_or_pulling = matches!(
            record.state,
            ContainerState::Running | ContainerState::Pulling
        );
        if !started_or_pulling || !holds {
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
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_finding_nothing_claims_of_no_higher_priority_skip_the_search_for_a_while() {
        let mut preemptor = Preemptor::default();
        assert!(!preemptor.quiet(0, 0));
        preemptor.found_nothing(5, 1_000);
        assert!(preemptor.quiet(5, 1_000));
        assert!(preemptor.quiet(-3, 1_999));
        assert!(
            !preemptor.quiet(6, 1_500),
            "a higher priority may find victims"
        );
        assert!(
            !preemptor.quiet(5, 2_000),
            "the search runs again after QUIET_MS"
        );
        // A lower priority finding nothing meanwhile keeps the higher mark, as it was.
        preemptor.found_nothing(2, 1_500);
        assert!(preemptor.quiet(5, 1_999));
        assert!(!preemptor.quiet(5, 2_001));
        // Once the mark is old, a new one replaces it.
        preemptor.found_nothing(1, 5_000);
        assert!(!preemptor.quiet(2, 5_001));
    }
}
