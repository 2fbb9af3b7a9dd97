//! Exposes capabilities over HTTP, so tests can check what a plugin sees:
//! - `POST /probe/lock/{name}?ttl_ms=` → `{"token": ...}` or `{"token": null}` when held
//! - `DELETE /probe/lock/{name}?token=` → `{"released": bool}`
//! - `POST /probe/rate/{name}?capacity=&per_second=&wait_ms=` → the decision
//! - `GET /probe/config/{key}` → `{"value": ...}`; `GET /probe/secret/{name}` → `{"present", "length"}`
//!   (never the secret itself)

use std::time::Duration;

use bitbylaw_sdk::rate_limit::{self, Bucket};
use bitbylaw_sdk::{Description, Error, Plugin, Request, Response, config, lock, secrets};
use serde_json::json;

struct CapabilityProbe;

impl Plugin for CapabilityProbe {
    fn describe() -> Description {
        Description::new("capability-probe", "0.1.0")
            .route("POST", "/probe/lock/{name}")
            .route("DELETE", "/probe/lock/{name}")
            .route("POST", "/probe/rate/{name}")
            .route("GET", "/probe/config/{key}")
            .route("GET", "/probe/secret/{name}")
    }

    fn handle_http(request: Request) -> Result<Response, Error> {
        let number = |name: &str, default: u64| -> Result<u64, Error> {
            request
                .query(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| Error::BadRequest(format!("`{name}` must be a number")))
                })
                .unwrap_or(Ok(default))
        };
        match (request.method(), request.route()) {
            ("POST", "/probe/lock/{name}") => {
                let name = request.require_param("name")?;
                let lease = lock::acquire(name, Duration::from_millis(number("ttl_ms", 30_000)?))?;
                Ok(Response::json(
                    200,
                    &json!({ "token": lease.map(|l| l.token().to_owned()) }),
                ))
            }
            ("DELETE", "/probe/lock/{name}") => {
                let name = request.require_param("name")?;
                let token = request.query("token").unwrap_or_default();
                let released = lock::release(name, token)?;
                Ok(Response::json(200, &json!({ "released": released })))
            }
            ("POST", "/probe/rate/{name}") => {
                let name = request.require_param("name")?;
                let bucket = Bucket {
                    capacity: u32::try_from(number("capacity", 1)?).unwrap_or(u32::MAX),
                    refill_per_second: request
                        .query("per_second")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1.0),
                };
                let decision = rate_limit::take(
                    name,
                    bucket,
                    1,
                    Duration::from_millis(number("wait_ms", 0)?),
                )?;
                Ok(Response::json(
                    200,
                    &json!({
                        "allowed": decision.allowed,
                        "remaining": decision.remaining,
                        "retry_after_ms": decision.retry_after_ms,
                    }),
                ))
            }
            ("GET", "/probe/config/{key}") => Ok(Response::json(
                200,
                &json!({ "value": config::get(request.require_param("key")?) }),
            )),
            ("GET", "/probe/secret/{name}") => {
                let secret = secrets::get(request.require_param("name")?);
                Ok(Response::json(
                    200,
                    &json!({ "present": secret.is_some(), "length": secret.map(|s| s.len()) }),
                ))
            }
            _ => Err(Error::NotFound(request.path().to_owned())),
        }
    }
}

bitbylaw_sdk::export_plugin!(CapabilityProbe);
