//! The worker cache: an in-memory snapshot of the fleet. Reloaded whole when older than its
//! TTL (a backstop), updated write-through from every commit reply (which carries the
//! worker's new state), and invalidated per worker when a commit is rejected without one.
//! In the steady state planning borrows it without waiting on I/O and without copying it.
//!
//! Every whole reload is also published to the cache's [`FleetView`], which other tasks
//! (admission: can a request ever fit?) read without touching the loop's working copy.

use crate::stats::{Counter, EngineStats};
use berth_core::{Pool, Snapshot, Worker, WorkerId};
use berth_store::{Result, Store};
use parking_lot::Mutex;
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
    /// Where whole reloads are published for other tasks.
    view: Arc<FleetView>,
}

impl WorkerCache {
    /// An empty cache of a fleet that may grow `pools`, reloading when older than `ttl`,
    /// counting into `stats` and publishing its whole reloads to `view`.
    pub fn new(
        ttl: Duration,
        pools: Vec<Pool>,
        stats: Arc<EngineStats>,
        view: Arc<FleetView>,
    ) -> WorkerCache {
        WorkerCache {
            view,
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
        let generation = self.view.generation();
        self.snapshot.workers = store.workers().await?;
        self.reindex();
        self.loaded_at = Some(Instant::now());
        self.stale.clear();
        self.view
            .publish(generation, Arc::new(self.snapshot.clone()));
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

/// The fleet as last read whole, shared with tasks outside the engine loop: the loop
/// publishes each whole reload of its [`WorkerCache`], and a reader that finds the published
/// fleet too old (or invalidated) reads it once for everyone waiting. Free capacity in it
/// may lag (commit replies update only the loop's copy); what does not change between
/// reads (pools, totals, GPU types, statuses) is as of the read.
pub struct FleetView {
    store: Arc<dyn Store>,
    pools: Vec<Pool>,
    published: Mutex<Published>,
    /// Held while a reader reads the fleet; the others wait on it, then take what it read.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Published {
    /// Bumped by every invalidation: a read that began before one is not kept.
    generation: u64,
    /// When it was read, its generation, and the fleet.
    fleet: Option<(Instant, u64, Arc<Snapshot>)>,
}

impl Published {
    fn younger_than(&self, age: Duration) -> Option<Arc<Snapshot>> {
        match &self.fleet {
            Some((at, generation, fleet))
                if *generation == self.generation && at.elapsed() < age =>
            {
                Some(fleet.clone())
            }
            _ => None,
        }
    }
}

impl std::fmt::Debug for FleetView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetView")
            .field("pools", &self.pools)
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

impl FleetView {
    /// An empty view of the fleet in `store`, which may grow `pools`.
    pub fn new(store: Arc<dyn Store>, pools: Vec<Pool>) -> FleetView {
        FleetView {
            store,
            pools,
            published: Mutex::new(Published::default()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The fleet read less than `max_age` ago and not invalidated since; otherwise reads it
    /// again (one reader at a time: concurrent callers share the read) and publishes it.
    pub async fn snapshot(&self, max_age: Duration) -> Result<Arc<Snapshot>> {
        if let Some(fleet) = self.published.lock().younger_than(max_age) {
            return Ok(fleet);
        }
        let _reading = self.reading.lock().await;
        let generation = {
            let published = self.published.lock();
            if let Some(fleet) = published.younger_than(max_age) {
                return Ok(fleet);
            }
            published.generation
        };
        let fleet = Arc::new(Snapshot {
            workers: self.store.workers().await?,
            pools: self.pools.clone(),
        });
        self.publish(generation, fleet.clone());
        Ok(fleet)
    }

    /// Forgets the published fleet, including a read in flight (a worker registered, left
    /// or changed status).
    pub fn invalidate(&self) {
        let mut published = self.published.lock();
        published.generation += 1;
        published.fleet = None;
    }

    fn generation(&self) -> u64 {
        self.published.lock().generation
    }

    /// Publishes `fleet`, read when the generation was `generation`, unless an
    /// invalidation came since.
    fn publish(&self, generation: u64, fleet: Arc<Snapshot>) {
        let mut published = self.published.lock();
        if published.generation == generation {
            published.fleet = Some((Instant::now(), generation, fleet));
        }
    }
}
