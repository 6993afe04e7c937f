//! Typed configuration. Defaults are the embedded setup: no external service needed.

use std::net::SocketAddr;
use std::path::PathBuf;

use ordermill_core::Topology;
use serde::{Deserialize, Serialize};

/// Everything the service can be configured with. Unknown keys are an error, so a typo in
/// `ordermill.toml` is reported instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP API listens on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory holding the embedded database (`ordermill.db` and its WAL).
    pub data_dir: PathBuf,
    /// Order store: `sqlite` (embedded in `data_dir`, the default) or a `postgres://` URL.
    pub store: String,
    /// Message bus: `embedded` (in-process over the store's outbox, the default) or an
    /// `amqp://` URL (RabbitMQ; needs the PostgreSQL store).
    pub bus: String,
    /// Hot-stock cache: `local` (in-process, the default) or a `redis://` URL.
    pub cache: String,
    /// Key prefix in a shared cache (one per catalog/deployment).
    pub cache_prefix: String,
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
    /// Orders kept in the in-process read cache behind `GET /api/orders/{id}` (with a Redis
    /// `cache`, Redis holds them instead, bounded by `order_cache_ttl_ms` alone).
    pub order_cache_entries: u64,
    /// How long a cached order view is kept.
    pub order_cache_ttl_ms: u64,
    /// Intake answers 503 `overloaded` while the bus holds more than this many undelivered
    /// or unacknowledged messages (over all queues).
    pub max_backlog: u64,
    /// Bearer token for `/admin/*`; no token means the admin API is disabled.
    pub admin_token: Option<String>,
    /// Consumer tuning.
    pub workers: WorkerSettings,
    /// The payment gateway.
    pub payment: PaymentSettings,
    /// Where customer notifications go.
    pub notify: NotifySettings,
    /// Queue bindings on the `orders` exchange.
    pub topology: Topology,
    /// Group buying.
    pub deals: DealSettings,
    /// PostgreSQL (when `store` is a postgres:// URL).
    pub postgres: PostgresSettings,
    /// RabbitMQ topology and tuning (when `bus` is an amqp:// URL; the URL itself is `bus`).
    pub rabbitmq: ordermill_bus::RabbitSettings,
    /// On shared engines, how often an api node reloads the catalog from the store, so
    /// products created or repriced through another node are sold here too.
    pub catalog_refresh_ms: u64,
    /// How long an api node counts as live on a shared hot-stock cache after each heartbeat
    /// (renewed every third of it). The first api node to start with no other live resets
    /// every count from the store, freeing units a crashed node had reserved.
    pub cache_node_ttl_ms: u64,
    /// How often an api node sweeps the outbox for events no broker has confirmed (a crash or
    /// an outage left them); events are published right after their commit otherwise.
    pub relay_sweep_ms: u64,
}

/// PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// Connections per node.
    pub pool_size: u32,
    /// Schema to use (created if missing); `None` is the database's default (`public`).
    pub schema: Option<String>,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings { pool_size: 16, schema: None }
    }
}

/// Group buying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DealSettings {
    /// How often the scheduler looks for deals whose deadline has passed; a deadline fires
    /// within this long of passing.
    pub check_interval_ms: u64,
}

impl Default for DealSettings {
    fn default() -> Self {
        DealSettings { check_interval_ms: 500 }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            store: "sqlite".into(),
            bus: "embedded".into(),
            cache: "local".into(),
            cache_prefix: "ordermill".into(),
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            commit: CommitSettings::default(),
            http: HttpSettings::default(),
            idempotency_cache_entries: 100_000,
            order_cache_entries: 100_000,
            order_cache_ttl_ms: 600_000,
            max_backlog: 1_000_000,
            admin_token: None,
            workers: WorkerSettings::default(),
            payment: PaymentSettings::default(),
            notify: NotifySettings::default(),
            topology: Topology::default(),
            deals: DealSettings::default(),
            postgres: PostgresSettings::default(),
            rabbitmq: ordermill_bus::RabbitSettings::default(),
            relay_sweep_ms: 1_000,
            catalog_refresh_ms: 1_000,
            cache_node_ttl_ms: 15_000,
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

/// How consumers take and retry messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Deliveries handled (and written to the store) together.
    pub batch_size: usize,
    /// Consumer loops per queue.
    pub concurrency: usize,
    /// A charge or notification not answered within this long fails (and is retried) alone;
    /// a whole batch gets twice this.
    pub message_timeout_ms: u64,
    /// Deliveries of one message before it goes to the dead letters.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 256,
            concurrency: 2,
            message_timeout_ms: 10_000,
            max_attempts: 5,
            retry_base_ms: 200,
            retry_max_ms: 30_000,
        }
    }
}

/// Which payment gateway charges orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    /// In-process, with configurable latency and failure rate and test customers.
    #[default]
    Simulated,
    /// POST to `payment.url`.
    Http,
}

/// The payment gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// `simulated` or `http`.
    pub gateway: GatewayKind,
    /// Simulated: time per charge.
    pub latency_ms: u64,
    /// Simulated: share of charges that fail transiently (0.0 to 1.0).
    pub failure_rate: f64,
    /// HTTP: where to POST charges.
    pub url: Option<String>,
    /// HTTP: per-request timeout.
    pub timeout_ms: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            gateway: GatewayKind::Simulated,
            latency_ms: 0,
            failure_rate: 0.0,
            url: None,
            timeout_ms: 2_000,
        }
    }
}

/// Which notifier tells customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// A log line per notification.
    #[default]
    Log,
    /// POST to `notify.url`.
    Webhook,
}

/// Where customer notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// `log` or `webhook`.
    pub notifier: NotifierKind,
    /// Webhook: where to POST.
    pub url: Option<String>,
    /// Webhook: per-request timeout.
    pub timeout_ms: u64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings { notifier: NotifierKind::Log, url: None, timeout_ms: 2_000 }
    }
}
