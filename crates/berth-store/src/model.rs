//! The values that cross the store boundary: commit groups and their outcomes, intake
//! claims and their settlements. The shared model (records, states, attempts, assignments,
//! registrations, demand, violations) lives in `berth-core`.

use berth_core::{
    AttemptId, ContainerId, ContainerRequest, ContainerState, DeviceShare, GpuType, Payload,
    PoolName, Resources, Worker, WorkerId,
};
use serde::{Deserialize, Serialize};

/// One container to reserve on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The container.
    pub container: ContainerId,
    /// The placement attempt this reservation belongs to.
    pub attempt: AttemptId,
    /// What it reserves.
    pub resources: Resources,
    /// The GPU device shares it reserves: `resources.gpu_count` whole devices, or one share
    /// of a fraction; empty without GPUs. The commit checks them against the worker's
    /// devices.
    #[serde(default)]
    pub devices: Vec<DeviceShare>,
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
    /// Preemption only: a container to preempt is no longer owned under its attempt (it
    /// ended, or was given back).
    VictimGone,
}

/// A preemption: stop `victims` on `worker` and book `reservation` there in their place, in
/// one atomic step (see [`crate::Bookings::preempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreemptionCommit {
    /// The worker.
    pub worker: WorkerId,
    /// The containers to stop, each with the attempt the worker owns it under.
    pub victims: Vec<(ContainerId, AttemptId)>,
    /// The preemptor's reservation.
    pub reservation: Reservation,
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
        /// The worker's state after the release (boxed: a worker is large beside `NotOwned`).
        worker: Box<Worker>,
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
    /// The intake entry; settle it with [`crate::Intake::settle`].
    pub entry: String,
    /// The request.
    pub request: ContainerRequest,
    /// A fresh attempt id for this claim.
    pub attempt: AttemptId,
    /// True when the entry was claimed before and not settled in time (its claimer is
    /// presumed dead): a reservation made by that claimer may exist, see
    /// [`crate::Bookings::owners`].
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
        /// What it holds of its tenant's quota (charged with the settlement unless a hold
        /// charged it already; see [`crate::Quotas`]).
        charge: berth_core::Charge,
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

/// A container's kept output lines from a position on. A line's position counts every line
/// appended to the container before it (kept or not), so positions never move: a reader
/// that asks from the `next` it was given gets each kept line once, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSlice {
    /// The position of `lines[0]`: the position asked from, or later when the lines in
    /// between are no longer kept (only the last lines are); the end when asked from past
    /// it.
    pub first: u64,
    /// The kept lines from `first` on.
    pub lines: Vec<String>,
}

impl LogSlice {
    /// The position after the last line: how many lines were ever appended, and where to
    /// ask from next.
    pub fn next(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    /// How many lines from position `after` on were dropped before they could be read.
    pub fn dropped(&self, after: u64) -> u64 {
        self.first.saturating_sub(after)
    }
}
