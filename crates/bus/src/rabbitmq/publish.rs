//! Publishing with publisher confirms. Every publish of the bus (events, retries, dead
//! letters, replays) goes through the one confirm-mode channel of the live connection; at
//! most `confirm_window` messages await their confirm at once, over all callers, so a burst
//! cannot pile up unbounded unconfirmed data in the broker or in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use ordermill_core::ports::BusError;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::Shared;
use super::connection::{Link, unavailable};

/// One message to publish.
pub(crate) struct Outgoing<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) properties: BasicProperties,
}

struct Pending {
    confirm: PublisherConfirm,
    /// Released when the confirm is in: the window counts it until then.
    _permit: OwnedSemaphorePermit,
}

impl Shared {
    /// The live connection, or `Unavailable` at once during an outage (the caller keeps
    /// what it wanted to send).
    pub(crate) fn live_link(&self) -> Result<Arc<Link>, BusError> {
        self.link.borrow().clone().ok_or_else(|| {
            BusError::Unavailable("not connected to RabbitMQ; reconnecting".to_owned())
        })
    }

    /// Publishes every message (mandatory: a message no queue takes is returned) and waits
    /// for all their confirms. `Ok` only when the broker acked every one of them.
    pub(crate) async fn publish_confirmed<'a>(
        &self,
        messages: impl IntoIterator<Item = Outgoing<'a>>,
    ) -> Result<(), BusError> {
        let link = self.live_link()?;
        let result = self.publish_on(&link, messages).await;
        if let Err(BusError::Unavailable(_)) = &result
            && !link.publish.status().connected()
        {
            // The channel closed under us (e.g. the exchange was deleted): replace it.
            self.kick(link.generation);
        }
        result
    }

    async fn publish_on<'a>(
        &self,
        link: &Link,
        messages: impl IntoIterator<Item = Outgoing<'a>>,
    ) -> Result<(), BusError> {
        let deadline = Instant::now() + self.settings.confirm_timeout();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        for message in messages {
            let permit = loop {
                match self.window.clone().try_acquire_owned() {
                    Ok(permit) => break permit,
                    // Window full: settle our own oldest first. Only a caller holding no
                    // permit waits on the semaphore, so callers never wait on each other in
                    // a circle.
                    Err(_) if !pending.is_empty() => {
                        if let Some(oldest) = pending.pop_front() {
                            settle(oldest, deadline).await?;
                        }
                    }
                    Err(_) => {
                        let acquire = self.window.clone().acquire_owned();
                        match tokio::time::timeout_at(deadline, acquire).await {
                            Ok(Ok(permit)) => break permit,
                            Ok(Err(_)) => {
                                return Err(BusError::Unavailable(
                                    "the bus is stopping".to_owned(),
                                ));
                            }
                            Err(_) => return Err(timed_out()),
                        }
                    }
                }
            };
            let publish = link.publish.basic_publish(
                ShortString::from(message.exchange),
                ShortString::from(message.routing_key),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                message.payload,
                message.properties,
            );
            let confirm =
                self.bounded_until(link.generation, "a publish", deadline, publish).await?;
            pending.push_back(Pending { confirm, _permit: permit });
        }
        while let Some(next) = pending.pop_front() {
            settle(next, deadline).await?;
        }
        Ok(())
    }
}

fn timed_out() -> BusError {
    BusError::Unavailable("RabbitMQ did not confirm the publish in time".to_owned())
}

async fn settle(pending: Pending, deadline: Instant) -> Result<(), BusError> {
    let confirmation = tokio::time::timeout_at(deadline, pending.confirm)
        .await
        .map_err(|_| timed_out())?
        .map_err(unavailable)?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(BusError::Backend(
            format!(
                "RabbitMQ returned a message no queue took (routing key {:?}, {}): the topology \
                 on the broker is not what this node declared",
                returned.delivery.routing_key.as_str(),
                returned.reply_text.as_str()
            )
            .into(),
        )),
        Confirmation::Nack(_) => Err(BusError::Unavailable(
            "RabbitMQ refused (nacked) a publish; it will be sent again".to_owned(),
        )),
        Confirmation::NotRequested => Err(BusError::Backend(
            "the publish channel is not in confirm mode; this is a bug".into(),
        )),
    }
}
