//! The values that cross the store boundary: registrations, commit groups and their
//! outcomes, assignments, container records, intake claims and invariant violations.

use berth_core::{
    ContainerId, ContainerRequest, GpuType, Payload, PoolAttributes, PoolName, Resources, Worker,
    WorkerId, WorkerStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a worker says about itself when it (re-)registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// The worker's id.
    pub id: WorkerId,
    /// Its pool and the attributes it inherits from the pool.
    pub pool: PoolAttributes,
    /// The status to register with (usually available).
    pub status: WorkerStatus,
    /// Its whole capacity.
    pub total: Resources,
    /// Its GPU type, if it has GPUs.
    pub gpu_type: Option<GpuType>,
}

/// A unique token for one placement attempt of a container. A claim of a request from the
/// intake gets a fresh one; the worker's ownership entry and the container record carry it,
/// so a stale attempt can be recognised and undone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(pub String);

impl AttemptId {
    /// A fresh random attempt id (16 hex digits).
    pub fn random() -> AttemptId {
        AttemptId(format!("{:016x}", rand::random::<u64>()))
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One container to reserve on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The container.
    pub container: ContainerId,
    /// The placement attempt this reservation belongs to.
    pub attempt: AttemptId,
    /// What it reserves.
    pub resources: Resources,
    /// What the worker needs to run it; carried, never read.
    pub payload: Payload,
}

/// Every reservation for one worker: committed atomically, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitGroup {
    /// The worker.
    pub worker: WorkerId,
    /// The containers to reserve on it.
    pub reservations: Vec<Reservation>,
}

/// Why a worker refused a commit group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The worker is not registered.
    UnknownWorker,
    /// The worker is draining or disabled.
    NotAcceptingWork,
    /// The group does not fit the worker's free capacity.
    NoRoom,
    /// A container of the group is owned by the worker under another attempt (a placement
    /// being given back, or one to adopt): the group is not a retry of that commit.
    OwnedByAnotherAttempt,
    /// Lock-based path only: the worker's version moved since it was read.
    VersionConflict,
    /// Lock-based path only: the caller does not hold the worker's lock (it expired).
    LockLost,
}

/// The result of committing one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Every reservation of the group is now held by the worker.
    Committed {
        /// The worker's state after the commit.
        worker: Worker,
        /// Containers the worker already owned before this commit (a retried commit), with
        /// the attempt that owns them. They were not reserved a second time.
        already_owned: Vec<(ContainerId, AttemptId)>,
    },
    /// Nothing was reserved.
    Rejected {
        /// Why.
        rejection: Rejection,
        /// The worker's current state (`None` for an unknown worker), so the caller can
        /// replan without another read.
        worker: Option<Worker>,
    },
}

impl CommitOutcome {
    /// The worker state carried by the outcome, if any.
    pub fn worker(&self) -> Option<&Worker> {
        match self {
            CommitOutcome::Committed { worker, .. } => Some(worker),
            CommitOutcome::Rejected { worker, .. } => worker.as_ref(),
        }
    }
}

/// The result of releasing a container's capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The capacity was given back.
    Released {
        /// What was given back.
        resources: Resources,
        /// The worker's state after the release.
        worker: Worker,
    },
    /// The worker did not own the container (or not for that attempt): nothing changed.
    NotOwned,
}

/// A proof that the caller holds a worker's lock, for the lock-based commit paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    /// The locked worker.
    pub worker: WorkerId,
    /// The random token stored in the lock.
    pub token: String,
}

/// One container delivered to its worker through the worker's assignment queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The delivery's id in the queue; acknowledge it when done.
    pub delivery: String,
    /// The container.
    pub container: ContainerId,
    /// The placement attempt it was reserved under.
    pub attempt: AttemptId,
    /// What it reserved.
    pub resources: Resources,
    /// What to run.
    pub payload: Payload,
}

/// Where a container is in its life. States only move forward:
/// `Pending -> Scheduled -> Running -> Exited | Failed | Lost`; `Pending` and `Scheduled`
/// may also go straight to `Failed` or `Lost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Accepted, waiting for a placement.
    Pending,
    /// Reserved on a worker, not started yet.
    Scheduled,
    /// Started by its worker.
    Running,
    /// Ended with an exit code.
    Exited,
    /// Could not be placed or started; the record says why.
    Failed,
    /// Its worker died while it was scheduled or running.
    Lost,
}

impl ContainerState {
    /// The state as stored: `pending`, `scheduled`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Pending => "pending",
            ContainerState::Scheduled => "scheduled",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Failed => "failed",
            ContainerState::Lost => "lost",
        }
    }

    /// Parses a stored state.
    pub fn parse(s: &str) -> Option<ContainerState> {
        Some(match s {
            "pending" => ContainerState::Pending,
            "scheduled" => ContainerState::Scheduled,
            "running" => ContainerState::Running,
            "exited" => ContainerState::Exited,
            "failed" => ContainerState::Failed,
            "lost" => ContainerState::Lost,
            _ => return None,
        })
    }

    /// True for states a container never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ContainerState::Exited | ContainerState::Failed | ContainerState::Lost
        )
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the store knows about one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The request as accepted.
    pub request: ContainerRequest,
    /// Where it is in its life.
    pub state: ContainerState,
    /// The worker it is (or was) placed on.
    pub worker: Option<WorkerId>,
    /// The attempt that placed it.
    pub attempt: Option<AttemptId>,
    /// When it was scheduled, in ms since the epoch.
    pub scheduled_at_ms: Option<u64>,
    /// When it started running.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// The exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it failed, was lost, or is still waiting.
    pub reason: Option<String>,
    /// How many times it was put back in the backlog for lack of room.
    pub deferrals: u32,
    /// A cancellation was asked for; its worker stops it.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Attempts whose reservations were given back (their worker was declared lost) while
    /// the record was still pending: they may never schedule it.
    #[serde(default)]
    pub revoked_attempts: Vec<AttemptId>,
}

/// A forward move of a container record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Pending -> Scheduled on `worker` by `attempt`. Succeeds again (idempotently) if the
    /// record is already scheduled by the same worker and attempt.
    Scheduled {
        /// The worker that owns the reservation.
        worker: WorkerId,
        /// The attempt that reserved it.
        attempt: AttemptId,
    },
    /// Scheduled -> Running, by the worker and attempt it is scheduled with.
    Running {
        /// The worker that started it.
        worker: WorkerId,
        /// The attempt it was scheduled with.
        attempt: AttemptId,
    },
    /// Running -> Exited, by the worker running it.
    Exited {
        /// The worker that ran it.
        worker: WorkerId,
        /// The attempt it was scheduled with.
        attempt: AttemptId,
        /// The process's exit code.
        exit_code: i32,
    },
    /// Any non-terminal state -> Failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Scheduled or Running -> Lost.
    Lost {
        /// Why.
        reason: String,
    },
}

/// What happened to one submitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// New: recorded as pending and queued for placement.
    Accepted,
    /// A request with this id exists already; nothing was written.
    Duplicate(ContainerState),
}

/// A request taken from the intake by one scheduler replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The intake entry; settle it with [`crate::Store::settle`].
    pub entry: String,
    /// The request.
    pub request: ContainerRequest,
    /// A fresh attempt id for this claim.
    pub attempt: AttemptId,
    /// True when the entry was claimed before and not settled in time (its claimer is
    /// presumed dead): a reservation made by that claimer may exist, see
    /// [`crate::Store::owners`].
    pub redelivered: bool,
}

/// How a claimed request leaves the intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// It was reserved on `worker` by `attempt`: the record becomes Scheduled.
    Scheduled {
        /// The worker holding the reservation.
        worker: WorkerId,
        /// The attempt that holds it.
        attempt: AttemptId,
    },
    /// No room now: back to the backlog, not to be retried before `not_before_ms`.
    Deferred {
        /// The earliest time to retry, in ms since the epoch.
        not_before_ms: u64,
        /// Why it waits.
        reason: String,
        /// The pool that would have to grow for it (counted in the unmet demand), if any.
        pool: Option<PoolName>,
        /// That pool's GPU type, if it has GPUs.
        gpu_type: Option<GpuType>,
    },
    /// It can never be placed: the record becomes Failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The answer to one settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Done as asked.
    Done,
    /// The record had already moved on (another replica placed or failed it); the intake
    /// entry was acknowledged. A caller that reserved capacity for it must release it.
    Superseded {
        /// The record as it is.
        state: ContainerState,
        /// The worker and attempt that hold it, if any.
        holder: Option<(WorkerId, AttemptId)>,
    },
}

/// What [`crate::Store::reclaim`] did with a dead worker's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimOutcome {
    /// It had not started: it is pending again and back in the intake.
    Requeued,
    /// It was running: it is lost.
    Lost,
    /// The record was not held by that worker and attempt any more; only the reservation
    /// was released.
    Released,
}

/// One broken invariant found by [`crate::Store::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The key or entity concerned (a worker id, a container id, a Redis key).
    pub subject: String,
    /// What is wrong, with the numbers.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)
    }
}

/// The demand that waits for room in one pool: what an autoscaler would have to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDemand {
    /// The pool (`None`: requests that no pool matches closely enough to grow).
    pub pool: Option<PoolName>,
    /// How many requests wait.
    pub requests: u64,
    /// Their CPU, memory and GPUs, summed.
    pub resources: Resources,
    /// Their GPUs by GPU type.
    pub gpus_by_type: BTreeMap<String, u64>,
}

/// Sums waiting requests into demand per pool, sorted by pool name.
pub fn aggregate_demand<'a>(
    waiting: impl IntoIterator<Item = (Option<&'a PoolName>, Option<&'a GpuType>, Resources)>,
) -> Vec<PoolDemand> {
    let mut by_pool: BTreeMap<Option<PoolName>, PoolDemand> = BTreeMap::new();
    for (pool, gpu_type, resources) in waiting {
        let demand = by_pool.entry(pool.cloned()).or_insert_with(|| PoolDemand {
            pool: pool.cloned(),
            ..PoolDemand::default()
        });
        demand.requests += 1;
        demand.resources = demand
            .resources
            .checked_add(resources)
            .unwrap_or(demand.resources);
        if resources.gpu_count > 0 {
            let name = gpu_type.map_or("any".to_owned(), |t| t.to_string());
            *demand.gpus_by_type.entry(name).or_insert(0) += u64::from(resources.gpu_count);
        }
    }
    by_pool.into_values().collect()
}
