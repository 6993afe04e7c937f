//! Consuming: one channel and consumer per queue, started on the first `receive` of that queue
//! (a worker process consumes only its own queues). Deliveries are buffered per queue and
//! handed out in batches; each keeps its lapin acker under our own tag until it is settled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Acker;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use ordermill_core::ports::{BusError, Delivery};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use super::connection::Link;
use super::message;
use super::topology::QueueNames;

/// A delivery this node holds: buffered or handed to a worker, not yet settled.
pub(crate) struct Held {
    pub(crate) acker: Acker,
    pub(crate) generation: u64,
}

#[derive(Default)]
pub(crate) struct SlotState {
    buffer: VecDeque<Delivery>,
    /// Every unsettled delivery by our tag (the buffered ones too).
    held: HashMap<u64, Held>,
}

/// One queue of the topology as this node sees it.
pub(crate) struct QueueSlot {
    pub(crate) names: QueueNames,
    pub(crate) logical: Arc<str>,
    /// Set by the first `receive`: from then on every connection consumes this queue.
    pub(crate) started: AtomicBool,
    /// The connection generation a consumer was started on (0: none).
    consumer_generation: Mutex<u64>,
    state: Mutex<SlotState>,
    arrived: Notify,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning needs a panic while holding the lock; the state is plain collections that
    // stay consistent between statements, so keep going.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl QueueSlot {
    pub(crate) fn new(names: QueueNames) -> QueueSlot {
        QueueSlot {
            logical: Arc::from(names.logical.as_str()),
            names,
            started: AtomicBool::new(false),
            consumer_generation: Mutex::new(0),
            state: Mutex::default(),
            arrived: Notify::new(),
        }
    }

    /// Deliveries held unsettled on this node.
    pub(crate) fn in_flight(&self) -> u64 {
        lock(&self.state).held.len() as u64
    }

    /// Takes the acker of a delivery to settle it; `None` when this node no longer holds it
    /// (its channel died: the broker delivers it again).
    pub(crate) fn take(&self, tag: u64) -> Option<Held> {
        lock(&self.state).held.remove(&tag)
    }

    /// Drops everything held: the connection it came on is gone.
    pub(crate) fn forget_all(&self) {
        let mut state = lock(&self.state);
        state.buffer.clear();
        state.held.clear();
    }

    fn forget_generation(&self, generation: u64) {
        let mut state = lock(&self.state);
        state.held.retain(|_, held| held.generation != generation);
        let SlotState { buffer, held } = &mut *state;
        buffer.retain(|d| held.contains_key(&d.tag));
    }
}

impl Shared {
    pub(crate) fn slot(&self, queue: &str) -> Result<&QueueSlot, BusError> {
        self.slots
            .iter()
            .find(|s| &*s.logical == queue)
            .ok_or_else(|| BusError::UnknownQueue(queue.to_owned()))
    }

    /// Starts the consumer of `slot` on `link` unless one already runs there.
    pub(crate) fn ensure_consumer(self: &Arc<Self>, slot: &QueueSlot, link: &Arc<Link>) {
        {
            let mut started_on = lock(&slot.consumer_generation);
            if *started_on >= link.generation {
                return;
            }
            *started_on = link.generation;
        }
        let index = self.slots.iter().position(|s| std::ptr::eq(s, slot)).unwrap_or_default();
        tokio::spawn(consume(self.clone(), link.clone(), index));
    }

    pub(crate) async fn receive(
        self: &Arc<Self>,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let slot = self.slot(queue)?;
        // Set before reading the link: either the supervisor sees the flag when it brings a
        // new connection up, or we see that connection here.
        slot.started.store(true, Ordering::Release);
        let link = self.link.borrow().clone();
        match &link {
            Some(link) => self.ensure_consumer(slot, link),
            None if lock(&slot.state).buffer.is_empty() => {
                return Err(BusError::Unavailable(
                    "not connected to RabbitMQ; reconnecting".to_owned(),
                ));
            }
            None => {}
        }
        let deadline = Instant::now() + wait;
        loop {
            let arrived = slot.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a delivery between the look and the wait wakes us.
            arrived.as_mut().enable();
            {
                let mut state = lock(&slot.state);
                let take = state.buffer.len().min(max.max(1));
                if take > 0 {
                    return Ok(state.buffer.drain(..take).collect());
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    pub(crate) async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let mut lost = 0usize;
        for delivery in deliveries {
            let held = self.slot(&delivery.queue).ok().and_then(|slot| slot.take(delivery.tag));
            let acked = match held {
                Some(held) => matches!(held.acker.ack(Default::default()).await, Ok(true)),
                None => false,
            };
            if !acked {
                lost += 1;
            }
        }
        if lost == 0 {
            return Ok(());
        }
        // Not an `Ok`: the trait promises an error when an ack is not recorded, and the
        // caller's answer ("will be delivered again, effects not repeated") is exactly what
        // happens. Nothing is lost: the broker requeues what a dead channel held.
        Err(BusError::Unavailable(format!(
            "{lost} of {} acks could not be sent (their channel closed); those messages will be \
             delivered again",
            deliveries.len()
        )))
    }
}

/// Runs the consumer of one queue on one connection until either ends.
async fn consume(shared: Arc<Shared>, link: Arc<Link>, index: usize) {
    let Some(slot) = shared.slots.get(index) else { return };
    let queue = slot.logical.clone();
    let run = async {
        let channel = link.connection.create_channel().await?;
        channel.basic_qos(shared.settings.prefetch, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                slot.names.work.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::debug!(queue = %queue, generation = link.generation, "Consumer started.");
        while let Some(item) = consumer.next().await {
            let delivery = item?;
            let Some(incoming) =
                message::read(&delivery.properties, delivery.routing_key.as_str(), &delivery.data)
            else {
                // Not an ordermill event (no event id or a body that is not text): nobody
                // can handle it, so it goes to the dead queue through the work queue's
                // dead-letter exchange, where an operator sees it.
                tracing::warn!(queue = %queue, "Rejected a message that is not an ordermill event.");
                let _ = delivery.acker.reject(BasicRejectOptions { requeue: false }).await;
                continue;
            };
            let tag = shared.next_tag.fetch_add(1, Ordering::Relaxed);
            let accepted = {
                let mut state = lock(&slot.state);
                // A delivery that raced with a reconnect belongs to a dead channel.
                if shared.generation.load(Ordering::Acquire) == link.generation {
                    state.held.insert(
                        tag,
                        Held { acker: delivery.acker.clone(), generation: link.generation },
                    );
                    state.buffer.push_back(Delivery {
                        tag,
                        queue: queue.clone(),
                        envelope: incoming.envelope,
                        attempt: incoming.attempt,
                    });
                    true
                } else {
                    false
                }
            };
            if !accepted {
                break;
            }
            slot.arrived.notify_waiters();
        }
        Ok::<(), lapin::Error>(())
    };
    let outcome = tokio::select! {
        () = shared.stop.cancelled() => return,
        outcome = run => outcome,
    };
    slot.forget_generation(link.generation);
    if shared.stop.is_cancelled() {
        return;
    }
    match outcome {
        Ok(()) => {
            tracing::warn!(queue = %queue, "The broker cancelled the consumer; reconnecting.")
        }
        Err(error) => {
            tracing::warn!(queue = %queue, error = %error, "The consumer's channel failed; reconnecting.")
        }
    }
    shared.kick(link.generation);
}
