//! Tokens: issuing them (the `/v1/tokens` endpoints, worker credentials at registration,
//! the bootstrap admin token), listing and revoking them.

use crate::error::HttpError;
use crate::extract::{JsonBody, PathParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_api::{
    CreateToken, CreatedToken, ErrorBody, NewTokenKind, Revoked, TokenList, TokenView,
};
use berth_core::credential::CredentialError;
use berth_core::{Credential, Role, TenantName, Token, TokenId, WorkerId};
use berth_store::{Store, StoreError};
use std::sync::Arc;

type Shared = State<Arc<AppState>>;

/// Why a token could not be issued or bootstrapped.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The token or its name is malformed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new random token for `role`, stored (as its credential) before it is returned.
pub async fn issue(
    store: &dyn Store,
    role: Role,
    name: &str,
    now_ms: u64,
) -> Result<Token, IssueError> {
    issue_with_credential(store, role, name, now_ms)
        .await
        .map(|(token, _)| token)
}

/// Like [`issue`], also returning the credential stored for the token.
async fn issue_with_credential(
    store: &dyn Store,
    role: Role,
    name: &str,
    now_ms: u64,
) -> Result<(Token, Credential), IssueError> {
    let token = Token::from_random(rand::random(), rand::random());
    let credential = Credential::issue(&token, role, name, now_ms)?;
    store.put_credential(&credential).await?;
    Ok((token, credential))
}

/// Stores the credential of a known admin token (e.g. `BERTH_ADMIN_TOKEN`, or the one
/// `berth up` keeps in the user's config directory), so that it is accepted. Idempotent.
pub async fn bootstrap_admin(
    store: &dyn Store,
    token: &str,
    now_ms: u64,
) -> Result<TokenId, IssueError> {
    let token = Token::parse(token)?;
    let mut credential = Credential::issue(&token, Role::Admin, "bootstrap admin", now_ms)?;
    credential.bootstrap = true;
    store.put_credential(&credential).await?;
    Ok(token.id().clone())
}

/// A new credential for `worker`, revoking its earlier ones: from now on only the agent
/// that holds the new one acts for the worker.
pub async fn issue_worker_credential(
    state: &AppState,
    worker: &WorkerId,
) -> Result<Token, HttpError> {
    let earlier = worker_credentials(state, worker).await?;
    let role = Role::Worker {
        worker: worker.clone(),
    };
    let token = issue(
        &*state.store,
        role,
        &format!("worker {worker}"),
        state.now_ms(),
    )
    .await
    .map_err(issue_error)?;
    revoke(state, &earlier).await?;
    Ok(token)
}

/// Revokes every credential of `worker` (it was removed).
pub async fn revoke_worker_credentials(
    state: &AppState,
    worker: &WorkerId,
) -> Result<(), HttpError> {
    let ids = worker_credentials(state, worker).await?;
    revoke(state, &ids).await.map(|_| ())
}

/// The ids of `worker`'s credentials.
async fn worker_credentials(
    state: &AppState,
    worker: &WorkerId,
) -> Result<Vec<TokenId>, HttpError> {
    Ok(state
        .store
        .credentials()
        .await?
        .into_iter()
        .filter(|c| matches!(&c.role, Role::Worker { worker: w } if w == worker))
        .map(|c| c.id)
        .collect())
}

async fn revoke(state: &AppState, ids: &[TokenId]) -> Result<usize, HttpError> {
    let revoked = state.store.revoke_credentials(ids).await?;
    state.auth.forget(ids);
    Ok(revoked)
}

fn issue_error(error: IssueError) -> HttpError {
    match error {
        IssueError::Credential(error) => HttpError::invalid("name", error.to_string()),
        IssueError::Store(error) => HttpError::from(error),
    }
}

/// Creates a token (admin only). Its secret is in this answer only.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created; the token is shown this once", body = CreatedToken),
        (status = 400, description = "Malformed (a client token without a tenant, a bad name)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): Shared,
    JsonBody(create): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), HttpError> {
    let role = match (create.kind, create.tenant) {
        (NewTokenKind::Client, Some(tenant)) => Role::Client {
            tenant: TenantName::new(tenant)
                .map_err(|e| HttpError::invalid("tenant", e.to_string()))?,
        },
        (NewTokenKind::Client, None) => {
            return Err(HttpError::invalid(
                "tenant",
                "a client token is scoped to one tenant: give its name",
            ));
        }
        (_, Some(_)) => {
            return Err(HttpError::invalid(
                "tenant",
                "only client tokens have a tenant; drop it, or ask for kind client",
            ));
        }
        (NewTokenKind::Admin, None) => Role::Admin,
        (NewTokenKind::Join, None) => Role::Join,
        (NewTokenKind::Metrics, None) => Role::Metrics,
    };
    let name = create.name.unwrap_or_default();
    let (token, credential) = issue_with_credential(&*state.store, role, &name, state.now_ms())
        .await
        .map_err(issue_error)?;
    tracing::info!(id = %token.id(), kind = credential.role.kind(), "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token.expose(),
            credential: TokenView::from(&credential),
        }),
    ))
}

/// Lists every token (admin only), never their secrets.
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens",
    responses(
        (status = 200, body = TokenList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn list(State(state): Shared) -> Result<Json<TokenList>, HttpError> {
    let credentials = state.store.credentials().await?;
    Ok(Json(TokenList {
        tokens: credentials.iter().map(TokenView::from).collect(),
    }))
}

/// Revokes a token (admin only): calls with it are refused from now on (through other
/// server replicas, within their credential cache's lifetime).
#[utoipa::path(
    delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id (16 hex digits)")),
    responses(
        (status = 200, body = Revoked),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "A bootstrap admin token: replace it where the servers are configured", body = ErrorBody),
    )
)]
pub async fn revoke_one(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<Revoked>, HttpError> {
    let id = TokenId::new(id).map_err(|e| HttpError::invalid("id", e.to_string()))?;
    if state
        .store
        .credential(&id)
        .await?
        .is_some_and(|credential| credential.bootstrap)
    {
        return Err(HttpError::conflict(format!(
            "token {id} is a bootstrap admin token: the servers store it again at every start \
             (from BERTH_ADMIN_TOKEN or their token file), so revoking it here would not last; \
             replace it there and restart them"
        )));
    }
    if revoke(&state, std::slice::from_ref(&id)).await? == 0 {
        return Err(HttpError::not_found(format!("no token {id}")));
    }
    tracing::info!(%id, "token revoked");
    Ok(Json(Revoked { id: id.to_string() }))
}
