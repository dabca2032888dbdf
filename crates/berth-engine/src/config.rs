//! Engine configuration: the commit strategy and the knobs of batching, caching, retries
//! and deadlines. Switching strategy is a configuration change and nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How a planned batch is committed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The seed's "before": each request on its own task reads every worker, picks the best,
    /// locks it, reads it again, compares versions, writes and unlocks.
    Serial,
    /// The seed's "after": the worker cache and a batch plan, then one lock per touched
    /// worker (read once, apply all, write once, unlock), then cache invalidation.
    BatchLock,
    /// berth's default: the batch plan committed with one lock-free script per worker, all
    /// in one pipelined round trip; the cache updated from the replies.
    #[default]
    BatchScript,
}

impl Strategy {
    /// Every strategy, in the seed's order.
    pub const ALL: [Strategy; 3] = [Strategy::Serial, Strategy::BatchLock, Strategy::BatchScript];

    /// The strategy's name in configuration: `serial`, `batch-lock`, `batch-script`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Serial => "serial",
            Strategy::BatchLock => "batch-lock",
            Strategy::BatchScript => "batch-script",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no strategy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown commit strategy {0:?}; expected serial, batch-lock or batch-script")]
pub struct StrategyError(pub String);

impl FromStr for Strategy {
    type Err = StrategyError;
    fn from_str(s: &str) -> Result<Self, StrategyError> {
        Strategy::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == s)
            .ok_or_else(|| StrategyError(s.to_owned()))
    }
}

/// Everything an engine replica can be tuned with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The commit strategy.
    pub strategy: Strategy,
    /// This replica's name as an intake consumer; unique per replica.
    pub replica: String,
    /// The most requests planned and committed in one batch (default 2,048). A batch takes
    /// what is waiting, up to this, so it only grows under load; there a bigger batch puts
    /// more reservations on each worker it touches, and a worker's commit costs Redis about
    /// the same for one reservation as for several.
    pub max_batch: usize,
    /// How long to wait for more requests before planning a non-full batch (zero: none).
    pub linger: Duration,
    /// The worker cache is reloaded whole when older than this (a backstop: commits keep it
    /// fresh in between).
    pub cache_ttl: Duration,
    /// A request that found no room in a cache older than this is planned once more
    /// against a fresh read of the fleet before it is deferred: capacity given back by other
    /// processes (containers ending) reaches the cache only on a reload, and a deferral on a
    /// stale view would hold the request for a whole backoff while the room sits free. So
    /// the fleet is read again at most this often when requests find no room.
    pub recheck_before_defer: Duration,
    /// How often a rejected group's requests are replanned at once before they go to the
    /// backlog.
    pub max_conflict_retries: u32,
    /// The first delay of a request that found no room; doubled per deferral.
    pub backoff_base: Duration,
    /// The longest delay between retries of a request that found no room.
    pub backoff_cap: Duration,
    /// The longest delay between retries of a request held back by its tenant's quota
    /// (default 1 s): room in a quota comes back whenever one of the tenant's containers
    /// ends, which nothing tells the backlog, so such a request looks again more often
    /// than one waiting for the fleet to grow.
    pub quota_backoff_cap: Duration,
    /// A request waiting longer than this fails with "timed out waiting for capacity".
    pub deadline: Duration,
    /// At most this many requests per batch that found no room try to preempt running
    /// containers of lower priority (see [`crate::preempt`]); 0 turns preemption off.
    pub max_preemptions: usize,
    /// How long a worker lock lives (lock-based strategies).
    pub lock_ttl: Duration,
    /// How long a lock-based strategy keeps retrying a busy lock before giving up on it.
    pub lock_wait: Duration,
    /// How often the backlog is checked for due requests.
    pub promote_every: Duration,
    /// How often the unmet demand is read, exported and (with a pool controller) acted on.
    pub provision_every: Duration,
    /// How long a recorded intent to provision a pool holds off other replicas (and this
    /// one) from provisioning that pool again: about the time a new worker takes to join.
    pub provision_ttl: Duration,
    /// How long a worker a pool controller started counts toward its pool's demand before
    /// it registers; after that it is presumed never to come (logged) and no longer counts.
    pub registration_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            strategy: Strategy::default(),
            replica: "engine-0".to_owned(),
            max_batch: 2048,
            linger: Duration::ZERO,
            cache_ttl: Duration::from_secs(5),
            recheck_before_defer: Duration::from_millis(250),
            max_conflict_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(10),
            quota_backoff_cap: Duration::from_secs(1),
            deadline: Duration::from_secs(600),
            max_preemptions: 4,
            lock_ttl: Duration::from_secs(5),
            lock_wait: Duration::from_secs(10),
            promote_every: Duration::from_millis(50),
            provision_every: Duration::from_secs(5),
            provision_ttl: Duration::from_secs(120),
            registration_timeout: Duration::from_secs(300),
        }
    }
}

impl EngineConfig {
    /// The delay before the next retry of a request deferred `deferrals` times before.
    pub fn backoff(&self, deferrals: u32) -> Duration {
        let factor = 1u32.checked_shl(deferrals.min(20)).unwrap_or(u32::MAX);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_by_name() {
        for strategy in Strategy::ALL {
            assert_eq!(strategy.as_str().parse(), Ok(strategy));
        }
        assert!("fast".parse::<Strategy>().is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = EngineConfig::default();
        assert_eq!(config.backoff(0), Duration::from_millis(100));
        assert_eq!(config.backoff(3), Duration::from_millis(800));
        assert_eq!(config.backoff(40), Duration::from_secs(10));
    }
}
