//! `berth up`: the embedded default in one command: a server on the in-memory store and
//! local workers (this machine split in N), ready for `berth run`.

use super::server::{ServerArgs, resolve, shutdown_signal};
use anyhow::Context;
use berth_agent::{AgentConfig, CancellationToken, CapacityConfig, detect_host, run_agent};
use berth_api::Client;
use berth_core::{PoolName, WorkerId};
use berth_engine::Engine;
use berth_server::AppState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `berth up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// The address the API listens on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// How many local workers share this machine.
    #[arg(long, default_value_t = 4)]
    pub workers: u32,
    /// Where the workers keep their containers' bundles, images and runc state (default:
    /// a directory named after the listen address in the temp dir, so a restarted `berth
    /// up` finds and adopts what its workers left running).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// The workers' container runtime: runc, process or auto (runc where installed).
    #[arg(long, env = "BERTH_RUNTIME", default_value = "auto")]
    pub runtime: berth_agent::RuntimeChoice,
}

/// Runs the server and the workers until SIGINT or SIGTERM; then the workers drain and the
/// server stops.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.workers == 0 || args.workers > 256 {
        anyhow::bail!("--workers must be between 1 and 256 (got {})", args.workers);
    }
    let server_args = ServerArgs {
        config: None,
        listen: Some(args.listen.clone()),
        redis: Vec::new(),
        redis_access: Default::default(),
        prefix: None,
        strategy: None,
        replica: None,
        replica_acks: None,
        heartbeat_timeout: None,
        admin_token: None,
        admin_token_file: None,
        metrics_open: false,
    };
    let resolved = resolve(&server_args).await?;
    let listener = tokio::net::TcpListener::bind(&resolved.listen)
        .await
        .with_context(|| format!("listening on {} (is berth already up?)", resolved.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let engine = Arc::new(Engine::start_with_controller(
        resolved.store.clone(),
        resolved.engine.clone(),
        resolved.pools.clone(),
        resolved.controller.clone(),
    ));
    let admin =
        super::server::bootstrap_admin(&server_args, &*resolved.store, engine.now_ms()).await?;
    let join = berth_server::tokens::issue(
        &*resolved.store,
        berth_core::Role::Join,
        "berth up workers",
        engine.now_ms(),
    )
    .await
    .context("issuing the local workers' join token")?;
    let admin_token = crate::tokens::client_token(None)?
        .context("the admin token file is missing right after it was written")?;
    let state = AppState::new(resolved.store, engine, resolved.pools, resolved.server);
    let stop_server = CancellationToken::new();
    let server_stopped = stop_server.clone();
    let server = tokio::spawn(berth_server::serve(listener, state, async move {
        server_stopped.cancelled().await;
    }));
    let drain = CancellationToken::new();
    let agents = start_workers(&args, &url, &join, &drain)?;
    wait_ready(&url, &admin_token, args.workers).await?;
    eprintln!(
        "berth is up on {url} with {} workers (embedded store; {admin}); try: berth run --wait -- echo hello",
        args.workers
    );
    shutdown_signal().await;
    eprintln!("draining the workers...");
    drain.cancel();
    for agent in agents {
        if let Ok(Err(error)) = agent.await {
            eprintln!("a worker stopped with an error: {error}");
        }
    }
    stop_server.cancel();
    server.await.context("the server task")??;
    Ok(())
}

fn start_workers(
    args: &UpArgs,
    url: &str,
    join: &berth_core::Token,
    drain: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Result<(), berth_agent::AgentError>>>> {
    let host = detect_host()?;
    let share = u64::from(args.workers);
    let root = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("berth-up-{}", path_safe(url))));
    let pool = PoolName::new("default")?;
    (0..args.workers)
        .map(|i| {
            let id = WorkerId::new(format!("local-{i}"))?;
            let mut config =
                AgentConfig::new(url, id.clone(), pool.clone(), root.join(id.as_str()));
            config.capacity = CapacityConfig {
                cpu_millicores: Some((host.cpu_millicores / share).max(1)),
                memory_mib: Some((host.memory_mib / share).max(1)),
                ..CapacityConfig::default()
            };
            config.grace = Duration::from_secs(10);
            config.runtime = args.runtime;
            config.join_token = Some(join.clone());
            Ok(tokio::spawn(run_agent(config, drain.clone())))
        })
        .collect()
}

/// `text` with every character but letters and digits replaced by `-`.
fn path_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Waits until every local worker has registered.
async fn wait_ready(url: &str, admin_token: &str, workers: u32) -> anyhow::Result<()> {
    let client = Client::new(url)?.with_token(admin_token);
    for _ in 0..200 {
        if let Ok(list) = client.workers().await
            && list.len() >= workers as usize
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the local workers did not register within 10 s")
}
