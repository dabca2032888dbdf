//! A registry front that asks for bearer tokens, as Docker Hub, GHCR and most hosted
//! registries do: `/v2/...` without `Authorization: Bearer <token>` is answered 401 with a
//! `WWW-Authenticate: Bearer realm=...` challenge; the realm (`/token`) hands the token to
//! whoever gives the right basic credentials; with the token, requests are passed to the
//! real registry behind it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// The token the front hands out and accepts.
pub(super) const TOKEN: &str = "bearer-token-7f3a";

/// A running front; stopped when dropped.
pub(super) struct TokenFront {
    /// `127.0.0.1:<port>`, the registry part of references through it.
    pub(super) addr: String,
    /// The `scope` of every token request that got a token.
    pub(super) granted: Arc<Mutex<Vec<String>>>,
    /// How many token requests came, granted or not.
    pub(super) asked: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TokenFront {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Clone)]
struct Front {
    upstream: String,
    realm: String,
    /// `user:password`, the only credentials that get a token.
    credentials: String,
    granted: Arc<Mutex<Vec<String>>>,
    asked: Arc<AtomicUsize>,
    client: reqwest::Client,
}

impl TokenFront {
    /// A front on a free loopback port for the registry at `upstream` (`host:port`),
    /// giving tokens for `credentials` (`user:password`).
    pub(super) fn start(upstream: &str, credentials: &str) -> TokenFront {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let granted = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::new(AtomicUsize::new(0));
        let front = Front {
            upstream: format!("http://{upstream}"),
            realm: format!("http://{addr}/token"),
            credentials: credentials.to_owned(),
            granted: granted.clone(),
            asked: asked.clone(),
            client: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .fallback(pass)
            .with_state(front);
        runtime.spawn(async move { axum::serve(listener, app).await });
        TokenFront {
            addr,
            granted,
            asked,
            runtime: Some(runtime),
        }
    }
}

/// `GET /token?scope=...&service=...` with basic credentials: the token, or 401.
async fn token(
    State(front): State<Front>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    front.asked.fetch_add(1, Ordering::Relaxed);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&front.credentials)
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let scope = query.get("scope").cloned().unwrap_or_default();
    front.granted.lock().unwrap().push(scope);
    axum::Json(serde_json::json!({ "token": TOKEN })).into_response()
}

/// Anything else: passed to the registry with the token, else the challenge.
async fn pass(
    State(front): State<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = format!("Bearer {TOKEN}");
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(bearer.as_str()) {
        let challenge = format!(r#"Bearer realm="{}",service="berth-test""#, front.realm);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            "token required",
        )
            .into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = front
        .client
        .request(method, format!("{}{path}", front.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != header::HOST && name != header::AUTHORIZATION {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap();
    response.body(Body::from(bytes)).unwrap()
}
