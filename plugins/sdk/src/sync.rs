//! How one record's sync (an event's work against upstreams) did not finish,
//! by one rule for every plugin: worth another try, never going to work, or
//! not this sync's turn. `vmh-webhooks` and `vermieterhelden` both sync this way.

use crate::http::HttpResponse;
use crate::{Error, HandlerError, StoreError};

/// Why a sync did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Passes with time or an operator (an upstream down, a 5xx, a 401).
    Retryable(String),
    /// The data's fault: retrying will not help (a 400 or 422).
    Permanent(String),
    /// Another sync of the same record runs: not a failure of this one.
    Busy(String),
}

impl Failure {
    /// For metrics: `retry` or `failed`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Retryable(_) | Failure::Busy(_) => "retry",
            Failure::Permanent(_) => "failed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Retryable(m) | Failure::Permanent(m) | Failure::Busy(m) => m,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(m) => Failure::Retryable(format!("store unavailable: {m}")),
            StoreError::Invalid(m) => Failure::Permanent(format!("store refused: {m}")),
        }
    }
}

/// The same rule as `HandlerError`'s: refusals of the request are permanent,
/// upstream and host trouble retryable.
impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match HandlerError::from(error) {
            HandlerError::Permanent(m) => Failure::Permanent(m),
            HandlerError::Retryable(m) => Failure::Retryable(m),
        }
    }
}

impl From<Failure> for HandlerError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Retryable(m) | Failure::Busy(m) => HandlerError::Retryable(m),
            Failure::Permanent(m) => HandlerError::Permanent(m),
        }
    }
}

/// An upstream's refusal of `what`: 401, 403, 408, 429 and 5xx pass with time
/// or an operator (credentials, rights, load); any other refusal is the
/// data's and will not pass by retrying. The message carries the status,
/// EspoCRM's `X-Status-Reason` when there is one, and the start of the body.
pub fn refused(system: &str, what: &str, answer: &HttpResponse) -> Failure {
    let reason = answer
        .header("x-status-reason")
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default();
    let message = format!(
        "{system} answered {}{reason} to {what}: {}",
        answer.status,
        answer.excerpt(300)
    );
    match answer.status {
        401 | 403 | 408 | 429 | 500..=599 => Failure::Retryable(message),
        _ => Failure::Permanent(message),
    }
}

/// The error of a REST kind's interface (`advoware`, `espocrm`, …): whether
/// it passes with time.
pub trait CallError: std::fmt::Debug {
    fn passes(&self) -> bool;
}

impl CallError for crate::bindings::bitbylaw::plugin::types::RestError {
    fn passes(&self) -> bool {
        use crate::bindings::bitbylaw::plugin::types::RestError as E;
        match self {
            E::NotConfigured(_) | E::InvalidRequest(_) | E::TooLarge(_) => false,
            E::Unauthorized(_) | E::Timeout | E::Connection(_) | E::Unavailable(_) => true,
        }
    }
}

impl CallError for crate::espocrm::EspoCrmError {
    fn passes(&self) -> bool {
        use crate::espocrm::EspoCrmError as E;
        match self {
            E::NotConfigured(_) | E::InvalidRequest(_) | E::TooLarge(_) => false,
            E::Timeout | E::Connection(_) => true,
        }
    }
}

/// A REST call of `what` that got no answer: no account, a request the host
/// refused or an answer too large are permanent; time-outs, connection and
/// sign-in trouble pass.
pub fn unanswered(system: &str, what: &str, error: impl CallError) -> Failure {
    let message = format!("{system}, {what}: {error:?}");
    if error.passes() {
        Failure::Retryable(message)
    } else {
        Failure::Permanent(message)
    }
}
