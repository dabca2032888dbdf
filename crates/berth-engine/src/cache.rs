//! The worker cache: an in-memory snapshot of the fleet. Reloaded whole when older than its
//! TTL (a backstop), updated write-through from every commit reply (which carries the
//! worker's new state), and invalidated per worker when a commit is rejected without one.
//! In the steady state planning borrows it without waiting on I/O and without copying it.

use crate::stats::{Counter, EngineStats};
use berth_core::{Pool, Snapshot, Worker, WorkerId};
use berth_store::{Result, Store};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The cache. Owned by one engine loop; not shared between tasks.
#[derive(Debug)]
pub struct WorkerCache {
    ttl: Duration,
    /// The fleet and the configured pools, ready to plan against.
    snapshot: Snapshot,
    /// Where each worker sits in `snapshot.workers`.
    position: HashMap<WorkerId, usize>,
    loaded_at: Option<Instant>,
    stale: BTreeSet<WorkerId>,
    stats: Arc<EngineStats>,
}

impl WorkerCache {
    /// An empty cache of a fleet that may grow `pools`, reloading when older than `ttl` and
    /// counting into `stats`.
    pub fn new(ttl: Duration, pools: Vec<Pool>, stats: Arc<EngineStats>) -> WorkerCache {
        WorkerCache {
            ttl,
            snapshot: Snapshot {
                workers: Vec::new(),
                pools,
            },
            position: HashMap::new(),
            loaded_at: None,
            stale: BTreeSet::new(),
            stats,
        }
    }

    /// The fleet, reading the store only if the cache is expired or has stale workers.
    /// Counts a hit when no read was needed, a miss otherwise.
    pub async fn snapshot(&mut self, store: &dyn Store) -> Result<&Snapshot> {
        let expired = self.loaded_at.is_none_or(|at| at.elapsed() >= self.ttl);
        if expired {
            self.reload(store).await?;
        } else if !self.stale.is_empty() {
            self.refresh_stale(store).await?;
        } else {
            self.count(true);
        }
        Ok(&self.snapshot)
    }

    async fn reload(&mut self, store: &dyn Store) -> Result<()> {
        self.count(false);
        self.snapshot.workers = store.workers().await?;
        self.reindex();
        self.loaded_at = Some(Instant::now());
        self.stale.clear();
        Ok(())
    }

    /// Reads the stale workers again, concurrently (pipelined on one connection).
    async fn refresh_stale(&mut self, store: &dyn Store) -> Result<()> {
        self.count(false);
        let stale: Vec<WorkerId> = std::mem::take(&mut self.stale).into_iter().collect();
        let reads = futures::future::join_all(stale.iter().map(|id| store.worker(id))).await;
        let mut gone = Vec::new();
        for (id, read) in stale.into_iter().zip(reads) {
            match read? {
                Some(worker) => self.put(worker),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            self.snapshot.workers.retain(|w| !gone.contains(&w.id));
            self.reindex();
        }
        Ok(())
    }

    fn reindex(&mut self) {
        self.position = self
            .snapshot
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
    }

    /// Inserts or replaces a worker.
    fn put(&mut self, worker: Worker) {
        match self.position.get(&worker.id) {
            Some(&at) => self.snapshot.workers[at] = worker,
            None => {
                self.position
                    .insert(worker.id.clone(), self.snapshot.workers.len());
                self.snapshot.workers.push(worker);
            }
        }
    }

    /// Takes a worker state read back from the store, unless the cache has a newer one.
    pub fn apply(&mut self, worker: &Worker) {
        let cached = self
            .position
            .get(&worker.id)
            .map(|&at| &self.snapshot.workers[at]);
        if cached.is_none_or(|cached| cached.version <= worker.version) {
            self.put(worker.clone());
            self.stale.remove(&worker.id);
        }
    }

    /// Marks a worker to be read again before the next plan.
    pub fn invalidate(&mut self, worker: &WorkerId) {
        self.stale.insert(worker.clone());
    }

    /// True when the snapshot was read whole less than `age` ago.
    pub fn younger_than(&self, age: Duration) -> bool {
        self.loaded_at.is_some_and(|at| at.elapsed() < age)
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
