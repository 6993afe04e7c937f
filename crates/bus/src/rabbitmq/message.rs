//! How events are laid out in AMQP messages.
//!
//! - One event: the body is the event's JSON, the event id is the `message_id`, and
//!   ordermill's own bookkeeping travels in `x-ordermill-*` headers. Retries, dead letters
//!   and replays always travel this way.
//! - Several events of one routing key (a batch): content type [`BATCH_CONTENT_TYPE`], body
//!   `[{"id": "<event id>", "payload": <the event's JSON>}, ...]`, `message_id` the first
//!   event's id, [`EVENTS`] the count. Only first deliveries travel batched.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use ordermill_core::UnixMillis;
use ordermill_core::ports::Envelope;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Deliveries to this queue so far, counting this one. Our own count: the broker's
/// redelivered flag says nothing about our retries, and its `x-death` counts reset on replay.
pub(crate) const ATTEMPT: &str = "x-ordermill-attempt";
/// The last error (retries and dead letters).
pub(crate) const ERROR: &str = "x-ordermill-error";
/// The event's routing key: a retried or replayed copy travels under the queue's name.
pub(crate) const ROUTING_KEY: &str = "x-ordermill-routing-key";
/// When the message was dead-lettered, in Unix milliseconds.
pub(crate) const DIED_AT: &str = "x-ordermill-died-at";

/// The content type of a message carrying several events.
pub(crate) const BATCH_CONTENT_TYPE: &str = "application/vnd.ordermill.batch+json";
/// How many events a batch message carries (for people reading the queue; the body says it).
pub(crate) const EVENTS: &str = "x-ordermill-events";

#[derive(Serialize, Deserialize)]
struct BatchItem<'a> {
    id: Uuid,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// The body and properties of one message carrying `events` (at least two); `None` when a
/// payload is not JSON (an event from elsewhere): then each goes alone, as it came.
pub(crate) fn batch(events: &[&Envelope]) -> Option<(Vec<u8>, BasicProperties)> {
    let first = events.first()?;
    let mut items = Vec::with_capacity(events.len());
    for event in events {
        let payload = serde_json::from_str::<&RawValue>(&event.payload).ok()?;
        items.push(BatchItem { id: event.event_id, payload });
    }
    let body = serde_json::to_vec(&items).ok()?;
    let mut headers = FieldTable::default();
    headers.insert(EVENTS.into(), AMQPValue::LongLongInt(events.len() as i64));
    let properties =
        properties(first.event_id, Some(headers)).with_content_type(BATCH_CONTENT_TYPE.into());
    Some((body, properties))
}

/// Persistent JSON with the event id, plus `headers` when there are any.
pub(crate) fn properties(event_id: Uuid, headers: Option<FieldTable>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(event_id.to_string()));
    match headers {
        Some(headers) => properties.with_headers(headers),
        None => properties,
    }
}

/// Headers of a copy sent back to a queue (retry, replay).
pub(crate) fn requeue_headers(attempt: u32, routing_key: &str, error: Option<&str>) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    headers.insert(ROUTING_KEY.into(), AMQPValue::LongString(LongString::from(routing_key)));
    if let Some(error) = error {
        headers.insert(ERROR.into(), AMQPValue::LongString(LongString::from(error)));
    }
    headers
}

/// Headers of a dead letter.
pub(crate) fn dead_headers(
    attempts: u32,
    routing_key: &str,
    error: &str,
    at: UnixMillis,
) -> FieldTable {
    let mut headers = requeue_headers(attempts, routing_key, Some(error));
    headers.insert(DIED_AT.into(), AMQPValue::LongLongInt(at.0));
    headers
}

/// What ordermill reads back from a received message.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) envelope: Envelope,
    pub(crate) attempt: u32,
    pub(crate) error: Option<String>,
    pub(crate) died_at: Option<UnixMillis>,
}

/// Reads a message into its events (one, or a batch's); `None` when it is not one of ours (no
/// event id, a body that is not UTF-8, a batch that does not parse).
pub(crate) fn read_all(
    properties: &BasicProperties,
    routing_key: &str,
    data: &[u8],
) -> Option<Vec<Incoming>> {
    let batched =
        properties.content_type().as_ref().is_some_and(|t| t.as_str() == BATCH_CONTENT_TYPE);
    if !batched {
        return read(properties, routing_key, data).map(|one| vec![one]);
    }
    let items: Vec<BatchItem<'_>> = serde_json::from_slice(data).ok()?;
    if items.is_empty() {
        return None;
    }
    let routing_key: Arc<str> = Arc::from(routing_key);
    Some(
        items
            .into_iter()
            .map(|item| Incoming {
                envelope: Envelope {
                    event_id: item.id,
                    routing_key: routing_key.clone(),
                    payload: Arc::from(item.payload.get()),
                },
                attempt: 1,
                error: None,
                died_at: None,
            })
            .collect(),
    )
}

/// Reads a one-event message; `None` when it is not one of ours (no event id or a body that
/// is not UTF-8).
pub(crate) fn read(
    properties: &BasicProperties,
    routing_key: &str,
    data: &[u8],
) -> Option<Incoming> {
    let event_id =
        properties.message_id().as_ref().and_then(|id| Uuid::parse_str(id.as_str()).ok())?;
    let payload = std::str::from_utf8(data).ok()?;
    let headers = properties.headers().as_ref();
    let header = |name: &str| headers.and_then(|h| h.inner().get(name));
    let attempt =
        header(ATTEMPT).and_then(integer).and_then(|n| u32::try_from(n).ok()).unwrap_or(1).max(1);
    let routing_key = header(ROUTING_KEY).and_then(text).unwrap_or_else(|| routing_key.to_owned());
    Some(Incoming {
        envelope: Envelope {
            event_id,
            routing_key: Arc::from(routing_key),
            payload: Arc::from(payload),
        },
        attempt,
        error: header(ERROR).and_then(text),
        died_at: header(DIED_AT).and_then(integer).map(UnixMillis),
    })
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            routing_key: Arc::from("order.created"),
            payload: Arc::from(payload),
        }
    }

    #[test]
    fn a_batch_reads_back_as_its_events_in_order() {
        let events = [event(r#"{"a":1}"#), event(r#"{"b":"二"}"#), event("[1, 2]")];
        let refs: Vec<&Envelope> = events.iter().collect();
        let (body, properties) = batch(&refs).expect("JSON payloads batch");
        let read = read_all(&properties, "order.created", &body).expect("ours");
        let got: Vec<Envelope> = read.iter().map(|i| i.envelope.clone()).collect();
        assert_eq!(got, events);
        assert!(read.iter().all(|i| i.attempt == 1 && i.error.is_none()));
    }

    #[test]
    fn a_payload_that_is_not_json_is_not_batched() {
        let events = [event("{}"), event("not json")];
        let refs: Vec<&Envelope> = events.iter().collect();
        assert!(batch(&refs).is_none());
    }

    #[test]
    fn a_batch_that_does_not_parse_is_not_ours() {
        let events = [event("{}"), event("{}")];
        let refs: Vec<&Envelope> = events.iter().collect();
        let (_, properties) = batch(&refs).expect("batch");
        assert!(read_all(&properties, "order.created", b"[{\"id\": 1}]").is_none());
        assert!(read_all(&properties, "order.created", b"[]").is_none());
        // Without the batch content type the same bytes are one event's body.
        let one = properties.clone().with_content_type("application/json".into());
        assert_eq!(read_all(&one, "order.created", b"[]").map(|v| v.len()), Some(1));
    }
}
