//! `berth server`: one engine replica plus the HTTP API, on the embedded store (the
//! default) or on Redis (standalone, or Cluster when several URLs are given).

use super::redis_access::RedisAccessArgs;
use crate::config::FileConfig;
use anyhow::{Context, bail};
use berth_core::Pool;
use berth_engine::{Engine, EngineConfig, PoolController, Strategy};
use berth_server::{AppState, ServerConfig};
use berth_store::{MemoryStore, RedisStore, RedisTarget, Store, StoreConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `berth server`. Flags override environment variables, which override the
/// configuration file.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// A TOML configuration file (pools, store, engine; unknown keys are errors).
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// The address the API listens on.
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
    /// Redis URL; give it several times for a Redis Cluster's seed nodes. Without it the
    /// embedded in-memory store is used.
    #[arg(long = "redis", env = "BERTH_REDIS", value_delimiter = ',')]
    pub redis: Vec<String>,
    /// Redis user, password and TLS certificates.
    #[command(flatten)]
    pub redis_access: RedisAccessArgs,
    /// The prefix of every Redis key.
    #[arg(long, env = "BERTH_PREFIX")]
    pub prefix: Option<String>,
    /// Commit strategy: serial, batch-lock or batch-script.
    #[arg(long, env = "BERTH_STRATEGY")]
    pub strategy: Option<Strategy>,
    /// This replica's name (unique per replica sharing one store).
    #[arg(long, env = "BERTH_REPLICA")]
    pub replica: Option<String>,
    /// Redis: replicas that must have each batch's commits before it is settled (WAIT);
    /// 0 does not wait.
    #[arg(long, env = "BERTH_REPLICA_ACKS")]
    pub replica_acks: Option<u32>,
    /// Seconds without a heartbeat after which a worker is declared lost.
    #[arg(long, env = "BERTH_HEARTBEAT_TIMEOUT")]
    pub heartbeat_timeout: Option<u64>,
    /// An admin token to accept (e.g. shared by every replica, from a secret store).
    /// Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "BERTH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The file of the admin token to accept; created with a new token (mode 0600) if
    /// missing. Default: `token` in the user's config directory (`$BERTH_CONFIG_DIR`,
    /// `$XDG_CONFIG_HOME/berth` or `~/.config/berth`), where `berth run` finds it.
    #[arg(long, env = "BERTH_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve `/metrics` without a token (e.g. to a scraper on a private network); by
    /// default it takes a metrics or an admin token.
    #[arg(long, env = "BERTH_METRICS_OPEN")]
    pub metrics_open: bool,
}

/// Everything `berth server` runs with, resolved from flags, environment and file.
pub struct Resolved {
    /// Where to listen.
    pub listen: String,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The engine configuration.
    pub engine: EngineConfig,
    /// The configured pools.
    pub pools: Vec<Pool>,
    /// The pools' provisioners, if any pool has one.
    pub controller: Option<Arc<dyn PoolController>>,
    /// The HTTP service's configuration.
    pub server: ServerConfig,
    /// A line saying which store this is.
    pub store_name: String,
}

/// Resolves the configuration, connects to the store and stores the file's tenants'
/// policies there.
pub async fn resolve(args: &ServerArgs) -> anyhow::Result<Resolved> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let pools = file.pools()?;
    let tenants = file.tenants()?;
    let provisioners = file.provisioners()?;
    let controller = (!provisioners.by_pool.is_empty())
        .then(|| Arc::new(provisioners) as Arc<dyn PoolController>);
    let listen = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:7700".to_owned());
    let strategy = match (&args.strategy, &file.engine.strategy) {
        (Some(s), _) => *s,
        (None, Some(text)) => text
            .parse()
            .context("engine.strategy in the configuration file")?,
        (None, None) => Strategy::default(),
    };
    let mut engine = EngineConfig {
        strategy,
        replica: args.replica.clone().unwrap_or_else(default_replica),
        ..EngineConfig::default()
    };
    if let Some(max) = file.engine.max_batch {
        if max == 0 || max > 100_000 {
            bail!("engine.max_batch must be between 1 and 100000 (got {max})");
        }
        engine.max_batch = max;
    }
    if let Some(max) = file.engine.max_preemptions {
        if max > 1_000 {
            bail!("engine.max_preemptions must be between 0 (off) and 1000 (got {max})");
        }
        engine.max_preemptions = max;
    }
    if let Some(secs) = file.engine.registration_timeout_secs {
        engine.registration_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = file.engine.deadline_secs {
        engine.deadline = Duration::from_secs(secs);
    }
    let mut server = ServerConfig::default();
    if let Some(secs) = args
        .heartbeat_timeout
        .or(file.workers.heartbeat_timeout_secs)
    {
        if secs == 0 {
            bail!("the heartbeat timeout must be at least 1 second");
        }
        server.heartbeat_timeout = Duration::from_secs(secs);
    }
    server.metrics_open = args.metrics_open;
    let urls = if args.redis.is_empty() {
        file.store.redis.clone()
    } else {
        args.redis.clone()
    };
    let mut config = StoreConfig::default();
    if let Some(prefix) = args.prefix.clone().or(file.store.prefix.clone()) {
        config.prefix = prefix;
    }
    if let Some(acks) = args.replica_acks.or(file.store.replica_acks) {
        config.replica_acks = acks;
    }
    if let Some(ms) = file.store.replica_timeout_ms {
        if ms == 0 {
            bail!("store.replica_timeout_ms must be at least 1");
        }
        config.replica_timeout = Duration::from_millis(ms);
    }
    if config.replica_acks > 0 && urls.is_empty() {
        bail!("replica acknowledgements need Redis (--redis); the embedded store has no replicas");
    }
    // Credentials and certificates are only read when there is a Redis to use them on.
    let target = if urls.is_empty() {
        RedisTarget::default()
    } else {
        args.redis_access.target(urls, &file.store)?
    };
    let (store, store_name) = connect(&target, config).await?;
    for tenant in &tenants {
        store
            .put_tenant(tenant)
            .await
            .with_context(|| format!("storing the policy of tenant {}", tenant.name))?;
    }
    Ok(Resolved {
        listen,
        store,
        engine,
        pools,
        controller,
        server,
        store_name,
    })
}

fn default_replica() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".to_owned());
    format!("{host}-{}", std::process::id())
}

async fn connect(
    target: &RedisTarget,
    config: StoreConfig,
) -> anyhow::Result<(Arc<dyn Store>, String)> {
    if target.urls.is_empty() {
        return Ok((
            Arc::new(MemoryStore::new(config)),
            "embedded in-memory store".to_owned(),
        ));
    }
    // The store's error names the (redacted) URLs and says what to fix.
    let store = RedisStore::connect_to(target, config).await?;
    let kind = if store.is_cluster() {
        "Redis Cluster"
    } else {
        "Redis"
    };
    Ok((Arc::new(store), format!("{kind} at {}", target.redacted())))
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let resolved = resolve(&args).await?;
    let listener = tokio::net::TcpListener::bind(&resolved.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another server running there?)",
                resolved.listen
            )
        })?;
    let address = listener.local_addr()?;
    let engine = Arc::new(Engine::start_with_controller(
        resolved.store.clone(),
        resolved.engine.clone(),
        resolved.pools.clone(),
        resolved.controller.clone(),
    ));
    let admin = bootstrap_admin(&args, &*resolved.store, engine.now_ms()).await?;
    let state = AppState::new(resolved.store, engine, resolved.pools, resolved.server);
    eprintln!(
        "berth server on http://{address} ({}, strategy {}); {admin}",
        resolved.store_name, resolved.engine.strategy
    );
    berth_server::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// Makes the store accept the admin token of `args` (`--admin-token`, else the token file,
/// created if missing); returns a line saying where it came from.
pub async fn bootstrap_admin(
    args: &ServerArgs,
    store: &dyn Store,
    now_ms: u64,
) -> anyhow::Result<String> {
    if let Some(token) = &args.admin_token {
        let id = berth_server::tokens::bootstrap_admin(store, token, now_ms)
            .await
            .context("--admin-token (or BERTH_ADMIN_TOKEN)")?;
        return Ok(format!("admin token {id} from BERTH_ADMIN_TOKEN"));
    }
    let path = match &args.admin_token_file {
        Some(path) => path.clone(),
        None => crate::tokens::admin_token_file()?,
    };
    let (token, created) = crate::tokens::load_or_create(&path)?;
    let id = berth_server::tokens::bootstrap_admin(store, &token.expose(), now_ms)
        .await
        .with_context(|| format!("accepting the admin token of {}", path.display()))?;
    let how = if created { "written to" } else { "from" };
    Ok(format!("admin token {id} {how} {}", path.display()))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
