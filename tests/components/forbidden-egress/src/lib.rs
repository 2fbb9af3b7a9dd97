//! `GET /egress?url=...` asks the host to fetch `url` and reports what happened:
//! `{"status": n}` when the host let the call out, or 502 with the host's error
//! (`{"error": "forbidden", ...}` for an origin outside the allowlist).

use bitbylaw_sdk::http::{self, HttpError};
use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

struct ForbiddenEgress;

impl Plugin for ForbiddenEgress {
    fn describe() -> Description {
        Description::new("forbidden-egress", "0.1.0").route("GET", "/egress")
    }

    fn handle_http(request: Request) -> Result<Response, Error> {
        let url = request
            .query("url")
            .ok_or_else(|| Error::BadRequest("query parameter `url` is required".into()))?;
        match http::Request::get(url).send() {
            Ok(response) => Ok(Response::json(
                200,
                &serde_json::json!({ "status": response.status }),
            )),
            Err(error) => {
                let (kind, message) = match error {
                    HttpError::Forbidden(m) => ("forbidden", m),
                    HttpError::InvalidRequest(m) => ("invalid_request", m),
                    HttpError::Timeout => ("timeout", String::new()),
                    HttpError::Connection(m) => ("connection", m),
                    HttpError::TooLarge(n) => ("too_large", n.to_string()),
                };
                Ok(Response::json(
                    502,
                    &serde_json::json!({ "error": kind, "message": message }),
                ))
            }
        }
    }
}

bitbylaw_sdk::export_plugin!(ForbiddenEgress);
