//! The embedded in-memory store: one process, no Redis. All state sits behind one mutex,
//! so every operation is atomic; waiting readers are woken through [`Notify`] instead of
//! polling. Time-outs use tokio's clock, so tests can pause time.

mod intake;
mod provisioning;
mod quota;
mod service;
mod state;

use crate::model::*;
use crate::prelude::*;
use crate::{Result, SettleItem, Store, StoreConfig, StoreError, StoreStats};
use async_trait::async_trait;
use berth_core::invariants::{self as check, CheckOptions, Dump, QueuedAssignment, WorkerDump};
use berth_core::lifecycle;
use berth_core::{
    Assignment, AttemptId, ContainerRecord, ContainerState, PoolDemand, ReclaimOutcome, Transition,
    Violation, WorkerRegistration,
};
use berth_core::{
    ContainerId, ContainerRequest, DeviceShare, PoolName, Worker, WorkerId, WorkerStatus,
};
use parking_lot::Mutex;
use state::{State, WorkerEntry, sum};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The embedded store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    config: StoreConfig,
    stats: StoreStats,
    /// Woken when requests enter the intake.
    intake_ready: Notify,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(StoreConfig::default())
    }
}

impl MemoryStore {
    /// An empty store with these timings.
    pub fn new(config: StoreConfig) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            config,
            stats: StoreStats::default(),
            intake_ready: Notify::new(),
        }
    }

    /// Runs `op` under the lock, counting it as one round trip of `commands` commands.
    fn with<T>(&self, commands: u64, op: impl FnOnce(&mut State) -> T) -> T {
        self.stats.round_trip(commands, 0);
        op(&mut self.state.lock())
    }

    /// Gives back one container of `worker` (see [`service::reclaim`]) and wakes the
    /// claimers when it went back to the intake.
    fn give_back(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        end: ContainerState,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        let outcome = self.with(1, |state| {
            service::reclaim(state, worker, container, attempt, end, reason)
        })?;
        if matches!(outcome, ReclaimOutcome::Requeued | ReclaimOutcome::Retried) {
            self.intake_ready.notify_waiters();
        }
        Ok(outcome)
    }

    fn worker_ready(&self, worker: &WorkerId) -> Result<Arc<Notify>> {
        Ok(self.state.lock().entry(worker)?.ready.clone())
    }
}

#[async_trait]
impl Fleet for MemoryStore {
    async fn register_worker(&self, registration: &WorkerRegistration) -> Result<Worker> {
        self.with(1, |state| register(state, registration))
    }

    async fn heartbeat(&self, worker: &WorkerId, epoch: Option<u64>, now_ms: u64) -> Result<()> {
        self.with(1, |state| {
            state.fenced_mut(worker, epoch)?.heartbeat_ms = now_ms;
            Ok(())
        })
    }

    async fn heartbeat_with_images(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        now_ms: u64,
        images: &[String],
    ) -> Result<()> {
        crate::check_images(images)?;
        self.with(1, |state| {
            let entry = state.fenced_mut(worker, epoch)?;
            entry.heartbeat_ms = now_ms;
            entry.worker.images = images.to_vec();
            Ok(())
        })
    }

    async fn set_worker_status(&self, worker: &WorkerId, status: WorkerStatus) -> Result<Worker> {
        self.with(1, |state| {
            let entry = state.entry_mut(worker)?;
            if status == WorkerStatus::Lost && entry.worker.status != WorkerStatus::Lost {
                entry.worker.epoch += 1;
            }
            entry.worker.status = status;
            entry.worker.version += 1;
            Ok(entry.worker.clone())
        })
    }

    async fn worker(&self, worker: &WorkerId) -> Result<Option<Worker>> {
        self.stats.worker_reads(1);
        self.with(1, |state| {
            Ok(state.workers.get(worker).map(|e| e.worker.clone()))
        })
    }

    async fn workers(&self) -> Result<Vec<Worker>> {
        let workers: Vec<Worker> = self.with(1, |state| {
            state.workers.values().map(|e| e.worker.clone()).collect()
        });
        self.stats.worker_reads(workers.len() as u64);
        Ok(workers)
    }

    async fn heartbeats(&self) -> Result<Vec<(WorkerId, u64)>> {
        self.with(1, |state| {
            Ok(state
                .workers
                .values()
                .map(|e| (e.worker.id.clone(), e.heartbeat_ms))
                .collect())
        })
    }

    async fn deregister_worker(&self, worker: &WorkerId) -> Result<()> {
        self.with(1, |state| service::deregister(state, worker))
    }

    /// Nothing: the embedded store holds typed workers, which cannot be corrupt.
    async fn quarantined(&self) -> Result<Vec<crate::Violation>> {
        Ok(Vec::new())
    }

    async fn fleet(&self) -> Result<(Vec<Worker>, Vec<crate::Violation>)> {
        Ok((self.workers().await?, Vec::new()))
    }

    async fn heartbeat_of(&self, worker: &WorkerId) -> Result<Option<u64>> {
        self.with(1, |state| {
            Ok(state.workers.get(worker).map(|e| e.heartbeat_ms))
        })
    }
}

#[async_trait]
impl Bookings for MemoryStore {
    async fn commit(&self, groups: &[CommitGroup]) -> Result<Vec<CommitOutcome>> {
        validate_groups(groups)?;
        self.with(groups.len() as u64, |state| {
            groups.iter().map(|g| state.commit_group(g)).collect()
        })
    }

    async fn release(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
        epoch: Option<u64>,
    ) -> Result<ReleaseOutcome> {
        self.with(1, |state| {
            state.fenced_mut(worker, epoch)?;
            state.release(worker, container, attempt)
        })
    }

    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>> {
        let deadline = Instant::now() + wait;
        let ready = self.worker_ready(worker)?;
        loop {
            let notified = ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.with(1, |state| {
                take_deliveries(
                    state.fenced_mut(worker, epoch)?,
                    max,
                    self.config.redelivery,
                )
            })?;
            if !batch.is_empty() || Instant::now() >= deadline {
                return Ok(batch);
            }
            // At the deadline, one more pass: it answers what is due, or that the worker
            // was removed or fenced off meanwhile.
            let _woken_or_due = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    async fn ack_assignment(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        delivery: &str,
    ) -> Result<()> {
        let seq: u64 = delivery.parse().map_err(|_| {
            StoreError::InvalidArgument(format!("delivery id {delivery:?} is not one of ours"))
        })?;
        self.with(1, |state| {
            state.fenced_mut(worker, epoch)?.queue.remove(&seq);
            Ok(())
        })
    }

    async fn owners(&self, container: &ContainerId) -> Result<Vec<(WorkerId, AttemptId)>> {
        self.with(1, |state| {
            Ok(state
                .workers
                .values()
                .filter_map(|e| {
                    e.owned
                        .get(container)
                        .map(|o| (e.worker.id.clone(), o.attempt.clone()))
                })
                .collect())
        })
    }

    async fn reclaim(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        self.give_back(worker, container, attempt, ContainerState::Lost, reason)
    }

    async fn owned(&self, worker: &WorkerId) -> Result<Vec<berth_core::invariants::OwnedEntry>> {
        self.with(1, |state| service::owned(state, worker))
    }

    async fn preempt(&self, preemption: &PreemptionCommit) -> Result<CommitOutcome> {
        if preemption.victims.is_empty() {
            return Err(StoreError::InvalidArgument(
                "a preemption needs at least one victim".to_owned(),
            ));
        }
        validate_groups(&[CommitGroup {
            worker: preemption.worker.clone(),
            reservations: vec![preemption.reservation.clone()],
        }])?;
        self.with(1, |state| state.preempt(preemption))
    }

    async fn preempted(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        self.give_back(
            worker,
            container,
            attempt,
            ContainerState::Preempted,
            reason,
        )
    }
}

#[async_trait]
impl Intake for MemoryStore {
    async fn submit(&self, requests: &[ContainerRequest]) -> Result<Vec<SubmitOutcome>> {
        crate::validate_requests(requests)?;
        let outcomes = self.with(1, |state| intake::submit(state, requests));
        self.intake_ready.notify_waiters();
        Ok(outcomes)
    }

    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Claim>> {
        let _ = consumer;
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.intake_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claims = self.with(1, |state| {
                intake::claim(state, max, self.config.claim_visibility)
            });
            if !claims.is_empty() || Instant::now() >= deadline {
                return Ok(claims);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<Vec<SettleOutcome>> {
        if let Some(bad) = items.iter().find(|i| i.entry.parse::<u64>().is_err()) {
            return Err(StoreError::InvalidArgument(format!(
                "intake entry {:?} is not one of ours",
                bad.entry
            )));
        }
        self.with(1, |state| {
            Ok(items
                .iter()
                .map(|item| intake::settle(state, item))
                .collect())
        })
    }

    async fn promote_due(&self, now_ms: u64, max: usize) -> Result<usize> {
        let moved = self.with(1, |state| intake::promote_due(state, now_ms, max));
        if moved > 0 {
            self.intake_ready.notify_waiters();
        }
        Ok(moved)
    }

    async fn unmet_demand(&self) -> Result<Vec<PoolDemand>> {
        self.with(1, |state| Ok(state.unmet_demand()))
    }

    async fn claim_provisioning(
        &self,
        pool: &PoolName,
        intent: &str,
        ttl: Duration,
    ) -> Result<bool> {
        tracing::debug!(%pool, intent, "provisioning intent");
        self.with(1, |state| {
            let now = Instant::now();
            if state
                .provisioning
                .get(pool)
                .is_some_and(|until| *until > now)
            {
                return Ok(false);
            }
            state.provisioning.insert(pool.clone(), now + ttl);
            Ok(true)
        })
    }

    async fn backlog_len(&self) -> Result<u64> {
        self.with(1, |state| Ok(state.backlog.len() as u64))
    }

    async fn intake_len(&self) -> Result<u64> {
        self.with(1, |state| Ok(state.intake.len() as u64))
    }
}

#[async_trait]
impl Records for MemoryStore {
    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>> {
        self.with(1, |state| Ok(state.records.get(id).cloned()))
    }

    async fn transition(
        &self,
        id: &ContainerId,
        transition: &Transition,
    ) -> Result<ContainerRecord> {
        self.with(1, |state| {
            let record = state
                .records
                .get_mut(id)
                .ok_or_else(|| StoreError::UnknownContainer(id.clone()))?;
            let from = record.state;
            let mut next = record.clone();
            lifecycle::apply(&mut next, transition, crate::now_ms()).map_err(|why| {
                StoreError::InvalidTransition {
                    container: id.clone(),
                    from,
                    why,
                }
            })?;
            *record = next.clone();
            if next.state.is_terminal() {
                state.quota.uncharge(id);
            }
            Ok(next)
        })
    }

    async fn containers(
        &self,
        state: Option<ContainerState>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>> {
        self.with(1, |s| Ok(service::containers(s, state, limit)))
    }

    async fn append_logs(
        &self,
        container: &ContainerId,
        lines: &[String],
        keep: usize,
    ) -> Result<()> {
        self.with(1, |state| {
            service::append_logs(state, container, lines, keep);
            Ok(())
        })
    }

    async fn logs(&self, container: &ContainerId, after: u64) -> Result<LogSlice> {
        self.with(1, |state| Ok(service::logs(state, container, after)))
    }

    async fn cancel(&self, container: &ContainerId) -> Result<ContainerRecord> {
        self.with(1, |state| service::cancel(state, container))
    }

    async fn cancel_requested(&self, containers: &[ContainerId]) -> Result<Vec<ContainerId>> {
        self.with(1, |state| {
            Ok(containers
                .iter()
                .filter(|id| state.records.get(*id).is_some_and(|r| r.cancel_requested))
                .cloned()
                .collect())
        })
    }
}

#[async_trait]
impl crate::Quotas for MemoryStore {
    async fn put_tenant(&self, tenant: &berth_core::Tenant) -> Result<()> {
        tenant
            .validate()
            .map_err(|e| StoreError::InvalidArgument(format!("tenant {}: {e}", tenant.name)))?;
        self.with(1, |state| {
            state
                .quota
                .tenants
                .insert(tenant.name.clone(), tenant.clone());
            Ok(())
        })
    }

    async fn remove_tenant(&self, name: &berth_core::TenantName) -> Result<bool> {
        self.with(1, |state| Ok(state.quota.tenants.remove(name).is_some()))
    }

    async fn tenants(&self) -> Result<Vec<berth_core::Tenant>> {
        self.with(1, |state| {
            Ok(state.quota.tenants.values().cloned().collect())
        })
    }

    async fn usage(&self) -> Result<Vec<(String, berth_core::Usage)>> {
        self.with(1, |state| {
            let mut usage: Vec<_> = state
                .quota
                .usage
                .iter()
                .map(|(tenant, usage)| (tenant.clone(), usage.clone()))
                .collect();
            usage.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(usage)
        })
    }

    async fn hold(&self, holds: &[crate::Hold]) -> Result<Vec<crate::HoldOutcome>> {
        self.with(1, |state| {
            Ok(holds
                .iter()
                .map(|hold| {
                    let pending = state
                        .records
                        .get(&hold.container)
                        .is_some_and(|r| r.state == ContainerState::Pending);
                    state.quota.hold(hold, pending)
                })
                .collect())
        })
    }
}

#[async_trait]
impl Inspection for MemoryStore {
    async fn check(&self, options: CheckOptions) -> Result<Vec<Violation>> {
        let dump = self.with(1, dump);
        Ok(check::violations(&dump, &options))
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

#[async_trait]
impl WorkerLocks for MemoryStore {
    async fn lock_worker(&self, worker: &WorkerId, ttl: Duration) -> Result<Option<LockToken>> {
        let token = self.with(1, |state| -> Result<Option<String>> {
            let entry = state.entry_mut(worker)?;
            let now = Instant::now();
            if entry.lock.as_ref().is_some_and(|(_, until)| *until > now) {
                return Ok(None);
            }
            let token = crate::new_attempt().0;
            entry.lock = Some((token.clone(), now + ttl));
            Ok(Some(token))
        })?;
        self.stats.lock_attempt(token.is_some());
        Ok(token.map(|token| LockToken {
            worker: worker.clone(),
            token,
        }))
    }

    async fn commit_locked(
        &self,
        lock: &LockToken,
        expected_version: u64,
        group: &CommitGroup,
    ) -> Result<CommitOutcome> {
        validate_groups(std::slice::from_ref(group))?;
        if group.worker != lock.worker {
            return Err(StoreError::InvalidArgument(format!(
                "the lock is for worker {}, the group for {}",
                lock.worker, group.worker
            )));
        }
        self.with(1, |state| {
            let Some(entry) = state.workers.get(&group.worker) else {
                return state.commit_group(group);
            };
            if let Some(rejection) = lock_rejection(entry, lock, expected_version) {
                return Ok(CommitOutcome::Rejected {
                    rejection,
                    worker: Some(entry.worker.clone()),
                });
            }
            state.commit_group(group)
        })
    }

    async fn unlock_worker(&self, lock: &LockToken) -> Result<bool> {
        self.with(1, |state| {
            let entry = state.entry_mut(&lock.worker)?;
            let held = entry
                .lock
                .as_ref()
                .is_some_and(|(token, until)| *token == lock.token && *until > Instant::now());
            if held {
                entry.lock = None;
            }
            Ok(held)
        })
    }
}

#[async_trait]
impl Credentials for MemoryStore {
    async fn put_credential(&self, credential: &berth_core::Credential) -> Result<()> {
        self.with(1, |state| {
            state
                .credentials
                .insert(credential.id.clone(), credential.clone());
        });
        Ok(())
    }

    async fn credential(&self, id: &berth_core::TokenId) -> Result<Option<berth_core::Credential>> {
        Ok(self.with(1, |state| state.credentials.get(id).cloned()))
    }

    async fn credentials(&self) -> Result<Vec<berth_core::Credential>> {
        Ok(self.with(1, |state| state.credentials.values().cloned().collect()))
    }

    async fn revoke_credentials(&self, ids: &[berth_core::TokenId]) -> Result<usize> {
        Ok(self.with(1, |state| {
            ids.iter()
                .filter(|id| state.credentials.remove(*id).is_some())
                .count()
        }))
    }
}

impl Store for MemoryStore {
    fn worker_locks(&self) -> Option<&dyn WorkerLocks> {
        Some(self)
    }
}

/// Everything the invariant check looks at, read under the lock (one snapshot).
fn dump(state: &mut State) -> Dump {
    let workers = state
        .workers
        .values()
        .map(|e| WorkerDump {
            worker: e.worker.clone(),
            owned: e.owned.values().cloned().collect(),
            heartbeat_ms: e.heartbeat_ms,
            assignments: e
                .queue
                .values()
                .map(|d| QueuedAssignment {
                    delivery: d.assignment.delivery.clone(),
                    container: d.assignment.container.clone(),
                    attempt: d.assignment.attempt.clone(),
                })
                .collect(),
            queue: format!("the assignment queue of worker {}", e.worker.id),
        })
        .collect();
    let queued = state
        .intake
        .values()
        .map(|entry| entry.container.clone())
        .chain(state.backlog_due.keys().cloned())
        .collect();
    Dump {
        workers,
        records: state.records.values().cloned().collect(),
        queued,
        unreadable: Vec::new(),
        charges: state
            .quota
            .charges
            .iter()
            .map(|(container, charge)| (container.clone(), charge.clone()))
            .collect(),
        usage: state
            .quota
            .usage
            .iter()
            .map(|(tenant, usage)| (tenant.clone(), usage.clone()))
            .collect(),
    }
}

fn register(state: &mut State, registration: &WorkerRegistration) -> Result<Worker> {
    let registration = registration
        .clone()
        .with_devices()
        .map_err(|e| StoreError::InvalidArgument(format!("worker {}: {e}", registration.id)))?;
    if let Some(entry) = state.workers.get_mut(&registration.id) {
        let reserved = sum(entry.owned.values().map(|o| o.resources))?;
        let below = |reserved: String| StoreError::BelowReserved {
            worker: registration.id.clone(),
            total: registration.total.to_string(),
            reserved,
        };
        let free = registration
            .total
            .checked_sub(reserved)
            .ok_or_else(|| below(reserved.to_string()))?;
        let mut worker = registration.clone().into_worker(
            free,
            entry.worker.version + 1,
            entry.worker.epoch + 1,
        );
        let shares: Vec<DeviceShare> = entry
            .owned
            .values()
            .flat_map(|o| o.devices.iter().copied())
            .collect();
        worker
            .account_owned_devices(&shares)
            .map_err(|device| below(format!("more than GPU device {device} holds")))?;
        entry.worker = worker;
        return Ok(entry.worker.clone());
    }
    let worker = registration.clone().into_worker(registration.total, 1, 1);
    state.workers.insert(
        worker.id.clone(),
        WorkerEntry {
            worker: worker.clone(),
            owned: Default::default(),
            queue: Default::default(),
            lock: None,
            heartbeat_ms: crate::now_ms(),
            ready: Arc::new(Notify::new()),
        },
    );
    Ok(worker)
}

/// Why a locked commit is refused before it is tried, if it is.
fn lock_rejection(entry: &WorkerEntry, lock: &LockToken, expected: u64) -> Option<Rejection> {
    let held = entry
        .lock
        .as_ref()
        .is_some_and(|(token, until)| *token == lock.token && *until > Instant::now());
    if !held {
        Some(Rejection::LockLost)
    } else if entry.worker.version != expected {
        Some(Rejection::VersionConflict)
    } else {
        None
    }
}

/// Checks every group before anything is applied: no reservation may be empty, and no
/// group's sum may overflow.
pub(crate) fn validate_groups(groups: &[CommitGroup]) -> Result<()> {
    for group in groups {
        sum(group.reservations.iter().map(|r| r.resources))?;
        for reservation in &group.reservations {
            if reservation.resources.is_zero() {
                return Err(StoreError::InvalidArgument(format!(
                    "container {} reserves nothing",
                    reservation.container
                )));
            }
            DeviceShare::check_reservation(reservation.resources.gpu_count, &reservation.devices)
                .map_err(|e| {
                StoreError::InvalidArgument(format!("container {}: {e}", reservation.container))
            })?;
        }
    }
    Ok(())
}

/// Up to `max` deliveries of a worker, in queue order: those never delivered and those
/// delivered longer than `redelivery` ago without an acknowledgement. Marks them delivered.
fn take_deliveries(
    entry: &mut WorkerEntry,
    max: usize,
    redelivery: Duration,
) -> Result<Vec<Assignment>> {
    let now = Instant::now();
    let due = |d: &state::Delivery| match d.delivered_at {
        None => true,
        Some(at) => now.duration_since(at) >= redelivery,
    };
    let mut out = Vec::new();
    for delivery in entry.queue.values_mut() {
        if out.len() >= max {
            break;
        }
        if due(delivery) {
            delivery.delivered_at = Some(now);
            out.push(delivery.assignment.clone());
        }
    }
    Ok(out)
}
