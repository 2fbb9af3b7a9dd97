//! The admin API under `/admin`, for operators: tenants, versions, event
//! figures and dead letters, and what the dashboard shows (`overview`).
//! Off unless `admin.token` is configured; every call needs
//! `Authorization: Bearer <token>`, compared in constant time, or the
//! dashboard's session cookie (`dashboard`).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{StatusCode, header};
use subtle::ConstantTimeEq;

use super::{ApiError, RequestId};
use crate::components::{ComponentStore, StoreComponentError};
use crate::host::Host;
use crate::pins::{self, Pin, PinError};

/// Components are larger than request bodies for plugins.
const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

pub fn router(host: Arc<Host>) -> Router<Arc<Host>> {
    Router::new()
        .route(
            "/components/{package}/{version}",
            put(upload_component).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route("/components", get(list_components))
        .route("/tenants", get(list_tenants))
        .route(
            "/tenants/{tenant}/plugins/{plugin}/version",
            post(switch_version),
        )
        .route(
            "/tenants/{tenant}/plugins/{plugin}/rollback",
            post(rollback),
        )
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
        .route(
            "/tenants/{tenant}/tokens",
            axum::routing::delete(drop_tokens),
        )
        .route("/traffic", get(super::overview::traffic))
        .route(
            "/tenants/{tenant}/schedules",
            get(super::overview::schedules),
        )
        .route("/tenants/{tenant}/locks", get(super::overview::locks))
        .route("/tenants/{tenant}/flow", get(super::overview::flow))
        .route(
            "/tenants/{tenant}/plugins/{plugin}/status",
            get(super::overview::plugin_status),
        )
        .layer(middleware::from_fn_with_state(host, require_token))
        .merge(super::dashboard::router())
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
    let bearer: bool = given.as_bytes().ct_eq(expected.expose().as_bytes()).into();
    // The dashboard's session; a change through it also needs the page's own
    // header, which another site's page cannot send unasked.
    let session = !bearer
        && super::dashboard::has_session(expected, request.headers())
        && (request.method().is_safe()
            || request
                .headers()
                .contains_key(super::dashboard::CHANGE_HEADER));
    if !bearer && !session {
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

pub(super) fn store_failed(error: crate::store::StoreError) -> ApiError {
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

/// Drops the tenant's cached upstream tokens (Advoware, Google, ...), every
/// instance's: the next call signs in afresh. For a token the upstream
/// revoked while the cache still holds it, or after credentials changed.
async fn drop_tokens(State(host): State<Arc<Host>>, Path(tenant): Path<String>) -> Answer {
    known(&host, &tenant)?;
    // Upstream kinds keep their keys under `@<kind>:`; tokens under `kv:token:`.
    let base = format!("{}:{{{tenant}}}:@", host.config().store.key_prefix);
    let keys = host
        .store()
        .keys_with_prefix(&base)
        .await
        .map_err(store_failed)?;
    let mut dropped = Vec::new();
    for (key, _) in keys {
        let Some((kind, rest)) = key.strip_prefix(&base).and_then(|k| k.split_once(':')) else {
            continue;
        };
        let Some(token) = rest.strip_prefix("kv:token:") else {
            continue;
        };
        if host.store().delete(&key).await.map_err(store_failed)? {
            let account = token.split(':').next().unwrap_or_default();
            dropped.push(serde_json::json!({ "kind": kind, "account": account }));
        }
    }
    tracing::info!(%tenant, dropped = dropped.len(), "cached upstream tokens dropped");
    Ok(axum::Json(
        serde_json::json!({ "dropped": dropped.len(), "tokens": dropped }),
    ))
}

fn known(host: &Host, tenant: &str) -> Result<(), ApiError> {
    running(host, tenant).map(|_| ())
}

/// The running tenant `id`, or 404 naming it.
pub(super) fn running(host: &Host, id: &str) -> Result<Arc<crate::tenants::Tenant>, ApiError> {
    host.registry()
        .current()
        .tenant(id)
        .cloned()
        .ok_or_else(|| unknown_tenant(id))
}

async fn upload_component(
    State(host): State<Arc<Host>>,
    Path((package, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    ComponentStore::check_names(&package, &version).map_err(refused)?;
    let started = std::time::Instant::now();
    // Checked before it is stored: a component that cannot serve never lands.
    let plugin = host.check_component(body.clone()).await.map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_component",
            format!("{error:#}"),
            "",
        )
    })?;
    let store = ComponentStore::new(host.component_store_dir());
    let stored = store
        .put(&package, &version, &body, &plugin.digest)
        .map_err(refused)?;
    tracing::info!(%package, %version, sha256 = %stored.sha256, "component stored");
    let description = &plugin.description;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "component": stored,
            "plugin": {
                "name": description.name,
                "version": description.version,
                "routes": description.routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
                "topics": description.topics,
                "schedules": description.schedules.iter().map(|s| format!("{} {}", s.name, s.cron)).collect::<Vec<_>>(),
            },
            "checked_in_ms": started.elapsed().as_millis() as u64,
        })),
    ))
}

fn refused(error: StoreComponentError) -> ApiError {
    let (status, code) = match &error {
        StoreComponentError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        StoreComponentError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        StoreComponentError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed"),
    };
    ApiError::new(status, code, error.to_string(), "")
}

async fn list_components(State(host): State<Arc<Host>>) -> Answer {
    let store = ComponentStore::new(host.component_store_dir());
    Ok(axum::Json(
        serde_json::json!({ "components": store.list() }),
    ))
}

async fn list_tenants(State(host): State<Arc<Host>>) -> Answer {
    let deployment = host.registry().current();
    let mut tenants = serde_json::Map::new();
    for tenant in deployment.tenants() {
        let config = crate::config::load_tenant(&host.tenant_file(&tenant.id)).ok();
        let all_routes = tenant.routes.describe();
        let plugins: serde_json::Map<String, serde_json::Value> = tenant
            .plugins
            .iter()
            .map(|(name, plugin)| {
                let pinned = config
                    .as_ref()
                    .and_then(|c| c.plugins.get(name))
                    .map(|p| serde_json::json!({ "version": p.version, "component": p.component }));
                let routes: Vec<String> = all_routes
                    .iter()
                    .filter(|(_, _, owner)| owner == name)
                    .map(|(method, path, _)| format!("{method} {path}"))
                    .collect();
                (
                    name.clone(),
                    serde_json::json!({
                        "version": plugin.description.version,
                        "digest": plugin.digest,
                        "pinned": pinned,
                        "routes": routes,
                        "topics": plugin.description.topics,
                        "imports": plugin.imports,
                        "grants": plugin
                            .context()
                            .grants
                            .list()
                            .map(|(kind, account)| serde_json::json!({ "account": account, "kind": kind }))
                            .collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        tenants.insert(
            tenant.id.clone(),
            serde_json::json!({ "state": "running", "plugins": plugins }),
        );
    }
    for (id, error) in host.broken_tenants() {
        let entry = tenants
            .entry(id)
            .or_insert_with(|| serde_json::json!({ "state": "broken", "plugins": {} }));
        if entry["state"] == "running" {
            // Running its last good version; the newest config could not be loaded.
            entry["state"] = "running_previous_config".into();
        }
        entry["error"] = error.into();
    }
    Ok(axum::Json(serde_json::json!({ "tenants": tenants })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchRequest {
    version: String,
}

async fn switch_version(
    State(host): State<Arc<Host>>,
    Path((tenant, plugin)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Answer {
    known(&host, &tenant)?;
    let request: SwitchRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected {{\"version\": \"...\"}}: {e}"),
            "",
        )
    })?;
    if !crate::config::is_version(&request.version) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "not a valid version",
            "",
        ));
    }
    let previous = pins::switch(&host, &tenant, &plugin, &request.version)
        .await
        .map_err(pin_failed)?;
    let now = Pin::Version(request.version);
    Ok(axum::Json(
        serde_json::json!({ "tenant": tenant, "plugin": plugin, "now": now, "previous": previous }),
    ))
}

async fn rollback(
    State(host): State<Arc<Host>>,
    Path((tenant, plugin)): Path<(String, String)>,
) -> Answer {
    known(&host, &tenant)?;
    let (target, replaced) = pins::rollback(&host, &tenant, &plugin)
        .await
        .map_err(pin_failed)?;
    Ok(axum::Json(
        serde_json::json!({ "tenant": tenant, "plugin": plugin, "now": target, "replaced": replaced }),
    ))
}

fn pin_failed(error: PinError) -> ApiError {
    let (status, code) = match &error {
        PinError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "switch_refused"),
        PinError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        PinError::NoPrevious { .. } => (StatusCode::CONFLICT, "no_previous_version"),
    };
    ApiError::new(status, code, error.to_string(), "")
}
