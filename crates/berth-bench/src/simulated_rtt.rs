//! [`SimulatedRttStore`]: a [`Store`] wrapper that adds a simulated network round-trip time to
//! every store call, and counts calls and round trips per operation. The benchmark uses it
//! to compare the commit strategies as they would behave against a remote Redis (the
//! seed's Redis operations took 5-10 ms each; on loopback a round trip takes tens of
//! microseconds, which flatters strategies that make many round trips).
//!
//! ## What is delayed
//! Each call is delayed by `rtt` times the number of round trips it makes on a standalone
//! Redis ([`Op::round_trips`]): half of one `rtt` before the call goes to the wrapped store
//! (the request travelling), the rest after it returns (the reply travelling, and any
//! further round trips of the call). So a lock taken by one caller is held, as seen from
//! the others, from the middle of its round trip on, as on a real network. The table:
//!
//! | operation | round trips | why |
//! |---|---|---|
//! | `workers` | 2 | the index (SMEMBERS), then every worker hash in one pipeline |
//! | `owners` | 2 | the index, then one read per worker's ownership hash in one pipeline |
//! | `heartbeats`, `containers` | 2 | an index, then the records in one pipeline (modelled) |
//! | `register_worker` | 1 | index and registration script pipelined together |
//! | `commit` | 1 | one pipeline of one script per group (0 when there is no group) |
//! | `record_provisioned`, `forget_provisioned` | 1 | one command (0 when no worker is given) |
//! | `submit`, `settle` | 1 | one script for the whole batch (0 when empty) |
//! | `claim` | 1 | one script; a blocking wait is not delayed beyond this one `rtt` (0 when `max` is 0) |
//! | `assignments` | 1 | one script; a blocking wait is not delayed beyond this one `rtt` |
//! | `check` | 1 | a diagnostic; its real round trips (several) are not modelled |
//! | every other call | 1 | one command or one script |
//! | `stats` | 0 | local counters |
//!
//! The wrapper counts every call and every simulated round trip whatever `rtt` is (with a
//! zero `rtt` it only counts), and sums the delay it asked for and the delay it actually
//! slept, so a report can say how much of a run was simulated network. Concurrent calls
//! are delayed concurrently; the sums add them up, so they can exceed the wall-clock time.
//!
//! ## Layout
//! - `simulated_rtt/op.rs`: [`Op`], the operations and their round trips, and
//!   [`DelaySnapshot`].
//! - `simulated_rtt/timer.rs`: the timer thread.
//! - this file: [`SimulatedRttStore`] and its [`Store`] implementation.
//!
//! ## Precision
//! tokio's timer has a resolution of one millisecond, too coarse for sub-millisecond delays.
//! A non-zero `rtt` starts one timer thread per wrapper that wakes each delayed call at its
//! deadline (a condition variable with a timeout, the thread's timer slack narrowed to 1 ns
//! on Linux, so it typically wakes tens of microseconds late, plus the time the woken task
//! waits for a runtime thread); the thread ends when the wrapper is dropped. The actual sleep is measured
//! ([`DelaySnapshot::slept`]), so the overshoot can be reported.

use async_trait::async_trait;
use berth_core::invariants::OwnedEntry;
use berth_core::{
    Assignment, AttemptId, CheckOptions, ContainerId, ContainerRecord, ContainerRequest,
    ContainerState, PoolDemand, PoolName, ReclaimOutcome, Transition, Violation, Worker, WorkerId,
    WorkerRegistration, WorkerStatus,
};
use berth_core::{Credential, Tenant, TenantName, TokenId, Usage};
use berth_store::model::*;
use berth_store::prelude::*;
use berth_store::{Hold, HoldOutcome, PendingWorker, Result, SettleItem, StoreError, StoreStats};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use timer::Timer;

mod op;
mod timer;

use op::OPS;
pub use op::{DelaySnapshot, Op};

/// Live counters of a [`SimulatedRttStore`].
#[derive(Debug)]
struct Counters {
    calls: [AtomicU64; OPS],
    trips: [AtomicU64; OPS],
    round_trips: AtomicU64,
    simulated_ns: AtomicU64,
    slept_ns: AtomicU64,
}

impl Default for Counters {
    // By hand: std derives `Default` for arrays of at most 32 elements.
    fn default() -> Counters {
        Counters {
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
            trips: std::array::from_fn(|_| AtomicU64::new(0)),
            round_trips: AtomicU64::new(0),
            simulated_ns: AtomicU64::new(0),
            slept_ns: AtomicU64::new(0),
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A [`Store`] that delegates every call to `inner` and delays it by a simulated network
/// round-trip time per round trip the call makes on Redis (see the module documentation
/// for the table and what is counted).
pub struct SimulatedRttStore<S: ?Sized> {
    inner: Arc<S>,
    rtt: Duration,
    counters: Counters,
    timer: Option<Timer>,
}

impl<S: ?Sized> std::fmt::Debug for SimulatedRttStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedRttStore")
            .field("rtt", &self.rtt)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<S: Store + ?Sized> SimulatedRttStore<S> {
    /// Wraps `inner`, adding `rtt` per round trip (a zero `rtt` only counts).
    pub fn new(inner: Arc<S>, rtt: Duration) -> SimulatedRttStore<S> {
        SimulatedRttStore {
            inner,
            rtt,
            counters: Counters::default(),
            timer: (!rtt.is_zero()).then(Timer::start),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// The simulated round-trip time.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The counters now.
    pub fn delays(&self) -> DelaySnapshot {
        let c = &self.counters;
        let mut out = DelaySnapshot {
            round_trips: c.round_trips.load(Ordering::Relaxed),
            simulated: Duration::from_nanos(c.simulated_ns.load(Ordering::Relaxed)),
            slept: Duration::from_nanos(c.slept_ns.load(Ordering::Relaxed)),
            ..DelaySnapshot::default()
        };
        for i in 0..OPS {
            out.calls[i] = c.calls[i].load(Ordering::Relaxed);
            out.trips[i] = c.trips[i].load(Ordering::Relaxed);
        }
        out
    }

    /// Runs `call` as operation `op` making `trips` round trips: counts it, and delays it
    /// by half an `rtt` before and the rest after.
    async fn around<T>(&self, op: Op, trips: u64, call: impl Future<Output = T>) -> T {
        let c = &self.counters;
        c.calls[op.index()].fetch_add(1, Ordering::Relaxed);
        c.trips[op.index()].fetch_add(trips, Ordering::Relaxed);
        c.round_trips.fetch_add(trips, Ordering::Relaxed);
        let total = self
            .rtt
            .saturating_mul(u32::try_from(trips).unwrap_or(u32::MAX));
        let Some(timer) = self.timer.as_ref().filter(|_| !total.is_zero()) else {
            return call.await;
        };
        c.simulated_ns.fetch_add(nanos(total), Ordering::Relaxed);
        let before = self.rtt / 2;
        self.sleep(timer, before).await;
        let out = call.await;
        self.sleep(timer, total.saturating_sub(before)).await;
        out
    }

    async fn sleep(&self, timer: &Timer, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        let started = Instant::now();
        timer.sleep_until(started + duration).await;
        self.counters
            .slept_ns
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
    }

    /// One round trip unless the call is empty.
    fn trips(op: Op, empty: bool) -> u64 {
        if empty { 0 } else { op.round_trips() }
    }
}

#[async_trait]
impl<S: Store + ?Sized> Fleet for SimulatedRttStore<S> {
    async fn register_worker(&self, registration: &WorkerRegistration) -> Result<Worker> {
        let op = Op::RegisterWorker;
        self.around(
            op,
            op.round_trips(),
            self.inner.register_worker(registration),
        )
        .await
    }

    async fn heartbeat(&self, worker: &WorkerId, epoch: Option<u64>, now_ms: u64) -> Result<()> {
        let op = Op::Heartbeat;
        let call = self.inner.heartbeat(worker, epoch, now_ms);
        self.around(op, op.round_trips(), call).await
    }

    async fn heartbeat_with_images(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        now_ms: u64,
        images: &[String],
    ) -> Result<()> {
        let op = Op::Heartbeat;
        let call = self
            .inner
            .heartbeat_with_images(worker, epoch, now_ms, images);
        self.around(op, op.round_trips(), call).await
    }

    async fn set_worker_status(&self, worker: &WorkerId, status: WorkerStatus) -> Result<Worker> {
        let op = Op::SetWorkerStatus;
        self.around(
            op,
            op.round_trips(),
            self.inner.set_worker_status(worker, status),
        )
        .await
    }

    async fn worker(&self, worker: &WorkerId) -> Result<Option<Worker>> {
        let op = Op::Worker;
        self.around(op, op.round_trips(), self.inner.worker(worker))
            .await
    }

    async fn workers(&self) -> Result<Vec<Worker>> {
        let op = Op::Workers;
        self.around(op, op.round_trips(), self.inner.workers())
            .await
    }

    async fn quarantined(&self) -> Result<Vec<berth_store::Violation>> {
        let op = Op::Workers;
        self.around(op, op.round_trips(), self.inner.quarantined())
            .await
    }

    async fn heartbeats(&self) -> Result<Vec<(WorkerId, u64)>> {
        let op = Op::Heartbeats;
        self.around(op, op.round_trips(), self.inner.heartbeats())
            .await
    }

    async fn deregister_worker(&self, worker: &WorkerId) -> Result<()> {
        let op = Op::DeregisterWorker;
        self.around(op, op.round_trips(), self.inner.deregister_worker(worker))
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Bookings for SimulatedRttStore<S> {
    async fn commit(&self, groups: &[CommitGroup]) -> Result<Vec<CommitOutcome>> {
        let op = Op::Commit;
        self.around(
            op,
            Self::trips(op, groups.is_empty()),
            self.inner.commit(groups),
        )
        .await
    }

    async fn release(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
        epoch: Option<u64>,
    ) -> Result<ReleaseOutcome> {
        let op = Op::Release;
        let call = self.inner.release(worker, container, attempt, epoch);
        self.around(op, op.round_trips(), call).await
    }

    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>> {
        let op = Op::Assignments;
        let call = self.inner.assignments(worker, epoch, max, wait);
        self.around(op, op.round_trips(), call).await
    }

    async fn ack_assignment(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        delivery: &str,
    ) -> Result<()> {
        let op = Op::AckAssignment;
        let call = self.inner.ack_assignment(worker, epoch, delivery);
        self.around(op, op.round_trips(), call).await
    }

    async fn owners(&self, container: &ContainerId) -> Result<Vec<(WorkerId, AttemptId)>> {
        let op = Op::Owners;
        self.around(op, op.round_trips(), self.inner.owners(container))
            .await
    }

    async fn reclaim(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        let op = Op::Reclaim;
        let call = self.inner.reclaim(worker, container, attempt, reason);
        self.around(op, op.round_trips(), call).await
    }

    async fn preempt(&self, preemption: &PreemptionCommit) -> Result<CommitOutcome> {
        let op = Op::Preempt;
        self.around(op, op.round_trips(), self.inner.preempt(preemption))
            .await
    }

    async fn preempted(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        let op = Op::Preempted;
        let call = self.inner.preempted(worker, container, attempt, reason);
        self.around(op, op.round_trips(), call).await
    }

    async fn owned(&self, worker: &WorkerId) -> Result<Vec<OwnedEntry>> {
        let op = Op::Owned;
        self.around(op, op.round_trips(), self.inner.owned(worker))
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Intake for SimulatedRttStore<S> {
    async fn submit(&self, requests: &[ContainerRequest]) -> Result<Vec<SubmitOutcome>> {
        let op = Op::Submit;
        let trips = Self::trips(op, requests.is_empty());
        self.around(op, trips, self.inner.submit(requests)).await
    }

    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Claim>> {
        let op = Op::Claim;
        let trips = Self::trips(op, max == 0);
        self.around(op, trips, self.inner.claim(consumer, max, wait))
            .await
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<Vec<SettleOutcome>> {
        let op = Op::Settle;
        let trips = Self::trips(op, items.is_empty());
        self.around(op, trips, self.inner.settle(items)).await
    }

    async fn promote_due(&self, now_ms: u64, max: usize) -> Result<usize> {
        let op = Op::PromoteDue;
        self.around(op, op.round_trips(), self.inner.promote_due(now_ms, max))
            .await
    }

    async fn unmet_demand(&self) -> Result<Vec<PoolDemand>> {
        let op = Op::UnmetDemand;
        self.around(op, op.round_trips(), self.inner.unmet_demand())
            .await
    }

    async fn claim_provisioning(
        &self,
        pool: &PoolName,
        intent: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let op = Op::ClaimProvisioning;
        let call = self.inner.claim_provisioning(pool, intent, ttl);
        self.around(op, op.round_trips(), call).await
    }

    async fn backlog_len(&self) -> Result<u64> {
        let op = Op::BacklogLen;
        self.around(op, op.round_trips(), self.inner.backlog_len())
            .await
    }

    async fn intake_len(&self) -> Result<u64> {
        let op = Op::IntakeLen;
        self.around(op, op.round_trips(), self.inner.intake_len())
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Records for SimulatedRttStore<S> {
    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>> {
        let op = Op::Container;
        self.around(op, op.round_trips(), self.inner.container(id))
            .await
    }

    async fn transition(
        &self,
        id: &ContainerId,
        transition: &Transition,
    ) -> Result<ContainerRecord> {
        let op = Op::Transition;
        self.around(op, op.round_trips(), self.inner.transition(id, transition))
            .await
    }

    async fn containers(
        &self,
        state: Option<ContainerState>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>> {
        let op = Op::Containers;
        self.around(op, op.round_trips(), self.inner.containers(state, limit))
            .await
    }

    async fn append_logs(
        &self,
        container: &ContainerId,
        lines: &[String],
        keep: usize,
    ) -> Result<()> {
        let op = Op::AppendLogs;
        let call = self.inner.append_logs(container, lines, keep);
        self.around(op, op.round_trips(), call).await
    }

    async fn logs(&self, container: &ContainerId, after: u64) -> Result<LogSlice> {
        let op = Op::Logs;
        self.around(op, op.round_trips(), self.inner.logs(container, after))
            .await
    }

    async fn cancel(&self, container: &ContainerId) -> Result<ContainerRecord> {
        let op = Op::Cancel;
        self.around(op, op.round_trips(), self.inner.cancel(container))
            .await
    }

    async fn cancel_requested(&self, containers: &[ContainerId]) -> Result<Vec<ContainerId>> {
        let op = Op::CancelRequested;
        let call = self.inner.cancel_requested(containers);
        self.around(op, op.round_trips(), call).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Inspection for SimulatedRttStore<S> {
    async fn check(&self, options: CheckOptions) -> Result<Vec<Violation>> {
        let op = Op::Check;
        self.around(op, op.round_trips(), self.inner.check(options))
            .await
    }

    fn stats(&self) -> &StoreStats {
        self.inner.stats()
    }
}

#[async_trait]
impl<S: Store + ?Sized> WorkerLocks for SimulatedRttStore<S> {
    async fn lock_worker(&self, worker: &WorkerId, ttl: Duration) -> Result<Option<LockToken>> {
        let op = Op::LockWorker;
        self.around(
            op,
            op.round_trips(),
            self.inner_locks()?.lock_worker(worker, ttl),
        )
        .await
    }

    async fn commit_locked(
        &self,
        lock: &LockToken,
        expected_version: u64,
        group: &CommitGroup,
    ) -> Result<CommitOutcome> {
        let op = Op::CommitLocked;
        let call = self
            .inner_locks()?
            .commit_locked(lock, expected_version, group);
        self.around(op, op.round_trips(), call).await
    }

    async fn unlock_worker(&self, lock: &LockToken) -> Result<bool> {
        let op = Op::UnlockWorker;
        self.around(
            op,
            op.round_trips(),
            self.inner_locks()?.unlock_worker(lock),
        )
        .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Credentials for SimulatedRttStore<S> {
    async fn put_credential(&self, credential: &Credential) -> Result<()> {
        let op = Op::PutCredential;
        self.around(op, op.round_trips(), self.inner.put_credential(credential))
            .await
    }

    async fn credential(&self, id: &TokenId) -> Result<Option<Credential>> {
        let op = Op::Credential;
        self.around(op, op.round_trips(), self.inner.credential(id))
            .await
    }

    async fn credentials(&self) -> Result<Vec<Credential>> {
        let op = Op::Credentials;
        self.around(op, op.round_trips(), self.inner.credentials())
            .await
    }

    async fn revoke_credentials(&self, ids: &[TokenId]) -> Result<usize> {
        let op = Op::RevokeCredentials;
        self.around(op, op.round_trips(), self.inner.revoke_credentials(ids))
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Quotas for SimulatedRttStore<S> {
    async fn put_tenant(&self, tenant: &Tenant) -> Result<()> {
        let op = Op::PutTenant;
        self.around(op, op.round_trips(), self.inner.put_tenant(tenant))
            .await
    }

    async fn remove_tenant(&self, name: &TenantName) -> Result<bool> {
        let op = Op::RemoveTenant;
        self.around(op, op.round_trips(), self.inner.remove_tenant(name))
            .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        let op = Op::Tenants;
        self.around(op, op.round_trips(), self.inner.tenants())
            .await
    }

    async fn usage(&self) -> Result<Vec<(String, Usage)>> {
        let op = Op::Usage;
        self.around(op, op.round_trips(), self.inner.usage()).await
    }

    async fn hold(&self, holds: &[Hold]) -> Result<Vec<HoldOutcome>> {
        let op = Op::Hold;
        self.around(op, op.round_trips(), self.inner.hold(holds))
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Provisioning for SimulatedRttStore<S> {
    async fn record_provisioned(&self, pool: &PoolName, workers: &[PendingWorker]) -> Result<()> {
        let op = Op::RecordProvisioned;
        let call = self.inner.record_provisioned(pool, workers);
        self.around(op, Self::trips(op, workers.is_empty()), call)
            .await
    }

    async fn provisioned(&self, pool: &PoolName) -> Result<Vec<PendingWorker>> {
        let op = Op::Provisioned;
        self.around(op, op.round_trips(), self.inner.provisioned(pool))
            .await
    }

    async fn forget_provisioned(&self, pool: &PoolName, workers: &[WorkerId]) -> Result<usize> {
        let op = Op::ForgetProvisioned;
        let call = self.inner.forget_provisioned(pool, workers);
        self.around(op, Self::trips(op, workers.is_empty()), call)
            .await
    }
}

impl<S: Store + ?Sized> Store for SimulatedRttStore<S> {
    fn worker_locks(&self) -> Option<&dyn WorkerLocks> {
        self.inner.worker_locks().map(|_| self as &dyn WorkerLocks)
    }
}

impl<S: Store + ?Sized> SimulatedRttStore<S> {
    /// The wrapped store's lock-based path.
    fn inner_locks(&self) -> Result<&dyn WorkerLocks> {
        self.inner.worker_locks().ok_or(StoreError::NoWorkerLocks)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_store::MemoryStore;

    #[tokio::test]
    async fn a_zero_rtt_only_counts() {
        let store = SimulatedRttStore::new(Arc::new(MemoryStore::default()), Duration::ZERO);
        store.workers().await.unwrap();
        store.backlog_len().await.unwrap();
        store.commit(&[]).await.unwrap();
        let d = store.delays();
        assert_eq!(d.calls(Op::Workers), 1);
        assert_eq!(d.calls(Op::Commit), 1);
        assert_eq!(d.round_trips_of(Op::Workers), 2);
        assert_eq!(d.round_trips_of(Op::Commit), 0);
        assert_eq!(d.round_trips, 3);
        assert_eq!(d.simulated, Duration::ZERO);
    }

    #[tokio::test]
    async fn each_round_trip_is_delayed_by_the_rtt() {
        let rtt = Duration::from_millis(2);
        let store = SimulatedRttStore::new(Arc::new(MemoryStore::default()), rtt);
        let started = Instant::now();
        store.workers().await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= 2 * rtt, "{elapsed:?}");
        let d = store.delays();
        assert_eq!(d.simulated, 2 * rtt);
        assert!(d.slept >= 2 * rtt);
        let earlier = d;
        store.backlog_len().await.unwrap();
        let d = store.delays().since(&earlier);
        assert_eq!((d.round_trips, d.simulated), (1, rtt));
    }

    #[tokio::test]
    async fn concurrent_delays_overlap() {
        let rtt = Duration::from_millis(20);
        let store = SimulatedRttStore::new(Arc::new(MemoryStore::default()), rtt);
        let started = Instant::now();
        let calls = (0..50).map(|_| store.backlog_len());
        futures::future::try_join_all(calls).await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= rtt && elapsed < 10 * rtt, "{elapsed:?}");
        assert_eq!(store.delays().simulated, 50 * rtt);
    }
}
