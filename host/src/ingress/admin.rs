//! The admin API under `/admin`, for operators: event figures and dead letters.
//! Off unless `admin.token` is configured; every call needs
//! `Authorization: Bearer <token>`, compared in constant time.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use subtle::ConstantTimeEq;

use super::{ApiError, RequestId};
use crate::host::Host;

pub fn router(host: Arc<Host>) -> Router<Arc<Host>> {
    Router::new()
        .route("/events", get(event_figures))
        .route(
            "/tenants/{tenant}/dead-letters",
            get(dead_letters).delete(purge),
        )
        .route("/tenants/{tenant}/dead-letters/replay", post(replay_all))
        .route(
            "/tenants/{tenant}/dead-letters/{id}/replay",
            post(replay_one),
        )
        .layer(middleware::from_fn_with_state(host, require_token))
}

async fn require_token(State(host): State<Arc<Host>>, request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let Some(expected) = host.admin_token() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the admin API is not enabled",
            &request_id,
        )
        .into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let valid: bool = given.as_bytes().ct_eq(expected.expose().as_bytes()).into();
    if !valid {
        tracing::warn!("admin request refused: missing or wrong token");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs `Authorization: Bearer <admin token>`",
            &request_id,
        )
        .into_response();
    }
    next.run(request).await
}

type Answer = Result<axum::Json<serde_json::Value>, ApiError>;

fn store_failed(error: crate::store::StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        error.to_string(),
        "",
    )
}

fn unknown_tenant(tenant: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no tenant `{tenant}`"),
        "",
    )
}

async fn event_figures(State(host): State<Arc<Host>>) -> Answer {
    let deployment = host.registry().current();
    let mut tenants = serde_json::Map::new();
    for tenant in deployment.tenants() {
        let stats = host.events().stats(tenant).await.map_err(store_failed)?;
        tenants.insert(tenant.id.clone(), serde_json::json!(stats));
    }
    Ok(axum::Json(serde_json::json!({ "tenants": tenants })))
}

async fn dead_letters(State(host): State<Arc<Host>>, Path(tenant): Path<String>) -> Answer {
    known(&host, &tenant)?;
    let letters = host
        .events()
        .dead_letters(&tenant)
        .await
        .map_err(store_failed)?;
    Ok(axum::Json(serde_json::json!({ "dead_letters": letters })))
}

async fn replay_all(State(host): State<Arc<Host>>, Path(tenant): Path<String>) -> Answer {
    known(&host, &tenant)?;
    let replayed = host
        .events()
        .replay(&tenant, None)
        .await
        .map_err(store_failed)?;
    tracing::info!(%tenant, replayed, "dead letters replayed");
    Ok(axum::Json(serde_json::json!({ "replayed": replayed })))
}

async fn replay_one(
    State(host): State<Arc<Host>>,
    Path((tenant, id)): Path<(String, String)>,
) -> Answer {
    known(&host, &tenant)?;
    let replayed = host
        .events()
        .replay(&tenant, Some(&id))
        .await
        .map_err(store_failed)?;
    if replayed == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter `{id}`"),
            "",
        ));
    }
    tracing::info!(%tenant, %id, "dead letter replayed");
    Ok(axum::Json(serde_json::json!({ "replayed": replayed })))
}

async fn purge(State(host): State<Arc<Host>>, Path(tenant): Path<String>) -> Answer {
    known(&host, &tenant)?;
    let purged = host.events().purge(&tenant).await.map_err(store_failed)?;
    tracing::info!(%tenant, purged, "dead letters purged");
    Ok(axum::Json(serde_json::json!({ "purged": purged })))
}

fn known(host: &Host, tenant: &str) -> Result<(), ApiError> {
    match host.registry().current().tenant(tenant) {
        Some(_) => Ok(()),
        None => Err(unknown_tenant(tenant)),
    }
}
