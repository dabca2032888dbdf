//! The in-memory store's data and its pure operations. Every function here runs under the
//! store's one mutex, so each is atomic by construction.

use crate::model::*;
use crate::{Result, StoreError};
use berth_core::invariants::OwnedEntry;
use berth_core::{Assignment, AttemptId, ContainerRecord, ContainerState, PoolDemand};
use berth_core::{ContainerId, DeviceShare, GpuType, PoolName, Resources, Worker, WorkerId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One queued assignment and when it was last delivered.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub assignment: Assignment,
    pub delivered_at: Option<Instant>,
}

/// A worker with its ownership table, assignment queue and lock.
#[derive(Debug)]
pub(super) struct WorkerEntry {
    pub worker: Worker,
    pub owned: BTreeMap<ContainerId, OwnedEntry>,
    pub queue: BTreeMap<u64, Delivery>,
    pub lock: Option<(String, Instant)>,
    pub heartbeat_ms: u64,
    /// Woken when an assignment is queued.
    pub ready: Arc<Notify>,
}

/// An accepted request waiting in the intake.
#[derive(Debug, Clone)]
pub(super) struct IntakeEntry {
    pub container: ContainerId,
    pub claimed: Option<Instant>,
}

/// A container's kept output lines, and how many earlier ones were dropped (the position
/// of the first kept line).
#[derive(Debug, Default)]
pub(super) struct KeptLog {
    pub dropped: u64,
    pub lines: std::collections::VecDeque<String>,
}

/// All of the in-memory store's data.
#[derive(Debug, Default)]
pub(super) struct State {
    pub workers: BTreeMap<WorkerId, WorkerEntry>,
    pub records: HashMap<ContainerId, ContainerRecord>,
    pub intake: BTreeMap<u64, IntakeEntry>,
    /// Deferred containers by due time; `backlog_due` indexes it by container, so a
    /// container is in the backlog at most once (like a Redis sorted set).
    pub backlog: BTreeSet<(u64, ContainerId)>,
    pub backlog_due: HashMap<ContainerId, u64>,
    /// The pool (and its GPU type) each deferred container waits for.
    pub demand: HashMap<ContainerId, (Option<PoolName>, Option<GpuType>)>,
    /// The kept output lines of each container.
    pub logs: HashMap<ContainerId, KeptLog>,
    /// Recorded provisioning intents by pool, with their expiry.
    pub provisioning: HashMap<PoolName, Instant>,
    /// Workers started by a provisioner and not registered yet, by pool and id.
    pub provisioned: HashMap<PoolName, BTreeMap<WorkerId, crate::PendingWorker>>,
    /// The last sequence number handed out (intake entries and deliveries).
    pub seq: u64,
    /// API credentials by token id.
    pub credentials: BTreeMap<berth_core::TokenId, berth_core::Credential>,
    /// Tenants' policies, charges and usage.
    pub quota: super::quota::QuotaBook,
}

impl State {
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Puts a container in the backlog, due at `due_ms`, replacing an earlier entry.
    pub fn defer(&mut self, container: &ContainerId, due_ms: u64) {
        if let Some(old) = self.backlog_due.insert(container.clone(), due_ms) {
            self.backlog.remove(&(old, container.clone()));
        }
        self.backlog.insert((due_ms, container.clone()));
    }

    /// Takes a container out of the backlog.
    pub fn undefer(&mut self, key: &(u64, ContainerId)) {
        self.backlog.remove(key);
        self.backlog_due.remove(&key.1);
    }

    /// The unmet demand of the backlog.
    pub fn unmet_demand(&self) -> Vec<PoolDemand> {
        berth_core::aggregate_demand(self.backlog.iter().filter_map(|(_, id)| {
            let record = self
                .records
                .get(id)
                .filter(|r| r.state == ContainerState::Pending)?;
            let (pool, gpu) = self.demand.get(id)?;
            Some((pool.as_ref(), gpu.as_ref(), record.request.resources))
        }))
    }

    pub fn entry(&self, id: &WorkerId) -> Result<&WorkerEntry> {
        self.workers
            .get(id)
            .ok_or_else(|| StoreError::UnknownWorker(id.clone()))
    }

    pub fn entry_mut(&mut self, id: &WorkerId) -> Result<&mut WorkerEntry> {
        self.workers
            .get_mut(id)
            .ok_or_else(|| StoreError::UnknownWorker(id.clone()))
    }

    /// The worker's entry if `epoch` is its current one (or no epoch is given);
    /// [`StoreError::StaleEpoch`] otherwise.
    pub fn fenced_mut(&mut self, id: &WorkerId, epoch: Option<u64>) -> Result<&mut WorkerEntry> {
        let entry = self.entry_mut(id)?;
        if let Some(presented) = epoch {
            crate::fence(&entry.worker, presented)?;
        }
        Ok(entry)
    }

    /// Applies one commit group to its worker, all or nothing.
    pub fn commit_group(&mut self, group: &CommitGroup) -> Result<CommitOutcome> {
        let Some(entry) = self.workers.get(&group.worker) else {
            return Ok(rejected(Rejection::UnknownWorker, None));
        };
        let Some((fresh, already_owned)) = split_owned(entry, group) else {
            return Ok(rejected(
                Rejection::OwnedByAnotherAttempt,
                Some(entry.worker.clone()),
            ));
        };
        let needed = sum(fresh.iter().map(|r| r.resources))?;
        if fresh.is_empty() {
            // A retry of a commit that already happened: nothing to write.
            return Ok(CommitOutcome::Committed {
                worker: entry.worker.clone(),
                already_owned,
            });
        }
        if !entry.worker.status.accepts_work() {
            return Ok(rejected(
                Rejection::NotAcceptingWork,
                Some(entry.worker.clone()),
            ));
        }
        let Some(left) = entry.worker.free.checked_sub(needed) else {
            return Ok(rejected(Rejection::NoRoom, Some(entry.worker.clone())));
        };
        let shares: Vec<DeviceShare> = fresh
            .iter()
            .flat_map(|r| r.devices.iter().copied())
            .collect();
        let entry = self.entry_mut(&group.worker)?;
        let before = entry.worker.free;
        entry.worker.free = left;
        // All or nothing: on refusal the devices are untouched and free is put back.
        if !entry.worker.book_devices(&shares) {
            entry.worker.free = before;
            return Ok(rejected(Rejection::NoRoom, Some(entry.worker.clone())));
        }
        entry.worker.version += 1;
        let first_seq = self.seq + 1;
        self.seq += fresh.len() as u64;
        let entry = self.entry_mut(&group.worker)?;
        for (offset, reservation) in fresh.into_iter().enumerate() {
            own_and_queue(entry, reservation, first_seq + offset as u64);
        }
        entry.ready.notify_waiters();
        Ok(CommitOutcome::Committed {
            worker: entry.worker.clone(),
            already_owned,
        })
    }

    /// Stops a preemption's victims and books its preemptor in their place, all or nothing
    /// (see [`crate::Bookings::preempt`]).
    pub fn preempt(&mut self, preemption: &PreemptionCommit) -> Result<CommitOutcome> {
        let reservation = &preemption.reservation;
        let Some(entry) = self.workers.get(&preemption.worker) else {
            return Ok(rejected(Rejection::UnknownWorker, None));
        };
        let current = Some(entry.worker.clone());
        if let Some(owned) = entry.owned.get(&reservation.container) {
            if owned.attempt != reservation.attempt {
                return Ok(rejected(Rejection::OwnedByAnotherAttempt, current));
            }
            return Ok(CommitOutcome::Committed {
                worker: entry.worker.clone(),
                already_owned: vec![(reservation.container.clone(), owned.attempt.clone())],
            });
        }
        if !entry.worker.status.accepts_work() {
            return Ok(rejected(Rejection::NotAcceptingWork, current));
        }
        let mut victims = Vec::with_capacity(preemption.victims.len());
        for (container, attempt) in &preemption.victims {
            match entry.owned.get(container) {
                Some(owned) if owned.attempt == *attempt => victims.push(owned.clone()),
                _ => return Ok(rejected(Rejection::VictimGone, current)),
            }
        }
        // The worker as it would be: the victims credited, the preemptor booked.
        let mut after = entry.worker.clone();
        after.free = after
            .free
            .checked_add(sum(victims.iter().map(|v| v.resources))?)
            .filter(|free| free.fits_in(&after.total))
            .ok_or_else(|| corrupt_capacity(&entry.worker))?;
        if !after.credit_devices(
            &victims
                .iter()
                .flat_map(|v| v.devices.clone())
                .collect::<Vec<_>>(),
        ) {
            return Err(corrupt_capacity(&entry.worker));
        }
        let Some(left) = after.free.checked_sub(reservation.resources) else {
            return Ok(rejected(Rejection::NoRoom, current));
        };
        after.free = left;
        if !after.book_devices(&reservation.devices) {
            return Ok(rejected(Rejection::NoRoom, current));
        }
        after.version += 1;
        self.seq += 1;
        let seq = self.seq;
        let entry = self.entry_mut(&preemption.worker)?;
        for victim in &victims {
            entry.owned.remove(&victim.container);
            entry.queue.retain(|_, d| {
                d.assignment.container != victim.container || d.assignment.attempt != victim.attempt
            });
        }
        entry.worker = after;
        own_and_queue(entry, reservation, seq);
        if let Some(queued) = entry.queue.get_mut(&seq) {
            queued.assignment.preempts = victims.into_iter().map(|v| v.container).collect();
        }
        entry.ready.notify_waiters();
        Ok(CommitOutcome::Committed {
            worker: entry.worker.clone(),
            already_owned: Vec::new(),
        })
    }

    /// Gives a container's capacity back to its worker if it owns it (under `attempt`).
    pub fn release(
        &mut self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
    ) -> Result<ReleaseOutcome> {
        let entry = self.entry_mut(worker)?;
        let Some(owned) = entry.owned.get(container) else {
            return Ok(ReleaseOutcome::NotOwned);
        };
        if attempt.is_some_and(|a| *a != owned.attempt) {
            return Ok(ReleaseOutcome::NotOwned);
        }
        let resources = owned.resources;
        let devices = owned.devices.clone();
        let attempt = owned.attempt.clone();
        let free = entry
            .worker
            .free
            .checked_add(resources)
            .filter(|free| free.fits_in(&entry.worker.total))
            .ok_or_else(|| corrupt_capacity(&entry.worker))?;
        let before = entry.worker.free;
        entry.worker.free = free;
        // All or nothing: on refusal the devices are untouched and free is put back.
        if !entry.worker.credit_devices(&devices) {
            entry.worker.free = before;
            return Err(corrupt_capacity(&entry.worker));
        }
        entry.owned.remove(container);
        entry
            .queue
            .retain(|_, d| d.assignment.container != *container || d.assignment.attempt != attempt);
        entry.worker.version += 1;
        Ok(ReleaseOutcome::Released {
            resources,
            worker: Box::new(entry.worker.clone()),
        })
    }
}

fn rejected(rejection: Rejection, worker: Option<Worker>) -> CommitOutcome {
    CommitOutcome::Rejected { rejection, worker }
}

/// Splits a group into reservations the worker does not own yet and those it owns already
/// under the same attempt; `None` if it owns one under another attempt.
type Split<'g> = (Vec<&'g Reservation>, Vec<(ContainerId, AttemptId)>);
fn split_owned<'g>(entry: &WorkerEntry, group: &'g CommitGroup) -> Option<Split<'g>> {
    let mut fresh = Vec::new();
    let mut already = Vec::new();
    let mut seen = BTreeSet::new();
    for reservation in &group.reservations {
        if let Some(owned) = entry.owned.get(&reservation.container) {
            if owned.attempt != reservation.attempt {
                return None;
            }
            already.push((reservation.container.clone(), owned.attempt.clone()));
        } else if seen.insert(&reservation.container) {
            fresh.push(reservation);
        }
    }
    Some((fresh, already))
}

fn own_and_queue(entry: &mut WorkerEntry, reservation: &Reservation, seq: u64) {
    entry.owned.insert(
        reservation.container.clone(),
        OwnedEntry {
            devices: reservation.devices.clone(),
            container: reservation.container.clone(),
            attempt: reservation.attempt.clone(),
            resources: reservation.resources,
        },
    );
    let assignment = Assignment {
        delivery: seq.to_string(),
        container: reservation.container.clone(),
        attempt: reservation.attempt.clone(),
        resources: reservation.resources,
        devices: reservation.devices.clone(),
        payload: reservation.payload.clone(),
        preempts: Vec::new(),
    };
    entry.queue.insert(
        seq,
        Delivery {
            assignment,
            delivered_at: None,
        },
    );
}

/// The sum of some resources, or an error on overflow.
pub(super) fn sum(parts: impl Iterator<Item = Resources>) -> Result<Resources> {
    let mut total = Resources::ZERO;
    for part in parts {
        total = total
            .checked_add(part)
            .ok_or_else(|| StoreError::InvalidArgument("resources overflow".to_owned()))?;
    }
    Ok(total)
}

fn corrupt_capacity(worker: &Worker) -> StoreError {
    StoreError::Corrupt {
        key: worker.id.to_string(),
        field: "free".to_owned(),
        problem: format!(
            "releasing would raise free ({}) above total ({})",
            worker.free, worker.total
        ),
    }
}
