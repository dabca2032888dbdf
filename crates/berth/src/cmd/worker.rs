//! `berth worker`: the agent on a machine. It registers this machine's capacity (detected,
//! or as given), heartbeats, long-polls for its assignments, runs them (under runc where it
//! is installed), reports their ends with their output, and drains on SIGTERM.

use crate::units::{parse_cpu, parse_memory};
use anyhow::{Context, bail};
use berth_agent::{
    AgentConfig, CancellationToken, CapacityConfig, GpuConfig, RuntimeChoice, run_agent,
};
use berth_core::{GpuType, PoolName, WorkerId};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `berth worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// This worker's id (default: the host name and the process id).
    #[arg(long, env = "BERTH_WORKER_ID")]
    pub id: Option<String>,
    /// The pool it joins.
    #[arg(long, env = "BERTH_POOL", default_value = "default")]
    pub pool: String,
    /// CPU to offer (default: detected), e.g. 4 or 3500m.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory to offer (default: detected), e.g. 8Gi.
    #[arg(long)]
    pub memory: Option<String>,
    /// GPUs: `auto` (detected with nvidia-smi from PATH; finding none is an error), or
    /// TYPE:COUNT to declare them, e.g. A10G:2 (devices 0 to COUNT-1). Default: none.
    #[arg(long, value_name = "auto|TYPE:COUNT")]
    pub gpu: Option<String>,
    /// With --gpu auto: seconds between two checks of the GPUs' health (nvidia-smi run
    /// again). A device that turns unhealthy gets no more containers; those on it are
    /// reported; a recovered one takes containers again.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub gpu_check_secs: u64,
    /// Where the worker keeps its containers' bundles, images and runc state. Keep it
    /// across restarts: a restarted worker adopts the containers it finds there.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// On shutdown, seconds running containers may go on before they are stopped.
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
    /// Seconds a container being stopped (cancelled, preempted, or at shutdown) has after
    /// SIGTERM before it gets SIGKILL.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stop_grace: u64,
    /// The container runtime: runc (limits enforced), process (nothing enforced, for
    /// development) or auto (runc where installed).
    #[arg(long, env = "BERTH_RUNTIME", default_value = "auto")]
    pub runtime: RuntimeChoice,
    /// Give containers the host's network instead of an own network namespace with only
    /// loopback (for a pool whose containers need the network).
    #[arg(long)]
    pub host_network: bool,
    /// A host path bound into every container under runc, HOST:CONTAINER or
    /// HOST:CONTAINER:ro (repeatable); requests cannot choose mounts.
    #[arg(long = "mount", value_name = "HOST:CONTAINER[:ro]")]
    pub mounts: Vec<berth_agent::runtime::runc::BindMount>,
    /// The most the image cache keeps of images no container uses, e.g. 20Gi or 500M;
    /// beyond it the least recently used go.
    #[arg(long, default_value = "20Gi", value_name = "SIZE")]
    pub image_cache_limit: String,
    /// A docker config.json with registry credentials (`auths`). Default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, if present.
    #[arg(long, env = "BERTH_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<PathBuf>,
    /// A registry (`HOST[:PORT]`, as in image references) pulled from over plain HTTP
    /// (repeatable). Loopback registries always are; any other is HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// The join token to register with (from `berth token create --kind join`). Prefer the
    /// environment variable or --join-token-file: a flag shows in `ps`. Default: the admin
    /// token in the user's config directory, if any (a worker on the server's machine).
    /// The registration issues the worker's own credential, kept in the work dir.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// A file holding the join token.
    #[arg(long, env = "BERTH_JOIN_TOKEN_FILE", conflicts_with = "join_token")]
    pub join_token_file: Option<PathBuf>,
}

/// The agent configuration for these arguments, talking to `server`.
pub fn config(args: &WorkerArgs, server: &str) -> anyhow::Result<AgentConfig> {
    let id = match &args.id {
        Some(id) => WorkerId::new(id.as_str())?,
        None => WorkerId::new(default_id())?,
    };
    let pool = PoolName::new(args.pool.as_str()).context("--pool")?;
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("berth-worker-{id}")));
    if args.id.is_none() && args.work_dir.is_none() {
        tracing::info!(work_dir = %work_dir.display(),
            "no --id or --work-dir: a restarted worker will not find this one's containers");
    }
    let mut config = AgentConfig::new(server, id, pool, work_dir);
    config.capacity = capacity(args)?;
    config.grace = Duration::from_secs(args.grace);
    config.stop_grace = Duration::from_secs(args.stop_grace);
    config.gpu_check_every = Duration::from_secs(args.gpu_check_secs);
    config.runtime = args.runtime;
    config.host_network = args.host_network;
    config.mounts = args.mounts.clone();
    config.image_cache_limit = parse_memory(&args.image_cache_limit)
        .context("--image-cache-limit")?
        .saturating_mul(1 << 20);
    if let Some(file) = &args.registry_auth_file {
        config.registry.auth_file = Some(file.clone());
    }
    config.registry.insecure = args.insecure_registries.clone();
    config.join_token = join_token(args)?;
    Ok(config)
}

/// The token the worker joins with: `--join-token`, `--join-token-file`, else the local
/// admin token if there is one.
fn join_token(args: &WorkerArgs) -> anyhow::Result<Option<berth_core::Token>> {
    if let Some(text) = &args.join_token {
        return Ok(Some(
            berth_core::Token::parse(text).context("--join-token (or BERTH_JOIN_TOKEN)")?,
        ));
    }
    if let Some(path) = &args.join_token_file {
        return Ok(Some(crate::tokens::read_token(path)?));
    }
    let local = crate::tokens::admin_token_file()?;
    if local.exists() {
        return Ok(Some(crate::tokens::read_token(&local)?));
    }
    Ok(None)
}

fn default_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{safe}-{}", std::process::id())
}

fn capacity(args: &WorkerArgs) -> anyhow::Result<CapacityConfig> {
    Ok(CapacityConfig {
        cpu_millicores: args.cpu.as_deref().map(parse_cpu).transpose()?,
        memory_mib: args.memory.as_deref().map(parse_memory).transpose()?,
        gpus: args
            .gpu
            .as_deref()
            .map(parse_gpu)
            .transpose()?
            .unwrap_or_default(),
    })
}

/// `--gpu`: `auto`, or TYPE:COUNT with a count above 0.
fn parse_gpu(gpu: &str) -> anyhow::Result<GpuConfig> {
    if gpu.eq_ignore_ascii_case("auto") {
        return Ok(GpuConfig::detect());
    }
    let Some((ty, count)) = gpu.rsplit_once(':') else {
        bail!("--gpu {gpu:?}: expected auto or TYPE:COUNT, e.g. A10G:1");
    };
    if ty.eq_ignore_ascii_case("auto") {
        bail!("--gpu {gpu:?}: auto takes no count; it uses every GPU nvidia-smi lists");
    }
    let gpu_type = ty
        .parse::<GpuType>()
        .with_context(|| format!("--gpu {gpu:?}"))?;
    let count = count
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--gpu {gpu:?}: the count must be a whole number above 0"))?;
    Ok(GpuConfig::Declared { gpu_type, count })
}

/// Runs the agent until SIGINT or SIGTERM, then drains.
pub async fn run(args: WorkerArgs, connection: &super::client::Connection) -> anyhow::Result<()> {
    let server = connection.server.as_str();
    let config = config(&args, server)?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        super::server::shutdown_signal().await;
        trigger.cancel();
    });
    eprintln!("berth worker {} joining {server}", config.worker_id);
    run_agent(config, shutdown).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn gpu_flags_detect_or_declare() {
        assert_eq!(parse_gpu("auto").unwrap(), GpuConfig::detect());
        assert_eq!(
            parse_gpu("A10G:2").unwrap(),
            GpuConfig::Declared {
                gpu_type: GpuType::A10G,
                count: 2
            }
        );
        for bad in ["A10G", "A10G:0", "A10G:x", ":1", "auto:1", "bad type:1"] {
            assert!(parse_gpu(bad).is_err(), "{bad} accepted");
        }
    }
}
