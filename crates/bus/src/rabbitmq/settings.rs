//! How to reach RabbitMQ and how to shape the topology on it.

use std::path::PathBuf;
use std::time::Duration;

use ordermill_core::HumanDuration;
use serde::{Deserialize, Serialize};

/// Keeps a message well under RabbitMQ's default 128 MiB limit and a consumer's buffer
/// bounded: an order event is well under 1 KiB.
pub const MAX_EVENTS_PER_MESSAGE: usize = 4096;

/// Settings of [`super::RabbitBus`]; embeddable in the server's config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitSettings {
    /// AMQP URL, e.g. `amqp://app:secret@mq:5672/%2f` (the vhost is URL-encoded). Not a
    /// configuration key of its own: the server sets it from `bus`, the one place it is given.
    #[serde(skip)]
    pub url: String,
    /// With an `amqps://` URL: a PEM file of certificate authorities trusted besides the
    /// system's to sign the broker's certificate. Read at every (re)connection, so a renewed
    /// file is taken without a restart.
    pub ca_file: Option<PathBuf>,
    /// The topic exchange every event is published to.
    pub exchange: String,
    /// The direct exchange that routes dead letters to `<queue>.dead`.
    pub dead_letter_exchange: String,
    /// Put in front of every queue name (tests use a unique one on a shared broker).
    pub queue_prefix: String,
    /// Quorum queues (replicated, for a cluster) instead of durable classic queues.
    pub quorum_queues: bool,
    /// Unacked deliveries the broker may push to this node per queue. Unset: the server sets
    /// it to twice what its consumer loops take at once (2 × `workers.concurrency` ×
    /// `workers.batch_size`), so the next batch is already here while one is settled.
    pub prefetch: Option<u16>,
    /// Most events one message carries. The broker's work is per message, not per byte, so
    /// the events of one publish (a committed batch of orders, a consumer batch's follow-up
    /// events) that share a routing key travel together; each is still acked, retried and
    /// dead-lettered on its own. 1 sends one message per event, the layout nodes older than
    /// batched messages read: set it during a rolling upgrade until every worker is new.
    pub events_per_message: usize,
    /// Publishes that may await their confirm at once, over all callers.
    pub confirm_window: usize,
    /// How long a publish waits for its confirms before giving up (the outbox keeps the
    /// events). It also bounds every other call on the connection (an ack, opening a
    /// channel): one that takes longer gets the connection replaced, and what it held is
    /// delivered again.
    pub confirm_timeout: HumanDuration,
    /// How long connecting (TCP, AMQP handshake, topology) may take.
    pub connect_timeout: HumanDuration,
    /// First delay before reconnecting after a failure; doubles up to `reconnect_max`.
    pub reconnect_min: HumanDuration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: HumanDuration,
    /// The retry delay tiers, ascending: a retry waits in the smallest tier at least as long
    /// as asked for (the largest when none is).
    pub retry_tiers: Vec<HumanDuration>,
    /// Under load, how long an api node lets a committed batch's `order.created` events wait
    /// for the batches committed after it, to publish them together: RabbitMQ's work is per
    /// message, and at 10k orders/s one publish per group commit made it cost as much CPU per
    /// order as the api node. "10ms" halved that and raised intake 10–19% at 64 connections
    /// (docs/BENCHMARKS.md, eighteenth session). A lone batch after a lone one is published at
    /// once; under load an order is confirmed up to this much later. Zero: every batch on its
    /// own. Under 1 s.
    pub publish_linger: HumanDuration,
    /// How often an api node sweeps the outbox for events no broker has confirmed (a crash or
    /// an outage left them); events are published right after their commit otherwise.
    pub relay_sweep: HumanDuration,
}

impl Default for RabbitSettings {
    fn default() -> Self {
        RabbitSettings {
            url: String::new(),
            ca_file: None,
            exchange: "orders".to_owned(),
            dead_letter_exchange: "orders.dlx".to_owned(),
            queue_prefix: String::new(),
            quorum_queues: false,
            prefetch: None,
            events_per_message: 256,
            confirm_window: 1024,
            confirm_timeout: HumanDuration::from_secs(10),
            connect_timeout: HumanDuration::from_secs(5),
            reconnect_min: HumanDuration::from_millis(200),
            reconnect_max: HumanDuration::from_secs(10),
            // A 1-2-5 ladder up to 10 s, then coarser: a rounded-up delay is at most 2.5×
            // (3× above 10 s) what was asked, with 11 queues per work queue.
            retry_tiers: [
                100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000,
            ]
            .map(HumanDuration::from_millis)
            .to_vec(),
            relay_sweep: HumanDuration::from_secs(1),
            publish_linger: HumanDuration::from_millis(10),
        }
    }
}

impl RabbitSettings {
    /// Checks what serde cannot: durations that must be positive, a window that must hold a
    /// publish. `Err` names the key (under `rabbitmq.`) and what it takes.
    ///
    /// # Errors
    /// The first key out of range.
    pub fn validate(&self) -> Result<(), String> {
        for (key, d) in [
            ("confirm_timeout", self.confirm_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_min", self.reconnect_min),
            ("reconnect_max", self.reconnect_max),
            ("relay_sweep", self.relay_sweep),
        ] {
            if d.get().is_zero() {
                return Err(format!("rabbitmq.{key} must be longer than zero, e.g. \"1s\""));
            }
        }
        if self.publish_linger.get() >= Duration::from_secs(1) {
            return Err("rabbitmq.publish_linger must be under 1s, e.g. \"10ms\"".into());
        }
        if self.retry_tiers.iter().any(|t| t.get() < Duration::from_millis(1)) {
            return Err("rabbitmq.retry_tiers must each be at least \"1ms\"".into());
        }
        if self.prefetch == Some(0) || self.confirm_window == 0 {
            return Err("rabbitmq.prefetch and rabbitmq.confirm_window must be at least 1".into());
        }
        if !(1..=MAX_EVENTS_PER_MESSAGE).contains(&self.events_per_message) {
            return Err(format!(
                "rabbitmq.events_per_message must be between 1 and {MAX_EVENTS_PER_MESSAGE}"
            ));
        }
        Ok(())
    }

    /// What lapin needs for `amqps://`: the CAs of `ca_file` besides the system's.
    ///
    /// # Errors
    /// When `ca_file` cannot be read, naming the key.
    pub fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, String> {
        let cert_chain = match &self.ca_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                format!("rabbitmq.ca_file = {}: cannot read it: {e}", path.display())
            })?),
            None => None,
        };
        Ok(lapin::tcp::OwnedTLSConfig { identity: None, cert_chain })
    }

    /// The prefetch in force (256 when nobody set one).
    pub(crate) fn prefetch(&self) -> u16 {
        self.prefetch.unwrap_or(256)
    }

    pub(crate) fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout.get().max(Duration::from_millis(1))
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout.get().max(Duration::from_millis(1))
    }

    /// The retry tiers in whole milliseconds (the broker's TTLs), sorted, deduplicated and
    /// never empty.
    pub(crate) fn tiers(&self) -> Vec<u64> {
        let mut tiers: Vec<u64> =
            self.retry_tiers.iter().map(|t| t.as_millis_u64()).filter(|ms| *ms > 0).collect();
        tiers.sort_unstable();
        tiers.dedup();
        if tiers.is_empty() {
            tiers.push(1_000);
        }
        tiers
    }
}
