//! The operations [`SimulatedRttStore`](super::SimulatedRttStore) counts, the round trips
//! each makes on Redis, and a snapshot of the counts.

use std::time::Duration;

/// One operation of the [`Store`](berth_store::Store) trait, as
/// [`SimulatedRttStore`](super::SimulatedRttStore) counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`berth_store::Fleet::register_worker`].
    RegisterWorker,
    /// [`berth_store::Fleet::heartbeat`].
    Heartbeat,
    /// [`berth_store::Fleet::set_worker_status`].
    SetWorkerStatus,
    /// [`berth_store::Fleet::worker`].
    Worker,
    /// [`berth_store::Fleet::workers`].
    Workers,
    /// [`berth_store::Bookings::commit`].
    Commit,
    /// [`berth_store::WorkerLocks::lock_worker`].
    LockWorker,
    /// [`berth_store::WorkerLocks::commit_locked`].
    CommitLocked,
    /// [`berth_store::WorkerLocks::unlock_worker`].
    UnlockWorker,
    /// [`berth_store::Bookings::release`].
    Release,
    /// [`berth_store::Bookings::assignments`].
    Assignments,
    /// [`berth_store::Bookings::ack_assignment`].
    AckAssignment,
    /// [`berth_store::Intake::submit`].
    Submit,
    /// [`berth_store::Records::container`].
    Container,
    /// [`berth_store::Records::transition`].
    Transition,
    /// [`berth_store::Intake::claim`].
    Claim,
    /// [`berth_store::Intake::settle`].
    Settle,
    /// [`berth_store::Intake::promote_due`].
    PromoteDue,
    /// [`berth_store::Bookings::owners`].
    Owners,
    /// [`berth_store::Intake::unmet_demand`].
    UnmetDemand,
    /// [`berth_store::Intake::claim_provisioning`].
    ClaimProvisioning,
    /// [`berth_store::Fleet::heartbeats`].
    Heartbeats,
    /// [`berth_store::Fleet::deregister_worker`].
    DeregisterWorker,
    /// [`berth_store::Records::containers`].
    Containers,
    /// [`berth_store::Records::append_logs`].
    AppendLogs,
    /// [`berth_store::Records::logs`].
    Logs,
    /// [`berth_store::Records::cancel`].
    Cancel,
    /// [`berth_store::Records::cancel_requested`].
    CancelRequested,
    /// [`berth_store::Bookings::reclaim`].
    Reclaim,
    /// [`berth_store::Bookings::owned`].
    Owned,
    /// [`berth_store::Bookings::preempt`].
    Preempt,
    /// [`berth_store::Bookings::preempted`].
    Preempted,
    /// [`berth_store::Intake::backlog_len`].
    BacklogLen,
    /// [`berth_store::Intake::intake_len`].
    IntakeLen,
    /// [`berth_store::Inspection::check`].
    Check,
    /// [`berth_store::Credentials::put_credential`].
    PutCredential,
    /// [`berth_store::Credentials::credential`].
    Credential,
    /// [`berth_store::Credentials::credentials`].
    Credentials,
    /// [`berth_store::Credentials::revoke_credentials`].
    RevokeCredentials,
    /// [`berth_store::Quotas::put_tenant`].
    PutTenant,
    /// [`berth_store::Quotas::remove_tenant`].
    RemoveTenant,
    /// [`berth_store::Quotas::tenants`].
    Tenants,
    /// [`berth_store::Quotas::usage`].
    Usage,
    /// [`berth_store::Quotas::hold`].
    Hold,
    /// [`berth_store::Provisioning::record_provisioned`].
    RecordProvisioned,
    /// [`berth_store::Provisioning::provisioned`].
    Provisioned,
    /// [`berth_store::Provisioning::forget_provisioned`].
    ForgetProvisioned,
}

/// The number of [`Op`]s.
pub(super) const OPS: usize = 47;

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; OPS] = [
        Op::RegisterWorker,
        Op::Heartbeat,
        Op::SetWorkerStatus,
        Op::Worker,
        Op::Workers,
        Op::Commit,
        Op::LockWorker,
        Op::CommitLocked,
        Op::UnlockWorker,
        Op::Release,
        Op::Assignments,
        Op::AckAssignment,
        Op::Submit,
        Op::Container,
        Op::Transition,
        Op::Claim,
        Op::Settle,
        Op::PromoteDue,
        Op::Owners,
        Op::UnmetDemand,
        Op::ClaimProvisioning,
        Op::Heartbeats,
        Op::DeregisterWorker,
        Op::Containers,
        Op::AppendLogs,
        Op::Logs,
        Op::Cancel,
        Op::CancelRequested,
        Op::Reclaim,
        Op::Owned,
        Op::Preempt,
        Op::Preempted,
        Op::BacklogLen,
        Op::IntakeLen,
        Op::Check,
        Op::PutCredential,
        Op::Credential,
        Op::Credentials,
        Op::RevokeCredentials,
        Op::PutTenant,
        Op::RemoveTenant,
        Op::Tenants,
        Op::Usage,
        Op::Hold,
        Op::RecordProvisioned,
        Op::Provisioned,
        Op::ForgetProvisioned,
    ];

    /// The trait method's name, e.g. `lock_worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::RegisterWorker => "register_worker",
            Op::Heartbeat => "heartbeat",
            Op::SetWorkerStatus => "set_worker_status",
            Op::Worker => "worker",
            Op::Workers => "workers",
            Op::Commit => "commit",
            Op::LockWorker => "lock_worker",
            Op::CommitLocked => "commit_locked",
            Op::UnlockWorker => "unlock_worker",
            Op::Release => "release",
            Op::Assignments => "assignments",
            Op::AckAssignment => "ack_assignment",
            Op::Submit => "submit",
            Op::Container => "container",
            Op::Transition => "transition",
            Op::Claim => "claim",
            Op::Settle => "settle",
            Op::PromoteDue => "promote_due",
            Op::Owners => "owners",
            Op::UnmetDemand => "unmet_demand",
            Op::ClaimProvisioning => "claim_provisioning",
            Op::Heartbeats => "heartbeats",
            Op::DeregisterWorker => "deregister_worker",
            Op::Containers => "containers",
            Op::AppendLogs => "append_logs",
            Op::Logs => "logs",
            Op::Cancel => "cancel",
            Op::CancelRequested => "cancel_requested",
            Op::Reclaim => "reclaim",
            Op::Owned => "owned",
            Op::Preempt => "preempt",
            Op::Preempted => "preempted",
            Op::BacklogLen => "backlog_len",
            Op::IntakeLen => "intake_len",
            Op::Check => "check",
            Op::PutCredential => "put_credential",
            Op::Credential => "credential",
            Op::Credentials => "credentials",
            Op::RevokeCredentials => "revoke_credentials",
            Op::PutTenant => "put_tenant",
            Op::RemoveTenant => "remove_tenant",
            Op::Tenants => "tenants",
            Op::Usage => "usage",
            Op::Hold => "hold",
            Op::RecordProvisioned => "record_provisioned",
            Op::Provisioned => "provisioned",
            Op::ForgetProvisioned => "forget_provisioned",
        }
    }

    /// The round trips one non-empty call makes on a standalone Redis, as simulated (see
    /// the module documentation): 2 for [`Op::Workers`], [`Op::Owners`], [`Op::Heartbeats`]
    /// and [`Op::Containers`], 1 for every other operation.
    pub fn round_trips(self) -> u64 {
        match self {
            Op::Workers | Op::Owners | Op::Heartbeats | Op::Containers => 2,
            _ => 1,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// A copy of a [`SimulatedRttStore`](super::SimulatedRttStore)'s counters at one moment; subtract two to measure an
/// interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelaySnapshot {
    pub(super) calls: [u64; OPS],
    pub(super) trips: [u64; OPS],
    /// Simulated round trips, all operations together.
    pub round_trips: u64,
    /// The delay asked for: simulated round trips times `rtt`, summed over calls.
    pub simulated: Duration,
    /// The delay actually slept, summed over calls (the timer wakes a little late).
    pub slept: Duration,
}

impl Default for DelaySnapshot {
    fn default() -> Self {
        DelaySnapshot {
            calls: [0; OPS],
            trips: [0; OPS],
            round_trips: 0,
            simulated: Duration::ZERO,
            slept: Duration::ZERO,
        }
    }
}

impl DelaySnapshot {
    /// Calls of `op`.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()]
    }

    /// Simulated round trips of `op` (calls times [`Op::round_trips`], empty calls
    /// excluded).
    pub fn round_trips_of(&self, op: Op) -> u64 {
        self.trips[op.index()]
    }

    /// The counts of `self` and `other` together (e.g. of several replicas' stores).
    pub fn plus(&self, other: &DelaySnapshot) -> DelaySnapshot {
        self.combine(other, u64::saturating_add, Duration::saturating_add)
    }

    /// The counts between `earlier` and `self`.
    pub fn since(&self, earlier: &DelaySnapshot) -> DelaySnapshot {
        self.combine(earlier, u64::saturating_sub, Duration::saturating_sub)
    }

    /// Every count of `self` with the same count of `other`, by `count` and `time`.
    fn combine(
        &self,
        other: &DelaySnapshot,
        count: fn(u64, u64) -> u64,
        time: fn(Duration, Duration) -> Duration,
    ) -> DelaySnapshot {
        let mut out = DelaySnapshot {
            round_trips: count(self.round_trips, other.round_trips),
            simulated: time(self.simulated, other.simulated),
            slept: time(self.slept, other.slept),
            ..DelaySnapshot::default()
        };
        for i in 0..OPS {
            out.calls[i] = count(self.calls[i], other.calls[i]);
            out.trips[i] = count(self.trips[i], other.trips[i]);
        }
        out
    }
}
