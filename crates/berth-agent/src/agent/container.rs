//! One delivery's life on the agent: report RUNNING (or PULLING, fetch the image, then
//! RUNNING), start, acknowledge, supervise (sending new output lines now and then), report
//! the end.

use super::Inner;
use crate::control::{ControlError, Delivery, ReportedState, StatusReport};
use crate::retry::GaveUp;
use crate::runtime::{ContainerHandle, ContainerSpec, Exit, ImageLease, StartError};
use berth_core::AttemptId;
use berth_core::ContainerId;
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_util::sync::CancellationToken;

/// How long a periodic log report may take; it is tried again at the next flush.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// What a line costs in a report beyond its bytes (quotes, comma), for the size budget.
const LINE_OVERHEAD: usize = 4;
/// How long past its stop grace a successor waits for the containers it preempted.
const PREEMPTION_MARGIN: Duration = Duration::from_secs(10);
/// How often a successor looks whether the containers it preempted have ended.
const PREEMPTION_POLL: Duration = Duration::from_millis(50);
/// How many times a container whose image cannot be pulled is tried before it is reported
/// FAILED (`image_pull: ...`): a registry's brief outage should not fail it, a missing
/// image or refused credentials should not hold the booking for long.
pub const PULL_ATTEMPTS: u32 = 3;
/// The pause before the second try of a pull; it doubles before each later one.
const PULL_BACKOFF: Duration = Duration::from_secs(1);

/// Why the agent stops a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The server asked for its cancellation.
    Cancelled,
    /// The agent is shutting down and the grace period is over.
    ShuttingDown,
    /// The worker does not own it any more: the server gave it back after the worker was
    /// presumed dead (or lost it in a failover).
    WorkerLost,
    /// The server says the record is not held by this worker and attempt any more.
    Superseded,
    /// A container of higher priority preempted it: its capacity is that one's now.
    Preempted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Cancelled => "cancelled",
            StopReason::ShuttingDown => "worker shutting down",
            StopReason::WorkerLost => "not owned by this worker any more (presumed dead)",
            StopReason::Superseded => "held by another worker or attempt",
            StopReason::Preempted => "preempted by a container of higher priority",
        })
    }
}

/// Asks one container to stop; the first reason given is kept.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl StopSignal {
    /// Asks for a stop; true if this is the first request.
    pub(crate) fn request(&self, reason: StopReason) -> bool {
        let first = {
            let mut kept = self.reason.lock();
            let first = kept.is_none();
            kept.get_or_insert(reason);
            first
        };
        self.token.cancel();
        first
    }

    fn reason(&self) -> Option<StopReason> {
        *self.reason.lock()
    }
}

/// How a status report ended.
enum Reported {
    /// The server took it.
    Done,
    /// The record is not held by this worker and attempt any more (409).
    Stale(ControlError),
    /// The server refused it for another reason.
    Refused(ControlError),
    /// The stop token fired before it went through.
    Stopped,
}

/// Removes a container from the active set when its task ends, however it ends.
struct ActiveEntry {
    inner: Arc<Inner>,
    key: (ContainerId, AttemptId),
}

impl Drop for ActiveEntry {
    fn drop(&mut self) {
        self.inner.active.lock().remove(&self.key);
    }
}

/// The record a run reports on: a delivery's container and attempt, or an adopted one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    container: ContainerId,
    attempt: AttemptId,
}

impl Target {
    /// The record of `container` under `attempt`.
    pub(super) fn new(container: ContainerId, attempt: AttemptId) -> Target {
        Target { container, attempt }
    }

    fn of(delivery: &Delivery) -> Target {
        Target {
            container: delivery.container.clone(),
            attempt: delivery.attempt.clone(),
        }
    }
}

/// A started container and how much of its output the server has.
struct Supervised {
    handle: Box<dyn ContainerHandle>,
    /// The sequence number of the first line not sent yet.
    sent: u64,
}

impl Inner {
    /// Runs one delivery to its end. Never fails: every outcome is reported and logged.
    pub(super) async fn run_delivery(self: Arc<Self>, delivery: Delivery) {
        let stop = Arc::new(StopSignal::default());
        let Some(_entry) = self.enter(&delivery, &stop) else {
            // Not acknowledged here: the copy that is here acknowledges it once the container
            // started (or failed). Until then the delivery must stay, so that an agent
            // restarted mid-pull gets it again rather than leave the record pulling.
            tracing::debug!(container = %delivery.container, "delivered again while it is here");
            return;
        };
        // The containers it replaces stop first, before it is even reported RUNNING: their
        // capacity is already its own in the store, whatever comes of this delivery.
        if !delivery.preempts.is_empty() {
            self.stop_preempted(&delivery).await;
        }
        // A cold start says so first: the image may take a while, and `berth ps` shows it.
        // The image found here, or the one pulled, stays leased until the start has returned,
        // so that it cannot be evicted before.
        let mut image_lease = match delivery.payload.image.as_deref() {
            Some(image) => self.runtime.lease_held(image).await,
            None => Some(ImageLease::none()),
        };
        let cold_image = (delivery.payload.image.as_deref()).filter(|_| image_lease.is_none());
        let first = match cold_image {
            Some(_) => ReportedState::Pulling,
            None => ReportedState::Running,
        };
        if !self.claim(&delivery, first).await {
            return;
        }
        if let Some(image) = cold_image {
            let pulled = self.pull(&delivery, image, &stop).await;
            if let Some(reason) = stop.reason() {
                tracing::info!(container = %delivery.container, %reason, "stopped while its image was pulled");
                return self.fail_unstarted(&delivery, reason.to_string()).await;
            }
            match pulled {
                Ok(lease) => image_lease = Some(lease),
                Err(err) => {
                    tracing::warn!(container = %delivery.container, error = %err, "the image could not be pulled");
                    return self.fail_unstarted(&delivery, err.to_string()).await;
                }
            }
            if !self.claim(&delivery, ReportedState::Running).await {
                return;
            }
        }
        if let Some(reason) = stop.reason() {
            tracing::info!(container = %delivery.container, %reason, "stopped before it started");
            return self.fail_unstarted(&delivery, reason.to_string()).await;
        }
        let started = self.start(&delivery, &stop).await;
        drop(image_lease); // The started container holds its own lease.
        match started {
            Ok(handle) => {
                let target = Target::of(&delivery);
                let run = self.run_started(&target, handle, &stop);
                tokio::join!(self.ack(&delivery), run);
            }
            Err(err) => {
                tracing::warn!(container = %delivery.container, error = %err, "container did not start");
                self.fail_unstarted(&delivery, err.to_string()).await;
            }
        }
    }

    /// Fetches the delivery's image ahead of its start, with the retries of
    /// [`Inner::retrying_pulls`]. A stop (cancellation, preemption, shutdown) ends it at
    /// once: the pull itself goes on in the background (the image is cached for later),
    /// but the container's booking is given back now.
    async fn pull(
        &self,
        delivery: &Delivery,
        image: &str,
        stop: &StopSignal,
    ) -> Result<ImageLease, StartError> {
        self.retrying_pulls(delivery, stop, || async {
            tokio::select! {
                pulled = self.runtime.pull(image) => pulled,
                () = stop.token.cancelled() => {
                    Err(StartError::ImagePull("stopped while pulling".into()))
                }
            }
        })
        .await
    }

    /// Starts the container, with the retries of [`Inner::retrying_pulls`] (its image may
    /// have gone since it was found ready, or the runtime may pull as it starts).
    async fn start(
        &self,
        delivery: &Delivery,
        stop: &StopSignal,
    ) -> Result<Box<dyn ContainerHandle>, StartError> {
        self.retrying_pulls(delivery, stop, || self.runtime.start(self.spec(delivery)))
            .await
    }

    /// Runs `step`, trying again (after [`PULL_BACKOFF`], doubling) while the image cannot
    /// be pulled, at most [`PULL_ATTEMPTS`] times in all, and not once the container is
    /// asked to stop. The last failure says how many tries it took.
    async fn retrying_pulls<T, F>(
        &self,
        delivery: &Delivery,
        stop: &StopSignal,
        mut step: impl FnMut() -> F,
    ) -> Result<T, StartError>
    where
        F: std::future::Future<Output = Result<T, StartError>>,
    {
        let mut pause = PULL_BACKOFF;
        let mut attempt = 1;
        loop {
            match step().await {
                Err(StartError::ImagePull(why)) if stop.reason().is_some() => {
                    return Err(StartError::ImagePull(why));
                }
                Err(StartError::ImagePull(why)) if attempt >= PULL_ATTEMPTS => {
                    return Err(StartError::ImagePull(format!(
                        "{why} (tried {attempt} times)"
                    )));
                }
                Err(StartError::ImagePull(why)) => {
                    crate::metrics::pull_retried();
                    tracing::warn!(container = %delivery.container, attempt, error = %why,
                        "the image could not be pulled; trying again in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.token.cancelled() => return Err(StartError::ImagePull(why)),
                    }
                    pause *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Stops the containers `delivery` preempted (each gets SIGTERM, then SIGKILL after the
    /// stop grace) and waits until they have ended here, so the machine never runs them and
    /// their successor at once; past the grace and a margin it starts the successor anyway
    /// (a container that outlives SIGKILL is beyond the agent's reach) and says so.
    async fn stop_preempted(&self, delivery: &Delivery) {
        let victims = &delivery.preempts;
        let stopped = self.stop_where(StopReason::Preempted, |(c, _)| victims.contains(c));
        for ((container, attempt), first) in &stopped {
            if *first {
                tracing::info!(%container, %attempt, preemptor = %delivery.container,
                    "preempted; stopping it");
            }
        }
        let deadline = Instant::now() + self.config.stop_grace + PREEMPTION_MARGIN;
        while self.runs_any(victims) {
            if Instant::now() >= deadline {
                tracing::warn!(preemptor = %delivery.container, ?victims,
                    "preempted containers still run past their stop grace; starting anyway");
                return;
            }
            tokio::time::sleep(PREEMPTION_POLL).await;
        }
    }

    /// True while any of `containers` is active here.
    fn runs_any(&self, containers: &[ContainerId]) -> bool {
        self.active
            .lock()
            .keys()
            .any(|(container, _)| containers.contains(container))
    }

    /// Reports a claimed container that never started FAILED, then acknowledges it.
    async fn fail_unstarted(&self, delivery: &Delivery, reason: String) {
        crate::metrics::failed();
        let failed = ReportedState::Failed { reason };
        self.report_end(&Target::of(delivery), failed, Vec::new())
            .await;
        self.ack(delivery).await;
    }

    /// Supervises a started container, then reports how it ended with the output lines
    /// not sent yet.
    async fn run_started(
        &self,
        target: &Target,
        handle: Box<dyn ContainerHandle>,
        stop: &StopSignal,
    ) {
        crate::metrics::started();
        tracing::info!(container = %target.container, attempt = %target.attempt, "container started");
        let mut run = Supervised { handle, sent: 0 };
        let exit = self.supervise(target, &mut run, stop).await;
        crate::metrics::ended();
        let state = final_state(&exit, stop.reason());
        match &state {
            ReportedState::Exited { .. } => crate::metrics::exited(),
            _ => crate::metrics::failed(),
        }
        tracing::info!(container = %target.container, %exit, "container ended");
        let logs = self.unsent_logs(&run).0;
        self.report_end(target, state, logs).await;
    }

    /// Takes over a container an earlier life of the agent started and the worker still
    /// owns: reports it RUNNING again (which also sends the output kept so far), then
    /// supervises it like one started now. If the server says the record moved on, the
    /// container is stopped.
    pub(super) async fn run_adopted(
        self: Arc<Self>,
        target: Target,
        mut handle: Box<dyn ContainerHandle>,
    ) {
        let stop = Arc::new(StopSignal::default());
        let Some(_entry) = self.enter_key(target.container.clone(), target.attempt.clone(), &stop)
        else {
            tracing::warn!(container = %target.container, "adopted twice; stopping the copy");
            handle.kill().await;
            return;
        };
        match self
            .report(&target, ReportedState::Running, Vec::new(), &self.shutdown)
            .await
        {
            Reported::Done => self.run_started(&target, handle, &stop).await,
            Reported::Stopped => {
                tracing::info!(container = %target.container, "shutting down before the adopted container was reported");
                let exit = handle.kill().await;
                let state = final_state(&exit, Some(StopReason::ShuttingDown));
                self.report_end(&target, state, Vec::new()).await;
            }
            Reported::Stale(err) | Reported::Refused(err) => {
                tracing::warn!(container = %target.container, error = %err, "the adopted container's record moved on; stopping it");
                handle.kill().await;
            }
        }
    }

    /// Reports FAILED for a container the worker owns but could not take over after a
    /// restart, so its capacity is given back.
    pub(super) async fn fail_unadoptable(&self, target: Target, reason: String) {
        crate::metrics::failed();
        let failed = ReportedState::Failed { reason };
        self.report_end(&target, failed, Vec::new()).await;
    }

    /// Marks the delivery's container active; `None` if it already is (a redelivery).
    fn enter(self: &Arc<Self>, delivery: &Delivery, stop: &Arc<StopSignal>) -> Option<ActiveEntry> {
        self.enter_key(delivery.container.clone(), delivery.attempt.clone(), stop)
    }

    /// Marks a container active under `stop`; `None` if it already is.
    fn enter_key(
        self: &Arc<Self>,
        container: ContainerId,
        attempt: AttemptId,
        stop: &Arc<StopSignal>,
    ) -> Option<ActiveEntry> {
        let key = (container, attempt);
        let mut active = self.active.lock();
        if active.contains_key(&key) {
            return None;
        }
        active.insert(key.clone(), stop.clone());
        Some(ActiveEntry {
            inner: self.clone(),
            key,
        })
    }

    /// Reports `state` (RUNNING, or PULLING) before starting (or pulling); true if the
    /// container is ours to run. A stale delivery's reservation is released and the
    /// delivery acknowledged; a delivery whose report could not go through before shutdown
    /// is left to the server (not acked).
    async fn claim(&self, delivery: &Delivery, state: ReportedState) -> bool {
        let container = &delivery.container;
        let target = Target::of(delivery);
        let reported = self.report(&target, state.clone(), Vec::new(), &self.shutdown);
        match reported.await {
            Reported::Done => return true,
            Reported::Stale(err) => {
                crate::metrics::stale();
                tracing::info!(%container, attempt = %delivery.attempt, error = %err,
                    "stale delivery: held by another worker or attempt; not run");
                self.release(&target).await;
            }
            Reported::Refused(err) => {
                tracing::error!(%container, error = %err, ?state, "the server refused the report; not run");
            }
            Reported::Stopped => {
                tracing::info!(%container, ?state, "shutting down before the container was reported; left to the server");
                return false;
            }
        }
        self.ack(delivery).await;
        false
    }

    fn spec(&self, delivery: &Delivery) -> ContainerSpec {
        ContainerSpec {
            container: delivery.container.clone(),
            attempt: delivery.attempt.clone(),
            worker: self.worker.clone(),
            resources: delivery.resources,
            payload: delivery.payload.clone(),
            devices: delivery.devices.clone(),
            timeout: delivery.timeout,
        }
    }

    /// Waits for the container to end, or stops it when asked; sends its new output lines
    /// every [`crate::AgentConfig::log_flush_every`] meanwhile.
    async fn supervise(&self, target: &Target, run: &mut Supervised, stop: &StopSignal) -> Exit {
        let mut flush = self.config.log_flush_every.map(|every| {
            let mut ticks = interval_at(Instant::now() + every, every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let tick = async {
                match flush.as_mut() {
                    Some(ticks) => {
                        ticks.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = run.handle.wait() => return exit,
                () = stop.token.cancelled() => return run.handle.kill().await,
                () = tick => self.flush_logs(target, run, stop).await,
            }
        }
    }

    /// Sends the output lines the server does not have yet with a RUNNING report (one try;
    /// what does not go through is sent next time).
    async fn flush_logs(&self, target: &Target, run: &mut Supervised, stop: &StopSignal) {
        let (logs, next) = self.unsent_logs(run);
        if logs.is_empty() {
            return;
        }
        let report = StatusReport {
            worker: self.worker.clone(),
            attempt: target.attempt.clone(),
            epoch: self.epoch(),
            state: ReportedState::Running,
            logs,
        };
        let container = &target.container;
        match timeout(FLUSH_TIMEOUT, self.control.report(container, &report)).await {
            Ok(Ok(())) => run.sent = next,
            Ok(Err(err @ (ControlError::Conflict(_) | ControlError::StaleEpoch(_)))) => {
                tracing::warn!(%container, error = %err, "the record moved on; stopping the container");
                stop.request(StopReason::Superseded);
            }
            Ok(Err(err)) => {
                tracing::debug!(%container, error = %err, "log report failed; sent again later")
            }
            Err(_) => tracing::debug!(%container, "log report timed out; sent again later"),
        }
    }

    /// The lines not sent yet, the oldest left out beyond the report size budget, and the
    /// sequence number that follows them.
    fn unsent_logs(&self, run: &Supervised) -> (Vec<String>, u64) {
        let (mut lines, next) = run.handle.logs_since(run.sent);
        let mut budget = self.config.max_report_log_bytes;
        let mut keep = 0;
        for line in lines.iter().rev() {
            let cost = line.len() + LINE_OVERHEAD;
            if cost > budget {
                break;
            }
            budget -= cost;
            keep += 1;
        }
        lines.drain(..lines.len() - keep);
        (lines, next)
    }

    async fn report(
        &self,
        target: &Target,
        state: ReportedState,
        logs: Vec<String>,
        stop: &CancellationToken,
    ) -> Reported {
        let what = format!("report of container {}", target.container);
        let call = |epoch| {
            let report = StatusReport {
                worker: self.worker.clone(),
                attempt: target.attempt.clone(),
                epoch,
                state: state.clone(),
                logs: logs.clone(),
            };
            async move { self.control.report(&target.container, &report).await }
        };
        match self.fenced(&what, stop, call).await {
            Ok(()) => Reported::Done,
            Err(GaveUp::Refused(err @ ControlError::Conflict(_))) => Reported::Stale(err),
            Err(GaveUp::Refused(err)) => Reported::Refused(err),
            Err(GaveUp::Stopped) => Reported::Stopped,
        }
    }

    /// Reports EXITED or FAILED (which releases the capacity), until it goes through or
    /// the drain gives up. If the server refuses the report with its logs, it is sent again
    /// without them: the capacity matters more than the output.
    async fn report_end(&self, target: &Target, state: ReportedState, logs: Vec<String>) {
        let container = &target.container;
        let with_logs = !logs.is_empty();
        let mut outcome = self
            .report(target, state.clone(), logs, &self.abandon)
            .await;
        if let (Reported::Refused(err), true) = (&outcome, with_logs) {
            tracing::warn!(%container, error = %err, "final status refused with its logs; sending it without");
            outcome = self.report(target, state, Vec::new(), &self.abandon).await;
        }
        match outcome {
            Reported::Done => tracing::debug!(%container, "final status reported"),
            Reported::Stale(err) => {
                tracing::warn!(%container, error = %err, "final status refused: the record moved on")
            }
            Reported::Refused(err) => {
                tracing::error!(%container, error = %err, "the server refused the final status")
            }
            Reported::Stopped => tracing::error!(%container, "gave up reporting the final status"),
        }
    }

    /// Gives back the reservation of a delivery this worker will not run.
    async fn release(&self, target: &Target) {
        let (container, attempt) = (&target.container, &target.attempt);
        let what = format!("release of container {container}");
        let call = |epoch| {
            self.control
                .release(&self.worker, epoch, container, attempt)
        };
        match self.fenced(&what, &self.abandon, call).await {
            Ok(released) => tracing::debug!(%container, %attempt, released, "reservation released"),
            Err(GaveUp::Refused(err)) => {
                tracing::warn!(%container, error = %err, "the server refused the release")
            }
            Err(GaveUp::Stopped) => tracing::warn!(%container, "gave up releasing the reservation"),
        }
    }

    /// Acknowledges a delivery, retrying while the server is unavailable. A failed ack is
    /// harmless: the delivery comes again and is recognised.
    async fn ack(&self, delivery: &Delivery) {
        let what = format!("ack of delivery {}", delivery.id);
        let call = |epoch| self.control.ack(&self.worker, epoch, &delivery.id);
        match self.fenced(&what, &self.abandon, call).await {
            Ok(()) => {}
            Err(GaveUp::Refused(err)) => {
                tracing::warn!(delivery = %delivery.id, error = %err, "the server refused the ack")
            }
            Err(GaveUp::Stopped) => {
                tracing::warn!(delivery = %delivery.id, "gave up acknowledging the delivery")
            }
        }
    }
}

/// What to report for a container that ended this way.
fn final_state(exit: &Exit, stop: Option<StopReason>) -> ReportedState {
    let failed = |reason: String| ReportedState::Failed { reason };
    match exit {
        Exit::Exited { code } => ReportedState::Exited { exit_code: *code },
        Exit::Killed => failed(stop.unwrap_or(StopReason::Cancelled).to_string()),
        other => failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stop_reason_wins() {
        let stop = StopSignal::default();
        assert!(stop.request(StopReason::Cancelled));
        assert!(!stop.request(StopReason::ShuttingDown));
        assert_eq!(stop.reason(), Some(StopReason::Cancelled));
        assert!(stop.token.is_cancelled());
    }

    #[test]
    fn final_states_say_why() {
        let exited = final_state(&Exit::Exited { code: 3 }, None);
        assert_eq!(exited, ReportedState::Exited { exit_code: 3 });
        let reason = |exit: Exit, stop| match final_state(&exit, stop) {
            ReportedState::Failed { reason } => reason,
            other => panic!("not failed: {other:?}"),
        };
        assert_eq!(
            reason(Exit::Killed, Some(StopReason::Cancelled)),
            "cancelled"
        );
        assert_eq!(
            reason(Exit::Killed, Some(StopReason::ShuttingDown)),
            "worker shutting down"
        );
        let timed_out = Exit::TimedOut {
            after: Duration::from_secs(2),
        };
        assert_eq!(reason(timed_out, None), "timed out after 2 s");
        assert_eq!(
            reason(Exit::Signalled { signal: 9 }, None),
            "killed by signal 9"
        );
    }
}
