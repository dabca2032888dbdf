//! Heartbeat reconciliation: what a worker says it runs against what the store says it
//! owns, corrected only in the directions that can never overbook a worker.
//!
//! - A container the worker runs but does not own (it was given back after the worker was
//!   presumed dead, or a Redis failover lost the reservation) holds no capacity there: the
//!   worker is told to stop it. It is never re-reserved.
//! - A reservation the worker holds for a container it does not run, whose record has
//!   ended or is held by another worker or attempt, is dead: it is released
//!   (conditionally on its attempt, so a newer reservation is never touched). A record still
//!   pending, scheduled, pulling or running on this worker and attempt is left alone: its delivery
//!   or its report may be in flight.
//! - An ownership entry without any record is left alone and reported (logged, and counted
//!   as `berth_reconciled_total{action="orphan"}`; the invariant check names the worker,
//!   whose free plus owned then exceeds its total): every commit follows its record's
//!   submit, so no booking made such an entry, and crediting what was never booked would
//!   overbook the worker.

use crate::{Protocol, ProtocolError};
use berth_core::invariants::OwnedEntry;
use berth_core::{ContainerId, WorkerId};
use berth_store::{ContainerRecord, ContainerState, ReleaseOutcome};
use std::collections::HashSet;

/// The most dead-reservation candidates one heartbeat looks at (one record read each).
pub const MAX_CANDIDATES: usize = 64;

/// What one reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Running containers the worker does not own: it must stop them.
    pub stop: Vec<ContainerId>,
    /// Dead reservations released.
    pub released: usize,
}

impl Protocol {
    /// Reconciles `worker`, which says it runs `running`.
    pub async fn reconcile(
        &self,
        worker: &WorkerId,
        running: &[ContainerId],
    ) -> Result<Reconciled, ProtocolError> {
        let owned = self.store.owned(worker).await?;
        let owned_ids: HashSet<&ContainerId> = owned.iter().map(|o| &o.container).collect();
        let running_ids: HashSet<&ContainerId> = running.iter().collect();
        let mut result = Reconciled {
            stop: running
                .iter()
                .filter(|c| !owned_ids.contains(c))
                .cloned()
                .collect(),
            released: 0,
        };
        let candidates = owned
            .iter()
            .filter(|o| !running_ids.contains(&o.container))
            .take(MAX_CANDIDATES);
        for entry in candidates {
            if self.release_if_dead(worker, entry).await? {
                result.released += 1;
            }
        }
        for container in &result.stop {
            if self.ended_here(worker, container).await {
                // The usual case: the worker's end report landed between its snapshot of
                // what it runs and this heartbeat. The stop is then a no-op on the worker.
                tracing::debug!(%worker, %container, "the heartbeat crossed the container's end report");
            } else {
                tracing::warn!(%worker, %container, "the worker runs a container it does not own; telling it to stop");
            }
            metrics::counter!("berth_reconciled_total", "action" => "stop").increment(1);
        }
        Ok(result)
    }

    /// True when `container`'s record says it ended on `worker` (read errors count as no).
    async fn ended_here(&self, worker: &WorkerId, container: &ContainerId) -> bool {
        matches!(
            self.store.container(container).await,
            Ok(Some(record)) if record.state.is_terminal() && record.worker.as_ref() == Some(worker)
        )
    }

    /// Releases `entry` if its reservation is dead; true if that gave capacity back.
    async fn release_if_dead(
        &self,
        worker: &WorkerId,
        entry: &OwnedEntry,
    ) -> Result<bool, ProtocolError> {
        let record = self.store.container(&entry.container).await?;
        if record.is_none() {
            tracing::warn!(%worker, container = %entry.container, attempt = %entry.attempt,
                resources = %entry.resources,
                "an ownership entry without a record: left alone (no booking made it, so \
                 crediting it would overbook the worker); remove it by hand");
            metrics::counter!("berth_reconciled_total", "action" => "orphan").increment(1);
            return Ok(false);
        }
        if !dead(record.as_ref(), worker, entry) {
            return Ok(false);
        }
        let outcome = self
            .store
            .release(worker, &entry.container, Some(&entry.attempt), None)
            .await?;
        let released = matches!(outcome, ReleaseOutcome::Released { .. });
        if released {
            tracing::warn!(%worker, container = %entry.container, attempt = %entry.attempt,
                "released a dead reservation found by heartbeat reconciliation");
            metrics::counter!("berth_reconciled_total", "action" => "release").increment(1);
            self.engine.fleet().invalidate();
        }
        Ok(released)
    }
}

/// True when a reservation of `worker` is dead: its record ended, or names another worker
/// or attempt. A pending record is alive (its settlement may be in flight), and so is an
/// entry without a record (see the module's doc).
fn dead(record: Option<&ContainerRecord>, worker: &WorkerId, entry: &OwnedEntry) -> bool {
    match record {
        None => false,
        Some(r) if r.state.is_terminal() => true,
        Some(r) if r.state == ContainerState::Pending => false,
        Some(r) => r.worker.as_ref() != Some(worker) || r.attempt.as_ref() != Some(&entry.attempt),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::{AttemptId, Resources};

    #[test]
    fn an_entry_without_a_record_is_never_taken_for_dead() {
        let entry = OwnedEntry {
            container: ContainerId::new("ghost").unwrap(),
            attempt: AttemptId::from_bits(9),
            resources: Resources::new(1000, 512, 0),
            devices: Vec::new(),
        };
        assert!(!dead(None, &WorkerId::new("w1").unwrap(), &entry));
    }
}
