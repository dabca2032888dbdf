//! The worker agents' calls besides reports (registration, heartbeats, assignment delivery
//! and acknowledgement, giving back a reservation) and the operators' changes to the fleet
//! (status, removal). Every call that changes the fleet's make-up refreshes admission's view
//! of it at once.

use crate::report::holds;
use crate::{Protocol, ProtocolError};
use berth_core::invariants::OwnedEntry;
use berth_core::{ContainerId, Worker, WorkerId, WorkerStatus};
use berth_store::{Assignment, AttemptId, ReleaseOutcome, WorkerRegistration};
use std::time::Duration;

/// The most running containers one heartbeat may list.
pub const MAX_RUNNING: usize = 100_000;
/// The longest delivery id accepted.
pub const MAX_DELIVERY_LEN: usize = 64;

/// A registration's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The worker as registered, with its new epoch.
    pub worker: Worker,
    /// What it owns: a worker that comes back after it was presumed dead keeps running
    /// these and stops the rest.
    pub owned: Vec<OwnedEntry>,
    /// The containers of `owned` that hold a share of a device the registration reports
    /// unhealthy (reported, not stopped).
    pub on_unhealthy_gpus: Vec<ContainerId>,
    /// When it registered (counts as a heartbeat), by the engine's clock.
    pub at_ms: u64,
}

/// The containers of `owned` that hold a share of one of `worker`'s unhealthy devices.
pub fn on_unhealthy_gpus(worker: &Worker, owned: &[OwnedEntry]) -> Vec<ContainerId> {
    let unhealthy: Vec<u32> = worker
        .gpus
        .iter()
        .filter(|gpu| !gpu.device.healthy)
        .map(|gpu| gpu.device.index)
        .collect();
    owned
        .iter()
        .filter(|entry| entry.devices.iter().any(|d| unhealthy.contains(&d.index)))
        .map(|entry| entry.container.clone())
        .collect()
}

/// A heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// Running containers whose cancellation was asked for.
    pub cancel: Vec<ContainerId>,
    /// Running containers the worker does not own: it must stop them.
    pub stop: Vec<ContainerId>,
    /// The worker's status.
    pub status: WorkerStatus,
}

impl Protocol {
    /// Registers a worker, or updates a registered one; a drained or disabled worker keeps
    /// its status. Starts a new epoch and counts as a heartbeat, which records `images`, the
    /// images the worker holds already (refused as invalid, nothing written, when
    /// [`berth_core::check_images`] refuses them).
    pub async fn register(
        &self,
        registration: WorkerRegistration,
        images: &[String],
    ) -> Result<Registered, ProtocolError> {
        berth_core::check_images(images)
            .map_err(|error| ProtocolError::invalid("images", error.to_string()))?;
        let mut registration = registration;
        if let Some(existing) = self.store.worker(&registration.id).await?
            && matches!(
                existing.status,
                WorkerStatus::Draining | WorkerStatus::Disabled
            )
        {
            registration.status = existing.status;
        }
        let mut worker = self.store.register_worker(&registration).await?;
        let at_ms = self.now_ms();
        if images.is_empty() {
            self.store.heartbeat(&worker.id, None, at_ms).await?;
        } else {
            // Under the new epoch: a registration that came in meanwhile keeps its own
            // images, and this one still stands (its epoch is simply not the latest).
            let epoch = Some(worker.epoch);
            match self
                .store
                .heartbeat_with_images(&worker.id, epoch, at_ms, images)
                .await
            {
                Ok(()) => worker.images = images.to_vec(),
                Err(berth_store::StoreError::StaleEpoch { .. }) => {
                    tracing::debug!(worker = %worker.id, epoch = worker.epoch,
                        "registered again meanwhile: its images are the newer registration's");
                }
                Err(other) => return Err(other.into()),
            }
        }
        let owned = self.store.owned(&worker.id).await?;
        self.engine.fleet().invalidate();
        tracing::info!(worker = %worker.id, epoch = worker.epoch, pool = %worker.pool.pool,
            total = %worker.total, owned = owned.len(), "worker registered");
        metrics::counter!("berth_workers_registered_total").increment(1);
        let on_unhealthy = on_unhealthy_gpus(&worker, &owned);
        for container in &on_unhealthy {
            tracing::warn!(worker = %worker.id, %container,
                "a container holds a GPU its worker reports unhealthy");
        }
        metrics::counter!("berth_containers_on_unhealthy_gpus_total")
            .increment(on_unhealthy.len() as u64);
        Ok(Registered {
            worker,
            owned,
            on_unhealthy_gpus: on_unhealthy,
            at_ms,
        })
    }

    /// One worker, its last heartbeat, and the containers it owns (with their devices);
    /// `None` for an unknown worker.
    pub async fn worker_detail(
        &self,
        id: &WorkerId,
    ) -> Result<Option<(Worker, Option<u64>, Vec<OwnedEntry>)>, ProtocolError> {
        let Some(worker) = self.store.worker(id).await? else {
            return Ok(None);
        };
        let owned = self.store.owned(id).await?;
        let last = self.store.heartbeat_of(id).await?;
        Ok(Some((worker, last, owned)))
    }

    /// Sets a worker's status (an operator drains, disables or enables it); returns the
    /// worker and its last heartbeat.
    pub async fn set_status(
        &self,
        id: &WorkerId,
        status: WorkerStatus,
    ) -> Result<(Worker, Option<u64>), ProtocolError> {
        let worker = self.store.set_worker_status(id, status).await?;
        self.engine.fleet().invalidate();
        tracing::info!(worker = %id, %status, "worker status set");
        let last = self.store.heartbeat_of(id).await?;
        Ok((worker, last))
    }

    /// Removes a worker that owns nothing.
    pub async fn deregister(&self, id: &WorkerId) -> Result<(), ProtocolError> {
        if self.store.worker(id).await?.is_none() {
            return Err(ProtocolError::UnknownWorker(id.clone()));
        }
        self.store.deregister_worker(id).await?;
        self.engine.fleet().invalidate();
        tracing::info!(worker = %id, "worker removed");
        Ok(())
    }

    /// The worker, registered under `epoch`, is alive and runs `running`: answers which of
    /// them to stop and its status, after reconciling the store with what it runs (see
    /// [`crate::reconcile`]). With `images`, the images it holds replace those it reported
    /// before, in the heartbeat's own fenced step (refused as invalid, nothing written, when
    /// [`berth_core::check_images`] refuses them).
    pub async fn heartbeat(
        &self,
        id: &WorkerId,
        epoch: u64,
        running: &[ContainerId],
        images: Option<&[String]>,
    ) -> Result<Beat, ProtocolError> {
        if running.len() > MAX_RUNNING {
            return Err(ProtocolError::invalid(
                "running",
                format!(
                    "lists {} containers; the limit is {MAX_RUNNING}",
                    running.len()
                ),
            ));
        }
        match images {
            Some(images) => {
                berth_core::check_images(images)
                    .map_err(|error| ProtocolError::invalid("images", error.to_string()))?;
                let now = self.now_ms();
                self.store
                    .heartbeat_with_images(id, Some(epoch), now, images)
                    .await?;
                // This replica plans with them at once (one worker read); the others see
                // them with their cache's next whole read. The agent reports only changes.
                self.engine.capacity_changed(id);
            }
            None => self.store.heartbeat(id, Some(epoch), self.now_ms()).await?,
        }
        let cancel = if running.is_empty() {
            Vec::new()
        } else {
            self.store.cancel_requested(running).await?
        };
        let reconciled = self.reconcile(id, running).await?;
        let status = self
            .store
            .worker(id)
            .await?
            .map(|w| w.status)
            .ok_or_else(|| ProtocolError::UnknownWorker(id.clone()))?;
        Ok(Beat {
            cancel,
            stop: reconciled.stop,
            status,
        })
    }

    /// Up to `max` of the worker's next assignments, waiting up to `wait` for one.
    /// Unacknowledged deliveries come again after the redelivery timeout.
    pub async fn assignments(
        &self,
        id: &WorkerId,
        epoch: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>, ProtocolError> {
        Ok(self.store.assignments(id, Some(epoch), max, wait).await?)
    }

    /// Acknowledges a delivery: it will not come again.
    pub async fn ack(
        &self,
        id: &WorkerId,
        epoch: u64,
        delivery: &str,
    ) -> Result<(), ProtocolError> {
        let ok = !delivery.is_empty()
            && delivery.len() <= MAX_DELIVERY_LEN
            && delivery
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(ProtocolError::invalid(
                "delivery",
                format!("a delivery id is 1 to {MAX_DELIVERY_LEN} ASCII letters, digits or '-'"),
            ));
        }
        Ok(self.store.ack_assignment(id, Some(epoch), delivery).await?)
    }

    /// Gives back a reservation the worker will not run (its container's record names
    /// another worker or attempt). Idempotent: true if this call gave capacity back. A
    /// container whose live record this worker and attempt hold is refused: report it.
    pub async fn release(
        &self,
        id: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        epoch: u64,
    ) -> Result<bool, ProtocolError> {
        if let Some(record) = self.store.container(container).await?
            && !record.state.is_terminal()
            && holds(&record, id, attempt)
        {
            return Err(ProtocolError::StillHeld {
                container: container.clone(),
                state: record.state,
            });
        }
        let outcome = self
            .store
            .release(id, container, Some(attempt), Some(epoch))
            .await?;
        Ok(matches!(outcome, ReleaseOutcome::Released { .. }))
    }
}
