//! HTTP ingress: request ids, tenant resolution, routing into plugins, body
//! limits, and the operational endpoints `/health`, `/ready`, `/metrics`.

mod admin;
mod dashboard;
mod error;
mod limits;
mod overview;
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

use crate::capabilities::wit_handler as wit;
use crate::host::Host;
use crate::runtime::CallError;
use crate::tenants::{Deployment, RouteEntry, RouteMatch, Tenant};

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
    let started = Instant::now();
    let id = [KONG_REQUEST_ID, REQUEST_ID]
        .iter()
        .filter_map(|name| request.headers().get(*name)?.to_str().ok())
        .find(|id| is_usable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    // Made now, so the id itself can move into the request.
    let echoed = HeaderValue::from_str(&id);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
        plugin = tracing::field::Empty,
        route = tracing::field::Empty,
    );
    // Probes and the dashboard's polling (reads of `/admin`) come every few
    // seconds: their successes go to debug, so the log keeps what matters.
    let path = request.uri().path();
    let probe = matches!(path, "/health" | "/ready" | "/metrics")
        || (request.method() == http::Method::GET && path.starts_with("/admin/"));
    request.extensions_mut().insert(RequestId(id));
    let mut response = async move {
        let response = next.run(request).await;
        access_line(&response, started, probe);
        response
    }
    .instrument(span)
    .await;
    if let Ok(value) = echoed {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    response
}

/// The request's access line, inside its span (which names the request id,
/// method, path, tenant, plugin and route): status, time and body size.
/// Polling that succeeds (probes, the dashboard's reads) only at debug level.
fn access_line(response: &Response, started: Instant, probe: bool) {
    use axum::body::HttpBody;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let bytes = response.body().size_hint().exact();
    if probe && response.status().is_success() {
        tracing::debug!(target: crate::telemetry::ACCESS, status, duration_ms, bytes, "request");
    } else {
        tracing::info!(target: crate::telemetry::ACCESS, status, duration_ms, bytes, "request");
    }
}

/// A request id: no secret, so from the fast generator ([`crate::ids`]).
fn new_request_id() -> String {
    crate::ids::fast_uuid().to_string()
}

/// Ids are echoed in headers and logs: keep them short and printable.
fn is_usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Whether `headers` bear the operators' token; false when none is set.
fn bears_ops_token(host: &Host, headers: &http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(expected) = host.ops_token() else {
        return false;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    given.as_bytes().ct_eq(expected.expose().as_bytes()).into()
}

/// Ready or not (200/503) for probes; tenants, digests, errors and the store's
/// state only for a caller bearing the operators' token (`ops.token`).
async fn ready(State(host): State<Arc<Host>>, headers: http::HeaderMap) -> Response {
    let store = host.store().ping().await;
    if !bears_ops_token(&host, &headers) {
        // What an orchestrator acts on, and nothing about tenants or errors.
        let ready = store.is_ok() && host.is_loaded();
        let (status, text) = match ready {
            true => (StatusCode::OK, "ready"),
            false => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        };
        let body = serde_json::json!({
            "status": text,
            "checks": {
                "store_reachable": store.is_ok(),
                "tenants_loaded": host.is_loaded(),
            },
        });
        return (status, axum::Json(body)).into_response();
    }
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

/// The Prometheus text; with `ops.token` set, only for a caller bearing it.
async fn metrics(State(host): State<Arc<Host>>, headers: http::HeaderMap) -> Response {
    if host.ops_token().is_some() && !bears_ops_token(&host, &headers) {
        return ApiError::refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "/metrics needs `Authorization: Bearer <ops token>`",
        )
        .into_response();
    }
    let reachable = host.store().ping().await.is_ok();
    host.metrics()
        .host_state(reachable && host.is_loaded(), host.broken_tenants().len());
    let deployment = host.registry().current();
    for tenant in deployment.tenants() {
        match host.events().stats(tenant).await {
            Ok(stats) => stats.iter().for_each(|s| {
                let gauges = crate::metrics::SubscriptionGauges {
                    backlog: s.backlog,
                    in_flight: s.in_flight,
                    retrying: s.retrying,
                    dead: s.dead,
                };
                host.metrics()
                    .subscription_stats(&tenant.id, &s.plugin, &s.topic, gauges)
            }),
            Err(error) => {
                tracing::warn!(tenant = %tenant.id, %error, "cannot read event figures for /metrics")
            }
        }
        match host.store().stored_bytes(&tenant.quota).await {
            Ok(bytes) => host.metrics().tenant_stored_bytes(&tenant.id, bytes),
            Err(error) => {
                tracing::warn!(tenant = %tenant.id, %error, "cannot read stored bytes for /metrics")
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

/// Everything that is not an operational endpoint: find the tenant, take its
/// limits, route, read the body, and let the plugin answer. Each step either
/// hands on what the next needs or refuses with an [`ApiError`].
async fn dispatch(State(host): State<Arc<Host>>, mut request: Request) -> Response {
    let started = Instant::now();
    // Taken out, not copied: nothing after this reads it from the request.
    let request_id = request
        .extensions_mut()
        .remove::<RequestId>()
        .map(|id| id.0)
        .unwrap_or_default();
    let mut tenant = None;
    match serve(&host, request, &request_id, started, &mut tenant).await {
        Ok(response) => response,
        Err(mut error) => {
            let tenant = tenant.as_ref().map_or("", |t: &Arc<Tenant>| t.id.as_str());
            host.metrics()
                .http_refused(tenant, error.status.as_u16(), error.code);
            error.request_id = request_id;
            error.into_response()
        }
    }
}

/// `tenant` is set as soon as the caller is known, for the refusal's metric.
async fn serve(
    host: &Host,
    request: Request,
    request_id: &str,
    started: Instant,
    tenant_seen: &mut Option<Arc<Tenant>>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let deployment = host.registry().current();
    // The request's span, looked up once for the three fields it gets here.
    let span = tracing::Span::current();
    let (tenant, opens) = authenticate(host, &deployment, &parts)?;
    span.record("tenant", tenant.id.as_str());
    *tenant_seen = Some(tenant.clone());
    let rate_headers = limits::take_request(host, &tenant).await?;
    // Held until the plugin answered: the tenant's share of instances.
    let _instance = limits::take_instance(&tenant)?;
    let (entry, params) = route(&tenant, &parts)?;
    span.record("route", entry.pattern.as_str());
    if !crate::config::allowed(&opens, parts.method.as_str(), &entry.pattern) {
        tracing::info!(route = %entry.pattern, "request refused: the credential does not open this route");
        return Err(ApiError::refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key may not call {} {}", parts.method, entry.pattern),
        ));
    }
    let plugin_name = &entry.plugin.context().name;
    span.record("plugin", plugin_name.as_str());
    let body = read_body(body, &parts, host.config().ingress.max_body_bytes).await?;
    let plugin_request = plugin_request(&parts, entry, params, body, request_id, &opens);

    let mut response = match entry.plugin.handle_http(request_id, plugin_request).await {
        Ok(answer) => plugin_response(answer)?,
        Err(error) => {
            tracing::error!(tenant = %tenant.id, plugin = %plugin_name, %error, "plugin call failed");
            let mut refusal = call_failed(&error);
            refusal.request_id = request_id.to_owned();
            refusal.into_response()
        }
    };
    rate_headers.apply(response.headers_mut());
    entry
        .metrics
        .record(response.status().as_u16(), started.elapsed());
    Ok(response)
}

/// The calling tenant (Kong's consumer from a trusted peer, or the host's API
/// key) and the routes that credential opens.
fn authenticate(
    host: &Host,
    deployment: &Deployment,
    parts: &http::request::Parts,
) -> Result<(Arc<Tenant>, crate::config::Routes), ApiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let (tenant, opens) = tenant::resolve(
        deployment,
        &host.config().ingress.trusted_proxies,
        peer,
        &parts.headers,
        parts.uri.query(),
    )
    .map_err(|error| {
        tracing::info!(%error, "request refused: no tenant");
        ApiError::refuse(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string())
    })?;
    Ok((tenant, opens))
}

/// Path parameters by name, as the plugin gets them.
type Params = Vec<(String, String)>;

/// The tenant's route for this method and path, with its parameters.
fn route<'t>(
    tenant: &'t Tenant,
    parts: &http::request::Parts,
) -> Result<(&'t RouteEntry, Params), ApiError> {
    let path = parts.uri.path();
    match tenant.routes.find(&parts.method, path) {
        RouteMatch::Found { entry, params } => Ok((entry, params)),
        RouteMatch::MethodNotAllowed(allowed) => {
            let refusal = ApiError::refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not served on {path}", parts.method),
            );
            Err(match HeaderValue::from_str(&allowed.join(", ")) {
                Ok(value) => refusal.with_header(header::ALLOW, value),
                Err(_) => refusal,
            })
        }
        RouteMatch::NotFound => Err(ApiError::refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {path}"),
        )),
    }
}

/// The whole body, up to `limit` bytes (413 beyond, before reading when the
/// declared length says so).
async fn read_body(
    body: Body,
    parts: &http::request::Parts,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    // The rest of the body stays unread, so the connection cannot carry another
    // request: say so, or a client may send its next one on a closing connection.
    let too_large = || {
        ApiError::refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|error| match is_length_limit(&error) {
            true => too_large(),
            false => ApiError::refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the request body: {error}"),
            ),
        })
}

/// Tells a plugin what the caller's credential opens: `routes` when the
/// tenant limited it to a list of routes (an operator's key for repair routes,
/// say), `all` when it opens every route. Set by the host only; one a client
/// sends is dropped.
pub const KEY_SCOPE_HEADER: &str = "x-bitbylaw-key-scope";

/// The request as the plugin gets it: without the tenant's prefix, without
/// credentials (auth headers, the `apikey` query parameter), and with the
/// credential's scope ([`KEY_SCOPE_HEADER`]).
fn plugin_request(
    parts: &http::request::Parts,
    entry: &RouteEntry,
    params: Params,
    body: bytes::Bytes,
    request_id: &str,
    opens: &crate::config::Routes,
) -> wit::Request {
    let path = parts.uri.path();
    let scope = if opens.is_some() { "routes" } else { "all" };
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    headers.extend(
        parts
            .headers
            .iter()
            .filter(|(name, _)| !tenant::AUTH_HEADERS.contains(&name.as_str()))
            .filter(|(name, _)| name.as_str() != KEY_SCOPE_HEADER)
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            }),
    );
    headers.push((KEY_SCOPE_HEADER.to_owned(), scope.to_owned()));
    wit::Request {
        method: parts.method.as_str().to_owned(),
        path: path
            .strip_prefix(entry.prefix.as_str())
            .unwrap_or(path)
            .to_owned(),
        route: entry.route.clone(),
        params,
        query: plugin_query(parts.uri.query()),
        headers,
        body: body.into(),
        request_id: request_id.to_owned(),
    }
}

/// The query pairs a plugin sees: decoded, in order, without the `apikey`
/// credential (however it was encoded).
fn plugin_query(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name != tenant::API_KEY_QUERY)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// A failed plugin call as the caller sees it. The guest's error text can hold
/// anything it had in hand: the log has it, the caller gets the kind.
fn call_failed(error: &CallError) -> ApiError {
    let (status, code) = match error {
        CallError::Deadline(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        CallError::OutOfMemory(_) => (StatusCode::INTERNAL_SERVER_ERROR, "out_of_memory"),
        CallError::Trap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_failed"),
        CallError::Instantiate(_) => (StatusCode::SERVICE_UNAVAILABLE, "plugin_unavailable"),
    };
    let message = match error {
        CallError::Trap(_) => "the plugin failed; see the host log for this request id".to_owned(),
        other => other.to_string(),
    };
    ApiError::refuse(status, code, message)
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
fn plugin_response(answer: wit::Response) -> Result<Response, ApiError> {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        tracing::error!(
            status = answer.status,
            "plugin answered with an invalid status"
        );
        return Err(ApiError::refuse(
            StatusCode::BAD_GATEWAY,
            "invalid_plugin_response",
            format!("the plugin answered with status {}", answer.status),
        ));
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
    Ok(response)
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

/// Property tests of the query handling, the part of a request an outsider
/// shapes most freely. `PROPTEST_CASES=100000` for a longer run.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_query_is_read_without_panic(query in "\\PC{0,200}") {
            let _ = plugin_query(Some(&query));
            let _ = tenant::query_api_key(Some(&query));
        }

        #[test]
        fn pairs_reach_the_plugin_as_sent_and_the_key_never(
            pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,24}"), 0..8),
            key in "\\PC{1,24}",
            at in 0usize..8,
        ) {
            let mut sent = pairs.clone();
            sent.insert(at.min(sent.len()), (tenant::API_KEY_QUERY.to_owned(), key.clone()));
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&sent)
                .finish();
            let expected: Vec<(String, String)> = sent
                .iter()
                .filter(|(name, _)| name != tenant::API_KEY_QUERY)
                .cloned()
                .collect();
            prop_assert_eq!(plugin_query(Some(&query)), expected);
            let first_key = sent
                .iter()
                .find(|(name, _)| name == tenant::API_KEY_QUERY)
                .map(|(_, value)| value.clone());
            prop_assert_eq!(tenant::query_api_key(Some(&query)), first_key);
        }
    }
}
