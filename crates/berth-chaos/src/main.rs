//! `berth-chaos`: runs the chaos harness (see the crate documentation) and exits 0 when
//! the run passed, 1 when it found a problem or could not run, 2 on bad arguments or when
//! something it needs (redis-server, the berth binary) is missing.

use anyhow::Context;
use berth_chaos::SetupError;
use berth_chaos::args::Args;
use berth_chaos::summary::Summary;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("berth_chaos=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match harness(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("berth-chaos: error: {error:#}");
            match error.downcast_ref::<SetupError>() {
                Some(setup) => ExitCode::from(u8::try_from(setup.exit_code()).unwrap_or(2)),
                None => ExitCode::from(1),
            }
        }
    }
}

/// Runs the harness; whether the run passed.
fn harness(args: &Args) -> anyhow::Result<bool> {
    let cargo = std::env::var_os("CARGO").map(PathBuf::from);
    let berth = berth_chaos::binary::locate(args.berth.as_deref(), cargo.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("berth-chaos-")
        .tempdir()
        .context("creating the temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = berth_chaos::run::run(args, &berth, dir.path()) => result,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
        }
    });
    // Every task still holding a process is dropped with the runtime: the processes are
    // killed before their directory goes.
    drop(runtime);
    let passed = result.as_ref().is_ok_and(|s| s.passed);
    let setup_failed = result
        .as_ref()
        .is_err_and(|e| e.downcast_ref::<SetupError>().is_some());
    let kept = (args.keep || !(passed || setup_failed)).then(|| dir.keep());
    if let Some(dir) = kept.as_ref().filter(|_| !passed) {
        eprintln!(
            "berth-chaos: the logs of every process are in {}",
            dir.display()
        );
    }
    let mut summary = result?;
    summary.log_dir = kept.as_ref().map(|p| p.display().to_string());
    print!("{}", summary.human());
    if let Some(path) = &args.json {
        write_json(&summary, path)?;
    }
    Ok(passed)
}

/// Resolves on SIGINT or SIGTERM, with the signal's name.
async fn interrupted() -> &'static str {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn write_json(summary: &Summary, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(summary).context("serializing the summary")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
