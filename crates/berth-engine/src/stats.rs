//! The engine's counters, shared with whoever wants to read them (the benchmark, the API),
//! and mirrored to the `metrics` crate with the strategy as a label.

use crate::Strategy;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one engine replica.
#[derive(Debug, Default)]
pub struct EngineStats {
    strategy: Strategy,
    batches: AtomicU64,
    placed: AtomicU64,
    failed: AtomicU64,
    deferred: AtomicU64,
    version_conflicts: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    superseded: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStatsSnapshot {
    /// Batches planned and committed.
    pub batches: u64,
    /// Requests placed.
    pub placed: u64,
    /// Requests failed for good.
    pub failed: u64,
    /// Requests sent to the backlog for lack of room.
    pub deferred: u64,
    /// Commits rejected because another writer got there first (version conflicts and
    /// capacity taken since the snapshot).
    pub version_conflicts: u64,
    /// Worker-cache reads served without I/O.
    pub cache_hits: u64,
    /// Worker-cache reads that went to the store.
    pub cache_misses: u64,
    /// Placements undone because another replica placed the same request first.
    pub superseded: u64,
}

impl EngineStatsSnapshot {
    /// The counts between `earlier` and `self`.
    pub fn since(&self, earlier: &EngineStatsSnapshot) -> EngineStatsSnapshot {
        EngineStatsSnapshot {
            batches: self.batches - earlier.batches,
            placed: self.placed - earlier.placed,
            failed: self.failed - earlier.failed,
            deferred: self.deferred - earlier.deferred,
            version_conflicts: self.version_conflicts - earlier.version_conflicts,
            cache_hits: self.cache_hits - earlier.cache_hits,
            cache_misses: self.cache_misses - earlier.cache_misses,
            superseded: self.superseded - earlier.superseded,
        }
    }

    /// Cache hits over all cache reads (0 when there were none).
    pub fn cache_hit_rate(&self) -> f64 {
        let reads = self.cache_hits + self.cache_misses;
        if reads == 0 {
            0.0
        } else {
            self.cache_hits as f64 / reads as f64
        }
    }
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Batches,
    Placed,
    Failed,
    Deferred,
    VersionConflicts,
    CacheHits,
    CacheMisses,
    Superseded,
}

impl EngineStats {
    /// Counters for an engine running `strategy`.
    pub fn new(strategy: Strategy) -> EngineStats {
        EngineStats {
            strategy,
            ..EngineStats::default()
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let (cell, name) = match counter {
            Counter::Batches => (&self.batches, "berth_batches_total"),
            Counter::Placed => (&self.placed, "berth_placed_total"),
            Counter::Failed => (&self.failed, "berth_failed_total"),
            Counter::Deferred => (&self.deferred, "berth_deferred_total"),
            Counter::VersionConflicts => (&self.version_conflicts, "berth_version_conflicts_total"),
            Counter::CacheHits => (&self.cache_hits, "berth_cache_hits_total"),
            Counter::CacheMisses => (&self.cache_misses, "berth_cache_misses_total"),
            Counter::Superseded => (&self.superseded, "berth_superseded_total"),
        };
        cell.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(name, "strategy" => self.strategy.as_str()).increment(n);
    }

    /// The counters now.
    pub fn snapshot(&self) -> EngineStatsSnapshot {
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        EngineStatsSnapshot {
            batches: get(&self.batches),
            placed: get(&self.placed),
            failed: get(&self.failed),
            deferred: get(&self.deferred),
            version_conflicts: get(&self.version_conflicts),
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            superseded: get(&self.superseded),
        }
    }

    /// The strategy label of these counters.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }
}
