//! The container endpoints: submit (one or a batch), read, list, cancel, logs, and the
//! workers' status reports.

use crate::auth::Caller;
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
use berth_core::{ContainerId, ContainerRequest};
use berth_protocol::{ProtocolError, Report, ReportKind, Reported};
use berth_store::{ContainerRecord, ContainerState, SubmitOutcome};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The most containers in one batch submit.
pub const MAX_BATCH: usize = 10_000;
/// The most containers one listing returns.
pub const MAX_LIST: u64 = 1000;

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
    caller: Caller,
    JsonBody(spec): JsonBody<ContainerSpec>,
) -> Result<(StatusCode, Json<SubmitResponse>), HttpError> {
    let spec = for_tenant(&caller, spec, "tenant")?;
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
    caller: Caller,
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
        let spec = for_tenant(&caller, spec, &format!("{prefix}.tenant"))?;
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
/// The spec as `caller` may submit it: a client's containers are its tenant's (a spec that
/// names no tenant gets it; one naming another tenant is refused).
fn for_tenant(
    caller: &Caller,
    mut spec: ContainerSpec,
    field: &str,
) -> Result<ContainerSpec, HttpError> {
    let Some(own) = caller.tenant() else {
        return Ok(spec);
    };
    if spec.tenant != own.as_str() && spec.tenant != ContainerSpec::DEFAULT_TENANT {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            Some(field),
            format!(
                "this token submits for tenant {own}, not {}; drop the tenant or use a token of that tenant",
                spec.tenant
            ),
        ));
    }
    spec.tenant = own.to_string();
    Ok(spec)
}

fn generated_id() -> Result<ContainerId, HttpError> {
    ContainerId::new(format!("c-{}", berth_store::new_attempt())).map_err(HttpError::internal)
}

/// Submits `requests` through the protocol's admission; in a batch, a request that can
/// never be placed is named by its position.
async fn accept(
    state: &AppState,
    requests: Vec<ContainerRequest>,
    batch: bool,
) -> Result<Vec<SubmitResponse>, HttpError> {
    let ids: Vec<ContainerId> = requests.iter().map(|r| r.id.clone()).collect();
    let outcomes = state
        .protocol
        .submit(requests)
        .await
        .map_err(|error| match error {
            ProtocolError::Unplaceable { index, .. } if batch => {
                let error = ApiError::new(ErrorCode::Unplaceable, None, error.to_string());
                error.under(&format!("containers[{index}]")).into()
            }
            error => HttpError::from(error),
        })?;
    Ok(ids.into_iter().zip(&outcomes).map(response).collect())
}

/// The answer for one submitted container.
fn response((id, outcome): (ContainerId, &SubmitOutcome)) -> SubmitResponse {
    let (state, duplicate) = match outcome {
        SubmitOutcome::Accepted => (ContainerState::Pending, false),
        SubmitOutcome::Duplicate(state) => (*state, true),
    };
    SubmitResponse {
        id,
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
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<ContainerView>, HttpError> {
    let id = container_id(&id)?;
    query.only(&["wait_ms"])?;
    let wait_ms = query.number("wait_ms", 0, 0, QueryParams::MAX_INTEGER)?;
    let wait = Duration::from_millis(wait_ms).min(state.config.long_poll_max);
    let record = if wait.is_zero() {
        read(&state, &caller, &id).await?
    } else {
        read_when_not_pending(&state, &caller, &id, wait).await?
    };
    Ok(Json(ContainerView::from(&record)))
}

/// The record once it is no longer pending, or as it is after `wait`. The engine's ticket
/// is taken before the first read, so a settlement between the read and the wait is not
/// missed; placements by other replicas are found by the ticket's reads of the store.
async fn read_when_not_pending(
    state: &AppState,
    caller: &Caller,
    id: &ContainerId,
    wait: Duration,
) -> Result<ContainerRecord, HttpError> {
    let ticket = state.engine.watch(id);
    let record = read(state, caller, id).await?;
    if record.state != ContainerState::Pending {
        return Ok(record);
    }
    tokio::select! {
        _ = tokio::time::timeout(wait, ticket.outcome()) => {}
        () = state.shutdown.cancelled() => {}
    }
    read(state, caller, id).await
}

/// `GET /v1/containers/batch`: the container whose id is `batch` (the static batch route
/// would otherwise shadow it for GET). Documented as an operation of its own, so that the
/// document lists every method `/v1/containers/batch` takes (as its `Allow` does).
#[utoipa::path(
    get, path = "/v1/containers/batch", tag = "containers",
    params(
        ("wait_ms" = Option<u64>, Query, description = "Wait up to this long (ms) while it is pending"),
    ),
    responses(
        (status = 200, description = "The container whose id is `batch`", body = ContainerView),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 404, description = "No container has the id `batch`", body = ErrorBody),
    )
)]
pub async fn get_named_batch(
    state: Shared,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<ContainerView>, HttpError> {
    get(state, caller, PathParams("batch".to_owned()), query).await
}

/// The record of a container `caller` may see: another tenant's is answered as unknown, so
/// that its existence is not revealed.
async fn read(
    state: &AppState,
    caller: &Caller,
    id: &ContainerId,
) -> Result<ContainerRecord, HttpError> {
    state
        .store
        .container(id)
        .await?
        .filter(|record| caller.sees(&record.request.tenant))
        .ok_or_else(|| HttpError::not_found(format!("container {id} is not known")))
}

/// The newest containers, optionally only those in one state.
#[utoipa::path(
    get, path = "/v1/containers", tag = "containers",
    params(
        ("state" = Option<String>, Query, description = "pending, scheduled, pulling, running, exited, failed, lost or preempted"),
        ("limit" = Option<u64>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, body = ContainerList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): Shared,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<ContainerList>, HttpError> {
    query.only(&["state", "limit"])?;
    let wanted = match query.get("state") {
        None => None,
        Some(raw) => Some(ContainerState::parse(raw).ok_or_else(|| {
            HttpError::invalid(
                "state",
                format!(
                    "unknown state {raw:?}; expected pending, scheduled, pulling, running, exited, failed, lost or preempted"
                ),
            )
        })?),
    };
    let limit = query.number("limit", 100, 1, MAX_LIST)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let read_limit = if caller.tenant().is_some() {
        MAX_LIST as usize
    } else {
        limit
    };
    let records = state.store.containers(wanted, read_limit).await?;
    Ok(Json(ContainerList {
        containers: records
            .iter()
            .filter(|record| caller.sees(&record.request.tenant))
            .take(limit)
            .map(ContainerView::from)
            .collect(),
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
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<ContainerView>, HttpError> {
    let id = container_id(&id)?;
    if caller.tenant().is_some() {
        read(&state, &caller, &id).await?;
    }
    let record = state.store.cancel(&id).await?;
    Ok(Json(ContainerView::from(&record)))
}

/// A container's kept output; with `after`, only the lines at positions `after` and later,
/// with the position to ask from next and whether the container has ended, for a follower.
/// The record is read before the lines, and a final report appends its lines before it
/// ends the record: when the answer says `ended`, its lines are the last ones.
#[utoipa::path(
    get, path = "/v1/containers/{id}/logs", tag = "containers",
    params(
        ("id" = String, Path, description = "The container's id"),
        ("after" = Option<u64>, Query, description = "Only the lines at this position and later (a line's position counts the lines printed before it; ask with the previous answer's `next`). Without it, every kept line"),
    ),
    responses(
        (status = 200, body = LogsView),
        (status = 400, description = "Malformed id or parameter", body = ErrorBody),
        (status = 404, description = "Unknown container", body = ErrorBody),
    )
)]
pub async fn logs(
    State(state): Shared,
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<LogsView>, HttpError> {
    let id = container_id(&id)?;
    query.only(&["after"])?;
    let after = match query.get("after") {
        None => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            HttpError::invalid(
                "after",
                format!(
                    "must be a position: a whole number, 0 or more (the `next` of an earlier answer), got {raw:?}"
                ),
            )
        })?,
    };
    let record = read(&state, &caller, &id).await?;
    let slice = state.store.logs(&id, after).await?;
    Ok(Json(LogsView {
        id,
        first: slice.first,
        next: slice.next(),
        dropped: slice.dropped(after),
        state: record.state,
        ended: record.state.is_terminal(),
        lines: slice.lines,
    }))
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
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(report): JsonBody<StatusReport>,
) -> Result<Json<ContainerView>, HttpError> {
    let id = container_id(&id)?;
    caller.acts_for(&report.worker)?;
    check_attempt("attempt", &report.attempt)?;
    let kind = match report.state {
        ReportedState::Pulling => ReportKind::Pulling,
        ReportedState::Running => ReportKind::Running,
        ReportedState::Exited => ReportKind::Exited,
        ReportedState::Failed => ReportKind::Failed,
    };
    let report = Report {
        reported: Reported::parse(kind, report.exit_code, report.reason)?,
        worker: report.worker,
        attempt: report.attempt,
        epoch: report.epoch,
        logs: report.logs,
    };
    let record = state.protocol.report(&id, &report).await?;
    Ok(Json(ContainerView::from(&record)))
}
