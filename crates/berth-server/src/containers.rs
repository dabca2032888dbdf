//! The container endpoints: submit (one or a batch), read, list, cancel, logs, and the
//! workers' status reports.

use crate::error::HttpError;
use crate::extract::{JsonBody, PathParams, QueryParams, container_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use berth_api::types::check_attempt;
use berth_api::{
    ApiError, BatchSubmit, BatchSubmitResponse, ContainerList, ContainerSpec, ContainerView,
    ErrorBody, ErrorCode, LogsView, ReportedState, StatusReport, SubmitResponse,
};
use berth_core::{ContainerId, ContainerRequest, UnplacedReason, WorkerId};
use berth_store::{
    AttemptId, ContainerRecord, ContainerState, ReleaseOutcome, SubmitOutcome, Transition,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The most containers in one batch submit.
pub const MAX_BATCH: usize = 10_000;
/// The most containers one listing returns.
pub const MAX_LIST: u64 = 1000;
/// The longest reason a worker may give, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

type Shared = State<Arc<AppState>>;

/// Submits one container.
#[utoipa::path(
    post, path = "/v1/containers", tag = "containers",
    request_body = ContainerSpec,
    responses(
        (status = 202, description = "Accepted: recorded as pending and queued for placement", body = SubmitResponse),
        (status = 200, description = "A container with this id exists already; nothing was written", body = SubmitResponse),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "No worker or pool could ever run it; nothing was written", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): Shared,
    JsonBody(spec): JsonBody<ContainerSpec>,
) -> Result<(StatusCode, Json<SubmitResponse>), HttpError> {
    let request = spec.into_request(state.now_ms(), generated_id()?)?;
    let mut results = accept(&state, vec![request], false).await?;
    let result = results
        .pop()
        .ok_or_else(|| HttpError::internal("the store answered a submit of one with nothing"))?;
    let status = if result.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(result)))
}

/// Submits many containers, all or none.
#[utoipa::path(
    post, path = "/v1/containers/batch", tag = "containers",
    request_body = BatchSubmit,
    responses(
        (status = 202, description = "Accepted (duplicates are reported as such)", body = BatchSubmitResponse),
        (status = 200, description = "Every container existed already; nothing was written", body = BatchSubmitResponse),
        (status = 400, description = "One is malformed (the field names which); nothing was written", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "One can never be placed (the field names which); nothing was written", body = ErrorBody),
    )
)]
pub async fn submit_batch(
    State(state): Shared,
    JsonBody(batch): JsonBody<BatchSubmit>,
) -> Result<(StatusCode, Json<BatchSubmitResponse>), HttpError> {
    if batch.containers.is_empty() {
        return Err(HttpError::invalid("containers", "the batch is empty"));
    }
    if batch.containers.len() > MAX_BATCH {
        return Err(HttpError::invalid(
            "containers",
            format!(
                "the batch has {} containers; the limit is {MAX_BATCH}",
                batch.containers.len()
            ),
        ));
    }
    let now = state.now_ms();
    let mut requests = Vec::with_capacity(batch.containers.len());
    let mut seen = HashSet::new();
    for (index, spec) in batch.containers.into_iter().enumerate() {
        let prefix = format!("containers[{index}]");
        let request = spec
            .into_request(now, generated_id()?)
            .map_err(|e| e.under(&prefix))?;
        if !seen.insert(request.id.clone()) {
            return Err(HttpError::invalid(
                &format!("{prefix}.id"),
                format!("id {} appears twice in the batch", request.id),
            ));
        }
        requests.push(request);
    }
    let results = accept(&state, requests, true).await?;
    let status = if results.iter().all(|r| r.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(BatchSubmitResponse { results })))
}

/// A fresh container id: `c-` and 16 hex digits.
fn generated_id() -> Result<ContainerId, HttpError> {
    ContainerId::new(format!("c-{}", berth_store::new_attempt())).map_err(HttpError::internal)
}

/// Refuses requests no worker or pool could ever run (unless they exist already: then they
/// are duplicates), then submits the rest in one store operation.
async fn accept(
    state: &AppState,
    requests: Vec<ContainerRequest>,
    batch: bool,
) -> Result<Vec<SubmitResponse>, HttpError> {
    let snapshot = state.snapshot().await?;
    let plan = berth_core::plan(&snapshot, &requests);
    let mut existing: Vec<Option<ContainerState>> = vec![None; requests.len()];
    for unplaced in &plan.unplaced {
        let permanent = matches!(
            unplaced.reason,
            UnplacedReason::NeverFits | UnplacedReason::NoMatchingPool | UnplacedReason::Invalid(_)
        );
        if !permanent {
            continue;
        }
        if let Some(record) = state.store.container(&unplaced.container).await? {
            existing[unplaced.request] = Some(record.state);
            continue;
        }
        metrics::counter!("berth_api_submits_total", "outcome" => "unplaceable").increment(1);
        let error = ApiError::new(
            ErrorCode::Unplaceable,
            None,
            format!(
                "container {} can never be placed: {}; nothing was written",
                unplaced.container, unplaced.reason
            ),
        );
        let error = if batch {
            error.under(&format!("containers[{}]", unplaced.request))
        } else {
            error
        };
        return Err(error.into());
    }
    let mut results: Vec<Option<SubmitResponse>> = vec![None; requests.len()];
    let mut fresh = Vec::with_capacity(requests.len());
    let mut fresh_at = Vec::with_capacity(requests.len());
    for (index, (request, existing)) in requests.into_iter().zip(existing).enumerate() {
        match existing {
            Some(state) => {
                results[index] = Some(response(&request.id, &SubmitOutcome::Duplicate(state)))
            }
            None => {
                fresh_at.push(index);
                fresh.push(request);
            }
        }
    }
    let outcomes = if fresh.is_empty() {
        Vec::new()
    } else {
        state.store.submit(&fresh).await?
    };
    if outcomes.len() != fresh.len() {
        return Err(HttpError::internal(format!(
            "the store answered {} outcomes for {} requests",
            outcomes.len(),
            fresh.len()
        )));
    }
    for ((index, request), outcome) in fresh_at.into_iter().zip(&fresh).zip(&outcomes) {
        results[index] = Some(response(&request.id, outcome));
    }
    results
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| HttpError::internal("a submitted container got no outcome"))
}

/// The answer for one submitted container, counted in the metrics.
fn response(id: &ContainerId, outcome: &SubmitOutcome) -> SubmitResponse {
    let (state, duplicate) = match outcome {
        SubmitOutcome::Accepted => (ContainerState::Pending, false),
        SubmitOutcome::Duplicate(state) => (*state, true),
    };
    let label = if duplicate { "duplicate" } else { "accepted" };
    metrics::counter!("berth_api_submits_total", "outcome" => label).increment(1);
    SubmitResponse {
        id: id.clone(),
        state,
        duplicate,
    }
}

/// One container; with `wait_ms`, once it has left `pending` (placed, failed or cancelled)
/// or after that long (capped by the long-poll limit), whichever comes first: a client
/// learns of its placement without polling.
#[utoipa::path(
    get, path = "/v1/containers/{id}", tag = "containers",
    params(
        ("id" = String, Path, description = "The container's id"),
        ("wait_ms" = Option<u64>, Query, description = "Wait up to this long (ms) while it is pending"),
    ),
    responses(
        (status = 200, body = ContainerView),
        (status = 400, description = "Malformed id or parameter", body = ErrorBody),
        (status = 404, description = "Unknown container", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): Shared,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<ContainerView>, HttpError> {
    let id = container_id(&id)?;
    query.only(&["wait_ms"])?;
    let wait_ms = query.number("wait_ms", 0, 0, u64::MAX)?;
    let wait = Duration::from_millis(wait_ms).min(state.config.long_poll_max);
    let record = if wait.is_zero() {
        read(&state, &id).await?
    } else {
        read_when_not_pending(&state, &id, wait).await?
    };
    Ok(Json(ContainerView::from(&record)))
}

/// The record once it is no longer pending, or as it is after `wait`. The engine's ticket
/// is taken before the first read, so a settlement between the read and the wait is not
/// missed; placements by other replicas are found by the ticket's reads of the store.
async fn read_when_not_pending(
    state: &AppState,
    id: &ContainerId,
    wait: Duration,
) -> Result<ContainerRecord, HttpError> {
    let ticket = state.engine.watch(id);
    let record = read(state, id).await?;
    if record.state != ContainerState::Pending {
        return Ok(record);
    }
    tokio::select! {
        _ = tokio::time::timeout(wait, ticket.outcome()) => {}
        () = state.shutdown.cancelled() => {}
    }
    read(state, id).await
}

/// `GET /v1/containers/batch`: the container whose id is `batch` (the static batch route
/// would otherwise shadow it for GET).
pub async fn get_named_batch(
    state: Shared,
    query: QueryParams,
) -> Result<Json<ContainerView>, HttpError> {
    get(state, PathParams("batch".to_owned()), query).await
}

async fn read(state: &AppState, id: &ContainerId) -> Result<ContainerRecord, HttpError> {
    state
        .store
        .container(id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("container {id} is not known")))
}

/// The newest containers, optionally only those in one state.
#[utoipa::path(
    get, path = "/v1/containers", tag = "containers",
    params(
        ("state" = Option<String>, Query, description = "pending, scheduled, running, exited, failed or lost"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, body = ContainerList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): Shared,
    query: QueryParams,
) -> Result<Json<ContainerList>, HttpError> {
    query.only(&["state", "limit"])?;
    let wanted = match query.get("state") {
        None => None,
        Some(raw) => Some(ContainerState::parse(raw).ok_or_else(|| {
            HttpError::invalid(
                "state",
                format!(
                    "unknown state {raw:?}; expected pending, scheduled, running, exited, failed or lost"
                ),
            )
        })?),
    };
    let limit = query.number("limit", 100, 1, MAX_LIST)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let records = state.store.containers(wanted, limit).await?;
    Ok(Json(ContainerList {
        containers: records.iter().map(ContainerView::from).collect(),
    }))
}

/// Asks for a container to stop: a pending one fails at once (reason `cancelled`); a
/// scheduled or running one is flagged and its worker stops it; an ended one is unchanged.
#[utoipa::path(
    post, path = "/v1/containers/{id}/cancel", tag = "containers",
    params(("id" = String, Path, description = "The container's id")),
    responses(
        (status = 200, description = "The container after the request", body = ContainerView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown container", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<ContainerView>, HttpError> {
    let id = container_id(&id)?;
    let record = state.store.cancel(&id).await?;
    Ok(Json(ContainerView::from(&record)))
}

/// A container's kept output.
#[utoipa::path(
    get, path = "/v1/containers/{id}/logs", tag = "containers",
    params(("id" = String, Path, description = "The container's id")),
    responses(
        (status = 200, body = LogsView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown container", body = ErrorBody),
    )
)]
pub async fn logs(
    State(state): Shared,
    PathParams(id): PathParams<String>,
) -> Result<Json<LogsView>, HttpError> {
    let id = container_id(&id)?;
    read(&state, &id).await?;
    let lines = state.store.logs(&id).await?;
    Ok(Json(LogsView { id, lines }))
}

/// A worker's report on a container it holds: `running`, `exited` (with `exit_code`) or
/// `failed` (with `reason`). `exited` and `failed` append the logs and give the capacity
/// back. A report by a worker or attempt that does not hold the container is refused with
/// 409 and changes nothing.
#[utoipa::path(
    post, path = "/v1/containers/{id}/status", tag = "worker protocol",
    params(("id" = String, Path, description = "The container's id")),
    request_body = StatusReport,
    responses(
        (status = 200, description = "The container after the report", body = ContainerView),
        (status = 400, description = "Malformed", body = ErrorBody),
        (status = 404, description = "Unknown container or worker", body = ErrorBody),
        (status = 409, description = "The worker and attempt do not hold it, or it cannot move so", body = ErrorBody),
    )
)]
pub async fn report(
    State(state): Shared,
    PathParams(id): PathParams<String>,
    JsonBody(report): JsonBody<StatusReport>,
) -> Result<Json<ContainerView>, HttpError> {
    let id = container_id(&id)?;
    check_attempt("attempt", &report.attempt)?;
    if let Some(reason) = &report.reason
        && (reason.len() > MAX_REASON_LEN || reason.contains('\0'))
    {
        return Err(HttpError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_LEN} bytes without NUL characters"),
        ));
    }
    if report.exit_code.is_some() && report.state != ReportedState::Exited {
        return Err(HttpError::invalid(
            "exit_code",
            "an exit code goes only with state exited",
        ));
    }
    if report.state == ReportedState::Exited && report.exit_code.is_none() {
        return Err(HttpError::invalid(
            "exit_code",
            "state exited needs an exit code",
        ));
    }
    let (worker, attempt) = (&report.worker, &report.attempt);
    fence(&state, worker, report.epoch).await?;
    let record = read(&state, &id).await?;
    let record = match report.state {
        ReportedState::Running => {
            let record = start(&state, &id, record, worker, attempt).await?;
            if record.state != ContainerState::Running {
                return Err(HttpError::conflict(format!(
                    "container {id} is {} and cannot run any more{}; stop it",
                    record.state,
                    record
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )));
            }
            if !holds(&record, worker, attempt) {
                return Err(not_holder(&record, worker, attempt));
            }
            record
        }
        ReportedState::Exited => {
            let exit_code = report.exit_code.unwrap_or_default();
            start(&state, &id, record, worker, attempt).await?;
            let exited = Transition::Exited {
                worker: worker.clone(),
                attempt: attempt.clone(),
                exit_code,
            };
            state.store.transition(&id, &exited).await?
        }
        ReportedState::Failed => {
            if !holds(&record, worker, attempt) {
                return Err(not_holder(&record, worker, attempt));
            }
            let reason = report
                .reason
                .clone()
                .unwrap_or_else(|| format!("failed on worker {worker}"));
            state
                .store
                .transition(&id, &Transition::Failed { reason })
                .await?
        }
    };
    if !report.logs.is_empty() {
        state
            .store
            .append_logs(&id, &report.logs, state.config.log_lines_kept)
            .await?;
    }
    if report.state != ReportedState::Running && record.state.is_terminal() {
        let epoch = Some(report.epoch);
        let released = state
            .store
            .release(worker, &id, Some(attempt), epoch)
            .await?;
        if matches!(released, ReleaseOutcome::Released { .. }) {
            state.engine.capacity_changed(worker);
            wake_deferred(&state).await;
        }
    }
    Ok(Json(ContainerView::from(&record)))
}

/// Moves a container held by `worker` and `attempt` to running (from scheduled, or from
/// pending when the worker holds a reservation its scheduler replica died before settling;
/// the store refuses a worker or attempt that does not hold it). A running or ended record
/// is returned as it is, for the caller to judge.
async fn start(
    state: &AppState,
    id: &ContainerId,
    record: ContainerRecord,
    worker: &WorkerId,
    attempt: &AttemptId,
) -> Result<ContainerRecord, HttpError> {
    let mut record = record;
    if record.state == ContainerState::Pending {
        let owned = state.store.owned(worker).await?;
        let holds = owned
            .iter()
            .any(|o| o.container == *id && o.attempt == *attempt);
        if !holds {
            return Err(not_holder(&record, worker, attempt));
        }
        let adopt = Transition::Scheduled {
            worker: worker.clone(),
            attempt: attempt.clone(),
        };
        record = state.store.transition(id, &adopt).await?;
    }
    if record.state == ContainerState::Scheduled {
        let running = Transition::Running {
            worker: worker.clone(),
            attempt: attempt.clone(),
        };
        record = state.store.transition(id, &running).await?;
    }
    Ok(record)
}

/// How many deferred requests a release wakes.
pub const WAKE_ON_RELEASE: usize = 4;

/// Far enough ahead to cover any backoff: [`wake_deferred`] takes the earliest due
/// whatever their due time.
const WAKE_HORIZON_MS: u64 = 24 * 60 * 60 * 1000;

/// Capacity was given back: moves the [`WAKE_ON_RELEASE`] earliest deferred requests to the
/// intake now instead of at the end of their backoff, so that they are planned (older
/// first, within a priority) alongside the fresh requests that would otherwise take the
/// room before them, again and again under a steady load. This replica's engine was told to
/// read the worker again; another replica that claims them sees the room once its cache is
/// older than its `recheck_before_defer`. A request that still does not fit is deferred
/// again. A failure only delays them to their due time.
async fn wake_deferred(state: &AppState) {
    let horizon = state.now_ms().saturating_add(WAKE_HORIZON_MS);
    match state.store.promote_due(horizon, WAKE_ON_RELEASE).await {
        Ok(woken) if woken > 0 => {
            metrics::counter!("berth_deferred_woken_total").increment(woken as u64);
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "waking deferred requests after a release failed"),
    }
}

/// Refuses a report from a worker that is not registered under `epoch` (409
/// `stale_epoch`). A read before the report's steps: what fences the record itself is the
/// attempt, checked atomically by each transition, and the final release is fenced again
/// atomically.
async fn fence(state: &AppState, worker: &WorkerId, epoch: u64) -> Result<(), HttpError> {
    let registered = state
        .store
        .worker(worker)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("worker {worker} is not registered")))?;
    Ok(berth_store::fence(&registered, epoch)?)
}

fn holds(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> bool {
    record.worker.as_ref() == Some(worker) && record.attempt.as_ref() == Some(attempt)
}

fn not_holder(record: &ContainerRecord, worker: &WorkerId, attempt: &AttemptId) -> HttpError {
    let holder = match (&record.worker, &record.attempt) {
        (Some(w), Some(a)) => format!("worker {w} attempt {a}"),
        _ => "no worker".to_owned(),
    };
    HttpError::conflict(format!(
        "worker {worker} attempt {attempt} does not hold container {} (it is {}, held by {holder}); release the reservation instead",
        record.request.id, record.state
    ))
}
