//! Events as Redis holds them: the field/value pairs of stream entries, retry
//! records and dead letters. Each record writes its own pairs into a command or
//! script call, and entries are read back here, so the field names live in one file.

use redis::streams::StreamId;

use super::super::delivery::Delivery;
use super::super::{DeadLetter, payload_text};

/// Where a record's field/value pairs go: a command (`XADD`) or a script call.
pub(super) trait Args {
    fn push<T: redis::ToRedisArgs>(&mut self, value: T);
}

impl Args for redis::Cmd {
    fn push<T: redis::ToRedisArgs>(&mut self, value: T) {
        self.arg(value);
    }
}

impl Args for redis::ScriptInvocation<'_> {
    fn push<T: redis::ToRedisArgs>(&mut self, value: T) {
        self.arg(value);
    }
}

/// An event as a stream entry or retry record holds it.
pub(super) struct EventRecord<'a> {
    pub id: &'a str,
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub emitted_us: u64,
    /// The attempt this entry will be delivered as.
    pub attempt: u32,
}

impl<'a> EventRecord<'a> {
    /// The record of an event being delivered, as this attempt.
    pub fn of(delivery: &'a Delivery) -> Self {
        Self {
            id: &delivery.id,
            topic: &delivery.topic,
            payload: &delivery.payload,
            emitted_us: delivery.emitted_at_us,
            attempt: delivery.attempt,
        }
    }

    pub fn write(&self, args: &mut impl Args) {
        self.write_event(args);
        args.push("attempt");
        args.push(self.attempt);
    }

    /// The fields a dead letter keeps too.
    fn write_event(&self, args: &mut impl Args) {
        args.push("id");
        args.push(self.id);
        args.push("topic");
        args.push(self.topic);
        args.push("payload");
        args.push(self.payload);
        args.push("emitted_us");
        args.push(self.emitted_us);
    }
}

/// A dead letter: the event, whose subscriber gave up on it, and why.
pub(super) struct DeadRecord<'a> {
    /// The event as last delivered; its `attempt` is the count of attempts made.
    pub event: EventRecord<'a>,
    pub plugin: &'a str,
    pub error: &'a str,
    pub failed_at_ms: u64,
}

impl DeadRecord<'_> {
    pub fn write(&self, args: &mut impl Args) {
        self.event.write_event(args);
        args.push("plugin");
        args.push(self.plugin);
        args.push("attempts");
        args.push(self.event.attempt);
        args.push("error");
        args.push(self.error);
        args.push("failed_at");
        args.push(self.failed_at_ms);
    }
}

pub(super) fn field_bytes(entry: &StreamId, name: &str) -> Vec<u8> {
    entry
        .map
        .get(name)
        .and_then(|value| redis::from_redis_value_ref::<Vec<u8>>(value).ok())
        .unwrap_or_default()
}

fn field_string(entry: &StreamId, name: &str) -> Option<String> {
    entry
        .map
        .get(name)
        .and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
}

pub(super) fn field_number<T: std::str::FromStr>(entry: &StreamId, name: &str) -> Option<T> {
    field_string(entry, name)?.parse().ok()
}

pub(super) fn parse_delivery(entry: &StreamId) -> Option<Delivery> {
    Some(Delivery {
        id: field_string(entry, "id")?,
        topic: field_string(entry, "topic")?,
        payload: field_bytes(entry, "payload"),
        attempt: field_number(entry, "attempt").unwrap_or(1),
        emitted_at_us: field_number(entry, "emitted_us").unwrap_or(0),
    })
}

pub(super) fn dead_letter(entry: &StreamId) -> DeadLetter {
    let payload = field_bytes(entry, "payload");
    DeadLetter {
        id: entry.id.clone(),
        event_id: field_string(entry, "id").unwrap_or_default(),
        plugin: field_string(entry, "plugin").unwrap_or_default(),
        topic: field_string(entry, "topic").unwrap_or_default(),
        attempts: field_number(entry, "attempts").unwrap_or(0),
        error: field_string(entry, "error").unwrap_or_default(),
        emitted_at: field_number::<u64>(entry, "emitted_us").unwrap_or(0) / 1000,
        failed_at: field_number(entry, "failed_at").unwrap_or(0),
        payload: payload_text(&payload),
        payload_bytes: payload.len(),
    }
}
