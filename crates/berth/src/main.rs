//! `berth`: the container scheduler's one binary.

/// `println!` that returns a [`StdoutError`] instead of panicking, so a closed pipe
/// (`berth ps | head -3`) ends the command quietly (see [`closed_pipe`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::StdoutError)
    }};
}

/// A write to standard output failed.
#[derive(Debug, thiserror::Error)]
#[error("writing to standard output: {0}")]
struct StdoutError(std::io::Error);

mod cmd;
mod config;
mod provisioner;
mod tokens;
mod units;

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
    Demo(berth_bench::demo::DemoArgs),
    /// Runs the seed's experiment (100 concurrent requests on 10, 20 and 40 workers) for
    /// every commit strategy on one store and prints the seed's table with berth's numbers;
    /// `--scenario sustained` and `--scenario c1m` run at scale.
    Bench(Box<berth_bench::BenchArgs>),
    /// Runs an engine replica and the HTTP API (embedded store by default, or --redis).
    Server(cmd::server::ServerArgs),
    /// The agent on a worker machine: registers, runs its containers, drains on SIGTERM.
    Worker {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(flatten)]
        args: cmd::worker::WorkerArgs,
    },
    /// The embedded default in one command: a server and local workers on 127.0.0.1:7700.
    Up(cmd::up::UpArgs),
    /// Submits a container: `berth run --cpu 500m --memory 512Mi -- echo hello`.
    Run {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(flatten)]
        args: cmd::client::RunArgs,
    },
    /// Lists containers.
    Ps {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(flatten)]
        args: cmd::client::PsArgs,
    },
    /// Lists workers; with an id, one worker and the containers it owns with their GPU
    /// devices.
    Workers {
        #[command(flatten)]
        connection: cmd::client::Connection,
        /// One worker's id.
        id: Option<String>,
    },
    /// Prints a container's kept output; with --follow, its new output until it ends.
    Logs {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(flatten)]
        args: cmd::client::LogsArgs,
    },
    /// Cancels a container.
    Cancel {
        #[command(flatten)]
        connection: cmd::client::Connection,
        /// The container's id.
        id: String,
    },
    /// Shows the unmet demand per pool.
    Demand {
        #[command(flatten)]
        connection: cmd::client::Connection,
    },
    /// Verifies the store's invariants (through the server, or on Redis with --redis);
    /// exits 1 if any is broken.
    Check {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(flatten)]
        args: cmd::check::CheckArgs,
    },
    /// Creates, lists and revokes tokens (with an admin token).
    Token {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(subcommand)]
        action: cmd::token::TokenAction,
    },
    /// Sets, lists, shows and removes tenants' quotas and weights.
    Tenant {
        #[command(flatten)]
        connection: cmd::client::Connection,
        #[command(subcommand)]
        action: cmd::tenant::TenantAction,
    },
    /// Drains a worker: it takes no new containers.
    Drain {
        #[command(flatten)]
        connection: cmd::client::Connection,
        /// The worker's id.
        id: String,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match dispatch(Cli::parse()).await {
        Ok(code) => code,
        // Whoever read our output stopped reading (`| head`): that is their choice, not a
        // failure, and there is no one left to tell.
        Err(error) if closed_pipe(&error) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            2
        }
    };
    std::process::exit(code);
}

/// True if the error is a write to standard output whose reader has gone (Rust ignores
/// SIGPIPE, so such a write fails with `BrokenPipe` instead of ending the process). Only
/// our own output counts: a broken connection to the server is still an error.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<StdoutError>()
            .is_some_and(|StdoutError(e)| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs the subcommand; returns the process's exit code.
async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    use cmd::client;
    match cli.command {
        Command::Demo(args) => berth_bench::demo::run(args).await.map(|()| 0),
        Command::Bench(args) => berth_bench::run(*args).await.map(|()| 0),
        Command::Server(args) => cmd::server::run(args).await.map(|()| 0),
        Command::Worker { connection, args } => {
            cmd::worker::run(args, &connection).await.map(|()| 0)
        }
        Command::Up(args) => cmd::up::run(args).await.map(|()| 0),
        Command::Run { connection, args } => client::run(&connection, args).await,
        Command::Ps { connection, args } => client::ps(&connection, args).await,
        Command::Workers { connection, id } => match id {
            Some(id) => client::worker(&connection, &id).await,
            None => client::workers(&connection).await,
        },
        Command::Logs { connection, args } => client::logs(&connection, &args).await,
        Command::Cancel { connection, id } => client::cancel(&connection, &id).await,
        Command::Demand { connection } => client::demand(&connection).await,
        Command::Drain { connection, id } => client::drain(&connection, &id).await,
        Command::Check { connection, args } => cmd::check::run(&connection, args).await,
        Command::Token { connection, action } => cmd::token::run(&connection, action).await,
        Command::Tenant { connection, action } => cmd::tenant::run(&connection, action).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
