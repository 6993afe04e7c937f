//! Events an order emits. Intake writes an outbox row (event id, routing key) in the same
//! transaction as the order, so an accepted order always has its event; the event's JSON body
//! is built from the order when the event is relayed.

use serde::Serialize;
use uuid::Uuid;

use crate::clock::UnixMillis;
use crate::order::Order;

/// The routing key of an event on the `orders` topic exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingKey {
    /// An order was accepted and is durable.
    OrderCreated,
    /// The gateway charged an order.
    PaymentSucceeded,
    /// The gateway declined an order.
    PaymentFailed,
    /// Stock deducted and payment succeeded.
    OrderConfirmed,
    /// The order was cancelled (stock is being released).
    OrderCancelled,
    /// A customer joined a group-buy deal: their order is durable and waits for the group.
    DealJoined,
    /// A deal's group filled: one event per member order, which now goes to payment.
    DealCompleted,
    /// A deal's deadline passed unfilled: one event per member order, now cancelled.
    DealExpired,
    /// Money arrived for an order already cancelled: it must be given back.
    PaymentRefundRequired,
    /// A merchant asked for a report (报表); not about an order: its body names the report.
    ReportRequested,
}

/// A set of routing keys (one bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoutingKeys(u16);

impl RoutingKeys {
    /// No key.
    pub const NONE: RoutingKeys = RoutingKeys(0);

    /// The keys of [`RoutingKey::ALL`] for which `pick` says yes.
    pub fn of(pick: impl Fn(RoutingKey) -> bool) -> RoutingKeys {
        RoutingKeys(
            RoutingKey::ALL
                .iter()
                .enumerate()
                .filter(|(_, key)| pick(**key))
                .fold(0, |bits, (i, _)| bits | (1 << i)),
        )
    }

    /// Whether `key` is in the set.
    pub fn contains(self, key: RoutingKey) -> bool {
        RoutingKey::ALL.iter().position(|k| *k == key).is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

impl RoutingKey {
    /// Every key, for topology checks.
    pub const ALL: [RoutingKey; 10] = [
        Self::OrderCreated,
        Self::PaymentSucceeded,
        Self::PaymentFailed,
        Self::OrderConfirmed,
        Self::OrderCancelled,
        Self::DealJoined,
        Self::DealCompleted,
        Self::DealExpired,
        Self::PaymentRefundRequired,
        Self::ReportRequested,
    ];

    /// The key as bound on the exchange.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
            Self::PaymentSucceeded => "payment.succeeded",
            Self::PaymentFailed => "payment.failed",
            Self::OrderConfirmed => "order.confirmed",
            Self::OrderCancelled => "order.cancelled",
            Self::DealJoined => "deal.joined",
            Self::DealCompleted => "deal.completed",
            Self::DealExpired => "deal.expired",
            Self::PaymentRefundRequired => "payment.refund_required",
            Self::ReportRequested => "report.requested",
        }
    }

    /// Reads a key back; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<RoutingKey> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Whether a topic binding pattern matches a routing key, AMQP style: words separated by
/// `.`, `*` matches exactly one word, `#` matches zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

/// The fields every event body has; consumers read these first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct EventHeader {
    /// The event's id.
    pub event_id: Uuid,
    /// The order it is about.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// Why, on events that carry one (a decline, a cancellation: `payment_timeout`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// An event as relayed to the bus: id, routing key and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique id; consumers deduplicate on it.
    pub event_id: Uuid,
    /// Routing key.
    pub routing_key: RoutingKey,
    /// The JSON body consumers receive.
    pub payload: String,
    /// When it was created.
    pub created_at: UnixMillis,
}

#[derive(Serialize)]
struct OrderCreatedPayload<'a> {
    event_id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    order_id: String,
    customer_id: &'a str,
    total: String,
    items: &'a [crate::order::OrderLine],
    created_at: UnixMillis,
}

#[derive(Serialize)]
struct OrderChangedPayload<'a> {
    event_id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    order_id: String,
    customer_id: &'a str,
    total: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    at: UnixMillis,
}

/// The body of `deal.*` events: about one member's order, so every consumer keeps its
/// per-order, per-event exactly-once record; `deal_id` ties the members together.
#[derive(Serialize)]
struct DealOrderPayload<'a> {
    event_id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    deal_id: crate::deal::DealId,
    order_id: String,
    customer_id: &'a str,
    total: String,
    items: &'a [crate::order::OrderLine],
    at: UnixMillis,
}

impl OutboxEvent {
    /// A `deal.*` event about one member's order of deal `deal_id`.
    pub fn deal_order(
        order: &Order,
        key: RoutingKey,
        deal_id: crate::deal::DealId,
        event_id: Uuid,
        at: UnixMillis,
    ) -> OutboxEvent {
        let payload = DealOrderPayload {
            event_id,
            kind: key.as_str(),
            deal_id,
            order_id: order.id.to_string(),
            customer_id: order.customer_id.as_str(),
            total: order.total.to_string(),
            items: &order.lines,
            at,
        };
        OutboxEvent {
            event_id,
            routing_key: key,
            payload: serde_json::to_string(&payload)
                .expect("serializing strings, integers and derived structs cannot fail"),
            created_at: at,
        }
    }

    /// An event about an order's progress (`payment.*`, `order.confirmed`, `order.cancelled`).
    pub fn order_changed(
        order: &Order,
        key: RoutingKey,
        event_id: Uuid,
        at: UnixMillis,
        reason: Option<&str>,
    ) -> OutboxEvent {
        let payload = OrderChangedPayload {
            event_id,
            kind: key.as_str(),
            order_id: order.id.to_string(),
            customer_id: order.customer_id.as_str(),
            total: order.total.to_string(),
            reason,
            at,
        };
        OutboxEvent {
            event_id,
            routing_key: key,
            payload: serde_json::to_string(&payload)
                .expect("serializing strings, integers and derived structs cannot fail"),
            created_at: at,
        }
    }

    /// Reads the common fields of an event body.
    ///
    /// # Errors
    /// When the body is not JSON or lacks `event_id`, `order_id` or `customer_id`.
    pub fn header(payload: &str) -> Result<EventHeader, serde_json::Error> {
        serde_json::from_str(payload)
    }

    /// The `order.created` event for an accepted order.
    pub fn order_created(order: &Order, event_id: Uuid) -> OutboxEvent {
        let payload = OrderCreatedPayload {
            event_id,
            kind: RoutingKey::OrderCreated.as_str(),
            order_id: order.id.to_string(),
            customer_id: order.customer_id.as_str(),
            total: order.total.to_string(),
            items: &order.lines,
            created_at: order.created_at,
        };
        OutboxEvent {
            event_id,
            routing_key: RoutingKey::OrderCreated,
            payload: serde_json::to_string(&payload)
                .expect("serializing strings, integers and derived structs cannot fail"),
            created_at: order.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OrderIdGenerator;
    use crate::test_support::accepted_order;

    #[test]
    fn order_created_carries_the_event_id_and_everything_a_consumer_needs() {
        let ids = OrderIdGenerator::new();
        let now = UnixMillis(1_790_000_000_000);
        let order = accepted_order(&ids, now, 2, "19.99");
        let event_id = ids.next_uuid(now);
        let event = OutboxEvent::order_created(&order, event_id);
        let body: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(event.routing_key.as_str(), "order.created");
        assert_eq!(body["event_id"], event_id.to_string());
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["order_id"], order.id.to_string());
        assert_eq!(body["total"], "39.98");
        assert_eq!(body["items"][0]["sku"], "sku-1");
        assert_eq!(body["items"][0]["quantity"], 2);
        let header = OutboxEvent::header(&event.payload).unwrap();
        assert_eq!(header.event_id, event_id);
        assert_eq!(header.order_id, order.id.to_string());
    }

    #[test]
    fn topic_patterns_match_like_amqp() {
        assert!(topic_matches("order.created", "order.created"));
        assert!(!topic_matches("order.created", "order.cancelled"));
        assert!(topic_matches("order.*", "order.cancelled"));
        assert!(!topic_matches("order.*", "order.cancelled.late"));
        assert!(topic_matches("#", "payment.failed"));
        assert!(topic_matches("payment.#", "payment"));
        assert!(topic_matches("*.failed", "payment.failed"));
        assert!(!topic_matches("*.failed", "failed"));
        assert!(topic_matches("deal.#.x", "deal.x"));
        assert!(topic_matches("deal.#.x", "deal.a.b.x"));
        assert!(!topic_matches("deal.#.x", "deal.a.b"));
        assert!(topic_matches("", ""));
        for key in RoutingKey::ALL {
            assert_eq!(RoutingKey::parse(key.as_str()), Some(key));
        }
    }
}
