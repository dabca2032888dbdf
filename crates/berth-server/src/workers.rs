//! The worker endpoints: the operators' (list, one worker, drain, disable, enable, remove) and the
//! worker agents' protocol (register, heartbeat, long-poll assignments, acknowledge,
//! release). Each parses, calls [`berth_protocol::Protocol`] and maps its answer.

use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{JsonBody, PathParams, QueryParams, worker_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_api::types::check_attempt;
use berth_api::{
    AssignmentList, AssignmentView, ErrorBody, HeartbeatRequest, HeartbeatResponse, OwnedView,
    RegisterWorker, Registered, ReleaseRequest, ReleaseResponse, WorkerDetail, WorkerList,
    WorkerView,
};
use berth_core::{Role, WorkerId, WorkerStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The most assignments one long-poll returns.
pub const MAX_ASSIGNMENTS: u64 = 1000;

type Shared = State<Arc<AppState>>;

/// Every registered worker with its last heartbeat, and the quarantined ones (whose stored
/// record does not read back: left out of scheduling, each with what is wrong).
#[utoipa::path(
    get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = WorkerList))
)]
pub async fn list(State(state): Shared) -> Result<Json<WorkerList>, HttpError> {
    let beats: HashMap<WorkerId, u64> = state.store.heartbeats().await?.into_iter().collect();
    let (mut workers, quarantined) = state.store.fleet().await?;
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let now = state.now_ms();
    Ok(Json(WorkerList {
        quarantined: quarantined
            .iter()
            .map(berth_api::ViolationView::from)
            .collect(),
        workers: workers
            .iter()
            .map(|w| WorkerView::new(w, beats.get(&w.id).copied(), now))
            .collect(),
    }))
}

/// Registers a worker, or updates a registered one. A drained or disabled worker keeps its
/// status. Counts as a heartbeat. Every registration starts a new epoch (the answer's
/// `worker.epoch`), which the worker's later calls carry; it lists what the worker owns,
/// so a worker that comes back after it was presumed dead knows what it may keep running.
#[utoipa::path(
    post, path = "/v1/workers", tag = "worker protocol",
    request_body = RegisterWorker,
    responses(
        (status = 200, description = "Registered", body = Registered),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 409, description = "The new capacity is below what is reserved on it", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): Shared,
    caller: Caller,
    JsonBody(register): JsonBody<RegisterWorker>,
) -> Result<Json<Registered>, HttpError> {
    let registration = register.resolve(&state.pools)?;
    may_register(&state, &caller, &registration.id).await?;
    let id = registration.id.clone();
    let images = register.images.as_deref().unwrap_or_default();
    let registered = state.protocol.register(registration, images).await?;
    let credential = match caller.role {
        Role::Worker { .. } => None,
        _ => Some(
            crate::tokens::issue_worker_credential(&state, &id)
                .await?
                .expose(),
        ),
    };
    let now = registered.at_ms;
    Ok(Json(Registered {
        worker: WorkerView::new(&registered.worker, Some(now), now),
        owned: registered.owned.into_iter().map(OwnedView::from).collect(),
        on_unhealthy_gpus: registered.on_unhealthy_gpus,
        credential,
    }))
}

/// Refuses (403) a registration `caller` may not make: a worker's credential registers only
/// its own worker; a join token registers a new worker, or one declared lost, but never
/// takes over a live worker's id (its agent registers again with its own credential).
async fn may_register(state: &AppState, caller: &Caller, id: &WorkerId) -> Result<(), HttpError> {
    caller.acts_for(id)?;
    if caller.role != Role::Join {
        return Ok(());
    }
    match state.store.worker(id).await? {
        Some(existing) if existing.status != WorkerStatus::Lost => {
            Err(HttpError::forbidden(format!(
                "worker {id} is registered and {}: its agent registers again with its own \
                 credential; a join token registers only new or lost workers (an admin may \
                 remove it first)",
                existing.status
            )))
        }
        _ => Ok(()),
    }
}

/// One worker with the containers it owns and the GPU devices each holds (e.g. to see who
/// is on a device its worker reports unhealthy).
#[utoipa::path(
    get, path = "/v1/workers/{id}", tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    responses(
        (status = 200, body = WorkerDetail),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<WorkerDetail>, HttpError> {
    let id = worker_id(&id)?;
    let Some((worker, last, mut owned)) = state.protocol.worker_detail(&id).await? else {
        return Err(HttpError::not_found(format!(
            "no worker {id} is registered"
        )));
    };
    owned.sort_by(|a, b| a.container.cmp(&b.container));
    Ok(Json(WorkerDetail {
        worker: WorkerView::new(&worker, last, state.now_ms()),
        owned: owned.into_iter().map(OwnedView::from).collect(),
    }))
}

async fn set_status(
    state: &AppState,
    id: &str,
    status: WorkerStatus,
) -> Result<Json<WorkerView>, HttpError> {
    let id = worker_id(id)?;
    let (worker, last) = state.protocol.set_status(&id, status).await?;
    Ok(Json(WorkerView::new(&worker, last, state.now_ms())))
}

/// The worker takes no new containers; those it runs finish.
#[utoipa::path(
    post, path = "/v1/workers/{id}/drain", tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    responses(
        (status = 200, body = WorkerView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
    )
)]
pub async fn drain(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<WorkerView>, HttpError> {
    set_status(&state, &id, WorkerStatus::Draining).await
}

/// The worker takes no new containers (switched off by an operator).
#[utoipa::path(
    post, path = "/v1/workers/{id}/disable", tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    responses(
        (status = 200, body = WorkerView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
    )
)]
pub async fn disable(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<WorkerView>, HttpError> {
    set_status(&state, &id, WorkerStatus::Disabled).await
}

/// The worker takes containers again.
#[utoipa::path(
    post, path = "/v1/workers/{id}/enable", tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    responses(
        (status = 200, body = WorkerView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
    )
)]
pub async fn enable(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<WorkerView>, HttpError> {
    set_status(&state, &id, WorkerStatus::Available).await
}

/// Removes a worker that owns nothing (drain it and wait for its containers to end first).
#[utoipa::path(
    delete, path = "/v1/workers/{id}", tag = "workers",
    params(("id" = String, Path, description = "The worker's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
        (status = 409, description = "It still owns containers", body = ErrorBody),
    )
)]
pub async fn deregister(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, HttpError> {
    let id = worker_id(&id)?;
    state.protocol.deregister(&id).await?;
    crate::tokens::revoke_worker_credentials(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The worker is alive; answers which of its running containers to stop (cancelled, or not
/// owned by it any more) and its status. Reconciles the store with what the worker runs
/// (see `stop` and the reconciliation rules in ARCHITECTURE.md). A stale epoch is refused
/// with 409 `stale_epoch`: register again.
#[utoipa::path(
    post, path = "/v1/workers/{id}/heartbeat", tag = "worker protocol",
    params(("id" = String, Path, description = "The worker's id")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, body = HeartbeatResponse),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 404, description = "Unknown worker: register first", body = ErrorBody),
        (status = 409, description = "Stale epoch: register again", body = ErrorBody),
    )
)]
pub async fn heartbeat(
    State(state): Shared,
    PathParams(id): PathParams<String>,
    JsonBody(beat): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, HttpError> {
    let id = worker_id(&id)?;
    let beat = state
        .protocol
        .heartbeat(&id, beat.epoch, &beat.running, beat.images.as_deref())
        .await?;
    Ok(Json(HeartbeatResponse {
        cancel: beat.cancel,
        stop: beat.stop,
        status: beat.status,
    }))
}

/// The worker's next assignments, waiting up to `wait_ms` (capped by the server) for one
/// to arrive. Unacknowledged deliveries come again after the redelivery timeout.
#[utoipa::path(
    get, path = "/v1/workers/{id}/assignments", tag = "worker protocol",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("epoch" = u64, Query, description = "The epoch the worker registered under"),
        ("max" = Option<u64>, Query, description = "At most this many (default 16, 1 to 1000)"),
        ("wait_ms" = Option<u64>, Query, description = "Wait up to this long for one (default 0; capped by the server, 30 s by default)"),
    ),
    responses(
        (status = 200, body = AssignmentList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
        (status = 409, description = "Stale epoch: register again", body = ErrorBody),
    )
)]
pub async fn assignments(
    State(state): Shared,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<AssignmentList>, HttpError> {
    let id = worker_id(&id)?;
    query.only(&["epoch", "max", "wait_ms"])?;
    let epoch = query.required("epoch", 0, u64::MAX)?;
    let max = query.number("max", 16, 1, MAX_ASSIGNMENTS)?;
    let wait_ms = query.number("wait_ms", 0, 0, QueryParams::MAX_INTEGER)?;
    let wait = Duration::from_millis(wait_ms).min(state.config.long_poll_max);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let delivered = tokio::select! {
        delivered = state.protocol.assignments(&id, epoch, max, wait) => delivered?,
        () = state.shutdown.cancelled() => Vec::new(),
    };
    Ok(Json(AssignmentList {
        assignments: delivered.iter().map(AssignmentView::from).collect(),
    }))
}

/// Acknowledges a delivery: it will not come again.
#[utoipa::path(
    post, path = "/v1/workers/{id}/assignments/{delivery}/ack", tag = "worker protocol",
    params(
        ("id" = String, Path, description = "The worker's id"),
        ("delivery" = String, Path, description = "The delivery's id"),
        ("epoch" = u64, Query, description = "The epoch the worker registered under"),
    ),
    responses(
        (status = 204, description = "Acknowledged"),
        (status = 400, description = "Malformed id or epoch", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
        (status = 409, description = "Stale epoch: register again", body = ErrorBody),
    )
)]
pub async fn ack(
    State(state): Shared,
    PathParams((id, delivery)): PathParams<(String, String)>,
    query: QueryParams,
) -> Result<StatusCode, HttpError> {
    let id = worker_id(&id)?;
    query.only(&["epoch"])?;
    let epoch = query.required("epoch", 0, u64::MAX)?;
    state.protocol.ack(&id, epoch, &delivery).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives back a reservation the worker will not run (its container's record names another
/// worker or attempt). Idempotent.
#[utoipa::path(
    post, path = "/v1/workers/{id}/release", tag = "worker protocol",
    params(("id" = String, Path, description = "The worker's id")),
    request_body = ReleaseRequest,
    responses(
        (status = 200, body = ReleaseResponse),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 404, description = "Unknown worker", body = ErrorBody),
        (status = 409, description = "The container's record is held by this worker and attempt: report its status instead; or a stale epoch", body = ErrorBody),
    )
)]
pub async fn release(
    State(state): Shared,
    PathParams(id): PathParams<String>,
    JsonBody(release): JsonBody<ReleaseRequest>,
) -> Result<Json<ReleaseResponse>, HttpError> {
    let id = worker_id(&id)?;
    check_attempt("attempt", &release.attempt)?;
    let (container, attempt) = (&release.container, &release.attempt);
    let released = state
        .protocol
        .release(&id, container, attempt, release.epoch)
        .await?;
    Ok(Json(ReleaseResponse { released }))
}
