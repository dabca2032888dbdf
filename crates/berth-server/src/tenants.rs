//! Tenants: their policies (quota and weight; set by an admin) and what each holds now. A
//! client token may read its own tenant only.

use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{JsonBody, PathParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use berth_api::{ErrorBody, TenantList, TenantSpec, TenantView};
use berth_core::{Tenant, TenantName, Usage};
use std::collections::BTreeMap;
use std::sync::Arc;

type Shared = State<Arc<AppState>>;

/// Every tenant with a policy or holding something, by name (admin only).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    responses(
        (status = 200, body = TenantList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn list(State(state): Shared) -> Result<Json<TenantList>, HttpError> {
    let policies: BTreeMap<String, Tenant> = state
        .store
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.name.to_string(), t))
        .collect();
    let usage: BTreeMap<String, Usage> = state.store.usage().await?.into_iter().collect();
    let mut names: Vec<&String> = policies.keys().chain(usage.keys()).collect();
    names.sort();
    names.dedup();
    Ok(Json(TenantList {
        tenants: names
            .into_iter()
            .map(|name| TenantView::of(name, policies.get(name), usage.get(name)))
            .collect(),
    }))
}

/// One tenant's policy and usage (an admin, or a client token of that tenant). A tenant
/// without a policy has no limits and weight 1.
#[utoipa::path(
    get, path = "/v1/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    responses(
        (status = 200, body = TenantView),
        (status = 400, description = "Malformed name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Another tenant's (for a client token)", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): Shared,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<Json<TenantView>, HttpError> {
    let name = tenant_name(&name)?;
    if !caller.sees(name.as_str()) {
        return Err(HttpError::not_found(format!(
            "no tenant {name} for this token"
        )));
    }
    Ok(Json(view(&state, &name).await?))
}

/// Sets a tenant's quota and weight (admin only), replacing its earlier policy. Every
/// replica holds placements against it within a second; a request above it on its own is
/// refused at submit from then on, and one waiting in the backlog fails when it is next
/// planned.
#[utoipa::path(
    put, path = "/v1/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    request_body = TenantSpec,
    responses(
        (status = 200, description = "Stored", body = TenantView),
        (status = 400, description = "Malformed (a bad limit, GPU type or weight)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): Shared,
    PathParams(name): PathParams<String>,
    JsonBody(spec): JsonBody<TenantSpec>,
) -> Result<Json<TenantView>, HttpError> {
    let name = tenant_name(&name)?;
    let tenant = spec
        .to_tenant(name.clone())
        .map_err(|e| HttpError::invalid("quota", e.to_string()))?;
    state.store.put_tenant(&tenant).await?;
    tracing::info!(tenant = %name, quota = ?tenant.quota, weight = tenant.weight, "tenant policy set");
    Ok(Json(view(&state, &name).await?))
}

/// Removes a tenant's policy (admin only): it has no limits and weight 1 from then on; its
/// containers keep running.
#[utoipa::path(
    delete, path = "/v1/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    responses(
        (status = 200, description = "Removed; the tenant as it is now", body = TenantView),
        (status = 400, description = "Malformed name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "The tenant has no policy", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): Shared,
    PathParams(name): PathParams<String>,
) -> Result<Json<TenantView>, HttpError> {
    let name = tenant_name(&name)?;
    if !state.store.remove_tenant(&name).await? {
        return Err(HttpError::not_found(format!("tenant {name} has no policy")));
    }
    tracing::info!(tenant = %name, "tenant policy removed");
    Ok(Json(view(&state, &name).await?))
}

fn tenant_name(name: &str) -> Result<TenantName, HttpError> {
    TenantName::new(name).map_err(|e| HttpError::invalid("name", e.to_string()))
}

async fn view(state: &AppState, name: &TenantName) -> Result<TenantView, HttpError> {
    let policy = state
        .store
        .tenants()
        .await?
        .into_iter()
        .find(|t| t.name == *name);
    let usage = state
        .store
        .usage()
        .await?
        .into_iter()
        .find(|(t, _)| t == name.as_str())
        .map(|(_, u)| u);
    Ok(TenantView::of(
        name.as_str(),
        policy.as_ref(),
        usage.as_ref(),
    ))
}
