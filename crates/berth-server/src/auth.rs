//! Who is calling, and may they: bearer tokens checked against the store's credentials,
//! and one table of which roles may call which route.
//!
//! - [`authenticate`] (a middleware on every route) reads `Authorization: Bearer <token>`,
//!   finds the token's credential (through a short cache) and compares secrets in constant
//!   time; then [`permitted`] says whether the token's role may call the route at all, and,
//!   for a worker's credential, whether the route is about that worker. The handlers that
//!   serve several roles narrow further with [`Caller`]: a tenant sees only its own
//!   containers, a worker reports only for itself.
//! - `/healthz`, `/readyz` and the console's shell (`/`, `/console/app.js`,
//!   `/console/app.css`) need no token; `/metrics` takes a metrics or an admin token,
//!   or none when [`crate::ServerConfig::metrics_open`] is set.
//! - Unknown and revoked tokens get 401, known tokens outside their role 403, and a
//!   tenant asking for another tenant's container 404 (its existence is not revealed).
//!
//! A revocation through this replica takes effect at once; through another replica,
//! within [`crate::ServerConfig::credential_cache_ttl`].

use crate::error::HttpError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ErrorCode;
use berth_core::{Credential, Role, TenantName, Token, TokenId, WorkerId};
use berth_store::{Store, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most credentials kept in the cache; beyond it the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Finds credentials for tokens, through a short cache so that a request does not read the
/// store.
pub struct Authenticator {
    store: Arc<dyn Store>,
    ttl: Duration,
    cache: Mutex<HashMap<TokenId, (Credential, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("ttl", &self.ttl)
            .field("cached", &self.cache.lock().len())
            .finish()
    }
}

impl Authenticator {
    /// An authenticator on `store`, caching found credentials for `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Authenticator {
        Authenticator {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The role of `token`, or `None` if no stored credential admits it.
    pub async fn role_of(&self, token: &Token) -> Result<Option<Role>, StoreError> {
        let cached = self
            .cache
            .lock()
            .get(token.id())
            .and_then(|(credential, at)| (at.elapsed() < self.ttl).then(|| credential.clone()));
        let credential = match cached {
            Some(credential) => Some(credential),
            None => {
                let found = self.store.credential(token.id()).await?;
                if let Some(credential) = &found {
                    let mut cache = self.cache.lock();
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                    cache.insert(credential.id.clone(), (credential.clone(), Instant::now()));
                }
                found
            }
        };
        Ok(credential
            .filter(|credential| credential.admits(token))
            .map(|credential| credential.role))
    }

    /// Forgets cached credentials (after revoking them through this replica).
    pub fn forget(&self, ids: &[TokenId]) {
        let mut cache = self.cache.lock();
        for id in ids {
            cache.remove(id);
        }
    }
}

/// The authenticated caller of a request, for handlers that serve several roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who the token speaks for.
    pub role: Role,
}

impl Caller {
    /// The tenant whose containers the caller may see: `None` for an admin (every tenant).
    /// Only admins and clients reach the container routes (see [`permitted`]).
    pub fn tenant(&self) -> Option<&TenantName> {
        match &self.role {
            Role::Client { tenant } => Some(tenant),
            _ => None,
        }
    }

    /// Whether the caller may see a container of `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant().is_none_or(|own| own.as_str() == tenant)
    }

    /// Refuses (403) a worker's credential acting for another worker.
    pub fn acts_for(&self, worker: &WorkerId) -> Result<(), HttpError> {
        match &self.role {
            Role::Worker { worker: own } if own != worker => Err(HttpError::forbidden(format!(
                "this credential is worker {own}'s; it may not act for worker {worker}"
            ))),
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, HttpError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| HttpError::internal("a handler that needs a caller ran without one"))
    }
}

/// The roles that may call a route (besides admins, who may call everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Others {
    /// Nobody without a token (`/healthz`, `/readyz`).
    Anyone,
    /// Admins only.
    Nobody,
    /// Clients (their own tenant's containers).
    Clients,
    /// Every authenticated role (the API document).
    Authenticated,
    /// Metrics tokens.
    Metrics,
    /// Join tokens, and a worker registering itself again.
    Joining,
    /// The worker the route is about (its id is the path's `{id}`, or a report's body).
    TheWorker,
}

/// Who besides admins may call `method route` (the route as matched, e.g.
/// `/v1/workers/{id}/heartbeat`). A route or method not listed is for admins only, so a
/// route added without an entry here is closed, never open.
fn others(method: &Method, route: &str) -> Others {
    use Others::*;
    match (method.as_str(), route) {
        ("GET", "/healthz" | "/readyz") => Anyone,
        // The console's shell holds no data; what it shows comes through the API.
        ("GET", "/" | "/console/app.js" | "/console/app.css") => Anyone,
        ("GET", "/metrics") => Metrics,
        ("GET", "/openapi.json") => Authenticated,
        ("POST" | "GET", "/v1/containers" | "/v1/containers/batch") => Clients,
        ("GET", "/v1/containers/{id}" | "/v1/containers/{id}/logs") => Clients,
        ("POST", "/v1/containers/{id}/cancel") => Clients,
        ("GET", "/v1/tenants/{name}") => Clients,
        ("POST", "/v1/containers/{id}/status") => TheWorker,
        ("POST", "/v1/workers") => Joining,
        ("GET" | "DELETE", "/v1/workers/{id}") => TheWorker,
        ("POST", "/v1/workers/{id}/heartbeat" | "/v1/workers/{id}/release") => TheWorker,
        ("GET", "/v1/workers/{id}/assignments") => TheWorker,
        ("POST", "/v1/workers/{id}/assignments/{delivery}/ack") => TheWorker,
        _ => Nobody,
    }
}

/// Whether `role` may call `method route` on `path` (the request's path, whose third
/// segment is the worker id of `/v1/workers/{id}/...` routes).
pub fn permitted(role: &Role, method: &Method, route: &str, path: &str) -> bool {
    match (role, others(method, route)) {
        (_, Others::Anyone | Others::Authenticated) | (Role::Admin, _) => true,
        (Role::Metrics, Others::Metrics) | (Role::Client { .. }, Others::Clients) => true,
        (Role::Join | Role::Worker { .. }, Others::Joining) => true,
        (Role::Worker { worker }, Others::TheWorker) => {
            !route.starts_with("/v1/workers/{id}") || path_worker(path) == Some(worker.as_str())
        }
        _ => false,
    }
}

/// The `{id}` of a `/v1/workers/{id}/...` path.
fn path_worker(path: &str) -> Option<&str> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("v1"), Some("workers"), Some(id)) => Some(id),
        _ => None,
    }
}

/// The middleware: authenticates the request and checks [`permitted`]; puts the [`Caller`]
/// in the request's extensions for the handlers.
pub async fn authenticate(state: Arc<AppState>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let open = match route.as_deref() {
        Some(route) => {
            others(&method, route) == Others::Anyone
                || (route == "/metrics" && state.config.metrics_open)
        }
        None => false,
    };
    if open {
        return next.run(request).await;
    }
    let role = match caller_role(&state, request.headers()).await {
        Ok(role) => role,
        Err(error) => return error.into_response(),
    };
    if let Some(route) = route.as_deref()
        && !permitted(&role, &method, route, request.uri().path())
    {
        metrics::counter!("berth_auth_refusals_total", "reason" => "forbidden").increment(1);
        return HttpError::forbidden(format!(
            "a {} token may not call {method} {route}",
            role.kind()
        ))
        .into_response();
    }
    request.extensions_mut().insert(Caller { role });
    next.run(request).await
}

/// The role of the request's bearer token, or a 401 saying what is wrong.
async fn caller_role(state: &AppState, headers: &HeaderMap) -> Result<Role, HttpError> {
    let refuse = |message: &str| {
        metrics::counter!("berth_auth_refusals_total", "reason" => "unauthenticated").increment(1);
        HttpError::new(ErrorCode::Unauthenticated, None, message)
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(refuse(
            "this route needs a token: send Authorization: Bearer <token> (`berth up` writes an \
             admin token to the user's config directory; `berth token create` makes others)",
        ));
    };
    let text = value.to_str().unwrap_or_default();
    let Some(presented) = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
    else {
        return Err(refuse("the Authorization header must be `Bearer <token>`"));
    };
    let token = Token::parse(presented).map_err(|error| refuse(&error.to_string()))?;
    match state.auth.role_of(&token).await {
        Ok(Some(role)) => Ok(role),
        Ok(None) => Err(refuse(&format!(
            "token {} is not known: it was never issued here or was revoked",
            token.id()
        ))),
        Err(error) => Err(HttpError::from(error)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    /// A store with one admin credential per token given, and its authenticator.
    async fn authenticator(ttl: Duration, tokens: &[&Token]) -> (Arc<dyn Store>, Authenticator) {
        let store: Arc<dyn Store> = Arc::new(berth_store::MemoryStore::default());
        for token in tokens {
            let credential = Credential::issue(token, Role::Admin, "", 0).unwrap();
            store.put_credential(&credential).await.unwrap();
        }
        let auth = Authenticator::new(store.clone(), ttl);
        (store, auth)
    }

    #[tokio::test]
    async fn a_revocation_elsewhere_is_seen_once_the_cached_credential_expires() {
        let token = Token::from_random([1; 8], [1; 32]);
        let (store, auth) = authenticator(Duration::from_millis(300), &[&token]).await;
        assert_eq!(auth.role_of(&token).await.unwrap(), Some(Role::Admin));
        // Revoked through another replica: this one's cache still has it.
        store
            .revoke_credentials(&[token.id().clone()])
            .await
            .unwrap();
        assert_eq!(auth.role_of(&token).await.unwrap(), Some(Role::Admin));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(auth.role_of(&token).await.unwrap(), None);
        // A wrong secret under a cached id is refused, cache or not.
        let (_, auth) = authenticator(Duration::from_secs(60), &[&token]).await;
        assert!(auth.role_of(&token).await.unwrap().is_some());
        let forged = Token::from_random([1; 8], [2; 32]);
        assert_eq!(auth.role_of(&forged).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cached_credentials_need_no_store_read() {
        let (a, b) = (
            Token::from_random([1; 8], [1; 32]),
            Token::from_random([2; 8], [2; 32]),
        );
        let (store, auth) = authenticator(Duration::from_secs(60), &[&a, &b]).await;
        auth.role_of(&a).await.unwrap();
        auth.role_of(&b).await.unwrap();
        let before = store.stats().snapshot();
        for _ in 0..3 {
            assert!(auth.role_of(&a).await.unwrap().is_some());
            assert!(auth.role_of(&b).await.unwrap().is_some());
        }
        assert_eq!(store.stats().snapshot().since(&before).round_trips, 0);
        auth.forget(&[a.id().clone()]);
        auth.role_of(&a).await.unwrap();
        assert_eq!(store.stats().snapshot().since(&before).round_trips, 1);
        assert!(format!("{auth:?}").contains("cached: 2"), "{auth:?}");
    }

    fn worker(id: &str) -> Role {
        Role::Worker {
            worker: WorkerId::new(id).unwrap(),
        }
    }

    #[test]
    fn a_worker_acts_only_for_itself() {
        let heartbeat = "/v1/workers/{id}/heartbeat";
        let me = worker("w-1");
        assert!(permitted(
            &me,
            &Method::POST,
            heartbeat,
            "/v1/workers/w-1/heartbeat"
        ));
        assert!(!permitted(
            &me,
            &Method::POST,
            heartbeat,
            "/v1/workers/w-2/heartbeat"
        ));
        assert!(!permitted(
            &me,
            &Method::POST,
            heartbeat,
            "/v1/workers/w-1x/heartbeat"
        ));
        assert!(!permitted(
            &me,
            &Method::POST,
            "/v1/workers/{id}/drain",
            "/v1/workers/w-1/drain"
        ));
        assert!(permitted(
            &me,
            &Method::POST,
            "/v1/containers/{id}/status",
            "/v1/containers/c/status"
        ));
        assert!(!permitted(
            &me,
            &Method::GET,
            "/v1/containers/{id}",
            "/v1/containers/c"
        ));
    }

    #[test]
    fn routes_not_listed_are_for_admins_only() {
        let client = Role::Client {
            tenant: TenantName::new("t").unwrap(),
        };
        for role in [client.clone(), Role::Join, Role::Metrics, worker("w")] {
            assert!(!permitted(
                &role,
                &Method::GET,
                "/v1/new-route",
                "/v1/new-route"
            ));
            assert!(!permitted(&role, &Method::GET, "/v1/tokens", "/v1/tokens"));
            assert!(!permitted(
                &role,
                &Method::PUT,
                "/v1/containers",
                "/v1/containers"
            ));
        }
        assert!(permitted(
            &Role::Admin,
            &Method::GET,
            "/v1/new-route",
            "/v1/new-route"
        ));
        assert!(permitted(
            &client,
            &Method::POST,
            "/v1/containers",
            "/v1/containers"
        ));
        assert!(!permitted(
            &client,
            &Method::POST,
            "/v1/workers",
            "/v1/workers"
        ));
        assert!(permitted(
            &Role::Join,
            &Method::POST,
            "/v1/workers",
            "/v1/workers"
        ));
        assert!(permitted(
            &Role::Metrics,
            &Method::GET,
            "/metrics",
            "/metrics"
        ));
        assert!(!permitted(&client, &Method::GET, "/metrics", "/metrics"));
    }
}
