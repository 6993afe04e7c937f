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

    async fn close(&self) {
        // Best effort: the broker may already be gone.
        let closing = self.connection.close(200, "ordermill: reconnecting or stopping".into());
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

/// The error of a call [`Shared::bounded`] waits on: lapin's (the broker cannot be used right
/// now) or one of ours already (a sequence of calls).
pub(crate) struct Failed(BusError);

impl From<lapin::Error> for Failed {
    fn from(error: lapin::Error) -> Self {
        Failed(unavailable(error))
    }
}

impl From<BusError> for Failed {
    fn from(error: BusError) -> Self {
        Failed(error)
    }
}

/// Maps a lapin error of a live operation: the broker cannot be used right now.
pub(crate) fn unavailable(error: lapin::Error) -> BusError {
    BusError::Unavailable(format!("RabbitMQ: {error}"))
}

/// Opens a connection to `url`, over TLS with `tls`'s CAs for `amqps://`.
async fn open(
    url: &str,
    properties: ConnectionProperties,
    tls: lapin::tcp::OwnedTLSConfig,
) -> lapin::Result<Connection> {
    Connection::connect_with_config(url, properties, tls, lapin::runtime::default_runtime()?).await
}

/// Connects, opens the publish channel in confirm mode and declares the topology.
pub(crate) async fn connect(shared: &Shared, generation: u64) -> Result<Link, BusError> {
    let settings = &shared.settings;
    let tls = settings.tls().map_err(BusError::Unavailable)?;
    let attempt = async {
        let properties = ConnectionProperties::default()
            .with_connection_name(shared.connection_name.as_str().into());
        let connection = open(&settings.url, properties, tls).await?;
        let setup = connection.create_channel().await?;
        topology::declare(&setup, settings, shared.routes.topology(), &shared.names).await?;
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
    /// Waits for `call` (a lapin call on connection `generation`, or a few in a row) until it
    /// completes, the connection is taken down, or `confirm_timeout` passes. lapin completes a call once its
    /// frame is written (or answered), and a connection that dies at that moment can leave
    /// the call pending for good: a broker restart test saw an ack hang that way, and the
    /// consumer loop waiting on it stopped while the other queues went on. Once the connection
    /// is down nothing is lost by giving up (the broker delivers what it held again); past the
    /// limit the connection is replaced.
    pub(crate) async fn bounded<T, E: Into<Failed>>(
        &self,
        generation: u64,
        what: &str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, BusError> {
        let deadline = tokio::time::Instant::now() + self.settings.confirm_timeout();
        self.bounded_until(generation, what, deadline, call).await
    }

    /// [`Shared::bounded`] with a deadline of the caller's (a publish's, so that publishing
    /// and confirming together stay within `confirm_timeout`: the relay counts on it).
    pub(crate) async fn bounded_until<T, E: Into<Failed>>(
        &self,
        generation: u64,
        what: &str,
        deadline: tokio::time::Instant,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, BusError> {
        let mut live = self.link.subscribe();
        let taken_down =
            live.wait_for(|link| link.as_ref().is_none_or(|link| link.generation != generation));
        tokio::select! {
            done = call => done.map_err(|error| error.into().0),
            _ = taken_down => Err(BusError::Unavailable(format!(
                "the RabbitMQ connection closed before {what} completed; reconnecting"
            ))),
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    connection = %self.connection_name,
                    generation,
                    call = what,
                    timeout = %self.settings.confirm_timeout,
                    "RabbitMQ did not complete a call in time; replacing the connection."
                );
                self.kick(generation);
                Err(BusError::Unavailable(format!(
                    "RabbitMQ did not complete {what} within {}; reconnecting",
                    self.settings.confirm_timeout
                )))
            }
        }
    }

    /// A short-lived channel on `link` for an administrative call (passive declares,
    /// basic.get, purge): a failed call closes only that channel, never the publish channel.
    pub(crate) async fn scratch_channel(&self, link: &Link) -> Result<Channel, BusError> {
        self.bounded(link.generation, "opening a channel", link.connection.create_channel()).await
    }

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
    let tls = shared.settings.tls().map_err(BusError::Unavailable)?;
    match tokio::time::timeout(
        shared.settings.connect_timeout(),
        open(&shared.settings.url, properties, tls),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(unavailable(error)),
        Err(_) => Err(BusError::Unavailable("connecting to RabbitMQ timed out".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::future::pending;
    use std::time::Instant;

    use async_trait::async_trait;
    use ordermill_core::ports::{Envelope, Outbox, StoreError};
    use ordermill_core::{HumanDuration, Topology};
    use uuid::Uuid;

    use super::super::{RabbitBus, RabbitSettings};
    use super::*;

    /// The bus publishes nothing here, so its outbox is never read.
    struct NoOutbox;

    #[async_trait]
    impl Outbox for NoOutbox {
        async fn claim_unpublished(
            &self,
            _: usize,
            _: Duration,
            _: Duration,
        ) -> Result<Vec<Envelope>, StoreError> {
            Ok(Vec::new())
        }
        async fn release_claims(&self, _: Vec<Uuid>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn mark_published(&self, _: Vec<Uuid>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn oldest_unpublished_age(&self) -> Result<Option<Duration>, StoreError> {
            Ok(None)
        }
    }

    /// A bus on the test broker with queues of its own, or `None` (skipped) without one.
    async fn bus(confirm_timeout: HumanDuration) -> Option<RabbitBus> {
        let url = ordermill_core::test_support::service_url(
            "ORDERMILL_TEST_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        )?;
        let unique = Uuid::now_v7().simple().to_string();
        let unique = &unique[unique.len() - 12..];
        let settings = RabbitSettings {
            url,
            exchange: format!("test.{unique}.orders"),
            dead_letter_exchange: format!("test.{unique}.orders.dlx"),
            queue_prefix: format!("test.{unique}."),
            confirm_timeout,
            reconnect_min: HumanDuration::from_millis(50),
            ..RabbitSettings::default()
        };
        Some(RabbitBus::start(settings, Topology::default(), Arc::new(NoOutbox)).await.unwrap())
    }

    /// A lapin call that never completes, as an ack did on a connection that died under it.
    fn hung() -> impl Future<Output = Result<(), lapin::Error>> {
        pending()
    }

    async fn reconnected(shared: &Shared) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.generation.load(Ordering::Acquire) < 2 {
            assert!(Instant::now() < deadline, "no new connection within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_call_that_never_completes_gives_up_and_replaces_the_connection() {
        let Some(bus) = bus(HumanDuration::from_millis(300)).await else { return };
        let shared = bus.shared.clone();
        let began = Instant::now();
        let outcome = shared.bounded(1, "a test call", hung()).await;
        assert!(matches!(outcome, Err(BusError::Unavailable(_))), "{outcome:?}");
        assert!(began.elapsed() < Duration::from_secs(5), "gave up after {:?}", began.elapsed());
        reconnected(&shared).await;
        bus.delete_topology().await.unwrap();
    }

    #[tokio::test]
    async fn a_call_pending_when_its_connection_goes_down_gives_up_at_once() {
        // A limit the test would notice: the call must end with its connection, not by it.
        let Some(bus) = bus(HumanDuration::from_secs(60)).await else { return };
        let shared = bus.shared.clone();
        let call = tokio::spawn({
            let shared = shared.clone();
            async move { shared.bounded(1, "a test call", hung()).await }
        });
        // On this single-threaded runtime the spawned call runs (and starts waiting) here.
        tokio::task::yield_now().await;
        shared.kick(1);
        let outcome = tokio::time::timeout(Duration::from_secs(10), call).await;
        let outcome = outcome.expect("the call ended when its connection was taken down").unwrap();
        assert!(matches!(outcome, Err(BusError::Unavailable(_))), "{outcome:?}");
        reconnected(&shared).await;
        // A call on a connection already replaced does not wait at all.
        let stale = tokio::time::timeout(Duration::from_secs(1), shared.bounded(1, "x", hung()));
        assert!(matches!(stale.await, Ok(Err(BusError::Unavailable(_)))));
        bus.delete_topology().await.unwrap();
    }
}
