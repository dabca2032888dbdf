//! The worker cache: an in-memory snapshot of the fleet. Reloaded whole when older than its
//! TTL (a backstop), updated write-through from every commit reply (which carries the
//! worker's new state), and invalidated per worker when a commit is rejected without one.
//! In the steady state planning reads it without waiting on I/O.

use crate::stats::{Counter, EngineStats};
use berth_core::{Worker, WorkerId};
use berth_store::{Result, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The cache. Owned by one engine loop; not shared between tasks.
#[derive(Debug)]
pub struct WorkerCache {
    ttl: Duration,
    workers: BTreeMap<WorkerId, Worker>,
    loaded_at: Option<Instant>,
    stale: BTreeSet<WorkerId>,
    stats: Arc<EngineStats>,
}

impl WorkerCache {
    /// An empty cache that reloads when older than `ttl` and counts into `stats`.
    pub fn new(ttl: Duration, stats: Arc<EngineStats>) -> WorkerCache {
        WorkerCache {
            ttl,
            workers: BTreeMap::new(),
            loaded_at: None,
            stale: BTreeSet::new(),
            stats,
        }
    }

    /// The fleet, reading the store only if the cache is expired or has stale workers.
    /// Counts a hit when no read was needed, a miss otherwise.
    pub async fn snapshot(&mut self, store: &dyn Store) -> Result<Vec<Worker>> {
        let expired = self.loaded_at.is_none_or(|at| at.elapsed() >= self.ttl);
        if expired {
            self.reload(store).await?;
        } else if !self.stale.is_empty() {
            self.refresh_stale(store).await?;
        } else {
            self.count(true);
        }
        Ok(self.workers.values().cloned().collect())
    }

    async fn reload(&mut self, store: &dyn Store) -> Result<()> {
        self.count(false);
        let workers = store.workers().await?;
        self.workers = workers.into_iter().map(|w| (w.id.clone(), w)).collect();
        self.loaded_at = Some(Instant::now());
        self.stale.clear();
        Ok(())
    }

    /// Reads the stale workers again, concurrently (pipelined on one connection).
    async fn refresh_stale(&mut self, store: &dyn Store) -> Result<()> {
        self.count(false);
        let stale: Vec<WorkerId> = std::mem::take(&mut self.stale).into_iter().collect();
        let reads = futures::future::join_all(stale.iter().map(|id| store.worker(id))).await;
        for (id, read) in stale.into_iter().zip(reads) {
            match read? {
                Some(worker) => self.workers.insert(id, worker),
                None => self.workers.remove(&id),
            };
        }
        Ok(())
    }

    /// Takes a worker state read back from the store, unless the cache has a newer one.
    pub fn apply(&mut self, worker: &Worker) {
        let newer = self
            .workers
            .get(&worker.id)
            .is_none_or(|cached| cached.version <= worker.version);
        if newer {
            self.workers.insert(worker.id.clone(), worker.clone());
            self.stale.remove(&worker.id);
        }
    }

    /// Marks a worker to be read again before the next plan.
    pub fn invalidate(&mut self, worker: &WorkerId) {
        self.stale.insert(worker.clone());
    }

    /// Forces a full reload before the next plan (e.g. after workers registered).
    pub fn expire(&mut self) {
        self.loaded_at = None;
    }

    fn count(&self, hit: bool) {
        let counter = if hit {
            Counter::CacheHits
        } else {
            Counter::CacheMisses
        };
        self.stats.add(counter, 1);
    }
}
