//! The server's state: the store, the engine replica, the worker protocol around them, the
//! configured pools, the settings and the metrics handle.

use berth_core::Pool;
use berth_engine::Engine;
use berth_protocol::{Protocol, ProtocolConfig};
use berth_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
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
    /// How long the engine's fleet read is reused for checking submits (registrations and
    /// status changes through this server refresh it at once).
    pub fleet_cache_ttl: Duration,
    /// How long a token's credential, once read from the store, is trusted without reading
    /// it again: a token revoked through another replica is refused within this time.
    pub credential_cache_ttl: Duration,
    /// Whether `/metrics` answers without a token (e.g. a scraper on a private network);
    /// by default it takes a metrics or an admin token.
    pub metrics_open: bool,
    /// How long a connection may take to send a request's line and headers; one that is
    /// slower is closed (it would otherwise hold its socket and task forever). hyper starts
    /// this clock while a kept-alive connection waits for its next request too, so it is
    /// also the idle timeout of kept-alive connections (berth's client keeps idle ones for
    /// less).
    pub header_read_timeout: Duration,
    /// The longest request target (path and query) accepted, in bytes (longer ones get 414
    /// `uri_too_long`). Above 65534 bytes hyper refuses the request itself, with no body.
    pub max_uri_bytes: usize,
    /// The most header bytes (names, values and separators) accepted, in bytes (more get
    /// 431 `headers_too_large`).
    pub max_header_bytes: usize,
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
            credential_cache_ttl: Duration::from_secs(5),
            metrics_open: false,
            header_read_timeout: Duration::from_secs(10),
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
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

    /// The worker protocol's share of the settings.
    pub fn protocol(&self) -> ProtocolConfig {
        ProtocolConfig {
            heartbeat_timeout: self.heartbeat_timeout,
            log_lines_kept: self.log_lines_kept,
            fleet_max_age: self.fleet_cache_ttl,
        }
    }
}

/// Everything a handler needs. Cheap to clone: clones share the store, the engine, the
/// protocol and the shutdown signal.
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
    /// The worker protocol on the same store and engine.
    pub protocol: Arc<Protocol>,
    /// Finds the credentials of callers' tokens.
    pub auth: Arc<crate::auth::Authenticator>,
    /// The last `GET /v1/throughput` answer, reused for a second.
    pub throughput: Arc<crate::throughput::ThroughputCache>,
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
        let protocol = Protocol::new(store.clone(), engine.clone(), config.protocol());
        let auth = crate::auth::Authenticator::new(store.clone(), config.credential_cache_ttl);
        AppState {
            auth: Arc::new(auth),
            throughput: Arc::default(),
            store,
            engine,
            pools,
            protocol: Arc::new(protocol),
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
