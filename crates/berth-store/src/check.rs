//! The invariant check over a dump of a store, shared by both stores so that they judge
//! alike. Reading the dump is the store's job; judging it is this module's.

use crate::{AttemptId, ContainerRecord, ContainerState, Violation};
use berth_core::{ContainerId, Resources, Worker};
use std::collections::HashMap;

/// One container a worker owns, as its ownership entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEntry {
    /// The container.
    pub container: ContainerId,
    /// The attempt that reserved it.
    pub attempt: AttemptId,
    /// What it holds.
    pub resources: Resources,
}

/// Everything the check looks at.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// Each worker with the containers it owns.
    pub workers: Vec<(Worker, Vec<OwnedEntry>)>,
    /// Every container record.
    pub records: Vec<ContainerRecord>,
    /// Records that could not be read, already phrased as violations.
    pub unreadable: Vec<Violation>,
}

/// Every broken invariant in the dump (see [`crate::Store::check`]).
pub fn violations(dump: &Dump) -> Vec<Violation> {
    let mut found = dump.unreadable.clone();
    let mut owners: HashMap<&ContainerId, Vec<(&Worker, &OwnedEntry)>> = HashMap::new();
    for (worker, owned) in &dump.workers {
        check_capacity(worker, owned, &mut found);
        for entry in owned {
            owners
                .entry(&entry.container)
                .or_default()
                .push((worker, entry));
        }
    }
    for (container, holders) in &owners {
        if holders.len() > 1 {
            let names: Vec<String> = holders.iter().map(|(w, _)| w.id.to_string()).collect();
            found.push(violation(
                container,
                format!("owned by {} workers: {}", holders.len(), names.join(", ")),
            ));
        }
    }
    for record in &dump.records {
        check_record(record, owners.get(&record.request.id), &mut found);
    }
    found
}

fn check_capacity(worker: &Worker, owned: &[OwnedEntry], found: &mut Vec<Violation>) {
    let held = owned
        .iter()
        .try_fold(Resources::ZERO, |sum, e| sum.checked_add(e.resources));
    let accounted = held.and_then(|held| held.checked_add(worker.free));
    if accounted != Some(worker.total) {
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
}

fn check_record(
    record: &ContainerRecord,
    holders: Option<&Vec<(&Worker, &OwnedEntry)>>,
    found: &mut Vec<Violation>,
) {
    let id = &record.request.id;
    let holders = holders.map(Vec::as_slice).unwrap_or_default();
    match record.state {
        ContainerState::Scheduled | ContainerState::Running => {
            let held_as_recorded = holders.iter().any(|(w, e)| {
                Some(&w.id) == record.worker.as_ref() && Some(&e.attempt) == record.attempt.as_ref()
            });
            if !held_as_recorded {
                found.push(violation(
                    id,
                    format!(
                        "{} on worker {} (attempt {}) but that worker does not own it",
                        record.state,
                        display(record.worker.as_ref()),
                        display(record.attempt.as_ref())
                    ),
                ));
            }
        }
        state if state.is_terminal() && !holders.is_empty() => {
            let (worker, entry) = holders[0];
            found.push(violation(
                id,
                format!(
                    "{state} but still owned by worker {} ({} leaked)",
                    worker.id, entry.resources
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
