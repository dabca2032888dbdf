//! The fault injector: executes the seeded schedule one fault at a time (inject, hold,
//! heal), and right after each injection starts a probe that measures the recovery.
//!
//! **Recovery time** of a fault: the time from its injection until a probe container
//! submitted right after the injection (priority 1000, 100m CPU, 64 MiB, exits at once)
//! has run and EXITED with code 0. A probe that ends LOST or FAILED is replaced by a new
//! one, and the clock keeps running from the injection. It thus covers every way a fault
//! delays a new request: a replica to retry on, a Redis failover or pause, a probe placed
//! on a dead or frozen worker until the reaper gives it back. A probe unfinished after
//! [`PROBE_PATIENCE`] leaves the fault unrecovered.

use crate::fleet::{Fleet, HEARTBEAT_TIMEOUT, REAPER_PERIOD};
use crate::gateway::Gateway;
use crate::load::{Submitted, recording_spec, submit};
use crate::redis::{RedisBackend, RedisFaultError};
use crate::schedule::{FaultKind, PlannedFault};
use berth_core::ContainerState;
use berth_core::{ContainerId, WorkerStatus};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a probe may take before its fault counts as unrecovered.
pub const PROBE_PATIENCE: Duration = Duration::from_secs(180);
/// How long a restarted replica may take to answer `/healthz`.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(30);
/// How much longer than planned a stopped worker stays stopped, at most, waiting for it to
/// be declared lost.
const LOST_PATIENCE: Duration = Duration::from_secs(15);
/// How often a probe's container is looked at.
const PROBE_POLL: Duration = Duration::from_millis(200);

/// The shortest stop that gets a worker declared lost: the heartbeat timeout, a reaper
/// period, and a margin of 3 s.
pub fn min_stop() -> Duration {
    HEARTBEAT_TIMEOUT + REAPER_PERIOD + Duration::from_secs(3)
}

/// Locks a mutex, taking over the data of a holder that panicked (the processes inside
/// must still be killed).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the injector works on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The berth processes.
    pub fleet: Arc<Mutex<Fleet>>,
    /// Redis.
    pub redis: Arc<Mutex<RedisBackend>>,
    /// The replicas' API.
    pub gateway: Arc<Gateway>,
    /// The start log the probes record in.
    pub starts: PathBuf,
    /// When the load started: the zero of every time in the records.
    pub started: Instant,
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// What it did.
    pub kind: FaultKind,
    /// When the schedule planned it, from the start of the load.
    pub planned_at_ms: u64,
    /// When it was injected.
    pub at_ms: u64,
    /// What it hit.
    pub target: String,
    /// Whether the fault was injected (not skipped for want of a target) and probed.
    pub injected: bool,
    /// From the injection until the heal was done (a restart answering, a failover over).
    pub healed_after_ms: u64,
    /// The recovery time (see the module documentation); `None` when unrecovered or not
    /// measured (a fault that could not be injected).
    pub recovery_ms: Option<u64>,
    /// What happened, in words.
    pub note: String,
    /// What went wrong injecting or healing it, if anything.
    pub error: Option<String>,
}

/// What a probe found.
#[derive(Debug, Clone, Default)]
pub struct ProbeResult {
    /// The probe containers the store accepted.
    pub accepted: Vec<String>,
    /// The recovery time, if it recovered.
    pub recovery: Option<Duration>,
}

/// The probes still running after the last fault: `(index of the fault record, result)`.
pub type Probes = JoinSet<(usize, ProbeResult)>;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Executes `plan` until it is done or `stop` fires (the fault under way is still healed).
pub async fn run_faults(
    plan: Vec<PlannedFault>,
    target: Target,
    stop: CancellationToken,
) -> (Vec<FaultRecord>, Probes) {
    let mut records = Vec::new();
    let mut probes = JoinSet::new();
    for fault in plan {
        let due = target.started + fault.at;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(due.into()) => {}
        }
        let index = records.len();
        let record = inject(&target, &fault, index, &mut probes).await;
        match &record.error {
            Some(error) => {
                tracing::error!(kind = %record.kind, target = %record.target, %error, "fault injection failed")
            }
            None => {
                tracing::info!(kind = %record.kind, target = %record.target, note = %record.note, "fault healed")
            }
        }
        records.push(record);
    }
    (records, probes)
}

/// Injects one fault, holds it, heals it.
async fn inject(
    target: &Target,
    fault: &PlannedFault,
    index: usize,
    probes: &mut Probes,
) -> FaultRecord {
    let at = Instant::now();
    let mut record = FaultRecord {
        kind: fault.kind,
        planned_at_ms: millis(fault.at),
        at_ms: millis(target.started.elapsed()),
        target: String::new(),
        injected: false,
        healed_after_ms: 0,
        recovery_ms: None,
        note: String::new(),
        error: None,
    };
    tracing::info!(kind = %fault.kind, at_ms = record.at_ms, "injecting a fault");
    let start_probe = |probes: &mut Probes| {
        let (gateway, starts) = (target.gateway.clone(), target.starts.clone());
        probes.spawn(async move { (index, probe(&gateway, &starts, index, at).await) });
    };
    let probes_before = probes.len();
    let outcome = match fault.kind {
        FaultKind::KillServer => {
            kill_server(target, fault, &mut record, || start_probe(probes)).await
        }
        FaultKind::KillWorker => {
            kill_worker(target, fault, &mut record, || start_probe(probes)).await
        }
        FaultKind::StopWorker => {
            stop_worker(target, fault, &mut record, || start_probe(probes)).await
        }
        FaultKind::KillRedisPrimary => {
            kill_primary(target, fault, &mut record, || start_probe(probes)).await
        }
        FaultKind::PauseRedis => {
            pause_redis(target, fault, &mut record, || start_probe(probes)).await
        }
    };
    record.healed_after_ms = millis(at.elapsed());
    record.injected = probes.len() > probes_before;
    if let Err(error) = outcome {
        record.error = Some(error);
    }
    record
}

async fn kill_server(
    target: &Target,
    fault: &PlannedFault,
    record: &mut FaultRecord,
    probe: impl FnOnce(),
) -> Result<(), String> {
    let replica = fault.target;
    record.target = format!("replica r{replica}");
    if !lock(&target.fleet).kill_server(replica) {
        record.note = "the replica was not running".to_owned();
        return Ok(());
    }
    probe();
    tokio::time::sleep(fault.hold).await;
    restart_server(target, replica).await?;
    record.note = format!(
        "SIGKILLed, down {} ms, restarted on its port",
        millis(fault.hold)
    );
    Ok(())
}

/// Restarts replica `index` on the live Redis nodes and waits for it to answer.
pub async fn restart_server(target: &Target, index: usize) -> Result<(), String> {
    let urls = lock(&target.redis).urls();
    lock(&target.fleet)
        .start_server(index, &urls)
        .map_err(|e| e.to_string())?;
    let client = target.gateway.client(index).ok_or("no such replica")?;
    let started = Instant::now();
    while let Err(error) = client.healthz().await {
        if started.elapsed() > RESTART_PATIENCE {
            return Err(format!(
                "replica r{index} not healthy {} s after its restart: {error}",
                RESTART_PATIENCE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn kill_worker(
    target: &Target,
    fault: &PlannedFault,
    record: &mut FaultRecord,
    probe: impl FnOnce(),
) -> Result<(), String> {
    let killed = lock(&target.fleet).kill_worker(fault.target);
    record.target = killed.unwrap_or_else(|| format!("worker slot {}", fault.target));
    probe();
    tokio::time::sleep(fault.hold).await;
    let fresh = lock(&target.fleet)
        .start_worker(fault.target)
        .map_err(|e| e.to_string())?;
    record.note = format!(
        "SIGKILLed; {fresh} started in its slot {} ms later",
        millis(fault.hold)
    );
    Ok(())
}

async fn stop_worker(
    target: &Target,
    fault: &PlannedFault,
    record: &mut FaultRecord,
    probe: impl FnOnce(),
) -> Result<(), String> {
    let frozen = lock(&target.fleet)
        .freeze_worker(fault.target, true)
        .map_err(|e| e.to_string())?;
    let Some(id) = frozen else {
        record.target = format!("worker slot {}", fault.target);
        record.note = "no worker ran in the slot".to_owned();
        return Ok(());
    };
    record.target = id.clone();
    probe();
    let stopped = Instant::now();
    tokio::time::sleep(fault.hold).await;
    let declared = wait_declared_lost(&target.gateway, &id, LOST_PATIENCE).await;
    lock(&target.fleet)
        .freeze_worker(fault.target, false)
        .map_err(|e| e.to_string())?;
    record.note = format!(
        "SIGSTOPped for {} ms; {}; then SIGCONTed",
        millis(stopped.elapsed()),
        if declared {
            "declared lost meanwhile"
        } else {
            "NOT declared lost meanwhile (fencing untested)"
        }
    );
    Ok(())
}

/// Waits up to `patience` for worker `id` to be reported lost; whether it was.
async fn wait_declared_lost(gateway: &Gateway, id: &str, patience: Duration) -> bool {
    let started = Instant::now();
    loop {
        let (workers, _) = gateway
            .call(Duration::from_secs(5), |c| async move { c.workers().await })
            .await;
        let lost = workers.is_ok_and(|w| {
            w.iter()
                .any(|w| w.id.as_str() == id && w.status == WorkerStatus::Lost)
        });
        if lost {
            return true;
        }
        if started.elapsed() > patience {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn kill_primary(
    target: &Target,
    fault: &PlannedFault,
    record: &mut FaultRecord,
    probe: impl FnOnce(),
) -> Result<(), String> {
    let pick = fault.target;
    let killed = with_redis(target, move |redis| redis.kill_primary(pick)).await?;
    let Some(old) = killed else {
        record.target = "a Redis primary".to_owned();
        record.note = "skipped: no primary has a replica left".to_owned();
        return Ok(());
    };
    record.target = format!("Redis primary on port {old}");
    probe();
    let started = Instant::now();
    let new = with_redis(target, move |redis| redis.wait_failover(old)).await?;
    let failover = millis(started.elapsed());
    with_redis(target, move |redis| redis.restart_node(old)).await?;
    record.note = format!(
        "SIGKILLed; its replica on port {new} took over after {failover} ms; restarted, it \
         rejoined as a replica after {} ms",
        millis(started.elapsed())
    );
    Ok(())
}

async fn pause_redis(
    target: &Target,
    fault: &PlannedFault,
    record: &mut FaultRecord,
    probe: impl FnOnce(),
) -> Result<(), String> {
    let hold = fault.hold;
    let paused = with_redis(target, move |redis| redis.pause_clients(hold)).await?;
    record.target = format!("{paused} Redis primaries");
    probe();
    tokio::time::sleep(hold).await;
    record.note = format!("CLIENT PAUSE {} ALL", millis(hold));
    Ok(())
}

/// Runs blocking work on the Redis backend on a blocking thread.
async fn with_redis<T: Send + 'static>(
    target: &Target,
    work: impl FnOnce(&mut RedisBackend) -> Result<T, RedisFaultError> + Send + 'static,
) -> Result<T, String> {
    let redis = target.redis.clone();
    tokio::task::spawn_blocking(move || work(&mut lock(&redis)).map_err(|e| e.to_string()))
        .await
        .map_err(|e| format!("the Redis task failed: {e}"))?
}

/// Submits probe containers (`probe-<fault>-<n>`) until one exits 0, or [`PROBE_PATIENCE`]
/// passes since `since`.
pub async fn probe(
    gateway: &Gateway,
    starts: &std::path::Path,
    fault: usize,
    since: Instant,
) -> ProbeResult {
    let mut result = ProbeResult::default();
    for n in 1.. {
        let Some(left) = PROBE_PATIENCE.checked_sub(since.elapsed()) else {
            break;
        };
        let id = format!("probe-{fault:03}-{n}");
        let mut spec = recording_spec(id.clone(), 100, 64, "0", starts);
        spec.priority = 1000;
        match submit(gateway, &spec, left).await {
            Submitted::Accepted { .. } => result.accepted.push(id.clone()),
            Submitted::Rejected { why, .. } => {
                tracing::warn!(%id, %why, "a probe was refused; trying another");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Submitted::Unacknowledged { .. } => continue,
        }
        match watch_probe(gateway, &id, since).await {
            Some(true) => {
                result.recovery = Some(since.elapsed());
                break;
            }
            Some(false) => continue,
            None => break,
        }
    }
    result
}

/// Follows probe `id`: `Some(true)` when it exited 0, `Some(false)` when it ended
/// otherwise, `None` when [`PROBE_PATIENCE`] since `since` ran out first.
async fn watch_probe(gateway: &Gateway, id: &str, since: Instant) -> Option<bool> {
    let container = ContainerId::new(id).ok()?;
    while since.elapsed() < PROBE_PATIENCE {
        tokio::time::sleep(PROBE_POLL).await;
        let (view, _) = gateway
            .call(Duration::from_secs(5), |c| {
                let container = container.clone();
                async move { c.container(&container).await }
            })
            .await;
        let Ok(view) = view else { continue };
        match view.state {
            ContainerState::Exited => return Some(view.exit_code == Some(0)),
            ContainerState::Failed | ContainerState::Lost => return Some(false),
            _ => {}
        }
    }
    None
}
