//! Priority preemption: which running containers a request that cannot fit anywhere may
//! stop to make room for itself, and on which worker.
//!
//! A running container may be stopped for a request when its own request is `preemptible`
//! (it accepts interruption, as it accepts preemptible workers) and its priority is below
//! the request's. [`choose`] looks at each worker the request could run on if it were
//! empty enough, and finds there the smallest set of such victims whose capacity (CPU,
//! memory, GPU devices), added to what is free, lets the request in: the fewest victims,
//! then the lowest highest priority among them, then the lowest sum of priorities. Across
//! workers the same order picks the worker, then its id (so replicas agree). Only the
//! [`MAX_CONSIDERED`] lowest-priority victims of a worker are searched (exhaustively, by
//! growing set size): the search stays bounded on a worker running hundreds of containers.
//!
//! A container requeued because it was preempted may not preempt others before it is
//! placed again ([`crate::lifecycle::was_preempted`]): no cascade.

use crate::gpu_fit::{self, GpuAsk};
use crate::{AttemptId, ContainerId, ContainerRequest, DeviceShare, Resources, Worker, WorkerId};

/// The most victims of one worker the search considers (the lowest-priority ones).
pub const MAX_CONSIDERED: usize = 10;

/// A running container as preemption sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The container.
    pub container: ContainerId,
    /// The attempt its worker holds it under.
    pub attempt: AttemptId,
    /// The worker running it.
    pub worker: WorkerId,
    /// Its request's priority.
    pub priority: i32,
    /// Whether its request accepts interruption.
    pub preemptible: bool,
    /// What it holds.
    pub resources: Resources,
    /// The device shares it holds.
    pub devices: Vec<DeviceShare>,
}

/// What [`choose`] decided: stop `victims` on `worker` and book the request there on
/// `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    /// The worker.
    pub worker: WorkerId,
    /// The containers to stop, all running on `worker`.
    pub victims: Vec<Running>,
    /// The device shares the request gets (empty without GPUs).
    pub devices: Vec<DeviceShare>,
}

impl Preemption {
    /// The reason each victim carries.
    pub fn reason(&self, preemptor: &ContainerRequest) -> String {
        format!(
            "by {} (priority {}) on worker {}",
            preemptor.id, preemptor.priority, self.worker
        )
    }
}

/// True when `request` may stop `victim`: the victim accepts interruption and has a lower
/// priority.
pub fn may_preempt(request: &ContainerRequest, victim: &Running) -> bool {
    victim.preemptible && victim.priority < request.priority
}

/// The best preemption for `request` among `workers`, stopping some of `running` (the
/// running containers of those workers), or `None` when no set of victims makes room on
/// any of them. See the module's documentation for the order.
pub fn choose(
    request: &ContainerRequest,
    workers: &[Worker],
    running: &[Running],
) -> Option<Preemption> {
    workers
        .iter()
        .filter_map(|worker| {
            let victims: Vec<&Running> = running
                .iter()
                .filter(|r| r.worker == worker.id && may_preempt(request, r))
                .collect();
            on_worker(request, worker, victims)
        })
        .min_by(|a, b| {
            rank(&a.victims)
                .cmp(&rank(&b.victims))
                .then_with(|| a.worker.cmp(&b.worker))
        })
}

/// The order between victim sets: fewer, then a lower highest priority, then a lower sum.
fn rank(victims: &[Running]) -> (usize, i32, i64) {
    let highest = victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
    let sum = victims.iter().map(|v| i64::from(v.priority)).sum();
    (victims.len(), highest, sum)
}

/// The best victim set on one worker, if any makes room.
fn on_worker(
    request: &ContainerRequest,
    worker: &Worker,
    mut victims: Vec<&Running>,
) -> Option<Preemption> {
    if victims.is_empty() {
        return None;
    }
    victims.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.container.cmp(&b.container))
    });
    victims.truncate(MAX_CONSIDERED);
    let n = victims.len();
    for size in 1..=n {
        let best = subsets(n, size)
            .filter_map(|picked| {
                let set: Vec<Running> = picked.iter().map(|&i| victims[i].clone()).collect();
                let devices = room_after(request, worker, &set)?;
                Some((set, devices))
            })
            .min_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)));
        if let Some((victims, devices)) = best {
            return Some(Preemption {
                worker: worker.id.clone(),
                victims,
                devices,
            });
        }
    }
    None
}

/// The devices `request` gets on `worker` once `victims` are gone, or `None` when it
/// still does not fit (by every rule of [`crate::feasibility::check`], and on the devices).
fn room_after(
    request: &ContainerRequest,
    worker: &Worker,
    victims: &[Running],
) -> Option<Vec<DeviceShare>> {
    let mut emptier = worker.clone();
    for victim in victims {
        emptier.free = emptier.free.checked_add(victim.resources)?;
        if !emptier.credit_devices(&victim.devices) {
            return None;
        }
    }
    let free = emptier.free;
    crate::feasibility::check(&emptier, &free, request).ok()?;
    match request.gpu_ask() {
        GpuAsk::None => Some(Vec::new()),
        ask => gpu_fit::choose(&emptier.device_slots(), ask),
    }
}

/// Every `size`-element subset of `0..n`, as sorted index lists, in lexicographic order.
fn subsets(n: usize, size: usize) -> impl Iterator<Item = Vec<usize>> {
    let mut next = (size <= n).then(|| (0..size).collect::<Vec<usize>>());
    std::iter::from_fn(move || {
        let current = next.take()?;
        let mut following = current.clone();
        // The rightmost index that can still move right, moved, and those after it reset.
        if let Some(i) = (0..size).rev().find(|&i| following[i] < n - size + i) {
            following[i] += 1;
            for j in i + 1..size {
                following[j] = following[j - 1] + 1;
            }
            next = Some(following);
        }
        Some(current)
    })
}

#[cfg(test)]
mod tests;
