//! Which store the bench runs on: a Redis given with `--redis`, a redis-server the bench
//! starts itself (free port, temporary directory, persistence off), or the embedded memory
//! store. Every run gets a fresh namespace: a fresh key prefix on Redis, a new store in
//! memory.

use super::args::StoreKind;
use anyhow::{Context, bail};
use berth_localredis::{LocalRedis, LocalRedisError};
use berth_store::{MemoryStore, RedisStore, Store, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the report says about the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreInfo {
    /// `redis` or `memory`.
    pub kind: &'static str,
    /// The Redis URL, if Redis, its password redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// True when the bench started the redis-server itself.
    pub started_by_bench: bool,
    /// The server's `redis_version`, if Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One line for people.
    pub description: String,
}

/// Memory figures from Redis `INFO memory`, in bytes.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RedisMemory {
    /// `used_memory`: what the data set uses now.
    pub used_memory: u64,
    /// `used_memory_peak`: the most it ever used since the server started.
    pub used_memory_peak: u64,
}

enum Backend {
    Memory,
    Redis {
        url: String,
        admin: redis::aio::MultiplexedConnection,
        /// The server the bench started, killed (and its directory removed) on drop.
        managed: Option<LocalRedis>,
    },
}

/// The store the bench runs on.
pub struct StoreChoice {
    backend: Backend,
    info: StoreInfo,
    note: Option<String>,
    next: AtomicU64,
    replica_acks: u32,
}

/// One fresh, empty namespace: what one run's stores share.
pub struct Namespace {
    prefix: String,
    memory: Option<Arc<MemoryStore>>,
}

impl Namespace {
    /// The Redis key prefix (also used to name the run's ids).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl StoreChoice {
    /// Picks the store: `--store memory`; `--redis URL`; otherwise Redis if redis-server
    /// is installed (the bench starts its own), else memory (said in the report).
    pub async fn choose(kind: Option<StoreKind>, url: Option<String>) -> anyhow::Result<Self> {
        if kind == Some(StoreKind::Memory) {
            return Ok(Self::memory(None));
        }
        if let Some(url) = url {
            return Self::redis(url, None).await;
        }
        let started = tokio::task::spawn_blocking(LocalRedis::start)
            .await
            .context("starting redis-server")?;
        match started {
            Ok(local) => Self::redis(local.url(), Some(local)).await,
            Err(error @ LocalRedisError::RedisServerNotFound) => {
                if kind == Some(StoreKind::Redis) {
                    bail!("--store redis: {error} (or give a server with --redis URL)");
                }
                Ok(Self::memory(Some(format!(
                    "redis-server is not installed, so the bench ran on the embedded memory store ({error})"
                ))))
            }
            Err(error) => Err(error).context("starting a redis-server for the bench"),
        }
    }

    fn memory(note: Option<String>) -> Self {
        StoreChoice {
            backend: Backend::Memory,
            info: StoreInfo {
                kind: "memory",
                url: None,
                started_by_bench: false,
                version: None,
                description: "memory (the embedded store, in this process)".to_owned(),
            },
            note,
            next: AtomicU64::new(0),
            replica_acks: 0,
        }
    }

    /// Redis commits wait for `acks` replicas ([`StoreConfig::replica_acks`]).
    pub fn with_replica_acks(mut self, acks: u32) -> Self {
        self.replica_acks = acks;
        self
    }

    async fn redis(url: String, managed: Option<LocalRedis>) -> anyhow::Result<Self> {
        // What reports, logs and errors show: never the password.
        let shown = berth_store::redact(&url);
        let client = redis::Client::open(url.as_str())
            .with_context(|| format!("--redis: {shown:?} is not a Redis URL"))?;
        // Long replies (a big UNLINK, INFO under load) must not time out.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(120)));
        let mut admin = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to Redis at {shown}"))?;
        let server: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut admin)
            .await
            .with_context(|| format!("INFO server on {shown}"))?;
        let version = info_field(&server, "redis_version");
        let started_by_bench = managed.is_some();
        let description = format!(
            "redis {} at {shown} ({})",
            version.as_deref().unwrap_or("(unknown version)"),
            if started_by_bench {
                "started by the bench: free port, temporary directory, no persistence"
            } else {
                "given with --redis"
            }
        );
        Ok(StoreChoice {
            info: StoreInfo {
                kind: "redis",
                url: Some(shown),
                started_by_bench,
                version,
                description,
            },
            backend: Backend::Redis {
                url,
                admin,
                managed,
            },
            note: None,
            next: AtomicU64::new(0),
            replica_acks: 0,
        })
    }

    /// What the report says about the store.
    pub fn info(&self) -> &StoreInfo {
        &self.info
    }

    /// Why the store is not the one the user may have expected, if so.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// A fresh namespace: prefix `bench-<pid>-<n>`, and a new store in memory.
    pub fn namespace(&self) -> Namespace {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("bench-{}-{n}", std::process::id());
        let memory = match self.backend {
            Backend::Memory => Some(Arc::new(MemoryStore::new(config(&prefix)))),
            Backend::Redis { .. } => None,
        };
        Namespace { prefix, memory }
    }

    /// A client of the namespace's store: on Redis a new connection (its own counters), in
    /// memory the namespace's one store (shared counters).
    pub async fn connect(&self, namespace: &Namespace) -> anyhow::Result<Arc<dyn Store>> {
        match (&self.backend, &namespace.memory) {
            (Backend::Memory, Some(store)) => Ok(store.clone()),
            (Backend::Redis { url, .. }, _) => {
                let config = StoreConfig {
                    replica_acks: self.replica_acks,
                    ..config(&namespace.prefix)
                };
                // The store's error names the (redacted) URL and says what to fix.
                let store = RedisStore::connect(url, config).await?;
                Ok(Arc::new(store))
            }
            (Backend::Memory, None) => bail!("a memory namespace without its store"),
        }
    }

    /// Deletes what the namespace wrote: on a Redis the bench started, everything (it is
    /// the bench's own); on a given Redis, the keys under the namespace's prefix only.
    pub async fn cleanup(&self, namespace: Namespace) -> anyhow::Result<()> {
        let Backend::Redis { admin, managed, .. } = &self.backend else {
            return Ok(());
        };
        let mut admin = admin.clone();
        if managed.is_some() {
            redis::cmd("FLUSHALL")
                .arg("ASYNC")
                .query_async::<()>(&mut admin)
                .await
                .context("FLUSHALL on the bench's own Redis")?;
            return Ok(());
        }
        let pattern = format!("{}:*", namespace.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut admin)
                .await
                .with_context(|| format!("SCAN MATCH {pattern}"))?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut admin)
                    .await
                    .with_context(|| format!("UNLINK of {} keys under {pattern}", keys.len()))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Redis `INFO memory` now; `None` for the memory store.
    pub async fn redis_memory(&self) -> anyhow::Result<Option<RedisMemory>> {
        let Backend::Redis { admin, .. } = &self.backend else {
            return Ok(None);
        };
        let mut admin = admin.clone();
        let text: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut admin)
            .await
            .context("INFO memory")?;
        let number = |field: &str| -> anyhow::Result<u64> {
            info_field(&text, field)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("INFO memory has no number {field}"))
        };
        Ok(Some(RedisMemory {
            used_memory: number("used_memory")?,
            used_memory_peak: number("used_memory_peak")?,
        }))
    }

    /// The CPU time the Redis server has used since it started (`INFO cpu`: user + system,
    /// every thread); `None` for the memory store.
    pub async fn redis_cpu(&self) -> anyhow::Result<Option<Duration>> {
        let Backend::Redis { admin, .. } = &self.backend else {
            return Ok(None);
        };
        let mut admin = admin.clone();
        let text: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut admin)
            .await
            .context("INFO cpu")?;
        let seconds = |field: &str| -> anyhow::Result<f64> {
            info_field(&text, field)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .with_context(|| format!("INFO cpu has no number {field}"))
        };
        let total = seconds("used_cpu_user")? + seconds("used_cpu_sys")?;
        Ok(Some(Duration::from_secs_f64(total)))
    }

    /// Stops the redis-server the bench started, if any.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Backend::Redis {
            managed: Some(local),
            ..
        } = self.backend
        {
            tokio::task::spawn_blocking(move || drop(local))
                .await
                .context("stopping the bench's redis-server")?;
        }
        Ok(())
    }
}

/// The store settings of a namespace: defaults with its prefix.
fn config(prefix: &str) -> StoreConfig {
    StoreConfig {
        prefix: prefix.to_owned(),
        ..StoreConfig::default()
    }
}

/// The value of `field:value` in an INFO reply.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_by_name() {
        let text = "# Memory\r\nused_memory:1024\r\nused_memory_peak:2048\r\n";
        assert_eq!(info_field(text, "used_memory").as_deref(), Some("1024"));
        assert_eq!(
            info_field(text, "used_memory_peak").as_deref(),
            Some("2048")
        );
        assert_eq!(info_field(text, "used"), None);
    }
}
