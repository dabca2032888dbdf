//! An in-memory fake of the server's worker-facing side, with the semantics the agent
//! relies on: records held by a worker and attempt, 409 for stale reports, long-polled
//! deliveries redelivered until acknowledged, cancellations through heartbeats, and 409 on
//! deregistration while the worker holds live containers.

use berth_agent::{
    ControlError, Delivery, HeartbeatReply, Lease, Registration, ReportedState, StatusReport,
};
use berth_core::{AttemptId, ContainerState};
use berth_core::{ContainerId, Payload, Resources, WorkerId};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// One container record.
#[derive(Debug, Clone)]
pub struct Record {
    pub worker: WorkerId,
    pub attempt: AttemptId,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub logs: Vec<String>,
    pub cancel: bool,
}

/// Everything the fake knows; read it through [`FakeServer::with`].
#[derive(Debug, Default)]
pub struct State {
    pub workers: BTreeMap<WorkerId, Registration>,
    pub records: BTreeMap<ContainerId, Record>,
    /// Deliveries not handed out yet.
    pub queue: VecDeque<Delivery>,
    /// Deliveries handed out and not acknowledged, with when they were handed out.
    pub unacked: BTreeMap<String, (Delivery, Instant)>,
    pub acked: BTreeSet<String>,
    /// What happened, in order: "register w", "running c", "conflict running c", "ack d",
    /// "exited c 0", "failed c reason", "deregister conflict", "deregister ok".
    pub events: Vec<String>,
    /// The containers the last heartbeat said were running.
    pub last_heartbeat: Vec<ContainerId>,
    /// The images each heartbeat that carried them reported, in order.
    pub image_reports: Vec<Vec<String>>,
    pub heartbeats: u64,
    pub polls: u64,
    /// The next calls (of any kind) that fail as if the server were down.
    pub fail_next: u32,
    /// Answer long-polls at once, as a server that ignores `wait_ms` would.
    pub ignore_wait: bool,
    /// Workers the server declared lost (until they register again).
    pub lost: BTreeSet<WorkerId>,
    /// Each worker's current epoch: bumped by registration and by being declared lost.
    pub epochs: BTreeMap<WorkerId, u64>,
    /// Reservations given back: (container, attempt).
    pub released: Vec<(ContainerId, AttemptId)>,
    next_delivery: u64,
}

impl State {
    pub fn index_of(&self, event: &str) -> Option<usize> {
        self.events.iter().position(|e| e == event)
    }
}

/// The fake server.
#[derive(Debug)]
pub struct FakeServer {
    state: Mutex<State>,
    redeliver_after: Duration,
}

impl FakeServer {
    pub fn new() -> FakeServer {
        FakeServer {
            state: Mutex::new(State::default()),
            redeliver_after: Duration::from_secs(600),
        }
    }

    /// A server that delivers unacknowledged deliveries again after `after`.
    pub fn with_redelivery(after: Duration) -> FakeServer {
        FakeServer {
            redeliver_after: after,
            ..FakeServer::new()
        }
    }

    /// Reads or changes the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock())
    }

    /// Places a container on `worker` under `attempt` and queues its delivery.
    pub fn assign(&self, worker: &str, container: &str, command: &[&str], env: &[(&str, &str)]) {
        let attempt = AttemptId(format!("att-{container}"));
        self.assign_as(worker, container, &attempt, &attempt, command, env);
    }

    /// Like `assign`, with a timeout carried by the delivery.
    pub fn assign_timed(&self, worker: &str, container: &str, command: &[&str], timeout: Duration) {
        self.assign(worker, container, command, &[]);
        self.with(|s| {
            if let Some(delivery) = s.queue.back_mut() {
                delivery.timeout = Some(timeout);
            }
        });
    }

    /// Like `assign`, for a container of `image`.
    pub fn assign_image(&self, worker: &str, container: &str, image: &str, command: &[&str]) {
        self.assign(worker, container, command, &[]);
        self.with(|s| {
            if let Some(delivery) = s.queue.back_mut() {
                delivery.payload.image = Some(image.to_owned());
            }
        });
    }

    /// Like `assign`, but the record is held by `held_by` while the delivery carries
    /// `delivered`: a stale delivery when they differ.
    pub fn assign_as(
        &self,
        worker: &str,
        container: &str,
        held_by: &AttemptId,
        delivered: &AttemptId,
        command: &[&str],
        env: &[(&str, &str)],
    ) {
        let worker = WorkerId::new(worker).expect("worker id");
        let container = ContainerId::new(container).expect("container id");
        let payload = Payload {
            image: None,
            command: command.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret_env: Default::default(),
        };
        self.with(|s| {
            s.records.insert(
                container.clone(),
                Record {
                    worker,
                    attempt: held_by.clone(),
                    state: ContainerState::Scheduled,
                    exit_code: None,
                    reason: None,
                    logs: Vec::new(),
                    cancel: false,
                },
            );
            s.next_delivery += 1;
            let delivery = Delivery {
                devices: Vec::new(),
                id: format!("d-{}", s.next_delivery),
                container,
                attempt: delivered.clone(),
                resources: Resources::new(100, 64, 0),
                payload,
                timeout: None,
                preempts: Vec::new(),
            };
            s.queue.push_back(delivery);
        });
    }

    /// Asks for a container's cancellation.
    pub fn cancel(&self, container: &str) {
        let id = ContainerId::new(container).expect("container id");
        self.with(|s| {
            if let Some(record) = s.records.get_mut(&id) {
                record.cancel = true;
            }
        });
    }

    pub fn record(&self, container: &str) -> Option<Record> {
        let id = ContainerId::new(container).expect("container id");
        self.with(|s| s.records.get(&id).cloned())
    }

    /// Fails the call if a failure was injected.
    fn gate(&self) -> Result<(), ControlError> {
        self.with(|s| {
            if s.fail_next > 0 {
                s.fail_next -= 1;
                return Err(ControlError::Unavailable("injected failure".into()));
            }
            Ok(())
        })
    }

    pub fn register(&self, registration: &Registration) -> Result<Lease, ControlError> {
        self.gate()?;
        Ok(self.with(|s| {
            let worker = &registration.worker;
            s.events.push(format!("register {worker}"));
            s.lost.remove(worker);
            s.workers.insert(worker.clone(), registration.clone());
            let epoch = s.epochs.entry(worker.clone()).or_default();
            *epoch += 1;
            let epoch = *epoch;
            let owned = s
                .records
                .iter()
                .filter(|(_, r)| &r.worker == worker && !r.state.is_terminal())
                .map(|(id, r)| (id.clone(), r.attempt.clone()))
                .collect();
            Lease {
                epoch,
                owned,
                on_unhealthy_gpus: Vec::new(),
            }
        }))
    }

    pub fn heartbeat(
        &self,
        worker: &WorkerId,
        epoch: u64,
        running: &[ContainerId],
        images: Option<&[String]>,
    ) -> Result<HeartbeatReply, ControlError> {
        self.gate()?;
        self.with(|s| {
            if !s.workers.contains_key(worker) {
                return Err(ControlError::NotFound(format!("worker {worker}")));
            }
            fence(s, worker, epoch, "heartbeat")?;
            s.heartbeats += 1;
            s.last_heartbeat = running.to_vec();
            if let Some(images) = images {
                s.image_reports.push(images.to_vec());
            }
            let cancel = s
                .records
                .iter()
                .filter(|(id, r)| r.cancel && running.contains(id) && !r.state.is_terminal());
            let owns = |id: &ContainerId| {
                s.records
                    .get(id)
                    .is_some_and(|r| &r.worker == worker && !r.state.is_terminal())
            };
            Ok(HeartbeatReply {
                cancel: cancel.map(|(id, _)| id.clone()).collect(),
                stop: running.iter().filter(|id| !owns(id)).cloned().collect(),
                lost: s.lost.contains(worker),
            })
        })
    }

    /// Declares the worker lost, as the server's reaper does: its epoch is bumped (its
    /// calls are fenced off until it registers again) and its containers are lost.
    pub fn declare_lost(&self, worker: &str) {
        let worker = WorkerId::new(worker).expect("worker id");
        self.with(|s| {
            for record in s.records.values_mut() {
                if record.worker == worker && !record.state.is_terminal() {
                    record.state = ContainerState::Lost;
                    record.reason = Some("worker lost".into());
                }
            }
            *s.epochs.entry(worker.clone()).or_default() += 1;
            s.lost.insert(worker);
        });
    }

    pub fn release(
        &self,
        worker: &WorkerId,
        epoch: u64,
        container: &ContainerId,
        attempt: &AttemptId,
    ) -> Result<bool, ControlError> {
        self.gate()?;
        self.with(|s| {
            fence(s, worker, epoch, "release")?;
            s.events.push(format!("release {container}"));
            s.released.push((container.clone(), attempt.clone()));
            Ok(true)
        })
    }

    fn take_deliveries(&self, worker: &WorkerId, max: usize) -> Vec<Delivery> {
        let redeliver_after = self.redeliver_after;
        self.with(|s| {
            let now = Instant::now();
            let mut out: Vec<Delivery> = Vec::new();
            for (delivery, at) in s.unacked.values_mut() {
                if out.len() < max && now.duration_since(*at) >= redeliver_after {
                    *at = now;
                    s.events.push(format!("redelivered {}", delivery.container));
                    out.push(delivery.clone());
                }
            }
            let mut keep = VecDeque::new();
            while let Some(delivery) = s.queue.pop_front() {
                let mine = s.records.get(&delivery.container).map(|r| &r.worker) == Some(worker);
                if mine && out.len() < max {
                    s.unacked
                        .insert(delivery.id.clone(), (delivery.clone(), now));
                    out.push(delivery);
                } else {
                    keep.push_back(delivery);
                }
            }
            s.queue = keep;
            out
        })
    }

    pub async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: u64,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ControlError> {
        self.gate()?;
        let known = self.with(|s| {
            s.polls += 1;
            s.workers.contains_key(worker)
        });
        if !known {
            return Err(ControlError::NotFound(format!("worker {worker}")));
        }
        self.with(|s| fence(s, worker, epoch, "poll"))?;
        let wait = if self.with(|s| s.ignore_wait) {
            Duration::ZERO
        } else {
            wait
        };
        let deadline = Instant::now() + wait;
        loop {
            let out = self.take_deliveries(worker, max as usize);
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn ack(&self, worker: &WorkerId, epoch: u64, delivery: &str) -> Result<(), ControlError> {
        self.gate()?;
        self.with(|s| {
            fence(s, worker, epoch, "ack")?;
            s.unacked.remove(delivery);
            s.acked.insert(delivery.to_owned());
            s.events.push(format!("ack {delivery}"));
            Ok(())
        })
    }

    pub fn report(
        &self,
        container: &ContainerId,
        report: &StatusReport,
    ) -> Result<(), ControlError> {
        self.gate()?;
        self.with(|s| {
            fence(s, &report.worker, report.epoch, "report")?;
            let Some(record) = s.records.get_mut(container) else {
                return Err(ControlError::NotFound(format!("container {container}")));
            };
            let held = record.worker == report.worker && record.attempt == report.attempt;
            let (allowed, event) = match &report.state {
                ReportedState::Pulling => {
                    (record.state.is_placed(), format!("pulling {container}"))
                }
                ReportedState::Running => {
                    (record.state.is_placed(), format!("running {container}"))
                }
                ReportedState::Exited { exit_code } => (
                    record.state == ContainerState::Running,
                    format!("exited {container} {exit_code}"),
                ),
                ReportedState::Failed { reason } => (
                    !record.state.is_terminal(),
                    format!("failed {container} {reason}"),
                ),
            };
            if !held || !allowed {
                let what = event.split(' ').next().unwrap_or("").to_owned();
                s.events.push(format!("conflict {what} {container}"));
                return Err(ControlError::Conflict(format!(
                    "{container} is not held by you"
                )));
            }
            match &report.state {
                ReportedState::Pulling if record.state == ContainerState::Running => {}
                ReportedState::Pulling => record.state = ContainerState::Pulling,
                ReportedState::Running => record.state = ContainerState::Running,
                ReportedState::Exited { exit_code } => {
                    record.state = ContainerState::Exited;
                    record.exit_code = Some(*exit_code);
                }
                ReportedState::Failed { reason } => {
                    record.state = ContainerState::Failed;
                    record.reason = Some(reason.clone());
                }
            }
            record.logs.extend(report.logs.iter().cloned());
            s.events.push(event);
            Ok(())
        })
    }

    pub fn deregister(&self, worker: &WorkerId) -> Result<(), ControlError> {
        self.gate()?;
        self.with(|s| {
            let live = s
                .records
                .values()
                .any(|r| &r.worker == worker && !r.state.is_terminal());
            if live {
                s.events.push("deregister conflict".into());
                return Err(ControlError::Conflict(format!(
                    "{worker} still owns containers"
                )));
            }
            if s.workers.remove(worker).is_none() {
                return Err(ControlError::NotFound(format!("worker {worker}")));
            }
            s.events.push("deregister ok".into());
            Ok(())
        })
    }
}

/// Refuses a call under an epoch that is not the worker's current one, as the real store
/// does, and records it as the event `stale WHAT`.
fn fence(s: &mut State, worker: &WorkerId, epoch: u64, what: &str) -> Result<(), ControlError> {
    let current = s.epochs.get(worker).copied().unwrap_or_default();
    if epoch == current {
        return Ok(());
    }
    s.events.push(format!("stale {what}"));
    Err(ControlError::StaleEpoch(format!(
        "worker {worker}: epoch {epoch} is stale (current {current})"
    )))
}
