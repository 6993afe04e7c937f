//! `inventory`: deducts stock of record on `order.created` / `deal.joined` and gives the units
//! back on `payment.failed` / `deal.expired`, in the store and the hot-stock cache.

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::ports::Delivery;
use ordermill_core::{Fact, OrderId, OutboxEvent};

use super::{Handler, Outcome, Pipeline, settle};

/// The inventory consumer.
pub struct Inventory {
    pipeline: Pipeline,
    name: Arc<str>,
}

impl Inventory {
    /// A consumer on the `inventory` queue.
    pub fn new(pipeline: Pipeline) -> Self {
        Inventory { pipeline, name: Arc::from("inventory") }
    }
}

#[async_trait]
impl Handler for Inventory {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Ack; batch.len()];
        let mut effects = settle::Effects::default();
        for (i, delivery) in batch.iter().enumerate() {
            let fact = match &*delivery.envelope.routing_key {
                "order.created" | "deal.joined" => Fact::StockDeducted,
                "payment.failed" | "deal.expired" => Fact::StockReleased,
                other => {
                    outcomes[i] = Outcome::Dead(format!(
                        "inventory does not handle {other:?} events; fix the bindings"
                    ));
                    continue;
                }
            };
            let order_id = match OutboxEvent::header(&delivery.envelope.payload)
                .map_err(|e| e.to_string())
                .and_then(|h| OrderId::parse(&h.order_id).map_err(|e| e.to_string()))
            {
                Ok(id) => id,
                Err(error) => {
                    outcomes[i] = Outcome::Dead(format!("malformed event: {error}"));
                    continue;
                }
            };
            effects.push(
                i,
                settle::delivered(&self.pipeline, &self.name, delivery, order_id, Some(fact), None),
            );
        }
        effects.commit(&self.pipeline, &mut outcomes).await;
        outcomes
    }
}
