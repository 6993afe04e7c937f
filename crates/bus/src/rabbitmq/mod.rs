//! The RabbitMQ bus: the same [`EventBus`] contract as the embedded bus, on a broker several
//! nodes share.
//!
//! # Layout
//! - [`settings`]: [`RabbitSettings`], embeddable in the server's config.
//! - `topology`: the exchanges and queues (work, retry tiers, dead) and their declarations.
//! - `connection`: the connection, and the supervisor that replaces it after a failure.
//! - `consume`: lazily started consumers, buffered deliveries, acks.
//! - `publish`: publishing with publisher confirms under a window.
//! - `dead_letters`: retry and dead-letter moves; listing, replaying and purging dead queues.
//! - `batch`: which events of a publish travel together, and how many a message carries.
//! - `message`: the message layout (body, `message_id`, `x-ordermill-*` headers).
//! - [`relay`]: [`run_relay`], which publishes what the outbox still holds unconfirmed.
//!
//! # On the broker (names for the default settings, `<q>` = prefix + queue)
//! - `orders` (topic, durable): every event, routed by its key to the bound `<q>` queues.
//! - `<q>` (durable; quorum if configured): dead-letters to `orders.dlx` with key `<q>`.
//! - `<q>.retry.<ms>`: one per delay tier, `x-message-ttl = ms`, dead-letters back to `<q>`.
//! - `orders.dlx` (direct) → `<q>.dead`, bound with key `<q>`.

mod batch;
mod connection;
mod consume;
mod dead_letters;
mod message;
mod publish;
pub mod relay;
pub mod settings;
mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{
    BusError, DeadLetter, DeadLetterPage, DeadLetterSelection, Delivery, Envelope, EventBus,
    Outbox, QueueDepth,
};
use ordermill_core::{Routes, Topology};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::connection::{Link, unavailable};
use self::consume::{QueueSlot, lock};
use self::publish::Outgoing;
pub use self::relay::{OUTBOX_OLDEST_SECONDS, run_relay};
pub use self::settings::RabbitSettings;
use self::topology::Names;

/// What the bus, its supervisor and its consumer tasks share.
pub(crate) struct Shared {
    settings: RabbitSettings,
    routes: Routes,
    names: Names,
    /// Shown by `rabbitmqctl list_connections` and the management UI.
    connection_name: String,
    /// The live connection; `None` while reconnecting.
    link: watch::Sender<Option<Arc<Link>>>,
    /// The live connection's generation (0 while reconnecting).
    generation: AtomicU64,
    /// The highest generation a task reported broken, and the supervisor's wake-up.
    kicked_generation: AtomicU64,
    kicked: Notify,
    slots: Vec<QueueSlot>,
    /// Permits = publishes that may await their confirm at once.
    window: Arc<Semaphore>,
    next_tag: AtomicU64,
    backlog: AtomicU64,
    /// Events per message, as published and received here: ready counts are in messages.
    carried: batch::Carried,
    outbox: Arc<dyn Outbox>,
    stop: CancellationToken,
}

/// An [`EventBus`] on RabbitMQ, with publisher confirms, delayed retries through TTL queues,
/// dead queues and a connection that heals itself.
pub struct RabbitBus {
    shared: Arc<Shared>,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RabbitBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitBus").field("connection", &self.shared.connection_name).finish()
    }
}

impl RabbitBus {
    /// Connects, declares the topology and starts the supervisor and the backlog refresh.
    /// Consumers start on each queue's first [`EventBus::receive`].
    ///
    /// # Errors
    /// [`BusError::Unavailable`] when the broker cannot be reached or refuses the topology;
    /// the message says what to check.
    pub async fn start(
        settings: RabbitSettings,
        topology: Topology,
        outbox: Arc<dyn Outbox>,
    ) -> Result<RabbitBus, BusError> {
        let names = Names::new(&settings, &topology);
        let slots = names.queues.iter().cloned().map(QueueSlot::new).collect();
        let suffix = Uuid::now_v7().simple().to_string();
        let shared = Arc::new(Shared {
            connection_name: format!(
                "ordermill {}{}",
                settings.queue_prefix,
                &suffix[suffix.len() - 8..]
            ),
            window: Arc::new(Semaphore::new(settings.confirm_window.max(1))),
            settings,
            routes: Routes::new(topology),
            names,
            link: watch::Sender::new(None),
            generation: AtomicU64::new(0),
            kicked_generation: AtomicU64::new(0),
            kicked: Notify::new(),
            slots,
            next_tag: AtomicU64::new(1),
            backlog: AtomicU64::new(0),
            carried: batch::Carried::default(),
            outbox,
            stop: CancellationToken::new(),
        });
        let link = Arc::new(connection::connect(&shared, 1).await?);
        shared.bring_up(&link);
        let supervisor = tokio::spawn(connection::supervise(shared.clone(), link));
        tokio::spawn(refresh_backlog(shared.clone()));
        tracing::info!(connection = %shared.connection_name, "Connected to RabbitMQ and declared the topology.");
        Ok(RabbitBus { shared, supervisor: std::sync::Mutex::new(Some(supervisor)) })
    }

    /// The name this bus's connections carry on the broker (`rabbitmqctl list_connections
    /// client_properties`, the management UI).
    pub fn connection_name(&self) -> &str {
        &self.shared.connection_name
    }

    /// Whether a connection is up right now (false while the supervisor reconnects).
    pub fn is_connected(&self) -> bool {
        self.shared.link.borrow().is_some()
    }

    /// Stops the bus (supervisor, consumers; unacked deliveries go back to the broker), then
    /// deletes its queues and both exchanges, with everything in them. For tests and
    /// teardown: the bus cannot be used afterwards.
    ///
    /// # Errors
    /// When the broker cannot be reached or refuses a deletion.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        self.shared.stop.cancel();
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor {
            // The supervisor closes the live connection as it ends; its result is only a
            // panic, already reported by the runtime.
            let _ = supervisor.await;
        }
        // A connection of its own: the bus's was closed by the supervisor.
        let link = connection::connect_plain(&self.shared).await?;
        let channel = link.create_channel().await.map_err(unavailable)?;
        let deleted = topology::delete(&channel, &self.shared.names).await;
        let _ = link.close(200, "deleted".into()).await;
        deleted.map_err(unavailable)
    }

    async fn depths_now(&self) -> Result<Vec<(String, QueueDepth)>, BusError> {
        self.shared.depths().await
    }
}

impl Drop for RabbitBus {
    fn drop(&mut self) {
        // Ends the supervisor (which closes the connection), the consumers and the refresh.
        self.shared.stop.cancel();
    }
}

impl Shared {
    async fn depths(&self) -> Result<Vec<(String, QueueDepth)>, BusError> {
        let link = self.live_link()?;
        let channel = self.scratch_channel(&link).await?;
        let counting = async {
            let mut depths = Vec::with_capacity(self.slots.len());
            for slot in &self.slots {
                let names = &slot.names;
                let mut delayed = 0;
                for (_, retry) in &names.retries {
                    delayed += Self::ready_count(&channel, retry).await?;
                }
                let depth = QueueDepth {
                    ready: self.carried.events_in(Self::ready_count(&channel, &names.work).await?),
                    delayed,
                    in_flight: slot.in_flight(),
                    dead: Self::ready_count(&channel, &names.dead).await?,
                };
                depths.push((names.logical.clone(), depth));
            }
            Ok::<_, BusError>(depths)
        };
        // A refresh stuck on a dying connection would leave intake reading a stale backlog,
        // and refusing orders as `overloaded` on it, for good.
        let counted = self.bounded(link.generation, "counting the queues", counting).await;
        let _ = self
            .bounded(link.generation, "closing a channel", channel.close(200, "counted".into()))
            .await;
        let depths = counted?;
        self.backlog.store(depths.iter().map(|(_, d)| d.backlog()).sum(), Ordering::Relaxed);
        Ok(depths)
    }
}

/// Keeps [`EventBus::backlog_hint`] fresh: intake reads it on every request and must not
/// wait for the broker.
async fn refresh_backlog(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if shared.link.borrow().is_none() {
            continue;
        }
        if let Err(error) = shared.depths().await {
            tracing::debug!(error = %error, "Could not refresh the bus backlog.");
        }
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    fn queues(&self) -> Vec<String> {
        self.shared.routes.topology().queues()
    }

    /// Publishes persistent messages on the `orders` exchange, waits for every confirm, then
    /// marks the events published in the outbox. Events no queue is bound for are marked
    /// without a publish (nobody would receive them; the embedded bus drops them too).
    async fn publish(&self, events: Vec<Envelope>) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let batches = batch::group(&events, shared.settings.events_per_message, |key| {
            !shared.routes.queues_for(key).is_empty()
        });
        let bodies: Vec<_> =
            batches.iter().map(|b| if b.len() > 1 { message::batch(b) } else { None }).collect();
        let mut messages = Vec::with_capacity(batches.len());
        for (batch, body) in batches.iter().zip(&bodies) {
            match body {
                Some((payload, properties)) => messages.push(Outgoing {
                    exchange: &shared.names.exchange,
                    routing_key: &batch[0].routing_key,
                    payload,
                    properties: properties.clone(),
                }),
                None => messages.extend(batch.iter().map(|event| Outgoing {
                    exchange: &shared.names.exchange,
                    routing_key: &event.routing_key,
                    payload: event.payload.as_bytes(),
                    properties: message::properties(event.event_id, None),
                })),
            }
        }
        shared.carried.record(batches.iter().map(Vec::len).sum(), messages.len());
        shared.publish_confirmed(messages).await?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        if let Err(error) = shared.outbox.mark_published(ids).await {
            // The broker has them; the relay will send them once more and consumers
            // deduplicate on the event id.
            tracing::warn!(events = events.len(), error = %error, "Published events could not be marked in the outbox; they will be relayed again.");
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.shared.receive(queue, max, wait).await
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        self.shared.ack(deliveries).await
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        after: Duration,
        error: &str,
    ) -> Result<(), BusError> {
        self.shared.retry(delivery, after, error).await
    }

    async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), BusError> {
        self.shared.dead_letter(delivery, error).await
    }

    async fn dead_letters(
        &self,
        queue: &str,
        page: DeadLetterPage,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.shared.dead_letters(queue, page).await
    }

    async fn replay_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError> {
        self.shared.replay_dead_letters(queue, which).await
    }

    async fn purge_dead_letters(
        &self,
        queue: &str,
        which: DeadLetterSelection,
    ) -> Result<usize, BusError> {
        self.shared.purge_dead_letters(queue, which).await
    }

    async fn depths(&self) -> Result<Vec<(String, QueueDepth)>, BusError> {
        self.depths_now().await
    }

    fn backlog_hint(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    fn is_connected(&self) -> bool {
        self.shared.link.borrow().is_some()
    }
}
