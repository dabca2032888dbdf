//! The fake server behind HTTP: the worker-facing endpoints of the real server, with its
//! JSON bodies (berth-api's types) and status codes, on a loopback port.

use super::fake::FakeServer;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use berth_agent::{ControlError, Registration, ReportedState, StatusReport};
use berth_api as api;
use berth_core::{
    ContainerId, GpuType, PlacementPolicy, PoolName, Resources, RuntimeName, WorkerId, WorkerStatus,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Shared = State<Arc<FakeServer>>;

/// An error answer, as the real server gives it.
struct Failure(ControlError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            ControlError::Conflict(_) => (StatusCode::CONFLICT, api::ErrorCode::Conflict),
            ControlError::StaleEpoch(_) => (StatusCode::CONFLICT, api::ErrorCode::StaleEpoch),
            ControlError::NotFound(_) => (StatusCode::NOT_FOUND, api::ErrorCode::NotFound),
            ControlError::Refused { .. } => {
                (StatusCode::BAD_REQUEST, api::ErrorCode::InvalidArgument)
            }
            ControlError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, api::ErrorCode::Unavailable)
            }
        };
        let body = api::ErrorBody {
            code,
            message: self.0.to_string(),
            field: None,
        };
        (status, Json(body)).into_response()
    }
}

impl From<ControlError> for Failure {
    fn from(err: ControlError) -> Failure {
        Failure(err)
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(ControlError::Refused {
        status: 400,
        message: message.into(),
    })
}

fn worker_id(id: &str) -> Result<WorkerId, Failure> {
    WorkerId::new(id).map_err(|e| bad(e.to_string()))
}

/// Serves `server` on a loopback port until `stop` fires; returns the base URL.
pub async fn serve(server: Arc<FakeServer>, stop: CancellationToken) -> String {
    let app = Router::new()
        .route("/v1/workers", post(register))
        .route("/v1/workers/{id}", delete(deregister))
        .route("/v1/workers/{id}/heartbeat", post(heartbeat))
        .route("/v1/workers/{id}/assignments", get(assignments))
        .route("/v1/workers/{id}/assignments/{delivery}/ack", post(ack))
        .route("/v1/workers/{id}/release", post(release))
        .route("/v1/containers/{id}/status", post(report))
        .with_state(server);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    base
}

async fn register(
    State(server): Shared,
    Json(body): Json<api::RegisterWorker>,
) -> Result<Json<api::Registered>, Failure> {
    let pool = PoolName::new(body.pool.as_str()).map_err(|e| bad(e.to_string()))?;
    let gpu_type = match &body.gpu {
        Some(gpu) => Some(
            gpu.gpu_type
                .parse::<GpuType>()
                .map_err(|e| bad(e.to_string()))?,
        ),
        None => None,
    };
    let total = Resources::new(
        body.cpu_millicores,
        body.memory_mib,
        body.gpu.as_ref().map_or(0, |g| g.count),
    );
    // The real server takes a missing runtime as `process` (older agents); this agent always
    // states it, so the fake insists.
    let runtime = body
        .runtime
        .as_deref()
        .ok_or_else(|| bad("the registration states no runtime".to_owned()))?
        .parse::<RuntimeName>()
        .map_err(|e| bad(e.to_string()))?;
    let registration = Registration {
        devices: Vec::new(),
        worker: body.id.clone(),
        pool: pool.clone(),
        total,
        gpu_type: gpu_type.clone(),
        runtime: runtime.clone(),
        images: body.images.clone().unwrap_or_default(),
    };
    let lease = server.register(&registration)?;
    let worker = api::WorkerView {
        gpus: Vec::new(),
        id: body.id,
        pool,
        pool_priority: 0,
        preemptible: false,
        requires_pool_selector: false,
        policy: PlacementPolicy::Spread,
        cpu_on_gpu: None,
        status: WorkerStatus::Available,
        total: total.into(),
        free: total.into(),
        gpu_type: gpu_type.map(|t| t.to_string()),
        runtime,
        version: 1,
        epoch: lease.epoch,
        last_heartbeat_ms: None,
        heartbeat_age_ms: None,
        images: Vec::new(),
    };
    let owned = lease
        .owned
        .into_iter()
        .map(|(container, attempt)| api::OwnedView {
            container,
            attempt,
            devices: Vec::new(),
        })
        .collect();
    Ok(Json(api::Registered {
        credential: None,
        worker,
        owned,
        on_unhealthy_gpus: Vec::new(),
    }))
}

async fn deregister(State(server): Shared, Path(id): Path<String>) -> Result<StatusCode, Failure> {
    server.deregister(&worker_id(&id)?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn heartbeat(
    State(server): Shared,
    Path(id): Path<String>,
    Json(body): Json<api::HeartbeatRequest>,
) -> Result<Json<api::HeartbeatResponse>, Failure> {
    let reply = server.heartbeat(
        &worker_id(&id)?,
        body.epoch,
        &body.running,
        body.images.as_deref(),
    )?;
    let status = if reply.lost {
        WorkerStatus::Lost
    } else {
        WorkerStatus::Available
    };
    Ok(Json(api::HeartbeatResponse {
        cancel: reply.cancel,
        stop: reply.stop,
        status,
    }))
}

async fn assignments(
    State(server): Shared,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api::AssignmentList>, Failure> {
    let number = |key: &str, default: u64| -> Result<u64, Failure> {
        query.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| bad(format!("bad {key}")))
        })
    };
    let max = u32::try_from(number("max", 16)?).map_err(|_| bad("max"))?;
    let wait = Duration::from_millis(number("wait_ms", 0)?).min(Duration::from_secs(30));
    let epoch = query
        .get("epoch")
        .ok_or_else(|| bad("epoch is required"))?
        .parse()
        .map_err(|_| bad("bad epoch"))?;
    let deliveries = server
        .assignments(&worker_id(&id)?, epoch, max, wait)
        .await?;
    let assignments = deliveries
        .into_iter()
        .map(|d| api::AssignmentView {
            devices: Vec::new(),
            delivery: d.id,
            container: d.container,
            attempt: d.attempt,
            resources: d.resources.into(),
            image: d.payload.image,
            command: d.payload.command,
            env: d.payload.env,
            secret_env: d.payload.secret_env,
            timeout_secs: d.timeout.map(|t| t.as_secs()),
            preempts: d.preempts,
        })
        .collect();
    Ok(Json(api::AssignmentList { assignments }))
}

async fn ack(
    State(server): Shared,
    Path((id, delivery)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<StatusCode, Failure> {
    let epoch = query
        .get("epoch")
        .ok_or_else(|| bad("epoch is required"))?
        .parse()
        .map_err(|_| bad("bad epoch"))?;
    server.ack(&worker_id(&id)?, epoch, &delivery)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn release(
    State(server): Shared,
    Path(id): Path<String>,
    Json(body): Json<api::ReleaseRequest>,
) -> Result<Json<api::ReleaseResponse>, Failure> {
    let released = server.release(&worker_id(&id)?, body.epoch, &body.container, &body.attempt)?;
    Ok(Json(api::ReleaseResponse { released }))
}

async fn report(
    State(server): Shared,
    Path(id): Path<String>,
    Json(body): Json<api::StatusReport>,
) -> Result<Json<api::ContainerView>, Failure> {
    let container = ContainerId::new(id).map_err(|e| bad(e.to_string()))?;
    let state = match (body.state, body.exit_code, body.reason) {
        (api::ReportedState::Running, None, None) => ReportedState::Running,
        (api::ReportedState::Exited, Some(exit_code), None) => ReportedState::Exited { exit_code },
        (api::ReportedState::Failed, None, reason) => ReportedState::Failed {
            reason: reason.unwrap_or_default(),
        },
        _ => {
            return Err(bad(
                "exit_code goes with exited only, reason with failed only",
            ));
        }
    };
    let report = StatusReport {
        worker: body.worker,
        attempt: body.attempt,
        epoch: body.epoch,
        state,
        logs: body.logs,
    };
    server.report(&container, &report)?;
    let record = server
        .record(container.as_str())
        .ok_or_else(|| Failure(ControlError::NotFound(container.to_string())))?;
    Ok(Json(api::ContainerView {
        id: container,
        tenant: "test".into(),
        state: record.state,
        worker: Some(record.worker),
        attempt: Some(record.attempt),
        resources: Resources::new(100, 64, 0).into(),
        gpu: None,
        pool: None,
        priority: 0,
        preemptible: false,
        submitted_at_ms: 0,
        scheduled_at_ms: None,
        started_at_ms: None,
        finished_at_ms: None,
        exit_code: record.exit_code,
        reason: record.reason,
        deferrals: 0,
        cancel_requested: record.cancel,
        image: None,
        command: Vec::new(),
        timeout_secs: None,
        fallback: Vec::new(),
        max_retries: 0,
        retries: 0,
        preempted_at_ms: None,
    }))
}
