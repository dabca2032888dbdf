//! The agent loop: register, heartbeat, long-poll for assignments, supervise containers,
//! drain on shutdown, deregister.
//!
//! Shutdown protocol (the shared state's fields that take part say so in their docs):
//! 1. `shutdown` fires: the long-poll is dropped and deliveries not yet reported RUNNING
//!    are neither run nor acknowledged (the server hands them back).
//! 2. Running containers get [`AgentConfig::grace`] to end on their own.
//! 3. Then what is left is stopped and reported FAILED ("worker shutting down"); those
//!    reports get [`AgentConfig::report_timeout`], after which `abandon` fires.
//! 4. The heartbeat stops, and the worker deregisters (retried while the server still
//!    sees containers on it).

mod container;

pub use container::PULL_ATTEMPTS;
mod gpu_health;
mod work_lock;

use crate::config::{AgentConfig, ResolvedCapacity};
use crate::control::{Control, ControlError, Delivery, Lease, Registration};
use crate::error::AgentError;
use crate::retry::{Backoff, GaveUp, retry};
use crate::runtime::ContainerRuntime;
use berth_core::{AttemptId, GpuDevice};
use berth_core::{ContainerId, WorkerId};
use container::StopSignal;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An empty long-poll answer sooner than this (or than half the wait) counts as one that
/// did not wait.
const QUICK_EMPTY_POLL: Duration = Duration::from_secs(1);
/// How long the drain waits for tasks after it gave up on their reports.
const ABANDON_WAIT: Duration = Duration::from_secs(5);
/// How many times one call registers again after a stale epoch before it gives up.
const MAX_RENEWALS: u32 = 3;

/// A worker agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    registration: Registration,
    control: Arc<dyn Control>,
    runtime: Arc<dyn ContainerRuntime>,
}

impl Agent {
    /// Checks the configuration and resolves the capacity to register (detecting what is
    /// not configured).
    pub fn new(
        config: AgentConfig,
        control: Arc<dyn Control>,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Result<Agent, AgentError> {
        config.validate()?;
        let capacity = config.capacity.resolve()?;
        Agent::with_capacity(config, capacity, control, runtime)
    }

    /// Checks the configuration and registers `capacity`, already resolved from
    /// `config.capacity` (so that GPUs are detected once, and the runtime was given the same
    /// devices). Logs the worker's GPU devices.
    pub fn with_capacity(
        config: AgentConfig,
        capacity: ResolvedCapacity,
        control: Arc<dyn Control>,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Result<Agent, AgentError> {
        config.validate()?;
        log_gpus(&capacity.gpus);
        let registration = Registration {
            worker: config.worker_id.clone(),
            pool: config.pool.clone(),
            total: capacity.total,
            gpu_type: capacity.gpu_type,
            devices: capacity.gpus,
            runtime: runtime.name(),
            images: Vec::new(), // Read from the runtime at each registration.
        };
        Ok(Agent {
            config,
            registration,
            control,
            runtime,
        })
    }

    /// What the agent registers.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Runs until `shutdown` fires, then drains and deregisters. Fails only if the work
    /// directory cannot be created or another agent runs there, or the server refuses the
    /// registration; an unavailable server is waited for.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let work_dir = &self.config.work_dir;
        tokio::fs::create_dir_all(work_dir)
            .await
            .map_err(|source| AgentError::WorkDir {
                path: work_dir.display().to_string(),
                source,
            })?;
        // Held until the agent has deregistered. Aborting this future (as tests do, to play
        // a crash) releases it while tasks it spawned may still run: in a real crash the
        // process and the lock go together.
        let _work_dir_lock = work_lock::WorkDirLock::take(work_dir)?;
        let inner = Arc::new(Inner {
            worker: self.config.worker_id.clone(),
            config: self.config,
            registration: Mutex::new(self.registration),
            control: self.control,
            runtime: self.runtime,
            epoch: AtomicU64::new(0),
            reported_images: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
            active: Mutex::new(BTreeMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
            abandon: CancellationToken::new(),
        });
        let Some(lease) = inner.register().await? else {
            tracing::info!("shut down before the worker could register");
            return Ok(());
        };
        inner.recover(&lease.owned).await;
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(inner.clone().heartbeat_loop(heartbeat_stop.clone()));
        let gpu_health = tokio::spawn(inner.clone().gpu_health_loop(inner.shutdown.clone()));
        inner.clone().poll_loop().await;
        inner.drain().await;
        heartbeat_stop.cancel();
        if let Err(err) = heartbeat.await {
            tracing::error!(error = %err, "the heartbeat task failed");
        }
        if let Err(err) = gpu_health.await {
            tracing::error!(error = %err, "the GPU health task failed");
        }
        inner.deregister().await;
        Ok(())
    }
}

/// One line per GPU device at info (a warning for an unhealthy one, which is not booked).
fn log_gpus(gpus: &[GpuDevice]) {
    for gpu in gpus {
        let uuid = gpu.uuid.as_deref().unwrap_or("unknown");
        if gpu.healthy {
            tracing::info!(index = gpu.index, gpu_type = %gpu.gpu_type, memory_mib = gpu.memory_mib,
                uuid, "GPU device");
        } else {
            tracing::warn!(index = gpu.index, gpu_type = %gpu.gpu_type, uuid,
                "GPU device unhealthy: it is not registered and gets no containers");
        }
    }
}

/// What the agent's tasks share.
pub(crate) struct Inner {
    worker: WorkerId,
    config: AgentConfig,
    /// What it registers; the GPU health check updates the devices' health.
    registration: Mutex<Registration>,
    control: Arc<dyn Control>,
    runtime: Arc<dyn ContainerRuntime>,
    /// The epoch of the latest registration: every call to the server carries it.
    epoch: AtomicU64,
    /// The images the server last accepted from a heartbeat, and under which epoch (a new
    /// registration starts without images, so they are reported again).
    reported_images: Mutex<Option<(u64, Vec<String>)>>,
    /// Held while registering again, so that calls refused together renew once.
    renewing: tokio::sync::Mutex<()>,
    /// Containers from their RUNNING report until their final report, with the signal that
    /// stops them. Heartbeats report their ids; cancellations and the drain reach them here.
    active: Mutex<BTreeMap<(ContainerId, AttemptId), Arc<StopSignal>>>,
    /// One task per delivery taken. Shutdown: closed, then waited for by the drain.
    tasks: TaskTracker,
    /// Shutdown: fires when the agent stops taking work; the long-poll and the RUNNING
    /// reports of deliveries not yet started stop at once.
    shutdown: CancellationToken,
    /// Shutdown: fires when the drain gives up on the final reports and acks in flight.
    abandon: CancellationToken,
}

impl Inner {
    /// Registers with the images the runtime holds, retrying while the server is
    /// unavailable, and takes the new epoch; `None` if shut down first.
    async fn register(&self) -> Result<Option<Lease>, AgentError> {
        let mut registration = self.registration.lock().clone();
        registration.images = self.runtime.held_images();
        let call = || self.control.register(&registration);
        match retry("register", self.config.retry, &self.shutdown, call).await {
            Ok(lease) => {
                self.epoch.store(lease.epoch, Ordering::SeqCst);
                // Heartbeats report the images again only once they differ from these.
                *self.reported_images.lock() = Some((lease.epoch, registration.images.clone()));
                let r = &registration;
                tracing::info!(worker = %r.worker, epoch = lease.epoch, pool = %r.pool,
                    total = %r.total, gpu_type = ?r.gpu_type, owned = lease.owned.len(),
                    "worker registered");
                Ok(Some(lease))
            }
            Err(GaveUp::Stopped) => Ok(None),
            Err(GaveUp::Refused(source)) => Err(AgentError::RegistrationRefused {
                worker: self.worker.clone(),
                source,
            }),
        }
    }

    /// The epoch calls carry now.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Registers again after a call under epoch `presented` was refused (a stale epoch: the
    /// worker was declared lost or registered elsewhere; or the server forgot the worker),
    /// once for all the calls refused together; then stops every running container the
    /// registration does not list as owned: its capacity was given back, so running it on
    /// would overbook this machine.
    pub(crate) async fn renew(&self, presented: u64, why: &str) {
        let _one = self.renewing.lock().await;
        if self.epoch() != presented {
            return;
        }
        self.register_again_locked(why).await;
    }

    /// Registers again now (with new GPU health), once at a time with [`Inner::renew`].
    pub(crate) async fn register_again(&self, why: &str) -> Option<Lease> {
        let _one = self.renewing.lock().await;
        self.register_again_locked(why).await
    }

    /// Registers again and stops every running container the registration does not list
    /// as owned; the caller holds `renewing`. `None` if the registration failed or the
    /// agent shut down first.
    async fn register_again_locked(&self, why: &str) -> Option<Lease> {
        tracing::warn!(worker = %self.worker, epoch = self.epoch(), why, "registering again");
        crate::metrics::reregistered();
        match self.register().await {
            Ok(Some(lease)) => {
                self.keep_only(&lease.owned);
                Some(lease)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::error!(error = %err, "registering again failed");
                None
            }
        }
    }

    /// Deals with the containers an earlier life of the agent left (after a crash or a
    /// restart): those the worker still owns are adopted and supervised to their end; the
    /// others are killed and removed, since their capacity was given back. An owned one
    /// that cannot be adopted is reported FAILED, so its capacity is given back too.
    async fn recover(self: &Arc<Self>, owned: &[(ContainerId, AttemptId)]) {
        let owned: HashSet<&(ContainerId, AttemptId)> = owned.iter().collect();
        for leftover in self.runtime.leftovers().await {
            let key = (leftover.container.clone(), leftover.attempt.clone());
            let target = container::Target::new(key.0.clone(), key.1.clone());
            if !owned.contains(&key) {
                tracing::warn!(container = %key.0, attempt = %key.1,
                    "a container left by an earlier life that this worker does not own; killing it");
                crate::metrics::leftover("discarded");
                self.runtime.discard(&leftover).await;
                continue;
            }
            match self.runtime.adopt(&leftover).await {
                Ok(handle) => {
                    crate::metrics::leftover("adopted");
                    self.tasks.spawn(self.clone().run_adopted(target, handle));
                }
                Err(err) => {
                    tracing::error!(container = %key.0, error = %err, "cannot adopt a container this worker owns; reporting it failed");
                    crate::metrics::leftover("discarded");
                    self.runtime.discard(&leftover).await;
                    let reason = format!("lost when the worker restarted: {err}");
                    self.fail_unadoptable(target, reason).await;
                }
            }
        }
    }

    /// Stops the active containers that are not in `owned`.
    fn keep_only(&self, owned: &[(ContainerId, AttemptId)]) {
        let owned: HashSet<&(ContainerId, AttemptId)> = owned.iter().collect();
        let stopped = self.stop_where(container::StopReason::WorkerLost, |key| {
            !owned.contains(key)
        });
        for ((container, attempt), first) in stopped {
            if first {
                tracing::warn!(%container, %attempt, "not owned by this worker any more; stopping it");
            }
        }
    }

    /// Stops the active containers the server says this worker does not own.
    fn stop_unowned(&self, containers: &[ContainerId]) {
        let named: HashSet<&ContainerId> = containers.iter().collect();
        let stopped = self.stop_where(container::StopReason::WorkerLost, |(c, _)| {
            named.contains(c)
        });
        for ((container, _), first) in stopped {
            if first {
                tracing::warn!(%container, "the server says this worker does not own it; stopping it");
            }
        }
    }

    /// Asks every active container whose key `pick` selects to stop for `reason`; returns
    /// their keys, each with whether this was the first stop asked of it.
    fn stop_where(
        &self,
        reason: container::StopReason,
        pick: impl Fn(&(ContainerId, AttemptId)) -> bool,
    ) -> Vec<((ContainerId, AttemptId), bool)> {
        let picked: Vec<((ContainerId, AttemptId), Arc<StopSignal>)> = self
            .active
            .lock()
            .iter()
            .filter(|(key, _)| pick(key))
            .map(|(key, stop)| (key.clone(), stop.clone()))
            .collect();
        picked
            .into_iter()
            .map(|(key, stop)| (key, stop.request(reason)))
            .collect()
    }

    /// Calls `call` with the current epoch under the retry policy; after a stale epoch,
    /// registers again ([`Inner::renew`]) and calls again with the new one, at most
    /// [`MAX_RENEWALS`] times.
    pub(crate) async fn fenced<T, F, Fut>(
        &self,
        what: &str,
        stop: &CancellationToken,
        call: F,
    ) -> Result<T, GaveUp>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<T, ControlError>>,
    {
        let mut renewals = 0;
        loop {
            let epoch = self.epoch();
            match retry(what, self.config.retry, stop, || call(epoch)).await {
                Err(GaveUp::Refused(ControlError::StaleEpoch(why))) if renewals < MAX_RENEWALS => {
                    renewals += 1;
                    self.renew(epoch, &why).await;
                }
                other => return other,
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.heartbeat_every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let running = self.running_ids();
            let epoch = self.epoch();
            let images = self.images_to_report(epoch);
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = self.control.heartbeat(&self.worker, epoch, &running, images.as_deref()) => result,
            };
            match result {
                Ok(reply) => {
                    if let Some(images) = images {
                        *self.reported_images.lock() = Some((epoch, images));
                    }
                    if failing {
                        tracing::info!("heartbeats go through again");
                    }
                    failing = false;
                    if reply.lost {
                        self.renew(epoch, "the server declared this worker lost")
                            .await;
                    } else {
                        self.cancel(&reply.cancel);
                        self.stop_unowned(&reply.stop);
                    }
                }
                Err(ControlError::NotFound(why) | ControlError::StaleEpoch(why)) => {
                    self.renew(epoch, &why).await;
                }
                Err(err) => {
                    crate::metrics::server_error();
                    if !failing {
                        tracing::warn!(error = %err, "heartbeat failed; retrying every beat");
                    }
                    failing = true;
                }
            }
        }
    }

    /// The images the runtime holds, when they differ from what the server last accepted
    /// under `epoch` (`None`: nothing new to say).
    fn images_to_report(&self, epoch: u64) -> Option<Vec<String>> {
        let held = self.runtime.held_images();
        let reported = self.reported_images.lock();
        let unchanged = reported
            .as_ref()
            .is_some_and(|(at, images)| *at == epoch && *images == held);
        (!unchanged).then_some(held)
    }

    /// The ids of the active containers, once each.
    fn running_ids(&self) -> Vec<ContainerId> {
        let mut ids: Vec<ContainerId> = self.active.lock().keys().map(|(c, _)| c.clone()).collect();
        ids.dedup();
        ids
    }

    /// Stops the active containers the server asked to cancel.
    fn cancel(&self, containers: &[ContainerId]) {
        for container in containers {
            let stopped =
                self.stop_where(container::StopReason::Cancelled, |(c, _)| c == container);
            if stopped.is_empty() {
                tracing::debug!(%container, "cancellation of a container that does not run here");
            }
            if stopped.iter().any(|(_, first)| *first) {
                tracing::info!(%container, "cancellation asked for; stopping the container");
            }
        }
    }

    async fn poll_loop(self: Arc<Self>) {
        let config = &self.config;
        let mut backoff = Backoff::new(config.retry);
        loop {
            let asked = Instant::now();
            let epoch = self.epoch();
            let call =
                self.control
                    .assignments(&self.worker, epoch, config.poll_max, config.poll_wait);
            let result = tokio::select! {
                () = self.shutdown.cancelled() => return,
                result = call => result,
            };
            // An empty answer that comes back at once (a server that does not wait, or one
            // shutting down) would turn the long-poll into a busy poll: back off instead.
            let quick = asked.elapsed() < (config.poll_wait / 2).min(QUICK_EMPTY_POLL);
            let pause = match result {
                Ok(deliveries) if deliveries.is_empty() => {
                    if !quick {
                        backoff.reset();
                    }
                    quick
                }
                Ok(deliveries) => {
                    backoff.reset();
                    deliveries.into_iter().for_each(|d| self.accept(d));
                    false
                }
                Err(ControlError::NotFound(why) | ControlError::StaleEpoch(why)) => {
                    self.renew(epoch, &why).await;
                    true
                }
                Err(err) => {
                    crate::metrics::server_error();
                    tracing::warn!(error = %err, "polling for assignments failed; retrying");
                    true
                }
            };
            if pause && !backoff.sleep(&self.shutdown).await {
                return;
            }
        }
    }

    /// Takes a delivery on: runs it in its own task, unless the agent is shutting down.
    fn accept(self: &Arc<Self>, delivery: Delivery) {
        if self.shutdown.is_cancelled() {
            tracing::debug!(delivery = %delivery.id, container = %delivery.container,
                "shutting down: delivery left unacknowledged");
            return;
        }
        self.tasks.spawn(self.clone().run_delivery(delivery));
    }

    async fn drain(&self) {
        self.tasks.close();
        let active = self.active.lock().len();
        tracing::info!(active, grace = ?self.config.grace, "shutting down: draining");
        if timeout(self.config.grace, self.tasks.wait()).await.is_ok() {
            return;
        }
        let stops: Vec<Arc<StopSignal>> = self.active.lock().values().cloned().collect();
        tracing::warn!(
            left = stops.len(),
            "grace period over: stopping the containers left"
        );
        for stop in stops {
            stop.request(container::StopReason::ShuttingDown);
        }
        if timeout(self.config.report_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::error!("final reports still not through: giving up on them");
            self.abandon.cancel();
            let _ = timeout(ABANDON_WAIT, self.tasks.wait()).await;
        }
    }

    async fn deregister(&self) {
        let mut backoff = Backoff::new(self.config.retry);
        let never = CancellationToken::new();
        for attempt in 1..=self.config.deregister_attempts {
            match self.control.deregister(&self.worker).await {
                Ok(()) => {
                    tracing::info!(worker = %self.worker, "worker deregistered");
                    return;
                }
                Err(ControlError::NotFound(_)) => {
                    tracing::info!(worker = %self.worker, "worker already gone");
                    return;
                }
                Err(err @ (ControlError::Conflict(_) | ControlError::Unavailable(_))) => {
                    tracing::info!(attempt, error = %err, "cannot deregister yet; retrying");
                }
                Err(err) => {
                    tracing::error!(error = %err, "the server refused to deregister the worker");
                    return;
                }
            }
            if attempt < self.config.deregister_attempts {
                backoff.sleep(&never).await;
            }
        }
        tracing::warn!(worker = %self.worker, "gave up deregistering; the server reclaims the worker when its heartbeat expires");
    }
}
