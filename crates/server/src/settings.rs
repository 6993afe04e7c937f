//! Typed configuration. Defaults are the embedded setup: no external service needed.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the service can be configured with. Unknown keys are an error, so a typo in
/// `ordermill.toml` is reported instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP API listens on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory holding the embedded database (`ordermill.db` and its WAL).
    pub data_dir: PathBuf,
    /// Log output format.
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `info,ordermill_server=debug`.
    pub log_filter: String,
    /// Group commit tuning.
    pub commit: CommitSettings,
    /// HTTP limits.
    pub http: HttpSettings,
    /// Idempotency keys remembered in memory (older ones are looked up in the store).
    pub idempotency_cache_entries: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            commit: CommitSettings::default(),
            http: HttpSettings::default(),
            idempotency_cache_entries: 100_000,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How the committer batches orders into transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommitSettings {
    /// The most orders in one transaction. Larger batches amortise the fsync further.
    pub max_batch_orders: usize,
    /// Intake requests that may wait for the committer before new ones wait for a slot.
    pub queue_capacity: usize,
}

impl Default for CommitSettings {
    fn default() -> Self {
        CommitSettings { max_batch_orders: 4096, queue_capacity: 16_384 }
    }
}

/// HTTP limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest body accepted by single-order and catalog endpoints (bytes).
    pub max_body_bytes: usize,
    /// Largest body accepted by `POST /api/orders/batch` (bytes).
    pub max_batch_body_bytes: usize,
    /// A request still running after this many seconds is answered 503.
    pub request_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 8 * 1024 * 1024,
            request_timeout_secs: 30,
        }
    }
}
