//! What happens after a batch of effects committed: publish what they emitted, give released
//! units back to the hot-stock cache, refresh the read cache, count confirmations.

use std::sync::Arc;

use metrics::{counter, histogram};
use ordermill_core::ports::{CacheError, Delivery, Effect, EffectOutcome, Envelope};
use ordermill_core::{Fact, OrderStatus, RoutingKey};
use uuid::Uuid;

use super::{Outcome, Pipeline};
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
        unrouted: pipeline.unrouted,
        awaited_payment: None,
        may_repeat: false,
    }
}

/// The effect of `delivery`'s event: [`effect`], marked as a possible repeat when the
/// delivery may be one (redelivered, retried, replayed).
pub fn delivered(
    pipeline: &Pipeline,
    consumer: &Arc<str>,
    delivery: &ordermill_core::ports::Delivery,
    order_id: ordermill_core::OrderId,
    fact: Option<Fact>,
    reason: Option<String>,
) -> ordermill_core::ports::Effect {
    ordermill_core::ports::Effect {
        may_repeat: delivery.may_be_repeat(),
        ..effect(pipeline, consumer, delivery.envelope.event_id, order_id, fact, reason)
    }
}

/// Acts on committed effect outcomes.
pub async fn after_commit(pipeline: &Pipeline, consumer: &str, outcomes: Vec<EffectOutcome>) {
    let mut publish: Vec<Envelope> = Vec::new();
    let mut changed = Vec::new();
    let mut returned = Vec::new();
    for outcome in outcomes {
        let EffectOutcome::Applied { order, emitted, released, status_changed } = outcome else {
            continue;
        };
        if !released.is_empty() {
            match pipeline.cache.release(&released).await {
                // Lost: the rebuild under way reads the store, which has these units.
                Ok(()) | Err(CacheError::Lost) => returned.push(order.id),
                Err(error) => {
                    tracing::error!(order_id = %order.id, error = %error, "Could not give released units back to the hot-stock cache; the counts will be rebuilt from the store once the cache answers.");
                }
            }
        }
        let refund = emitted.iter().any(|e| e.routing_key == RoutingKey::PaymentRefundRequired);
        if refund {
            counter!(telemetry::REFUNDS_REQUIRED).increment(1);
            tracing::warn!(order_id = %order.id, "Money arrived for a cancelled order; it must be refunded (payment.refund_required).");
        }
        publish.extend(emitted.into_iter().map(Envelope::from));
        if status_changed {
            match order.status {
                OrderStatus::Confirmed => {
                    counter!(telemetry::ORDERS_CONFIRMED).increment(1);
                    let waited_ms = (pipeline.clock.now().0 - order.created_at.0).max(0);
                    histogram!(telemetry::CONFIRM_SECONDS).record(waited_ms as f64 / 1000.0);
                }
                OrderStatus::Cancelled => {
                    counter!(telemetry::ORDERS_CANCELLED).increment(1);
                    pipeline.purchase_limits.give_back(&order.customer_id, &order.lines);
                }
                OrderStatus::Accepted
                | OrderStatus::AwaitingGroup
                | OrderStatus::AwaitingPayment => {}
            }
        }
        // Only final orders are cached (see `services::order_cache`): an order still moving
        // (accepted → awaiting payment → confirmed) is read from the store, so an older state
        // written late can never shadow a newer one. A refund note changes a final order.
        if (status_changed || refund) && order.status.is_final() {
            changed.push(order);
        }
    }
    // The store noted these returns with the effect (shared stores); a note left behind (this
    // node killed before here) ends in a rebuild of the counts once `redis.return_grace` old.
    if !returned.is_empty()
        && let Err(error) = pipeline.store.stock_returned(returned).await
    {
        tracing::warn!(error = %error, "Could not clear the notes of units given back to the hot-stock cache; the counts will be rebuilt from the store when they are overdue.");
    }
    if !changed.is_empty() {
        // An order becomes final once (confirmed or cancelled), so these writes are not
        // overtaken by an older version of the same order. Off the batch's path: with a
        // shared cache they are a round trip, and a read that comes first finds the store.
        let orders = pipeline.order_cache.clone();
        tokio::spawn(async move { orders.insert_all(&changed).await });
    }
    if !publish.is_empty() {
        // The events are in the outbox already: if this fails they go out on the next start.
        let started = std::time::Instant::now();
        let published = pipeline.bus.publish(publish).await;
        telemetry::stage("publish", consumer).record(started.elapsed().as_secs_f64());
        if let Err(error) = published {
            tracing::error!(error = %error, "Could not publish events emitted by consumers; they stay in the outbox.");
        }
    }
}

/// Applies `effects` in one store transaction and acts on what committed ([`after_commit`]),
/// in a task of its own, so a caller dropped meanwhile (an HTTP client that went away, a
/// node stopping) cannot leave a committed effect without its published events, released
/// units or refreshed caches. Returns the outcomes.
///
/// # Errors
/// When the transaction failed: nothing was written.
pub async fn apply_detached(
    pipeline: &Pipeline,
    consumer: &Arc<str>,
    effects: Vec<Effect>,
) -> Result<Vec<EffectOutcome>, ordermill_core::ports::StoreError> {
    let (detached, consumer) = (pipeline.clone(), consumer.clone());
    let work = tokio::spawn(async move {
        let outcomes = detached.store.apply_effects(effects).await?;
        after_commit(&detached, &consumer, outcomes.clone()).await;
        Ok(outcomes)
    });
    work.await.unwrap_or_else(|join| {
        Err(ordermill_core::ports::StoreError::Unavailable(format!(
            "the effect task failed: {join}"
        )))
    })
}

/// Which deliveries of `batch` `consumer` already processed (to ack without repeating an
/// outside call). Only deliveries that may be repeats ([`Delivery::may_be_repeat`]) are looked
/// up, so a batch of first deliveries — nearly every batch — costs the store nothing here:
/// profiled scaled out, this lookup was one PostgreSQL query per batch, mostly planning, on a
/// partitioned table. A first delivery of an event published twice (a relay that lost a
/// confirm and published again) then calls out a second time, under the same idempotency key;
/// its effect is still recorded once.
///
/// # Errors
/// When the store cannot tell: then every delivery of the batch should be retried, and the
/// error holds those outcomes.
pub async fn already_processed(
    pipeline: &Pipeline,
    consumer: &str,
    batch: &[Delivery],
) -> Result<Vec<Uuid>, Vec<Outcome>> {
    let ids: Vec<Uuid> =
        batch.iter().filter(|d| d.may_be_repeat()).map(|d| d.envelope.event_id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let processed = pipeline.store.processed(consumer, ids).await;
    telemetry::stage("duplicate_check", consumer).record(started.elapsed().as_secs_f64());
    processed.map_err(|error| vec![store_failed(&error); batch.len()])
}

/// The outcome for a delivery whose store call failed: held for the store to come back when it
/// is unreachable, retried (spending an attempt) for anything else.
fn store_failed(error: &ordermill_core::ports::StoreError) -> Outcome {
    match error {
        ordermill_core::ports::StoreError::Unavailable(_) => {
            Outcome::Unavailable(format!("store: {error}"))
        }
        _ => Outcome::Retry(format!("store: {error}")),
    }
}

/// Effects gathered from a batch, each with the index of the delivery it came from.
#[derive(Default)]
pub struct Effects {
    effects: Vec<Effect>,
    slots: Vec<usize>,
}

impl Effects {
    /// Adds the effect of delivery `slot`.
    pub fn push(&mut self, slot: usize, effect: Effect) {
        self.effects.push(effect);
        self.slots.push(slot);
    }

    /// Applies them in ONE store transaction and acts on the outcome ([`after_commit`]); if
    /// the transaction fails, their deliveries are marked for retry in `outcomes`.
    ///
    /// The transaction and the work after it run in a task of their own: a handler timed out
    /// or cancelled while they run must not leave a committed effect without its release of
    /// units, its purchase-limit give-back or its published events. (The deliveries are then
    /// retried and find their effects already recorded.)
    pub async fn commit(self, pipeline: &Pipeline, outcomes: &mut [Outcome]) {
        let Some(consumer) = self.effects.first().map(|e| e.consumer.clone()) else { return };
        let (effects, detached) = (self.effects, pipeline.clone());
        let work = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let applied = detached.store.apply_effects(effects).await;
            telemetry::stage("effects", &consumer).record(started.elapsed().as_secs_f64());
            match applied {
                Ok(results) => {
                    after_commit(&detached, &consumer, results).await;
                    Ok(())
                }
                Err(error) => Err(error),
            }
        });
        let failed = match work.await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => store_failed(&error),
            // The task panicked: a bug; retrying finds whatever was recorded.
            Err(join) => Outcome::Retry(format!("the effect task failed: {join}")),
        };
        for i in self.slots {
            outcomes[i] = failed.clone();
        }
    }
}
