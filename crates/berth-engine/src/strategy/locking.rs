//! The lock-based commit of one worker group, shared by `serial` and `batch-lock`: take the
//! worker's lock (retrying while it is busy), read the worker once, compare its version with
//! the one the plan saw, commit under the lock, release the lock.

use berth_core::Worker;
use berth_store::{
    CommitGroup, CommitOutcome, LockToken, Rejection, Result, Store, StoreError, WorkerLocks,
};
use std::time::Duration;
use tokio::time::Instant;

/// Commits `group` under the worker's lock if the worker is still at `planned_version`.
pub(super) async fn commit_under_lock(
    store: &dyn Store,
    group: &CommitGroup,
    planned_version: u64,
    lock_ttl: Duration,
    lock_wait: Duration,
) -> Result<CommitOutcome> {
    let locks = store.worker_locks().ok_or(StoreError::NoWorkerLocks)?;
    let Some(lock) = acquire(locks, group, lock_ttl, lock_wait).await? else {
        return Ok(rejected(Rejection::LockLost, None));
    };
    let outcome = read_compare_write(store, locks, &lock, group, planned_version).await;
    locks.unlock_worker(&lock).await?;
    outcome
}

async fn read_compare_write(
    store: &dyn Store,
    locks: &dyn WorkerLocks,
    lock: &LockToken,
    group: &CommitGroup,
    planned_version: u64,
) -> Result<CommitOutcome> {
    let Some(current) = store.worker(&group.worker).await? else {
        return Ok(rejected(Rejection::UnknownWorker, None));
    };
    if current.version != planned_version {
        return Ok(rejected(Rejection::VersionConflict, Some(current)));
    }
    locks.commit_locked(lock, current.version, group).await
}

/// Takes the lock, retrying with a short growing pause while someone else holds it, for at
/// most `wait`. Every busy attempt is counted as a collision by the store.
async fn acquire(
    locks: &dyn WorkerLocks,
    group: &CommitGroup,
    ttl: Duration,
    wait: Duration,
) -> Result<Option<LockToken>> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(lock) = locks.lock_worker(&group.worker, ttl).await? {
            return Ok(Some(lock));
        }
        if Instant::now() + pause > deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

fn rejected(rejection: Rejection, worker: Option<Worker>) -> CommitOutcome {
    CommitOutcome::Rejected { rejection, worker }
}
