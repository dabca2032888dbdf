//! The one state-store contract, implemented by [`crate::MemoryStore`] and
//! [`crate::RedisStore`] and checked by one contract test suite.
//!
//! Every operation states what it guarantees. "Atomic" means that no other client of the
//! same store can observe a partial effect, and that a failure leaves nothing written.

use crate::model::*;
use crate::{Result, StoreStats};
use async_trait::async_trait;
use berth_core::invariants::CheckOptions;
use berth_core::{
    Assignment, AttemptId, ContainerRecord, ContainerState, PoolDemand, ReclaimOutcome, Transition,
    Violation, WorkerRegistration,
};
use berth_core::{
    ContainerId, ContainerRequest, Credential, PoolName, TokenId, Worker, WorkerId, WorkerStatus,
};
use std::time::Duration;

/// Timing settings shared by both stores.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Prefix of every Redis key (`berth` by default). Ignored by the memory store.
    pub prefix: String,
    /// A claimed intake entry not settled for this long is given to another claimer.
    pub claim_visibility: Duration,
    /// An assignment not acknowledged for this long is delivered again.
    pub redelivery: Duration,
    /// Redis only: after each batch of commits, wait (`WAIT`) until this many replicas of
    /// each written primary have the commits, at most `replica_timeout`, before the batch
    /// is settled. 0 (the default) does not wait. Replication is asynchronous, so a failover
    /// can drop a commit the primary acknowledged; waiting for a replica closes that window
    /// for the commit that matters most (a settlement naming a reservation that a failover
    /// dropped would leave a scheduled record that no worker owns). A batch whose wait
    /// times out is still settled (the commit did happen), counted in
    /// `berth_store_unreplicated_commits_total` and logged.
    pub replica_acks: u32,
    /// How long one `WAIT` may take (see `replica_acks`).
    pub replica_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            prefix: "berth".to_owned(),
            claim_visibility: Duration::from_secs(30),
            redelivery: Duration::from_secs(30),
            replica_acks: 0,
            replica_timeout: Duration::from_millis(500),
        }
    }
}

/// One settlement of a claimed intake entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleItem {
    /// The claim's intake entry.
    pub entry: String,
    /// The claimed container.
    pub container: ContainerId,
    /// How it leaves the intake.
    pub settlement: Settlement,
}

/// The scheduler's shared state: every role a scheduler replica, the HTTP service and the
/// invariant check need, implemented together by [`crate::MemoryStore`] and
/// [`crate::RedisStore`]. Code that needs one role takes that trait instead.
pub trait Store:
    Fleet + Bookings + Intake + Records + Inspection + Credentials + crate::Quotas + crate::Provisioning
{
    /// The lock-based path, where the store has one (both stores do); only the baseline
    /// strategies ask for it.
    fn worker_locks(&self) -> Option<&dyn WorkerLocks>;
}

/// The fleet: workers registering, heartbeating, changing status and leaving.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// Registers a worker, or updates a registered one (idempotent upsert). Capacity that is
    /// already reserved is kept: free becomes `total - reserved`. Atomic; bumps the version
    /// and the epoch (a new worker starts at epoch 1): the returned worker's epoch is the
    /// lease its agent presents from now on, and calls under an older one are refused.
    /// Fails with [`crate::StoreError::BelowReserved`] if `total` is below what is reserved.
    async fn register_worker(&self, registration: &WorkerRegistration) -> Result<Worker>;

    /// Records that the worker is alive at `now_ms`. Fenced: refused with
    /// [`crate::StoreError::StaleEpoch`] (nothing written) unless `epoch` is the worker's
    /// current one, so a worker declared lost cannot look alive again without registering.
    /// `None` skips the fence (the scheduler's or an operator's own call).
    async fn heartbeat(&self, worker: &WorkerId, epoch: Option<u64>, now_ms: u64) -> Result<()>;

    /// [`Fleet::heartbeat`], and in the same fenced step replaces the images the worker
    /// reports holding ([`berth_core::Worker::images`]; placement prefers a worker holding a
    /// request's image). Refused with [`crate::StoreError::InvalidArgument`] (nothing written) when
    /// the list breaks [`crate::check_images`]. The version is not bumped.
    async fn heartbeat_with_images(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        now_ms: u64,
        images: &[String],
    ) -> Result<()>;

    /// Sets a worker's status (e.g. draining or disabled). Atomic; bumps the version.
    /// Moving a worker to [`WorkerStatus::Lost`] also bumps its epoch, in the same step: every
    /// later call of the presumed-dead agent is refused until it registers again.
    async fn set_worker_status(&self, worker: &WorkerId, status: WorkerStatus) -> Result<Worker>;

    /// One worker, or `None` if it is not registered. One round trip.
    async fn worker(&self, worker: &WorkerId) -> Result<Option<Worker>>;

    /// Every registered worker that reads back. A worker whose record does not (a corrupt
    /// field, a key of the wrong type, a bad id in the index) is quarantined: left out,
    /// logged, counted in the `berth_workers_quarantined` gauge and listed by
    /// [`Fleet::quarantined`], so that one bad record never stops the rest of the fleet
    /// from being scheduled. On Redis: one pipelined round trip after reading the index.
    async fn workers(&self) -> Result<Vec<Worker>>;

    /// The quarantined workers (see [`Fleet::workers`]), each as the key or index entry
    /// that does not read and why. Registering the worker again rewrites its record.
    async fn quarantined(&self) -> Result<Vec<crate::Violation>>;

    /// Every registered worker with its last heartbeat (ms since the epoch).
    async fn heartbeats(&self) -> Result<Vec<(WorkerId, u64)>>;

    /// [`Fleet::workers`] and [`Fleet::quarantined`] from one read of the fleet (on Redis:
    /// the index, then one pipelined round trip). The default reads the fleet twice.
    async fn fleet(&self) -> Result<(Vec<Worker>, Vec<crate::Violation>)> {
        Ok((self.workers().await?, self.quarantined().await?))
    }

    /// One worker's last heartbeat (ms since the epoch), or `None` if it is not registered
    /// (or its heartbeat does not read). One round trip on Redis. The default reads every
    /// heartbeat.
    async fn heartbeat_of(&self, worker: &WorkerId) -> Result<Option<u64>> {
        let beats = self.heartbeats().await?;
        Ok(beats
            .into_iter()
            .find(|(w, _)| w == worker)
            .map(|(_, at)| at))
    }

    /// Removes a worker that owns nothing (a drained worker leaving). Fails with
    /// [`crate::StoreError::StillOwns`] while it owns containers. Removing an unknown worker
    /// does nothing.
    async fn deregister_worker(&self, worker: &WorkerId) -> Result<()>;
}

/// Bookings on workers: the lock-free commit, release, the assignment queues that deliver
/// bookings to their workers, ownership, and giving back a dead worker's containers.
#[async_trait]
pub trait Bookings: Send + Sync {
    /// Commits each group on its worker, atomically and independently of the other groups:
    /// either every reservation of a group is held (capacity subtracted, version bumped,
    /// each container recorded as owned by the worker under its attempt and appended to the
    /// worker's assignment queue) or nothing is. Status and capacity are checked inside the
    /// atomic step. Idempotent per container and attempt: a container the worker already
    /// owns under the same attempt is not reserved again (it is reported in
    /// `already_owned`); a group whose containers are all owned already is `Committed`
    /// without any write, whatever the worker's status. A container owned under another
    /// attempt rejects the group (`OwnedByAnotherAttempt`).
    /// Outcomes come back in the order of `groups`. On Redis: one script per group, all in
    /// one pipelined round trip, no lock. If the call fails (a connection error, corrupt
    /// data in one group), groups that did commit stay committed: a retry reports them as
    /// `already_owned`.
    async fn commit(&self, groups: &[CommitGroup]) -> Result<Vec<CommitOutcome>>;

    /// Gives a container's capacity back to its worker and drops its undelivered or
    /// unacknowledged assignment, in one atomic step. Idempotent: releasing twice, or
    /// releasing a container the worker does not own (or owns under another attempt, when
    /// `attempt` is given), changes nothing. With `epoch` (an agent's call) it is fenced:
    /// refused with [`crate::StoreError::StaleEpoch`], nothing written, unless the worker is
    /// at that epoch. Fails with [`crate::StoreError::UnknownWorker`] for an unregistered
    /// worker (as do the lock and assignment operations).
    async fn release(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
        epoch: Option<u64>,
    ) -> Result<ReleaseOutcome>;

    /// The next assignments of a worker, in commit order, at most `max`: first those
    /// delivered before and not acknowledged within the redelivery timeout, then new ones.
    /// Waits up to `wait` for one to arrive instead of polling. With `epoch`, fenced like
    /// [`Fleet::heartbeat`]: nothing is delivered to an agent of an older epoch. A worker
    /// removed (or fenced off) while the call waits gets
    /// [`crate::StoreError::UnknownWorker`] (or `StaleEpoch`) by the end of the wait, not an
    /// empty answer or a transport error.
    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>>;

    /// Acknowledges a delivery: it will not be delivered again. With `epoch`, fenced like
    /// [`Fleet::heartbeat`].
    async fn ack_assignment(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        delivery: &str,
    ) -> Result<()>;

    /// Every worker that owns `container`, with the attempt it owns it under. Used to adopt
    /// a reservation made by a claimer that died between its commit and its settlement.
    /// Scans every worker (on Redis: the index, then one pipelined read per worker), so it is
    /// for recovery, not for the hot path.
    async fn owners(&self, container: &ContainerId) -> Result<Vec<(WorkerId, AttemptId)>>;

    /// Gives back one container of a dead worker, once: if the record is held by `worker`
    /// and `attempt`, a scheduled or pulling container goes back to pending and the intake
    /// (no retry counted: it never started), and so does
    /// a running one while its request allows more retries
    /// ([`berth_core::lifecycle::end_or_retry`]); otherwise a running one becomes lost
    /// (reason `reason`). Each gives its tenant's charge back in the same atomic step. On a
    /// still-pending record the attempt is revoked (a settlement of it arriving later is
    /// superseded). Then the worker's reservation is released. Repeating it changes nothing
    /// more (the capacity is reclaimed exactly once).
    async fn reclaim(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome>;

    /// The containers a worker owns, with their attempts and resources.
    async fn owned(&self, worker: &WorkerId) -> Result<Vec<berth_core::invariants::OwnedEntry>>;

    /// Stops the preemption's victims to book its preemptor in their place, in one atomic
    /// step on the worker: only when the worker accepts work, every victim is owned under
    /// its attempt and the preemptor fits in what is free plus what the victims hold (its
    /// device shares included), the victims' reservations are released (their undelivered
    /// assignments dropped), the preemptor's booked, and its assignment queued naming the
    /// victims ([`berth_core::Assignment::preempts`]), so the worker stops them before it
    /// starts it. Otherwise nothing changes and the outcome says why
    /// ([`Rejection::VictimGone`] among the commit's reasons). The freed capacity is never
    /// free in between. Repeating it after success changes nothing. The victims' records are
    /// the caller's next step ([`Bookings::preempted`]). A preemption without victims is
    /// refused ([`crate::StoreError::InvalidArgument`]): it would be a plain commit.
    async fn preempt(&self, preemption: &PreemptionCommit) -> Result<CommitOutcome>;

    /// Ends the record of a container preempted by [`Bookings::preempt`], once, as
    /// [`Bookings::reclaim`] does for a dead worker's, but a running one ends
    /// [`berth_core::ContainerState::Preempted`] (or is requeued while its request allows
    /// more retries: [`berth_core::lifecycle::preempted`]), with the reason `reason`, and its
    /// charge is given back. Then the worker's reservation is released if it still has one.
    async fn preempted(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome>;
}

/// The intake: accepting requests, claiming them for placement, settling the claims, the
/// backlog of deferred requests, unmet demand and the provisioning intent.
#[async_trait]
pub trait Intake: Send + Sync {
    /// Accepts requests: each new one is recorded as pending and queued for placement in
    /// one atomic step, before this returns. A request whose id is known already changes
    /// nothing and is reported as a duplicate. Every request is validated first
    /// ([`berth_core::ContainerRequest::validate`]); one invalid request fails the whole call
    /// with [`crate::StoreError::InvalidArgument`] and nothing is written.
    async fn submit(&self, requests: &[ContainerRequest]) -> Result<Vec<SubmitOutcome>>;

    /// Claims up to `max` queued requests for `consumer`, waiting up to `wait` for one.
    /// Entries claimed by another consumer and not settled within the visibility timeout
    /// are claimed again (the other replica is presumed dead); those whose record is no
    /// longer pending are acknowledged and skipped. Each claim gets a fresh attempt id.
    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Claim>>;

    /// Settles claims, each atomically: the record moves (to scheduled or failed, or stays
    /// pending and goes to the backlog) and the intake entry is acknowledged. A record that
    /// has moved on already is reported as superseded; so is a placement under an attempt
    /// the reaper revoked, and its still-pending record is queued in the intake again (a missing record as superseded by
    /// `Failed` with no holder). A malformed entry id fails the whole call with
    /// [`crate::StoreError::InvalidArgument`] before anything is written.
    async fn settle(&self, items: &[SettleItem]) -> Result<Vec<SettleOutcome>>;

    /// Moves up to `max` backlog entries due at `now_ms` back to the intake, earliest due
    /// first (the planner orders each batch by priority). Returns how many moved. Atomic.
    async fn promote_due(&self, now_ms: u64, max: usize) -> Result<usize>;

    /// The unmet demand: the requests waiting in the backlog for room, summed per pool that
    /// would have to grow (as given when they were deferred).
    async fn unmet_demand(&self) -> Result<Vec<PoolDemand>>;

    /// Records the intent to provision workers for `pool` unless an intent is recorded
    /// already and not older than `ttl`: `true` if this caller may provision. Two replicas
    /// never both get `true` for the same pool within `ttl`. Atomic.
    async fn claim_provisioning(
        &self,
        pool: &PoolName,
        intent: &str,
        ttl: Duration,
    ) -> Result<bool>;

    /// The number of requests waiting in the backlog.
    async fn backlog_len(&self) -> Result<u64>;

    /// The number of requests in the intake: queued for placement, claimed or not, and not
    /// settled yet (on Redis the intake stream's length; settled entries are deleted).
    async fn intake_len(&self) -> Result<u64>;
}

/// Container records: reading and moving them, listing, logs and cancellation.
#[async_trait]
pub trait Records: Send + Sync {
    /// A container's record, or `None` if unknown.
    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>>;

    /// Moves a record forward (see [`Transition`]); refused with
    /// [`crate::StoreError::InvalidTransition`] otherwise. Atomic.
    async fn transition(
        &self,
        id: &ContainerId,
        transition: &Transition,
    ) -> Result<ContainerRecord>;

    /// Up to `limit` container records, only those in `state` if given, sorted by
    /// submission time, newest first. Reads at most a bounded number of records on Redis
    /// (the listing is for people, not for bookkeeping).
    async fn containers(
        &self,
        state: Option<ContainerState>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>>;

    /// Appends output lines to a container's log, keeping the last `keep` lines.
    async fn append_logs(
        &self,
        container: &ContainerId,
        lines: &[String],
        keep: usize,
    ) -> Result<()>;

    /// The kept output lines of a container at positions `after` and later (see
    /// [`crate::LogSlice`]; `after` = 0 reads every kept line). Nothing (at position 0) if
    /// it has none. Atomic: the lines and their positions are read together.
    async fn logs(&self, container: &ContainerId, after: u64) -> Result<LogSlice>;

    /// Asks for a container to stop. A pending one fails at once with reason `cancelled`; a
    /// scheduled, pulling or running one is flagged (`cancel_requested`), and its worker stops it and
    /// reports; an ended one is left as it is. Returns the record. Idempotent.
    async fn cancel(&self, container: &ContainerId) -> Result<ContainerRecord>;

    /// Which of `containers` have a cancellation asked for (a worker's question about the
    /// containers it runs).
    async fn cancel_requested(&self, containers: &[ContainerId]) -> Result<Vec<ContainerId>>;
}

/// The invariant check and the client's counters.
#[async_trait]
pub trait Inspection: Send + Sync {
    /// Checks every invariant over the whole store at `options.now_ms` and returns what is
    /// broken:
    /// - for every worker, free + the resources of the containers it owns == total, and
    ///   free <= total;
    /// - every container is owned by at most one worker;
    /// - every scheduled, pulling or running container is owned by its recorded worker under its
    ///   recorded attempt, and that worker is alive (registered, and its last heartbeat no
    ///   older than `options.dead_after_ms`; its status does not matter);
    /// - no terminal container is still owned;
    /// - every entry of a worker's assignment queue is for a container the worker owns
    ///   under the same attempt;
    /// - every pending container is in the intake (claimed or not) or in the backlog.
    ///
    /// Unreadable records and queue entries are violations too, naming their key. On Redis
    /// the reads are not one snapshot: what looks broken because it moved during the
    /// check (a commit, a release, a settlement, a promotion) is read again once before
    /// it is reported.
    async fn check(&self, options: CheckOptions) -> Result<Vec<Violation>>;

    /// This client's counters.
    fn stats(&self) -> &StoreStats;
}

/// The stored side of API tokens: one [`Credential`] per token, found by its id. The
/// secret itself is never stored, only its digest (see [`berth_core::credential`]).
#[async_trait]
pub trait Credentials: Send + Sync {
    /// Stores a credential, replacing one with the same id (so bootstrapping a known token
    /// again is idempotent). Atomic.
    async fn put_credential(&self, credential: &Credential) -> Result<()>;

    /// The credential with this id, or `None`. A stored entry that does not read back is
    /// logged and answered as `None`: its token is refused, nothing else is affected.
    async fn credential(&self, id: &TokenId) -> Result<Option<Credential>>;

    /// Every stored credential that reads back, by id; corrupt entries are logged and left
    /// out.
    async fn credentials(&self) -> Result<Vec<Credential>>;

    /// Removes the credentials with these ids; returns how many there were. Atomic: one
    /// step removes them all. A token whose credential is gone is refused.
    async fn revoke_credentials(&self, ids: &[TokenId]) -> Result<usize>;
}

/// The lock-based commit path, used only by the two baseline strategies (the seed's
/// `serial` and `batch-lock`): take a worker's lock, commit under it, release it.
#[async_trait]
pub trait WorkerLocks: Send + Sync {
    /// Tries once to take the worker's lock for `ttl`: `None` if someone else holds it
    /// (counted as a collision). The lock expires by itself.
    async fn lock_worker(&self, worker: &WorkerId, ttl: Duration) -> Result<Option<LockToken>>;

    /// Commits one group under a lock: like [`Bookings::commit`], and additionally rejected
    /// with `LockLost` unless the lock is still held with this token, and with
    /// `VersionConflict` unless the worker's version is `expected_version`.
    async fn commit_locked(
        &self,
        lock: &LockToken,
        expected_version: u64,
        group: &CommitGroup,
    ) -> Result<CommitOutcome>;

    /// Releases the lock if it is still held with this token; `false` if it was not.
    async fn unlock_worker(&self, lock: &LockToken) -> Result<bool>;
}
