//! Store instrumentation: round trips, commands, script calls, worker reads, lock
//! acquisitions and collisions, kept as counters the benchmark can read and exported through
//! the `metrics` crate.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one store client.
#[derive(Debug, Default)]
pub struct StoreStats {
    round_trips: AtomicU64,
    commands: AtomicU64,
    script_calls: AtomicU64,
    worker_reads: AtomicU64,
    lock_acquisitions: AtomicU64,
    lock_collisions: AtomicU64,
    unreplicated: AtomicU64,
}

/// A copy of the counters at one moment; subtract two to measure an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Network round trips (a pipeline, or a concurrent wave of per-node pipelines, is one).
    pub round_trips: u64,
    /// Commands sent (each script call is one).
    pub commands: u64,
    /// Lua script calls.
    pub script_calls: u64,
    /// Worker records read (one per worker per snapshot or single read).
    pub worker_reads: u64,
    /// Worker locks taken.
    pub lock_acquisitions: u64,
    /// Attempts to take a worker lock that found it held.
    pub lock_collisions: u64,
    /// Commit waits (`WAIT`, see [`crate::StoreConfig::replica_acks`]) that timed out before
    /// enough replicas had the commits.
    pub unreplicated: u64,
}

impl StatsSnapshot {
    /// The counts between `earlier` and `self`.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            round_trips: self.round_trips.saturating_sub(earlier.round_trips),
            commands: self.commands.saturating_sub(earlier.commands),
            script_calls: self.script_calls.saturating_sub(earlier.script_calls),
            worker_reads: self.worker_reads.saturating_sub(earlier.worker_reads),
            lock_acquisitions: self
                .lock_acquisitions
                .saturating_sub(earlier.lock_acquisitions),
            lock_collisions: self.lock_collisions.saturating_sub(earlier.lock_collisions),
            unreplicated: self.unreplicated.saturating_sub(earlier.unreplicated),
        }
    }
}

impl StoreStats {
    /// Records a commit wait that timed out before enough replicas had the commits.
    pub fn unreplicated(&self) {
        self.unreplicated.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("berth_store_unreplicated_commits_total").increment(1);
    }

    /// Records one round trip carrying `commands` commands, of which `scripts` are scripts.
    pub fn round_trip(&self, commands: u64, scripts: u64) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands, Ordering::Relaxed);
        self.script_calls.fetch_add(scripts, Ordering::Relaxed);
        metrics::counter!("berth_store_round_trips_total").increment(1);
        metrics::counter!("berth_store_commands_total").increment(commands);
        metrics::counter!("berth_store_script_calls_total").increment(scripts);
    }

    /// Records `n` worker records read.
    pub fn worker_reads(&self, n: u64) {
        self.worker_reads.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("berth_store_worker_reads_total").increment(n);
    }

    /// Records a lock attempt: taken, or found held by someone else (a collision).
    pub fn lock_attempt(&self, acquired: bool) {
        if acquired {
            self.lock_acquisitions.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("berth_store_lock_acquisitions_total").increment(1);
        } else {
            self.lock_collisions.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("berth_store_lock_collisions_total").increment(1);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            script_calls: self.script_calls.load(Ordering::Relaxed),
            worker_reads: self.worker_reads.load(Ordering::Relaxed),
            lock_acquisitions: self.lock_acquisitions.load(Ordering::Relaxed),
            lock_collisions: self.lock_collisions.load(Ordering::Relaxed),
            unreplicated: self.unreplicated.load(Ordering::Relaxed),
        }
    }
}
