//! Typed configuration. Defaults are the embedded setup: no external service needed. Engine
//! URLs are enums ([`engines`]), durations carry units ([`HumanDuration`]), secrets print
//! redacted, and each engine's settings sit under its own key (`postgres`, `rabbitmq`,
//! `redis`). Layering (file → env → flags) and the renamed keys are the binary's job.

mod auth;
mod engines;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordermill_core::{HumanDuration, Topology};
use serde::{Deserialize, Serialize};

pub use self::auth::{
    AuthSettings, CustomerMode, JwtAlgorithm, JwtSettings, TrustedHeaderSettings, networks,
};
pub use self::engines::{BusUrl, CacheUrl, Secret, SecretUrl, StoreUrl};

/// Everything the service can be configured with. Unknown keys are an error, so a typo in
/// `ordermill.toml` is reported instead of silently ignored. Every key is documented, with its
/// default, in `deploy/ordermill.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP API listens on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory holding the embedded database (`ordermill.db` and its WAL).
    pub data_dir: PathBuf,
    /// Order store: `sqlite` (embedded in `data_dir`, the default), a `postgres://` URL or a
    /// `mysql://` URL (MySQL 8 / MariaDB 10.6+).
    pub store: StoreUrl,
    /// Message bus: `embedded` (in-process over the store's outbox, the default) or an
    /// `amqp://` URL (RabbitMQ; needs the PostgreSQL or MySQL store).
    pub bus: BusUrl,
    /// Hot stock and the order read cache: `local` (in-process, the default) or a `redis://`
    /// URL.
    pub cache: CacheUrl,
    /// Log output format.
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `info,ordermill_server=debug`.
    pub log_filter: String,
    /// Intake answers 503 `overloaded` while the bus holds more than this many undelivered
    /// or unacknowledged messages (over all queues).
    pub max_backlog: u64,
    /// Bearer token for `/admin/*` (operators: dead letters, every order read-only); no
    /// token means the admin API is disabled.
    pub admin_token: Option<Secret>,
    /// Who may change the catalog and how customers prove who they are.
    pub auth: AuthSettings,
    /// Per-client request budgets on `/api/*`.
    pub rate_limit: RateLimitSettings,
    /// Group commit tuning.
    pub commit: CommitSettings,
    /// HTTP limits.
    pub http: HttpSettings,
    /// Idempotency keys remembered in memory.
    pub idempotency: IdempotencySettings,
    /// How long an `Idempotency-Key` names its first request (per customer); a replay after
    /// that is a new request. 24 h, like the payment APIs people know.
    pub idempotency_ttl: HumanDuration,
    /// The order read cache behind `GET /api/orders/{id}`.
    pub order_cache: OrderCacheSettings,
    /// The catalog held in memory for pricing at intake.
    pub catalog: CatalogSettings,
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
    /// The `/dashboard` page.
    pub dashboard: DashboardSettings,
    /// Reports (报表).
    pub reports: ReportSettings,
    /// The embedded store (when `store` is `sqlite`).
    pub sqlite: SqliteSettings,
    /// PostgreSQL (when `store` is a postgres:// URL).
    pub postgres: PostgresSettings,
    /// MySQL / MariaDB (when `store` is a mysql:// URL).
    pub mysql: MysqlSettings,
    /// RabbitMQ topology and tuning (when `bus` is an amqp:// URL; the URL itself is `bus`).
    pub rabbitmq: ordermill_bus::RabbitSettings,
    /// Redis (when `cache` is a redis:// URL).
    pub redis: RedisSettings,
    /// The async runtime a node runs on.
    pub runtime: RuntimeSettings,
}

impl Settings {
    /// Checks what the types cannot: durations that must be positive, sizes that must be at
    /// least one. Run once when the configuration loads.
    ///
    /// # Errors
    /// A message naming the first key out of range and what it takes.
    pub fn validate(&self) -> Result<(), String> {
        for (key, d) in [
            ("http.request_timeout", self.http.request_timeout),
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.max_queue_wait", self.http.max_queue_wait),
            ("idempotency_ttl", self.idempotency_ttl),
            ("order_cache.ttl", self.order_cache.ttl),
            ("catalog.refresh", self.catalog.refresh),
            ("workers.message_timeout", self.workers.message_timeout),
            ("workers.retry_base", self.workers.retry_base),
            ("workers.retry_max", self.workers.retry_max),
            ("payment.timeout", self.payment.timeout),
            ("payment.pay_within", self.payment.pay_within),
            ("payment.check_interval", self.payment.check_interval),
            ("notify.timeout", self.notify.timeout),
            ("deals.check_interval", self.deals.check_interval),
            ("reports.keep", self.reports.keep),
            ("reports.stale_after", self.reports.stale_after),
            ("reports.sweep_interval", self.reports.sweep_interval),
            ("redis.check_interval", self.redis.check_interval),
            ("redis.return_grace", self.redis.return_grace),
            ("sqlite.maintenance_interval", self.sqlite.maintenance_interval),
            ("postgres.maintenance_interval", self.postgres.maintenance_interval),
            ("postgres.query_timeout", self.postgres.query_timeout),
            ("mysql.maintenance_interval", self.mysql.maintenance_interval),
            ("mysql.query_timeout", self.mysql.query_timeout),
        ] {
            if d.get().is_zero() {
                return Err(format!("{key} must be longer than zero, e.g. \"1s\""));
            }
        }
        if self.commit.linger.get() >= self.http.max_queue_wait.get() {
            return Err(format!(
                "commit.linger ({}) must be shorter than http.max_queue_wait ({}): an order \
                 that lingers that long is shed; \"2ms\" suits PostgreSQL",
                self.commit.linger, self.http.max_queue_wait
            ));
        }
        // A consumer holds the deliveries it lingers with unhandled: keep that well under the
        // time a batch may take at all.
        if self.workers.linger.get() >= Duration::from_secs(1) {
            return Err(format!(
                "workers.linger ({}) must be shorter than 1s: the deliveries in hand wait that \
                 long unhandled; \"5ms\" suits PostgreSQL",
                self.workers.linger
            ));
        }
        if let Some(ca_file) = &self.rabbitmq.ca_file {
            let tls =
                matches!(&self.bus, BusUrl::Amqp(url) if url.expose().starts_with("amqps://"));
            if !tls {
                return Err(format!(
                    "rabbitmq.ca_file ({}) is set but the bus is not an amqps:// URL: the CAs \
                     verify a TLS connection, and this one has none",
                    ca_file.display()
                ));
            }
        }
        if let Some(ca_file) = &self.redis.ca_file {
            let tls = matches!(&self.cache, CacheUrl::Redis(url) if url.expose().starts_with("rediss://"));
            if !tls {
                return Err(format!(
                    "redis.ca_file ({}) is set but the cache is not a rediss:// URL: the CAs \
                     verify a TLS connection, and this one has none",
                    ca_file.display()
                ));
            }
        }
        if self.redis.node_ttl.get() < Duration::from_millis(100) {
            return Err(
                "redis.node_ttl must be at least \"100ms\" (it is renewed every third of it)"
                    .into(),
            );
        }
        for (key, n) in [
            ("commit.max_batch_orders", self.commit.max_batch_orders),
            ("http.max_connections", self.http.max_connections),
            ("commit.queue_capacity", self.commit.queue_capacity),
            ("workers.batch_size", self.workers.batch_size),
            ("workers.concurrency", self.workers.concurrency),
        ] {
            if n == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.reports.page_size == 0 {
            return Err("reports.page_size must be at least 1".into());
        }
        if !(1..=100).contains(&self.reports.read_share) {
            return Err("reports.read_share must be a percent from 1 to 100".into());
        }
        if let Some(peer) =
            self.dashboard.peers.iter().find(|p| {
                !(p.expose().starts_with("http://") || p.expose().starts_with("https://"))
            })
        {
            return Err(format!(
                "dashboard.peers: \"{peer}\" is not a base URL like \"http://10.0.0.7:9100\""
            ));
        }
        for (key, retention) in [
            ("sqlite.processed_retention", self.sqlite.processed_retention),
            ("postgres.processed_retention", self.postgres.processed_retention),
            ("mysql.processed_retention", self.mysql.processed_retention),
        ] {
            if retention.get() < ordermill_store::partitions::MIN_RETENTION {
                return Err(format!(
                    "{key} must be at least \"2days\": the records must outlive every \
                     redelivery, retries and replayed dead letters"
                ));
            }
        }
        if self.payment.mode == PaymentMode::AwaitCallback && self.payment.callback_secret.is_none()
        {
            return Err("payment.mode = \"await_callback\" needs payment.callback_secret \
                        (ORDERMILL_PAYMENT__CALLBACK_SECRET): the secret the payment provider \
                        signs its callbacks with, so nobody else can mark an order paid"
                .into());
        }
        if !(0.0..=1.0).contains(&self.payment.failure_rate) {
            return Err("payment.failure_rate must be between 0.0 and 1.0".into());
        }
        for (queue, own) in &self.workers.per_queue {
            let zero = |d: Option<HumanDuration>| d.is_some_and(|d| d.get().is_zero());
            if zero(own.retry_base)
                || zero(own.retry_max)
                || zero(own.message_timeout)
                || own.max_attempts == Some(0)
                || own.batch_size == Some(0)
            {
                return Err(format!(
                    "workers.per_queue.{queue}: retry_base, retry_max and message_timeout must be longer than zero, max_attempts and batch_size at least 1"
                ));
            }
        }
        self.auth.validate()?;
        auth::networks("rate_limit.trusted_proxies", &self.rate_limit.trusted_proxies)?;
        self.rabbitmq.validate()
    }
}

/// Per-client request budgets: a token bucket per verified customer (per client address
/// for requests without one), shared by every api node through Redis when the cache is Redis.
/// Merchant and admin requests are not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Sustained requests per second per client; 0 turns the limit off (the default).
    pub per_second: u32,
    /// Requests a client may send back to back after a quiet spell; 0 means `per_second`.
    pub burst: u32,
    /// Proxies (CIDRs, e.g. nginx's `"127.0.0.1/32"`) whose `X-Forwarded-For` names the
    /// client: a request without a customer is counted for the address the nearest proxy saw,
    /// not for the proxy (which would put every anonymous client in one budget).
    pub trusted_proxies: Vec<String>,
}

impl RateLimitSettings {
    /// The quota, or `None` when the limit is off.
    pub fn quota(&self) -> Option<ordermill_core::ports::RateQuota> {
        let per_second = std::num::NonZeroU32::new(self.per_second)?;
        let burst = std::num::NonZeroU32::new(self.burst).unwrap_or(per_second);
        Some(ordermill_core::ports::RateQuota { per_second, burst })
    }
}

/// Idempotency keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySettings {
    /// Keys remembered in memory. A key not among them is not looked up before its order is
    /// committed (the store refuses one it holds, then answers from the stored order), except
    /// in batches.
    pub cache_entries: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        IdempotencySettings { cache_entries: 100_000 }
    }
}

/// The order read cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderCacheSettings {
    /// Orders kept in process (with a Redis `cache`, Redis holds them instead, bounded by
    /// `ttl` alone).
    pub entries: u64,
    /// How long a cached order is kept.
    pub ttl: HumanDuration,
}

impl Default for OrderCacheSettings {
    fn default() -> Self {
        OrderCacheSettings { entries: 100_000, ttl: HumanDuration::from_secs(600) }
    }
}

/// The catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// On shared engines, how often an api node reloads the catalog from the store, so
    /// products created or repriced through another node are sold here too.
    pub refresh: HumanDuration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings { refresh: HumanDuration::from_secs(1) }
    }
}

/// Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Put in front of every key (one per catalog/deployment; tests use a unique one).
    pub key_prefix: String,
    /// How long an api node counts as live on the shared hot-stock counts after each
    /// heartbeat (renewed every third of it). The first api node to start with no other live
    /// resets every count from the store, freeing units a crashed node had reserved.
    pub node_ttl: HumanDuration,
    /// How often each node checks that the shared stock counts are whole (Redis restarted
    /// without its data, or was flushed); a loss is noticed within this long.
    pub check_interval: HumanDuration,
    /// After a loss, how long reservations taken before it get to commit or be released
    /// before the counts are rebuilt from the store. Longer than a commit takes; orders get
    /// 503 `unavailable` meanwhile.
    pub rebuild_settle: HumanDuration,
    /// How long units an effect gave back in the store may go without reaching the counts
    /// here (the node giving them back was killed, or lost Redis, in between) before api nodes
    /// mark the counts lost so they are rebuilt from the store. Longer than a release takes.
    pub return_grace: HumanDuration,
    /// With a `rediss://` cache: a PEM file of the certificate authorities that may sign the
    /// server's certificate, trusted instead of the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            key_prefix: "ordermill".into(),
            node_ttl: HumanDuration::from_secs(15),
            check_interval: HumanDuration::from_secs(1),
            rebuild_settle: HumanDuration::from_secs(2),
            return_grace: HumanDuration::from_secs(30),
            ca_file: None,
        }
    }
}

/// The embedded SQLite store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteSettings {
    /// How long consumers' "already handled" records (`processed_events`, four per order)
    /// are kept; older ones are deleted, in small chunks between commits. At least 2 days
    /// (see `postgres.processed_retention`: a replayed dead letter older than this could
    /// repeat its effect).
    pub processed_retention: HumanDuration,
    /// How often `ordermill serve` removes the records past `processed_retention` (also once
    /// at start).
    pub maintenance_interval: HumanDuration,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        SqliteSettings {
            processed_retention: HumanDuration::from_secs(30 * 24 * 60 * 60),
            maintenance_interval: HumanDuration::from_secs(60 * 60),
        }
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// Connections per node.
    pub pool_size: u32,
    /// Schema to use (created if missing); `None` is the database's default (`public`).
    pub schema: Option<String>,
    /// How long `processed_events` (consumers' "already handled" records) are kept; older
    /// daily partitions are dropped whole. A redelivery of an event older than this could
    /// repeat its effect, so it must outlive every redelivery: retries and dead letters an
    /// operator replays. At least 2 days.
    pub processed_retention: HumanDuration,
    /// How often each api node runs the partition maintenance (create days ahead, drop
    /// what is past `processed_retention`); `ordermill maintain` does the same once.
    pub maintenance_interval: HumanDuration,
    /// How long a statement or commit may go unanswered before its connection is closed and
    /// the call fails as the store being unavailable (a connection gone silent: a network
    /// cut that drops packets, a frozen proxy, a stalled server). Far above any statement's
    /// time under load; table scans (maintenance, a limit's recount, report counts) get at
    /// least 10 minutes.
    pub query_timeout: HumanDuration,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            pool_size: 16,
            schema: None,
            processed_retention: HumanDuration::from_secs(30 * 24 * 60 * 60),
            maintenance_interval: HumanDuration::from_secs(60 * 60),
            query_timeout: HumanDuration::from_secs(
                ordermill_store::postgres::DEFAULT_QUERY_TIMEOUT.as_secs(),
            ),
        }
    }
}

/// MySQL / MariaDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlSettings {
    /// Connections per node.
    pub pool_size: u32,
    /// Database to use instead of the URL's (created if missing, utf8mb4); `None` is the
    /// URL's. Lets several instances (or tests) share one server.
    pub database: Option<String>,
    /// How long `processed_events` records are kept; older daily partitions are dropped
    /// whole. At least 2 days (see `postgres.processed_retention`).
    pub processed_retention: HumanDuration,
    /// How often each api node runs the partition maintenance; `ordermill maintain` does the
    /// same once.
    pub maintenance_interval: HumanDuration,
    /// How long a call may go unanswered before its connection is closed and the call fails
    /// as the store being unavailable, the retries of a transaction InnoDB undid for a lock
    /// conflict included (see `postgres.query_timeout`). Also how long the server lets a
    /// session sit idle inside a transaction (MariaDB) or at all (MySQL) before it ends it.
    pub query_timeout: HumanDuration,
}

impl Default for MysqlSettings {
    fn default() -> Self {
        MysqlSettings {
            pool_size: 16,
            database: None,
            processed_retention: HumanDuration::from_secs(30 * 24 * 60 * 60),
            maintenance_interval: HumanDuration::from_secs(60 * 60),
            query_timeout: HumanDuration::from_secs(
                ordermill_store::mysql::DEFAULT_QUERY_TIMEOUT.as_secs(),
            ),
        }
    }
}

/// Group buying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DealSettings {
    /// How often the scheduler looks for deals whose deadline has passed; a deadline fires
    /// within this long of passing.
    pub check_interval: HumanDuration,
}

impl Default for DealSettings {
    fn default() -> Self {
        DealSettings { check_interval: HumanDuration::from_millis(500) }
    }
}

/// Reports (报表).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// A finished report's file is kept this long, then removed.
    pub keep: HumanDuration,
    /// A run that shows no progress for this long is presumed dead: its report is put back in
    /// the queue and starts over. Longer than a file's hand-over to the store takes.
    pub stale_after: HumanDuration,
    /// How often api and serve nodes send again the requests of reports waiting without
    /// progress, and remove expired files.
    pub sweep_interval: HumanDuration,
    /// Orders read from the store per page.
    pub page_size: u32,
    /// Format report pages and files on a thread under Linux's `SCHED_IDLE`: a report then
    /// takes only CPU nothing else wants, and never slows intake. `false` runs it at normal
    /// priority (a report finishes sooner on a busy node, at intake's expense).
    pub idle_priority: bool,
    /// The percent of its time a report may spend reading the store: after a read that took
    /// `t` it waits `t × (100 − read_share) / read_share`. Reads cannot wait for idle CPU (a
    /// held snapshot would stall the SQLite WAL), so they are spread out instead. 100 reads
    /// without pause.
    pub read_share: u8,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            keep: HumanDuration::from_secs(24 * 3600),
            stale_after: HumanDuration::from_secs(300),
            sweep_interval: HumanDuration::from_secs(30),
            page_size: 1000,
            idle_priority: true,
            read_share: 10,
        }
    }
}

/// The `/dashboard` page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Base URLs of other nodes whose `/metrics` the dashboard adds to this node's: in the
    /// scaled-out mode, the workers' `--metrics-listen` addresses (their consumers count the
    /// confirmations) and the other api nodes. Empty: this node's metrics only. Shown redacted
    /// (a URL may carry credentials for a proxy in front of a node).
    pub peers: Vec<SecretUrl>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            store: StoreUrl::Sqlite,
            bus: BusUrl::Embedded,
            cache: CacheUrl::Local,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            max_backlog: 1_000_000,
            admin_token: None,
            auth: AuthSettings::default(),
            rate_limit: RateLimitSettings::default(),
            commit: CommitSettings::default(),
            http: HttpSettings::default(),
            idempotency: IdempotencySettings::default(),
            idempotency_ttl: HumanDuration::from_secs(24 * 3600),
            order_cache: OrderCacheSettings::default(),
            catalog: CatalogSettings::default(),
            workers: WorkerSettings::default(),
            payment: PaymentSettings::default(),
            notify: NotifySettings::default(),
            topology: Topology::default(),
            deals: DealSettings::default(),
            dashboard: DashboardSettings::default(),
            reports: ReportSettings::default(),
            sqlite: SqliteSettings::default(),
            postgres: PostgresSettings::default(),
            mysql: MysqlSettings::default(),
            rabbitmq: ordermill_bus::RabbitSettings::default(),
            redis: RedisSettings::default(),
            runtime: RuntimeSettings::default(),
        }
    }
}

/// The threads a node's requests, consumers and engine clients run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Worker threads of the node's async runtime; 0 (the default) is one per core (or
    /// `TOKIO_WORKER_THREADS`). A cap for nodes that share a machine with others; on the
    /// 2-core bench box 1 thread against 2 was within noise (docs/BENCHMARKS.md, thirteenth
    /// session), so the default stays one per core.
    pub worker_threads: usize,
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
    /// Under load (other requests already queued behind a batch's first), how long at most the
    /// batch waits for the requests on their way to it (still reserving their stock) before it
    /// commits; it stops waiting once none is left on its way, and a lone order never waits. Zero by default: the
    /// embedded writer commits faster than orders gather. On PostgreSQL and RabbitMQ, where
    /// every transaction and every message costs a round of its own, "2ms" doubled the orders
    /// per transaction and cut the CPU per order of every engine (docs/BENCHMARKS.md).
    pub linger: HumanDuration,
}

impl Default for CommitSettings {
    fn default() -> Self {
        CommitSettings {
            max_batch_orders: 4096,
            queue_capacity: 16_384,
            linger: HumanDuration::from_millis(0),
        }
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
    /// A read or catalog request still running after this long is answered 503 `timeout`.
    /// Order creation and joins are not cut: they are refused at admission (`max_in_flight`,
    /// `max_queue_wait`), orders also shed before their commit, or answered with what the
    /// store did.
    pub request_timeout: HumanDuration,
    /// A request head (the line and headers) not complete within this long closes its
    /// connection (slow-header clients); a keep-alive connection idle this long is closed too.
    pub header_read_timeout: HumanDuration,
    /// Connections served at once per node; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// An order that has waited longer than this (from its request's arrival) before its
    /// commit starts is answered 503 `overloaded` at once and not written: under overload the
    /// accepted orders stay fast and the rest know to come back.
    pub max_queue_wait: HumanDuration,
    /// Order requests (orders, batches, deal joins) a node works on at once (from arrival to
    /// answer; a batch counts once); more are answered 503 `overloaded` at once, before
    /// anything is reserved. 0: no cap.
    /// The default, 256, is about what a node commits in 20 ms at full speed: under 2×
    /// overload on 2,000 connections it kept accepted orders' p99 at 70–116 ms where 512 let
    /// it reach 225–469 ms and no cap seconds (docs/BENCHMARKS.md, "Overload"), because only a refusal made before
    /// the wait frees a connection soon enough — `max_queue_wait` refuses after it.
    pub max_in_flight: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 8 * 1024 * 1024,
            request_timeout: HumanDuration::from_secs(30),
            header_read_timeout: HumanDuration::from_secs(10),
            max_connections: 10_000,
            max_queue_wait: HumanDuration::from_millis(100),
            max_in_flight: 256,
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
    /// Under load (the batch in hand holds more than one delivery, or the last one did), how
    /// long a consumer loop waits for more deliveries before it handles its batch (zero: never).
    /// Each batch is a store transaction and a published message of its own, so on PostgreSQL
    /// and RabbitMQ fuller batches cost every engine less per order; a lone delivery never
    /// waits. Confirmation is later by up to this per queue an order passes through.
    pub linger: HumanDuration,
    /// A charge or notification not answered within this long fails (and is retried) alone;
    /// a whole batch gets twice this.
    pub message_timeout: HumanDuration,
    /// Deliveries of one message before it goes to the dead letters. Only the message's own
    /// failures count (an outside service erroring or timing out); an engine that is down
    /// (store, broker, cache) holds the message without spending any.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base: HumanDuration,
    /// Longest retry delay.
    pub retry_max: HumanDuration,
    /// `ordermill worker` only: serve `/metrics` and `/healthz` here (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Settings of one consumer queue, over the ones above (`[workers.per_queue.notify]`
    /// `max_attempts = 10`): a notification may give up sooner than a payment; a report runs
    /// alone for up to half an hour (the default for `reports`).
    pub per_queue: std::collections::BTreeMap<String, QueueRetry>,
}

/// One queue's settings; what is unset comes from `[workers]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QueueRetry {
    /// Deliveries before the dead letters.
    pub max_attempts: Option<u32>,
    /// First retry delay.
    pub retry_base: Option<HumanDuration>,
    /// Longest retry delay.
    pub retry_max: Option<HumanDuration>,
    /// Deliveries handled together.
    pub batch_size: Option<usize>,
    /// How long one delivery's work may take (a batch gets twice this).
    pub message_timeout: Option<HumanDuration>,
}

impl WorkerSettings {
    /// These settings with `queue`'s own retry settings applied.
    pub fn for_queue(&self, queue: &str) -> WorkerSettings {
        let mut settings = self.clone();
        if let Some(own) = self.per_queue.get(queue) {
            settings.max_attempts = own.max_attempts.unwrap_or(self.max_attempts);
            settings.retry_base = own.retry_base.unwrap_or(self.retry_base);
            settings.retry_max = own.retry_max.unwrap_or(self.retry_max);
            settings.batch_size = own.batch_size.unwrap_or(self.batch_size);
            settings.message_timeout = own.message_timeout.unwrap_or(self.message_timeout);
        }
        settings
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 256,
            concurrency: 2,
            linger: HumanDuration::from_millis(0),
            message_timeout: HumanDuration::from_secs(10),
            // 25 attempts, 1 s doubling to 5 min (each delay jittered over its upper half):
            // 42 to 84 minutes in all, so a payment or webhook outage of half an hour is
            // retried through, not dead-lettered. An engine's outage spends no attempt at all.
            max_attempts: 25,
            retry_base: HumanDuration::from_secs(1),
            retry_max: HumanDuration::from_secs(300),
            metrics_listen: None,
            // A report runs for minutes, one at a time, not in batches of messages.
            per_queue: std::collections::BTreeMap::from([(
                "reports".to_owned(),
                QueueRetry {
                    batch_size: Some(1),
                    message_timeout: Some(HumanDuration::from_secs(1800)),
                    ..QueueRetry::default()
                },
            )]),
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

/// How orders are paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMode {
    /// The payment consumer charges each order through the gateway, server side.
    #[default]
    Charge,
    /// Pay later: the gateway gives each order a payment URL, the customer pays there, and the
    /// provider calls `POST /api/payments/callback`; unpaid orders are cancelled after
    /// `payment.pay_within`.
    AwaitCallback,
}

/// The payment gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// `charge` (the default) or `await_callback` (pay later).
    pub mode: PaymentMode,
    /// `simulated` or `http`.
    pub gateway: GatewayKind,
    /// Simulated: time per charge.
    pub latency: HumanDuration,
    /// Simulated: share of charges that fail transiently (0.0 to 1.0).
    pub failure_rate: f64,
    /// HTTP: where to POST charges.
    pub url: Option<SecretUrl>,
    /// HTTP: per-request timeout.
    pub timeout: HumanDuration,
    /// HTTP over `https://`: a PEM file of certificate authorities trusted besides the
    /// system's (a gateway whose certificate a private CA signed).
    pub ca_file: Option<PathBuf>,
    /// Pay later: the secret the provider signs callbacks with (`X-Ordermill-Signature`).
    pub callback_secret: Option<Secret>,
    /// Pay later: how long a customer has to pay once the order has its payment URL; then it
    /// is cancelled and its stock goes back on sale. Not the gateway call's `timeout`.
    pub pay_within: HumanDuration,
    /// Pay later: how often each api node looks for deadlines that passed.
    pub check_interval: HumanDuration,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            mode: PaymentMode::Charge,
            callback_secret: None,
            pay_within: HumanDuration::from_secs(15 * 60),
            check_interval: HumanDuration::from_secs(1),
            gateway: GatewayKind::Simulated,
            latency: HumanDuration::from_millis(0),
            failure_rate: 0.0,
            url: None,
            timeout: HumanDuration::from_secs(2),
            ca_file: None,
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
    pub url: Option<SecretUrl>,
    /// Webhook: per-request timeout.
    pub timeout: HumanDuration,
    /// Webhook over `https://`: a PEM file of certificate authorities trusted besides the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// Webhook: the shared secret each request is signed with (`X-Ordermill-Signature`);
    /// unsigned without one.
    pub webhook_secret: Option<Secret>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            notifier: NotifierKind::Log,
            url: None,
            timeout: HumanDuration::from_secs(2),
            ca_file: None,
            webhook_secret: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_taken_only_with_a_tls_url() {
        let mut settings = Settings::default();
        settings.redis.ca_file = Some(PathBuf::from("/etc/ordermill/redis-ca.pem"));
        let err = settings.validate().unwrap_err();
        assert!(err.contains("redis.ca_file") && err.contains("rediss://"), "{err}");
        settings.cache = "redis://cache.internal:6379".parse().unwrap();
        assert!(settings.validate().is_err(), "plain redis:// has no TLS to verify");
        settings.cache = "rediss://cache.internal:6380".parse().unwrap();
        assert_eq!(settings.validate(), Ok(()));

        settings.rabbitmq.ca_file = Some(PathBuf::from("/etc/ordermill/mq-ca.pem"));
        settings.bus = "amqp://mq.internal:5672/%2f".parse().unwrap();
        let err = settings.validate().unwrap_err();
        assert!(err.contains("rabbitmq.ca_file") && err.contains("amqps://"), "{err}");
        settings.bus = "amqps://mq.internal:5671/%2f".parse().unwrap();
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn a_queue_takes_its_own_retry_settings_and_the_rest_from_workers() {
        let mut workers = WorkerSettings::default();
        workers.per_queue.insert(
            "notify".into(),
            QueueRetry { max_attempts: Some(10), ..QueueRetry::default() },
        );
        let notify = workers.for_queue("notify");
        assert_eq!((notify.max_attempts, notify.retry_max), (10, workers.retry_max));
        assert_eq!(workers.for_queue("payment"), workers, "no entry: the [workers] settings");
        let bad = Settings {
            workers: WorkerSettings {
                per_queue: [(
                    "payment".to_owned(),
                    QueueRetry { max_attempts: Some(0), ..QueueRetry::default() },
                )]
                .into(),
                ..WorkerSettings::default()
            },
            ..Settings::default()
        };
        assert!(bad.validate().unwrap_err().contains("workers.per_queue.payment"));
    }

    #[test]
    fn a_consumer_lingers_under_a_second() {
        let linger = |ms| Settings {
            workers: WorkerSettings {
                linger: HumanDuration::from_millis(ms),
                ..WorkerSettings::default()
            },
            ..Settings::default()
        };
        assert!(linger(0).validate().is_ok() && linger(5).validate().is_ok());
        assert!(linger(1000).validate().unwrap_err().contains("workers.linger"));
    }

    #[test]
    fn a_commit_lingers_less_than_an_order_may_wait() {
        let linger = |ms| Settings {
            commit: CommitSettings {
                linger: HumanDuration::from_millis(ms),
                ..CommitSettings::default()
            },
            ..Settings::default()
        };
        assert!(linger(0).validate().is_ok() && linger(2).validate().is_ok());
        assert!(linger(100).validate().unwrap_err().contains("commit.linger"));
    }

    #[test]
    fn a_report_read_share_is_a_percent() {
        let share = |read_share| Settings {
            reports: ReportSettings { read_share, ..ReportSettings::default() },
            ..Settings::default()
        };
        assert!(share(10).validate().is_ok() && share(100).validate().is_ok());
        for bad in [0, 101] {
            assert!(share(bad).validate().unwrap_err().contains("reports.read_share"), "{bad}");
        }
    }
}
