//! Answers 204 to anything on `/noop`: the cheapest possible plugin call.

use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

struct Noop;

impl Plugin for Noop {
    fn describe() -> Description {
        Description::new("noop", "0.1.0").route("*", "/noop")
    }

    fn handle_http(_request: Request) -> Result<Response, Error> {
        Ok(Response::new(204))
    }
}

bitbylaw_sdk::export_plugin!(Noop);
