//! The agent against the real berth server (engine on the memory store) over HTTP: what a
//! client submits runs, its output reaches `berth logs`, cancellations and timeouts stop
//! it, and on shutdown the worker leaves nothing behind.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_agent::{AgentConfig, CapacityConfig, RetryPolicy, run_agent};
use berth_api::{Client, ContainerSpec, ContainerView};
use berth_core::{ContainerId, PoolName, Role, RuntimeName, Token, WorkerId};
use berth_engine::{Engine, EngineConfig};
use berth_server::{AppState, ServerConfig, serve};
use berth_store::{MemoryStore, Store};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);

/// A server on the memory store: its URL, a client with its admin token, and a join token.
async fn start_server(stop: CancellationToken) -> (String, Client, Token) {
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
    let admin = Token::from_random(rand::random(), rand::random());
    berth_server::tokens::bootstrap_admin(&*store, &admin.expose(), 0)
        .await
        .unwrap();
    let join = berth_server::tokens::issue(&*store, Role::Join, "test workers", 0)
        .await
        .unwrap();
    let state = AppState::new(store, engine, Vec::new(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        state,
        async move { stop.cancelled().await },
    ));
    let client = Client::new(&base).unwrap().with_token(admin.expose());
    (base, client, join)
}

fn agent_config(base: &str, dir: &TempDir, join: &Token) -> AgentConfig {
    let mut config = AgentConfig::new(
        base,
        WorkerId::new("w-1").unwrap(),
        PoolName::new("cpu").unwrap(),
        dir.path().join("work"),
    );
    config.join_token = Some(join.clone());
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

/// Waits until `path` exists; panics after [`PATIENCE`].
async fn wait_for_file(path: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let (base, client, join) = start_server(stop_server.clone()).await;
    let dir = TempDir::new().unwrap();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(
        agent_config(&base, &dir, &join),
        shutdown.clone(),
    ));
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
    let mut secretive = ContainerSpec::new(
        100,
        64,
        ["sh", "-c", r#"test "$API_KEY" = "s3cr3t" && echo has-it"#]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    secretive.id = Some("secretive".to_owned());
    secretive
        .secret_env
        .insert("API_KEY".to_owned(), "s3cr3t".to_owned());
    let secretive = client.submit(&secretive).await.unwrap().id;

    let view = wait_for(&client, &hello, "exited").await;
    assert_eq!(view.exit_code, Some(3));
    let view = wait_for(&client, &secretive, "exited").await;
    assert_eq!(view.exit_code, Some(0), "the container got its secret");
    assert_eq!(client.logs(&secretive).await.unwrap().lines, vec!["has-it"]);
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
    let (base, client, join) = start_server(stop_server.clone()).await;
    let dir = TempDir::new().unwrap();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run_agent(
        agent_config(&base, &dir, &join),
        shutdown.clone(),
    ));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_registers_again_as_itself_with_its_kept_credential() {
    use std::os::unix::fs::PermissionsExt as _;
    let stop_server = CancellationToken::new();
    let (base, client, join) = start_server(stop_server.clone()).await;
    let dir = TempDir::new().unwrap();
    let first = tokio::spawn(run_agent(
        agent_config(&base, &dir, &join),
        CancellationToken::new(),
    ));
    wait_for_worker(&client).await;
    let kept = dir.path().join("work").join("credential.w-1");
    // The server lists the worker before the agent has its answer and keeps the credential.
    wait_for_file(&kept).await;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the credential is its owner's only");
    let credential = Token::parse(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    let listed = client.tokens().await.unwrap();
    let mine = listed
        .iter()
        .find(|t| t.id == credential.id().as_str())
        .unwrap();
    assert_eq!(
        (mine.kind.as_str(), mine.worker.as_deref()),
        ("worker", Some("w-1"))
    );

    // A crash: the agent stops without deregistering, so the worker is still registered
    // and alive, and the join token may not take its id over. The restarted agent
    // registers with the credential it kept.
    first.abort();
    let _ = first.await;
    let id = WorkerId::new("w-1").unwrap();
    let takeover = Client::new(&base)
        .unwrap()
        .with_token(join.expose())
        .register(&berth_api::RegisterWorker::new(
            id.clone(),
            &PoolName::new("cpu").unwrap(),
            4000,
            8192,
        ))
        .await
        .unwrap_err();
    assert_eq!(takeover.status(), Some(403), "{takeover}");
    let epoch_before = client.worker(&id).await.unwrap().worker.epoch;
    let shutdown = CancellationToken::new();
    let second = tokio::spawn(run_agent(
        agent_config(&base, &dir, &join),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.worker(&id).await.unwrap().worker.epoch == epoch_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never registered again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hello = submit(&client, "after-restart", &["true"], None).await;
    wait_for(&client, &hello, "exited").await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    // Deregistering revoked the worker's credentials.
    assert!(
        client
            .tokens()
            .await
            .unwrap()
            .iter()
            .all(|t| t.kind != "worker")
    );
    stop_server.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_id_in_an_old_work_dir_joins_with_the_join_token() {
    let stop_server = CancellationToken::new();
    let (base, client, join) = start_server(stop_server.clone()).await;
    let dir = TempDir::new().unwrap();
    let first = tokio::spawn(run_agent(
        agent_config(&base, &dir, &join),
        CancellationToken::new(),
    ));
    wait_for_worker(&client).await;
    first.abort();
    let _ = first.await;
    // The machine's next worker takes a new id in the same work dir, where w-1's
    // credential is kept: that credential may not act for w-2, so w-2 joins.
    let mut config = agent_config(&base, &dir, &join);
    config.worker_id = WorkerId::new("w-2").unwrap();
    let shutdown = CancellationToken::new();
    let second = tokio::spawn(run_agent(config, shutdown.clone()));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !client
        .workers()
        .await
        .unwrap()
        .iter()
        .any(|w| w.id.as_str() == "w-2")
    {
        assert!(
            !second.is_finished(),
            "the new worker gave up: {:?}",
            second.await
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "w-2 never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    stop_server.cancel();
}
