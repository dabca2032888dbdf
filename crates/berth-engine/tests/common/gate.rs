//! [`Gate`]: a store wrapper that can hold an engine replica at one chosen step of its
//! batch (before its commit, or after its commit and before its settlement), so a test can
//! stop the replica exactly there with `Engine::abort`, as a crash would, or let it go on
//! later, as after a long pause; it can also fail settlements, as a lost connection would.
//!
//! The `Store` trait is declared with `async_trait`, which this crate cannot use in its
//! tests (it is not a dependency), so the methods are written out as `async_trait` expands
//! them.

use berth_core::*;
use berth_store::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

    fn build(inner: Arc<dyn Store>, hold: Option<HoldAt>, failing_settles: usize) -> Arc<Gate> {
        Arc::new(Gate {
            inner,
            hold,
            open: watch::channel(false).0,
            held: AtomicUsize::new(0),
            failing_settles: AtomicUsize::new(failing_settles),
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

/// Forwards one method to the inner store. The lifetimes name the elided lifetimes of the
/// reference arguments, in order, as `async_trait` does.
macro_rules! forward {
    ($name:ident [$($lt:lifetime),*] ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name<'life0, $($lt,)* 'async_trait>(&'life0 self, $($arg: $ty),*) -> Fut<'async_trait, $ret>
        where
            'life0: 'async_trait,
            $($lt: 'async_trait,)*
            Self: 'async_trait,
        {
            self.inner.$name($($arg),*)
        }
    };
}

impl Store for Gate {
    forward!(register_worker ['life1] (registration: &'life1 WorkerRegistration) -> Result<Worker>);
    forward!(heartbeat ['life1] (worker: &'life1 WorkerId, now_ms: u64) -> Result<()>);
    forward!(set_worker_status ['life1] (worker: &'life1 WorkerId, status: WorkerStatus) -> Result<Worker>);
    forward!(worker ['life1] (worker: &'life1 WorkerId) -> Result<Option<Worker>>);
    forward!(workers [] () -> Result<Vec<Worker>>);
    forward!(lock_worker ['life1] (worker: &'life1 WorkerId, ttl: Duration) -> Result<Option<LockToken>>);
    forward!(unlock_worker ['life1] (lock: &'life1 LockToken) -> Result<bool>);
    forward!(release ['life1, 'life2, 'life3] (
        worker: &'life1 WorkerId,
        container: &'life2 ContainerId,
        attempt: Option<&'life3 AttemptId>
    ) -> Result<ReleaseOutcome>);
    forward!(assignments ['life1] (worker: &'life1 WorkerId, max: usize, wait: Duration) -> Result<Vec<Assignment>>);
    forward!(ack_assignment ['life1, 'life2] (worker: &'life1 WorkerId, delivery: &'life2 str) -> Result<()>);
    forward!(submit ['life1] (requests: &'life1 [ContainerRequest]) -> Result<Vec<SubmitOutcome>>);
    forward!(container ['life1] (id: &'life1 ContainerId) -> Result<Option<ContainerRecord>>);
    forward!(transition ['life1, 'life2] (id: &'life1 ContainerId, transition: &'life2 Transition) -> Result<ContainerRecord>);
    forward!(claim ['life1] (consumer: &'life1 str, max: usize, wait: Duration) -> Result<Vec<Claim>>);
    forward!(promote_due [] (now_ms: u64, max: usize) -> Result<usize>);
    forward!(owners ['life1] (container: &'life1 ContainerId) -> Result<Vec<(WorkerId, AttemptId)>>);
    forward!(unmet_demand [] () -> Result<Vec<PoolDemand>>);
    forward!(claim_provisioning ['life1, 'life2] (pool: &'life1 PoolName, intent: &'life2 str, ttl: Duration) -> Result<bool>);
    forward!(backlog_len [] () -> Result<u64>);
    forward!(check [] () -> Result<Vec<Violation>>);

    fn commit<'life0, 'life1, 'async_trait>(
        &'life0 self,
        groups: &'life1 [CommitGroup],
    ) -> Fut<'async_trait, Result<Vec<CommitOutcome>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.pass(HoldAt::Commit).await;
            self.inner.commit(groups).await
        })
    }

    fn commit_locked<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        lock: &'life1 LockToken,
        expected_version: u64,
        group: &'life2 CommitGroup,
    ) -> Fut<'async_trait, Result<CommitOutcome>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.pass(HoldAt::Commit).await;
            self.inner
                .commit_locked(lock, expected_version, group)
                .await
        })
    }

    fn settle<'life0, 'life1, 'async_trait>(
        &'life0 self,
        items: &'life1 [SettleItem],
    ) -> Fut<'async_trait, Result<Vec<SettleOutcome>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.pass(HoldAt::Settle).await;
            if self.settle_fails() {
                return Err(StoreError::InvalidArgument(
                    "injected failure: the settlement never reached the store".to_owned(),
                ));
            }
            self.inner.settle(items).await
        })
    }

    fn stats(&self) -> &StoreStats {
        self.inner.stats()
    }
}
