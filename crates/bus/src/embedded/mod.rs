//! The in-process bus. Messages are the outbox rows the store already made durable; this
//! keeps per-queue ready/delayed/in-flight/dead state in memory and records every retry, dead
//! letter and purge through the [`BusLedger`] before acting on it, so on start
//! [`EmbeddedBus::start`] rebuilds what each queue still owes (at-least-once). A consumer's ack
//! is not recorded until the event is finished: an event a queue acked before a crash comes
//! back to it flagged as a possible repeat, and the consumer's processed record answers it.
//!
//! An outbox row is deleted once every queue bound to its routing key has acked (or purged)
//! it; a dead letter keeps it, so a replay has the body.

mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{
    BusError, BusLedger, DeadLetter, DeadLetterPage, DeadLetterSelection, Delivery, Envelope,
    EventBus, QueueDepth, StoreError,
};
use ordermill_core::{Clock, Routes, Topology, UnixMillis};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use self::queue::{Pending, QueueState};

struct Slot {
    name: Arc<str>,
    state: Mutex<QueueState>,
    arrived: Notify,
}

/// An in-process topic exchange with durable queues.
pub struct EmbeddedBus {
    /// Each routing key's queues, as positions in `slots`.
    routes: Routes,
    slots: Vec<Slot>,
    /// Per event: how many bound queues have not yet acked or purged it.
    remaining: Mutex<HashMap<Uuid, usize>>,
    ledger: Arc<dyn BusLedger>,
    clock: Arc<dyn Clock>,
    next_tag: AtomicU64,
    backlog: AtomicU64,
    /// Dead letters held (in memory, with their bodies): intake's backpressure counts them
    /// with the backlog, so they cannot grow the process without bound.
    dead: AtomicU64,
}

fn ledger_error(error: StoreError) -> BusError {
    BusError::Unavailable(format!("bus ledger: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning needs a panic while holding the lock; the state is plain collections that
    // stay consistent between statements, so keep going.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmbeddedBus {
    /// Builds the bus and loads what each queue still owes from the ledger.
    ///
    /// # Errors
    /// When the ledger cannot be read.
    pub async fn start(
        topology: Topology,
        ledger: Arc<dyn BusLedger>,
        clock: Arc<dyn Clock>,
    ) -> Result<EmbeddedBus, BusError> {
        let slots = topology
            .queues()
            .into_iter()
            .map(|name| Slot {
                name: Arc::from(name),
                state: Mutex::default(),
                arrived: Notify::new(),
            })
            .collect();
        let bus = EmbeddedBus {
            routes: Routes::new(topology),
            slots,
            remaining: Mutex::default(),
            ledger,
            clock,
            next_tag: AtomicU64::new(1),
            backlog: AtomicU64::new(0),
            dead: AtomicU64::new(0),
        };
        bus.recover().await?;
        Ok(bus)
    }

    async fn recover(&self) -> Result<(), BusError> {
        let entries = self.ledger.unfinished().await.map_err(ledger_error)?;
        let now_wall = self.clock.now();
        let now = Instant::now();
        let mut finished = Vec::new();
        let (mut redelivered, mut dead_count) = (0u64, 0u64);
        for entry in entries {
            let bound: Vec<&str> = self.routes.topology().queues_for(&entry.envelope.routing_key);
            let owed: Vec<&str> =
                bound.into_iter().filter(|q| !entry.acked.iter().any(|a| a == q)).collect();
            if owed.is_empty() {
                finished.push(entry.envelope.event_id);
                continue;
            }
            lock(&self.remaining).insert(entry.envelope.event_id, owed.len());
            for queue in owed {
                let Some(slot) = self.slot(queue) else { continue };
                let mut state = lock(&slot.state);
                if let Some((_, attempts, error, at)) = entry.dead.iter().find(|d| d.0 == queue) {
                    state.dead.push(DeadLetter {
                        queue: queue.to_owned(),
                        envelope: entry.envelope.clone(),
                        attempts: *attempts,
                        error: error.clone(),
                        died_at: *at,
                    });
                    dead_count += 1;
                    continue;
                }
                self.backlog.fetch_add(1, Ordering::Relaxed);
                redelivered += 1;
                match entry.retries.iter().find(|r| r.0 == queue) {
                    Some((_, attempts, not_before, _)) => {
                        let wait = u64::try_from(not_before.0 - now_wall.0).unwrap_or(0);
                        let pending = Pending {
                            envelope: entry.envelope.clone(),
                            attempt: attempts + 1,
                            redelivered: true,
                        };
                        state.delay(pending, now + Duration::from_millis(wait));
                    }
                    None => state.ready.push_back(Pending {
                        envelope: entry.envelope.clone(),
                        attempt: 1,
                        // Recovered: delivered before the restart, perhaps handled.
                        redelivered: true,
                    }),
                }
            }
        }
        self.dead.fetch_add(dead_count, Ordering::Relaxed);
        if !finished.is_empty() {
            self.ledger.record_acks(Vec::new(), finished).await.map_err(ledger_error)?;
        }
        if redelivered + dead_count > 0 {
            tracing::info!(
                redelivered,
                dead_letters = dead_count,
                "Recovered the embedded bus from the outbox."
            );
        }
        Ok(())
    }

    fn slot(&self, queue: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| &*s.name == queue)
    }

    fn slot_or_err(&self, queue: &str) -> Result<&Slot, BusError> {
        self.slot(queue).ok_or_else(|| BusError::UnknownQueue(queue.to_owned()))
    }

    /// Removes deliveries from their queue's in-flight set; returns those that were there.
    fn take_in_flight(&self, deliveries: &[Delivery]) -> Vec<(Arc<str>, Uuid)> {
        let mut taken = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            if let Some(slot) = self.slot(&delivery.queue)
                && lock(&slot.state).in_flight.remove(&delivery.tag).is_some()
            {
                taken.push((slot.name.clone(), delivery.envelope.event_id));
            }
        }
        taken
    }

    /// Counts one queue done with each event; returns the events every queue is done with.
    fn settle(&self, done: &[(Arc<str>, Uuid)]) -> Vec<Uuid> {
        let mut remaining = lock(&self.remaining);
        let mut finished = Vec::new();
        for (_, event) in done {
            if let Some(left) = remaining.get_mut(event) {
                *left -= 1;
                if *left == 0 {
                    remaining.remove(event);
                    finished.push(*event);
                }
            }
        }
        finished
    }
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn queues(&self) -> Vec<String> {
        self.routes.topology().queues()
    }

    async fn publish(&self, events: Vec<Envelope>) -> Result<(), BusError> {
        let mut unrouted = Vec::new();
        for envelope in events {
            let queues = self.routes.queues_for(&envelope.routing_key);
            if queues.is_empty() {
                unrouted.push(envelope.event_id);
                continue;
            }
            lock(&self.remaining).insert(envelope.event_id, queues.len());
            // The slots were made from the same topology's queues, in its order.
            for slot in queues.iter().filter_map(|&i| self.slots.get(i)) {
                lock(&slot.state).ready.push_back(Pending {
                    envelope: envelope.clone(),
                    attempt: 1,
                    redelivered: false,
                });
                self.backlog.fetch_add(1, Ordering::Relaxed);
                slot.arrived.notify_waiters();
            }
        }
        if !unrouted.is_empty() {
            // Nobody listens for these keys: nothing will ever ack them, so drop the rows now.
            self.ledger.record_acks(Vec::new(), unrouted).await.map_err(ledger_error)?;
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let slot = self.slot_or_err(queue)?;
        let deadline = Instant::now() + wait;
        loop {
            let arrived = slot.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a publish between the look and the wait wakes us.
            arrived.as_mut().enable();
            let next_due = {
                let mut state = lock(&slot.state);
                let next_due = state.promote_due(Instant::now());
                let mut out = Vec::new();
                while out.len() < max.max(1) {
                    let Some(pending) = state.ready.pop_front() else { break };
                    let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
                    out.push(Delivery {
                        tag,
                        queue: slot.name.clone(),
                        envelope: pending.envelope.clone(),
                        attempt: pending.attempt,
                        redelivered: pending.redelivered,
                    });
                    state.in_flight.insert(tag, pending);
                }
                if !out.is_empty() {
                    return Ok(out);
                }
                next_due
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let taken = self.take_in_flight(deliveries);
        let finished = self.settle(&taken);
        // A consumer's ack is not written down: its processed record, committed with its
        // effect, already proves the event handled, and after a crash the event comes back
        // flagged as a possible repeat, which the consumer answers from that record. Only an
        // event every queue is done with is written (its outbox row deleted): two ack rows
        // written and deleted again per order cost the single writer more than the lookups a
        // restart makes (docs/ARCHITECTURE.md, "What the embedded bus writes").
        if finished.is_empty() {
            self.backlog.fetch_sub(taken.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        if let Err(error) = self.ledger.record_acks(Vec::new(), finished.clone()).await {
            // Not recorded: deliver them again (consumers recognise processed events).
            let mut remaining = lock(&self.remaining);
            for (_, event) in &taken {
                *remaining.entry(*event).or_insert(0) += 1;
            }
            drop(remaining);
            for delivery in deliveries {
                if let Some(slot) = self.slot(&delivery.queue) {
                    let pending = Pending {
                        envelope: delivery.envelope.clone(),
                        attempt: delivery.attempt,
                        // Handled, its ack not recorded.
                        redelivered: true,
                    };
                    lock(&slot.state).ready.push_back(pending);
                }
            }
            return Err(ledger_error(error));
        }
        self.backlog.fetch_sub(taken.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        after: Duration,
        error: &str,
    ) -> Result<(), BusError> {
        let slot = self.slot_or_err(&delivery.queue)?;
        let Some(pending) = lock(&slot.state).in_flight.remove(&delivery.tag) else {
            return Ok(());
        };
        let not_before = UnixMillis(
            self.clock.now().0 + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2),
        );
        let recorded = self
            .ledger
            .record_retry(
                &slot.name,
                delivery.envelope.event_id,
                delivery.attempt,
                not_before,
                error,
            )
            .await;
        let next = Pending {
            envelope: pending.envelope,
            attempt: delivery.attempt + 1,
            redelivered: true,
        };
        lock(&slot.state).delay(next, Instant::now() + after);
        slot.arrived.notify_waiters();
        recorded.map_err(ledger_error)
    }

    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), BusError> {
        let slot = self.slot_or_err(&delivery.queue)?;
        let Some(pending) = lock(&slot.state).in_flight.remove(&delivery.tag) else {
            return Ok(());
        };
        let at = self.clock.now();
        if let Err(failure) = self
            .ledger
            .record_dead(&slot.name, delivery.envelope.event_id, delivery.attempt, error, at)
            .await
        {
            lock(&slot.state).ready.push_back(pending);
            return Err(ledger_error(failure));
        }
        lock(&slot.state).dead.push(DeadLetter {
            queue: slot.name.to_string(),
            envelope: pending.envelope,
            attempts: delivery.attempt,
            error: error.to_owned(),
            died_at: at,
        });
        self.backlog.fetch_sub(1, Ordering::Relaxed);
        self.dead.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn dead_letters(
        &self,
        queue: &str,
        page: DeadLetterPage,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let state = lock(&self.slot_or_err(queue)?.state);
        Ok(state.dead.iter().skip(page.offset).take(page.limit).cloned().collect())
    }

    async fn replay_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError> {
        let slot = self.slot_or_err(queue)?;
        let dead = take_dead(slot, which);
        let ids = dead.iter().map(|d| d.envelope.event_id).collect();
        if let Err(error) = self.ledger.clear_dead(queue, ids).await {
            lock(&slot.state).dead.extend(dead);
            return Err(ledger_error(error));
        }
        let count = dead.len();
        {
            let mut state = lock(&slot.state);
            for letter in dead {
                // As on RabbitMQ, where a replay is a new message: a dead letter's consumer
                // recorded nothing for it, so there is nothing to look up.
                state.ready.push_back(Pending {
                    envelope: letter.envelope,
                    attempt: 1,
                    redelivered: false,
                });
            }
        }
        self.backlog.fetch_add(count as u64, Ordering::Relaxed);
        self.dead.fetch_sub(count as u64, Ordering::Relaxed);
        slot.arrived.notify_waiters();
        tracing::info!(queue, count, "Replayed dead letters.");
        Ok(count)
    }

    async fn purge_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError> {
        let slot = self.slot_or_err(queue)?;
        let dead = take_dead(slot, which);
        let done: Vec<(Arc<str>, Uuid)> =
            dead.iter().map(|d| (slot.name.clone(), d.envelope.event_id)).collect();
        let finished = self.settle(&done);
        let unfinished: Vec<Uuid> =
            done.iter().map(|(_, e)| *e).filter(|e| !finished.contains(e)).collect();
        let recorded = async {
            self.ledger.record_acks(done.clone(), finished).await?;
            self.ledger.clear_dead(queue, unfinished).await
        };
        if let Err(error) = recorded.await {
            lock(&slot.state).dead.extend(dead);
            return Err(ledger_error(error));
        }
        self.dead.fetch_sub(done.len() as u64, Ordering::Relaxed);
        tracing::info!(queue, count = done.len(), "Purged dead letters.");
        Ok(done.len())
    }

    async fn depths(&self) -> Result<Vec<(String, QueueDepth)>, BusError> {
        Ok(self.slots.iter().map(|s| (s.name.to_string(), lock(&s.state).depth())).collect())
    }

    fn backlog_hint(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed) + self.dead.load(Ordering::Relaxed)
    }
}

/// Removes the dead letters `which` selects from `slot`, oldest first; the others stay.
fn take_dead(slot: &Slot, which: DeadLetterSelection) -> Vec<DeadLetter> {
    let mut state = lock(&slot.state);
    let (taken, kept) =
        std::mem::take(&mut state.dead).into_iter().partition(|d| which.takes(d.envelope.event_id));
    state.dead = kept;
    taken
}
