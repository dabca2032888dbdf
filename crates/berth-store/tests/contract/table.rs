//! The state machine's table ([`lifecycle::cell`]), cell by cell, through a store's
//! `transition`: the memory store follows the table through `lifecycle::apply`, the Redis
//! store through the table rendered into its `transition` script; both must say what the
//! table says.

use super::{Connect, cid, open, register, request, wid};
use berth_core::lifecycle::{self, Facts, Outcome, STATES, TransitionKind};
use berth_core::*;
use berth_store::*;
use std::collections::BTreeSet;

/// Who a transition comes from, against the record's holder (worker `w1`, attempt `a1`,
/// with attempt `r0` revoked while it was pending).
const WHO: [(&str, &str); 4] = [("w1", "a1"), ("w2", "a1"), ("w1", "a2"), ("w1", "r0")];

/// The exit code a record is brought to `exited` with.
const EXIT_CODE: i32 = 3;

/// Every transition of `kind` the table's guards tell apart: from each of [`WHO`], and for
/// an exit with the record's code and another.
fn variants(kind: TransitionKind) -> Vec<Transition> {
    let by = |(worker, attempt): (&str, &str)| (wid(worker), AttemptId(attempt.to_owned()));
    let reason = "the table says so".to_owned();
    match kind {
        TransitionKind::Scheduled => WHO
            .map(by)
            .map(|(worker, attempt)| Transition::Scheduled { worker, attempt })
            .to_vec(),
        TransitionKind::Pulling => WHO
            .map(by)
            .map(|(worker, attempt)| Transition::Pulling { worker, attempt })
            .to_vec(),
        TransitionKind::Running => WHO
            .map(by)
            .map(|(worker, attempt)| Transition::Running { worker, attempt })
            .to_vec(),
        TransitionKind::Exited => WHO
            .map(by)
            .into_iter()
            .flat_map(|(worker, attempt)| {
                [EXIT_CODE, EXIT_CODE + 1].map(|exit_code| Transition::Exited {
                    worker: worker.clone(),
                    attempt: attempt.clone(),
                    exit_code,
                })
            })
            .collect(),
        TransitionKind::Failed => vec![Transition::Failed { reason }],
        TransitionKind::Lost => vec![Transition::Lost { reason }],
    }
}

/// Submits `id` and brings its record into `state` through the store's public API, held by
/// `w1` and `a1` once placed (a failed one is failed after being scheduled, so that it has a
/// holder), with attempt `r0` revoked; returns the record.
async fn bring(store: &dyn Store, id: &ContainerId, state: ContainerState) -> ContainerRecord {
    store.submit(&[request(id.as_str(), 100)]).await.unwrap();
    let revoke = store
        .reclaim(&wid("w1"), id, &AttemptId("r0".into()), "revoked")
        .await
        .unwrap();
    assert_eq!(revoke, ReclaimOutcome::Released);
    let (worker, attempt) = (wid("w1"), AttemptId("a1".into()));
    let path = match state {
        ContainerState::Pending => vec![],
        ContainerState::Scheduled => vec![TransitionKind::Scheduled],
        ContainerState::Pulling => vec![TransitionKind::Scheduled, TransitionKind::Pulling],
        ContainerState::Running => vec![TransitionKind::Scheduled, TransitionKind::Running],
        ContainerState::Exited => vec![
            TransitionKind::Scheduled,
            TransitionKind::Running,
            TransitionKind::Exited,
        ],
        ContainerState::Failed => vec![TransitionKind::Scheduled, TransitionKind::Failed],
        ContainerState::Lost => vec![TransitionKind::Scheduled, TransitionKind::Lost],
        // Running, then preempted (below): preemption is not a forward transition.
        ContainerState::Preempted => vec![TransitionKind::Scheduled, TransitionKind::Running],
    };
    for kind in path {
        let step = match kind {
            TransitionKind::Scheduled => Transition::Scheduled {
                worker: worker.clone(),
                attempt: attempt.clone(),
            },
            TransitionKind::Pulling => Transition::Pulling {
                worker: worker.clone(),
                attempt: attempt.clone(),
            },
            TransitionKind::Running => Transition::Running {
                worker: worker.clone(),
                attempt: attempt.clone(),
            },
            TransitionKind::Exited => Transition::Exited {
                worker: worker.clone(),
                attempt: attempt.clone(),
                exit_code: EXIT_CODE,
            },
            TransitionKind::Failed => Transition::Failed {
                reason: format!("brought to {state}"),
            },
            TransitionKind::Lost => Transition::Lost {
                reason: format!("brought to {state}"),
            },
        };
        store.transition(id, &step).await.unwrap();
    }
    if state == ContainerState::Preempted {
        let ended = store
            .preempted(&worker, id, &attempt, "brought to preempted")
            .await
            .unwrap();
        assert_eq!(ended, ReclaimOutcome::Preempted);
    }
    let record = store.container(id).await.unwrap().unwrap();
    assert_eq!(record.state, state, "{id}");
    record
}

/// `got`, a time the store stamped, if it lies within [from, to].
fn stamped(got: Option<u64>, from: u64, to: u64, what: &str) -> Option<u64> {
    assert!(
        got.is_some_and(|at| (from..=to).contains(&at)),
        "{what}: {got:?} not within {from}..={to}"
    );
    got
}

/// What `before` must become when `transition` is allowed to move it to `next`, with the
/// times the store stamped (checked to lie within [from, to]) taken from `got`.
fn moved(
    before: &ContainerRecord,
    transition: &Transition,
    next: ContainerState,
    got: &ContainerRecord,
    (from, to): (u64, u64),
) -> ContainerRecord {
    let mut want = before.clone();
    want.state = next;
    match transition {
        Transition::Scheduled { worker, attempt } => {
            want.worker = Some(worker.clone());
            want.attempt = Some(attempt.clone());
            want.scheduled_at_ms = stamped(got.scheduled_at_ms, from, to, "scheduled_at_ms");
            want.reason = None;
        }
        Transition::Pulling { .. } => {}
        Transition::Running { .. } => {
            want.started_at_ms = stamped(got.started_at_ms, from, to, "started_at_ms");
        }
        Transition::Exited { exit_code, .. } => {
            want.exit_code = Some(*exit_code);
            want.finished_at_ms = stamped(got.finished_at_ms, from, to, "finished_at_ms");
        }
        Transition::Failed { reason } | Transition::Lost { reason } => {
            want.reason = Some(reason.clone());
            want.finished_at_ms = stamped(got.finished_at_ms, from, to, "finished_at_ms");
        }
    }
    want
}

pub async fn every_cell_of_the_state_machine_is_kept(connect: impl Connect) {
    let store = open(&connect, "table").await;
    register(&*store, "w1", 4000, 4096).await;
    // (state, kind, arm): every arm of every cell must be reached.
    let mut reached = BTreeSet::new();
    let mut n = 0;
    for state in STATES {
        for kind in TransitionKind::ALL {
            let cell = lifecycle::cell(state, kind);
            for transition in variants(kind) {
                n += 1;
                let id = cid(&format!("c{n}"));
                let before = bring(&*store, &id, state).await;
                let facts = Facts::of(&before, &transition);
                let arm = cell.arms.iter().position(|arm| arm.when.holds(facts));
                reached.insert((state, kind.as_str(), arm));
                let want = cell.outcome(facts);
                let from = now_ms();
                let got = store.transition(&id, &transition).await;
                let to = now_ms();
                let case = format!("{state} + {transition:?} ({})", cell.doc);
                let after = store.container(&id).await.unwrap().unwrap();
                match (want, got) {
                    (Outcome::Allowed(next), Ok(record)) => {
                        let want = moved(&before, &transition, next, &record, (from, to));
                        assert_eq!(record, want, "{case}");
                        assert_eq!(after, want, "{case}: as stored");
                    }
                    (Outcome::Idempotent, Ok(record)) => {
                        assert_eq!(record, before, "{case}: a no-op");
                        assert_eq!(after, before, "{case}: a no-op, as stored");
                    }
                    (
                        Outcome::Refused(refusal),
                        Err(StoreError::InvalidTransition {
                            container,
                            from,
                            why,
                        }),
                    ) => {
                        assert_eq!(
                            (container, from, why),
                            (id.clone(), state, refusal.why(state, &transition)),
                            "{case}"
                        );
                        assert_eq!(after, before, "{case}: refused, nothing written");
                    }
                    (want, got) => panic!("{case}: the table says {want:?}, the store {got:?}"),
                }
            }
        }
    }
    // A pending record holds no worker, so its cells' arms after `not_holder` are not
    // reached; every other arm is.
    let unreached: Vec<_> = STATES
        .into_iter()
        .flat_map(|state| TransitionKind::ALL.map(|kind| (state, kind)))
        .flat_map(|(state, kind)| {
            let arms = lifecycle::cell(state, kind).arms.len();
            (0..arms).map(move |arm| (state, kind.as_str(), Some(arm)))
        })
        .filter(|arm| !reached.contains(arm))
        .collect();
    let pending = ContainerState::Pending;
    assert_eq!(
        unreached,
        [
            (pending, "pulling", Some(1)),
            (pending, "running", Some(1)),
            (pending, "exited", Some(1))
        ]
    );
}
