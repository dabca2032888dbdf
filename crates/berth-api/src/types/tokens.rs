//! Tokens: creating, listing and revoking them (admin only). A token's secret is shown
//! once, in the answer that creates it; the server keeps only its digest.

use berth_core::{Credential, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of token an admin creates. Worker credentials are not created this way: a
/// worker gets its own when it registers with a join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NewTokenKind {
    /// Everything.
    Admin,
    /// One tenant's containers (needs `tenant`).
    Client,
    /// Registers new workers.
    Join,
    /// Reads `/metrics`.
    Metrics,
}

/// `POST /v1/tokens`: a token to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What it may do.
    pub kind: NewTokenKind,
    /// The tenant a client token is scoped to (required for `client`, refused otherwise).
    #[serde(default)]
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    pub tenant: Option<String>,
    /// A name for people (e.g. `ci`); at most 128 bytes, no control characters.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub name: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Its id (16 hex digits), to revoke it by.
    pub id: String,
    /// `admin`, `client`, `join`, `metrics` or `worker`.
    pub kind: String,
    /// The tenant of a client token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The worker of a worker credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Its name.
    pub name: String,
    /// When it was created, in ms since the Unix epoch.
    pub created_ms: u64,
    /// A bootstrap admin token (configured on the servers; not revocable through the API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootstrap: bool,
}

impl From<&Credential> for TokenView {
    fn from(credential: &Credential) -> TokenView {
        let (tenant, worker) = match &credential.role {
            Role::Client { tenant } => (Some(tenant.to_string()), None),
            Role::Worker { worker } => (None, Some(worker.to_string())),
            Role::Admin | Role::Metrics | Role::Join => (None, None),
        };
        TokenView {
            id: credential.id.to_string(),
            kind: credential.role.kind().to_owned(),
            tenant,
            worker,
            name: credential.name.clone(),
            created_ms: credential.created_ms,
            bootstrap: credential.bootstrap,
        }
    }
}

/// The answer to `POST /v1/tokens`: the token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token to send as `Authorization: Bearer <token>`. Keep it secret: it is not
    /// shown again.
    pub token: String,
    /// What was stored.
    pub credential: TokenView,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Every token, by id.
    pub tokens: Vec<TokenView>,
}

/// The answer to `DELETE /v1/tokens/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// The id revoked.
    pub id: String,
}
