//! The phases of a run: start Redis, the replicas and the workers; run the load, the
//! check sampling and the faults for the run's length; stop the load and the faults, heal,
//! wait for the probes, drain; read what is left and draw the verdict.

use crate::SetupError;
use crate::args::Args;
use crate::checks::{CheckLog, check_once, run_checks};
use crate::faults::{FaultRecord, Probes, Target, lock, min_stop, restart_server, run_faults};
use crate::fleet::{Fleet, REPLICAS, WORKERS};
use crate::gateway::Gateway;
use crate::load::{RequestMaker, run_load};
use crate::observe::{
    drain, drain_timeout, exited, heal, panics, records, wait_for_workers, workers,
};
use crate::redis::RedisBackend;
use crate::schedule::{ScheduleConfig, schedule};
use crate::summary::Summary;
use crate::verify::{Finding, Observed, parse_starts, verify};
use anyhow::Context;
use berth_localredis::LocalRedisError;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long the workers may take to register at the start.
const REGISTER_PATIENCE: Duration = Duration::from_secs(60);

/// Runs the harness with `args`, the `berth` binary at `berth`, in directory `dir`.
pub async fn run(args: &Args, berth: &Path, dir: &Path) -> anyhow::Result<Summary> {
    let mut target = start(args, berth, dir).await?;
    target.started = Instant::now();
    let plan = schedule(
        args.seed,
        &ScheduleConfig {
            run: Duration::from_secs(args.seconds),
            cluster: args.cluster,
            replicas: REPLICAS,
            workers: WORKERS,
            min_stop: min_stop(),
        },
    );
    tracing::info!(
        faults = plan.len(),
        seconds = args.seconds,
        seed = args.seed,
        "running the load and the faults"
    );
    let (stop_load, stop_checks) = (CancellationToken::new(), CancellationToken::new());
    let load = tokio::spawn(run_load(
        target.gateway.clone(),
        RequestMaker::new(args.seed, &target.starts),
        stop_load.clone(),
    ));
    let checks = tokio::spawn(run_checks(
        target.gateway.clone(),
        target.started,
        stop_checks.clone(),
    ));
    let faults = tokio::spawn(run_faults(plan, target.clone(), stop_load.clone()));
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    tracing::info!("stopping the load and the faults");
    stop_load.cancel();
    let (mut records_log, probes) = faults.await.context("the fault injector failed")?;
    let load = load.await.context("the load generator failed")?;
    let mut crashed = exited(&target);
    heal(&target)
        .await
        .map_err(anyhow::Error::msg)
        .context("healing the fleet")?;
    let mut accepted = load.accepted.clone();
    wait_for_probes(probes, &mut records_log, &mut accepted).await?;
    tracing::info!("draining");
    let drain_started = Instant::now();
    let drained = drain(
        &target.gateway,
        drain_timeout(Duration::from_secs(args.seconds)),
    )
    .await;
    let drain_ms = u64::try_from(drain_started.elapsed().as_millis()).unwrap_or(u64::MAX);
    stop_checks.cancel();
    let mut checks = checks.await.context("the check sampler failed")?;
    let final_violations = final_check(&target, &mut checks).await;
    let observed = observe(&target, accepted, &checks).await?;
    let verdict = verify(&observed);
    let accepted = observed.accepted.len() as u64;
    let mut summary = Summary::new(
        (args.seed, args.seconds, args.cluster),
        &load,
        accepted,
        records_log,
        checks,
        verdict,
    );
    crashed.extend(exited(&target));
    crashed.extend(panics(dir));
    summary.crashes = crashed.len() as u64;
    summary.crash_details = crashed;
    summary.drained = drained;
    summary.drain_ms = drain_ms;
    summary.final_check_answered = final_violations.is_some();
    summary.final_violations = final_violations
        .unwrap_or_default()
        .into_iter()
        .map(|(id, why)| Finding { id, why })
        .collect();
    summary.judge();
    Ok(summary)
}

/// Starts Redis, the replicas and the workers, and waits until they are all up.
async fn start(args: &Args, berth: &Path, dir: &Path) -> anyhow::Result<Target> {
    let starts = dir.join("starts.log");
    std::fs::File::create(&starts).with_context(|| format!("creating {}", starts.display()))?;
    // Containers under runc run as nobody and append to the start log through a bind mount.
    std::fs::set_permissions(&starts, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .with_context(|| format!("opening {} to containers", starts.display()))?;
    std::fs::create_dir_all(dir.join("work")).context("creating the work directory")?;
    let cluster = args.cluster;
    tracing::info!(cluster, "starting Redis");
    let redis = tokio::task::spawn_blocking(move || RedisBackend::start(cluster))
        .await
        .context("starting Redis")?
        .map_err(|error| match error {
            LocalRedisError::RedisServerNotFound | LocalRedisError::RedisCliNotFound => {
                anyhow::Error::new(SetupError::Redis(error))
            }
            other => anyhow::Error::new(other).context("starting Redis"),
        })?;
    let ports = free_ports(REPLICAS)?;
    let fleet = Fleet::new(berth, dir, &ports, &args.runtime, &starts);
    let gateway =
        Gateway::new(&fleet.server_urls(), fleet.admin_token()).context("the replicas' URLs")?;
    let target = Target {
        fleet: Arc::new(Mutex::new(fleet)),
        redis: Arc::new(Mutex::new(redis)),
        gateway: Arc::new(gateway),
        starts,
        started: Instant::now(),
    };
    tracing::info!(?ports, "starting the replicas");
    for index in 0..REPLICAS {
        restart_server(&target, index)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let join = issue_join_token(&target.gateway).await?;
    lock(&target.fleet).set_join_token(join);
    tracing::info!("starting the workers");
    for slot in 0..WORKERS {
        lock(&target.fleet).start_worker(slot)?;
    }
    wait_for_workers(&target.gateway, WORKERS, REGISTER_PATIENCE)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(target)
}

/// A join token for the workers, issued by a replica with the harness's admin token: the
/// workers join as a real fleet would, and each gets its own credential.
async fn issue_join_token(gateway: &Gateway) -> anyhow::Result<String> {
    let create = berth_api::CreateToken {
        kind: berth_api::NewTokenKind::Join,
        tenant: None,
        name: Some("chaos workers".to_owned()),
    };
    let (created, _) = gateway
        .call(REGISTER_PATIENCE, |client| {
            let create = create.clone();
            async move { client.create_token(&create).await }
        })
        .await;
    Ok(created.context("issuing the workers' join token")?.token)
}

/// `count` ports that were free a moment ago on 127.0.0.1.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Waits for every probe, puts their recovery times in the fault records, and adds their
/// accepted containers to `accepted`.
async fn wait_for_probes(
    mut probes: Probes,
    records: &mut [FaultRecord],
    accepted: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    while let Some(joined) = probes.join_next().await {
        let (index, result) = joined.context("a probe failed")?;
        if let Some(record) = records.get_mut(index) {
            record.recovery_ms = result
                .recovery
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        accepted.extend(result.accepted);
    }
    Ok(())
}

/// Samples the check once more on the idle fleet: its violations, `None` if no replica
/// answered.
async fn final_check(target: &Target, checks: &mut CheckLog) -> Option<Vec<(String, String)>> {
    let violations = check_once(&target.gateway, Duration::from_secs(30)).await?;
    let at_ms = u64::try_from(target.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    checks.record(at_ms, violations.clone());
    Some(violations)
}

/// Reads what the verdict needs.
async fn observe(
    target: &Target,
    accepted: BTreeSet<String>,
    checks: &CheckLog,
) -> anyhow::Result<Observed> {
    let records = records(&target.gateway, &accepted)
        .await
        .map_err(anyhow::Error::msg)?;
    let text = std::fs::read_to_string(&target.starts)
        .with_context(|| format!("reading {}", target.starts.display()))?;
    Ok(Observed {
        accepted,
        records,
        starts: parse_starts(&text),
        workers: workers(&target.gateway).await.map_err(anyhow::Error::msg)?,
        violations: checks
            .violations
            .iter()
            .map(|v| (v.subject.clone(), v.detail.clone()))
            .collect(),
    })
}
