//! Consuming: one channel and consumer per queue, started on the first `receive` of that queue
//! (a worker process consumes only its own queues). Deliveries are buffered per queue and
//! handed out in batches; each keeps its lapin acker under our own tag until it is settled.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use ordermill_core::ports::{BusError, Delivery};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use super::connection::Link;
use super::message;
use super::topology::QueueNames;

/// A message this node holds: its events buffered or handed to a worker, not all settled.
pub(crate) struct Held {
    pub(crate) acker: Acker,
    pub(crate) generation: u64,
    /// The broker's tag on its channel (increasing per channel).
    pub(crate) delivery_tag: u64,
}

/// A held message and how many of its events are still unsettled: the message is acked when
/// the last one is (acked, or moved to a retry or dead queue as a copy of its own).
struct Parcel {
    held: Held,
    open: usize,
}

/// What settling one event left of its message.
pub(crate) enum Released {
    /// This node no longer holds it (its channel died: the broker delivers it again).
    Gone,
    /// Other events of its message are still unsettled.
    Pending,
    /// It was the message's last: settle the message now.
    Last(Held),
}

#[derive(Default)]
pub(crate) struct SlotState {
    buffer: VecDeque<Delivery>,
    /// Our tag of every unsettled event (the buffered ones too) → the key of its message.
    members: HashMap<u64, u64>,
    /// Held messages by key (our tag of their first event).
    parcels: HashMap<u64, Parcel>,
    /// `(generation, broker tag)` of every message whose ack, nack or reject has not been SENT
    /// yet: those held, and those being settled right now. An ack with `multiple` may cover a
    /// range only when none of these lies inside it, or it would settle a message someone
    /// else is still deciding about (a retry whose copy is not confirmed yet, a batch whose
    /// other events are still being handled).
    unsettled: BTreeSet<(u64, u64)>,
}

impl SlotState {
    fn release(&mut self, tag: u64) -> Released {
        let Some(key) = self.members.remove(&tag) else { return Released::Gone };
        let Some(parcel) = self.parcels.get_mut(&key) else { return Released::Gone };
        parcel.open = parcel.open.saturating_sub(1);
        if parcel.open > 0 {
            return Released::Pending;
        }
        match self.parcels.remove(&key) {
            Some(parcel) => Released::Last(parcel.held),
            None => Released::Gone,
        }
    }
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

    /// Events held unsettled on this node.
    pub(crate) fn in_flight(&self) -> u64 {
        lock(&self.state).members.len() as u64
    }

    /// Whether this node still holds the event `tag` (false once its channel died).
    pub(crate) fn holds(&self, tag: u64) -> bool {
        lock(&self.state).members.contains_key(&tag)
    }

    /// Settles the event `tag` on our side; says whether its message is now to be settled.
    pub(crate) fn release(&self, tag: u64) -> Released {
        lock(&self.state).release(tag)
    }

    /// Hands `delivery` out again after its move failed. Returns its message when it was that
    /// message's last unsettled event: the caller gives the message back to the broker, as
    /// for a message of one event. Otherwise its batch-mates keep the message here, so it is
    /// buffered again on this node.
    pub(crate) fn give_back(&self, delivery: &Delivery) -> Option<Held> {
        let mut state = lock(&self.state);
        let key = *state.members.get(&delivery.tag)?;
        if state.parcels.get(&key).is_some_and(|p| p.open <= 1) {
            return match state.release(delivery.tag) {
                Released::Last(held) => Some(held),
                Released::Gone | Released::Pending => None,
            };
        }
        state.buffer.push_front(delivery.clone());
        drop(state);
        self.arrived.notify_waiters();
        None
    }

    /// Records that the frame settling `held` (an ack, a nack, a reject) was sent.
    pub(crate) fn settled(&self, held: &Held) {
        lock(&self.state).unsettled.remove(&(held.generation, held.delivery_tag));
    }

    /// Drops everything held: the connection it came on is gone.
    pub(crate) fn forget_all(&self) {
        let mut state = lock(&self.state);
        state.buffer.clear();
        state.members.clear();
        state.parcels.clear();
        state.unsettled.clear();
    }

    fn forget_generation(&self, generation: u64) {
        let mut state = lock(&self.state);
        let SlotState { buffer, members, parcels, unsettled } = &mut *state;
        parcels.retain(|_, parcel| parcel.held.generation != generation);
        members.retain(|_, key| parcels.contains_key(key));
        unsettled.retain(|(g, _)| *g != generation);
        buffer.retain(|d| members.contains_key(&d.tag));
    }

    /// Settles `tags` (ours) on our side, takes the messages they complete to ack them, and
    /// says which can go as ONE ack with `multiple`: per channel generation, the longest run
    /// from the lowest unsettled tag up that is all ours.
    /// Returns `(one multiple-ack per generation, the rest one by one, events not held any
    /// more)`.
    fn take_for_ack(&self, tags: &[u64]) -> (Vec<Held>, Vec<Held>, usize) {
        let mut state = lock(&self.state);
        let mut taken = Vec::new();
        let mut lost = 0;
        for tag in tags {
            match state.release(*tag) {
                Released::Gone => lost += 1,
                Released::Pending => {}
                Released::Last(held) => taken.push(held),
            }
        }
        taken.sort_unstable_by_key(|h| (h.generation, h.delivery_tag));
        let ours: BTreeSet<(u64, u64)> =
            taken.iter().map(|h| (h.generation, h.delivery_tag)).collect();
        let mut multiple = Vec::new();
        let mut single = Vec::new();
        let mut by_generation = taken.into_iter().peekable();
        while let Some(first) = by_generation.next() {
            let generation = first.generation;
            let mut group = vec![first];
            while let Some(next) = by_generation.next_if(|h| h.generation == generation) {
                group.push(next);
            }
            // The first unsettled tag of this generation that is not ours bounds the run.
            let bound = state
                .unsettled
                .range((generation, 0)..=(generation, u64::MAX))
                .find(|key| !ours.contains(key))
                .map_or(u64::MAX, |(_, tag)| *tag);
            let run = group.iter().take_while(|h| h.delivery_tag < bound).count();
            let rest = group.split_off(run);
            single.extend(rest);
            // Ours in the run: one frame acks them all (the last one's, with `multiple`).
            if let Some(last) = group.pop() {
                for h in &group {
                    state.unsettled.remove(&(h.generation, h.delivery_tag));
                }
                multiple.push(last);
            }
        }
        (multiple, single, lost)
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
        for slot in &self.slots {
            let tags: Vec<u64> =
                deliveries.iter().filter(|d| d.queue == slot.logical).map(|d| d.tag).collect();
            if tags.is_empty() {
                continue;
            }
            let (multiple, single, gone) = slot.take_for_ack(&tags);
            lost += gone;
            // A run of contiguous deliveries goes as one frame: the broker's work is per frame.
            let runs = multiple.into_iter().map(|held| (held, true));
            for (held, multiple) in runs.chain(single.into_iter().map(|held| (held, false))) {
                let ack = held.acker.ack(BasicAckOptions { multiple });
                if !matches!(self.bounded(held.generation, "an ack", ack).await, Ok(true)) {
                    lost += 1;
                }
                slot.settled(&held);
            }
        }
        lost += deliveries.iter().filter(|d| self.slot(&d.queue).is_err()).count();
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

/// Why a consumer's delivery stream ended without an error.
enum Ended {
    /// The broker ended it (a `basic.cancel`, or its connection closed cleanly).
    Cancelled,
    /// A delivery arrived after the supervisor had taken its connection down.
    Replaced,
}

/// Runs the consumer of one queue on one connection until either ends.
async fn consume(shared: Arc<Shared>, link: Arc<Link>, index: usize) {
    let Some(slot) = shared.slots.get(index) else { return };
    let queue = slot.logical.clone();
    let generation = link.generation;
    let run = async {
        let channel = shared
            .bounded(generation, "opening a channel", link.connection.create_channel())
            .await?;
        let qos = channel.basic_qos(shared.settings.prefetch(), BasicQosOptions::default());
        shared.bounded(generation, "basic.qos", qos).await?;
        let consume = channel.basic_consume(
            slot.names.work.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        let mut consumer = shared.bounded(generation, "basic.consume", consume).await?;
        tracing::debug!(queue = %queue, generation, "Consumer started.");
        while let Some(item) = consumer.next().await {
            let delivery = item.map_err(super::connection::unavailable)?;
            let Some(events) = message::read_all(
                &delivery.properties,
                delivery.routing_key.as_str(),
                &delivery.data,
            ) else {
                // Not an ordermill event (no event id, a body that is not text, a batch that
                // does not parse): nobody can handle it, so it goes to the dead queue through
                // the work queue's dead-letter exchange, where an operator sees it.
                tracing::warn!(queue = %queue, "Rejected a message that is not an ordermill event.");
                let reject = delivery.acker.reject(BasicRejectOptions { requeue: false });
                let _ = shared.bounded(generation, "a reject", reject).await;
                continue;
            };
            let count = events.len() as u64;
            let first = shared.next_tag.fetch_add(count, Ordering::Relaxed);
            shared.carried.record(events.len(), 1);
            let accepted = {
                let mut state = lock(&slot.state);
                // A delivery that raced with a reconnect belongs to a dead channel.
                if shared.generation.load(Ordering::Acquire) == link.generation {
                    let held = Held {
                        acker: delivery.acker.clone(),
                        generation: link.generation,
                        delivery_tag: delivery.delivery_tag,
                    };
                    state.parcels.insert(first, Parcel { held, open: events.len() });
                    state.unsettled.insert((link.generation, delivery.delivery_tag));
                    for (tag, incoming) in (first..).zip(events) {
                        state.members.insert(tag, first);
                        state.buffer.push_back(Delivery {
                            tag,
                            queue: queue.clone(),
                            envelope: incoming.envelope,
                            attempt: incoming.attempt,
                            // A retry comes back as a new message, unflagged.
                            redelivered: delivery.redelivered || incoming.attempt > 1,
                        });
                    }
                    true
                } else {
                    false
                }
            };
            if !accepted {
                return Ok(Ended::Replaced);
            }
            slot.arrived.notify_waiters();
        }
        Ok::<_, BusError>(Ended::Cancelled)
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
        // The supervisor is replacing this connection already.
        Ok(Ended::Replaced) => {
            tracing::debug!(queue = %queue, generation, "Consumer of a replaced connection ended.")
        }
        Ok(Ended::Cancelled) => {
            tracing::warn!(queue = %queue, "The broker cancelled the consumer; reconnecting.")
        }
        Err(error) => {
            tracing::warn!(queue = %queue, error = %error, "The consumer's channel failed; reconnecting.")
        }
    }
    shared.kick(link.generation);
}
