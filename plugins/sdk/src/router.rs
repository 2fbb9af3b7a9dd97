//! Routes declared once: the same table describes them to the host and
//! dispatches the requests the host routes back.
//!
//! ```ignore
//! impl Plugin for Notes {
//!     fn describe() -> Description {
//!         Description::new("notes", env!("CARGO_PKG_VERSION"))
//!     }
//!
//!     fn routes() -> Router {
//!         Router::new()
//!             .get("/notes/{id}", get_note)
//!             .put("/notes/{id}", put_note)
//!     }
//! }
//! ```
//!
//! The host matches the path and hands over the pattern that matched
//! ([`Request::route`]); the router only looks that pattern up, so both sides
//! always agree on which handler serves a request.

use crate::bindings::exports::bitbylaw::plugin::handler as wit;
use crate::{Error, Request, Response};

/// What serves one route.
pub type Handler = fn(Request) -> Result<Response, Error>;

/// A plugin's routes and their handlers.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Clone)]
struct Route {
    /// Upper case, or `*` for any method.
    method: String,
    path: &'static str,
    handler: Handler,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `method` (or `*` for any) on `path`, e.g. `/notes/{id}` or `/files/{*rest}`.
    pub fn route(mut self, method: &str, path: &'static str, handler: Handler) -> Self {
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            path,
            handler,
        });
        self
    }

    pub fn get(self, path: &'static str, handler: Handler) -> Self {
        self.route("GET", path, handler)
    }

    pub fn post(self, path: &'static str, handler: Handler) -> Self {
        self.route("POST", path, handler)
    }

    pub fn put(self, path: &'static str, handler: Handler) -> Self {
        self.route("PUT", path, handler)
    }

    pub fn patch(self, path: &'static str, handler: Handler) -> Self {
        self.route("PATCH", path, handler)
    }

    pub fn delete(self, path: &'static str, handler: Handler) -> Self {
        self.route("DELETE", path, handler)
    }

    /// Serves every method on `path`.
    pub fn any(self, path: &'static str, handler: Handler) -> Self {
        self.route("*", path, handler)
    }

    /// Hands `request` to the handler of the route the host matched: the exact
    /// method first, then `*`.
    pub fn handle(&self, request: Request) -> Result<Response, Error> {
        let on_route = || self.routes.iter().filter(|r| r.path == request.route());
        let route = on_route()
            .find(|r| r.method == request.method())
            .or_else(|| on_route().find(|r| r.method == "*"));
        match route {
            Some(route) => (route.handler)(request),
            None => Err(Error::NotFound(format!(
                "no handler for {} {}",
                request.method(),
                request.path()
            ))),
        }
    }

    /// The routes as the host's description lists them.
    pub(crate) fn describe(&self) -> impl Iterator<Item = wit::Route> + '_ {
        self.routes.iter().map(|route| wit::Route {
            method: route.method.clone(),
            path: route.path.to_owned(),
        })
    }
}
