//! The event bus: a topic exchange feeding queues, with manual ack, delayed retry and
//! dead letters. Workers decide retry-or-dead from the attempt count; the bus keeps it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use uuid::Uuid;

use crate::clock::UnixMillis;

/// What a bus operation can fail with.
#[derive(Debug, Error)]
pub enum BusError {
    /// No such queue in the topology.
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    /// The broker (or its durable ledger) cannot be reached; retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// Anything else from the backend.
    #[error("bus backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An event on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id; consumers deduplicate on it.
    pub event_id: Uuid,
    /// Topic routing key, e.g. `order.created`.
    pub routing_key: Arc<str>,
    /// JSON body.
    pub payload: Arc<str>,
}

impl From<crate::event::OutboxEvent> for Envelope {
    fn from(event: crate::event::OutboxEvent) -> Self {
        Envelope {
            event_id: event.event_id,
            routing_key: Arc::from(event.routing_key.as_str()),
            payload: Arc::from(event.payload),
        }
    }
}

/// One event handed to one queue's consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Identifies this delivery for ack/retry/dead-letter.
    pub tag: u64,
    /// The queue it came from.
    pub queue: Arc<str>,
    /// The event.
    pub envelope: Envelope,
    /// 1 for the first delivery to this queue, counting every retry (our own count: a
    /// broker's redelivery flag can reset).
    pub attempt: u32,
    /// The queue may have handed this message out before (the broker's redelivery flag, a
    /// recovery after a restart, a failed ack): a consumer may have done its work already.
    /// False only for a message seen for the first time, whose processed record cannot exist
    /// unless the event was published twice.
    pub redelivered: bool,
}

impl Delivery {
    /// Whether a consumer may have handled this event before: redelivered, or a retry.
    pub fn may_be_repeat(&self) -> bool {
        self.redelivered || self.attempt > 1
    }
}

/// Which dead letters of a queue a replay or purge takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterSelection {
    /// Every one.
    All,
    /// The one of this event (an operator who fixed one order's cause).
    Event(Uuid),
}

impl From<Option<Uuid>> for DeadLetterSelection {
    /// One event's dead letter when an id is given (`?event_id=`, `--event-id`), else all.
    fn from(event: Option<Uuid>) -> Self {
        event.map_or(DeadLetterSelection::All, DeadLetterSelection::Event)
    }
}

impl DeadLetterSelection {
    /// Whether it takes the dead letter of `event`.
    pub fn takes(self, event: Uuid) -> bool {
        match self {
            DeadLetterSelection::All => true,
            DeadLetterSelection::Event(id) => id == event,
        }
    }
}

/// An event a queue gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The queue.
    pub queue: String,
    /// The event.
    pub envelope: Envelope,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was dead-lettered.
    pub died_at: UnixMillis,
}

impl DeadLetter {
    /// The order the event is about, from its payload; `None` for a payload that is not an
    /// ordermill event.
    pub fn order_id(&self) -> Option<String> {
        crate::OutboxEvent::header(&self.envelope.payload).ok().map(|h| h.order_id)
    }
}

/// Which dead letters of a queue to list: oldest first, `limit` of them after skipping
/// `offset`. Listings are paged so that a queue with a million dead letters costs a page of
/// memory to look at, not a million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterPage {
    /// Dead letters skipped, oldest first.
    pub offset: usize,
    /// Dead letters returned at most.
    pub limit: usize,
}

impl DeadLetterPage {
    /// The most a page may hold.
    pub const MAX_LIMIT: usize = 1_000;
    /// A page's size when none is asked for.
    pub const DEFAULT_LIMIT: usize = 100;

    /// The first `limit` dead letters.
    pub fn first(limit: usize) -> DeadLetterPage {
        DeadLetterPage { offset: 0, limit }
    }
}

/// How much a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Waiting to be delivered now, in events (where a broker counts messages carrying several
    /// events, an estimate at the mean events per message).
    pub ready: u64,
    /// Waiting for a retry delay.
    pub delayed: u64,
    /// Delivered, not yet acked.
    pub in_flight: u64,
    /// Dead letters.
    pub dead: u64,
}

impl QueueDepth {
    /// Everything not yet done (dead letters excluded).
    pub fn backlog(&self) -> u64 {
        self.ready + self.delayed + self.in_flight
    }
}

/// A topic exchange with durable queues.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// The queues of the topology, in configuration order.
    fn queues(&self) -> Vec<String>;

    /// Routes events (already durable in the outbox) to every queue bound to their key.
    ///
    /// # Errors
    /// When the broker cannot take them; the outbox keeps them for a later attempt.
    async fn publish(&self, events: Vec<Envelope>) -> Result<(), BusError>;

    /// Waits up to `wait` for deliveries on `queue` and returns at most `max` (possibly none).
    ///
    /// # Errors
    /// [`BusError::UnknownQueue`], or when the broker is unreachable.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Marks deliveries done; they are not delivered again.
    ///
    /// # Errors
    /// When the ack cannot be recorded (the deliveries will come again).
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BusError>;

    /// Delivers again after `after`, with `attempt + 1`, remembering `error`.
    ///
    /// # Errors
    /// When the retry cannot be recorded.
    async fn retry(
        &self,
        delivery: &Delivery,
        after: Duration,
        error: &str,
    ) -> Result<(), BusError>;

    /// Moves a delivery to its queue's dead letters.
    ///
    /// # Errors
    /// When the dead letter cannot be recorded.
    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), BusError>;

    /// One page of the dead letters of `queue`, oldest first (see [`DeadLetterPage`]); how
    /// many there are in all is [`QueueDepth::dead`].
    ///
    /// # Errors
    /// [`BusError::UnknownQueue`] or a backend failure.
    async fn dead_letters(
        &self,
        queue: &str,
        page: DeadLetterPage,
    ) -> Result<Vec<DeadLetter>, BusError>;

    /// Sends the dead letters of `queue` that `which` selects back to it with a fresh attempt
    /// count. Returns how many (0 when `which` names an event that is not there).
    ///
    /// # Errors
    /// [`BusError::UnknownQueue`] or a backend failure.
    async fn replay_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError>;

    /// Drops the dead letters of `queue` that `which` selects. Returns how many.
    ///
    /// # Errors
    /// [`BusError::UnknownQueue`] or a backend failure.
    async fn purge_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError>;

    /// Depth per queue, in [`EventBus::queues`] order.
    ///
    /// # Errors
    /// When the broker cannot be asked.
    async fn depths(&self) -> Result<Vec<(String, QueueDepth)>, BusError>;

    /// How many dead letters `queue` holds ([`QueueDepth::dead`]; 0 for a queue not listed).
    ///
    /// # Errors
    /// When the depths cannot be read.
    async fn dead_letter_total(&self, queue: &str) -> Result<u64, BusError> {
        let depths = self.depths().await?;
        Ok(depths.iter().find(|(name, _)| name == queue).map_or(0, |(_, d)| d.dead))
    }

    /// A cheap, possibly slightly stale total backlog over all queues, for intake's
    /// backpressure check on every request.
    fn backlog_hint(&self) -> u64;

    /// Whether events can travel now (a broker connection is up), for readiness reports. The
    /// default, for an in-process bus: always.
    fn is_connected(&self) -> bool {
        true
    }
}

/// Durable bookkeeping for an in-process bus: the outbox rows are the messages; this records
/// per-queue acks, retries and dead letters next to them, so a restart resumes exactly.
#[async_trait]
pub trait BusLedger: Send + Sync + 'static {
    /// Every event still in the outbox, with what each queue already did with it.
    ///
    /// # Errors
    /// On a store failure.
    async fn unfinished(&self) -> Result<Vec<LedgerEntry>, crate::ports::StoreError>;

    /// Records acks; `finished` events (acked or purged by every bound queue) are deleted
    /// from the outbox with their bookkeeping, in the same transaction.
    ///
    /// # Errors
    /// On a store failure; nothing was recorded.
    async fn record_acks(
        &self,
        acks: Vec<(Arc<str>, Uuid)>,
        finished: Vec<Uuid>,
    ) -> Result<(), crate::ports::StoreError>;

    /// Records a retry: attempts made so far, when to deliver next, the last error.
    ///
    /// # Errors
    /// On a store failure.
    async fn record_retry(
        &self,
        queue: &str,
        event_id: Uuid,
        attempts: u32,
        not_before: UnixMillis,
        error: &str,
    ) -> Result<(), crate::ports::StoreError>;

    /// Records a dead letter.
    ///
    /// # Errors
    /// On a store failure.
    async fn record_dead(
        &self,
        queue: &str,
        event_id: Uuid,
        attempts: u32,
        error: &str,
        at: UnixMillis,
    ) -> Result<(), crate::ports::StoreError>;

    /// Forgets the dead letters (and retry counts) of `queue` for these events, so they are
    /// delivered afresh — on replay, or on the next start if the process stops first.
    ///
    /// # Errors
    /// On a store failure.
    async fn clear_dead(
        &self,
        queue: &str,
        events: Vec<Uuid>,
    ) -> Result<(), crate::ports::StoreError>;
}

/// One outbox event and its per-queue state.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// The event (its body rebuilt from the order where the row holds none).
    pub envelope: Envelope,
    /// Queues that acked it.
    pub acked: Vec<String>,
    /// Queues retrying it: (queue, attempts so far, next delivery, last error).
    pub retries: Vec<(String, u32, UnixMillis, String)>,
    /// Queues that dead-lettered it: (queue, attempts, error, when).
    pub dead: Vec<(String, u32, String, UnixMillis)>,
}
