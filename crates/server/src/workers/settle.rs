//! What happens after a batch of effects committed: publish what they emitted, give released
//! units back to the hot-stock cache, refresh the read cache, count confirmations.

use std::sync::Arc;

use metrics::{counter, histogram};
use ordermill_core::ports::{EffectOutcome, Envelope};
use ordermill_core::{Fact, OrderStatus};
use uuid::Uuid;

use super::Pipeline;
use crate::telemetry;

/// Two fresh event ids for an effect (a transition emits at most two events).
pub fn event_ids(pipeline: &Pipeline) -> [Uuid; 2] {
    let now = pipeline.clock.now();
    [pipeline.ids.next_uuid(now), pipeline.ids.next_uuid(now)]
}

/// Builds the effect record for a delivery.
pub fn effect(
    pipeline: &Pipeline,
    consumer: &Arc<str>,
    event_id: Uuid,
    order_id: ordermill_core::OrderId,
    fact: Option<Fact>,
    reason: Option<String>,
) -> ordermill_core::ports::Effect {
    ordermill_core::ports::Effect {
        consumer: consumer.clone(),
        event_id,
        order_id,
        fact,
        reason,
        new_event_ids: event_ids(pipeline),
        at: pipeline.clock.now(),
    }
}

/// Acts on committed effect outcomes.
pub async fn after_commit(pipeline: &Pipeline, outcomes: Vec<EffectOutcome>) {
    let mut publish: Vec<Envelope> = Vec::new();
    for outcome in outcomes {
        let EffectOutcome::Applied { order, emitted, released, status_changed } = outcome else {
            continue;
        };
        if !released.is_empty()
            && let Err(error) = pipeline.cache.release(&released).await
        {
            tracing::error!(order_id = %order.id, error = %error, "Could not give released units back to the hot-stock cache; restart to reconcile.");
        }
        publish.extend(emitted.into_iter().map(Envelope::from));
        if status_changed {
            // An order changes status once (to confirmed or cancelled), so this insert can
            // never be overtaken by an older version of the same order.
            pipeline.orders.insert(Arc::new(order.clone()));
            match order.status {
                OrderStatus::Confirmed => {
                    counter!(telemetry::ORDERS_CONFIRMED).increment(1);
                    let waited_ms = (pipeline.clock.now().0 - order.created_at.0).max(0);
                    histogram!(telemetry::CONFIRM_SECONDS).record(waited_ms as f64 / 1000.0);
                }
                OrderStatus::Cancelled => counter!(telemetry::ORDERS_CANCELLED).increment(1),
                OrderStatus::Accepted => {}
            }
        }
    }
    if !publish.is_empty() {
        // The events are in the outbox already: if this fails they go out on the next start.
        if let Err(error) = pipeline.bus.publish(publish).await {
            tracing::error!(error = %error, "Could not publish events emitted by consumers; they stay in the outbox.");
        }
    }
}
