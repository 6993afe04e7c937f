//! The connection and its supervisor. lapin does not reconnect by itself (amqp-rs/lapin#288),
//! so one task per bus watches the live connection and, when it or one of its channels
//! fails, drops what the dead connection held, backs off with jitter, connects again,
//! re-declares the topology and restarts the consumers that had been started.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use ordermill_core::ports::BusError;
use ordermill_core::redact_url;

use super::Shared;
use super::topology;

/// One live connection: generation `n` of the bus's connections.
pub(crate) struct Link {
    /// Counts connections from 1; deliveries remember theirs, so what a dead connection
    /// delivered is recognised and dropped.
    pub(crate) generation: u64,
    pub(crate) connection: Connection,
    /// In confirm mode; every publish of the bus goes through it.
    pub(crate) publish: Channel,
}

impl Link {
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publish.status().connected()
    }

    /// A short-lived channel for an administrative call (passive declares, basic.get,
    /// purge): a failed call closes only that channel, never the publish channel.
    pub(crate) async fn scratch_channel(&self) -> Result<Channel, BusError> {
        self.connection.create_channel().await.map_err(unavailable)
    }

    async fn close(&self) {
        // Best effort: the broker may already be gone.
        let closing = self.connection.close(200, "ordermill: reconnecting or stopping".into());
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

/// Maps a lapin error of a live operation: the broker cannot be used right now.
pub(crate) fn unavailable(error: lapin::Error) -> BusError {
    BusError::Unavailable(format!("RabbitMQ: {error}"))
}

/// Connects, opens the publish channel in confirm mode and declares the topology.
pub(crate) async fn connect(shared: &Shared, generation: u64) -> Result<Link, BusError> {
    let settings = &shared.settings;
    let attempt = async {
        let properties = ConnectionProperties::default()
            .with_connection_name(shared.connection_name.as_str().into());
        let connection = Connection::connect(&settings.url, properties).await?;
        let setup = connection.create_channel().await?;
        topology::declare(&setup, settings, &shared.topology, &shared.names).await?;
        // Closed explicitly: declarations leave nothing on it worth keeping.
        let _ = setup.close(200, "declared".into()).await;
        let publish = connection.create_channel().await?;
        publish.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok::<_, lapin::Error>(Link { generation, connection, publish })
    };
    match tokio::time::timeout(settings.connect_timeout(), attempt).await {
        Ok(Ok(link)) => Ok(link),
        Ok(Err(error)) => Err(BusError::Unavailable(format!(
            "cannot connect to RabbitMQ at {} or declare its topology: {error}. Check that the \
             broker runs and listens there, that the user, password and vhost in the URL are \
             right, and that existing queues were not declared with other arguments \
             (e.g. classic versus quorum)",
            redact_url(&settings.url)
        ))),
        Err(_) => Err(BusError::Unavailable(format!(
            "connecting to RabbitMQ at {} took more than {}. Check the host and port, and \
             that no firewall drops the packets",
            redact_url(&settings.url),
            settings.connect_timeout
        ))),
    }
}

/// Runs until the bus stops: keeps a connection up.
pub(crate) async fn supervise(shared: Arc<Shared>, first: Arc<Link>) {
    let mut link = first;
    loop {
        if !wait_until_broken(&shared, &link).await {
            shared.take_down(&link).await;
            return;
        }
        tracing::warn!(
            connection = %shared.connection_name,
            "The RabbitMQ connection or one of its channels failed; reconnecting."
        );
        shared.take_down(&link).await;
        let next = link.generation + 1;
        let mut delay = shared.settings.reconnect_min.as_millis_u64().max(1);
        link = loop {
            // Full jitter over the upper half, so many nodes do not reconnect in lockstep.
            let sleep = Duration::from_millis(delay / 2 + fastrand::u64(0..=delay - delay / 2));
            tokio::select! {
                () = shared.stop.cancelled() => return,
                () = tokio::time::sleep(sleep) => {}
            }
            match connect(&shared, next).await {
                Ok(link) => break Arc::new(link),
                Err(error) => {
                    tracing::warn!(
                        connection = %shared.connection_name,
                        retry_in_ms = delay,
                        error = %error,
                        "Cannot reconnect to RabbitMQ yet."
                    );
                    delay = delay
                        .saturating_mul(2)
                        .min(shared.settings.reconnect_max.as_millis_u64().max(1));
                }
            }
        };
        shared.bring_up(&link);
        tracing::info!(
            connection = %shared.connection_name,
            generation = link.generation,
            "Reconnected to RabbitMQ; topology declared and consumers resumed."
        );
    }
}

/// Waits until `link` fails (true) or the bus stops (false).
async fn wait_until_broken(shared: &Shared, link: &Link) -> bool {
    let mut events = link.connection.events_listener();
    // A fallback for failures that raise no event (a channel the broker closed): lapin's
    // status flags are cheap to read.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let kicked = shared.kicked.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        if shared.kicked_generation.load(Ordering::Acquire) == link.generation || !link.healthy() {
            return true;
        }
        tokio::select! {
            () = shared.stop.cancelled() => return false,
            () = &mut kicked => {}
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(connection = %shared.connection_name, error = %error, "RabbitMQ connection error.");
                    return true;
                }
                Some(_) => {}
                // The connection is gone with its event stream.
                None => return true,
            },
            _ = tick.tick() => {}
        }
    }
}

impl Shared {
    /// Asks the supervisor to replace connection `generation` (a failed channel of it).
    pub(crate) fn kick(&self, generation: u64) {
        self.kicked_generation.fetch_max(generation, Ordering::AcqRel);
        self.kicked.notify_waiters();
    }

    /// Makes `link` the live connection and (re)starts the consumers that were started.
    pub(crate) fn bring_up(self: &Arc<Self>, link: &Arc<Link>) {
        self.generation.store(link.generation, Ordering::Release);
        self.link.send_replace(Some(link.clone()));
        for slot in &self.slots {
            if slot.started.load(Ordering::Acquire) {
                self.ensure_consumer(slot, link);
            }
        }
    }

    /// Stops using `link`: no more publishing on it, and every delivery it brought is
    /// dropped locally (the broker delivers them again once their channel is gone).
    async fn take_down(&self, link: &Link) {
        self.generation.store(0, Ordering::Release);
        self.link.send_replace(None);
        link.close().await;
        for slot in &self.slots {
            slot.forget_all();
        }
    }
}

/// A bare connection (no topology, no channels), for one-off administration.
pub(crate) async fn connect_plain(shared: &Shared) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{} admin", shared.connection_name).into());
    match tokio::time::timeout(
        shared.settings.connect_timeout(),
        Connection::connect(&shared.settings.url, properties),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(unavailable(error)),
        Err(_) => Err(BusError::Unavailable("connecting to RabbitMQ timed out".to_owned())),
    }
}
