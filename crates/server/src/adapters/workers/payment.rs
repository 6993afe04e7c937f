//! `payment`: charges each new order (`order.created`), and each group-buy order once its
//! group completes (`deal.completed`), through the gateway. A decline cancels the order
//! (`payment.failed`, `order.cancelled`); a transient failure is retried through the queue.
//! An event this consumer already processed is acked without calling the gateway again.
//!
//! Pay later (`payment.mode = "await_callback"`), it charges nothing: it asks the gateway for
//! a payment URL and moves the order to `awaiting_payment` with its deadline (now +
//! `payment.pay_within`); the provider's callback (`adapters::workers::pay_later`) settles it.

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::ports::{ChargeError, ChargeRequest, Delivery, Effect};
use ordermill_core::{AwaitedPayment, Fact, Money, OrderId, UnixMillis};
use serde::Deserialize;
use tokio::task::JoinSet;

use super::{Handler, Outcome, Pipeline, settle};

/// The payment consumer.
pub struct Payment {
    pipeline: Pipeline,
    name: Arc<str>,
}

impl Payment {
    /// A consumer on the `payment` queue.
    pub fn new(pipeline: Pipeline) -> Self {
        Payment { pipeline, name: Arc::from("payment") }
    }
}

#[derive(Deserialize)]
struct Created {
    order_id: String,
    customer_id: String,
    total: String,
}

/// The outcome of a charge whose task never answered.
pub(crate) const UNFINISHED: &str =
    "the outside call did not finish (its task panicked or was cancelled)";

fn charge_request(payload: &str) -> Result<ChargeRequest, String> {
    let created: Created = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    Ok(ChargeRequest {
        order_id: OrderId::parse(&created.order_id).map_err(|e| e.to_string())?,
        customer_id: created.customer_id,
        amount: Money::parse("total", &created.total).map_err(|e| e.to_string())?,
    })
}

#[async_trait]
impl Handler for Payment {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Ack; batch.len()];
        let done = match settle::already_processed(&self.pipeline, &self.name, batch).await {
            Ok(done) => done,
            Err(retry_all) => return retry_all,
        };
        let mut charges = JoinSet::new();
        for (i, delivery) in batch.iter().enumerate() {
            if done.contains(&delivery.envelope.event_id) {
                continue; // charged (or declined) before: ack, do not charge again
            }
            if !matches!(&*delivery.envelope.routing_key, "order.created" | "deal.completed") {
                outcomes[i] = Outcome::Dead(format!(
                    "payment does not handle {:?} events; fix the bindings",
                    delivery.envelope.routing_key
                ));
                continue;
            }
            match charge_request(&delivery.envelope.payload) {
                Ok(request) => {
                    // Until the charge answers: a task that panics or is cancelled must leave
                    // its message to be retried, never acknowledged uncharged.
                    outcomes[i] = Outcome::Retry(UNFINISHED.into());
                    let gateway = self.pipeline.gateway.clone();
                    let limit = self.pipeline.message_timeout;
                    let pay_by = self.pipeline.pay_later.map(|within| {
                        UnixMillis(
                            self.pipeline.clock.now().0.saturating_add(within.as_millis() as i64),
                        )
                    });
                    charges.spawn(async move {
                        let call = async {
                            match pay_by {
                                None => gateway.charge(&request).await.map(|()| None),
                                Some(pay_by) => {
                                    gateway.request_payment(&request, pay_by).await.map(
                                        |payment_url| Some(AwaitedPayment { pay_by, payment_url }),
                                    )
                                }
                            }
                        };
                        let result = tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                            Err(ChargeError::Transient(format!(
                                "no answer within {} ms",
                                limit.as_millis()
                            )))
                        });
                        (i, request.order_id, result)
                    });
                }
                Err(error) => outcomes[i] = Outcome::Dead(format!("malformed event: {error}")),
            }
        }
        let mut effects = settle::Effects::default();
        while let Some(joined) = charges.join_next().await {
            let Ok((i, order_id, result)) = joined else {
                tracing::error!("A payment task panicked; its message will be retried.");
                continue;
            };
            outcomes[i] = Outcome::Ack;
            let mut awaited = None;
            let (fact, reason) = match result {
                Ok(None) => (Fact::PaymentSucceeded, None),
                Ok(Some(payment)) => {
                    awaited = Some(payment);
                    (Fact::PaymentRequested, None)
                }
                Err(ChargeError::Declined(reason)) => (Fact::PaymentFailed, Some(reason)),
                Err(ChargeError::Transient(error)) => {
                    outcomes[i] = Outcome::Retry(error);
                    continue;
                }
                Err(ChargeError::Rejected(error)) => {
                    outcomes[i] =
                        Outcome::Dead(format!("{error}; fix the gateway settings, then replay"));
                    continue;
                }
            };
            let effect = settle::delivered(
                &self.pipeline,
                &self.name,
                &batch[i],
                order_id,
                Some(fact),
                reason,
            );
            effects.push(i, Effect { awaited_payment: awaited, ..effect });
        }
        effects.commit(&self.pipeline, &mut outcomes).await;
        outcomes
    }
}
