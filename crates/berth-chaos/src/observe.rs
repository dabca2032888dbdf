//! The end of a run: healing what the faults left down, waiting for the fleet to go idle,
//! and reading what the verdict needs (the records of the accepted ids, the workers).

use crate::faults::{Target, lock, restart_server};
use crate::gateway::Gateway;
use crate::verify::{Finding, RecordFacts, WorkerFacts, panics_in};
use berth_api::{ContainerView, ResourcesView};
use berth_core::ContainerState;
use berth_core::{ContainerId, WorkerStatus};
use futures::{StreamExt, stream};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the fleet may take to go idle after a load of `run`: 180 s plus half the run
/// (the backlog a loaded 2-core machine leaves grows with the run; requests deferred for
/// room are retried at most every 10 s).
pub fn drain_timeout(run: Duration) -> Duration {
    Duration::from_secs(180) + run / 2
}
/// How long a read at the end may look for a replica that answers.
const READ_PATIENCE: Duration = Duration::from_secs(30);
/// How many records are read at once.
const READS_IN_FLIGHT: usize = 16;

/// The processes that exited by themselves since the last look.
pub fn exited(target: &Target) -> Vec<Finding> {
    lock(&target.fleet)
        .exited_by_themselves()
        .into_iter()
        .map(|id| Finding {
            id,
            why: "exited though nobody killed it".to_owned(),
        })
        .collect()
}

/// Every panic reported in the process logs in `dir`.
pub fn panics(dir: &Path) -> Vec<Finding> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") && name != "starts.log" {
            let text = std::fs::read(entry.path()).unwrap_or_default();
            found.extend(panics_in(&name, &String::from_utf8_lossy(&text)));
        }
    }
    found
}

/// Restarts every replica that is down and every worker that is stopped or gone.
pub async fn heal(target: &Target) -> Result<(), String> {
    let down = lock(&target.fleet).servers_down();
    for index in down {
        restart_server(target, index).await?;
    }
    let started = lock(&target.fleet)
        .heal_workers()
        .map_err(|e| e.to_string())?;
    if !started.is_empty() {
        tracing::info!(?started, "started workers in the empty slots");
    }
    Ok(())
}

/// Waits until `count` workers that are not lost are registered, for at most `patience`.
pub async fn wait_for_workers(
    gateway: &Gateway,
    count: usize,
    patience: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let (workers, _) = gateway
            .call(Duration::from_secs(5), |c| async move { c.workers().await })
            .await;
        let live = workers.as_ref().map_or(0, |w| {
            w.iter().filter(|w| w.status != WorkerStatus::Lost).count()
        });
        if live >= count {
            return Ok(());
        }
        if started.elapsed() > patience {
            return Err(format!(
                "only {live} of {count} workers registered after {} s",
                patience.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until no container is pending, scheduled or running, for at most `patience`.
/// Returns whether none was scheduled or running in the end.
pub async fn drain(gateway: &Gateway, patience: Duration) -> bool {
    let started = Instant::now();
    loop {
        let busy = count_in(
            gateway,
            &[
                ContainerState::Scheduled,
                ContainerState::Pulling,
                ContainerState::Running,
            ],
        )
        .await;
        let waiting = count_in(gateway, &[ContainerState::Pending]).await;
        if busy == Some(0) && (waiting == Some(0) || started.elapsed() > patience) {
            return true;
        }
        if started.elapsed() > patience {
            tracing::warn!(?busy, ?waiting, "the fleet did not go idle in time");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many containers are in `states` (at least; `None` if no replica answered).
async fn count_in(gateway: &Gateway, states: &[ContainerState]) -> Option<usize> {
    let mut total = 0;
    for &state in states {
        let (list, _) = gateway
            .call(Duration::from_secs(5), |c| async move {
                c.containers(Some(state), Some(1000)).await
            })
            .await;
        total += list.ok()?.len();
    }
    Some(total)
}

/// What the store says of each of `ids` (`None`: it does not know it).
pub async fn records(
    gateway: &Gateway,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<String, Option<RecordFacts>>, String> {
    let reads = stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let facts = record(gateway, &id).await;
            (id, facts)
        })
        .buffer_unordered(READS_IN_FLIGHT);
    let mut found = BTreeMap::new();
    let results: Vec<_> = reads.collect().await;
    for (id, facts) in results {
        found.insert(id, facts?);
    }
    Ok(found)
}

async fn record(gateway: &Gateway, id: &str) -> Result<Option<RecordFacts>, String> {
    let container = ContainerId::new(id).map_err(|e| format!("id {id}: {e}"))?;
    let (view, _) = gateway
        .call(READ_PATIENCE, |c| {
            let container = container.clone();
            async move { c.container(&container).await }
        })
        .await;
    match view {
        Ok(view) => Ok(Some(facts(&view))),
        Err(error) if error.status() == Some(404) => Ok(None),
        Err(error) => Err(format!("reading container {id}: {error}")),
    }
}

fn facts(view: &ContainerView) -> RecordFacts {
    RecordFacts {
        state: view.state,
        reason: view.reason.clone(),
        deferrals: view.deferrals,
        placed: view.scheduled_at_ms.is_some()
            || view.started_at_ms.is_some()
            || matches!(
                view.state,
                ContainerState::Scheduled
                    | ContainerState::Pulling
                    | ContainerState::Running
                    | ContainerState::Exited
                    | ContainerState::Lost
            ),
    }
}

/// Every registered worker.
pub async fn workers(gateway: &Gateway) -> Result<Vec<WorkerFacts>, String> {
    let (list, _) = gateway
        .call(READ_PATIENCE, |c| async move { c.workers().await })
        .await;
    let list = list.map_err(|e| format!("listing the workers: {e}"))?;
    let amount = |r: &ResourcesView| (r.cpu_millicores, r.memory_mib, r.gpu_count);
    Ok(list
        .iter()
        .map(|w| WorkerFacts {
            id: w.id.to_string(),
            status: w.status,
            free: amount(&w.free),
            total: amount(&w.total),
        })
        .collect())
}
