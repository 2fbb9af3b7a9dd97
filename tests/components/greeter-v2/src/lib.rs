//! Version 2 of the greeter: `GET /greet` answers `{"version": "2.0.0"}`.

const VERSION: &str = "2.0.0";

include!("../../greeter.rs");
