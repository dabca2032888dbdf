//! `berth`: the container scheduler's one binary.

mod cmd;

use clap::{Parser, Subcommand};

/// berth: place containers on a fleet of CPU and GPU machines, fast and without
/// double-booking.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Places a burst of requests on a generated fleet with the embedded in-memory store and
    /// prints where they went.
    Demo(cmd::demo::DemoArgs),
    /// Runs the seed's experiment (100 concurrent requests on 10, 20 and 40 workers) for
    /// every commit strategy on one store and prints the seed's table with berth's numbers;
    /// `--scenario sustained` and `--scenario c1m` run at scale.
    Bench(Box<cmd::bench::BenchArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Bench(args) => cmd::bench::run(*args).await,
    }
}
