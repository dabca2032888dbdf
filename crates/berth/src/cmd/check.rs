//! `berth check`: verifies the store's invariants, through a server or straight on Redis,
//! prints every violation with what it concerns and the numbers, and exits non-zero if
//! there is any.

use super::client::Connection;
use anyhow::Context;
use berth_store::{RedisStore, Store, StoreConfig, Violation};

/// Arguments of `berth check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Read Redis directly (give it several times for a Cluster) instead of asking a server.
    #[arg(long = "redis", value_delimiter = ',')]
    pub redis: Vec<String>,
    /// The key prefix, with --redis.
    #[arg(long, default_value = "berth")]
    pub prefix: String,
}

/// Runs the check; the exit code is 0 when the store is sound, 1 when it is not.
pub async fn run(connection: &Connection, args: CheckArgs) -> anyhow::Result<i32> {
    let violations: Vec<Violation> = if args.redis.is_empty() {
        let client = berth_api::Client::new(&connection.server)?;
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
        let store = RedisStore::connect_any(&args.redis, config)
            .await
            .with_context(|| format!("connecting to Redis at {}", args.redis.join(", ")))?;
        store.check().await?
    };
    if connection.json {
        println!("{}", serde_json::to_string_pretty(&violations)?);
    } else if violations.is_empty() {
        println!("ok: every invariant holds");
    } else {
        for violation in &violations {
            println!("{violation}");
        }
        println!("{} violations", violations.len());
    }
    Ok(i32::from(!violations.is_empty()))
}
