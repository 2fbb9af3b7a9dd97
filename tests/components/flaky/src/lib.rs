//! Event handlers that fail on purpose. `POST /flaky/{kind}` emits an event of
//! that kind on topic `flaky`; its handler records each attempt's number and
//! time in `at:<kind>:<attempt>` and counts calls in `calls:<kind>`, then:
//! - `twice`: fails (retryable) on attempts 1 and 2, succeeds on the third;
//! - `always`: always fails (retryable);
//! - `permanent`: fails permanently at once;
//! - `slow`: takes 600 ms (waiting on a rate-limit bucket, not burning CPU), then succeeds.
//!
//! Every call is also counted per event id (`calls:<kind>:<id>`, ids in the set `seen:<kind>`).
//! `GET /flaky/{kind}` answers `{"calls": n, "attempts": [[attempt, ms], ...], "done": bool,
//! "per_event": {"<id>": n, ...}}`.

use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use bitbylaw_sdk::rate_limit::{self, Bucket};
use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, events, kv,
};

struct Flaky;

impl Plugin for Flaky {
    fn describe() -> Description {
        Description::new("flaky", "0.1.0")
            .route("POST", "/flaky/{kind}")
            .route("GET", "/flaky/{kind}")
            .topic("flaky")
    }

    fn handle_http(request: Request) -> Result<Response, Error> {
        let kind = request.require_param("kind")?;
        if request.method() == "POST" {
            events::emit("flaky", kind.as_bytes())?;
            return Ok(Response::new(202));
        }
        let calls = kv::get(&format!("calls:{kind}"))?
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut attempts = Vec::new();
        for attempt in 1..=20u32 {
            if let Some(at) = kv::get(&format!("at:{kind}:{attempt}"))? {
                let at: u64 = String::from_utf8_lossy(&at).parse().unwrap_or(0);
                attempts.push((attempt, at));
            }
        }
        let done = kv::get(&format!("done:{kind}"))?.is_some();
        let mut per_event = serde_json::Map::new();
        for id in kv::set_members(&format!("seen:{kind}"))? {
            let calls = kv::get(&format!("calls:{kind}:{id}"))?
                .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            per_event.insert(id, calls.into());
        }
        Ok(Response::json(
            200,
            &serde_json::json!({ "calls": calls, "attempts": attempts, "done": done, "per_event": per_event }),
        ))
    }

    fn handle_event(event: Event) -> Result<(), HandlerError> {
        let kind = String::from_utf8_lossy(&event.payload).into_owned();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let store = |e: bitbylaw_sdk::StoreError| HandlerError::Retryable(e.to_string());
        kv::set(
            &format!("at:{kind}:{}", event.attempt),
            now.to_string().as_bytes(),
            None,
        )
        .map_err(store)?;
        kv::incr(&format!("calls:{kind}"), 1).map_err(store)?;
        kv::incr(&format!("calls:{kind}:{}", event.id), 1).map_err(store)?;
        kv::set_add(&format!("seen:{kind}"), std::slice::from_ref(&event.id)).map_err(store)?;
        if kind == "slow" {
            // A full bucket of one that refills in 600 ms: the second take waits for it.
            let bucket = Bucket {
                capacity: 1,
                refill_per_second: 1.0 / 0.6,
            };
            let name = format!("pause:{}:{}", event.id, event.attempt);
            for _ in 0..2 {
                rate_limit::take(&name, bucket, 1, Duration::from_secs(2)).map_err(store)?;
            }
        }
        match kind.as_str() {
            "twice" if event.attempt <= 2 => Err(HandlerError::Retryable(format!(
                "attempt {} fails",
                event.attempt
            ))),
            "always" => Err(HandlerError::Retryable("this never works".into())),
            "permanent" => Err(HandlerError::Permanent("this cannot work".into())),
            _ => {
                kv::set(&format!("done:{kind}"), b"1", None).map_err(store)?;
                Ok(())
            }
        }
    }
}

bitbylaw_sdk::export_plugin!(Flaky);
