//! How to reach RabbitMQ and how to shape the topology on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of [`super::RabbitBus`]; embeddable in the server's config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitSettings {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (the vhost is URL-encoded).
    pub url: String,
    /// The topic exchange every event is published to.
    pub exchange: String,
    /// The direct exchange that routes dead letters to `<queue>.dead`.
    pub dead_letter_exchange: String,
    /// Put in front of every queue name (tests use a unique one on a shared broker).
    pub queue_prefix: String,
    /// Quorum queues (replicated, for a cluster) instead of durable classic queues.
    pub quorum_queues: bool,
    /// Unacked deliveries the broker may push to this node per queue.
    pub prefetch: u16,
    /// Publishes that may await their confirm at once, over all callers.
    pub confirm_window: usize,
    /// How long a publish waits for its confirms before giving up (the outbox keeps the events).
    pub confirm_timeout_ms: u64,
    /// How long connecting (TCP, AMQP handshake, topology) may take.
    pub connect_timeout_ms: u64,
    /// First delay before reconnecting after a failure; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_ms: u64,
    /// The retry delay tiers, ascending: a retry waits in the smallest tier at least as long
    /// as asked for (the largest when none is).
    pub retry_tiers_ms: Vec<u64>,
}

impl Default for RabbitSettings {
    fn default() -> Self {
        RabbitSettings {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            exchange: "orders".to_owned(),
            dead_letter_exchange: "orders.dlx".to_owned(),
            queue_prefix: String::new(),
            quorum_queues: false,
            prefetch: 256,
            confirm_window: 1024,
            confirm_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            // A 1-2-5 ladder up to 10 s, then coarser: a rounded-up delay is at most 2.5×
            // (3× above 10 s) what was asked, with 11 queues per work queue.
            retry_tiers_ms: vec![
                100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000,
            ],
        }
    }
}

impl RabbitSettings {
    pub(crate) fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms.max(1))
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    /// The retry tiers, sorted, deduplicated and never empty.
    pub(crate) fn tiers(&self) -> Vec<u64> {
        let mut tiers: Vec<u64> =
            self.retry_tiers_ms.iter().copied().filter(|ms| *ms > 0).collect();
        tiers.sort_unstable();
        tiers.dedup();
        if tiers.is_empty() {
            tiers.push(1_000);
        }
        tiers
    }
}
