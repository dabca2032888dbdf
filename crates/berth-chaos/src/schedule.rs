//! The fault schedule: a pure function of the seed and the run's shape, so a run's faults
//! (their kinds, targets, planned start times and holds) are reproduced by its seed.
//!
//! Faults are dealt from a shuffled deck of every kind the run supports (reshuffled when
//! empty), so a run long enough for a few faults sees each kind. They are planned one after
//! another: each starts a random gap after the previous one is expected to be healed, and
//! none is planned to end after the run.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use std::time::Duration;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a `berth server` replica, then restart it on the same port.
    KillServer,
    /// SIGKILL a `berth worker`, then start a fresh one (a new worker id) in its slot.
    KillWorker,
    /// SIGSTOP a worker for longer than the heartbeat timeout plus a reaper period, so it is
    /// declared lost while frozen, then SIGCONT it (fencing must hold).
    StopWorker,
    /// SIGKILL a Redis Cluster primary, wait for its replica to take over, then restart it
    /// (it rejoins as a replica; cluster only).
    KillRedisPrimary,
    /// `CLIENT PAUSE <ms> ALL` on every Redis primary.
    PauseRedis,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::KillServer,
        FaultKind::KillWorker,
        FaultKind::StopWorker,
        FaultKind::KillRedisPrimary,
        FaultKind::PauseRedis,
    ];

    /// The name used in summaries and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::KillServer => "kill_server",
            FaultKind::KillWorker => "kill_worker",
            FaultKind::StopWorker => "stop_worker",
            FaultKind::KillRedisPrimary => "kill_redis_primary",
            FaultKind::PauseRedis => "pause_redis",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fault as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFault {
    /// When it is injected, from the start of the load.
    #[serde(rename = "at_ms", serialize_with = "as_millis")]
    pub at: Duration,
    /// What it does.
    pub kind: FaultKind,
    /// Which replica or worker slot (an index below their count), or, for a Redis primary,
    /// a number reduced modulo the primaries that can fail over when it happens.
    pub target: usize,
    /// How long the fault lasts before it is healed: the downtime of a killed process, the
    /// length of a stop or a pause (zero for a primary kill: the failover is the heal).
    #[serde(rename = "hold_ms", serialize_with = "as_millis")]
    pub hold: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The shape of the run the schedule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// How long the run lasts.
    pub run: Duration,
    /// Whether Redis is a cluster (primary kills are only planned then).
    pub cluster: bool,
    /// How many server replicas there are.
    pub replicas: usize,
    /// How many worker slots there are.
    pub workers: usize,
    /// The shortest stop of a worker: long enough for it to be declared lost.
    pub min_stop: Duration,
}

/// How long the first fault waits after the load starts, at least.
const FIRST_AT_MS: (u64, u64) = (3_000, 6_000);
/// The gap between the expected heal of one fault and the next fault.
const GAP_MS: (u64, u64) = (2_000, 6_000);
/// The expected time of a Redis failover (the schedule's spacing only; a fault that takes
/// longer delays the next one).
const FAILOVER_ESTIMATE: Duration = Duration::from_secs(8);
/// The expected time to restart a killed process (the schedule's spacing only).
const RESTART_ESTIMATE: Duration = Duration::from_secs(1);

/// The faults of a run with this seed, in order of their planned start.
pub fn schedule(seed: u64, config: &ScheduleConfig) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|k| config.cluster || *k != FaultKind::KillRedisPrimary)
        .collect();
    let mut deck: Vec<FaultKind> = Vec::new();
    let mut at = Duration::from_millis(rng.random_range(FIRST_AT_MS.0..=FIRST_AT_MS.1));
    let mut planned = Vec::new();
    loop {
        if deck.is_empty() {
            deck = kinds.clone();
            deck.shuffle(&mut rng);
        }
        let Some(kind) = deck.pop() else {
            return planned;
        };
        let fault = plan_one(&mut rng, kind, at, config);
        let healed = at + expected_length(&fault);
        if healed > config.run {
            return planned;
        }
        planned.push(fault);
        at = healed + Duration::from_millis(rng.random_range(GAP_MS.0..=GAP_MS.1));
    }
}

fn plan_one(
    rng: &mut StdRng,
    kind: FaultKind,
    at: Duration,
    config: &ScheduleConfig,
) -> PlannedFault {
    let millis =
        |rng: &mut StdRng, low: u64, high: u64| Duration::from_millis(rng.random_range(low..=high));
    let (target, hold) = match kind {
        FaultKind::KillServer => (
            rng.random_range(0..config.replicas.max(1)),
            millis(rng, 300, 1_500),
        ),
        FaultKind::KillWorker => (
            rng.random_range(0..config.workers.max(1)),
            millis(rng, 1_000, 4_000),
        ),
        FaultKind::StopWorker => (
            rng.random_range(0..config.workers.max(1)),
            config.min_stop + millis(rng, 0, 2_000),
        ),
        FaultKind::KillRedisPrimary => (rng.random_range(0..1_000), Duration::ZERO),
        FaultKind::PauseRedis => (0, millis(rng, 1_500, 4_000)),
    };
    PlannedFault {
        at,
        kind,
        target,
        hold,
    }
}

/// How long a fault is expected to last until healed, for spacing the schedule.
fn expected_length(fault: &PlannedFault) -> Duration {
    match fault.kind {
        FaultKind::KillServer | FaultKind::KillWorker => fault.hold + RESTART_ESTIMATE,
        FaultKind::KillRedisPrimary => FAILOVER_ESTIMATE,
        FaultKind::StopWorker | FaultKind::PauseRedis => fault.hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seconds: u64, cluster: bool) -> ScheduleConfig {
        ScheduleConfig {
            run: Duration::from_secs(seconds),
            cluster,
            replicas: 3,
            workers: 8,
            min_stop: Duration::from_secs(12),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for seed in [0, 1, 7, u64::MAX] {
            let a = schedule(seed, &config(600, true));
            let b = schedule(seed, &config(600, true));
            assert_eq!(a, b, "seed {seed}");
            assert!(!a.is_empty());
        }
    }

    #[test]
    fn other_seeds_give_other_schedules() {
        let a = schedule(1, &config(600, true));
        let b = schedule(2, &config(600, true));
        assert_ne!(a, b);
    }

    #[test]
    fn faults_are_in_order_within_the_run_and_on_real_targets() {
        for seed in 0..50 {
            let run = config(120, seed % 2 == 0);
            let faults = schedule(seed, &run);
            let mut previous_end = Duration::ZERO;
            for fault in &faults {
                assert!(
                    fault.at >= previous_end,
                    "seed {seed}: overlapping {fault:?}"
                );
                previous_end = fault.at + expected_length(fault);
                assert!(
                    previous_end <= run.run,
                    "seed {seed}: {fault:?} ends after the run"
                );
                match fault.kind {
                    FaultKind::KillServer => assert!(fault.target < 3),
                    FaultKind::KillWorker | FaultKind::StopWorker => assert!(fault.target < 8),
                    _ => {}
                }
                if fault.kind == FaultKind::StopWorker {
                    assert!(fault.hold >= run.min_stop);
                }
            }
        }
    }

    #[test]
    fn primary_kills_only_on_a_cluster_and_every_kind_comes_up() {
        let standalone = schedule(3, &config(600, false));
        assert!(
            standalone
                .iter()
                .all(|f| f.kind != FaultKind::KillRedisPrimary)
        );
        let cluster = schedule(3, &config(600, true));
        for kind in FaultKind::ALL {
            assert!(cluster.iter().any(|f| f.kind == kind), "{kind} missing");
        }
    }

    #[test]
    fn a_run_too_short_for_any_fault_has_none() {
        assert!(schedule(1, &config(2, true)).is_empty());
    }
}
