//! `GET /trap` panics, which traps the guest (the host answers 500);
//! `GET /trap/ok` answers 200, so a test sees the plugin serve again.

use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

struct Trap;

impl Plugin for Trap {
    fn describe() -> Description {
        Description::new("trap", "0.1.0")
            .route("GET", "/trap")
            .route("GET", "/trap/ok")
    }

    fn handle_http(request: Request) -> Result<Response, Error> {
        if request.path() == "/trap/ok" {
            return Ok(Response::text(200, "ok"));
        }
        panic!("this component traps on purpose")
    }
}

bitbylaw_sdk::export_plugin!(Trap);
