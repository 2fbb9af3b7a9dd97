//! Events as Redis holds them: the field/value pairs of stream entries, retry
//! records and dead letters. Each record writes its own pairs into a command or
//! script call, and entries are read back here, so the field names live in one file.

use redis::streams::StreamId;
use redis::{FromRedisValue, ParsingError, Value};

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

/// A stream entry as read: its id, and the event it holds (`None` when its
/// fields are not an event's).
pub(super) struct ReadEntry {
    pub id: String,
    pub delivery: Option<Delivery>,
}

/// The entries of an `XREADGROUP` reply, moved out of the reply as they are:
/// the crate's `StreamReadReply` copies the whole reply before parsing it and
/// builds a map of every entry's fields, a cost per event on the bus's hot path.
/// Nil (nothing came) is no entries; RESP2 gives `[[stream, entries], ..]`,
/// RESP3 a map of stream to entries; an entry is `[id, [field, value, ..]]`.
pub(super) struct ReadReply(pub Vec<ReadEntry>);

impl FromRedisValue for ReadReply {
    fn from_redis_value_ref(value: &Value) -> Result<Self, ParsingError> {
        Self::from_redis_value(value.clone())
    }

    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let streams = match value {
            Value::Nil => return Ok(Self(Vec::new())),
            Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
            Value::Array(streams) => streams
                .into_iter()
                .map(|stream| match stream {
                    Value::Array(pair) if pair.len() == 2 => {
                        Ok(pair.into_iter().nth(1).unwrap_or_default())
                    }
                    other => Err(unexpected("[stream, entries]", &other)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(unexpected("streams", &other)),
        };
        let mut entries = Vec::new();
        for stream in streams {
            let Value::Array(read) = stream else {
                return Err(unexpected("entries", &stream));
            };
            entries.reserve(read.len());
            for entry in read {
                entries.push(read_entry(entry)?);
            }
        }
        Ok(Self(entries))
    }
}

fn read_entry(entry: Value) -> Result<ReadEntry, ParsingError> {
    let Value::Array(parts) = entry else {
        return Err(unexpected("[id, fields]", &entry));
    };
    let mut parts = parts.into_iter();
    let id = match parts.next() {
        Some(id) => redis::from_redis_value::<String>(id)?,
        None => return Err(ParsingError::from("an entry without its id".to_owned())),
    };
    let fields = match parts.next() {
        Some(Value::Array(fields)) => fields,
        // A deleted entry still pending comes with nil fields.
        Some(Value::Nil) | None => Vec::new(),
        // Anything else is not a reply this reader knows: an error leaves the
        // entry pending, never acknowledged as malformed.
        Some(other) => return Err(unexpected("an entry's fields", &other)),
    };
    Ok(ReadEntry {
        id,
        delivery: delivery_of(fields),
    })
}

/// An event from a flat `field, value, ..` list, taking the values as they are.
fn delivery_of(fields: Vec<Value>) -> Option<Delivery> {
    let (mut id, mut topic, mut payload, mut attempt, mut emitted) = (None, None, None, None, None);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Some(name), Some(bytes)) = (bytes_of(name), bytes_of(value)) else {
            continue;
        };
        match name.as_slice() {
            b"id" => id = String::from_utf8(bytes).ok(),
            b"topic" => topic = String::from_utf8(bytes).ok(),
            b"payload" => payload = Some(bytes),
            b"attempt" => attempt = number(&bytes),
            b"emitted_us" => emitted = number(&bytes),
            _ => {}
        }
    }
    Some(Delivery {
        id: id?,
        topic: topic?,
        payload: payload.unwrap_or_default(),
        attempt: attempt.unwrap_or(1),
        emitted_at_us: emitted.unwrap_or(0),
    })
}

/// A field's name or value as bytes: Redis sends bulk strings; a simple
/// string or a number is taken as its text, as `parse_delivery` takes them.
fn bytes_of(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn unexpected(expected: &str, got: &Value) -> ParsingError {
    ParsingError::from(format!(
        "unexpected stream read reply: expected {expected}, got {got:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(f, v)| [bulk(f), bulk(v)])
                    .collect(),
            ),
        ])
    }

    fn event(id: &str) -> Value {
        entry(
            "1-0",
            &[
                ("id", id),
                ("topic", "t"),
                ("payload", "x"),
                ("emitted_us", "7"),
                ("attempt", "2"),
            ],
        )
    }

    #[test]
    fn reads_both_protocols_and_nil() {
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![event("a"), event("b")]),
        ])]);
        let resp3 = Value::Map(vec![(
            bulk("s"),
            Value::Array(vec![event("a"), event("b")]),
        )]);
        for reply in [resp2, resp3] {
            let ReadReply(entries) = redis::from_redis_value(reply).unwrap();
            let ids: Vec<_> = entries
                .iter()
                .map(|e| e.delivery.as_ref().unwrap().id.as_str())
                .collect();
            assert_eq!(ids, ["a", "b"]);
            let delivery = entries[0].delivery.as_ref().unwrap();
            assert_eq!(
                (
                    entries[0].id.as_str(),
                    delivery.topic.as_str(),
                    delivery.payload.as_slice(),
                    delivery.attempt,
                    delivery.emitted_at_us
                ),
                ("1-0", "t", b"x".as_slice(), 2, 7)
            );
        }
        let ReadReply(none) = redis::from_redis_value(Value::Nil).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn an_entry_that_is_no_event_is_kept_without_one_and_a_bad_shape_is_an_error() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                entry("2-0", &[("topic", "t")]),
                Value::Array(vec![bulk("3-0"), Value::Nil]),
            ]),
        ])]);
        let ReadReply(entries) = redis::from_redis_value(reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.delivery.is_none()));
        assert_eq!(entries[1].id, "3-0");
        assert!(redis::from_redis_value::<ReadReply>(Value::Int(3)).is_err());
        // Fields in a shape Redis does not send: an error (the entry stays
        // pending), not an entry without an event (which would be dropped).
        let odd = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![Value::Array(vec![bulk("4-0"), Value::Int(1)])]),
        ])]);
        assert!(redis::from_redis_value::<ReadReply>(odd).is_err());
        // A number where a bulk string is expected is read as its text.
        let numeric = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![
                    bulk("id"),
                    bulk("e"),
                    bulk("topic"),
                    bulk("t"),
                    bulk("attempt"),
                    Value::Int(3),
                ]),
            ])]),
        ])]);
        let ReadReply(entries) = redis::from_redis_value(numeric).unwrap();
        assert_eq!(entries[0].delivery.as_ref().unwrap().attempt, 3);
    }

    #[test]
    fn reads_what_parse_delivery_reads() {
        // The two readers (this one for reads, `parse_delivery` for claims) agree.
        let ReadReply(entries) = redis::from_redis_value(Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![event("a")]),
        ])]))
        .unwrap();
        let stream_id = StreamId {
            id: "1-0".into(),
            map: [
                ("id", "a"),
                ("topic", "t"),
                ("payload", "x"),
                ("emitted_us", "7"),
                ("attempt", "2"),
            ]
            .into_iter()
            .map(|(f, v)| (f.to_owned(), bulk(v)))
            .collect(),
            ..StreamId::default()
        };
        let claimed = parse_delivery(&stream_id).unwrap();
        let read = entries[0].delivery.as_ref().unwrap();
        assert_eq!(
            (
                &read.id,
                &read.topic,
                &read.payload,
                read.attempt,
                read.emitted_at_us
            ),
            (
                &claimed.id,
                &claimed.topic,
                &claimed.payload,
                claimed.attempt,
                claimed.emitted_at_us
            )
        );
    }
}
