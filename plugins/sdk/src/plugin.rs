//! The [`Plugin`] trait and the glue between it and the generated `handler` export.

use crate::bindings::exports::bitbylaw::plugin::handler as wit;
use crate::{Error, Request, Response, Router};

/// What a plugin implements. Only [`Plugin::describe`] is required; a plugin
/// declares its routes ([`Plugin::routes`]) and its topics and schedules
/// ([`Plugin::subscriptions`]) once, with their handlers: the host is told
/// them and the SDK dispatches by them.
pub trait Plugin {
    /// Name and version; asked once when the host loads the plugin. The
    /// routes of [`Plugin::routes`] and the topics and schedules of
    /// [`Plugin::subscriptions`] are added to it.
    fn describe() -> Description;

    /// The plugin's routes with their handlers, declared once: the host is told
    /// them and [`Plugin::handle_http`] dispatches by them.
    fn routes() -> Router {
        Router::new()
    }

    /// The topics the plugin subscribes to and its schedules, each with its
    /// handler, declared once: the host is told them and
    /// [`Plugin::handle_event`] and [`Plugin::handle_schedule`] dispatch by them.
    fn subscriptions() -> Subscriptions {
        Subscriptions::new()
    }

    /// Answers a request on one of the declared routes; by default through
    /// [`Plugin::routes`].
    fn handle_http(request: Request) -> Result<Response, Error> {
        Self::routes().handle(request)
    }

    /// Handles an event of a subscribed topic; by default through [`Plugin::subscriptions`].
    fn handle_event(event: Event) -> Result<(), HandlerError> {
        Self::subscriptions().handle_event(event)
    }

    /// Runs a declared schedule; `tick.scheduled_at` is the same on every host
    /// instance. By default through [`Plugin::subscriptions`].
    fn handle_schedule(tick: Tick) -> Result<(), HandlerError> {
        Self::subscriptions().handle_schedule(tick)
    }
}

/// An event delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique per event; use it to make handling idempotent.
    pub id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// Milliseconds since the Unix epoch.
    pub emitted_at: u64,
}

impl Event {
    /// The payload as JSON; a permanent failure naming the topic when it does
    /// not fit `T` (sending it again cannot help).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| HandlerError::Permanent(format!("bad {} payload: {e}", self.topic)))
    }

    fn from_wit(event: wit::Event) -> Self {
        Self {
            id: event.id,
            topic: event.topic,
            payload: event.payload,
            attempt: event.attempt,
            emitted_at: event.emitted_at,
        }
    }
}

/// One firing of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The schedule's name from the description.
    pub name: String,
    /// The tick this run is for, in milliseconds since the Unix epoch; the
    /// same on every host instance, so it can key idempotent work.
    pub scheduled_at: u64,
}

/// Why an event or a schedule run failed: worth another try (with the
/// subscription's backoff, until its `max_attempts`, then the dead letters),
/// or never going to work (straight to the dead letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    Retryable(String),
    Permanent(String),
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::Retryable(m) => write!(f, "retryable: {m}"),
            HandlerError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// The one rule for every plugin: what the request or the data got wrong,
/// or what is not there, does not change by trying again (400, 403, 404, 409:
/// permanent); an upstream or the store failing may, and so may the plugin's
/// settings (500: an operator fixes the tenant file; the retries end in the
/// dead letters if nobody does).
impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        match error {
            Error::BadRequest(_)
            | Error::Forbidden(_)
            | Error::NotFound(_)
            | Error::Conflict(_) => HandlerError::Permanent(error.to_string()),
            Error::BadGateway(_)
            | Error::Unavailable(_)
            | Error::GatewayTimeout(_)
            | Error::Internal(_) => HandlerError::Retryable(error.to_string()),
        }
    }
}

/// The store: unavailable is worth another try, an invalid operation is not.
impl From<crate::StoreError> for HandlerError {
    fn from(error: crate::StoreError) -> Self {
        HandlerError::from(Error::from(error))
    }
}

impl HandlerError {
    fn into_wit(self) -> wit::HandlerError {
        match self {
            HandlerError::Retryable(m) => wit::HandlerError::Retryable(m),
            HandlerError::Permanent(m) => wit::HandlerError::Permanent(m),
        }
    }
}

/// A handler of one topic's events.
pub type EventHandler = fn(Event) -> Result<(), HandlerError>;

/// A handler of one schedule's ticks.
pub type ScheduleHandler = fn(Tick) -> Result<(), HandlerError>;

/// Topics and schedules with their handlers, as [`Router`] is for routes.
#[derive(Default)]
pub struct Subscriptions {
    topics: Vec<(String, EventHandler)>,
    schedules: Vec<(String, String, ScheduleHandler)>,
}

impl Subscriptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes to `topic` of the tenant's events, handled by `handler`.
    pub fn topic(mut self, topic: &str, handler: EventHandler) -> Self {
        self.topics.push((topic.to_owned(), handler));
        self
    }

    /// Asks to be called on a cron schedule (optional seconds field first).
    pub fn schedule(mut self, name: &str, cron: &str, handler: ScheduleHandler) -> Self {
        self.schedules
            .push((name.to_owned(), cron.to_owned(), handler));
        self
    }

    /// Runs the handler of the event's topic.
    pub fn handle_event(&self, event: Event) -> Result<(), HandlerError> {
        match self.topics.iter().find(|(topic, _)| *topic == event.topic) {
            Some((_, handler)) => handler(event),
            None => Err(HandlerError::Permanent(format!(
                "no handler for topic {}",
                event.topic
            ))),
        }
    }

    /// Runs the handler of the tick's schedule.
    pub fn handle_schedule(&self, tick: Tick) -> Result<(), HandlerError> {
        match self
            .schedules
            .iter()
            .find(|(name, _, _)| *name == tick.name)
        {
            Some((_, _, handler)) => handler(tick),
            None => Err(HandlerError::Permanent(format!(
                "no handler for schedule {}",
                tick.name
            ))),
        }
    }
}

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

    /// Subscribes to a topic of the tenant's events, for a plugin that
    /// dispatches in its own [`Plugin::handle_event`]; prefer
    /// [`Plugin::subscriptions`], which declares and dispatches in one place.
    pub fn topic(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_owned());
        self
    }

    /// Asks to be called on a cron schedule, for a plugin that dispatches in
    /// its own [`Plugin::handle_schedule`]; prefer [`Plugin::subscriptions`].
    pub fn schedule(mut self, name: &str, cron: &str) -> Self {
        self.schedules.push(wit::Schedule {
            name: name.to_owned(),
            cron: cron.to_owned(),
        });
        self
    }

    #[doc(hidden)]
    pub fn into_wit(self, router: &Router, subscriptions: &Subscriptions) -> wit::Description {
        let mut routes = self.routes;
        routes.extend(router.describe());
        let mut topics = self.topics;
        for (topic, _) in &subscriptions.topics {
            if !topics.contains(topic) {
                topics.push(topic.clone());
            }
        }
        let mut schedules = self.schedules;
        for (name, cron, _) in &subscriptions.schedules {
            if !schedules.iter().any(|s| s.name == *name) {
                schedules.push(wit::Schedule {
                    name: name.clone(),
                    cron: cron.clone(),
                });
            }
        }
        wit::Description {
            name: self.name,
            version: self.version,
            routes,
            topics,
            schedules,
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
    P::describe().into_wit(&P::routes(), &P::subscriptions())
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
    P::handle_event(Event::from_wit(event)).map_err(HandlerError::into_wit)
}

#[doc(hidden)]
pub fn dispatch_schedule<P: Plugin>(tick: wit::Tick) -> Result<(), wit::HandlerError> {
    report_panics();
    P::handle_schedule(Tick {
        name: tick.name,
        scheduled_at: tick.scheduled_at,
    })
    .map_err(HandlerError::into_wit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str) -> Event {
        Event {
            id: "e1".into(),
            topic: topic.into(),
            payload: br#"{"n":1}"#.to_vec(),
            attempt: 1,
            emitted_at: 0,
        }
    }

    fn ok(_: Event) -> Result<(), HandlerError> {
        Ok(())
    }

    fn fails(event: Event) -> Result<(), HandlerError> {
        let _: u32 = event.json()?;
        Ok(())
    }

    fn ticked(_: Tick) -> Result<(), HandlerError> {
        Err(Error::Unavailable("store down".into()))?
    }

    #[test]
    fn one_rule_for_what_is_worth_another_try() {
        for (error, retryable) in [
            (Error::BadRequest("x".into()), false),
            (Error::Forbidden("x".into()), false),
            (Error::NotFound("x".into()), false),
            (Error::Conflict("x".into()), false),
            (Error::BadGateway("x".into()), true),
            (Error::Unavailable("x".into()), true),
            (Error::GatewayTimeout("x".into()), true),
            (Error::Internal("setting `x` is missing".into()), true),
        ] {
            let handler = HandlerError::from(error.clone());
            assert_eq!(
                matches!(handler, HandlerError::Retryable(_)),
                retryable,
                "{error}"
            );
        }
    }

    #[test]
    fn topics_and_schedules_are_declared_once_with_their_handlers() {
        let subscriptions = Subscriptions::new()
            .topic("a", ok)
            .topic("b", fails)
            .schedule("nightly", "0 0 2 * * *", ticked);
        assert_eq!(subscriptions.handle_event(event("a")), Ok(()));
        assert!(matches!(
            subscriptions.handle_event(event("b")),
            Err(HandlerError::Permanent(m)) if m.contains("bad b payload")
        ));
        assert!(matches!(
            subscriptions.handle_event(event("c")),
            Err(HandlerError::Permanent(m)) if m.contains("no handler for topic c")
        ));
        let tick = Tick {
            name: "nightly".into(),
            scheduled_at: 1,
        };
        assert!(matches!(
            subscriptions.handle_schedule(tick),
            Err(HandlerError::Retryable(_))
        ));
        let described = Description::new("p", "1")
            .topic("a")
            .into_wit(&Router::new(), &subscriptions);
        assert_eq!(described.topics, ["a", "b"]);
        assert_eq!(described.schedules.len(), 1);
        assert_eq!(described.schedules[0].cron, "0 0 2 * * *");
    }
}
