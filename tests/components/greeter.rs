// Shared by greeter-v1 and greeter-v2: two versions of one plugin, for swap tests.
// Each crate sets `VERSION` and includes this file.

use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

struct Greeter;

impl Plugin for Greeter {
    fn describe() -> Description {
        Description::new("greeter", VERSION).route("GET", "/greet")
    }

    fn handle_http(_request: Request) -> Result<Response, Error> {
        Ok(Response::json(200, &serde_json::json!({ "version": VERSION })))
    }
}

bitbylaw_sdk::export_plugin!(Greeter);
