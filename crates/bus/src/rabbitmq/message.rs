//! How an event is laid out in an AMQP message: the body is the event's JSON, the event id is
//! the `message_id`, and ordermill's own bookkeeping travels in `x-ordermill-*` headers.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use ordermill_core::UnixMillis;
use ordermill_core::ports::Envelope;
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

/// Reads a message; `None` when it is not one of ours (no event id or a body that is not
/// UTF-8).
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
