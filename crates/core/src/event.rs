//! Events an order emits. Intake writes them to the outbox in the same transaction as the
//! order, so an accepted order always has its event.

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

/// One outbox row: an event waiting to be relayed to the bus.
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
