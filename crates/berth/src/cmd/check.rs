//! `berth check`: verifies the store's invariants, through a server or straight on Redis,
//! prints every violation with what it concerns and the numbers, and exits non-zero if
//! there is any.

use super::client::Connection;
use super::redis_access::RedisAccessArgs;
use crate::config::StoreSection;
use berth_store::prelude::*;
use berth_store::{CheckOptions, RedisStore, StoreConfig, Violation};
use std::time::Duration;

/// Arguments of `berth check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Read Redis directly (give it several times for a Cluster) instead of asking a server.
    #[arg(long = "redis", value_delimiter = ',')]
    pub redis: Vec<String>,
    /// With --redis: the Redis user, password and TLS certificates.
    #[command(flatten)]
    pub redis_access: RedisAccessArgs,
    /// The key prefix, with --redis.
    #[arg(long, default_value = "berth")]
    pub prefix: String,
    /// With --redis: a worker silent for longer than this many seconds is dead, and
    /// nothing scheduled or running may be owned by it (a server uses twice its heartbeat
    /// timeout plus twice its reaper interval).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "60",
        requires = "redis",
        value_parser = parse_dead_after
    )]
    pub dead_after: Duration,
}

/// `--dead-after`: a whole number of seconds, at least 1.
fn parse_dead_after(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".to_owned()),
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => Err(format!("{text:?} is not a whole number of seconds")),
    }
}

/// Runs the check; the exit code is 0 when the store is sound, 1 when it is not.
pub async fn run(connection: &Connection, args: CheckArgs) -> anyhow::Result<i32> {
    let violations: Vec<Violation> = if args.redis.is_empty() {
        let client = connection.client()?;
        let view = client.check().await?;
        view.violations
            .into_iter()
            .map(|v| Violation {
                subject: v.subject,
                detail: v.detail,
            })
            .collect()
    } else {
        let config = StoreConfig {
            prefix: args.prefix.clone(),
            ..StoreConfig::default()
        };
        let target = args
            .redis_access
            .target(args.redis.clone(), &StoreSection::default())?;
        // The store's error names the (redacted) URLs and says what to fix.
        let store = RedisStore::connect_to(&target, config).await?;
        let options = CheckOptions::at(berth_store::now_ms(), args.dead_after)
            .with_in_flight(args.dead_after);
        store.check(options).await?
    };
    if connection.json {
        outln!("{}", serde_json::to_string_pretty(&violations)?)?;
    } else if violations.is_empty() {
        outln!("ok: every invariant holds")?;
    } else {
        for violation in &violations {
            outln!("{violation}")?;
        }
        outln!("{} violations", violations.len())?;
    }
    Ok(i32::from(!violations.is_empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: CheckArgs,
    }

    #[test]
    fn dead_after_defaults_to_the_stores_default_and_needs_redis() {
        let cli = Cli::try_parse_from(["check", "--redis", "redis://127.0.0.1:6379/"]).unwrap();
        assert_eq!(cli.args.dead_after, CheckOptions::DEFAULT_DEAD_AFTER);
        assert!(Cli::try_parse_from(["check", "--dead-after", "5"]).is_err());
    }

    #[test]
    fn dead_after_is_whole_positive_seconds() {
        assert_eq!(parse_dead_after("90"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_dead_after("0"),
            Err("must be at least 1 second".to_owned())
        );
        assert!(parse_dead_after("1.5").is_err());
        assert!(parse_dead_after("soon").is_err());
        assert!(parse_dead_after("-3").is_err());
    }
}
