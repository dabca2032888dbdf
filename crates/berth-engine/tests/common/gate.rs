//! [`Gate`]: a store wrapper that can hold an engine replica at one chosen step of its
//! batch (before its commit, or after its commit and before its settlement), so a test can
//! stop the replica exactly there with `Engine::abort`, as a crash would, or let it go on
//! later, as after a long pause; it can also fail settlements, as a lost connection would.

use async_trait::async_trait;
use berth_core::*;
use berth_store::prelude::*;
use berth_store::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Where a [`Gate`] holds the replica that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldAt {
    /// Every commit (`commit` and `commit_locked`) waits before it reaches the store: the
    /// replica has claimed and planned, and reserved nothing.
    Commit,
    /// Every `settle` waits before it reaches the store: the replica has reserved capacity,
    /// and its claims are neither settled nor recorded.
    Settle,
}

/// A store that forwards every call to `inner`, except that the calls at its [`HoldAt`]
/// point wait until [`Gate::open`] (or until the calling task is aborted), and that the
/// first few settlements may fail.
pub struct Gate {
    inner: Arc<dyn Store>,
    hold: Option<HoldAt>,
    open: watch::Sender<bool>,
    held: AtomicUsize,
    failing_settles: AtomicUsize,
    failing_commits: AtomicUsize,
}

impl Gate {
    /// A gate on `inner` that holds at `at` until opened.
    pub fn new(inner: Arc<dyn Store>, at: HoldAt) -> Arc<Gate> {
        Gate::build(inner, Some(at), 0)
    }

    /// A gate on `inner` that holds nothing, and fails the first `n` settlements with an
    /// error before they reach the store (as a lost connection would).
    pub fn failing_settles(inner: Arc<dyn Store>, n: usize) -> Arc<Gate> {
        Gate::build(inner, None, n)
    }

    /// A gate on `inner` that fails the first `commits` commits and the first `settles`
    /// settlements with an error before they reach the store.
    pub fn failing(inner: Arc<dyn Store>, commits: usize, settles: usize) -> Arc<Gate> {
        let gate = Gate::build(inner, None, settles);
        gate.failing_commits.store(commits, Ordering::SeqCst);
        gate
    }

    fn build(inner: Arc<dyn Store>, hold: Option<HoldAt>, failing_settles: usize) -> Arc<Gate> {
        Arc::new(Gate {
            inner,
            hold,
            open: watch::channel(false).0,
            held: AtomicUsize::new(0),
            failing_settles: AtomicUsize::new(failing_settles),
            failing_commits: AtomicUsize::new(0),
        })
    }

    /// How many calls have been held so far (including those let through since).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets the held calls, and every later one, through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self, at: HoldAt) {
        if self.hold != Some(at) {
            return;
        }
        let mut open = self.open.subscribe();
        if *open.borrow_and_update() {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let _ = open.wait_for(|&open| open).await;
    }

    fn settle_fails(&self) -> bool {
        self.failing_settles
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[async_trait]
impl Fleet for Gate {
    async fn register_worker(&self, registration: &WorkerRegistration) -> Result<Worker> {
        self.inner.register_worker(registration).await
    }

    async fn heartbeat(&self, worker: &WorkerId, epoch: Option<u64>, now_ms: u64) -> Result<()> {
        self.inner.heartbeat(worker, epoch, now_ms).await
    }

    async fn heartbeat_with_images(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        now_ms: u64,
        images: &[String],
    ) -> Result<()> {
        self.inner
            .heartbeat_with_images(worker, epoch, now_ms, images)
            .await
    }

    async fn set_worker_status(&self, worker: &WorkerId, status: WorkerStatus) -> Result<Worker> {
        self.inner.set_worker_status(worker, status).await
    }

    async fn worker(&self, worker: &WorkerId) -> Result<Option<Worker>> {
        self.inner.worker(worker).await
    }

    async fn workers(&self) -> Result<Vec<Worker>> {
        self.inner.workers().await
    }

    async fn quarantined(&self) -> Result<Vec<berth_store::Violation>> {
        self.inner.quarantined().await
    }

    async fn heartbeats(&self) -> Result<Vec<(WorkerId, u64)>> {
        self.inner.heartbeats().await
    }

    async fn deregister_worker(&self, worker: &WorkerId) -> Result<()> {
        self.inner.deregister_worker(worker).await
    }
}

#[async_trait]
impl Bookings for Gate {
    async fn commit(&self, groups: &[CommitGroup]) -> Result<Vec<CommitOutcome>> {
        self.pass(HoldAt::Commit).await;
        let fail = self
            .failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::InvalidArgument(
                "injected failure: the commit never reached the store".to_owned(),
            ));
        }
        self.inner.commit(groups).await
    }

    async fn release(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
        epoch: Option<u64>,
    ) -> Result<ReleaseOutcome> {
        self.inner.release(worker, container, attempt, epoch).await
    }

    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>> {
        self.inner.assignments(worker, epoch, max, wait).await
    }

    async fn ack_assignment(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        delivery: &str,
    ) -> Result<()> {
        self.inner.ack_assignment(worker, epoch, delivery).await
    }

    async fn owners(&self, container: &ContainerId) -> Result<Vec<(WorkerId, AttemptId)>> {
        self.inner.owners(container).await
    }

    async fn reclaim(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        self.inner.reclaim(worker, container, attempt, reason).await
    }

    async fn owned(&self, worker: &WorkerId) -> Result<Vec<berth_core::invariants::OwnedEntry>> {
        self.inner.owned(worker).await
    }

    async fn preempt(&self, preemption: &PreemptionCommit) -> Result<CommitOutcome> {
        self.inner.preempt(preemption).await
    }

    async fn preempted(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        self.inner
            .preempted(worker, container, attempt, reason)
            .await
    }
}

#[async_trait]
impl Intake for Gate {
    async fn submit(&self, requests: &[ContainerRequest]) -> Result<Vec<SubmitOutcome>> {
        self.inner.submit(requests).await
    }

    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Claim>> {
        self.inner.claim(consumer, max, wait).await
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<Vec<SettleOutcome>> {
        self.pass(HoldAt::Settle).await;
        if self.settle_fails() {
            return Err(StoreError::InvalidArgument(
                "injected failure: the settlement never reached the store".to_owned(),
            ));
        }
        self.inner.settle(items).await
    }

    async fn promote_due(&self, now_ms: u64, max: usize) -> Result<usize> {
        self.inner.promote_due(now_ms, max).await
    }

    async fn unmet_demand(&self) -> Result<Vec<PoolDemand>> {
        self.inner.unmet_demand().await
    }

    async fn claim_provisioning(
        &self,
        pool: &PoolName,
        intent: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.inner.claim_provisioning(pool, intent, ttl).await
    }

    async fn backlog_len(&self) -> Result<u64> {
        self.inner.backlog_len().await
    }

    async fn intake_len(&self) -> Result<u64> {
        self.inner.intake_len().await
    }
}

#[async_trait]
impl Records for Gate {
    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>> {
        self.inner.container(id).await
    }

    async fn transition(
        &self,
        id: &ContainerId,
        transition: &Transition,
    ) -> Result<ContainerRecord> {
        self.inner.transition(id, transition).await
    }

    async fn containers(
        &self,
        state: Option<ContainerState>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>> {
        self.inner.containers(state, limit).await
    }

    async fn append_logs(
        &self,
        container: &ContainerId,
        lines: &[String],
        keep: usize,
    ) -> Result<()> {
        self.inner.append_logs(container, lines, keep).await
    }

    async fn logs(&self, container: &ContainerId, after: u64) -> Result<LogSlice> {
        self.inner.logs(container, after).await
    }

    async fn cancel(&self, container: &ContainerId) -> Result<ContainerRecord> {
        self.inner.cancel(container).await
    }

    async fn cancel_requested(&self, containers: &[ContainerId]) -> Result<Vec<ContainerId>> {
        self.inner.cancel_requested(containers).await
    }
}

#[async_trait]
impl Inspection for Gate {
    async fn check(&self, options: CheckOptions) -> Result<Vec<Violation>> {
        self.inner.check(options).await
    }

    fn stats(&self) -> &StoreStats {
        self.inner.stats()
    }
}

#[async_trait]
impl WorkerLocks for Gate {
    async fn lock_worker(&self, worker: &WorkerId, ttl: Duration) -> Result<Option<LockToken>> {
        self.inner_locks()?.lock_worker(worker, ttl).await
    }

    async fn commit_locked(
        &self,
        lock: &LockToken,
        expected_version: u64,
        group: &CommitGroup,
    ) -> Result<CommitOutcome> {
        self.pass(HoldAt::Commit).await;
        self.inner_locks()?
            .commit_locked(lock, expected_version, group)
            .await
    }

    async fn unlock_worker(&self, lock: &LockToken) -> Result<bool> {
        self.inner_locks()?.unlock_worker(lock).await
    }
}

#[async_trait]
impl Credentials for Gate {
    async fn put_credential(&self, credential: &Credential) -> Result<()> {
        self.inner.put_credential(credential).await
    }

    async fn credential(&self, id: &TokenId) -> Result<Option<Credential>> {
        self.inner.credential(id).await
    }

    async fn credentials(&self) -> Result<Vec<Credential>> {
        self.inner.credentials().await
    }

    async fn revoke_credentials(&self, ids: &[TokenId]) -> Result<usize> {
        self.inner.revoke_credentials(ids).await
    }
}

#[async_trait]
impl berth_store::Quotas for Gate {
    async fn put_tenant(&self, tenant: &berth_core::Tenant) -> Result<()> {
        self.inner.put_tenant(tenant).await
    }

    async fn remove_tenant(&self, name: &berth_core::TenantName) -> Result<bool> {
        self.inner.remove_tenant(name).await
    }

    async fn tenants(&self) -> Result<Vec<berth_core::Tenant>> {
        self.inner.tenants().await
    }

    async fn usage(&self) -> Result<Vec<(String, berth_core::Usage)>> {
        self.inner.usage().await
    }

    async fn hold(&self, holds: &[berth_store::Hold]) -> Result<Vec<berth_store::HoldOutcome>> {
        self.inner.hold(holds).await
    }
}

#[async_trait]
impl Provisioning for Gate {
    async fn record_provisioned(&self, pool: &PoolName, workers: &[PendingWorker]) -> Result<()> {
        self.inner.record_provisioned(pool, workers).await
    }

    async fn provisioned(&self, pool: &PoolName) -> Result<Vec<PendingWorker>> {
        self.inner.provisioned(pool).await
    }

    async fn forget_provisioned(&self, pool: &PoolName, workers: &[WorkerId]) -> Result<usize> {
        self.inner.forget_provisioned(pool, workers).await
    }
}

impl Store for Gate {
    fn worker_locks(&self) -> Option<&dyn WorkerLocks> {
        self.inner.worker_locks().map(|_| self as &dyn WorkerLocks)
    }
}

impl Gate {
    /// The wrapped store's lock-based path.
    fn inner_locks(&self) -> Result<&dyn WorkerLocks> {
        self.inner.worker_locks().ok_or(StoreError::NoWorkerLocks)
    }
}
