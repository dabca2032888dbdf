//! A worker's report on a container it holds: `pulling`, `running`, `exited` or `failed`.
//!
//! A report is fenced first (the worker must be registered under the epoch it presents).
//! Pulling (the worker fetches the image before it starts the container) moves the record
//! to pulling from scheduled; starting moves it to running, from scheduled or pulling. Both
//! also move it from pending when the worker
//! holds a reservation its scheduler replica died before settling (the record is adopted:
//! the attempt legitimately holds the capacity). Exit and failure append the logs (before the
//! record moves, so whoever sees it ended can read every line; a repeated final report
//! appends nothing again), move the record, and release the reservation (idempotent: capacity comes back exactly once); a
//! release that gave something back wakes the earliest deferred requests and tells the
//! local engine to read that worker again. A worker or attempt that does not hold the
//! container is refused and changes nothing.

use crate::{Protocol, ProtocolError};
use berth_core::{ContainerId, WorkerId};
use berth_store::{AttemptId, ContainerRecord, ContainerState, ReleaseOutcome, Transition};

/// The longest reason a worker may give, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// How many deferred requests a release wakes.
pub const WAKE_ON_RELEASE: usize = 4;

/// Far enough ahead to cover any backoff: a wake takes the earliest due whatever their due
/// time.
const WAKE_HORIZON_MS: u64 = 24 * 60 * 60 * 1000;

/// What a worker says happened, as named on the wire (see [`Reported::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// It is fetching the image.
    Pulling,
    /// It started.
    Running,
    /// It ended with an exit code.
    Exited,
    /// It could not start, was killed or crashed.
    Failed,
}

/// What a worker says happened, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// It is fetching the image.
    Pulling,
    /// It started.
    Running,
    /// It ended with `exit_code`.
    Exited {
        /// The exit code.
        exit_code: i32,
    },
    /// It could not start, was killed or crashed; `reason` says why (a default names the
    /// worker).
    Failed {
        /// Why, if the worker said.
        reason: Option<String>,
    },
}

impl Reported {
    /// Checks a report's parts: the reason is at most [`MAX_REASON_LEN`] bytes without NUL
    /// characters, and an exit code comes with `exited` and only with it.
    pub fn parse(
        kind: ReportKind,
        exit_code: Option<i32>,
        reason: Option<String>,
    ) -> Result<Reported, ProtocolError> {
        if let Some(reason) = &reason
            && (reason.len() > MAX_REASON_LEN || reason.contains('\0'))
        {
            return Err(ProtocolError::invalid(
                "reason",
                format!("must be at most {MAX_REASON_LEN} bytes without NUL characters"),
            ));
        }
        match (kind, exit_code) {
            (ReportKind::Exited, Some(exit_code)) => Ok(Reported::Exited { exit_code }),
            (ReportKind::Exited, None) => Err(ProtocolError::invalid(
                "exit_code",
                "state exited needs an exit code",
            )),
            (_, Some(_)) => Err(ProtocolError::invalid(
                "exit_code",
                "an exit code goes only with state exited",
            )),
            (ReportKind::Pulling, None) => Ok(Reported::Pulling),
            (ReportKind::Running, None) => Ok(Reported::Running),
            (ReportKind::Failed, None) => Ok(Reported::Failed { reason }),
        }
    }
}

/// A worker's report on one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The reporting worker.
    pub worker: WorkerId,
    /// The attempt from its assignment.
    pub attempt: AttemptId,
    /// The epoch it registered under.
    pub epoch: u64,
    /// What happened.
    pub reported: Reported,
    /// Its last output lines (appended to the container's kept logs).
    pub logs: Vec<String>,
}

impl Protocol {
    /// Applies `report` on container `id` and returns the record after it.
    pub async fn report(
        &self,
        id: &ContainerId,
        report: &Report,
    ) -> Result<ContainerRecord, ProtocolError> {
        self.fence(&report.worker, report.epoch).await?;
        let record = self.record(id).await?;
        let record = match &report.reported {
            Reported::Pulling => {
                let record = self.pull(id, record, report).await?;
                self.append_logs(id, report).await?;
                record
            }
            Reported::Running => {
                let record = self.run(id, record, report).await?;
                self.append_logs(id, report).await?;
                record
            }
            Reported::Exited { exit_code } => self.exit(id, record, report, *exit_code).await?,
            Reported::Failed { reason } => self.fail(id, &record, report, reason).await?,
        };
        let is_final = matches!(
            report.reported,
            Reported::Exited { .. } | Reported::Failed { .. }
        );
        if is_final && record.state.is_terminal() {
            self.release_ended(id, report).await?;
        }
        Ok(record)
    }

    /// Appends the report's output lines to the container's kept logs. A final report
    /// appends them before it moves the record to its end, so a reader that sees the end
    /// has every line; a repeated final report (the record has ended already) appends
    /// nothing again.
    async fn append_logs(&self, id: &ContainerId, report: &Report) -> Result<(), ProtocolError> {
        if !report.logs.is_empty() {
            let keep = self.config.log_lines_kept;
            self.store.append_logs(id, &report.logs, keep).await?;
        }
        Ok(())
    }

    /// Moves the container to pulling (adopting a pending one, as a start would); refused
    /// unless it is then pulling or running under this worker and attempt.
    async fn pull(
        &self,
        id: &ContainerId,
        record: ContainerRecord,
        report: &Report,
    ) -> Result<ContainerRecord, ProtocolError> {
        let (worker, attempt) = (&report.worker, &report.attempt);
        let mut record = record;
        if record.state == ContainerState::Pending {
            record = self.adopt(id, &record, worker, attempt).await?;
        }
        if record.state == ContainerState::Scheduled {
            let pulling = Transition::Pulling {
                worker: worker.clone(),
                attempt: attempt.clone(),
            };
            record = self.store.transition(id, &pulling).await?;
        }
        let pulling_or_running = [ContainerState::Pulling, ContainerState::Running];
        held_in(id, record, &pulling_or_running, report)
    }

    /// Starts the container; refused unless it is then running under this worker and
    /// attempt.
    async fn run(
        &self,
        id: &ContainerId,
        record: ContainerRecord,
        report: &Report,
    ) -> Result<ContainerRecord, ProtocolError> {
        let record = self
            .start(id, record, &report.worker, &report.attempt)
            .await?;
        held_in(id, record, &[ContainerState::Running], report)
    }

    /// Starts the container if it is not yet running, then moves it to exited.
    async fn exit(
        &self,
        id: &ContainerId,
        record: ContainerRecord,
        report: &Report,
        exit_code: i32,
    ) -> Result<ContainerRecord, ProtocolError> {
        let record = self
            .start(id, record, &report.worker, &report.attempt)
            .await?;
        if record.state == ContainerState::Running
            && holds(&record, &report.worker, &report.attempt)
        {
            self.append_logs(id, report).await?;
        }
        let exited = Transition::Exited {
            worker: report.worker.clone(),
            attempt: report.attempt.clone(),
            exit_code,
        };
        Ok(self.store.transition(id, &exited).await?)
    }

    /// Moves a container this worker and attempt hold to failed.
    async fn fail(
        &self,
        id: &ContainerId,
        record: &ContainerRecord,
        report: &Report,
        reason: &Option<String>,
    ) -> Result<ContainerRecord, ProtocolError> {
        if !holds(record, &report.worker, &report.attempt) {
            return Err(not_holder(record, &report.worker, &report.attempt));
        }
        if !record.state.is_terminal() {
            self.append_logs(id, report).await?;
        }
        let reason = reason
            .clone()
            .unwrap_or_else(|| format!("failed on worker {}", report.worker));
        let failed = Transition::Failed { reason };
        Ok(self.store.transition(id, &failed).await?)
    }

    /// Moves a container held by `worker` and `attempt` to running (from scheduled or
    /// pulling, or from pending when the worker holds the reservation: adoption; the store refuses a worker
    /// or attempt that does not hold it). A running or ended record is returned as it is,
    /// for the caller to judge.
    async fn start(
        &self,
        id: &ContainerId,
        record: ContainerRecord,
        worker: &WorkerId,
        attempt: &AttemptId,
    ) -> Result<ContainerRecord, ProtocolError> {
        let mut record = record;
        if record.state == ContainerState::Pending {
            record = self.adopt(id, &record, worker, attempt).await?;
        }
        if record.state.is_unstarted() {
            let running = Transition::Running {
                worker: worker.clone(),
                attempt: attempt.clone(),
            };
            record = self.store.transition(id, &running).await?;
        }
        Ok(record)
    }

    /// Settles a still-pending record as scheduled on `worker` and `attempt`, which must
    /// hold its reservation (its scheduler replica died between commit and settlement).
    async fn adopt(
        &self,
        id: &ContainerId,
        record: &ContainerRecord,
        worker: &WorkerId,
        attempt: &AttemptId,
    ) -> Result<ContainerRecord, ProtocolError> {
        let owned = self.store.owned(worker).await?;
        let reserved = owned
            .iter()
            .any(|o| o.container == *id && o.attempt == *attempt);
        if !reserved {
            return Err(not_holder(record, worker, attempt));
        }
        let adopt = Transition::Scheduled {
            worker: worker.clone(),
            attempt: attempt.clone(),
        };
        Ok(self.store.transition(id, &adopt).await?)
    }

    /// Releases an ended container's reservation (fenced again by the epoch); if that gave
    /// capacity back, nudges the engine and wakes deferred requests.
    async fn release_ended(&self, id: &ContainerId, report: &Report) -> Result<(), ProtocolError> {
        let (worker, attempt) = (&report.worker, &report.attempt);
        let released = self
            .store
            .release(worker, id, Some(attempt), Some(report.epoch))
            .await?;
        if matches!(released, ReleaseOutcome::Released { .. }) {
            self.engine.capacity_changed(worker);
            self.wake_deferred().await;
        }
        Ok(())
    }

    /// Capacity was given back: moves the [`WAKE_ON_RELEASE`] earliest deferred requests to
    /// the intake now instead of at the end of their backoff, so that they are planned
    /// (older first, within a priority) alongside the fresh requests that would otherwise
    /// take the room before them, again and again under a steady load. This replica's engine
    /// was told to read the worker again; another replica that claims them sees the room
    /// once its cache is older than its `recheck_before_defer`. A request that still does
    /// not fit is deferred again. A failure only delays them to their due time.
    async fn wake_deferred(&self) {
        let horizon = self.now_ms().saturating_add(WAKE_HORIZON_MS);
        match self.store.promote_due(horizon, WAKE_ON_RELEASE).await {
            Ok(woken) if woken > 0 => {
                metrics::counter!("berth_deferred_woken_total").increment(woken as u64);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "waking deferred requests after a release failed"),
        }
    }

    /// Refuses a worker that is not registered under `epoch`. A read before the report's
    /// steps: what fences the record itself is the attempt, checked atomically by each
    /// transition, and the final release is fenced again atomically.
    pub(crate) async fn fence(&self, worker: &WorkerId, epoch: u64) -> Result<(), ProtocolError> {
        let registered = self
            .store
            .worker(worker)
            .await?
            .ok_or_else(|| ProtocolError::UnknownWorker(worker.clone()))?;
        Ok(berth_store::fence(&registered, epoch)?)
    }

    /// The container's record.
    pub(crate) async fn record(&self, id: &ContainerId) -> Result<ContainerRecord, ProtocolError> {
        self.store
            .container(id)
            .await?
            .ok_or_else(|| ProtocolError::UnknownContainer(id.clone()))
    }
}

/// The record after a move, if it is in one of `states` under the report's worker and
/// attempt; otherwise it cannot run (any more), or another holds it.
fn held_in(
    id: &ContainerId,
    record: ContainerRecord,
    states: &[ContainerState],
    report: &Report,
) -> Result<ContainerRecord, ProtocolError> {
    if !states.contains(&record.state) {
        return Err(ProtocolError::CannotRun {
            container: id.clone(),
            state: record.state,
            reason: record.reason,
        });
    }
    if !holds(&record, &report.worker, &report.attempt) {
        return Err(not_holder(&record, &report.worker, &report.attempt));
    }
    Ok(record)
}

/// True when the record names `worker` and `attempt`.
pub(crate) fn holds(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> bool {
    record.worker.as_ref() == Some(worker) && record.attempt.as_ref() == Some(attempt)
}

fn not_holder(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> ProtocolError {
    ProtocolError::NotHolder {
        container: record.request.id.clone(),
        state: record.state,
        worker: worker.clone(),
        attempt: attempt.clone(),
        holder: record
            .worker
            .clone()
            .zip(record.attempt.clone())
            .map(Box::new),
    }
}
