//! Helpers shared by the engine tests: fleets, requests and end-of-test audits, the two
//! store backends ([`Backend`]), bounded waiting ([`eventually`]), record tallies
//! ([`tally`]), the [`gate::Gate`] store wrapper and the scenarios every backend runs
//! ([`scenarios`]).

#![allow(dead_code, clippy::unwrap_used)]

pub mod gate;
pub mod scenarios;

use berth_core::*;
use berth_engine::{EngineConfig, Outcome, Strategy, Ticket};
use berth_localredis::LocalRedis;
use berth_store::prelude::*;
use berth_store::*;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

pub fn cpu_pool() -> PoolAttributes {
    PoolAttributes::plain(PoolName::new("cpu").unwrap())
}

/// Registers `n` equal CPU workers `w0..wn` with `cpu` millicores and `mem` MiB each.
pub async fn fleet(store: &dyn Store, n: usize, cpu: u64, mem: u64) -> Vec<WorkerId> {
    fleet_in(store, n, Resources::new(cpu, mem, 0), cpu_pool()).await
}

/// Registers `n` equal CPU workers `w0..wn` of `size` in `pool`.
pub async fn fleet_in(
    store: &dyn Store,
    n: usize,
    size: Resources,
    pool: PoolAttributes,
) -> Vec<WorkerId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = WorkerId::new(format!("w{i}")).unwrap();
        store
            .register_worker(&WorkerRegistration {
                devices: Vec::new(),
                id: id.clone(),
                pool: pool.clone(),
                status: WorkerStatus::Available,
                total: size,
                gpu_type: None,
                runtime: RuntimeName::PROCESS,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// A CPU request `id` for `cpu` millicores and 1 GiB, submitted at `at_ms`.
pub fn request(id: &str, cpu: u64, priority: i32, at_ms: u64) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new(id).unwrap(),
        tenant: "tenant".into(),
        resources: Resources::new(cpu, 1024, 0),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority,
        submitted_at_ms: at_ms,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

/// Asserts the store's invariants hold and returns how many containers each worker owns
/// (from the records: scheduled containers by worker).
pub async fn audit(store: &dyn Store, ids: &[ContainerId]) -> HashMap<WorkerId, usize> {
    let violations = store
        .check(CheckOptions::ignoring_heartbeats())
        .await
        .unwrap();
    assert!(violations.is_empty(), "violations: {violations:#?}");
    let mut per_worker = HashMap::new();
    for id in ids {
        let record = store
            .container(id)
            .await
            .unwrap()
            .expect("no request is lost");
        if record.state == ContainerState::Scheduled {
            *per_worker
                .entry(record.worker.clone().unwrap())
                .or_insert(0) += 1;
        }
    }
    per_worker
}

pub fn shared(store: impl Store + 'static) -> Arc<dyn Store> {
    Arc::new(store)
}

/// The longest any test waits for something that should happen (only reached on failure:
/// it bounds a hang, it does not time anything).
pub const WAIT: Duration = Duration::from_secs(60);

/// How often [`eventually`] probes.
const POLL: Duration = Duration::from_millis(20);

/// Where a test's store lives.
#[derive(Clone)]
pub enum Backend {
    /// The embedded [`MemoryStore`].
    Memory,
    /// A [`RedisStore`] on a local redis-server shared by the tests of this binary that run
    /// at the same time; each test uses its own key prefix.
    Redis(Arc<LocalRedis>),
}

impl Backend {
    /// The Redis backend, starting the server if no running test holds one.
    pub fn redis() -> Backend {
        // A weak reference, so that the server is killed (on drop) when the last test that
        // uses it ends: a server held by a static would outlive the test process.
        static SERVER: Mutex<Weak<LocalRedis>> = Mutex::new(Weak::new());
        let mut slot = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = slot.upgrade() {
            return Backend::Redis(server);
        }
        let server = Arc::new(
            LocalRedis::start().unwrap_or_else(|error| panic!("starting redis-server: {error}")),
        );
        *slot = Arc::downgrade(&server);
        Backend::Redis(server)
    }

    /// `clients` clients of one fresh, empty store named after `test`: for memory, one
    /// store shared `clients` times; for Redis, `clients` connections on a fresh prefix.
    pub async fn stores(
        &self,
        test: &str,
        config: StoreConfig,
        clients: usize,
    ) -> Vec<Arc<dyn Store>> {
        match self {
            Backend::Memory => {
                let store: Arc<dyn Store> = Arc::new(MemoryStore::new(config));
                vec![store; clients]
            }
            Backend::Redis(server) => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let prefix = format!("t:{test}:{}:{n}", std::process::id());
                let config = StoreConfig { prefix, ..config };
                let mut stores: Vec<Arc<dyn Store>> = Vec::new();
                for _ in 0..clients {
                    let store = RedisStore::connect(&server.url(), config.clone())
                        .await
                        .unwrap_or_else(|error| panic!("connecting to {}: {error}", server.url()));
                    stores.push(Arc::new(store));
                }
                stores
            }
        }
    }

    /// One client of a fresh, empty store; see [`Backend::stores`].
    pub async fn store(&self, test: &str, config: StoreConfig) -> Arc<dyn Store> {
        self.stores(test, config, 1).await.remove(0)
    }
}

/// An engine configuration for `strategy` and replica `replica`, defaults otherwise.
pub fn engine_config(strategy: Strategy, replica: &str) -> EngineConfig {
    EngineConfig {
        strategy,
        replica: replica.to_owned(),
        ..EngineConfig::default()
    }
}

/// `n` CPU requests `{prefix}{i}` of `cpu` millicores and 1 GiB each.
pub fn requests(
    prefix: &str,
    n: usize,
    cpu: u64,
    priority: i32,
    at_ms: u64,
) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| request(&format!("{prefix}{i}"), cpu, priority, at_ms))
        .collect()
}

/// The ids of some requests.
pub fn ids_of(requests: &[ContainerRequest]) -> Vec<ContainerId> {
    requests.iter().map(|r| r.id.clone()).collect()
}

/// A container id from a literal.
pub fn cid(id: &str) -> ContainerId {
    ContainerId::new(id).unwrap()
}

/// Probes until `probe` answers `Ok`, for at most `timeout` (by tokio's clock, so paused
/// time works too); panics with the last answer otherwise.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        if start.elapsed() >= timeout {
            panic!("gave up after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (at most [`WAIT`]) for a ticket's outcome.
pub async fn outcome(ticket: Ticket) -> Outcome {
    let id = ticket.id().clone();
    tokio::time::timeout(WAIT, ticket.outcome())
        .await
        .unwrap_or_else(|_| panic!("no outcome for {id} within {WAIT:?}"))
        .unwrap()
}

/// The record of `id`, which must exist.
pub async fn record(store: &dyn Store, id: &ContainerId) -> ContainerRecord {
    store
        .container(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no record for {id}: the request was lost"))
}

/// The records of `ids` (`None` for unknown ids), read concurrently in chunks.
pub async fn records(store: &dyn Store, ids: &[ContainerId]) -> Vec<Option<ContainerRecord>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let reads = futures::future::join_all(chunk.iter().map(|id| store.container(id))).await;
        for read in reads {
            out.push(read.unwrap());
        }
    }
    out
}

/// Where a set of requests stands, by their records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Scheduled (placed and not started).
    pub scheduled: usize,
    /// Pending, deferred at least once, with the reason it waits: in the backlog (or
    /// being retried).
    pub waiting: usize,
    /// Pending and never settled yet (no reason recorded).
    pub unsettled: usize,
    /// Failed with a reason.
    pub failed: usize,
    /// Records in any other state, or failed without a reason: "id: state".
    pub odd: Vec<String>,
    /// Ids without a record: lost requests.
    pub missing: Vec<ContainerId>,
    /// Scheduled containers by worker.
    pub per_worker: HashMap<WorkerId, usize>,
}

impl Tally {
    /// True when every request has a record and has been settled at least once (placed,
    /// waiting with a reason, or failed with a reason).
    pub fn settled(&self) -> bool {
        self.unsettled == 0 && self.odd.is_empty() && self.missing.is_empty()
    }

    /// A short description for failure messages.
    pub fn brief(&self) -> String {
        format!(
            "scheduled {}, waiting {}, unsettled {}, failed {}, odd {:?}, missing {}",
            self.scheduled,
            self.waiting,
            self.unsettled,
            self.failed,
            self.odd.iter().take(5).collect::<Vec<_>>(),
            self.missing.len()
        )
    }
}

/// Tallies the records of `ids`.
pub async fn tally(store: &dyn Store, ids: &[ContainerId]) -> Tally {
    let mut tally = Tally::default();
    for (id, record) in ids.iter().zip(records(store, ids).await) {
        let Some(record) = record else {
            tally.missing.push(id.clone());
            continue;
        };
        match (record.state, &record.reason) {
            (ContainerState::Scheduled, _) => {
                tally.scheduled += 1;
                let worker = record.worker.clone().unwrap();
                *tally.per_worker.entry(worker).or_insert(0) += 1;
            }
            (ContainerState::Pending, Some(_)) if record.deferrals > 0 => tally.waiting += 1,
            (ContainerState::Pending, None) if record.deferrals == 0 => tally.unsettled += 1,
            (ContainerState::Failed, Some(_)) => tally.failed += 1,
            (state, reason) => tally.odd.push(format!(
                "{id}: {state} (reason {reason:?}, deferrals {})",
                record.deferrals
            )),
        }
    }
    tally
}

/// Asserts that the store's invariants hold.
pub async fn assert_clean(store: &dyn Store) {
    let violations = store
        .check(CheckOptions::ignoring_heartbeats())
        .await
        .unwrap();
    assert!(violations.is_empty(), "violations: {violations:#?}");
}

/// Free CPU over the whole fleet, in millicores.
pub async fn free_cpu(store: &dyn Store) -> u64 {
    store
        .workers()
        .await
        .unwrap()
        .iter()
        .map(|w| w.free.cpu_millicores)
        .sum()
}

/// Ends a placed container as its worker would: running, exited, capacity released.
pub async fn finish(store: &dyn Store, id: &ContainerId) {
    let placed = record(store, id).await;
    let worker = placed.worker.clone().unwrap();
    let attempt = placed.attempt.clone().unwrap();
    let running = Transition::Running {
        worker: worker.clone(),
        attempt: attempt.clone(),
    };
    store.transition(id, &running).await.unwrap();
    let exited = Transition::Exited {
        worker: worker.clone(),
        attempt: attempt.clone(),
        exit_code: 0,
    };
    store.transition(id, &exited).await.unwrap();
    let released = store
        .release(&worker, id, Some(&attempt), None)
        .await
        .unwrap();
    assert!(
        matches!(released, ReleaseOutcome::Released { .. }),
        "{released:?}"
    );
}
