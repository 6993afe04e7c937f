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
}

impl RoutingKey {
    /// The key as bound on the exchange.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
        }
    }
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

impl OutboxEvent {
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
    use crate::{CustomerId, Money, OrderIdGenerator, OrderLine, OrderStatus, Quantity, Sku};

    #[test]
    fn order_created_carries_the_event_id_and_everything_a_consumer_needs() {
        let ids = OrderIdGenerator::new();
        let now = UnixMillis(1_790_000_000_000);
        let line = OrderLine::priced(
            Sku::parse("sku-1").unwrap(),
            Quantity::parse(2).unwrap(),
            Money::parse("price", "19.99").unwrap(),
        )
        .unwrap();
        let order = Order {
            id: ids.next(now),
            customer_id: CustomerId::parse("c-1").unwrap(),
            total: line.line_total,
            lines: vec![line],
            status: OrderStatus::Accepted,
            created_at: now,
            idempotency_key: None,
        };
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
    }
}
