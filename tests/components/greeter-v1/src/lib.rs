//! Version 1 of the greeter: `GET /greet` answers `{"version": "1.0.0"}`.

const VERSION: &str = "1.0.0";

include!("../../greeter.rs");
