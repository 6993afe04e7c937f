//! `notify`: tells the customer about each order event through the configured notifier, and
//! records the event as processed so a redelivery sends nothing twice (a crash between the
//! send and the record can repeat one; receivers deduplicate on `event_id`).

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::ports::{Delivery, Notification, NotifyError};
use ordermill_core::{OrderId, OutboxEvent};
use tokio::task::JoinSet;

use super::{Handler, Outcome, Pipeline, settle};

/// The notify consumer.
pub struct Notify {
    pipeline: Pipeline,
    name: Arc<str>,
}

impl Notify {
    /// A consumer on the `notify` queue.
    pub fn new(pipeline: Pipeline) -> Self {
        Notify { pipeline, name: Arc::from("notify") }
    }
}

#[async_trait]
impl Handler for Notify {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Ack; batch.len()];
        let done = match settle::already_processed(&self.pipeline, &self.name, batch).await {
            Ok(done) => done,
            Err(retry_all) => return retry_all,
        };
        let mut sends = JoinSet::new();
        for (i, delivery) in batch.iter().enumerate() {
            if done.contains(&delivery.envelope.event_id) {
                continue;
            }
            let header = match OutboxEvent::header(&delivery.envelope.payload) {
                Ok(header) => header,
                Err(error) => {
                    outcomes[i] = Outcome::Dead(format!("malformed event: {error}"));
                    continue;
                }
            };
            let Ok(order_id) = OrderId::parse(&header.order_id) else {
                outcomes[i] =
                    Outcome::Dead(format!("malformed event: bad order_id {:?}", header.order_id));
                continue;
            };
            let notification = Notification {
                event_id: header.event_id,
                kind: delivery.envelope.routing_key.to_string(),
                order_id: header.order_id,
                customer_id: header.customer_id,
                reason: header.reason,
            };
            // Until the send answers (see payment's UNFINISHED).
            outcomes[i] = Outcome::Retry(super::payment::UNFINISHED.into());
            let notifier = self.pipeline.notifier.clone();
            let limit = self.pipeline.message_timeout;
            sends.spawn(async move {
                let result = tokio::time::timeout(limit, notifier.notify(&notification))
                    .await
                    .unwrap_or_else(|_| {
                        Err(NotifyError::Transient(format!(
                            "no answer within {} ms",
                            limit.as_millis()
                        )))
                    });
                (i, order_id, result)
            });
        }
        let mut effects = settle::Effects::default();
        while let Some(joined) = sends.join_next().await {
            let Ok((i, order_id, result)) = joined else {
                tracing::error!("A notify task panicked; its message will be retried.");
                continue;
            };
            match result {
                Ok(()) => {
                    outcomes[i] = Outcome::Ack;
                    effects.push(
                        i,
                        settle::delivered(
                            &self.pipeline,
                            &self.name,
                            &batch[i],
                            order_id,
                            None,
                            None,
                        ),
                    );
                }
                Err(error @ NotifyError::Transient(_)) => {
                    outcomes[i] = Outcome::Retry(error.to_string());
                }
                Err(error @ NotifyError::Rejected(_)) => {
                    outcomes[i] =
                        Outcome::Dead(format!("{error}; fix the webhook settings, then replay"));
                }
            }
        }
        effects.commit(&self.pipeline, &mut outcomes).await;
        outcomes
    }
}
