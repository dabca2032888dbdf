//! The client subcommands: `run`, `ps`, `workers`, `logs`, `cancel`, `demand`, `drain`.
//! Each finds the server through `--server`, else `BERTH_SERVER`, else
//! http://127.0.0.1:7700; tables for people, `--json` for scripts.

use crate::units::{GpuAmount, parse_cpu, parse_gpu, parse_memory};
use anyhow::{Context, bail};
use berth_api::{
    Client, ContainerSpec, ContainerView, FallbackSpec, GpuSpec, GpuTypes, WorkerDetail, WorkerView,
};
use berth_core::{ContainerId, GpuPreference, WorkerId};
use berth_store::ContainerState;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where the server is, and how to print.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The server's URL.
    #[arg(
        long,
        env = "BERTH_SERVER",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub server: String,
    /// The token to call with (default: the admin token `berth up` keeps in the user's
    /// config directory). Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Connection {
    /// A client of the server, calling with the token (see [`crate::tokens::client_token`]).
    pub fn client(&self) -> anyhow::Result<Client> {
        let client =
            Client::new(&self.server).with_context(|| format!("server URL {:?}", self.server))?;
        Ok(match crate::tokens::client_token(self.token.as_deref())? {
            Some(token) => client.with_token(token),
            None => client,
        })
    }
}

/// Arguments of `berth run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// CPU, as Kubernetes writes it: 500m, 2, 0.5.
    #[arg(long, default_value = "500m")]
    pub cpu: String,
    /// Memory: 512Mi, 4Gi, 1G.
    #[arg(long, default_value = "512Mi")]
    pub memory: String,
    /// GPUs: `A10G,A100-40:1` (these types, in order of preference, one GPU) or `any:2`.
    #[arg(long)]
    pub gpu: Option<String>,
    /// Run only in this pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// The image to run the command in: a registry reference (`python:3.12`,
    /// `registry.example.com/app@sha256:...`) or an OCI layout on the worker (`oci:/path:tag`).
    /// Without it, berth's default root filesystem (busybox).
    #[arg(long)]
    pub image: Option<String>,
    /// Higher runs first; a request that finds no room may preempt running preemptible
    /// containers of lower priority.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Accepts interruption: may run on preemptible workers, and may be preempted (stopped,
    /// then requeued while `--max-retries` lasts) for a request of higher priority.
    #[arg(long)]
    pub preemptible: bool,
    /// Environment variable `K=V` (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// A secret environment variable, taken by NAME from this command's own environment
    /// (repeatable), so that its value shows neither in `ps` nor in the shell history: the
    /// server never shows it, and only the worker that runs the container receives it.
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// Your id for the container (a retried run with the same id is not run twice): 1 to
    /// 128 ASCII letters, digits and . _ - :, starting with a letter or digit.
    #[arg(long)]
    pub id: Option<String>,
    /// Kill the container after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The tenant it runs for and is charged to (with an admin token; a client token's
    /// own tenant is used without it).
    #[arg(long)]
    pub tenant: Option<String>,
    /// A fallback step (repeatable, in the order they become due): what else to accept
    /// once the container has waited WAIT since submission, used only while nothing
    /// earlier has room. WHAT is GPU types in order of preference (`H100`, `H100,A100-40`),
    /// a pool (`pool=h100`), or both (`pool=h100,H100`); WAIT is `300ms`, `30s`, `5m` or
    /// plain seconds. E.g. `--gpu A100-80:1 --fallback H100:30s --fallback pool=spot:5m`.
    #[arg(long = "fallback", value_name = "WHAT:WAIT")]
    pub fallback: Vec<String>,
    /// Run it again, up to N times (at most 100), if its worker dies under it, instead of
    /// ending it `lost`. It starts over from the beginning each time.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_retries: u32,
    /// Wait until it has ended; print its output and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Builds the submit body from the flags, with clear errors.
pub fn spec(args: &RunArgs) -> anyhow::Result<ContainerSpec> {
    let mut spec = ContainerSpec::new(
        parse_cpu(&args.cpu)?,
        parse_memory(&args.memory)?,
        args.command.clone(),
    );
    spec.id = args.id.clone();
    spec.pool = args.pool.clone();
    spec.image = args.image.clone();
    spec.priority = args.priority;
    spec.preemptible = args.preemptible;
    spec.timeout_secs = args.timeout;
    spec.max_retries = args.max_retries;
    if let Some(tenant) = &args.tenant {
        spec.tenant = tenant.clone();
    }
    if let Some(gpu) = &args.gpu {
        let (preference, amount) = parse_gpu(gpu)?;
        let (count, milli) = match amount {
            GpuAmount::Whole(count) => (count, None),
            GpuAmount::Milli(milli) => (0, Some(milli)),
        };
        let types = match preference {
            GpuPreference::Any => GpuTypes::Any,
            GpuPreference::Types(types) => {
                GpuTypes::List(types.iter().map(ToString::to_string).collect())
            }
        };
        spec.gpu = Some(GpuSpec {
            count,
            milli,
            types,
        });
    }
    spec.fallback = args
        .fallback
        .iter()
        .map(|step| parse_fallback(step))
        .collect::<anyhow::Result<_>>()?;
    spec.env = parse_env(&args.env)?;
    spec.secret_env = secret_env(&args.secret_env, |name| std::env::var(name).ok())?;
    Ok(spec)
}

/// The secret variables named by `--secret-env`, with their values from `lookup` (this
/// process's environment).
fn secret_env(
    names: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    names
        .iter()
        .map(|name| match lookup(name) {
            Some(value) => Ok((name.clone(), value)),
            None => bail!(
                "--secret-env {name}: {name} is not set in this environment; export it first (e.g. read -s {name}; export {name})"
            ),
        })
        .collect()
}

/// One `--fallback WHAT:WAIT`: GPU types and/or `pool=NAME`, comma-separated, then the
/// wait. The names are checked by the server (and its errors name the field).
fn parse_fallback(input: &str) -> anyhow::Result<FallbackSpec> {
    let usage = "expected WHAT:WAIT, e.g. H100:30s, pool=h100:5m or pool=h100,H100:300ms";
    let Some((what, wait)) = input.rsplit_once(':') else {
        bail!("--fallback {input:?}: {usage}");
    };
    let after_ms = parse_wait_ms(wait).with_context(|| format!("--fallback {input:?}"))?;
    let mut step = FallbackSpec {
        after_ms,
        pool: None,
        gpu_types: Vec::new(),
    };
    for item in what.split(',').map(str::trim) {
        match item.strip_prefix("pool=") {
            Some(_) if step.pool.is_some() => bail!("--fallback {input:?}: one pool per step"),
            Some(pool) => step.pool = Some(pool.to_owned()),
            None if item.is_empty() => bail!("--fallback {input:?}: {usage}"),
            None => step.gpu_types.push(item.to_owned()),
        }
    }
    Ok(step)
}

/// A wait: `300ms`, `30s`, `5m`, or plain seconds.
fn parse_wait_ms(input: &str) -> anyhow::Result<u64> {
    let (digits, scale) = if let Some(ms) = input.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(secs) = input.strip_suffix('s') {
        (secs, 1000)
    } else if let Some(mins) = input.strip_suffix('m') {
        (mins, 60_000)
    } else {
        (input, 1000)
    };
    let value: u64 = digits
        .parse()
        .with_context(|| format!("wait {input:?}: expected e.g. 300ms, 30s or 5m"))?;
    value
        .checked_mul(scale)
        .with_context(|| format!("wait {input:?} is too long"))
}

fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => bail!("--env {pair:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// `berth run`: submits one container; with `--wait`, follows it to its end.
pub async fn run(connection: &Connection, args: RunArgs) -> anyhow::Result<i32> {
    let client = connection.client()?;
    let submitted = client.submit(&spec(&args)?).await?;
    if !args.wait {
        print(connection, &submitted, |s| outln!("{} {}", s.id, s.state))?;
        return Ok(0);
    }
    let view = wait_for_end(&client, &submitted.id).await?;
    let logs = client.logs(&view.id).await?;
    if connection.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"container": view, "logs": logs.lines})
            )?
        )?;
    } else {
        for line in &logs.lines {
            outln!("{line}")?;
        }
        eprintln!("{}", summary(&view));
    }
    Ok(exit_code(&view))
}

/// The exit code of a command that waited for a container to end (`run --wait`, `logs
/// --follow`): its own exit code if it exited, else 1.
pub fn exit_code(view: &ContainerView) -> i32 {
    match view.state {
        ContainerState::Exited => view.exit_code.unwrap_or(0),
        _ => 1,
    }
}

/// How an ended container ended, for people: `ID exited on WORKER, exit code 0`.
pub fn summary(view: &ContainerView) -> String {
    format!(
        "{} {} on {}{}",
        view.id,
        view.state,
        show(view.worker.as_ref()),
        ending(view)
    )
}

fn ending(view: &ContainerView) -> String {
    match (view.exit_code, &view.reason) {
        (Some(code), _) => format!(", exit code {code}"),
        (None, Some(reason)) => format!(": {reason}"),
        _ => String::new(),
    }
}

async fn wait_for_end(client: &Client, id: &ContainerId) -> anyhow::Result<ContainerView> {
    let mut pause = Duration::from_millis(20);
    loop {
        let view = client.container(id).await?;
        if view.state.is_terminal() {
            return Ok(view);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Arguments of `berth ps`.
#[derive(Debug, Clone, clap::Args)]
pub struct PsArgs {
    /// Only containers in this state: pending, scheduled, running, exited, failed, lost,
    /// preempted.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// `berth ps`.
pub async fn ps(connection: &Connection, args: PsArgs) -> anyhow::Result<i32> {
    let state = match &args.state {
        None => None,
        Some(text) => Some(ContainerState::parse(text).with_context(|| {
            format!(
                "--state {text:?}: expected pending, scheduled, pulling, running, exited, failed, lost or preempted"
            )
        })?),
    };
    let list = connection
        .client()?
        .containers(state, Some(args.limit))
        .await?;
    print(connection, &list, |list| {
        let mut table = table([
            "id", "state", "worker", "cpu", "memory", "gpu", "exit", "retries", "reason", "command",
        ]);
        for c in list {
            table.add_row([
                c.id.to_string(),
                c.state.to_string(),
                show(c.worker.as_ref()),
                format!("{}m", c.resources.cpu_millicores),
                format!("{}Mi", c.resources.memory_mib),
                c.resources.gpu_count.to_string(),
                c.exit_code.map_or(String::new(), |e| e.to_string()),
                retries(c),
                c.reason.clone().unwrap_or_default(),
                c.command.join(" "),
            ]);
        }
        outln!("{table}")
    })?;
    Ok(0)
}

/// `berth ps`'s retries column: `1/3` (retried once of three allowed), empty for a
/// container that allows none.
fn retries(container: &ContainerView) -> String {
    if container.max_retries == 0 {
        return String::new();
    }
    format!("{}/{}", container.retries, container.max_retries)
}

/// `berth workers`.
pub async fn workers(connection: &Connection) -> anyhow::Result<i32> {
    let list = connection.client()?.worker_list().await?;
    print(connection, &list.workers, |workers| {
        outln!("{}", workers_table(workers))
    })?;
    for quarantined in &list.quarantined {
        eprintln!(
            "quarantined (left out of scheduling until it registers again): {}: {}",
            quarantined.subject, quarantined.detail
        );
    }
    Ok(0)
}

/// `berth workers ID`: the worker, then the containers it owns and their devices.
pub async fn worker(connection: &Connection, id: &str) -> anyhow::Result<i32> {
    let id = WorkerId::new(id).context("the worker's id")?;
    let detail = connection.client()?.worker(&id).await?;
    print(connection, &detail, |detail| {
        outln!("{}", workers_table(std::slice::from_ref(&detail.worker)))?;
        outln!("{}", owned_table(detail))
    })?;
    Ok(0)
}

/// The containers a worker owns with their device shares, marking shares of unhealthy
/// devices.
fn owned_table(detail: &WorkerDetail) -> Table {
    let mut table = table(["container", "attempt", "gpu devices"]);
    for owned in &detail.owned {
        let devices: Vec<String> = owned
            .devices
            .iter()
            .map(|share| {
                let unhealthy = detail
                    .worker
                    .gpus
                    .iter()
                    .any(|gpu| gpu.device.index == share.index && !gpu.device.healthy);
                let mark = if unhealthy { " (unhealthy)" } else { "" };
                format!("{}:{}{mark}", share.index, gpu_fraction(share.milli))
            })
            .collect();
        table.add_row([
            owned.container.to_string(),
            owned.attempt.to_string(),
            devices.join(" "),
        ]);
    }
    table
}

/// Milli-GPUs as a fraction of a GPU: 1000 is `1`, 250 is `0.25`.
fn gpu_fraction(milli: u32) -> String {
    let whole = milli / 1000;
    let part = milli % 1000;
    if part == 0 {
        whole.to_string()
    } else {
        let digits = format!("{part:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// A worker's devices: each one's free share, or `unhealthy`.
fn devices_column(worker: &WorkerView) -> String {
    worker
        .gpus
        .iter()
        .map(|gpu| {
            if gpu.device.healthy {
                format!("{}:{}", gpu.device.index, gpu_fraction(gpu.free_milli))
            } else {
                format!("{}:unhealthy", gpu.device.index)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table `berth workers` prints.
fn workers_table(workers: &[WorkerView]) -> Table {
    let mut table = table([
        "id",
        "pool",
        "status",
        "runtime",
        "cpu free/total",
        "memory free/total",
        "gpus free/total",
        "devices free",
        "heartbeat",
    ]);
    for w in workers {
        table.add_row([
            w.id.to_string(),
            w.pool.to_string(),
            w.status.to_string(),
            w.runtime.to_string(),
            format!("{}m/{}m", w.free.cpu_millicores, w.total.cpu_millicores),
            format!("{}Mi/{}Mi", w.free.memory_mib, w.total.memory_mib),
            format!(
                "{}/{} {}",
                w.free.gpu_count,
                w.total.gpu_count,
                w.gpu_type.clone().unwrap_or_default()
            ),
            devices_column(w),
            w.heartbeat_age_ms.map_or("never".to_owned(), |ms| {
                format!("{:.1}s ago", ms as f64 / 1e3)
            }),
        ]);
    }
    table
}

/// Arguments of `berth logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The container's id.
    pub id: String,
    /// Keep printing new lines until the container ends, then exit with its exit code (1
    /// if it failed or was lost), as `run --wait` does. With --json, one JSON object per
    /// line: `{"event":"line",...}`, `{"event":"dropped",...}`, `{"event":"ended",...}`.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `berth logs ID [--follow]`.
pub async fn logs(connection: &Connection, args: &LogsArgs) -> anyhow::Result<i32> {
    let id = ContainerId::new(args.id.as_str())?;
    let client = connection.client()?;
    if args.follow {
        return super::follow::follow(connection, &client, &id).await;
    }
    let logs = client.logs(&id).await?;
    print(connection, &logs, |logs| {
        logs.lines.iter().try_for_each(|line| outln!("{line}"))
    })?;
    Ok(0)
}

/// `berth cancel ID`.
pub async fn cancel(connection: &Connection, id: &str) -> anyhow::Result<i32> {
    let id = ContainerId::new(id)?;
    let view = connection.client()?.cancel(&id).await?;
    print(connection, &view, |v| {
        let note = if v.cancel_requested {
            " (its worker is stopping it)"
        } else {
            ""
        };
        outln!("{} {}{note}", v.id, v.state)
    })?;
    Ok(0)
}

/// `berth demand`.
pub async fn demand(connection: &Connection) -> anyhow::Result<i32> {
    let demand = connection.client()?.demand().await?;
    print(connection, &demand, |demand| {
        let mut table = table(["pool", "requests", "cpu", "memory", "gpus by type"]);
        for d in &demand.pools {
            let gpus: Vec<String> = d
                .gpus_by_type
                .iter()
                .map(|(t, n)| format!("{t}:{n}"))
                .collect();
            table.add_row([
                d.pool.clone().unwrap_or_else(|| "(none)".to_owned()),
                d.requests.to_string(),
                format!("{}m", d.resources.cpu_millicores),
                format!("{}Mi", d.resources.memory_mib),
                gpus.join(" "),
            ]);
        }
        outln!("{table}")
    })?;
    Ok(0)
}

/// `berth drain WORKER`.
pub async fn drain(connection: &Connection, id: &str) -> anyhow::Result<i32> {
    let id = WorkerId::new(id)?;
    let view = connection.client()?.drain(&id).await?;
    print(connection, &view, |v| outln!("{} {}", v.id, v.status))?;
    Ok(0)
}

pub(crate) fn print<T: Serialize>(
    connection: &Connection,
    value: &T,
    human: impl FnOnce(&T) -> Result<(), crate::StdoutError>,
) -> anyhow::Result<()> {
    if connection.json {
        outln!("{}", serde_json::to_string_pretty(value)?)?;
    } else {
        human(value)?;
    }
    Ok(())
}

pub(crate) fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(header);
    table
}

fn show<T: ToString>(value: Option<&T>) -> String {
    value.map_or("-".to_owned(), ToString::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::secret_env;

    #[test]
    fn fallback_steps_parse() {
        use super::parse_fallback;
        let gpu = parse_fallback("H100,A100-40:30s").unwrap();
        assert_eq!(gpu.after_ms, 30_000);
        assert_eq!(gpu.gpu_types, ["H100", "A100-40"]);
        assert_eq!(gpu.pool, None);
        let pool = parse_fallback("pool=h100:300ms").unwrap();
        assert_eq!((pool.after_ms, pool.pool.as_deref()), (300, Some("h100")));
        let both = parse_fallback("pool=spot,H100:5m").unwrap();
        assert_eq!(both.after_ms, 300_000);
        assert_eq!(
            (both.pool.as_deref(), both.gpu_types.len()),
            (Some("spot"), 1)
        );
        assert_eq!(parse_fallback("L4:7").unwrap().after_ms, 7_000);
        for bad in ["H100", "H100:soon", ":30s", "pool=a,pool=b:1s"] {
            assert!(parse_fallback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_come_from_the_environment_by_name() {
        let lookup = |name: &str| (name == "API_KEY").then(|| "v4lue".to_owned());
        let secrets = secret_env(&["API_KEY".to_owned()], lookup).unwrap();
        assert_eq!(secrets.get("API_KEY").map(String::as_str), Some("v4lue"));
        let missing = secret_env(&["NOPE".to_owned()], lookup).unwrap_err();
        assert!(missing.to_string().contains("NOPE is not set"), "{missing}");
    }

    use super::*;
    use berth_api as api;
    use berth_core::{PoolAttributes, WorkerId};
    use berth_core::{PoolName, Resources, RuntimeName, Worker, WorkerRegistration, WorkerStatus};

    fn view(id: &str, runtime: RuntimeName) -> WorkerView {
        let total = Resources::new(4000, 8192, 0);
        let worker: Worker = WorkerRegistration {
            devices: Vec::new(),
            id: WorkerId::new(id).unwrap(),
            pool: PoolAttributes::plain(PoolName::new("cpu").unwrap()),
            status: WorkerStatus::Available,
            total,
            gpu_type: None,
            runtime,
        }
        .into_worker(total, 1, 1);
        WorkerView::new(&worker, Some(1_000), 2_500)
    }

    #[test]
    fn the_workers_table_has_a_runtime_column() {
        let table = workers_table(&[
            view("w-process", RuntimeName::PROCESS),
            view("w-runc", RuntimeName::RUNC),
        ]);
        let text = table.to_string();
        let header = text.lines().find(|l| l.contains("status")).unwrap();
        let at = |column: &str| header.find(column).unwrap();
        assert!(
            at("status") < at("runtime") && at("runtime") < at("cpu free/total"),
            "{text}"
        );
        let row = |id: &str| text.lines().find(|l| l.contains(id)).unwrap().to_owned();
        assert!(row("w-process").contains(" process "), "{text}");
        assert!(row("w-runc").contains(" runc "), "{text}");
        assert!(row("w-runc").contains("1.5s ago"), "{text}");
    }

    #[test]
    fn fractions_of_a_gpu_print_without_trailing_zeros() {
        assert_eq!(gpu_fraction(0), "0");
        assert_eq!(gpu_fraction(1000), "1");
        assert_eq!(gpu_fraction(250), "0.25");
        assert_eq!(gpu_fraction(500), "0.5");
        assert_eq!(gpu_fraction(1), "0.001");
        assert_eq!(gpu_fraction(1750), "1.75");
    }

    #[test]
    fn the_devices_column_shows_each_devices_free_share_or_its_ill_health() {
        let mut w = view("w-gpu", RuntimeName::RUNC);
        w.gpus = [(0, true, 1000), (1, true, 250), (2, false, 1000)]
            .into_iter()
            .map(|(index, healthy, free_milli)| api::DeviceStateView {
                device: api::DeviceView {
                    index,
                    uuid: None,
                    memory_mib: 0,
                    healthy,
                },
                free_milli,
            })
            .collect();
        assert_eq!(devices_column(&w), "0:1 1:0.25 2:unhealthy");
        let detail = WorkerDetail {
            worker: w,
            owned: vec![api::OwnedView {
                container: ContainerId::new("c-1").unwrap(),
                attempt: berth_core::AttemptId::from_bits(7),
                devices: vec![
                    api::DeviceShareView {
                        index: 1,
                        milli: 750,
                    },
                    api::DeviceShareView {
                        index: 2,
                        milli: 1000,
                    },
                ],
            }],
        };
        let text = owned_table(&detail).to_string();
        assert!(text.contains("1:0.75 2:1 (unhealthy)"), "{text}");
    }
}
