//! A typed client of the berth server's HTTP API, one method per endpoint.

use crate::error::ErrorBody;
use crate::spec::ContainerSpec;
use crate::types::*;
use berth_core::ContainerState;
use berth_core::{ContainerId, WorkerId};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long an ordinary call may take before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an idle connection is kept for reuse: below the server's header read timeout
/// (10 s by default), which also closes a connection that waits idle for its next request,
/// so that a call is not sent on a connection the server is closing.
const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(5);

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Api {
        /// The method of the call.
        method: Method,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        body: ErrorBody,
    },
    /// The server could not be reached at all.
    #[error(
        "cannot reach the berth server at {url}: {source}; start one with `berth up` (or `berth server`), or point at a running one with --server or BERTH_SERVER"
    )]
    Connect {
        /// The URL called.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The call failed after connecting (a time-out, a broken connection).
    #[error("{method} {url}: {source}")]
    Http {
        /// The method of the call.
        method: Method,
        /// The URL called.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The server's answer could not be understood (not a berth server, or another version).
    #[error("{method} {url}: HTTP {status}: unexpected answer: {detail}")]
    Unexpected {
        /// The method of the call.
        method: Method,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// The server URL given to [`Client::new`] is unusable.
    #[error("invalid server URL {url:?}: {reason}; use e.g. http://127.0.0.1:7070")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
}

impl ClientError {
    /// The server's error body, if the server answered with one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

/// A client of one berth server. Cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix), with [`DEFAULT_TIMEOUT`] per call.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("the scheme must be http or https"));
        }
        let http = reqwest::Client::builder()
            .pool_idle_timeout(IDLE_CONNECTION_KEPT)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Client {
            http,
            base,
            timeout: DEFAULT_TIMEOUT,
            token: None,
        })
    }

    /// The same client with another per-call time-out (long polls add their wait to it).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The same client calling with `token` (`Authorization: Bearer <token>`).
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into().trim().to_owned());
        self
    }

    /// Replaces the token the client calls with (a worker switching to the credential its
    /// registration issued).
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.token = Some(token.into().trim().to_owned());
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let shown = url.to_string();
        let mut request = self.http.request(method.clone(), url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| {
            if source.is_connect() {
                ClientError::Connect {
                    url: shown.clone(),
                    source,
                }
            } else {
                ClientError::Http {
                    method: method.clone(),
                    url: shown.clone(),
                    source,
                }
            }
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|source| ClientError::Http {
            method: method.clone(),
            url: shown.clone(),
            source,
        })?;
        if status.is_success() {
            return Ok((status, bytes.to_vec()));
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api {
                method,
                url: shown,
                status: status.as_u16(),
                body,
            },
            Err(_) => ClientError::Unexpected {
                method,
                url: shown,
                status: status.as_u16(),
                detail: snippet(&bytes),
            },
        })
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.json_within(method, segments, query, body, self.timeout)
            .await
    }

    async fn json_within<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = self.url(segments);
        let shown = url.to_string();
        let (status, bytes) = self.call(method.clone(), url, query, body, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            method,
            url: shown,
            status: status.as_u16(),
            detail: format!("{e}: {}", snippet(&bytes)),
        })
    }

    async fn empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.empty_with_query(method, segments, &[], body).await
    }

    async fn empty_with_query<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let url = self.url(segments);
        self.call(method, url, query, body, self.timeout).await?;
        Ok(())
    }

    // ----- containers -----

    /// `POST /v1/containers`: submits one container.
    pub async fn submit(&self, spec: &ContainerSpec) -> Result<SubmitResponse, ClientError> {
        self.json(Method::POST, &["v1", "containers"], &[], Some(spec))
            .await
    }

    /// `POST /v1/containers/batch`: submits many containers, all or none.
    pub async fn submit_batch(
        &self,
        containers: &[ContainerSpec],
    ) -> Result<BatchSubmitResponse, ClientError> {
        let batch = BatchSubmit {
            containers: containers.to_vec(),
        };
        self.json(
            Method::POST,
            &["v1", "containers", "batch"],
            &[],
            Some(&batch),
        )
        .await
    }

    /// `GET /v1/containers/{id}`.
    pub async fn container(&self, id: &ContainerId) -> Result<ContainerView, ClientError> {
        self.json::<_, ()>(Method::GET, &["v1", "containers", id.as_str()], &[], None)
            .await
    }

    /// `GET /v1/containers/{id}?wait_ms=`: the container once it has left `pending`, or as
    /// it is after `wait` (capped by the server).
    pub async fn container_when_settled(
        &self,
        id: &ContainerId,
        wait: Duration,
    ) -> Result<ContainerView, ClientError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.json_within::<_, ()>(
            Method::GET,
            &["v1", "containers", id.as_str()],
            &[("wait_ms", wait_ms.to_string())],
            None,
            self.timeout.saturating_add(wait),
        )
        .await
    }

    /// `GET /v1/containers?state=&limit=`: the newest containers, optionally in one state.
    pub async fn containers(
        &self,
        state: Option<ContainerState>,
        limit: Option<usize>,
    ) -> Result<Vec<ContainerView>, ClientError> {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(("state", state.as_str().to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let list: ContainerList = self
            .json::<_, ()>(Method::GET, &["v1", "containers"], &query, None)
            .await?;
        Ok(list.containers)
    }

    /// `POST /v1/containers/{id}/cancel`.
    pub async fn cancel(&self, id: &ContainerId) -> Result<ContainerView, ClientError> {
        self.json::<_, ()>(
            Method::POST,
            &["v1", "containers", id.as_str(), "cancel"],
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/containers/{id}/logs`: every kept line.
    pub async fn logs(&self, id: &ContainerId) -> Result<LogsView, ClientError> {
        self.json::<_, ()>(
            Method::GET,
            &["v1", "containers", id.as_str(), "logs"],
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/containers/{id}/logs?after=N`: the kept lines at positions `after` and later
    /// (ask next with the answer's `next`).
    pub async fn logs_after(&self, id: &ContainerId, after: u64) -> Result<LogsView, ClientError> {
        self.json::<_, ()>(
            Method::GET,
            &["v1", "containers", id.as_str(), "logs"],
            &[("after", after.to_string())],
            None,
        )
        .await
    }

    // ----- workers, for operators -----

    /// `GET /v1/workers`.
    pub async fn workers(&self) -> Result<Vec<WorkerView>, ClientError> {
        Ok(self.worker_list().await?.workers)
    }

    /// `GET /v1/workers`, whole: the workers and the quarantined ones.
    pub async fn worker_list(&self) -> Result<WorkerList, ClientError> {
        self.json::<_, ()>(Method::GET, &["v1", "workers"], &[], None)
            .await
    }

    /// `GET /v1/workers/{id}`: one worker with the containers it owns and their devices.
    pub async fn worker(&self, id: &WorkerId) -> Result<WorkerDetail, ClientError> {
        self.json::<_, ()>(Method::GET, &["v1", "workers", id.as_str()], &[], None)
            .await
    }

    /// `POST /v1/workers/{id}/drain`: the worker takes no new containers.
    pub async fn drain(&self, id: &WorkerId) -> Result<WorkerView, ClientError> {
        self.worker_action(id, "drain").await
    }

    /// `POST /v1/workers/{id}/disable`: the worker takes no new containers.
    pub async fn disable(&self, id: &WorkerId) -> Result<WorkerView, ClientError> {
        self.worker_action(id, "disable").await
    }

    /// `POST /v1/workers/{id}/enable`: the worker takes containers again.
    pub async fn enable(&self, id: &WorkerId) -> Result<WorkerView, ClientError> {
        self.worker_action(id, "enable").await
    }

    async fn worker_action(&self, id: &WorkerId, action: &str) -> Result<WorkerView, ClientError> {
        self.json::<_, ()>(
            Method::POST,
            &["v1", "workers", id.as_str(), action],
            &[],
            None,
        )
        .await
    }

    /// `DELETE /v1/workers/{id}`: removes a worker that owns nothing.
    pub async fn deregister(&self, id: &WorkerId) -> Result<(), ClientError> {
        self.empty::<()>(Method::DELETE, &["v1", "workers", id.as_str()], None)
            .await
    }

    // ----- tokens -----

    /// `POST /v1/tokens`: creates a token (admin only); the answer holds its secret.
    pub async fn create_token(&self, create: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.json(Method::POST, &["v1", "tokens"], &[], Some(create))
            .await
    }

    /// `GET /v1/tokens`: every token (admin only), without secrets.
    pub async fn tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        let list: TokenList = self
            .json::<_, ()>(Method::GET, &["v1", "tokens"], &[], None)
            .await?;
        Ok(list.tokens)
    }

    /// `DELETE /v1/tokens/{id}`: revokes a token (admin only).
    pub async fn revoke_token(&self, id: &str) -> Result<Revoked, ClientError> {
        self.json::<_, ()>(Method::DELETE, &["v1", "tokens", id], &[], None)
            .await
    }

    /// `GET /v1/tenants`: every tenant with a policy or holding something (admin only).
    pub async fn tenants(&self) -> Result<Vec<TenantView>, ClientError> {
        let list: TenantList = self
            .json::<_, ()>(Method::GET, &["v1", "tenants"], &[], None)
            .await?;
        Ok(list.tenants)
    }

    /// `GET /v1/tenants/{name}`: one tenant's policy and usage (an admin, or a client token
    /// of that tenant).
    pub async fn tenant(&self, name: &str) -> Result<TenantView, ClientError> {
        self.json::<_, ()>(Method::GET, &["v1", "tenants", name], &[], None)
            .await
    }

    /// `PUT /v1/tenants/{name}`: sets a tenant's quota and weight (admin only).
    pub async fn put_tenant(
        &self,
        name: &str,
        spec: &TenantSpec,
    ) -> Result<TenantView, ClientError> {
        self.json(Method::PUT, &["v1", "tenants", name], &[], Some(spec))
            .await
    }

    /// `DELETE /v1/tenants/{name}`: removes a tenant's policy (admin only); its containers
    /// keep running.
    pub async fn remove_tenant(&self, name: &str) -> Result<TenantView, ClientError> {
        self.json::<_, ()>(Method::DELETE, &["v1", "tenants", name], &[], None)
            .await
    }

    // ----- the worker protocol -----

    /// `POST /v1/workers`: registers (or re-registers) a worker.
    pub async fn register(&self, worker: &RegisterWorker) -> Result<Registered, ClientError> {
        self.json(Method::POST, &["v1", "workers"], &[], Some(worker))
            .await
    }

    /// `POST /v1/workers/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        id: &WorkerId,
        beat: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.json(
            Method::POST,
            &["v1", "workers", id.as_str(), "heartbeat"],
            &[],
            Some(beat),
        )
        .await
    }

    /// `GET /v1/workers/{id}/assignments?epoch=&max=&wait_ms=`: up to `max` assignments,
    /// waiting up to `wait` (capped by the server) for one to arrive.
    pub async fn assignments(
        &self,
        id: &WorkerId,
        epoch: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<AssignmentView>, ClientError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let query = [
            ("epoch", epoch.to_string()),
            ("max", max.to_string()),
            ("wait_ms", wait_ms.to_string()),
        ];
        let list: AssignmentList = self
            .json_within::<_, ()>(
                Method::GET,
                &["v1", "workers", id.as_str(), "assignments"],
                &query,
                None,
                self.timeout.saturating_add(wait),
            )
            .await?;
        Ok(list.assignments)
    }

    /// `POST /v1/workers/{id}/assignments/{delivery}/ack?epoch=`.
    pub async fn ack(&self, id: &WorkerId, epoch: u64, delivery: &str) -> Result<(), ClientError> {
        self.empty_with_query::<()>(
            Method::POST,
            &["v1", "workers", id.as_str(), "assignments", delivery, "ack"],
            &[("epoch", epoch.to_string())],
            None,
        )
        .await
    }

    /// `POST /v1/workers/{id}/release`: gives back a reservation the worker will not run.
    pub async fn release(
        &self,
        id: &WorkerId,
        release: &ReleaseRequest,
    ) -> Result<ReleaseResponse, ClientError> {
        self.json(
            Method::POST,
            &["v1", "workers", id.as_str(), "release"],
            &[],
            Some(release),
        )
        .await
    }

    /// `POST /v1/containers/{id}/status`: a worker's report on a container.
    pub async fn report(
        &self,
        id: &ContainerId,
        report: &StatusReport,
    ) -> Result<ContainerView, ClientError> {
        self.json(
            Method::POST,
            &["v1", "containers", id.as_str(), "status"],
            &[],
            Some(report),
        )
        .await
    }

    // ----- operations -----

    /// `GET /v1/demand`: the unmet demand per pool.
    pub async fn demand(&self) -> Result<DemandView, ClientError> {
        self.json::<_, ()>(Method::GET, &["v1", "demand"], &[], None)
            .await
    }

    /// `GET /v1/check`: the store's invariant violations (empty when all hold).
    pub async fn check(&self) -> Result<CheckView, ClientError> {
        self.json::<_, ()>(Method::GET, &["v1", "check"], &[], None)
            .await
    }

    /// `GET /openapi.json`: the OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.json::<_, ()>(Method::GET, &["openapi.json"], &[], None)
            .await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (_, bytes) = self
            .call::<()>(Method::GET, self.url(&["metrics"]), &[], None, self.timeout)
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET /healthz`: the server is up.
    pub async fn healthz(&self) -> Result<Health, ClientError> {
        self.json::<_, ()>(Method::GET, &["healthz"], &[], None)
            .await
    }

    /// `GET /readyz`: the server can reach its store (an error with status 503 otherwise).
    pub async fn readyz(&self) -> Result<Health, ClientError> {
        self.json::<_, ()>(Method::GET, &["readyz"], &[], None)
            .await
    }
}

/// The start of a body, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        shown.push('…');
    }
    if shown.is_empty() {
        shown.push_str("(empty body)");
    }
    shown
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_path_prefix_and_escape_segments() {
        let client = Client::new("http://127.0.0.1:7070/berth/").unwrap();
        assert_eq!(
            client.url(&["v1", "containers", "a b"]).as_str(),
            "http://127.0.0.1:7070/berth/v1/containers/a%20b"
        );
        let client = Client::new("http://127.0.0.1:7070").unwrap();
        assert_eq!(
            client.url(&["v1", "workers"]).as_str(),
            "http://127.0.0.1:7070/v1/workers"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            Client::new("127.0.0.1:7070"),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            Client::new("ftp://x"),
            Err(ClientError::BadUrl { .. })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_server_says_how_to_start_one() {
        // A port that was free a moment ago: nothing listens there now.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let error = client.healthz().await.unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, ClientError::Connect { .. }), "{text}");
        assert!(
            text.contains("berth up") && text.contains("BERTH_SERVER"),
            "{text}"
        );
    }
}
