//! The publish phase: one confirm-mode channel, as ordermill's bus publishes, with at most
//! `window` messages awaiting their confirm. A separate task takes the confirms in order and
//! times each, so a confirm is timed when it arrives, not when the publisher next looks.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::report::{latency_histogram, record};
use super::{BrokerCeilingError, ROUTING_KEY, STALL_LIMIT};

/// What the publish phase counted.
pub(crate) struct Published {
    pub(crate) confirmed: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency_us: Histogram<u64>,
}

/// One publish awaiting its confirm; its permit holds its place in the window until then.
struct InFlight {
    message: u64,
    sent: Instant,
    confirm: PublisherConfirm,
    _permit: OwnedSemaphorePermit,
}

/// A body of `bytes` bytes that is valid JSON (a string) from 2 bytes up: the broker never
/// reads it, only its size matters, but it travels as `application/json` like ordermill's.
pub(crate) fn payload(bytes: usize) -> Vec<u8> {
    let mut body = vec![b'x'; bytes];
    if bytes >= 2 {
        body[0] = b'"';
        body[bytes - 1] = b'"';
    }
    body
}

/// Persistent JSON with the message number as `message_id`, as ordermill's bus sends events.
fn properties(message: u64) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(message.to_string()))
}

/// Publishes messages `0..messages` to `exchange` on `channel` (already in confirm mode) and
/// waits for every confirm.
///
/// # Errors
/// A failed `basic.publish`, a nack, a return (unroutable), or no confirm within
/// [`STALL_LIMIT`].
pub(crate) async fn publish_all(
    channel: &Channel,
    url: &str,
    exchange: &str,
    messages: u64,
    window: usize,
    payload_bytes: usize,
    bar: ProgressBar,
) -> Result<Published, BrokerCeilingError> {
    let body = payload(payload_bytes);
    let slots = Arc::new(Semaphore::new(window));
    // Unbounded, but never longer than the window: a publish waits for a permit first.
    let (in_flight, confirms) = mpsc::unbounded_channel();
    let collector = AbortOnDropHandle::new(tokio::spawn(collect(confirms, url.to_owned(), bar)));
    let started = Instant::now();
    for message in 0..messages {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break; // The semaphore is never closed; kept total rather than unwrapped.
        };
        let sent = Instant::now();
        let confirm = channel
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(ROUTING_KEY),
                // Mandatory, as the bus publishes: an unroutable message comes back.
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &body,
                properties(message),
            )
            .await
            .map_err(|cause| BrokerCeilingError::broker("publish", cause))?;
        let flight = InFlight { message, sent, confirm, _permit: permit };
        if in_flight.send(flight).is_err() {
            // The collector stopped on a failed confirm; its error is returned below.
            break;
        }
    }
    drop(in_flight);
    let (confirmed, latency_us) = collector.await.map_err(BrokerCeilingError::Task)??;
    Ok(Published { confirmed, elapsed: started.elapsed(), latency_us })
}

/// Takes the confirms in publish order (RabbitMQ confirms in order on one channel), times
/// each and frees its window slot.
async fn collect(
    mut confirms: mpsc::UnboundedReceiver<InFlight>,
    url: String,
    bar: ProgressBar,
) -> Result<(u64, Histogram<u64>), BrokerCeilingError> {
    let mut latency_us = latency_histogram();
    let mut confirmed = 0;
    while let Some(flight) = confirms.recv().await {
        let confirmation = tokio::time::timeout(STALL_LIMIT, flight.confirm)
            .await
            .map_err(|_| BrokerCeilingError::Stalled {
                url: url.clone(),
                what: "confirm a publish",
                secs: STALL_LIMIT.as_secs(),
            })?
            .map_err(|cause| BrokerCeilingError::broker("confirm a publish", cause))?;
        match confirmation {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(returned)) => {
                return Err(BrokerCeilingError::Unroutable {
                    reply: returned.reply_text.to_string(),
                });
            }
            Confirmation::Nack(_) => {
                return Err(BrokerCeilingError::Nacked { message: flight.message });
            }
            Confirmation::NotRequested => {
                return Err(BrokerCeilingError::Bug("the publish channel is not in confirm mode"));
            }
        }
        record(&mut latency_us, flight.sent.elapsed());
        confirmed += 1;
        bar.inc(1);
    }
    Ok((confirmed, latency_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_asked_size_and_is_json_from_two_bytes() {
        for bytes in [0, 1, 2, 320] {
            assert_eq!(payload(bytes).len(), bytes);
        }
        let body = payload(320);
        assert!(serde_json::from_slice::<String>(&body).is_ok());
    }
}
