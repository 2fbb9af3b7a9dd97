//! `GET /counter` answers how many calls this instance has served (a global), so a
//! test sees when the host reuses or replaces an instance. `/counter/trap` panics
//! and `/counter/spin` never returns: both must cost the instance its life.

use std::sync::atomic::{AtomicU64, Ordering};

use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl Plugin for Counter {
    fn describe() -> Description {
        Description::new("counter", "0.1.0")
            .route("GET", "/counter")
            .route("GET", "/counter/trap")
            .route("GET", "/counter/spin")
    }

    fn handle_http(request: Request) -> Result<Response, Error> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match request.path() {
            "/counter/trap" => panic!("trap requested after {calls} calls"),
            "/counter/spin" => spin(),
            _ => Ok(Response::json(200, &serde_json::json!({ "calls": calls }))),
        }
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

bitbylaw_sdk::export_plugin!(Counter);
