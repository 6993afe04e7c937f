//! Settling a delivery by moving a copy (retry, dead letter), and the dead queues' admin
//! operations (list, replay, purge).

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use ordermill_core::UnixMillis;
use ordermill_core::ports::{BusError, DeadLetter, DeadLetterPage, DeadLetterSelection, Delivery};

use super::Shared;
use super::connection::{Link, unavailable};
use super::consume::Released;
use super::message;
use super::publish::Outgoing;

/// The error shown for a dead letter the broker moved itself (it carries none of ours).
const BROKER_DEAD_LETTERED: &str = "dead-lettered by the broker (rejected or expired)";

/// A dead message's events; `None`, with a warning, for one that is not ordermill's: nobody
/// can handle it, so it stays dead (requeued when the channel closes).
fn events_of(queue: &str, d: &lapin::message::Delivery) -> Option<Vec<message::Incoming>> {
    let events = message::read_all(&d.properties, d.routing_key.as_str(), &d.data);
    if events.is_none() {
        tracing::warn!(queue, "A dead letter is not an ordermill event; left in place.");
    }
    events
}

fn now() -> UnixMillis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    UnixMillis(ms)
}

impl Shared {
    /// Publishes `copy` (the one event, alone), then settles the event's original: a crash in
    /// between delivers the original again (consumers deduplicate); the other order could lose
    /// it. The original message is acked when this was its last unsettled event.
    async fn move_delivery(
        &self,
        delivery: &Delivery,
        copy: Outgoing<'_>,
        what: &str,
    ) -> Result<(), BusError> {
        let slot = self.slot(&delivery.queue)?;
        if !slot.holds(delivery.tag) {
            return Err(BusError::Unavailable(format!(
                "the {what} of event {} was not recorded: its channel closed, so RabbitMQ \
                 delivers it again",
                delivery.envelope.event_id
            )));
        }
        if let Err(error) = self.publish_confirmed([copy]).await {
            // Give it back now rather than leave it unsettled until the channel closes.
            if let Some(held) = slot.give_back(delivery) {
                let nack = held.acker.nack(BasicNackOptions { requeue: true, multiple: false });
                let _ = self.bounded(held.generation, "a nack", nack).await;
                slot.settled(&held);
            }
            return Err(error);
        }
        let Released::Last(held) = slot.release(delivery.tag) else { return Ok(()) };
        let ack = held.acker.ack(BasicAckOptions::default());
        let acked = self.bounded(held.generation, "an ack", ack).await;
        slot.settled(&held);
        if !matches!(acked, Ok(true)) {
            tracing::warn!(
                queue = %delivery.queue,
                event_id = %delivery.envelope.event_id,
                "The original of a moved message could not be acked; it will be delivered once more."
            );
        }
        Ok(())
    }

    pub(crate) async fn retry(
        &self,
        delivery: &Delivery,
        after: Duration,
        error: &str,
    ) -> Result<(), BusError> {
        let slot = self.slot(&delivery.queue)?;
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let target = slot.names.retry_queue_for(ms);
        let headers = message::requeue_headers(
            delivery.attempt.saturating_add(1),
            &delivery.envelope.routing_key,
            Some(error),
        );
        let copy = Outgoing {
            exchange: "",
            routing_key: target,
            payload: delivery.envelope.payload.as_bytes(),
            properties: message::properties(delivery.envelope.event_id, Some(headers)),
        };
        self.move_delivery(delivery, copy, "retry").await
    }

    pub(crate) async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: &str,
    ) -> Result<(), BusError> {
        let slot = self.slot(&delivery.queue)?;
        let headers =
            message::dead_headers(delivery.attempt, &delivery.envelope.routing_key, error, now());
        let copy = Outgoing {
            exchange: &self.names.dead_letter_exchange,
            routing_key: &slot.names.work,
            payload: delivery.envelope.payload.as_bytes(),
            properties: message::properties(delivery.envelope.event_id, Some(headers)),
        };
        self.move_delivery(delivery, copy, "dead letter").await
    }

    /// Reads one page of the dead queue without consuming it: basic.get without ack on a
    /// scratch channel, up to the page's last event (memory stays one page plus one
    /// message), then closing the channel requeues everything in its original order.
    pub(crate) async fn dead_letters(
        &self,
        queue: &str,
        page: DeadLetterPage,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let slot = self.slot(queue)?;
        let link = self.live_link()?;
        let channel = self.scratch_channel(&link).await?;
        let mut letters = Vec::new();
        let (mut messages, mut skipped) = (0u64, 0usize);
        let read = async {
            while letters.len() < page.limit
                && let Some(got) = channel
                    .basic_get(slot.names.dead.as_str().into(), BasicGetOptions { no_ack: false })
                    .await?
            {
                let d = &got.delivery;
                messages += 1;
                // A batch arrives here whole only when the broker dead-lettered it (rejected
                // unread, expired, over a quorum queue's delivery limit): list its events.
                let Some(events) = events_of(queue, d) else { continue };
                for incoming in events {
                    if skipped < page.offset {
                        skipped += 1;
                        continue;
                    }
                    if letters.len() == page.limit {
                        break;
                    }
                    letters.push(DeadLetter {
                        queue: queue.to_owned(),
                        envelope: incoming.envelope,
                        attempts: incoming.attempt,
                        error: incoming.error.unwrap_or_else(|| BROKER_DEAD_LETTERED.to_owned()),
                        died_at: incoming.died_at.unwrap_or(UnixMillis(0)),
                    });
                }
            }
            Ok::<(), lapin::Error>(())
        };
        let outcome = read.await;
        let _ = channel.close(200, "listed".into()).await;
        outcome.map_err(unavailable)?;
        self.until_requeued(&link, &slot.names.dead, messages).await;
        Ok(letters)
    }

    /// Sends the dead letters `which` selects back to their work queue only (default exchange,
    /// key = the queue's name: the other queues bound to the event's key already handled it),
    /// with a fresh attempt count; each message is acked off the dead queue after its copies
    /// are confirmed.
    pub(crate) async fn replay_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError> {
        let count = self.take_dead(queue, which, true).await?;
        tracing::info!(queue, count, selection = ?which, "Replayed dead letters.");
        Ok(count)
    }

    pub(crate) async fn purge_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError> {
        let count = match which {
            DeadLetterSelection::All => {
                let slot = self.slot(queue)?;
                let link = self.live_link()?;
                let channel = self.scratch_channel(&link).await?;
                let purged = channel
                    .queue_purge(slot.names.dead.as_str().into(), QueuePurgeOptions::default())
                    .await;
                let _ = channel.close(200, "purged".into()).await;
                purged.map_err(unavailable)? as usize
            }
            DeadLetterSelection::Event(_) => self.take_dead(queue, which, false).await?,
        };
        tracing::info!(queue, count, selection = ?which, "Purged dead letters.");
        Ok(count)
    }

    /// Takes the dead letters `which` selects off `queue`'s dead queue: each taken event goes
    /// back to the work queue alone (`replay`) or nowhere (a purge), and the other events of
    /// a batch it came in stay dead as copies of their own. Messages holding none of them are
    /// left where they are. Returns how many events were taken.
    async fn take_dead(
        &self,
        queue: &str,
        which: DeadLetterSelection,
        replay: bool,
    ) -> Result<usize, BusError> {
        let slot = self.slot(queue)?;
        let link = self.live_link()?;
        let channel = self.scratch_channel(&link).await?;
        let (mut count, mut left) = (0usize, 0u64);
        let result = async {
            // At most what is there now: a replayed event that fails again while we run must
            // not be taken twice in one call.
            let limit = Self::ready_count(&channel, &slot.names.dead).await?;
            for _ in 0..limit {
                let got = channel
                    .basic_get(slot.names.dead.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(unavailable)?;
                let Some(got) = got else { break };
                let d = &got.delivery;
                let Some(events) = events_of(queue, d) else {
                    left += 1;
                    continue;
                };
                let (taken, kept): (Vec<_>, Vec<_>) =
                    events.into_iter().partition(|e| which.takes(e.envelope.event_id));
                if taken.is_empty() {
                    left += 1;
                    continue;
                }
                let replayed = taken.iter().filter(|_| replay).map(|e| Outgoing {
                    exchange: "",
                    routing_key: &slot.names.work,
                    payload: e.envelope.payload.as_bytes(),
                    properties: message::properties(
                        e.envelope.event_id,
                        Some(message::requeue_headers(1, &e.envelope.routing_key, None)),
                    ),
                });
                let still_dead = kept.iter().map(|e| Outgoing {
                    exchange: "",
                    routing_key: &slot.names.dead,
                    payload: e.envelope.payload.as_bytes(),
                    properties: message::properties(
                        e.envelope.event_id,
                        Some(message::dead_headers(
                            e.attempt,
                            &e.envelope.routing_key,
                            e.error.as_deref().unwrap_or(BROKER_DEAD_LETTERED),
                            e.died_at.unwrap_or_else(now),
                        )),
                    ),
                });
                let copies: Vec<_> = replayed.chain(still_dead).collect();
                if !copies.is_empty() {
                    self.publish_confirmed(copies).await?;
                }
                left += kept.len() as u64;
                count += taken.len();
                let ack = d.acker.ack(BasicAckOptions::default());
                self.bounded(link.generation, "an ack", ack).await?;
                if matches!(which, DeadLetterSelection::Event(_)) {
                    break;
                }
            }
            Ok::<(), BusError>(())
        }
        .await;
        let _ = channel.close(200, "taken".into()).await;
        result?;
        self.until_requeued(&link, &slot.names.dead, left).await;
        Ok(count)
    }

    /// Closing a channel requeues the messages it got and did not ack, but a quorum queue
    /// does it a moment later: waits (up to 2 s) until `dead` holds at least `expected` ready
    /// messages again, so a listing or replay right after sees them all.
    async fn until_requeued(&self, link: &Link, dead: &str, expected: u64) {
        if expected == 0 {
            return;
        }
        let Ok(check) = self.scratch_channel(link).await else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while Self::ready_count(&check, dead).await.unwrap_or(u64::MAX) < expected
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = check.close(200, "counted".into()).await;
    }

    /// Ready messages of a queue, from a passive declare (fails if the queue is missing).
    pub(crate) async fn ready_count(channel: &lapin::Channel, name: &str) -> Result<u64, BusError> {
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue = channel
            .queue_declare(name.into(), options, FieldTable::default())
            .await
            .map_err(unavailable)?;
        Ok(u64::from(queue.message_count()))
    }
}
