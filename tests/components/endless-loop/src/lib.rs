//! `GET /loop` never returns. The host must stop it at the call deadline (504)
//! and keep serving everything else meanwhile.

use bitbylaw_sdk::{Description, Error, Plugin, Request, Response};

struct EndlessLoop;

impl Plugin for EndlessLoop {
    fn describe() -> Description {
        Description::new("endless-loop", "0.1.0").route("GET", "/loop")
    }

    fn handle_http(_request: Request) -> Result<Response, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

bitbylaw_sdk::export_plugin!(EndlessLoop);
