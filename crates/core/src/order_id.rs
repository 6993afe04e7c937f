//! Time-ordered order ids (UUIDv7).

use std::fmt;
use std::sync::Mutex;

use serde::{Serialize, Serializer};
use uuid::{ContextV7, Timestamp, Uuid};

use crate::clock::UnixMillis;
use crate::error::ValidationError;

/// An order id: a UUIDv7, so ids sort by creation time and index well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(Uuid);

impl OrderId {
    /// Parses the hyphenated text form.
    ///
    /// # Errors
    /// [`ValidationError::InvalidOrderId`] when the text is not a UUID.
    pub fn parse(text: &str) -> Result<OrderId, ValidationError> {
        Uuid::try_parse(text)
            .map(OrderId)
            .map_err(|_| ValidationError::InvalidOrderId(text.chars().take(80).collect()))
    }

    /// Wraps a UUID read back from storage.
    pub fn from_uuid(uuid: Uuid) -> OrderId {
        OrderId(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The id of something that happens to this order once per `what` (a payment callback,
    /// its deadline), the same on every node and every retry: a redelivery of that thing is
    /// recognised by the consumer records like any event's. It is a UUIDv7 carrying the
    /// order's own time, so stores that keep records by id time keep it with the order; the
    /// rest is a hash of the order id and `what` (UUIDv5).
    pub fn derived_event_id(&self, what: &str) -> Uuid {
        let mut bytes = *Uuid::new_v5(&self.0, what.as_bytes()).as_bytes();
        bytes[..6].copy_from_slice(&self.0.as_bytes()[..6]);
        uuid::Builder::from_bytes(bytes)
            .with_version(uuid::Version::SortRand)
            .with_variant(uuid::Variant::RFC4122)
            .into_uuid()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl Serialize for OrderId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The lowest UUIDv7 of millisecond `at` (the time bits, the rest zero): every id made at `at`
/// or later sorts at or above it, every earlier one below, so a time bound is an id bound.
pub fn first_id_at(at: UnixMillis) -> Uuid {
    let ms = u64::try_from(at.0).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// Makes ids that increase within this process even when many are made in one millisecond
/// (the UUIDv7 counter), from whatever clock the caller passes.
#[derive(Debug, Default)]
pub struct OrderIdGenerator {
    // ContextV7 keeps its counter in `Cell`s; the mutex makes it shareable. It is held for
    // the few nanoseconds of one id.
    context: Mutex<ContextV7>,
}

impl OrderIdGenerator {
    /// A generator with a fresh counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new id stamped with `now`.
    pub fn next(&self, now: UnixMillis) -> OrderId {
        let ms = u64::try_from(now.0).unwrap_or(0);
        let context = self.context.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ts = Timestamp::from_unix(&*context, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
        OrderId(Uuid::new_v7(ts))
    }

    /// A random-looking but time-ordered id for an event.
    pub fn next_uuid(&self, now: UnixMillis) -> Uuid {
        self.next(now).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_id_at_bounds_the_ids_of_its_millisecond_from_below() {
        let ids = OrderIdGenerator::new();
        let at = UnixMillis(1_700_000_000_123);
        let before = ids.next_uuid(UnixMillis(at.0 - 1));
        let within = ids.next_uuid(at);
        assert!(before < first_id_at(at) && first_id_at(at) <= within);
        assert!(within < first_id_at(UnixMillis(at.0 + 1)));
        assert_eq!(first_id_at(UnixMillis(-5)), Uuid::nil(), "before 1970 is the lowest id");
    }

    #[test]
    fn a_derived_event_id_is_stable_per_name_and_keeps_the_orders_time() {
        let ids = OrderIdGenerator::new();
        let order = ids.next(UnixMillis(1_700_000_000_000));
        let paid = order.derived_event_id("callback:pay-1:paid");
        assert_eq!(paid, order.derived_event_id("callback:pay-1:paid"));
        assert_ne!(paid, order.derived_event_id("callback:pay-1:failed"));
        let other = ids.next(UnixMillis(1_700_000_000_000));
        assert_ne!(paid, other.derived_event_id("callback:pay-1:paid"));
        assert_eq!(paid.get_version_num(), 7);
        assert_eq!(paid.get_timestamp(), order.as_uuid().get_timestamp());
    }

    #[test]
    fn ids_made_in_the_same_millisecond_still_increase() {
        let ids = OrderIdGenerator::new();
        let mut last = ids.next(UnixMillis(1_700_000_000_000));
        for _ in 0..10_000 {
            let next = ids.next(UnixMillis(1_700_000_000_000));
            assert!(next > last);
            last = next;
        }
    }

    #[test]
    fn ids_follow_the_clock_and_round_trip_as_text() {
        let ids = OrderIdGenerator::new();
        let early = ids.next(UnixMillis(1_700_000_000_000));
        let late = ids.next(UnixMillis(1_700_000_001_000));
        assert!(late > early);
        assert_eq!(late.as_uuid().get_version_num(), 7);
        assert_eq!(OrderId::parse(&late.to_string()).unwrap(), late);
        assert_eq!(OrderId::parse("nope").unwrap_err().code(), "invalid_order_id");
    }
}
