//! HTTP ingress: request ids, tenant resolution, routing into plugins, body
//! limits, and the operational endpoints `/health`, `/ready`, `/metrics`.

mod admin;
mod error;
mod limits;
mod routes;
pub mod tenant;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, HeaderValue, StatusCode, header};
use tokio::time::Instant;
use tracing::Instrument;

pub use error::ApiError;
pub use routes::{RouteEntry, RouteMatch, RouteTable};

use crate::capabilities::wit_handler as wit;
use crate::host::Host;
use crate::runtime::CallError;

/// The request id: Kong's `Kong-Request-ID` when present, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const KONG_REQUEST_ID: &str = "kong-request-id";
const REQUEST_ID: &str = "x-request-id";

/// The whole HTTP surface of the host. Tests call it directly with `oneshot`.
pub fn app(host: Arc<Host>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest("/admin", admin::router(host.clone()))
        .fallback(dispatch)
        .layer(middleware::from_fn(with_request_id))
        .with_state(host)
}

async fn with_request_id(mut request: Request, next: Next) -> Response {
    let id = [KONG_REQUEST_ID, REQUEST_ID]
        .iter()
        .filter_map(|name| request.headers().get(*name)?.to_str().ok())
        .find(|id| is_usable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
        plugin = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    response
}

/// Ids are echoed in headers and logs: keep them short and printable.
fn is_usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(host): State<Arc<Host>>) -> Response {
    let store = host.store().ping().await;
    let deployment = host.registry().current();
    let tenants: serde_json::Map<String, serde_json::Value> = deployment
        .tenants()
        .map(|tenant| {
            let plugins: serde_json::Map<String, serde_json::Value> = tenant
                .plugins
                .iter()
                .map(|(name, plugin)| {
                    (
                        name.clone(),
                        serde_json::json!({
                            "version": plugin.description.version,
                            "digest": plugin.digest,
                        }),
                    )
                })
                .collect();
            (tenant.id.clone(), serde_json::json!({ "plugins": plugins }))
        })
        .collect();
    let ready = store.is_ok() && host.is_loaded();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "broken_tenants": host.broken_tenants(),
        "store": {
            "backend": host.store().backend_name(),
            "reachable": store.is_ok(),
            "error": store.err().map(|e| e.to_string()),
        },
        "tenants": tenants,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(host): State<Arc<Host>>) -> Response {
    let deployment = host.registry().current();
    for tenant in deployment.tenants() {
        match host.events().stats(tenant).await {
            Ok(stats) => stats
                .iter()
                .for_each(|s| host.metrics().subscription_stats(&tenant.id, s)),
            Err(error) => {
                tracing::warn!(tenant = %tenant.id, %error, "cannot read event figures for /metrics")
            }
        }
    }
    match host.metrics().render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Everything that is not an operational endpoint: find the tenant, the route
/// and the plugin, and let the plugin answer.
async fn dispatch(State(host): State<Arc<Host>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let fail = |status, code, message: String| {
        ApiError::new(status, code, message, &request_id).into_response()
    };

    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let deployment = host.registry().current();
    let tenant = match tenant::resolve(
        &deployment,
        &host.config().ingress.trusted_proxies,
        peer,
        &parts.headers,
        parts.uri.query(),
    ) {
        Ok(tenant) => tenant,
        Err(error) => {
            tracing::info!(%error, "request refused: no tenant");
            return fail(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string());
        }
    };
    tracing::Span::current().record("tenant", tenant.id.as_str());

    let rate_headers = match limits::take_request(&host, &tenant).await {
        Ok(headers) => headers,
        Err(refusal) => return refusal.into_response(&request_id),
    };
    // Held until the plugin answered: the tenant's share of instances.
    let _instance = match limits::take_instance(&tenant) {
        Ok(permit) => permit,
        Err(refusal) => return refusal.into_response(&request_id),
    };

    let (entry, params) = match tenant.routes.find(&parts.method, parts.uri.path()) {
        RouteMatch::Found { entry, params } => (entry, params),
        RouteMatch::MethodNotAllowed(allowed) => {
            let mut response = fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not served on {}", parts.method, parts.uri.path()),
            );
            if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        RouteMatch::NotFound => {
            return fail(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {}", parts.uri.path()),
            );
        }
    };
    let plugin_name = entry.plugin.context().name.clone();
    tracing::Span::current().record("plugin", plugin_name.as_str());

    let limit = host.config().ingress.max_body_bytes;
    let too_large = || {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let body = match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(bytes) => bytes,
        Err(error) if is_length_limit(&error) => return too_large(),
        Err(error) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the request body: {error}"),
            );
        }
    };

    let path = parts.uri.path();
    let plugin_request = wit::Request {
        method: parts.method.to_string(),
        path: path
            .strip_prefix(entry.prefix.as_str())
            .unwrap_or(path)
            .to_owned(),
        route: entry.route.clone(),
        params,
        query: form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .filter(|(name, _)| name != tenant::API_KEY_QUERY)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| !tenant::AUTH_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
        request_id: request_id.clone(),
    };

    let outcome = entry.plugin.handle_http(&request_id, plugin_request).await;
    let response = match outcome {
        Ok(answer) => plugin_response(answer, &request_id),
        Err(error) => {
            let (status, code) = match &error {
                CallError::Deadline(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
                CallError::OutOfMemory(_) => (StatusCode::INTERNAL_SERVER_ERROR, "out_of_memory"),
                CallError::Trap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_failed"),
                CallError::Instantiate(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "plugin_unavailable")
                }
            };
            tracing::error!(tenant = %tenant.id, plugin = %plugin_name, %error, "plugin call failed");
            // The guest's error text can hold anything it had in hand; the log has it, the caller gets the kind.
            let message = match &error {
                CallError::Trap(_) => {
                    "the plugin failed; see the host log for this request id".to_owned()
                }
                other => other.to_string(),
            };
            fail(status, code, message)
        }
    };
    let mut response = response;
    rate_headers.apply(response.headers_mut());
    host.metrics().request(
        &tenant.id,
        &plugin_name,
        &entry.route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// The plugin's answer as an HTTP response; headers that are not valid, or that
/// only the host may set (hop-by-hop, length), are left out.
fn plugin_response(answer: wit::Response, request_id: &str) -> Response {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        tracing::error!(
            status = answer.status,
            "plugin answered with an invalid status"
        );
        return ApiError::new(
            StatusCode::BAD_GATEWAY,
            "invalid_plugin_response",
            format!("the plugin answered with status {}", answer.status),
            request_id,
        )
        .into_response();
    };
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    for (name, value) in answer.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            tracing::warn!(header = %name, "plugin set an invalid header; dropped");
            continue;
        };
        if is_reserved(&name) {
            continue;
        }
        response.headers_mut().append(name, value);
    }
    response
}

fn is_reserved(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "te"
            | "trailer"
    )
}
