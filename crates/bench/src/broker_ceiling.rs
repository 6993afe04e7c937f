//! `ordermill bench broker-ceiling`: what RabbitMQ itself sustains for ordermill's topology,
//! measured without ordermill — so that a figure of the bus can be read against the broker's
//! own, on the same machine, rather than against a number from somewhere else.
//!
//! On a topic exchange and `--queues` durable queues bound with `order.created` (all named
//! `bench-ceiling-<uuid>…`, so runs never meet each other or a real deployment), a run
//! 1. publishes `--messages` persistent messages on one confirm-mode channel, as ordermill's
//!    bus does, with at most `--window` unconfirmed, and times until the last confirm;
//! 2. then drains every copy from all queues at once with manual `multiple` acks under a
//!    `--prefetch`, and times until the last ack;
//! 3. deletes the queues and the exchange, also when a phase failed or ctrl-c came.
//!
//! # Layout
//! - this file: the flags ([`BrokerCeilingArgs`]), [`run`], connecting (over TLS with
//!   `--ca-file`'s CAs for `amqps://`), the names, declaring and deleting the topology.
//! - `publish`: the publish phase and the confirm collector that times each confirm.
//! - `consume`: the consume phase, one consumer per queue.
//! - [`report`]: the [`BrokerCeilingReport`] printed and saved as JSON.
//! - `error`: [`BrokerCeilingError`].

mod consume;
mod error;
mod publish;
pub mod report;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::time::Instant;

pub use error::BrokerCeilingError;
pub use report::BrokerCeilingReport;
use report::{ConfirmLatency, ConsumeSummary, PublishSummary, per_sec, secs};

const DEFAULT_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_MESSAGES: u64 = 50_000;
const DEFAULT_WINDOW: usize = 1024;
const DEFAULT_PAYLOAD_BYTES: usize = 320;
const DEFAULT_QUEUES: usize = 3;
const DEFAULT_PREFETCH: u16 = 256;
/// The most queues a run may bind; each costs a channel, and a connection has 2047.
pub const MAX_QUEUES: usize = 1000;

/// The routing key every message is published with: ordermill's busiest event.
const ROUTING_KEY: &str = "order.created";
/// The queues ordermill fans `order.created` out to; further `--queues` are numbered.
const ORDERMILL_QUEUES: [&str; 3] = ["inventory", "payment", "notify"];
/// No confirm, or no delivery, for this long means the broker is stuck, not slow.
const STALL_LIMIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How much to send through RabbitMQ, and how.
///
/// Example: `ordermill bench broker-ceiling --messages 50000 --queues 3 --json broker.json`
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerCeilingArgs {
    /// RabbitMQ to measure; the run declares and deletes its own bench-ceiling-* objects there.
    /// amqps:// measures it over TLS.
    #[arg(long, value_name = "URL", default_value = DEFAULT_AMQP)]
    pub amqp: String,
    /// For an amqps:// broker whose certificate a private CA signed: that CA's PEM file,
    /// trusted besides the system's (as rabbitmq.ca_file is for ordermill's nodes).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Persistent messages to publish; each is routed to every queue.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MESSAGES)]
    pub messages: u64,
    /// Publisher-confirm window: the most publishes awaiting their confirm at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOW)]
    pub window: usize,
    /// Body size of each message (320 is about an order.created event).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PAYLOAD_BYTES)]
    pub payload_bytes: usize,
    /// Durable queues bound with order.created (3: inventory, payment and notify).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUEUES)]
    pub queues: usize,
    /// basic.qos prefetch of each consumer: the most unacked deliveries it holds.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PREFETCH)]
    pub prefetch: u16,
    /// Also write the report as JSON to FILE, for scripts.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl Default for BrokerCeilingArgs {
    fn default() -> Self {
        BrokerCeilingArgs {
            amqp: DEFAULT_AMQP.to_owned(),
            ca_file: None,
            messages: DEFAULT_MESSAGES,
            window: DEFAULT_WINDOW,
            payload_bytes: DEFAULT_PAYLOAD_BYTES,
            queues: DEFAULT_QUEUES,
            prefetch: DEFAULT_PREFETCH,
            json: None,
        }
    }
}

impl BrokerCeilingArgs {
    fn check(&self) -> Result<(), BrokerCeilingError> {
        let invalid = |message: String| Err(BrokerCeilingError::InvalidArgs(message));
        if self.messages == 0 {
            return invalid("--messages must be at least 1".to_owned());
        }
        if self.window == 0 || self.window > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid(format!(
                "--window must be between 1 and {}",
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return invalid(format!("--queues must be between 1 and {MAX_QUEUES}"));
        }
        if self.prefetch == 0 {
            return invalid("--prefetch must be at least 1 (0 would mean unlimited)".to_owned());
        }
        if self.ca_file.is_some() && !self.amqp.starts_with("amqps://") {
            return invalid("--ca-file is for an amqps:// URL: --amqp names no TLS".to_owned());
        }
        Ok(())
    }
}

/// The broker names of one run: `bench-ceiling-<uuid>` and `bench-ceiling-<uuid>.<queue>`.
#[derive(Debug, Clone)]
struct Names {
    exchange: String,
    queues: Vec<String>,
}

impl Names {
    fn new(queues: usize) -> Names {
        let exchange = format!("bench-ceiling-{}", uuid::Uuid::now_v7());
        let queues = (0..queues)
            .map(|i| match ORDERMILL_QUEUES.get(i) {
                Some(name) => format!("{exchange}.{name}"),
                None => format!("{exchange}.queue-{}", i + 1),
            })
            .collect();
        Names { exchange, queues }
    }
}

/// Measures RabbitMQ as `args` describe and reports it; ctrl-c stops the run, and the
/// bench's exchange and queues are deleted all the same.
///
/// The report is not printed and `args.json` is not written here: the caller does both, so
/// that a report is never lost to an unwritable file.
///
/// # Errors
/// See [`run_until`].
pub async fn run(args: BrokerCeilingArgs) -> Result<BrokerCeilingReport, BrokerCeilingError> {
    run_until(args, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a handler, ctrl-c ends the process the ordinary way (and leaves the
            // bench-ceiling-* objects behind); the run still ends by itself.
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// Like [`run`], but stops when `stop` completes instead of on ctrl-c.
///
/// # Errors
/// [`BrokerCeilingError::InvalidArgs`] for unusable flags, [`BrokerCeilingError::Unreachable`]
/// when the broker cannot be reached, [`BrokerCeilingError::Interrupted`] when `stop`
/// completes first, and the broker's refusals, nacks, returns and stalls during the run.
/// Failing to delete the topology afterwards is not an error: the report says so in
/// [`BrokerCeilingReport::left_behind`].
pub async fn run_until(
    args: BrokerCeilingArgs,
    stop: impl Future<Output = ()>,
) -> Result<BrokerCeilingReport, BrokerCeilingError> {
    args.check()?;
    let url = ordermill_core::redact_url(&args.amqp);
    let names = Names::new(args.queues);
    let broker = Broker::new(&args)?;
    let connection = broker.connect(&url).await?;
    let outcome = tokio::select! {
        outcome = measure(&connection, &args, &names, &url) => outcome,
        () = stop => Err(BrokerCeilingError::Interrupted),
    };
    let left_behind = delete_topology(&connection, &broker, &names).await.err();
    // Best effort: everything worth keeping is in the report already.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        connection.close(200, "ordermill bench broker-ceiling: done".into()),
    )
    .await;
    match outcome {
        Ok(mut report) => {
            report.left_behind = left_behind;
            Ok(report)
        }
        Err(error) => {
            if let Some(left) = left_behind {
                tracing::warn!(exchange = %names.exchange, problem = %left, "The failed broker-ceiling run could not delete its topology.");
            }
            Err(error)
        }
    }
}

/// Where the run connects, and the CAs it trusts there besides the system's.
struct Broker {
    amqp: String,
    /// The PEM of `--ca-file`.
    ca_pem: Option<String>,
}

impl Broker {
    fn new(args: &BrokerCeilingArgs) -> Result<Broker, BrokerCeilingError> {
        let ca_pem = match &args.ca_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                BrokerCeilingError::InvalidArgs(format!(
                    "--ca-file {}: cannot read it: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(Broker { amqp: args.amqp.clone(), ca_pem })
    }

    async fn open(&self, properties: ConnectionProperties) -> lapin::Result<Connection> {
        let tls = lapin::tcp::OwnedTLSConfig { identity: None, cert_chain: self.ca_pem.clone() };
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connect_with_config(&self.amqp, properties, tls, runtime).await
    }

    async fn connect(&self, url: &str) -> Result<Connection, BrokerCeilingError> {
        let properties = ConnectionProperties::default()
            .with_connection_name("ordermill bench broker-ceiling".into());
        match tokio::time::timeout(CONNECT_TIMEOUT, self.open(properties)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(cause)) => {
                let hint = if cause.to_string().contains("certificate") {
                    "the broker's TLS certificate was not accepted: if a private CA signed it, \
                     pass that CA's PEM file with --ca-file"
                } else {
                    "is RabbitMQ running there, and are the user, password and vhost in --amqp \
                     right?"
                };
                Err(BrokerCeilingError::Unreachable { url: url.to_owned(), cause, hint })
            }
            Err(_) => Err(BrokerCeilingError::Stalled {
                url: url.to_owned(),
                what: "accept the connection",
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
        }
    }
}

/// Declares the topology, then runs both phases.
async fn measure(
    connection: &Connection,
    args: &BrokerCeilingArgs,
    names: &Names,
    url: &str,
) -> Result<BrokerCeilingReport, BrokerCeilingError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|cause| BrokerCeilingError::broker("open a channel", cause))?;
    declare(&channel, names).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|cause| BrokerCeilingError::broker("enable publisher confirms", cause))?;

    let bar = progress_bar(args.messages, "publish", "confirmed");
    let published = publish::publish_all(
        &channel,
        url,
        &names.exchange,
        args.messages,
        args.window,
        args.payload_bytes,
        bar.clone(),
    )
    .await;
    bar.finish_and_clear();
    let published = published?;
    let _ = channel.close(200, "published".into()).await;

    let copies = args.messages.saturating_mul(names.queues.len() as u64);
    let channels = consume::open_channels(connection, names.queues.len()).await?;
    let bar = progress_bar(copies, "consume", "acked");
    let started = Instant::now();
    let consumed =
        consume::drain_all(channels, &names.queues, url, args.messages, args.prefetch, bar.clone())
            .await;
    let consume_elapsed = started.elapsed();
    bar.finish_and_clear();
    let consumed = consumed?;

    let queues = names.queues.len() as u64;
    Ok(BrokerCeilingReport {
        amqp: url.to_owned(),
        exchange: names.exchange.clone(),
        queues: names.queues.clone(),
        messages: args.messages,
        payload_bytes: args.payload_bytes,
        window: args.window,
        prefetch: args.prefetch,
        publish: PublishSummary {
            confirmed: published.confirmed,
            elapsed_secs: secs(published.elapsed),
            events_per_sec: per_sec(published.confirmed, published.elapsed),
            deliveries_per_sec: per_sec(
                published.confirmed.saturating_mul(queues),
                published.elapsed,
            ),
            confirm_latency_ms: ConfirmLatency::of(&published.latency_us),
        },
        consume: ConsumeSummary {
            acked: consumed.acked,
            duplicates: consumed.duplicates,
            elapsed_secs: secs(consume_elapsed),
            deliveries_per_sec: per_sec(consumed.acked, consume_elapsed),
        },
        left_behind: None,
    })
}

/// A bar on stderr (hidden when stderr is not a terminal, e.g. under `cargo test`).
fn progress_bar(len: u64, phase: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{prefix}} {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}})");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(phase.to_owned());
    bar
}

/// The exchange (topic, durable) and the durable queues bound to it with `order.created`.
async fn declare(channel: &Channel, names: &Names) -> Result<(), BrokerCeilingError> {
    let refused = |what: String| move |cause| BrokerCeilingError::broker(what, cause);
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .map_err(refused(format!("declare the exchange {}", names.exchange)))?;
    for queue in &names.queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(refused(format!("declare the queue {queue}")))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                names.exchange.as_str().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(refused(format!("bind the queue {queue}")))?;
    }
    Ok(())
}

/// Deletes the queues (with whatever they still hold) and the exchange. On a fresh channel,
/// since a failed phase may have closed the others, and on a fresh connection when the run's
/// own is gone. Deleting what does not exist is not an error in RabbitMQ, so this also
/// cleans up after a run that failed half-way through declaring.
///
/// # Errors
/// What could not be deleted, and how to delete it by hand.
async fn delete_topology(
    connection: &Connection,
    broker: &Broker,
    names: &Names,
) -> Result<(), String> {
    let attempt = async {
        let fresh;
        let connection = if connection.status().connected() {
            connection
        } else {
            fresh = broker.open(ConnectionProperties::default()).await?;
            &fresh
        };
        let channel = connection.create_channel().await?;
        for queue in &names.queues {
            channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
        }
        channel
            .exchange_delete(names.exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
        let _ = channel.close(200, "deleted".into()).await;
        Ok::<_, lapin::Error>(())
    };
    let problem = match tokio::time::timeout(CLEANUP_TIMEOUT, attempt).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(cause)) => cause.to_string(),
        Err(_) => format!("no answer within {} s", CLEANUP_TIMEOUT.as_secs()),
    };
    Err(format!(
        "could not delete the bench's topology ({problem}); delete the queues {} and the \
         exchange {} by hand (rabbitmqctl delete_queue, or the management UI)",
        names.queues.join(", "),
        names.exchange
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_named_after_ordermills_and_then_numbered_under_one_unique_prefix() {
        let names = Names::new(4);
        assert!(names.exchange.starts_with("bench-ceiling-"));
        let suffixes: Vec<&str> = names
            .queues
            .iter()
            .map(|q| q.strip_prefix(&format!("{}.", names.exchange)).unwrap())
            .collect();
        assert_eq!(suffixes, ["inventory", "payment", "notify", "queue-4"]);
        assert_ne!(Names::new(1).exchange, names.exchange);
    }

    #[test]
    fn flags_that_cannot_work_are_refused_by_name() {
        let refused = |args: BrokerCeilingArgs, flag: &str| {
            let error = args.check().unwrap_err().to_string();
            assert!(error.contains(flag), "{error}");
        };
        assert!(BrokerCeilingArgs::default().check().is_ok());
        refused(BrokerCeilingArgs { messages: 0, ..Default::default() }, "--messages");
        refused(BrokerCeilingArgs { window: 0, ..Default::default() }, "--window");
        refused(BrokerCeilingArgs { queues: 0, ..Default::default() }, "--queues");
        refused(BrokerCeilingArgs { queues: MAX_QUEUES + 1, ..Default::default() }, "--queues");
        refused(BrokerCeilingArgs { prefetch: 0, ..Default::default() }, "--prefetch");
    }
}
