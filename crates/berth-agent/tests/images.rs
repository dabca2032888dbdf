//! The agent and images: it registers with the images its runtime holds and reports them
//! in its heartbeats when they change; a container whose image is not
//! held is reported PULLING while the image comes, then RUNNING; a container whose image
//! cannot be pulled is tried again a bounded number of times, then reported FAILED with
//! an `image_pull:` reason. An image found held or pulled stays leased until the container
//! has started.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use async_trait::async_trait;
use berth_agent::runtime::{ContainerHandle, ContainerSpec, StartError};
use berth_agent::{ContainerRuntime, ImageLease, PULL_ATTEMPTS, ProcessRuntime};
use berth_core::{ContainerState, RuntimeName};
use common::fake::FakeServer;
use common::{MemoryControl, RunningAgent, test_config, wait_until};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tempfile::TempDir;

/// The process runtime with a pretend image cache: it holds `held`, and fails the pull of
/// an image in `failing` with a pull error that many times; an image pulled is held. An
/// image goes when the last lease on it is dropped (a cache with no room for images not in
/// use), so a start that finds its image gone pulls it again.
struct Registry {
    inner: ProcessRuntime,
    held: Arc<Mutex<Vec<String>>>,
    /// How many leases each image has.
    leases: Arc<Mutex<HashMap<String, usize>>>,
    failing: Mutex<HashMap<String, u32>>,
    tries: Mutex<HashMap<String, u32>>,
}

impl Registry {
    fn holds(&self, image: &str) -> bool {
        self.held.lock().iter().any(|held| held == image)
    }

    fn lease(&self, image: &str) -> ImageLease {
        *self.leases.lock().entry(image.to_owned()).or_default() += 1;
        ImageLease::holding(Leased {
            image: image.to_owned(),
            held: self.held.clone(),
            leases: self.leases.clone(),
        })
    }
}

#[async_trait]
impl ContainerRuntime for Registry {
    fn name(&self) -> RuntimeName {
        RuntimeName::PROCESS
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn ContainerHandle>, StartError> {
        if let Some(image) = spec.payload.image.as_deref()
            && !self.holds(image)
        {
            self.pull(image).await?;
        }
        self.inner.start(spec).await
    }

    async fn lease_held(&self, image: &str) -> Option<ImageLease> {
        self.holds(image).then(|| self.lease(image))
    }

    async fn pull(&self, image: &str) -> Result<ImageLease, StartError> {
        *self.tries.lock().entry(image.to_owned()).or_default() += 1;
        if image.starts_with("hanging") {
            // A registry that never answers (the agent must not wait for it to stop).
            std::future::pending::<()>().await;
        }
        if let Some(left) = self.failing.lock().get_mut(image).filter(|left| **left > 0) {
            *left -= 1;
            return Err(StartError::ImagePull(format!(
                "{image}: connection refused"
            )));
        }
        self.held.lock().insert(0, image.to_owned());
        Ok(self.lease(image))
    }

    fn held_images(&self) -> Vec<String> {
        self.held.lock().clone()
    }
}

/// A lease on an image: dropping the last one evicts the image.
struct Leased {
    image: String,
    held: Arc<Mutex<Vec<String>>>,
    leases: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Leased {
    fn drop(&mut self) {
        let mut leases = self.leases.lock();
        let left = leases.entry(self.image.clone()).or_default();
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.held.lock().retain(|held| *held != self.image);
        }
    }
}

fn start(server: &Arc<FakeServer>, runtime: Arc<Registry>) -> RunningAgent {
    let dir = TempDir::new().unwrap();
    let config = test_config("http://unused.invalid", &dir);
    let control = Arc::new(MemoryControl(server.clone()));
    RunningAgent::start_with_runtime(control, config, dir, runtime)
}

fn registry(dir: &TempDir, held: &[&str], failing: &[(&str, u32)]) -> Arc<Registry> {
    let config = test_config("http://unused.invalid", dir);
    Arc::new(Registry {
        inner: ProcessRuntime::new(config.process_runtime()),
        held: Arc::new(Mutex::new(held.iter().map(|i| (*i).to_owned()).collect())),
        leases: Arc::new(Mutex::new(HashMap::new())),
        failing: Mutex::new(failing.iter().map(|(i, n)| ((*i).to_owned(), *n)).collect()),
        tries: Mutex::new(HashMap::new()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_images_are_registered_then_reported_when_they_change() {
    let dir = TempDir::new().unwrap();
    let runtime = registry(&dir, &["app:v1"], &[]);
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, runtime.clone());
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    let registered = server.with(|s| s.workers.values().next().unwrap().images.clone());
    assert_eq!(
        registered,
        ["app:v1"],
        "a restarted worker's cache counts at once"
    );
    // Several heartbeats (every 200 ms) without a change carry no images.
    let beats = server.with(|s| s.heartbeats);
    wait_until(&server, "three more heartbeats", |s| {
        s.heartbeats >= beats + 3
    })
    .await;
    server.with(|s| assert!(s.image_reports.is_empty(), "{:?}", s.image_reports));
    *runtime.held.lock() = vec!["tools:2".to_owned(), "app:v1".to_owned()];
    wait_until(&server, "the changed list", |s| s.image_reports.len() == 1).await;
    server.with(|s| assert_eq!(s.image_reports[0], vec!["tools:2", "app:v1"]));
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_is_tried_again_then_fails_with_its_reason() {
    let dir = TempDir::new().unwrap();
    let runtime = registry(&dir, &[], &[("flaky:1", 2), ("gone:1", u32::MAX)]);
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, runtime.clone());
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.assign_image("w-1", "c-flaky", "flaky:1", &["true"]);
    server.assign_image("w-1", "c-gone", "gone:1", &["true"]);
    wait_until(&server, "both ended", |s| {
        s.records.values().all(|r| r.state.is_terminal())
    })
    .await;
    let flaky = server.record("c-flaky").unwrap();
    assert_eq!(flaky.state, ContainerState::Exited, "{:?}", flaky.reason);
    let gone = server.record("c-gone").unwrap();
    assert_eq!(gone.state, ContainerState::Failed);
    let reason = gone.reason.unwrap();
    assert!(
        reason.starts_with("image_pull: gone:1: connection refused")
            && reason.contains(&format!("tried {PULL_ATTEMPTS} times")),
        "{reason}"
    );
    let tries = runtime.tries.lock().clone();
    assert_eq!(tries["flaky:1"], 3);
    assert_eq!(tries["gone:1"], PULL_ATTEMPTS, "bounded, never forever");
    server.with(|s| {
        assert!(s.events.contains(&"pulling c-gone".to_owned()));
        assert!(!s.events.contains(&"running c-gone".to_owned()));
    });
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_is_reported_pulling_then_running_and_a_warm_one_running_at_once() {
    let dir = TempDir::new().unwrap();
    let runtime = registry(&dir, &["warm:1"], &[]);
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, runtime.clone());
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.assign_image("w-1", "c-cold", "cold:1", &["true"]);
    wait_until(&server, "the cold one ended", |s| {
        s.records.values().all(|r| r.state.is_terminal())
    })
    .await;
    server.assign_image("w-1", "c-warm", "warm:1", &["true"]);
    wait_until(&server, "the warm one ended", |s| {
        s.records.values().all(|r| r.state.is_terminal())
    })
    .await;
    let events = server.with(|s| s.events.clone());
    let at = |event: &str| events.iter().position(|e| e == event);
    let (pulling, running) = (at("pulling c-cold"), at("running c-cold"));
    assert!(
        pulling.is_some() && running.is_some() && pulling < running,
        "{events:?}"
    );
    assert_eq!(at("pulling c-warm"), None, "{events:?}");
    assert!(at("running c-warm").is_some(), "{events:?}");
    assert_eq!(
        server.record("c-cold").unwrap().state,
        ContainerState::Exited
    );
    assert_eq!(
        runtime.tries.lock()["cold:1"],
        1,
        "pulled once, before the start, and kept for it"
    );
    assert_eq!(
        runtime.tries.lock().get("warm:1"),
        None,
        "found held, it stayed leased until the start"
    );
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pull_ends_at_once_and_a_redelivery_meanwhile_is_not_acknowledged() {
    let dir = TempDir::new().unwrap();
    let runtime = registry(&dir, &[], &[]);
    let server = Arc::new(FakeServer::with_redelivery(
        std::time::Duration::from_millis(200),
    ));
    let agent = start(&server, runtime.clone());
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.assign_image("w-1", "c-hang", "hanging:1", &["true"]);
    wait_until(&server, "the pull to be reported", |s| {
        s.events.contains(&"pulling c-hang".to_owned())
    })
    .await;
    // The fake server redelivers unacknowledged deliveries: while the pull hangs, no copy
    // of the delivery is acknowledged (an agent restarted now would get it again).
    wait_until(&server, "a redelivery", |s| {
        s.events.contains(&"redelivered c-hang".to_owned())
    })
    .await;
    server.with(|s| {
        assert!(
            !s.events.iter().any(|e| e.starts_with("ack ")),
            "{:?}",
            s.events
        );
    });
    server.cancel("c-hang");
    wait_until(&server, "the cancelled pull to end", |s| {
        s.records.values().all(|r| r.state.is_terminal())
    })
    .await;
    let record = server.record("c-hang").unwrap();
    assert_eq!(
        (record.state, record.reason.as_deref()),
        (ContainerState::Failed, Some("cancelled"))
    );
    assert_eq!(
        runtime.tries.lock()["hanging:1"],
        1,
        "not tried again once stopped"
    );
    agent.stop().await.unwrap();
}
