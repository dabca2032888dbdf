//! The server's state: the store, the engine replica, the configured pools, the settings,
//! the metrics handle, and a short-lived cache of the fleet used to refuse unplaceable
//! submits.

use berth_core::{Pool, Snapshot};
use berth_engine::Engine;
use berth_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// A worker whose last heartbeat is older than this is declared lost and its containers
    /// are given back.
    pub heartbeat_timeout: Duration,
    /// How often the reaper looks for dead workers.
    pub reaper_every: Duration,
    /// The largest request body accepted, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// How many output lines are kept per container.
    pub log_lines_kept: usize,
    /// The longest a worker's assignment long-poll may wait.
    pub long_poll_max: Duration,
    /// How long the fleet read for checking submits is reused (registrations and status
    /// changes through this server refresh it at once).
    pub fleet_cache_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            heartbeat_timeout: Duration::from_secs(30),
            reaper_every: Duration::from_secs(5),
            max_body_bytes: 1 << 20,
            log_lines_kept: 1000,
            long_poll_max: Duration::from_secs(30),
            fleet_cache_ttl: Duration::from_secs(1),
        }
    }
}

impl ServerConfig {
    /// How long a worker may stay silent before the invariant check (`GET /v1/check`)
    /// calls it dead: twice the heartbeat timeout plus twice the reaper interval, so that a
    /// check sampled while the reaper is still declaring a worker lost and reclaiming what
    /// it owned reports nothing.
    pub fn check_dead_after(&self) -> Duration {
        self.heartbeat_timeout
            .saturating_mul(2)
            .saturating_add(self.reaper_every.saturating_mul(2))
    }
}

/// Everything a handler needs. Cheap to clone: clones share the store, the engine, the
/// fleet cache and the shutdown signal.
#[derive(Clone)]
pub struct AppState {
    /// The shared state store.
    pub store: Arc<dyn Store>,
    /// The engine replica placing what is submitted (and its clock).
    pub engine: Arc<Engine>,
    /// The pools an autoscaler could grow, and whose attributes registering workers get.
    pub pools: Vec<Pool>,
    /// The settings.
    pub config: ServerConfig,
    /// The process's Prometheus recorder, rendered at `/metrics`.
    pub metrics: PrometheusHandle,
    pub(crate) fleet: Arc<FleetCache>,
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("pools", &self.pools)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state of a server on `store` with `engine` (started on the same store), the
    /// configured `pools` and `config`. Installs the process's metrics recorder if none is
    /// yet (see [`crate::install_metrics`]).
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        pools: Vec<Pool>,
        config: ServerConfig,
    ) -> AppState {
        AppState {
            store,
            engine,
            pools,
            fleet: Arc::new(FleetCache::new(config.fleet_cache_ttl)),
            config,
            metrics: crate::install_metrics(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Now, in ms since the Unix epoch, by the engine's clock (the one request timestamps
    /// and heartbeats use).
    pub fn now_ms(&self) -> u64 {
        self.engine.now_ms()
    }

    /// The fleet as the submit check sees it: the workers (read at most every
    /// `fleet_cache_ttl`) and the configured pools.
    pub(crate) async fn snapshot(&self) -> berth_store::Result<Arc<Snapshot>> {
        self.fleet.snapshot(&*self.store, &self.pools).await
    }
}

/// The fleet, read at most once per TTL, and by one caller at a time: concurrent submits
/// that find it expired wait for one read instead of each reading the whole fleet (a burst
/// of submits on a cold cache would otherwise read it once per submit).
#[derive(Debug)]
pub(crate) struct FleetCache {
    ttl: Duration,
    cached: Mutex<Cached>,
    /// Held while the fleet is read; the others wait on it, then take what it read.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Cached {
    /// Bumped by every invalidation: a read that began before one is not kept.
    generation: u64,
    /// When it was read, its generation, and the fleet.
    fleet: Option<(Instant, u64, Arc<Snapshot>)>,
}

impl Cached {
    fn fresh(&self, ttl: Duration) -> Option<Arc<Snapshot>> {
        match &self.fleet {
            Some((at, generation, snapshot))
                if *generation == self.generation && at.elapsed() < ttl =>
            {
                Some(snapshot.clone())
            }
            _ => None,
        }
    }
}

impl FleetCache {
    fn new(ttl: Duration) -> FleetCache {
        FleetCache {
            ttl,
            cached: Mutex::new(Cached::default()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    async fn snapshot(
        &self,
        store: &dyn Store,
        pools: &[Pool],
    ) -> berth_store::Result<Arc<Snapshot>> {
        if let Some(snapshot) = self.cached.lock().fresh(self.ttl) {
            return Ok(snapshot);
        }
        let _reading = self.reading.lock().await;
        let generation = {
            let cached = self.cached.lock();
            if let Some(snapshot) = cached.fresh(self.ttl) {
                return Ok(snapshot);
            }
            cached.generation
        };
        let snapshot = Arc::new(Snapshot {
            workers: store.workers().await?,
            pools: pools.to_vec(),
        });
        let mut cached = self.cached.lock();
        if cached.generation == generation {
            cached.fleet = Some((Instant::now(), generation, snapshot.clone()));
        }
        Ok(snapshot)
    }

    /// Forgets the cached fleet (a worker registered or changed status), including a read
    /// in flight.
    pub(crate) fn invalidate(&self) {
        let mut cached = self.cached.lock();
        cached.generation += 1;
        cached.fleet = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_waits_for_the_reaper_before_calling_a_worker_dead() {
        let config = ServerConfig {
            heartbeat_timeout: Duration::from_secs(30),
            reaper_every: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        assert_eq!(config.check_dead_after(), Duration::from_secs(70));
        let huge = ServerConfig {
            heartbeat_timeout: Duration::MAX,
            ..ServerConfig::default()
        };
        assert_eq!(huge.check_dead_after(), Duration::MAX);
    }
}
