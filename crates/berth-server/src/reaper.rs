//! The reaper: workers that miss their heartbeats are declared lost and their containers
//! given back (a scheduled one to the backlog, a running one as lost), the capacity
//! reclaimed exactly once. Reclaiming is idempotent, so a tick that dies half-way is
//! completed by the next one: lost workers that still own something are reclaimed again.

use crate::state::AppState;
use berth_core::{WorkerId, WorkerStatus};
use berth_store::ReclaimOutcome;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// What one reaper tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Workers declared lost by this tick.
    pub lost_workers: Vec<WorkerId>,
    /// Scheduled containers put back in the backlog.
    pub requeued: usize,
    /// Running containers declared lost.
    pub lost_containers: usize,
    /// Reservations released whose record had moved on.
    pub released: usize,
    /// Workers whose reclaiming failed this tick (retried next tick).
    pub failures: usize,
}

/// One reaper pass at `now_ms` (ms since the Unix epoch, the engine's clock).
pub async fn reap_once(state: &AppState, now_ms: u64) -> berth_store::Result<ReapReport> {
    let timeout_ms = u64::try_from(state.config.heartbeat_timeout.as_millis()).unwrap_or(u64::MAX);
    let beats: HashMap<WorkerId, u64> = state.store.heartbeats().await?.into_iter().collect();
    let workers = state.store.workers().await?;
    let mut report = ReapReport::default();
    for worker in workers {
        let mut lost = worker.status == WorkerStatus::Lost;
        if !lost {
            let Some(last) = beats.get(&worker.id).copied() else {
                continue;
            };
            let age = now_ms.saturating_sub(last);
            if age <= timeout_ms {
                continue;
            }
            match state
                .store
                .set_worker_status(&worker.id, WorkerStatus::Lost)
                .await
            {
                Ok(_) => {
                    tracing::warn!(worker = %worker.id, age_ms = age, "worker missed its heartbeats; declared lost");
                    metrics::counter!("berth_workers_lost_total").increment(1);
                    state.fleet.invalidate();
                    report.lost_workers.push(worker.id.clone());
                    lost = true;
                }
                Err(error) => {
                    tracing::warn!(worker = %worker.id, %error, "declaring a worker lost failed");
                    report.failures += 1;
                }
            }
        }
        if lost && let Err(error) = reclaim_all(state, &worker.id, &mut report).await {
            tracing::warn!(worker = %worker.id, %error, "reclaiming a lost worker's containers failed; retrying next tick");
            report.failures += 1;
        }
    }
    Ok(report)
}

/// Gives back everything a lost worker owns.
async fn reclaim_all(
    state: &AppState,
    worker: &WorkerId,
    report: &mut ReapReport,
) -> berth_store::Result<()> {
    let owned = state.store.owned(worker).await?;
    let reason = format!("worker {worker} missed its heartbeats");
    for entry in owned {
        let outcome = state
            .store
            .reclaim(worker, &entry.container, &entry.attempt, &reason)
            .await?;
        let label = match outcome {
            ReclaimOutcome::Requeued => {
                report.requeued += 1;
                "requeued"
            }
            ReclaimOutcome::Lost => {
                report.lost_containers += 1;
                "lost"
            }
            ReclaimOutcome::Released => {
                report.released += 1;
                "released"
            }
        };
        tracing::info!(%worker, container = %entry.container, outcome = label, "reclaimed");
        metrics::counter!("berth_reaper_reclaimed_total", "outcome" => label).increment(1);
    }
    Ok(())
}

/// Runs [`reap_once`] every `reaper_every` until the server shuts down.
pub fn spawn_reaper(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = state.config.reaper_every.max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match reap_once(&state, state.now_ms()).await {
                Ok(report) if report != ReapReport::default() => {
                    tracing::info!(?report, "reaper tick");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reaper tick failed"),
            }
        }
    })
}
