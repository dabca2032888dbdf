//! The state machine's table ([`lifecycle::cell`]) against the hand-written `apply` it
//! replaced: every state, every transition kind, every condition the arms read, the same
//! result and the same record afterwards.

#![allow(clippy::unwrap_used)] // Tests unwrap freely: a panic is a failed test.

use berth_core::lifecycle::{self, Guard, STATES, TransitionKind};
use berth_core::{
    AttemptId, ContainerId, ContainerRecord, ContainerRequest, ContainerState, GpuPreference,
    Payload, Resources, Transition, WorkerId,
};

fn record(state: ContainerState) -> ContainerRecord {
    let mut record = lifecycle::pending(ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new("c1").unwrap(),
        tenant: "tenant".into(),
        resources: Resources::new(100, 64, 0),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    });
    record.revoked_attempts = vec![AttemptId("r0".into())];
    record.state = state;
    if state != ContainerState::Pending {
        record.worker = Some(WorkerId::new("w1").unwrap());
        record.attempt = Some(AttemptId("a1".into()));
        record.scheduled_at_ms = Some(10);
    }
    if state == ContainerState::Exited {
        record.exit_code = Some(3);
    }
    record
}

/// Every transition the arms tell apart: the holder, another worker, another attempt, a
/// revoked attempt; exit codes 3 (the record's, once exited) and 4.
fn transitions() -> Vec<Transition> {
    let mut out = Vec::new();
    for (worker, attempt) in [("w1", "a1"), ("w2", "a1"), ("w1", "a2"), ("w1", "r0")] {
        let (worker, attempt) = (WorkerId::new(worker).unwrap(), AttemptId(attempt.into()));
        out.push(Transition::Scheduled {
            worker: worker.clone(),
            attempt: attempt.clone(),
        });
        out.push(Transition::Pulling {
            worker: worker.clone(),
            attempt: attempt.clone(),
        });
        out.push(Transition::Running {
            worker: worker.clone(),
            attempt: attempt.clone(),
        });
        for exit_code in [3, 4] {
            out.push(Transition::Exited {
                worker: worker.clone(),
                attempt: attempt.clone(),
                exit_code,
            });
        }
    }
    out.push(Transition::Failed {
        reason: "why".into(),
    });
    out.push(Transition::Lost {
        reason: "why".into(),
    });
    out
}

#[test]
fn the_table_decides_as_the_hand_written_apply_did() {
    for state in STATES {
        for transition in transitions() {
            let (mut got, mut want) = (record(state), record(state));
            let got_result = lifecycle::apply(&mut got, &transition, 99);
            let want_result = old::apply(&mut want, &transition, 99);
            assert_eq!(got_result, want_result, "{state} {transition:?}");
            assert_eq!(got, want, "{state} {transition:?}");
        }
    }
}

#[test]
fn every_cell_ends_in_an_arm_that_always_holds() {
    for state in STATES {
        for kind in TransitionKind::ALL {
            let cell = lifecycle::cell(state, kind);
            assert_eq!(
                cell.arms.last().map(|arm| arm.when),
                Some(Guard::Always),
                "{state} {kind:?}"
            );
            assert!(!cell.doc.is_empty());
        }
    }
}

#[test]
fn every_transition_kind_is_covered() {
    let kinds: Vec<TransitionKind> = transitions().iter().map(Transition::kind).collect();
    for kind in TransitionKind::ALL {
        assert!(kinds.contains(&kind), "{kind:?}");
    }
}

/// `apply` as it was written before the table (commit c2c5d13), kept as the oracle, with
/// the pulling state added since written the same way.
mod old {
    use berth_core::{AttemptId, ContainerRecord, ContainerState, Transition, WorkerId};

    pub fn apply(
        record: &mut ContainerRecord,
        transition: &Transition,
        now_ms: u64,
    ) -> Result<(), String> {
        use ContainerState as S;
        match transition {
            Transition::Scheduled { worker, attempt } => match record.state {
                S::Pending if record.revoked_attempts.contains(attempt) => Err(format!(
                    "attempt {attempt} was revoked: its worker was declared lost"
                )),
                S::Pending => {
                    record.state = S::Scheduled;
                    record.worker = Some(worker.clone());
                    record.attempt = Some(attempt.clone());
                    record.scheduled_at_ms = Some(now_ms);
                    record.reason = None;
                    Ok(())
                }
                S::Scheduled | S::Pulling | S::Running if holds(record, worker, attempt) => Ok(()),
                _ => Err(format!(
                    "it is {} by another worker or attempt",
                    record.state
                )),
            },
            Transition::Pulling { worker, attempt } => {
                if !holds(record, worker, attempt) {
                    return Err(format!(
                        "worker {worker} attempt {attempt} does not hold it"
                    ));
                }
                match record.state {
                    S::Scheduled => {
                        record.state = S::Pulling;
                        Ok(())
                    }
                    S::Pulling | S::Running => Ok(()),
                    other => Err(format!(
                        "only a scheduled container can pull its image, it is {other}"
                    )),
                }
            }
            Transition::Running { worker, attempt } => {
                if !holds(record, worker, attempt) {
                    return Err(format!(
                        "worker {worker} attempt {attempt} does not hold it"
                    ));
                }
                match record.state {
                    S::Scheduled | S::Pulling => {
                        record.state = S::Running;
                        record.started_at_ms = Some(now_ms);
                        Ok(())
                    }
                    S::Running => Ok(()),
                    other => Err(format!(
                        "only a scheduled or pulling container can start, it is {other}"
                    )),
                }
            }
            Transition::Exited {
                worker,
                attempt,
                exit_code,
            } => {
                if !holds(record, worker, attempt) {
                    return Err(format!(
                        "worker {worker} attempt {attempt} does not hold it"
                    ));
                }
                match record.state {
                    S::Running => {
                        record.state = S::Exited;
                        record.exit_code = Some(*exit_code);
                        record.finished_at_ms = Some(now_ms);
                        Ok(())
                    }
                    S::Exited if record.exit_code == Some(*exit_code) => Ok(()),
                    other => Err(format!("only a running container can exit, it is {other}")),
                }
            }
            Transition::Failed { reason } => match record.state {
                S::Failed => Ok(()),
                state if state.is_terminal() => Err(format!("it already ended as {state}")),
                _ => finish(record, S::Failed, reason, now_ms),
            },
            Transition::Lost { reason } => match record.state {
                S::Lost => Ok(()),
                S::Scheduled | S::Pulling | S::Running => finish(record, S::Lost, reason, now_ms),
                other => Err(format!(
                    "only a scheduled, pulling or running container can be lost, it is {other}"
                )),
            },
        }
    }

    fn holds(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> bool {
        record.worker.as_ref() == Some(worker) && record.attempt.as_ref() == Some(attempt)
    }

    fn finish(
        record: &mut ContainerRecord,
        state: ContainerState,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), String> {
        record.state = state;
        record.reason = Some(reason.to_owned());
        record.finished_at_ms = Some(now_ms);
        Ok(())
    }
}
