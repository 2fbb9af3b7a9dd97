//! Answers 204 to anything on `/noop` and accepts every event on topic `noop`:
//! the cheapest possible plugin call, the baseline for benchmarks.

use bitbylaw_sdk::{Description, Error, Event, HandlerError, Plugin, Request, Response};

struct Noop;

impl Plugin for Noop {
    fn describe() -> Description {
        Description::new("noop", "0.1.0")
            .route("*", "/noop")
            .topic("noop")
    }

    fn handle_http(_request: Request) -> Result<Response, Error> {
        Ok(Response::new(204))
    }

    fn handle_event(_event: Event) -> Result<(), HandlerError> {
        Ok(())
    }
}

bitbylaw_sdk::export_plugin!(Noop);
