//! The agent-loop test harness: a fake server, a transport to it, and an agent to run.

#![allow(dead_code)] // Each test binary uses a part.

pub mod fake;
pub mod http;

use async_trait::async_trait;
use berth_agent::{
    Agent, AgentConfig, AgentError, CapacityConfig, ContainerHandle, ContainerRuntime,
    ContainerSpec, Control, ControlError, Delivery, HeartbeatReply, Lease, ProcessRuntime,
    Registration, RetryPolicy, StartError, StatusReport,
};
use berth_core::AttemptId;
use berth_core::{ContainerId, PoolName, RuntimeName, WorkerId};
use fake::{FakeServer, State};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any wait in these tests may take before it counts as a failure: generous, for
/// slow machines.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The fake server called directly, without HTTP.
pub struct MemoryControl(pub Arc<FakeServer>);

#[async_trait]
impl Control for MemoryControl {
    async fn register(&self, registration: &Registration) -> Result<Lease, ControlError> {
        self.0.register(registration)
    }
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        epoch: u64,
        running: &[ContainerId],
        images: Option<&[String]>,
    ) -> Result<HeartbeatReply, ControlError> {
        self.0.heartbeat(worker, epoch, running, images)
    }
    async fn release(
        &self,
        worker: &WorkerId,
        epoch: u64,
        container: &ContainerId,
        attempt: &AttemptId,
    ) -> Result<bool, ControlError> {
        self.0.release(worker, epoch, container, attempt)
    }
    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: u64,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ControlError> {
        self.0.assignments(worker, epoch, max, wait).await
    }
    async fn ack(&self, worker: &WorkerId, epoch: u64, delivery: &str) -> Result<(), ControlError> {
        self.0.ack(worker, epoch, delivery)
    }
    async fn report(
        &self,
        container: &ContainerId,
        report: &StatusReport,
    ) -> Result<(), ControlError> {
        self.0.report(container, report)
    }
    async fn deregister(&self, worker: &WorkerId) -> Result<(), ControlError> {
        self.0.deregister(worker)
    }
}

/// The agent's configuration for tests: fixed capacity, quick heartbeats and retries, a
/// real 20 s long-poll, a long grace.
pub fn test_config(server_url: &str, work_dir: &TempDir) -> AgentConfig {
    let mut config = AgentConfig::new(
        server_url,
        WorkerId::new("w-1").expect("worker id"),
        PoolName::new("default").expect("pool name"),
        work_dir.path().join("work"),
    );
    config.capacity = CapacityConfig {
        cpu_millicores: Some(4000),
        memory_mib: Some(8192),
        ..CapacityConfig::default()
    };
    config.heartbeat_every = Duration::from_millis(200);
    config.poll_wait = Duration::from_secs(20);
    config.grace = PATIENCE;
    config.stop_grace = Duration::from_millis(500);
    config.retry = RetryPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    config
}

/// A running agent and the means to stop it.
pub struct RunningAgent {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), AgentError>>,
    pub dir: TempDir,
}

impl RunningAgent {
    /// Starts an agent with `control` and the process runtime.
    pub fn start(control: Arc<dyn Control>, config: AgentConfig, dir: TempDir) -> RunningAgent {
        let runtime = Arc::new(ProcessRuntime::new(config.process_runtime()));
        Self::start_with_runtime(control, config, dir, runtime)
    }

    /// Starts an agent with `control` and `runtime`.
    pub fn start_with_runtime(
        control: Arc<dyn Control>,
        config: AgentConfig,
        dir: TempDir,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> RunningAgent {
        let agent = Agent::new(config, control, runtime).expect("valid configuration");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(agent.run(shutdown.clone()));
        RunningAgent {
            shutdown,
            task,
            dir,
        }
    }

    /// Signals shutdown and waits for the agent to end.
    pub async fn stop(self) -> Result<(), AgentError> {
        self.shutdown.cancel();
        self.finished().await
    }

    /// Waits for the agent to end.
    pub async fn finished(self) -> Result<(), AgentError> {
        tokio::time::timeout(PATIENCE * 3, self.task)
            .await
            .expect("the agent ends")
            .expect("the agent task does not panic")
    }
}

/// The process runtime under another name: what the agent registers with comes from the
/// runtime it is given.
pub struct Renamed {
    /// What runs the containers.
    pub inner: ProcessRuntime,
    /// The name it gives.
    pub name: RuntimeName,
}

#[async_trait]
impl ContainerRuntime for Renamed {
    fn name(&self) -> RuntimeName {
        self.name.clone()
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn ContainerHandle>, StartError> {
        self.inner.start(spec).await
    }
}

/// Waits until `check` holds on the server's state; panics after [`PATIENCE`]. `check`
/// runs under the server's lock: it must not call the server.
pub async fn wait_until(server: &FakeServer, what: &str, check: impl Fn(&State) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if server.with(|s| check(s)) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let events = server.with(|s| s.events.clone());
            panic!("timed out waiting for {what}; events: {events:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
