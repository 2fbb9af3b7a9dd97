//! One delivery of an event to one plugin, and what to do next: done, retry
//! later, or give up. Shared by both backends so they decide alike.

use std::time::Duration;

use crate::capabilities::wit_handler as wit;
use crate::config::SubscriptionSettings;
use crate::runtime::LoadedPlugin;

/// An event on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// Microseconds since the Unix epoch (plugins see milliseconds).
    pub emitted_at_us: u64,
}

/// What happens to an event after a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// Deliver again after this long, as attempt `attempt + 1`.
    Retry {
        after: Duration,
        error: String,
    },
    /// Permanent failure, or out of attempts: to the dead letters.
    Dead {
        error: String,
    },
}

/// Calls the plugin's event handler and decides, with one access line
/// (topic, attempt, outcome, time). A trap or a deadline hit counts as
/// retryable: the next instance may well succeed.
pub async fn deliver(
    plugin: &LoadedPlugin,
    delivery: &Delivery,
    settings: &SubscriptionSettings,
) -> Outcome {
    let started = tokio::time::Instant::now();
    let outcome = decide(plugin, delivery, settings).await;
    let context = plugin.context();
    tracing::info!(
        target: crate::telemetry::ACCESS,
        tenant = %context.tenant,
        plugin = %context.name,
        topic = %delivery.topic,
        event_id = %delivery.id,
        attempt = delivery.attempt,
        outcome = match outcome {
            Outcome::Done => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
        },
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "event"
    );
    outcome
}

async fn decide(
    plugin: &LoadedPlugin,
    delivery: &Delivery,
    settings: &SubscriptionSettings,
) -> Outcome {
    let event = wit::Event {
        id: delivery.id.clone(),
        topic: delivery.topic.clone(),
        payload: delivery.payload.clone(),
        attempt: delivery.attempt,
        emitted_at: delivery.emitted_at_us / 1000,
    };
    let context = plugin.context();
    let failure = match plugin.handle_event(event, settings.max_attempts).await {
        Ok(Ok(())) => return Outcome::Done,
        Ok(Err(wit::HandlerError::Permanent(error))) => {
            tracing::warn!(tenant = %context.tenant, plugin = %context.name, topic = %delivery.topic, event_id = %delivery.id, %error, "event failed permanently");
            return Outcome::Dead { error };
        }
        Ok(Err(wit::HandlerError::Retryable(error))) => error,
        Err(error) => error.to_string(),
    };
    if delivery.attempt >= settings.max_attempts {
        tracing::warn!(tenant = %context.tenant, plugin = %context.name, topic = %delivery.topic, event_id = %delivery.id, attempts = delivery.attempt, error = %failure, "event out of attempts");
        return Outcome::Dead {
            error: format!("{failure} (after {} attempts)", delivery.attempt),
        };
    }
    let after = backoff(settings, delivery.attempt, fastrand::f64());
    tracing::info!(tenant = %context.tenant, plugin = %context.name, topic = %delivery.topic, event_id = %delivery.id, attempt = delivery.attempt, retry_in = ?after, error = %failure, "event failed; will retry");
    Outcome::Retry {
        after,
        error: failure,
    }
}

/// The wait after failed attempt `attempt` (1-based): `base · factor^(attempt-1)`,
/// capped, then varied by ±`jitter` using `random` in `[0, 1)`.
pub fn backoff(settings: &SubscriptionSettings, attempt: u32, random: f64) -> Duration {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = settings.backoff_base_ms as f64 * settings.backoff_factor.powi(exponent);
    let capped = base.min(settings.backoff_max_ms as f64);
    let varied = capped * (1.0 + settings.backoff_jitter * (2.0 * random - 1.0));
    Duration::from_millis(varied.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SubscriptionSettings {
        SubscriptionSettings {
            max_attempts: 5,
            backoff_base_ms: 100,
            backoff_factor: 2.0,
            backoff_max_ms: 1_000,
            backoff_jitter: 0.2,
            concurrency: 1,
        }
    }

    #[test]
    fn backoff_grows_then_caps() {
        let s = settings();
        let middle: Vec<u64> = (1..=6)
            .map(|n| backoff(&s, n, 0.5).as_millis() as u64)
            .collect();
        assert_eq!(middle, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_share_and_keeps_growth() {
        let s = settings();
        assert_eq!(backoff(&s, 1, 0.0).as_millis(), 80);
        assert_eq!(backoff(&s, 1, 0.999_999).as_millis(), 119);
        // The slowest second wait is still longer than the fastest first one... and the
        // fastest second wait longer than the slowest first one, with jitter below 1/3.
        assert!(backoff(&s, 2, 0.0) > backoff(&s, 1, 0.999_999));
    }
}
