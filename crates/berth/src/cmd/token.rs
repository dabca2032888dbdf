//! `berth token create | list | revoke`: the tokens of a server, with an admin token.

use super::client::{Connection, print, table};
use berth_api::{CreateToken, NewTokenKind, TokenView};

/// What to do with tokens.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenAction {
    /// Creates a token and prints it (shown this once: keep it secret).
    Create {
        /// admin, client (one tenant's containers), join (registers workers) or metrics.
        #[arg(long, value_parser = parse_kind)]
        kind: NewTokenKind,
        /// The tenant of a client token.
        #[arg(long)]
        tenant: Option<String>,
        /// A name for people, e.g. ci.
        #[arg(long)]
        name: Option<String>,
    },
    /// Lists the tokens (never their secrets).
    List,
    /// Revokes a token by its id (as `berth token list` shows it).
    Revoke {
        /// The token's id.
        id: String,
    },
}

fn parse_kind(text: &str) -> Result<NewTokenKind, String> {
    match text {
        "admin" => Ok(NewTokenKind::Admin),
        "client" => Ok(NewTokenKind::Client),
        "join" => Ok(NewTokenKind::Join),
        "metrics" => Ok(NewTokenKind::Metrics),
        other => Err(format!(
            "unknown kind {other:?}; expected admin, client, join or metrics"
        )),
    }
}

/// Runs the action; the exit code is 0 on success.
pub async fn run(connection: &Connection, action: TokenAction) -> anyhow::Result<i32> {
    let client = connection.client()?;
    match action {
        TokenAction::Create { kind, tenant, name } => {
            let created = client
                .create_token(&CreateToken { kind, tenant, name })
                .await?;
            print(connection, &created, |created| {
                eprintln!(
                    "created {} token {} (shown this once; keep it secret):",
                    created.credential.kind, created.credential.id
                );
                outln!("{}", created.token)
            })?;
        }
        TokenAction::List => {
            let tokens = client.tokens().await?;
            print(connection, &tokens, |tokens| {
                outln!("{}", tokens_table(tokens))
            })?;
        }
        TokenAction::Revoke { id } => {
            let revoked = client.revoke_token(&id).await?;
            print(connection, &revoked, |revoked| {
                outln!("revoked token {}", revoked.id)
            })?;
        }
    }
    Ok(0)
}

fn tokens_table(tokens: &[TokenView]) -> comfy_table::Table {
    let mut table = table(["ID", "KIND", "SCOPE", "NAME", "CREATED (ms)"]);
    for token in tokens {
        let scope = token
            .tenant
            .as_deref()
            .map(|t| format!("tenant {t}"))
            .or_else(|| token.worker.as_deref().map(|w| format!("worker {w}")))
            .unwrap_or_default();
        table.add_row([
            token.id.clone(),
            token.kind.clone(),
            scope,
            token.name.clone(),
            token.created_ms.to_string(),
        ]);
    }
    table
}
