//! The reaper: workers that miss their heartbeats are declared lost and their containers
//! given back (an unstarted one to the intake, a running one to the intake while its
//! request allows retries, otherwise as lost), the capacity
//! reclaimed exactly once. Reclaiming is idempotent, so a pass that dies half-way is
//! completed by the next one: lost workers that still own something are reclaimed again.

use crate::{Protocol, ProtocolError};
use berth_core::{Worker, WorkerId, WorkerStatus};
use berth_store::ReclaimOutcome;
use std::collections::HashMap;

/// What one reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Workers declared lost by this pass.
    pub lost_workers: Vec<WorkerId>,
    /// Unstarted containers put back in the intake.
    pub requeued: usize,
    /// Running containers put back in the intake, as their requests allow retries.
    pub retried: usize,
    /// Running containers declared lost.
    pub lost_containers: usize,
    /// Reservations released whose record had moved on.
    pub released: usize,
    /// Workers whose reclaiming failed this pass (retried next pass).
    pub failures: usize,
}

impl Protocol {
    /// One reaper pass at `now_ms` (ms since the Unix epoch, the engine's clock).
    pub async fn reap(&self, now_ms: u64) -> Result<ReapReport, ProtocolError> {
        let beats: HashMap<WorkerId, u64> = self.store.heartbeats().await?.into_iter().collect();
        let workers = self.store.workers().await?;
        let mut report = ReapReport::default();
        for worker in workers {
            let last = beats.get(&worker.id).copied();
            let lost = self.lost(&worker, last, now_ms, &mut report).await;
            if lost && let Err(error) = self.reclaim_all(&worker.id, &mut report).await {
                tracing::warn!(worker = %worker.id, %error, "reclaiming a lost worker's containers failed; retrying next pass");
                report.failures += 1;
            }
        }
        Ok(report)
    }

    /// True if `worker` is lost: already, or now declared so because its last heartbeat
    /// (`last`) is older than the timeout.
    async fn lost(
        &self,
        worker: &Worker,
        last: Option<u64>,
        now_ms: u64,
        report: &mut ReapReport,
    ) -> bool {
        if worker.status == WorkerStatus::Lost {
            return true;
        }
        let timeout_ms =
            u64::try_from(self.config.heartbeat_timeout.as_millis()).unwrap_or(u64::MAX);
        let Some(age) = last.map(|last| now_ms.saturating_sub(last)) else {
            return false;
        };
        if age <= timeout_ms {
            return false;
        }
        match self
            .store
            .set_worker_status(&worker.id, WorkerStatus::Lost)
            .await
        {
            Ok(_) => {
                tracing::warn!(worker = %worker.id, age_ms = age, "worker missed its heartbeats; declared lost");
                metrics::counter!("berth_workers_lost_total").increment(1);
                self.engine.fleet().invalidate();
                report.lost_workers.push(worker.id.clone());
                true
            }
            Err(error) => {
                tracing::warn!(worker = %worker.id, %error, "declaring a worker lost failed");
                report.failures += 1;
                false
            }
        }
    }

    /// Gives back everything a lost worker owns.
    async fn reclaim_all(
        &self,
        worker: &WorkerId,
        report: &mut ReapReport,
    ) -> Result<(), ProtocolError> {
        let owned = self.store.owned(worker).await?;
        let reason = format!("worker {worker} missed its heartbeats");
        for entry in owned {
            let outcome = self
                .store
                .reclaim(worker, &entry.container, &entry.attempt, &reason)
                .await?;
            let label = match outcome {
                ReclaimOutcome::Requeued => {
                    report.requeued += 1;
                    "requeued"
                }
                ReclaimOutcome::Retried => {
                    report.retried += 1;
                    metrics::counter!("berth_retries_total", "reason" => "lost").increment(1);
                    "retried"
                }
                // A reclaim never preempts; a preempted container is counted as lost here.
                ReclaimOutcome::Lost | ReclaimOutcome::Preempted => {
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
}
