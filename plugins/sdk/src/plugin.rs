//! The [`Plugin`] trait and the glue between it and the generated `handler` export.

use crate::bindings::exports::bitbylaw::plugin::handler as wit;
use crate::{Error, Request, Response, Router};

/// What a plugin implements. Only [`Plugin::describe`] is required; a plugin
/// overrides the handlers for what it declares (routes, topics, schedules).
pub trait Plugin {
    /// Name, version, topics and schedules; asked once when the host loads the
    /// plugin. The routes of [`Plugin::routes`] are added to it.
    fn describe() -> Description;

    /// The plugin's routes with their handlers, declared once: the host is told
    /// them and [`Plugin::handle_http`] dispatches by them.
    fn routes() -> Router {
        Router::new()
    }

    /// Answers a request on one of the declared routes; by default through
    /// [`Plugin::routes`].
    fn handle_http(request: Request) -> Result<Response, Error> {
        Self::routes().handle(request)
    }

    /// Handles an event of a subscribed topic.
    fn handle_event(event: Event) -> Result<(), HandlerError> {
        Err(HandlerError::Permanent(format!(
            "no handler for topic {}",
            event.topic
        )))
    }

    /// Runs a declared schedule; `tick.scheduled_at` is the same on every host instance.
    fn handle_schedule(tick: Tick) -> Result<(), HandlerError> {
        Err(HandlerError::Permanent(format!(
            "no handler for schedule {}",
            tick.name
        )))
    }
}

/// An event delivered to a subscriber.
pub type Event = wit::Event;

/// One firing of a schedule.
pub type Tick = wit::Tick;

/// Whether a failed event or schedule run should be tried again.
pub type HandlerError = wit::HandlerError;

/// The self-description a plugin gives the host.
#[derive(Debug, Clone)]
pub struct Description {
    name: String,
    version: String,
    routes: Vec<wit::Route>,
    topics: Vec<String>,
    schedules: Vec<wit::Schedule>,
}

impl Description {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            routes: Vec::new(),
            topics: Vec::new(),
            schedules: Vec::new(),
        }
    }

    /// Serves `method` (or `*` for any) on `path`, e.g. `/notes/{id}` or `/files/{*rest}`,
    /// for a plugin that dispatches in its own [`Plugin::handle_http`]; prefer
    /// [`Plugin::routes`], which declares and dispatches in one place.
    pub fn route(mut self, method: &str, path: &str) -> Self {
        self.routes.push(wit::Route {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
        });
        self
    }

    /// Subscribes to a topic of the tenant's events.
    pub fn topic(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_owned());
        self
    }

    /// Asks to be called on a cron schedule (optional seconds field first).
    pub fn schedule(mut self, name: &str, cron: &str) -> Self {
        self.schedules.push(wit::Schedule {
            name: name.to_owned(),
            cron: cron.to_owned(),
        });
        self
    }

    #[doc(hidden)]
    pub fn into_wit(self, router: &Router) -> wit::Description {
        let mut routes = self.routes;
        routes.extend(router.describe());
        wit::Description {
            name: self.name,
            version: self.version,
            routes,
            topics: self.topics,
            schedules: self.schedules,
        }
    }
}

/// A panic traps the guest and its message would be lost with the instance;
/// send it to the host's log first, where it lands with the request id.
fn report_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::log(
                crate::Level::Error,
                &format!("plugin panicked: {info}"),
                &[],
            );
        }));
    });
}

#[doc(hidden)]
pub fn describe<P: Plugin>() -> wit::Description {
    P::describe().into_wit(&P::routes())
}

#[doc(hidden)]
pub fn dispatch_http<P: Plugin>(request: wit::Request) -> wit::Response {
    report_panics();
    match P::handle_http(Request::from_wit(request)) {
        Ok(response) => response.into_wit(),
        Err(error) => error.into_response().into_wit(),
    }
}

#[doc(hidden)]
pub fn dispatch_event<P: Plugin>(event: wit::Event) -> Result<(), wit::HandlerError> {
    report_panics();
    P::handle_event(event)
}

#[doc(hidden)]
pub fn dispatch_schedule<P: Plugin>(tick: wit::Tick) -> Result<(), wit::HandlerError> {
    report_panics();
    P::handle_schedule(tick)
}
