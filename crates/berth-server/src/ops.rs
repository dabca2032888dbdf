//! Operator endpoints: unmet demand, the invariant check, the OpenAPI document, metrics,
//! health and readiness, and the JSON answers for unknown routes and methods.

use crate::error::HttpError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use berth_api::{
    CheckView, DemandView, ErrorBody, ErrorCode, Health, PoolDemandView, ViolationView,
};
use berth_store::CheckOptions;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use utoipa::OpenApi;

type Shared = State<Arc<AppState>>;

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The requests waiting in the backlog for room, summed per pool that would have to grow.
#[utoipa::path(
    get, path = "/v1/demand", tag = "operations",
    responses((status = 200, body = DemandView))
)]
pub async fn demand(State(state): Shared) -> Result<Json<DemandView>, HttpError> {
    let demand = state.store.unmet_demand().await?;
    Ok(Json(DemandView {
        pools: demand.iter().map(PoolDemandView::from).collect(),
    }))
}

/// Checks every invariant of the store (capacity accounting, ownership, no leaks, live
/// owners, assignment queues, the intake and the backlog) at this server's clock. A worker
/// counts as dead after twice the heartbeat timeout plus twice the reaper interval of
/// silence: by then the reaper has declared it lost and given back what it owned.
#[utoipa::path(
    get, path = "/v1/check", tag = "operations",
    responses((status = 200, description = "The violations; empty when every invariant holds", body = CheckView))
)]
pub async fn check(State(state): Shared) -> Result<Json<CheckView>, HttpError> {
    let dead_after = state.config.check_dead_after();
    let options = CheckOptions::at(state.now_ms(), dead_after).with_in_flight(dead_after);
    let violations = state.store.check(options).await?;
    Ok(Json(CheckView {
        violations: violations.iter().map(ViolationView::from).collect(),
    }))
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        crate::ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
}

/// Prometheus metrics of this process (the `berth_` series).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"))
)]
pub async fn metrics(State(state): Shared) -> impl IntoResponse {
    if let Ok(depth) = state.store.backlog_len().await {
        metrics::gauge!("berth_backlog_depth").set(depth as f64);
    }
    // Read here rather than in the engine loop: one O(1) read per scrape, none when no one
    // scrapes, and the value is as fresh as the scrape. A failed read keeps the last value
    // (the scrape still answers).
    match state.store.intake_len().await {
        Ok(depth) => metrics::gauge!("berth_intake_depth").set(depth as f64),
        Err(error) => tracing::debug!(%error, "reading the intake depth for /metrics failed"),
    }
    metrics::gauge!("berth_up").set(1.0);
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The server is up.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// The server can reach its store.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): Shared) -> Result<Json<Health>, HttpError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.backlog_len()).await {
        Ok(Ok(_)) => Ok(Json(Health {
            status: "ready".to_owned(),
        })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the store failed");
            Err(unavailable())
        }
        Err(_elapsed) => {
            tracing::warn!("readiness: the store did not answer in time");
            Err(unavailable())
        }
    }
}

fn unavailable() -> HttpError {
    HttpError::new(
        ErrorCode::Unavailable,
        None,
        "the server cannot reach its store",
    )
}

/// Unknown routes.
pub async fn not_found() -> HttpError {
    HttpError::not_found("no such endpoint; see /openapi.json for the API")
}

/// Known routes with another method.
pub async fn method_not_allowed() -> HttpError {
    HttpError::new(
        ErrorCode::MethodNotAllowed,
        None,
        "this endpoint does not take this method; see /openapi.json",
    )
}

/// The answer to a handler that panicked (a bug): a generic 500.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    let mut response = HttpError::internal(format!("handler panicked: {detail}")).into_response();
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
