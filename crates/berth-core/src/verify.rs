//! The planner's post-conditions, as a function that tests and debug builds call.

use crate::gpu_fit::{self, DeviceSlot, GpuAsk};
use crate::plan::{Plan, Snapshot};
use crate::{ContainerRequest, DeviceShare, Resources, Worker, feasibility};
use std::collections::HashMap;

/// Checks a plan against its inputs and returns the first broken post-condition:
/// every request placed or explained exactly once; every placement on a known worker at the
/// snapshot's version, feasible there, and carrying the request's id and resources; no
/// worker's free capacity going below zero.
pub fn verify_plan(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    plan: &Plan,
) -> Result<(), String> {
    verify_plan_at(snapshot, requests, plan, 0)
}

/// [`verify_plan`] for a plan made at `now_ms` ([`crate::PlanOptions::now_ms`]): a placement
/// is feasible when one of its request's effective choices at that time allows it
/// ([`feasibility::check_at`]).
pub fn verify_plan_at(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    plan: &Plan,
    now_ms: u64,
) -> Result<(), String> {
    let mut seen = vec![0u32; requests.len()];
    let by_id: HashMap<&str, &Worker> = snapshot
        .workers
        .iter()
        .map(|w| (w.id.as_str(), w))
        .collect();
    // Free capacity left on each worker by the groups checked so far: a plan that names one
    // worker in two groups must not get the worker's free capacity twice.
    let mut left: HashMap<&str, (Resources, Vec<DeviceSlot>)> = HashMap::new();
    for group in &plan.workers {
        let worker = by_id
            .get(group.worker.as_str())
            .ok_or_else(|| format!("plan names unknown worker {}", group.worker))?;
        if group.base_version != worker.version {
            return Err(format!("worker {} has a stale base version", worker.id));
        }
        let (free, slots) = left.entry(worker.id.as_str()).or_insert_with(|| {
            let slots = worker.device_slots();
            let whole = worker.free.gpu_count.min(gpu_fit::whole_free(&slots));
            let free = Resources {
                gpu_count: whole,
                ..worker.free
            };
            (free, slots)
        });
        for placement in &group.placements {
            let request = requests
                .get(placement.request)
                .ok_or_else(|| format!("placement of unknown request {}", placement.request))?;
            count(&mut seen, placement.request)?;
            if request.id != placement.container || request.resources != placement.resources {
                return Err(format!(
                    "placement {} does not match its request",
                    request.id
                ));
            }
            let waited = now_ms.saturating_sub(request.submitted_at_ms);
            feasibility::check_at(worker, free, request, &snapshot.pools, waited)
                .map_err(|why| format!("{} on {}: {why}", request.id, worker.id))?;
            check_devices(request.gpu_ask(), &placement.devices)
                .map_err(|why| format!("{} on {}: {why}", request.id, worker.id))?;
            let broken = gpu_fit::wholes_broken(slots, &placement.devices);
            if !gpu_fit::take(slots, &placement.devices) {
                return Err(format!(
                    "{} on {}: devices {} are not free",
                    request.id,
                    worker.id,
                    DeviceShare::format_list(&placement.devices)
                ));
            }
            *free = free
                .checked_sub(request.resources)
                .unwrap_or(Resources::ZERO);
            free.gpu_count = free.gpu_count.saturating_sub(broken);
        }
    }
    for unplaced in &plan.unplaced {
        count(&mut seen, unplaced.request)?;
    }
    match seen.iter().position(|&n| n != 1) {
        Some(missing) => Err(format!("request {missing} is neither placed nor explained")),
        None => Ok(()),
    }
}

/// Checks that `devices` are what `ask` asks for: none without GPUs, `n` distinct whole
/// devices, or one share of the fraction.
fn check_devices(ask: GpuAsk, devices: &[DeviceShare]) -> Result<(), String> {
    let fine = match ask {
        GpuAsk::None => devices.is_empty(),
        GpuAsk::Whole(n) => {
            let mut indices: Vec<u32> = devices.iter().map(|d| d.index).collect();
            indices.sort_unstable();
            indices.dedup();
            devices.iter().all(DeviceShare::is_whole)
                && indices.len() == devices.len()
                && u32::try_from(devices.len()) == Ok(n)
        }
        GpuAsk::Fraction(milli) => matches!(devices, [share] if share.milli == milli),
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "devices {} do not match the ask {ask:?}",
            DeviceShare::format_list(devices)
        ))
    }
}

fn count(seen: &mut [u32], index: usize) -> Result<(), String> {
    let slot = seen
        .get_mut(index)
        .ok_or_else(|| format!("unknown request index {index}"))?;
    *slot += 1;
    if *slot > 1 {
        return Err(format!("request {index} appears twice in the plan"));
    }
    Ok(())
}
