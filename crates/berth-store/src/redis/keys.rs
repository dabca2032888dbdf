//! The Redis key schema.
//!
//! Every key starts with the configured prefix `P` (`berth` by default,
//! [`crate::StoreConfig::prefix`]). Keys that one atomic script touches share one hash tag
//! (`{...}`), so each script runs on one hash slot and works unchanged on Redis Cluster.
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:workers` | SET | the ids of registered workers (the index); its own slot |
//! | `P:{w:ID}:worker` | HASH | worker `ID`: one field per static attribute, named and formatted by `berth_core::attributes::WORKER_ATTRIBUTES` (`pool`, `priority`, `preemptible` 0/1, `requires_pool_selector` 0/1, `policy`, `gpu_type` `""` for none, `runtime`: absent in a hash written before it, read as `process`, `gpu_devices` `index:uuid:memory_mib:health;...`: absent or `""` without GPU devices), and the fields the scripts manage: `status`, `total_cpu`, `total_mem`, `total_gpu`, `free_cpu`, `free_mem`, `free_gpu` (the wholly free bookable devices), `gpu_free` (`index:milli,...`: the free milli-GPUs of each bookable device; an unhealthy device is not listed; absent when no device is bookable), `version`, `epoch` (the agent's lease: bumped by registration and by a move into `lost`), `heartbeat_ms` |
//! | `P:{w:ID}:owned` | HASH | container id -> `attempt cpu mem gpu [devices]` (devices `index:milli,...`, absent without GPUs): what the worker owns, and what a release credits back |
//! | `P:{w:ID}:assign` | STREAM | the worker's assignments (fields `container`, `attempt`, `cpu`, `mem`, `gpu`, `devices` (only with device shares), `payload` JSON); consumer group `agent`, consumer = the worker id; acknowledged entries are deleted |
//! | `P:{w:ID}:lock` | STRING | the worker's lock for the lock-based path: a random token, `SET NX PX`, released by compare-and-delete |
//! | `P:{q}:intake` | STREAM | accepted requests waiting for placement (field `id`); consumer group `engine`, consumer = the scheduler replica; settled entries are deleted |
//! | `P:{q}:backlog` | ZSET | deferred container ids, score = not-before in ms |
//! | `P:{q}:containers` | SET | every container id ever accepted (what [`crate::Inspection::check`] walks) |
//! | `P:{q}:logs:ID` | LIST | the last output lines of a container (RPUSH, LTRIM) |
//! | `P:{q}:provision:POOL` | STRING | the intent to provision workers for a pool (`SET NX PX`): one replica provisions per TTL |
//! | `P:{q}:tenants` | HASH | tenant -> its policy as JSON (`berth_core::Tenant`: quota, weight) |
//! | `P:{q}:charges` | HASH | container id -> what it holds of its tenant's quota: `tenant cpu mem gpu_milli [gpu_type]`; taken by the hold (tenants with a policy) or the settlement, given back by the step that ends, defers, fails or requeues the record |
//! | `P:{q}:usage` | HASH | tenant -> the sum of its charges: `containers cpu mem gpu_milli [TYPE=milli ...]`; no field for a tenant holding nothing |
//! | `P:{q}:provisioned:POOL` | HASH | worker id -> `started_ms expires_ms`: the workers a provisioner started for the pool that have not registered yet; each call is one command on this one key |
//! | `P:{a}:credentials` | HASH | token id -> the token's credential as JSON (`berth_core::Credential`: role, SHA-256 digest of the secret, name, created_ms); never the secret itself |
//! | `P:{q}:c:ID` | HASH | container record: `request` (JSON), `state`, `worker`, `attempt`, `scheduled_ms`, `started_ms`, `finished_ms`, `exit_code`, `reason`, `deferrals`, `demand_pool` and `demand_gpu` (the pool a deferred request waits for), `cancel` (1 when a cancellation was asked for), `revoked` (attempts that may never schedule it, separated by spaces), `retries` (how many times it was requeued after its worker died; absent: 0); absent fields are `None` |
//!
//! Everything one worker's commit, release, registration or delivery touches carries
//! `{w:ID}`; everything submit, claim, settle, promote and transition touch carries `{q}`.
//! The claim and screen scripts derive record keys (`P:{q}:c:` + id) inside Lua instead of
//! declaring them in `KEYS`; that is allowed only because those keys share the `{q}` tag
//! of the declared intake key, which the scripts verify.
//!
//! An intake entry carries only the container id: the request is read from the record (one
//! copy, the source of truth).

use crate::{Result, StoreError};
use berth_core::{ContainerId, PoolName, WorkerId};

/// The hash tag of the intake's keys.
const INTAKE_TAG: &str = "{q}";

/// Builds every key of one store from its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`. The prefix must be non-empty and free of braces (they would
    /// change the hash tags) and whitespace.
    pub fn new(prefix: &str) -> Result<Keys> {
        let bad = |c: char| c == '{' || c == '}' || c.is_whitespace() || c.is_control();
        if prefix.is_empty() || prefix.chars().any(bad) {
            return Err(StoreError::InvalidArgument(format!(
                "key prefix {prefix:?} must be non-empty, without braces or whitespace"
            )));
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:workers`, the set of registered worker ids.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// `P:{w:ID}:worker`, the worker's hash.
    pub fn worker(&self, id: &WorkerId) -> String {
        self.worker_key(id, "worker")
    }

    /// `P:{w:ID}:owned`, what the worker owns.
    pub fn owned(&self, id: &WorkerId) -> String {
        self.worker_key(id, "owned")
    }

    /// `P:{w:ID}:assign`, the worker's assignment stream.
    pub fn assign(&self, id: &WorkerId) -> String {
        self.worker_key(id, "assign")
    }

    /// `P:{w:ID}:lock`, the worker's lock.
    pub fn lock(&self, id: &WorkerId) -> String {
        self.worker_key(id, "lock")
    }

    /// `P:{q}:intake`, the stream of requests waiting for placement.
    pub fn intake(&self) -> String {
        format!("{}:{INTAKE_TAG}:intake", self.prefix)
    }

    /// `P:{q}:backlog`, deferred requests by not-before time.
    pub fn backlog(&self) -> String {
        format!("{}:{INTAKE_TAG}:backlog", self.prefix)
    }

    /// `P:{q}:containers`, every accepted container id.
    pub fn containers(&self) -> String {
        format!("{}:{INTAKE_TAG}:containers", self.prefix)
    }

    /// `P:{q}:c:ID`, a container record.
    pub fn record(&self, id: &ContainerId) -> String {
        format!("{}{id}", self.record_prefix())
    }

    /// `P:{q}:logs:ID`, the kept output lines of a container.
    pub fn logs(&self, id: &ContainerId) -> String {
        format!("{}:{INTAKE_TAG}:logs:{id}", self.prefix)
    }

    /// `P:{q}:logn:ID`, how many output lines were ever appended to a container's log.
    pub fn log_count(&self, id: &ContainerId) -> String {
        format!("{}:{INTAKE_TAG}:logn:{id}", self.prefix)
    }

    /// `P:{q}:provision:POOL`, the recorded intent to provision workers for a pool.
    pub fn provisioning(&self, pool: &PoolName) -> String {
        format!("{}:{INTAKE_TAG}:provision:{pool}", self.prefix)
    }

    /// `P:{q}:tenants`, tenants' policies (quota and weight) by tenant.
    pub fn tenants(&self) -> String {
        format!("{}:{INTAKE_TAG}:tenants", self.prefix)
    }

    /// `P:{q}:usage`, what each tenant holds: the sum of its charges.
    pub fn usage(&self) -> String {
        format!("{}:{INTAKE_TAG}:usage", self.prefix)
    }

    /// `P:{q}:charges`, what each placed container holds of its tenant's quota.
    pub fn charges(&self) -> String {
        format!("{}:{INTAKE_TAG}:charges", self.prefix)
    }

    /// `P:{q}:provisioned:POOL`, the workers started for a pool and not registered yet.
    pub fn provisioned(&self, pool: &PoolName) -> String {
        format!("{}:{INTAKE_TAG}:provisioned:{pool}", self.prefix)
    }

    /// `P:{a}:credentials`, the API credentials by token id.
    pub fn credentials(&self) -> String {
        format!("{}:{{a}}:credentials", self.prefix)
    }

    /// `P:{q}:c:`, what every record key starts with.
    pub fn record_prefix(&self) -> String {
        format!("{}:{INTAKE_TAG}:c:", self.prefix)
    }

    fn worker_key(&self, id: &WorkerId, what: &str) -> String {
        format!("{}:{{w:{id}}}:{what}", self.prefix)
    }
}

/// The part of `key` that decides its cluster slot: the first non-empty `{...}`, else the
/// whole key. Keys with the same route share a slot.
pub fn route(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn worker_keys_share_the_worker_tag() {
        let keys = Keys::new("berth").unwrap();
        let id = WorkerId::new("w-1").unwrap();
        assert_eq!(keys.worker(&id), "berth:{w:w-1}:worker");
        assert_eq!(keys.owned(&id), "berth:{w:w-1}:owned");
        assert_eq!(keys.assign(&id), "berth:{w:w-1}:assign");
        assert_eq!(keys.lock(&id), "berth:{w:w-1}:lock");
        for key in [keys.owned(&id), keys.assign(&id), keys.lock(&id)] {
            assert_eq!(route(&key), route(&keys.worker(&id)));
        }
        assert_eq!(route(&keys.worker(&id)), "w:w-1");
    }

    #[test]
    fn intake_keys_share_one_tag() {
        let keys = Keys::new("t1").unwrap();
        let c = ContainerId::new("c-9").unwrap();
        assert_eq!(keys.record(&c), "t1:{q}:c:c-9");
        for key in [keys.backlog(), keys.containers(), keys.record(&c)] {
            assert_eq!(route(&key), "q");
        }
        assert_eq!(route(&keys.intake()), "q");
        assert_eq!(route(&keys.workers()), "t1:workers");
    }

    #[test]
    fn refuses_prefixes_that_break_hash_tags() {
        assert!(Keys::new("").is_err());
        assert!(Keys::new("a{b").is_err());
        assert!(Keys::new("a}b").is_err());
        assert!(Keys::new("a b").is_err());
    }

    #[test]
    fn route_follows_the_cluster_rule() {
        assert_eq!(route("{}x"), "{}x");
        assert_eq!(route("a{b}c{d}"), "b");
        assert_eq!(route("plain"), "plain");
    }
}
