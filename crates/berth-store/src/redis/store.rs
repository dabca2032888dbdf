//! [`RedisStore`]: its constructors, how its calls go out (batched, counted, with the
//! NOSCRIPT fallback), and the [`Store`] implementation, which delegates to the modules
//! that do one kind of work each.

use super::connection::{Connection, Routed};
use super::keys::Keys;
use super::reply;
use super::scripts::{SCRIPTS, ScriptCall};
use super::target::RedisTarget;
use crate::model::*;
use crate::prelude::*;
use crate::{Result, SettleItem, Store, StoreConfig, StoreError, StoreStats};
use async_trait::async_trait;
use berth_core::{
    Assignment, AttemptId, ContainerRecord, ContainerState, PoolDemand, ReclaimOutcome, Transition,
    Violation, WorkerRegistration,
};
use berth_core::{ContainerId, ContainerRequest, PoolName, Worker, WorkerId, WorkerStatus};
use redis::{Cmd, RedisError, Value};
use std::time::Duration;

/// The Redis store, on one standalone server or a Redis Cluster.
///
/// Cheap to share behind an `Arc`: all calls go over one multiplexed connection (which
/// reconnects, and on cluster follows failovers, by itself); blocking reads take a dedicated
/// connection from a small pool.
pub struct RedisStore {
    pub(super) conn: Connection,
    pub(super) keys: Keys,
    pub(super) config: StoreConfig,
    pub(super) stats: StoreStats,
    /// When this client's claims next look for stale claims to take over (see
    /// `RedisStore::reclaim_due`); `None` before the first claim.
    pub(super) reclaim_at: parking_lot::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("conn", &self.conn)
            .finish()
    }
}

/// One call of a batch: a script, or a plain command routed by its key.
#[derive(Debug, Clone)]
pub(super) enum Call {
    Script(ScriptCall),
    Command(Routed),
}

impl Call {
    /// A plain command on `key`.
    pub(super) fn command(key: impl Into<String>, cmd: Cmd) -> Call {
        Call::Command(Routed {
            key: key.into(),
            cmd,
        })
    }

    fn routed(&self) -> Routed {
        match self {
            Call::Script(call) => Routed {
                key: call.first_key().to_owned(),
                cmd: call.evalsha(),
            },
            Call::Command(routed) => routed.clone(),
        }
    }
}

impl RedisStore {
    /// Connects to a standalone Redis at `url` (e.g. `redis://127.0.0.1:6379/`), loads the
    /// scripts and creates the intake's consumer group.
    pub async fn connect(url: &str, config: StoreConfig) -> Result<RedisStore> {
        Self::connect_to(&RedisTarget::new(vec![url.to_owned()]), config).await
    }

    /// Connects to a Redis Cluster through any of `urls`, loads the scripts on every node
    /// and creates the intake's consumer group.
    pub async fn connect_cluster(urls: &[String], config: StoreConfig) -> Result<RedisStore> {
        if urls.is_empty() {
            return Err(StoreError::InvalidArgument(
                "a cluster needs at least one node URL".to_owned(),
            ));
        }
        Self::connect_as(&RedisTarget::new(urls.to_vec()), config, true).await
    }

    /// One URL: a standalone server ([`RedisStore::connect`]); several: the nodes of a
    /// cluster ([`RedisStore::connect_cluster`]).
    pub async fn connect_any(urls: &[String], config: StoreConfig) -> Result<RedisStore> {
        Self::connect_to(&RedisTarget::new(urls.to_vec()), config).await
    }

    /// Connects as `target` says (one URL: standalone; several: a Cluster's seeds; its
    /// user, password and TLS certificates), loads the scripts and creates the intake's
    /// consumer group.
    ///
    /// # Errors
    ///
    /// [`StoreError::Connect`] when Redis cannot be reached or refuses the connection,
    /// saying what to fix (refused credentials, a missing password, a user without
    /// rights, a failed TLS handshake); [`StoreError::InvalidArgument`] for a bad URL.
    pub async fn connect_to(target: &RedisTarget, config: StoreConfig) -> Result<RedisStore> {
        Self::connect_as(target, config, target.urls.len() > 1).await
    }

    /// [`RedisStore::connect_to`], on a Cluster if `cluster` (even through one seed).
    async fn connect_as(
        target: &RedisTarget,
        config: StoreConfig,
        cluster: bool,
    ) -> Result<RedisStore> {
        let keys = Keys::new(&config.prefix)?;
        let connected = async {
            let conn = Connection::open(target, cluster).await?;
            // A PING first: an unauthenticated client that sends a large script (SCRIPT
            // LOAD) is cut off by Redis before it can answer NOAUTH.
            conn.command(&redis::cmd("PING")).await?;
            Self::start(conn, keys, config).await
        };
        connected
            .await
            .map_err(|error| super::diagnose::connect_error(target, error))
    }

    async fn start(conn: Connection, keys: Keys, config: StoreConfig) -> Result<RedisStore> {
        let store = RedisStore {
            conn,
            keys,
            config,
            stats: StoreStats::default(),
            reclaim_at: parking_lot::Mutex::new(None),
        };
        store.load_scripts().await?;
        store.create_intake_group().await?;
        Ok(store)
    }

    /// The store's key schema.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// Loads every script into the server's script cache (on cluster: every node's), so
    /// that EVALSHA finds them. Done at connect; a later NOSCRIPT is handled per call.
    pub async fn load_scripts(&self) -> Result<()> {
        let scripts = SCRIPTS.all();
        let count = scripts.len() as u64;
        if self.conn.is_cluster() {
            // SCRIPT LOAD is sent to every node when sent alone, not in a pipeline.
            let loads = scripts.map(|s| s.load_cmd());
            let sends = loads.iter().map(|cmd| self.conn.command(cmd));
            let results = futures::future::join_all(sends).await;
            self.stats.round_trip(count, 0);
            for result in results {
                result.map_err(|e| self.transport_error(e))?;
            }
        } else {
            let calls = scripts
                .iter()
                .map(|s| Routed {
                    key: String::new(),
                    cmd: s.load_cmd(),
                })
                .collect();
            let values = self
                .conn
                .batch(calls)
                .await
                .map_err(|e| self.transport_error(e))?;
            self.stats.round_trip(count, 0);
            for value in values {
                reply::ok(value)?;
            }
        }
        tracing::debug!(scripts = count, "loaded the berth scripts");
        Ok(())
    }

    async fn create_intake_group(&self) -> Result<()> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(self.keys.intake())
            .arg("engine")
            .arg("0")
            .arg("MKSTREAM");
        match self.command(&self.keys.intake(), cmd).await {
            Ok(_) => Ok(()),
            Err(StoreError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `calls` as one round trip and returns each call's reply or error, in order.
    /// Script calls answered NOSCRIPT (a flushed script cache) are sent once more as EVAL
    /// with the script's body (a second round trip), which also reloads them.
    pub(super) async fn run(&self, calls: Vec<Call>) -> Result<Vec<Result<Value>>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut values = self.send(calls.iter().map(Call::routed).collect()).await?;
        let retries = noscript_retries(&calls, &values);
        if !retries.is_empty() {
            let mut names: Vec<&str> = retries.iter().map(|(_, call)| call.script_name()).collect();
            names.sort_unstable();
            names.dedup();
            tracing::warn!(
                calls = retries.len(),
                scripts = ?names,
                "redis answered NOSCRIPT (script cache flushed: restart, failover or SCRIPT FLUSH); resending with EVAL"
            );
            let resend = retries
                .iter()
                .map(|(_, call)| Routed {
                    key: call.first_key().to_owned(),
                    cmd: call.eval(),
                })
                .collect();
            let retried = self.send(resend).await?;
            for ((i, _), value) in retries.iter().zip(retried) {
                if let Some(slot) = values.get_mut(*i) {
                    *slot = value;
                }
            }
        }
        Ok(values.into_iter().map(reply::ok).collect())
    }

    /// One round trip, counted.
    async fn send(&self, calls: Vec<Routed>) -> Result<Vec<Value>> {
        let commands = calls.len() as u64;
        let scripts = calls
            .iter()
            .filter(|c| {
                let name = c.cmd.args_iter().next();
                matches!(name, Some(redis::Arg::Simple(b"EVALSHA" | b"EVAL")))
            })
            .count() as u64;
        let result = self.conn.batch(calls).await;
        self.stats.round_trip(commands, scripts);
        result.map_err(|e| self.transport_error(e))
    }

    /// One script call, one round trip.
    pub(super) async fn script(&self, call: ScriptCall) -> Result<Value> {
        self.one(Call::Script(call)).await
    }

    /// One plain command on `key`, one round trip.
    pub(super) async fn command(&self, key: &str, cmd: Cmd) -> Result<Value> {
        self.one(Call::command(key, cmd)).await
    }

    async fn one(&self, call: Call) -> Result<Value> {
        self.run(vec![call])
            .await?
            .pop()
            .unwrap_or_else(|| Err(reply::unexpected("one reply", &Value::Nil)))
    }

    /// A blocking command on a dedicated connection, one round trip.
    pub(super) async fn blocking(&self, cmd: Cmd, block: Duration) -> Result<Value> {
        let result = self.conn.blocking(&cmd, block).await;
        self.stats.round_trip(1, 0);
        result.map_err(|e| self.transport_error(e))
    }

    /// Logs a lost connection (the client reconnects by itself) and wraps the error.
    pub(super) fn transport_error(&self, error: RedisError) -> StoreError {
        if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
            tracing::warn!(%error, "redis connection error; the client reconnects");
        } else if error.is_cluster_error() {
            tracing::warn!(%error, "redis cluster error (failover or resharding?)");
        }
        StoreError::Redis(error)
    }
}

/// The script calls answered NOSCRIPT, with their index in the batch.
fn noscript_retries<'a>(calls: &'a [Call], values: &[Value]) -> Vec<(usize, &'a ScriptCall)> {
    calls
        .iter()
        .zip(values)
        .enumerate()
        .filter_map(|(i, (call, value))| match call {
            Call::Script(script) if reply::is_noscript(value) => Some((i, script)),
            _ => None,
        })
        .collect()
}

/// The most entries one call takes (claim, assignments, promote): larger `max` values, such
/// as `usize::MAX` for "everything", are capped here; callers get "at most max" either way.
pub(super) const MAX_BATCH: usize = 100_000;

/// Milliseconds of a duration, at least 1 (Redis reads 0 as "forever" or "none").
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[async_trait]
impl Fleet for RedisStore {
    async fn register_worker(&self, registration: &WorkerRegistration) -> Result<Worker> {
        self.register(registration).await
    }

    async fn heartbeat(&self, worker: &WorkerId, epoch: Option<u64>, now_ms: u64) -> Result<()> {
        self.beat(worker, epoch, now_ms, None).await
    }

    async fn heartbeat_with_images(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        now_ms: u64,
        images: &[String],
    ) -> Result<()> {
        self.beat(worker, epoch, now_ms, Some(images)).await
    }

    async fn set_worker_status(&self, worker: &WorkerId, status: WorkerStatus) -> Result<Worker> {
        self.set_status(worker, status).await
    }

    async fn worker(&self, worker: &WorkerId) -> Result<Option<Worker>> {
        self.read_worker(worker).await
    }

    async fn workers(&self) -> Result<Vec<Worker>> {
        self.read_workers().await
    }

    async fn quarantined(&self) -> Result<Vec<crate::Violation>> {
        self.read_quarantined().await
    }

    async fn fleet(&self) -> Result<(Vec<Worker>, Vec<crate::Violation>)> {
        self.read_fleet_and_quarantined().await
    }

    async fn heartbeat_of(&self, worker: &WorkerId) -> Result<Option<u64>> {
        self.read_heartbeat(worker).await
    }

    async fn heartbeats(&self) -> Result<Vec<(WorkerId, u64)>> {
        self.read_heartbeats().await
    }

    async fn deregister_worker(&self, worker: &WorkerId) -> Result<()> {
        self.remove_worker(worker).await
    }
}

#[async_trait]
impl Bookings for RedisStore {
    async fn commit(&self, groups: &[CommitGroup]) -> Result<Vec<CommitOutcome>> {
        self.commit_groups(groups).await
    }

    async fn release(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
        epoch: Option<u64>,
    ) -> Result<ReleaseOutcome> {
        self.release_container(worker, container, attempt, epoch)
            .await
    }

    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>> {
        self.deliver(worker, epoch, max, wait).await
    }

    async fn ack_assignment(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        delivery: &str,
    ) -> Result<()> {
        self.ack(worker, epoch, delivery).await
    }

    async fn owners(&self, container: &ContainerId) -> Result<Vec<(WorkerId, AttemptId)>> {
        self.container_owners(container).await
    }

    async fn reclaim(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        self.reclaim_container(worker, container, attempt, ContainerState::Lost, reason)
            .await
    }

    async fn owned(&self, worker: &WorkerId) -> Result<Vec<berth_core::invariants::OwnedEntry>> {
        self.owned_by(worker).await
    }

    async fn preempt(&self, preemption: &PreemptionCommit) -> Result<CommitOutcome> {
        self.preempt_on_worker(preemption).await
    }

    async fn preempted(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        self.reclaim_container(
            worker,
            container,
            attempt,
            ContainerState::Preempted,
            reason,
        )
        .await
    }
}

#[async_trait]
impl Intake for RedisStore {
    async fn submit(&self, requests: &[ContainerRequest]) -> Result<Vec<SubmitOutcome>> {
        self.submit_requests(requests).await
    }

    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Claim>> {
        self.claim_requests(consumer, max, wait).await
    }

    async fn settle(&self, items: &[SettleItem]) -> Result<Vec<SettleOutcome>> {
        self.settle_claims(items).await
    }

    async fn promote_due(&self, now_ms: u64, max: usize) -> Result<usize> {
        self.promote(now_ms, max).await
    }

    async fn unmet_demand(&self) -> Result<Vec<PoolDemand>> {
        self.read_demand().await
    }

    async fn claim_provisioning(
        &self,
        pool: &PoolName,
        intent: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.provisioning_intent(pool, intent, ttl).await
    }

    async fn backlog_len(&self) -> Result<u64> {
        self.count_backlog().await
    }

    async fn intake_len(&self) -> Result<u64> {
        self.count_intake().await
    }
}

#[async_trait]
impl Records for RedisStore {
    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>> {
        self.read_container(id).await
    }

    async fn transition(
        &self,
        id: &ContainerId,
        transition: &Transition,
    ) -> Result<ContainerRecord> {
        self.move_container(id, transition).await
    }

    async fn containers(
        &self,
        state: Option<ContainerState>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>> {
        self.list_containers(state, limit).await
    }

    async fn append_logs(
        &self,
        container: &ContainerId,
        lines: &[String],
        keep: usize,
    ) -> Result<()> {
        self.push_logs(container, lines, keep).await
    }

    async fn logs(&self, container: &ContainerId, after: u64) -> Result<LogSlice> {
        self.read_logs(container, after).await
    }

    async fn cancel(&self, container: &ContainerId) -> Result<ContainerRecord> {
        self.cancel_container(container).await
    }

    async fn cancel_requested(&self, containers: &[ContainerId]) -> Result<Vec<ContainerId>> {
        self.cancellations(containers).await
    }
}

#[async_trait]
impl Inspection for RedisStore {
    async fn check(&self, options: crate::CheckOptions) -> Result<Vec<Violation>> {
        self.check_invariants(&options).await
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

#[async_trait]
impl WorkerLocks for RedisStore {
    async fn lock_worker(&self, worker: &WorkerId, ttl: Duration) -> Result<Option<LockToken>> {
        self.lock(worker, ttl).await
    }

    async fn commit_locked(
        &self,
        lock: &LockToken,
        expected_version: u64,
        group: &CommitGroup,
    ) -> Result<CommitOutcome> {
        self.commit_under_lock(lock, expected_version, group).await
    }

    async fn unlock_worker(&self, lock: &LockToken) -> Result<bool> {
        self.unlock(lock).await
    }
}

#[async_trait]
impl crate::Quotas for RedisStore {
    async fn put_tenant(&self, tenant: &berth_core::Tenant) -> Result<()> {
        self.store_tenant(tenant).await
    }

    async fn remove_tenant(&self, name: &berth_core::TenantName) -> Result<bool> {
        self.delete_tenant(name).await
    }

    async fn tenants(&self) -> Result<Vec<berth_core::Tenant>> {
        self.read_tenants().await
    }

    async fn usage(&self) -> Result<Vec<(String, berth_core::Usage)>> {
        self.read_usage().await
    }

    async fn hold(&self, holds: &[crate::Hold]) -> Result<Vec<crate::HoldOutcome>> {
        self.hold_quota(holds).await
    }
}

#[async_trait]
impl Credentials for RedisStore {
    async fn put_credential(&self, credential: &berth_core::Credential) -> Result<()> {
        self.store_credential(credential).await
    }

    async fn credential(&self, id: &berth_core::TokenId) -> Result<Option<berth_core::Credential>> {
        self.read_credential(id).await
    }

    async fn credentials(&self) -> Result<Vec<berth_core::Credential>> {
        self.read_credentials().await
    }

    async fn revoke_credentials(&self, ids: &[berth_core::TokenId]) -> Result<usize> {
        self.delete_credentials(ids).await
    }
}

impl Store for RedisStore {
    fn worker_locks(&self) -> Option<&dyn WorkerLocks> {
        Some(self)
    }
}
