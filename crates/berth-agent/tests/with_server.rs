//! The agent against the real berth server (engine on the memory store) over HTTP: what a
//! client submits runs, its output reaches `berth logs`, cancellations and timeouts stop
//! it, and on shutdown the worker leaves nothing behind.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_agent::{AgentConfig, CapacityConfig, RetryPolicy, run_agent};
use berth_api::{Client, ContainerSpec, ContainerView};
use berth_core::{ContainerId, PoolName, RuntimeName, WorkerId};
use berth_engine::{Engine, EngineConfig};
use berth_server::{AppState, ServerConfig, serve};
use berth_store::{MemoryStore, Store};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);

async fn start_server(stop: CancellationToken) -> String {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let engine_config = EngineConfig {
        cache_ttl: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::start(store.clone(), engine_config, Vec::new()));
    let config = ServerConfig {
        fleet_cache_ttl: Duration::ZERO,
        ..ServerConfig::default()
    };
    let state = AppState::new(store, engine, Vec::new(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        state,
        async move { stop.cancelled().await },
    ));
    base
}

fn agent_config(base: &str, dir: &TempDir) -> AgentConfig {
    let mut config = AgentConfig::new(
        base,
        WorkerId::new("w-1").unwrap(),
        PoolName::new("cpu").unwrap(),
        dir.path().join("work"),
    );
    config.capacity = CapacityConfig {
        cpu_millicores: Some(4000),
        memory_mib: Some(8192),
        ..CapacityConfig::default()
    };
    config.heartbeat_every = Duration::from_millis(200);
    config.stop_grace = Duration::from_millis(500);
    config.retry = RetryPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    config
}

async fn submit(
    client: &Client,
    id: &str,
    command: &[&str],
    timeout_secs: Option<u64>,
) -> ContainerId {
    let mut spec = ContainerSpec::new(100, 64, command.iter().map(|s| s.to_string()).collect());
    spec.id = Some(id.to_owned());
    spec.timeout_secs = timeout_secs;
    client.submit(&spec).await.unwrap().id
}

/// Waits until the worker has registered.
async fn wait_for_worker(client: &Client) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.workers().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(client: &Client, id: &ContainerId, state: &str) -> ContainerView {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let view = client.container(id).await.unwrap();
        if view.state.as_str() == state {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never became {state}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_what_clients_submit_and_leaves_nothing_behind() {
    let stop_server = CancellationToken::new();
    let base = start_server(stop_server.clone()).await;
    let client = Client::new(&base).unwrap();
    let dir = TempDir::new().unwrap();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(agent_config(&base, &dir), shutdown.clone()));
    wait_for_worker(&client).await;
    let registered = &client.workers().await.unwrap()[0];
    // runc is installed wherever these tests run (the test script installs it), so the
    // default (auto) runtime is runc, and every container below runs under it.
    assert_eq!(registered.runtime, RuntimeName::RUNC, "{registered:?}");

    let hello = submit(&client, "hello", &["sh", "-c", "echo hello; exit 3"], None).await;
    let sleeper = submit(
        &client,
        "sleeper",
        &["sh", "-c", "echo up; sleep 30 & wait"],
        None,
    )
    .await;
    let slow = submit(&client, "slow", &["sleep", "30"], Some(1)).await;
    let missing = submit(&client, "missing", &["no-such-command-berth"], None).await;

    let view = wait_for(&client, &hello, "exited").await;
    assert_eq!(view.exit_code, Some(3));
    assert_eq!(client.logs(&hello).await.unwrap().lines, vec!["hello"]);

    wait_for(&client, &sleeper, "running").await;
    client.cancel(&sleeper).await.unwrap();
    let view = wait_for(&client, &sleeper, "failed").await;
    assert_eq!(view.reason.as_deref(), Some("cancelled"));
    assert_eq!(client.logs(&sleeper).await.unwrap().lines, vec!["up"]);

    let view = wait_for(&client, &slow, "failed").await;
    assert_eq!(view.reason.as_deref(), Some("timed out after 1 s"));
    let view = wait_for(&client, &missing, "failed").await;
    assert_eq!(
        view.reason.as_deref(),
        Some("command not found: no-such-command-berth")
    );

    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(
        worker.free, worker.total,
        "every container gave its capacity back"
    );
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, agent)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    assert!(
        client.workers().await.unwrap().is_empty(),
        "the worker deregistered"
    );
    assert!(client.check().await.unwrap().violations.is_empty());
    stop_server.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_container_fails_and_releases_its_capacity_once() {
    let stop_server = CancellationToken::new();
    let base = start_server(stop_server.clone()).await;
    let client = Client::new(&base).unwrap();
    let dir = TempDir::new().unwrap();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(agent_config(&base, &dir), shutdown.clone()));
    wait_for_worker(&client).await;
    // 256 MiB through sort under a 64 MiB booking (submit books 64 MiB): 4x the booking.
    let hog = ["sh", "-c", "head -c 268435456 /dev/zero | sort > /dev/null"];
    let id = submit(&client, "hog", &hog, None).await;
    let view = wait_for(&client, &id, "failed").await;
    assert_eq!(view.reason.as_deref(), Some("oom_killed"), "{view:?}");
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.free, worker.total, "capacity released: {worker:?}");
    assert!(client.check().await.unwrap().violations.is_empty());
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, agent)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    stop_server.cancel();
}
