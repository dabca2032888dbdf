//! # berth-server
//!
//! The HTTP service around one engine replica: clients submit, list, cancel and read
//! containers; worker agents register, heartbeat, long-poll their assignments and report;
//! operators drain workers and read the demand, the invariant check, the OpenAPI document
//! and the metrics. A reaper declares workers that miss their heartbeats lost and gives
//! their containers back.
//!
//! - [`serve`]: runs the service on a listener until a shutdown signal (with the reaper);
//!   its accept loop (module `listener`) closes connections slower than the header read
//!   timeout to send a request's head.
//! - [`router`]: the axum router alone, for embedding.
//! - [`AppState`], [`ServerConfig`]: what the handlers share, and the settings.
//! - [`reap_once`], [`spawn_reaper`]: the dead-worker reaper.
//! - [`install_metrics`]: the process's Prometheus recorder (installed once).
//! - [`ApiDoc`]: the OpenAPI document, served at `/openapi.json`.
//! - The web console at `/` (module `console`: a static page and script that read the API
//!   with the user's token) and [`throughput`], the placement series its chart draws.
//!
//! The handlers parse, call [`berth_protocol::Protocol`] (the worker protocol, admission
//! and the reaper live there, without HTTP) or the store, and map the answer and the
//! errors to HTTP.
//!
//! Every error is an [`berth_api::ErrorBody`] with the status of its code: malformed input
//! is a 400 naming the field, an oversize body a 413, an oversize request target a 414 and
//! oversize headers a 431 (module `limits`; hyper's own limits, which answer without a
//! body, are set above berth's), a request that could never be placed
//! a 422 (nothing written), never a 5xx. Store failures are 500 with a generic message; the
//! detail goes to the log.
//!
//! Submits go through admission to the store directly (one atomic step records and queues
//! them); the engine replica claims them from there. (Going through
//! [`berth_engine::Engine::submit`] would leave a waiter behind for every request another
//! replica settles.)

pub mod auth;
mod console;
mod containers;
mod error;
mod extract;
mod limits;
mod listener;
pub mod metric_catalog;
mod ops;
mod reaper;
mod state;
pub mod tenants;
pub mod throughput;
pub mod tokens;
mod workers;

pub use berth_protocol::ReapReport;
pub use error::HttpError;
pub use reaper::{reap_once, spawn_reaper};
pub use state::{AppState, ServerConfig};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// The OpenAPI document of the whole API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "berth",
        description = "berth's HTTP API: submit containers, follow them, run the fleet. Every error is an ErrorBody {code, message, field}."
    ),
    paths(
        containers::submit,
        containers::submit_batch,
        containers::get_named_batch,
        containers::get,
        containers::list,
        containers::cancel,
        containers::logs,
        containers::report,
        workers::list,
        workers::register,
        workers::get,
        workers::drain,
        workers::disable,
        workers::enable,
        workers::deregister,
        workers::heartbeat,
        workers::assignments,
        workers::ack,
        workers::release,
        ops::demand,
        throughput::throughput,
        ops::check,
        ops::openapi,
        ops::metrics,
        ops::healthz,
        ops::readyz,
        tokens::create,
        tokens::list,
        tokens::revoke_one,
        tenants::list,
        tenants::get,
        tenants::put,
        tenants::remove,
    ),
    components(schemas(
        berth_api::ContainerSpec,
        berth_api::GpuSpec,
        berth_api::SubmitResponse,
        berth_api::BatchSubmit,
        berth_api::BatchSubmitResponse,
        berth_api::ContainerView,
        berth_api::ContainerList,
        berth_api::LogsView,
        berth_api::WorkerView,
        berth_api::WorkerList,
        berth_api::RegisterWorker,
        berth_api::WorkerGpu,
        berth_api::DeviceView,
        berth_api::DeviceStateView,
        berth_api::DeviceShareView,
        berth_api::CpuReserveView,
        berth_api::HeartbeatRequest,
        berth_api::HeartbeatResponse,
        berth_api::AssignmentView,
        berth_api::AssignmentList,
        berth_api::ReleaseRequest,
        berth_api::ReleaseResponse,
        berth_api::ReportedState,
        berth_api::StatusReport,
        berth_api::ResourcesView,
        berth_api::PoolDemandView,
        berth_api::DemandView,
        berth_api::ThroughputView,
        berth_api::ThroughputSecond,
        berth_api::ViolationView,
        berth_api::CheckView,
        berth_api::Health,
        berth_api::ErrorBody,
        berth_api::ErrorCode,
        berth_api::NewTokenKind,
        berth_api::CreateToken,
        berth_api::TokenView,
        berth_api::CreatedToken,
        berth_api::TokenList,
        berth_api::Revoked,
        berth_api::QuotaView,
        berth_api::TenantSpec,
        berth_api::UsageView,
        berth_api::TenantView,
        berth_api::TenantList,
    )),
    tags(
        (name = "containers", description = "Submit and follow containers"),
        (name = "workers", description = "The fleet, for operators"),
        (name = "worker protocol", description = "What worker agents call"),
        (name = "operations", description = "Demand, invariants, documentation, metrics, health"),
        (name = "tokens", description = "Who may call: admin, client, join and metrics tokens"),
        (name = "tenants", description = "Tenants' quotas and weights, and what each holds"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every route but `/healthz` and `/readyz` needs.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Installs the process's Prometheus recorder the first time it is called and returns its
/// handle every time. If another recorder was installed already (not through this
/// function), returns the handle of a detached recorder and logs a warning: berth's series
/// then go to that other recorder.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| match builder().install_recorder() {
            Ok(handle) => {
                metric_catalog::describe();
                handle
            }
            Err(error) => {
                tracing::warn!(%error, "a metrics recorder is installed already; /metrics will not show berth's series");
                PrometheusBuilder::new().build_recorder().handle()
            }
        })
        .clone()
}

/// The Prometheus exporter with histogram buckets for every histogram (latencies in
/// seconds, batch counts), so that none is rendered as a summary.
fn builder() -> PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    let with_buckets = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            metric_catalog::SECONDS_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Prefix("berth_batch_".to_owned()),
                metric_catalog::COUNT_BUCKETS,
            )
        });
    match with_buckets {
        Ok(builder) => builder,
        Err(error) => {
            tracing::warn!(%error, "histogram buckets refused; histograms are summaries");
            PrometheusBuilder::new()
        }
    }
}

/// The service's routes, with the body limit, request tracing, panic catching and request
/// metrics.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let head = limits::HeadLimits::of(&state.config);
    let state = Arc::new(state);
    let for_auth = state.clone();
    Router::new()
        .route(
            "/v1/containers",
            post(containers::submit).get(containers::list),
        )
        .route(
            "/v1/containers/batch",
            post(containers::submit_batch).get(containers::get_named_batch),
        )
        .route("/v1/containers/{id}", get(containers::get))
        .route("/v1/containers/{id}/cancel", post(containers::cancel))
        .route("/v1/containers/{id}/logs", get(containers::logs))
        .route("/v1/containers/{id}/status", post(containers::report))
        .route("/v1/workers", get(workers::list).post(workers::register))
        .route(
            "/v1/workers/{id}",
            get(workers::get).delete(workers::deregister),
        )
        .route("/v1/workers/{id}/drain", post(workers::drain))
        .route("/v1/workers/{id}/disable", post(workers::disable))
        .route("/v1/workers/{id}/enable", post(workers::enable))
        .route("/v1/workers/{id}/heartbeat", post(workers::heartbeat))
        .route("/v1/workers/{id}/assignments", get(workers::assignments))
        .route(
            "/v1/workers/{id}/assignments/{delivery}/ack",
            post(workers::ack),
        )
        .route("/v1/workers/{id}/release", post(workers::release))
        .route("/v1/demand", get(ops::demand))
        .route("/v1/throughput", get(throughput::throughput))
        .route("/", get(console::page))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/v1/check", get(ops::check))
        .route("/openapi.json", get(ops::openapi))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke_one))
        .route("/v1/tenants", get(tenants::list))
        .route(
            "/v1/tenants/{name}",
            get(tenants::get).put(tenants::put).delete(tenants::remove),
        )
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            auth::authenticate(for_auth.clone(), request, next)
        }))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |request, next| {
            refuse_oversize(limit, request, next)
        }))
        .layer(middleware::from_fn(move |request, next| {
            limits::refuse_oversize_head(head, request, next)
        }))
        .layer(middleware::from_fn(track))
        .layer(middleware::from_fn(close_after_refusal))
        .layer(CatchPanicLayer::custom(ops::panicked))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Refuses a body declared (`Content-Length`) larger than `limit` with a 413 before any of
/// it is read: the client is not kept waiting while it sends what will be refused, and an
/// `Expect: 100-continue` gets the 413 instead of `100 Continue` (hyper sends that only when
/// the body is first read).
async fn refuse_oversize(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => error::HttpError::new(
            berth_api::ErrorCode::PayloadTooLarge,
            None,
            format!(
                "the body is {length} bytes, more than the {limit} the server accepts; split \
                 the request (e.g. smaller batches)"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Closes the connection after an error answer to a request that carried a body. Such an
/// answer (401, 413, 415, ...) may come before the body is read, and then the connection
/// cannot serve another request; without `Connection: close` a client would keep it in its
/// pool and send its next request into a closing socket.
async fn close_after_refusal(request: Request, next: Next) -> Response {
    use axum::http::{HeaderValue, header};
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0");
    let has_body = declared || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    let refused = response.status().is_client_error() || response.status().is_server_error();
    if has_body && refused {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The method as a metric label: the standard ones by name, any other as `other`, so that
/// made-up methods cannot grow the number of series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every request by route, method and status, and times it.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("berth_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("berth_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves the API on `listener` until `shutdown` completes, with the reaper running. On
/// shutdown, long-polls return at once (empty) and requests in flight finish. A connection
/// that does not send a request's head within `config.header_read_timeout` is closed.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reaper = spawn_reaper(state.clone());
    let token = state.shutdown.clone();
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "berth server listening");
    }
    let config = state.config.clone();
    let app = router(state);
    let on_signal = token.clone();
    // The signal cancels the token, which ends the long-polls and stops the accept loop.
    let on_shutdown = async move {
        tokio::select! {
            () = shutdown => on_signal.cancel(),
            () = on_signal.cancelled() => {}
        }
    };
    tokio::join!(
        on_shutdown,
        listener::run(listener, app, &config, token.clone())
    );
    token.cancel();
    if let Err(error) = reaper.await
        && !error.is_cancelled()
    {
        tracing::error!(%error, "the reaper ended abnormally");
    }
    Ok(())
}
