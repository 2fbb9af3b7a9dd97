//! What the dashboard shows beyond the admin API's own answers: requests over
//! the last minutes, each tenant's schedules, the locks its plugins hold, a
//! plugin's own status, and the flow of a tenant (its plugins, their routes,
//! the topics they emit and take, their schedules, their recent traffic and
//! failures). Behind the admin token like the rest of `/admin`. Nothing here
//! holds a secret: locks are shown by name and time left, never by token.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use http::StatusCode;

use super::ApiError;
use super::admin::{running as tenant, store_failed};
use crate::capabilities::wit_handler as wit;
use crate::host::Host;
use crate::tenants::Tenant;

type Answer = Result<axum::Json<serde_json::Value>, ApiError>;

/// Requests per tenant, plugin and status in steps of about ten seconds over
/// the last fifteen minutes, as this instance served them, up to now.
pub async fn traffic(State(host): State<Arc<Host>>) -> Answer {
    host.traffic()
        .sample(&host.registry().current(), crate::events::now_ms());
    Ok(axum::Json(serde_json::json!({
        "every_s": crate::traffic::EVERY.as_secs(),
        "series": host.traffic().series(),
    })))
}

pub async fn schedules(State(host): State<Arc<Host>>, Path(id): Path<String>) -> Answer {
    let tenant = tenant(&host, &id)?;
    let config = host.config();
    let views = crate::events::schedule::overview(
        host.store(),
        &config.store.key_prefix,
        &config.events,
        &tenant,
    )
    .await
    .map_err(store_failed)?;
    Ok(axum::Json(serde_json::json!({ "schedules": views })))
}

/// The locks the tenant's plugins hold now (`lock` capability), across
/// instances: plugin, name and time left.
pub async fn locks(State(host): State<Arc<Host>>, Path(id): Path<String>) -> Answer {
    let tenant = tenant(&host, &id)?;
    let base = format!("{}:{{{}}}:", host.config().store.key_prefix, tenant.id);
    let keys = host
        .store()
        .keys_with_prefix(&base)
        .await
        .map_err(store_failed)?;
    let locks: Vec<serde_json::Value> = keys
        .into_iter()
        .filter_map(|(key, ttl)| {
            let rest = key.strip_prefix(&base)?;
            let (plugin, rest) = rest.split_once(':')?;
            let name = rest.strip_prefix("lock:")?;
            tenant.plugins.contains_key(plugin).then(|| {
                serde_json::json!({
                    "plugin": plugin,
                    "name": name,
                    "expires_in_ms": ttl.map(|t| t.as_millis() as u64),
                })
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "locks": locks })))
}

/// A plugin's own status: its `GET` route ending in `/status` (without
/// parameters), called as the tenant's administrator. The dashboard shows
/// whatever JSON it answers, so it needs to know no plugin.
pub async fn plugin_status(
    State(host): State<Arc<Host>>,
    Path((id, plugin)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let tenant = tenant(&host, &id)?;
    let Some(entry) = status_route(&tenant, &plugin) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_status_route",
            format!("plugin `{plugin}` declares no GET route ending in /status"),
            "",
        ));
    };
    let request_id = format!("dashboard-{}", uuid::Uuid::new_v4().simple());
    let request = wit::Request {
        method: "GET".into(),
        path: entry.route.clone(),
        route: entry.route.clone(),
        params: Vec::new(),
        query: Vec::new(),
        headers: vec![(super::KEY_SCOPE_HEADER.to_owned(), "all".to_owned())],
        body: Vec::new(),
        request_id: request_id.clone(),
    };
    let answer = entry
        .plugin
        .handle_http(&request_id, request)
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "plugin_failed",
                error.to_string(),
                "",
            )
        })?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|_| serde_json::json!({ "text": String::from_utf8_lossy(&answer.body) }));
    Ok((
        status,
        axum::Json(serde_json::json!({ "route": entry.pattern, "answer": body })),
    ))
}

fn status_route<'t>(tenant: &'t Tenant, plugin: &str) -> Option<&'t crate::tenants::RouteEntry> {
    tenant.routes.entries().find(|entry| {
        entry.plugin.context().name == plugin
            && entry
                .method
                .as_ref()
                .is_none_or(|m| *m == http::Method::GET)
            && entry.route.ends_with("/status")
            && !entry.route.contains('{')
    })
}

/// A tenant's plugins as a drawing needs them: what each serves, takes,
/// emits and runs, with its requests and failures of the last minutes and
/// its subscriptions' figures.
pub async fn flow(State(host): State<Arc<Host>>, Path(id): Path<String>) -> Answer {
    let tenant = tenant(&host, &id)?;
    let stats = host.events().stats(&tenant).await.map_err(store_failed)?;
    let emitters = host.metrics().emitters(&tenant.id);
    let mut requests: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    host.traffic()
        .sample(&host.registry().current(), crate::events::now_ms());
    let series = host.traffic().series();
    for s in series.iter().filter(|s| s.tenant == tenant.id) {
        let sum: u64 = s.points.iter().map(|(_, n)| n).sum();
        let counts = requests.entry(s.plugin.as_str()).or_default();
        counts.0 += sum;
        if s.status >= 500 {
            counts.1 += sum;
        }
    }
    let routes = tenant.routes.describe();
    let plugins: Vec<serde_json::Value> = tenant
        .plugins
        .iter()
        .map(|(name, plugin)| {
            let (served, failed) = requests.get(name.as_str()).copied().unwrap_or_default();
            serde_json::json!({
                "name": name,
                "version": plugin.description.version,
                "routes": routes
                    .iter()
                    .filter(|(_, _, owner)| owner == name)
                    .map(|(method, pattern, _)| format!("{method} {pattern}"))
                    .collect::<Vec<_>>(),
                "subscribes": plugin.description.topics,
                "emits": emitters
                    .iter()
                    .filter(|(emitter, _, _)| emitter == name)
                    .map(|(_, topic, count)| serde_json::json!({ "topic": topic, "events": count }))
                    .collect::<Vec<_>>(),
                "schedules": tenant
                    .schedules
                    .iter()
                    .filter(|s| &s.plugin == name)
                    .map(|s| serde_json::json!({ "name": s.name, "cron": s.expression }))
                    .collect::<Vec<_>>(),
                "requests_15m": served,
                "failed_15m": failed,
                "subscriptions": stats
                    .iter()
                    .filter(|s| &s.plugin == name)
                    .collect::<Vec<_>>(),
                "has_status": status_route(&tenant, name).is_some(),
            })
        })
        .collect();
    Ok(axum::Json(
        serde_json::json!({ "tenant": tenant.id, "plugins": plugins }),
    ))
}
