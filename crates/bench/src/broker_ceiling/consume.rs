//! The consume phase: one channel and consumer per queue, all draining at once, each with
//! `basic.qos` prefetch and manual acks batched with `multiple`, as a worker would ack.

use futures_lite::StreamExt;
use indicatif::ProgressBar;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::task::JoinSet;

use super::{BrokerCeilingError, STALL_LIMIT};

/// What the consumers counted, over all queues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Consumed {
    /// Distinct copies received and acked.
    pub(crate) acked: u64,
    /// Copies received again.
    pub(crate) duplicates: u64,
}

/// Which message numbers have arrived, one bit each.
struct Seen {
    bits: Vec<u64>,
    messages: u64,
    distinct: u64,
}

impl Seen {
    fn new(messages: u64) -> Seen {
        let words = usize::try_from(messages.div_ceil(64)).unwrap_or(usize::MAX);
        Seen { bits: vec![0; words], messages, distinct: 0 }
    }

    /// Marks `message`; false when it was already marked or is out of range.
    fn mark(&mut self, message: u64) -> bool {
        if message >= self.messages {
            return false;
        }
        let Some(word) = usize::try_from(message / 64).ok().and_then(|i| self.bits.get_mut(i))
        else {
            return false;
        };
        let bit = 1u64 << (message % 64);
        let new = *word & bit == 0;
        *word |= bit;
        self.distinct += u64::from(new);
        new
    }
}

/// Opens one channel per queue. Kept apart from [`drain_all`] so that the drain's clock
/// does not count channel set-up.
pub(crate) async fn open_channels(
    connection: &Connection,
    count: usize,
) -> Result<Vec<Channel>, BrokerCeilingError> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = connection
            .create_channel()
            .await
            .map_err(|cause| BrokerCeilingError::broker("open a consumer channel", cause))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Drains `messages` distinct messages from each of `queues` at once, on `channels` (one per
/// queue), and acks them all.
///
/// # Errors
/// The first consumer that fails: a refused `basic.consume`, a failed ack, no delivery
/// within [`STALL_LIMIT`], or a consumer the broker cancelled.
pub(crate) async fn drain_all(
    channels: Vec<Channel>,
    queues: &[String],
    url: &str,
    messages: u64,
    prefetch: u16,
    bar: ProgressBar,
) -> Result<Consumed, BrokerCeilingError> {
    let mut tasks = JoinSet::new();
    for (channel, queue) in channels.into_iter().zip(queues) {
        let drain = drain(channel, queue.clone(), url.to_owned(), messages, prefetch, bar.clone());
        tasks.spawn(drain);
    }
    let mut total = Consumed::default();
    // Dropping the set on the first error aborts the other consumers.
    while let Some(joined) = tasks.join_next().await {
        let one = joined.map_err(BrokerCeilingError::Task)??;
        total.acked += one.acked;
        total.duplicates += one.duplicates;
    }
    Ok(total)
}

async fn drain(
    channel: Channel,
    queue: String,
    url: String,
    messages: u64,
    prefetch: u16,
    bar: ProgressBar,
) -> Result<Consumed, BrokerCeilingError> {
    let refused = |what: &str, cause| BrokerCeilingError::broker(format!("{what} {queue}"), cause);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|cause| refused("set the prefetch on", cause))?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|cause| refused("consume from", cause))?;
    // Acking every half prefetch keeps deliveries flowing: the broker stops at `prefetch`
    // unacked, and one `multiple` ack settles all of them up to its tag.
    let ack_every = u64::from(prefetch / 2).max(1);
    let mut seen = Seen::new(messages);
    let mut duplicates = 0;
    let mut unacked = 0;
    while seen.distinct < messages {
        let next = tokio::time::timeout(STALL_LIMIT, consumer.next()).await.map_err(|_| {
            BrokerCeilingError::Stalled {
                url: url.clone(),
                what: "deliver a message",
                secs: STALL_LIMIT.as_secs(),
            }
        })?;
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(cause)) => return Err(refused("receive from", cause)),
            None => {
                return Err(BrokerCeilingError::ConsumerEnded {
                    queue,
                    got: seen.distinct,
                    expected: messages,
                });
            }
        };
        let number =
            delivery.properties.message_id().as_ref().and_then(|id| id.as_str().parse().ok());
        if !number.is_some_and(|n| seen.mark(n)) {
            duplicates += 1;
        }
        unacked += 1;
        if unacked >= ack_every || seen.distinct == messages {
            let acked = delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(|cause| refused("ack on", cause))?;
            if !acked {
                return Err(BrokerCeilingError::ConsumerEnded {
                    queue,
                    got: seen.distinct,
                    expected: messages,
                });
            }
            bar.inc(unacked);
            unacked = 0;
        }
    }
    // Nothing is left unacked; closing cancels the consumer.
    let _ = channel.close(200, "drained".into()).await;
    Ok(Consumed { acked: seen.distinct, duplicates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_number_counts_once_and_strangers_not_at_all() {
        let mut seen = Seen::new(130);
        assert!(seen.mark(0));
        assert!(seen.mark(129));
        assert!(!seen.mark(129));
        assert!(!seen.mark(130));
        assert!(!seen.mark(130 + 64));
        assert_eq!(seen.distinct, 2);
    }
}
