//! `GET /hog` allocates and touches memory without end; the host's memory limit
//! must fail that call alone. `GET /hog/ok` answers 200 to show the plugin lives on.

use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

struct MemoryHog;

impl Plugin for MemoryHog {
    fn describe() -> Description {
        Description::new("memory-hog", "0.1.0")
            .route("GET", "/hog")
            .route("GET", "/hog/ok")
    }

    fn handle_http(request: Request) -> Result<Response, Error> {
        if request.path() == "/hog/ok" {
            return Ok(Response::text(200, "fine"));
        }
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

bitbylaw_sdk::export_plugin!(MemoryHog);
