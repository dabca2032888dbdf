//! The invariant check over a dump of a store, shared by both stores so that they judge
//! alike. Reading the dump is the store's job; judging it is this module's, and it is pure:
//! the time it judges at is given.

use crate::{
    AttemptId, Charge, ContainerId, ContainerRecord, ContainerState, DeviceShare, GPU_MILLI,
    Resources, Usage, Worker,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// One broken invariant found by a store's check (`berth_store::Inspection::check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The key or entity concerned (a worker id, a container id, a Redis key).
    pub subject: String,
    /// What is wrong, with the numbers.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)
    }
}

/// One container a worker owns, as its ownership entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEntry {
    /// The container.
    pub container: ContainerId,
    /// The attempt that reserved it.
    pub attempt: AttemptId,
    /// What it holds.
    pub resources: Resources,
    /// The GPU device shares it holds (empty without GPUs).
    pub devices: Vec<DeviceShare>,
}

/// One entry of a worker's assignment queue (delivered or not, not acknowledged yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAssignment {
    /// The entry's delivery id (on Redis: the stream entry id).
    pub delivery: String,
    /// The container it assigns.
    pub container: ContainerId,
    /// The attempt it was committed under.
    pub attempt: AttemptId,
}

/// One worker as the check sees it.
#[derive(Debug, Clone)]
pub struct WorkerDump {
    /// The worker: capacity, status.
    pub worker: Worker,
    /// The containers it owns.
    pub owned: Vec<OwnedEntry>,
    /// Its last heartbeat, in ms since the Unix epoch (registration counts as one).
    pub heartbeat_ms: u64,
    /// What its assignment queue holds.
    pub assignments: Vec<QueuedAssignment>,
    /// Where that queue lives, to name it in a violation (on Redis: its key).
    pub queue: String,
}

/// Everything the check looks at.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Every registered worker.
    pub workers: Vec<WorkerDump>,
    /// Every container record.
    pub records: Vec<ContainerRecord>,
    /// The ids waiting for placement: those with an entry in the intake (claimed or not)
    /// and those in the backlog.
    pub queued: HashSet<ContainerId>,
    /// Records and entries that could not be read, already phrased as violations.
    pub unreadable: Vec<Violation>,
    /// Every container's charge to its tenant's quota (read after the records).
    pub charges: Vec<(ContainerId, Charge)>,
    /// What each tenant holds, as the store keeps it (read with the charges, atomically).
    pub usage: Vec<(String, Usage)>,
}

/// When the check runs and how long a silent worker still counts as alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// The time the check judges at, in ms since the Unix epoch.
    pub now_ms: u64,
    /// A worker whose last heartbeat is older than this (in ms) is dead: nothing scheduled
    /// or running may be owned by it. A server passes more than its reaper needs to declare
    /// a worker lost and reclaim what it owns.
    pub dead_after_ms: u64,
    /// How long a change made in two atomic steps on two slots may show its middle state
    /// before the check reports it (0: report at once). A server's final-report handler
    /// moves the record to its end and then releases the reservation; a check between the
    /// two sees an ended container still owned. If the second step never comes (the server
    /// died), the worker's next heartbeat or the reaper releases it, so a server passes its
    /// dead-after time. It also covers the Redis check's own reads: the workers are read
    /// before the records, so a placement settled after the check began can look unowned.
    pub in_flight_ms: u64,
}

impl CheckOptions {
    /// The dead-after time `berth check --redis` uses unless told otherwise.
    pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(60);

    /// A check at `now_ms` that calls a worker dead after `dead_after` of silence.
    pub fn at(now_ms: u64, dead_after: Duration) -> CheckOptions {
        CheckOptions {
            now_ms,
            dead_after_ms: u64::try_from(dead_after.as_millis()).unwrap_or(u64::MAX),
            in_flight_ms: 0,
        }
    }

    /// The same check, leaving two-step changes younger than `in_flight` alone (see
    /// [`CheckOptions::in_flight_ms`]).
    pub fn with_in_flight(self, in_flight: Duration) -> CheckOptions {
        CheckOptions {
            in_flight_ms: u64::try_from(in_flight.as_millis()).unwrap_or(u64::MAX),
            ..self
        }
    }

    /// True when something done at `at_ms` may still be half-way through a two-step change.
    /// Never with an in-flight time of 0.
    fn in_flight(&self, at_ms: Option<u64>) -> bool {
        self.in_flight_ms > 0
            && at_ms.is_some_and(|at| at.saturating_add(self.in_flight_ms) >= self.now_ms)
    }

    /// True when a placement settled at `at_ms` may have been settled after this check read
    /// its workers: at or after the check began, give or take a second of clock difference
    /// between processes (no more than [`CheckOptions::in_flight_ms`]).
    /// Never with an in-flight time of 0.
    fn settled_during(&self, at_ms: Option<u64>) -> bool {
        let margin = self.in_flight_ms.min(CLOCK_MARGIN_MS);
        self.in_flight_ms > 0 && at_ms.is_some_and(|at| at.saturating_add(margin) >= self.now_ms)
    }

    /// A check that takes every registered worker for alive: for stores whose workers do
    /// not heartbeat (benchmarks, the demo, tests that are not about liveness). Time plays
    /// no part in it (nothing is dead and nothing is in flight), so it judges at time 0.
    pub fn ignoring_heartbeats() -> CheckOptions {
        CheckOptions {
            now_ms: 0,
            dead_after_ms: u64::MAX,
            in_flight_ms: 0,
        }
    }

    /// How long ago `heartbeat_ms` was (0 for a heartbeat from the future).
    pub fn silence_ms(&self, heartbeat_ms: u64) -> u64 {
        self.now_ms.saturating_sub(heartbeat_ms)
    }

    /// True when a worker last heard from at `heartbeat_ms` counts as alive.
    pub fn is_alive(&self, heartbeat_ms: u64) -> bool {
        self.silence_ms(heartbeat_ms) <= self.dead_after_ms
    }
}

/// Clock difference allowed between the process that stamps a placement and the one that
/// checks (see [`CheckOptions::settled_during`]).
const CLOCK_MARGIN_MS: u64 = 1000;

/// Every broken invariant in the dump (see a store's check (`berth_store::Inspection::check`)).
pub fn violations(dump: &Dump, options: &CheckOptions) -> Vec<Violation> {
    let mut found = dump.unreadable.clone();
    let mut owners: HashMap<&ContainerId, Vec<(&WorkerDump, &OwnedEntry)>> = HashMap::new();
    for worker in &dump.workers {
        check_capacity(&worker.worker, &worker.owned, &mut found);
        check_assignments(worker, &mut found);
        for entry in &worker.owned {
            owners
                .entry(&entry.container)
                .or_default()
                .push((worker, entry));
        }
    }
    let mut shared: Vec<_> = owners.iter().filter(|(_, h)| h.len() > 1).collect();
    shared.sort_by_key(|(container, _)| *container);
    for (container, holders) in shared {
        let names: Vec<String> = holders
            .iter()
            .map(|(w, _)| w.worker.id.to_string())
            .collect();
        found.push(violation(
            container,
            format!("owned by {} workers: {}", holders.len(), names.join(", ")),
        ));
    }
    for record in &dump.records {
        let holders = owners
            .get(&record.request.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        check_record(record, holders, dump, options, &mut found);
    }
    check_charges(dump, &mut found);
    found
}

/// Each tenant's usage is the sum of its charges, and no ended container is still charged.
/// (A charge whose record the dump lacks is left alone: on Redis the records are read first,
/// so it may be a container accepted since. A record read as ended is never charged again.)
fn check_charges(dump: &Dump, found: &mut Vec<Violation>) {
    let mut sums: BTreeMap<&str, Usage> = BTreeMap::new();
    for (_, charge) in &dump.charges {
        sums.entry(&charge.tenant).or_default().add(charge);
    }
    let kept: BTreeMap<&str, &Usage> = dump.usage.iter().map(|(t, u)| (t.as_str(), u)).collect();
    let tenants: BTreeSet<&str> = sums.keys().chain(kept.keys()).copied().collect();
    let nothing = Usage::default();
    for tenant in tenants {
        let sum = sums.get(tenant).unwrap_or(&nothing);
        let usage = kept.get(tenant).copied().unwrap_or(&nothing);
        if sum != usage {
            found.push(Violation {
                subject: format!("tenant {tenant}"),
                detail: format!(
                    "usage {usage:?} is not the sum of its containers' charges {sum:?}"
                ),
            });
        }
    }
    let ended: HashSet<&ContainerId> = dump
        .records
        .iter()
        .filter(|r| r.state.is_terminal())
        .map(|r| &r.request.id)
        .collect();
    for (container, charge) in &dump.charges {
        if ended.contains(container) {
            found.push(violation(
                container,
                format!("ended but still charged to tenant {}", charge.tenant),
            ));
        }
    }
}

fn check_capacity(worker: &Worker, owned: &[OwnedEntry], found: &mut Vec<Violation>) {
    let held = owned
        .iter()
        .try_fold(Resources::ZERO, |sum, e| sum.checked_add(e.resources));
    // With a device list, GPUs are accounted per device (check_devices); the count of free
    // GPUs is the wholly free devices, which owned fractions also take from.
    let devices = !worker.gpus.is_empty();
    let accounted = held.and_then(|held| held.checked_add(worker.free));
    let balanced = match accounted {
        Some(sum) if devices => {
            sum.cpu_millicores == worker.total.cpu_millicores
                && sum.memory_mib == worker.total.memory_mib
        }
        other => other == Some(worker.total),
    };
    if !balanced {
        found.push(violation(
            &worker.id,
            format!(
                "free ({}) + owned ({}) != total ({})",
                worker.free,
                held.map_or("overflow".to_owned(), |h| h.to_string()),
                worker.total
            ),
        ));
    }
    if !worker.free.fits_in(&worker.total) {
        found.push(violation(
            &worker.id,
            format!("free ({}) exceeds total ({})", worker.free, worker.total),
        ));
    }
    if devices {
        check_devices(worker, owned, found);
    }
}

/// Per device: what is free plus the shares owned on it is the whole device (on a healthy
/// device; an unhealthy one is not booked, so only its shares must fit), no share names a
/// device the worker lacks, each entry holds as many whole devices as it counts GPUs, and
/// the free GPU count is the number of wholly free healthy devices.
fn check_devices(worker: &Worker, owned: &[OwnedEntry], found: &mut Vec<Violation>) {
    let mut shared: HashMap<u32, u64> = HashMap::new();
    for entry in owned {
        let whole = entry.devices.iter().filter(|d| d.is_whole()).count();
        if u32::try_from(whole) != Ok(entry.resources.gpu_count) {
            found.push(violation(
                &worker.id,
                format!(
                    "{} holds {} GPUs but {whole} whole devices ({})",
                    entry.container,
                    entry.resources.gpu_count,
                    DeviceShare::format_list(&entry.devices)
                ),
            ));
        }
        for share in &entry.devices {
            *shared.entry(share.index).or_default() += u64::from(share.milli);
        }
    }
    for (index, milli) in &shared {
        if !worker.gpus.iter().any(|g| g.device.index == *index) {
            found.push(violation(
                &worker.id,
                format!("{milli} milli-GPUs are owned on device {index}, which it does not have"),
            ));
        }
    }
    for gpu in &worker.gpus {
        let index = gpu.device.index;
        let held = shared.get(&index).copied().unwrap_or(0);
        let whole = u64::from(GPU_MILLI);
        let broken = if gpu.device.healthy {
            u64::from(gpu.free_milli) + held != whole
        } else {
            held > whole
        };
        if broken && gpu.device.healthy {
            found.push(violation(
                &worker.id,
                format!(
                    "device {index}: free ({}) + owned ({held}) milli-GPUs != {whole}",
                    gpu.free_milli
                ),
            ));
        } else if broken {
            found.push(violation(
                &worker.id,
                format!("device {index} (unhealthy): owned {held} milli-GPUs exceed {whole}"),
            ));
        }
    }
    let wholly_free = worker
        .device_slots()
        .iter()
        .filter(|s| s.free == GPU_MILLI)
        .count();
    if u32::try_from(wholly_free) != Ok(worker.free.gpu_count) {
        found.push(violation(
            &worker.id,
            format!(
                "free GPU count {} != {wholly_free} wholly free devices",
                worker.free.gpu_count
            ),
        ));
    }
}

/// Every queued assignment must be for a container the worker owns under the same attempt.
fn check_assignments(worker: &WorkerDump, found: &mut Vec<Violation>) {
    let owned: HashMap<&ContainerId, &AttemptId> = worker
        .owned
        .iter()
        .map(|e| (&e.container, &e.attempt))
        .collect();
    for entry in &worker.assignments {
        let problem = match owned.get(&entry.container) {
            None => format!(
                "but worker {} does not own {}",
                worker.worker.id, entry.container
            ),
            Some(attempt) if **attempt != entry.attempt => format!(
                "but worker {} owns {} under attempt {attempt}",
                worker.worker.id, entry.container
            ),
            Some(_) => continue,
        };
        found.push(violation(
            &worker.queue,
            format!(
                "entry {} assigns {} (attempt {}) {problem}",
                entry.delivery, entry.container, entry.attempt
            ),
        ));
    }
}

fn check_record(
    record: &ContainerRecord,
    holders: &[(&WorkerDump, &OwnedEntry)],
    dump: &Dump,
    options: &CheckOptions,
    found: &mut Vec<Violation>,
) {
    let id = &record.request.id;
    match record.state {
        state if state.is_placed() => {
            let holder = holders.iter().find(|(w, e)| {
                Some(&w.worker.id) == record.worker.as_ref()
                    && Some(&e.attempt) == record.attempt.as_ref()
            });
            match holder {
                None if options.settled_during(record.scheduled_at_ms) => {}
                None => found.push(violation(
                    id,
                    format!(
                        "{} on worker {} (attempt {}) but that worker does not own it",
                        record.state,
                        display(record.worker.as_ref()),
                        display(record.attempt.as_ref())
                    ),
                )),
                Some((worker, _)) if !options.is_alive(worker.heartbeat_ms) => {
                    found.push(violation(
                        id,
                        format!(
                            "{} on worker {} (attempt {}) but that worker is dead: last \
                             heartbeat {} ms ago, dead after {} ms",
                            record.state,
                            worker.worker.id,
                            display(record.attempt.as_ref()),
                            options.silence_ms(worker.heartbeat_ms),
                            options.dead_after_ms
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        ContainerState::Pending if !dump.queued.contains(id) => {
            found.push(violation(
                id,
                format!(
                    "{} but neither in the intake nor in the backlog (deferred {} times)",
                    record.state, record.deferrals
                ),
            ));
        }
        state
            if state.is_terminal()
                && !holders.is_empty()
                && !options.in_flight(record.finished_at_ms) =>
        {
            let (worker, entry) = holders[0];
            found.push(violation(
                id,
                format!(
                    "{state} but still owned by worker {} ({} leaked)",
                    worker.worker.id, entry.resources
                ),
            ));
        }
        _ => {}
    }
}

fn display<T: std::fmt::Display>(value: Option<&T>) -> String {
    value.map_or("none".to_owned(), ToString::to_string)
}

fn violation(subject: &impl std::fmt::Display, detail: String) -> Violation {
    Violation {
        subject: subject.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests;
