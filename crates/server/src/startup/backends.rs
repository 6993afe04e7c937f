//! Which engines a node runs on, chosen by URL in the settings: the embedded defaults (SQLite
//! in the data dir, the in-process bus over its outbox, in-process hot stock) or the scaled-out
//! engines (PostgreSQL or MySQL, RabbitMQ, Redis). Nothing else in the server knows which it
//! got.

use std::sync::Arc;

use ordermill_bus::{EmbeddedBus, RabbitBus};
use ordermill_cache::{LocalOrderCache, LocalRateLimiter, LocalStockCache, RedisStockCache};
use ordermill_core::Clock;
use ordermill_core::ports::{
    BusError, DealStore, EventBus, LimitStore, OrderReadCache, OrderStore, Outbox, RateLimiter,
    ReportFiles, ReportStore, StockCache, StoreError,
};
use ordermill_store::SqliteStore;
use ordermill_store::files::DirReportFiles;

use crate::services::unreturned::ReturnsOwed;
use crate::startup::app::StartError;
use crate::startup::settings::{BusUrl, CacheUrl, Settings, StoreUrl};
use crate::startup::sql_store::SqlStore;

/// Checks that `store` and `bus` go together: the embedded bus lives in the SQLite store, the
/// RabbitMQ relay reads the shared database's outbox.
///
/// # Errors
/// [`StartError::Config`] saying which setting to change.
pub fn check_pairing(settings: &Settings) -> Result<(), StartError> {
    match (&settings.store, &settings.bus) {
        (StoreUrl::Postgres(_) | StoreUrl::Mysql(_), BusUrl::Embedded) => Err(StartError::Config(
            "the embedded bus keeps its queues in the embedded store; with store = postgres://... or mysql://... set bus = amqp://... too".into(),
        )),
        (StoreUrl::Sqlite, BusUrl::Amqp(_)) => Err(StartError::Config(
            "the RabbitMQ bus relays from a shared database's outbox; with bus = amqp://... set store = postgres://... or mysql://... too (the SQLite store has no broker relay)".into(),
        )),
        _ => Ok(()),
    }
}

/// The opened engines.
pub struct Backends {
    /// Orders, products, effects.
    pub store: Arc<dyn OrderStore>,
    /// Group-buy deals.
    pub deals: Arc<dyn DealStore>,
    /// Per-customer limits.
    pub purchase_limits: Arc<dyn LimitStore>,
    /// Reports.
    pub reports: Arc<dyn ReportStore>,
    /// Finished report files: in the data dir on the embedded store, in the shared database
    /// scaled out.
    pub report_files: Arc<dyn ReportFiles>,
    /// Where report runs write their files before handing them over.
    pub report_work_dir: std::path::PathBuf,
    /// The bus.
    pub bus: Arc<dyn EventBus>,
    /// Hot stock.
    pub cache: Arc<dyn StockCache>,
    /// Order views behind `GET /api/orders/{id}`.
    pub order_cache: Arc<dyn OrderReadCache>,
    /// Per-client request budgets (`rate_limit`), shared through Redis when the cache is.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// Whether other nodes share the store and cache (the scaled-out engines): then the cache
    /// is reconciled without overwriting live counts.
    pub shared: bool,
    /// The broker relay's two ends, when events go through a broker.
    pub relay: Option<(Arc<RabbitBus>, Arc<dyn Outbox>)>,
    /// The shared database, for its partition maintenance.
    pub sql: Option<SqlStore>,
    /// The embedded store, for its retention of consumers' records.
    pub embedded: Option<Arc<SqliteStore>>,
}

/// `<data_dir>/reports`, created if missing.
fn report_dir(settings: &Settings) -> Result<DirReportFiles, StartError> {
    DirReportFiles::open(settings.data_dir.join("reports")).map_err(|source| StartError::Store {
        dir: settings.data_dir.display().to_string(),
        source,
    })
}

/// Opens every engine the settings name.
///
/// # Errors
/// See [`StartError`].
pub async fn open(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Backends, StartError> {
    check_pairing(settings)?;
    let Caches { cache, orders, rate_limiter } = caches(settings).await?;
    match (&settings.store, &settings.bus) {
        (StoreUrl::Sqlite, _) => {
            let data_dir = settings.data_dir.clone();
            let store_error =
                |source| StartError::Store { dir: settings.data_dir.display().to_string(), source };
            let sqlite = Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
                    .await
                    .map_err(|e| store_error(StoreError::Unavailable(e.to_string())))?
                    .map_err(store_error)?,
            );
            let bus = EmbeddedBus::start(settings.topology.clone(), sqlite.clone(), clock).await?;
            let files = report_dir(settings)?;
            Ok(Backends {
                store: sqlite.clone(),
                deals: sqlite.clone(),
                reports: sqlite.clone(),
                report_work_dir: files.work_dir().to_path_buf(),
                report_files: Arc::new(files),
                purchase_limits: sqlite.clone(),
                embedded: Some(sqlite),
                bus: Arc::new(bus),
                cache,
                order_cache: orders,
                rate_limiter,
                shared: false,
                relay: None,
                sql: None,
            })
        }
        (StoreUrl::Postgres(url) | StoreUrl::Mysql(url), BusUrl::Amqp(amqp)) => {
            let sql = SqlStore::open(settings, None).await?;
            let pending = sql.pending_migrations().await.map_err(StartError::Database)?;
            if !pending.is_empty() {
                return Err(StartError::Config(format!(
                    "the {} schema at {url} is not set up for this release (missing {}): run `ordermill migrate --store {url}` once, from any machine, then start the nodes",
                    sql.engine(),
                    pending.join(", ")
                )));
            }
            let ports = sql.ports();
            let rabbit = settings.rabbitmq.clone();
            // Read again at every connection; a file missing at start is a mistake, not an outage.
            rabbit.tls().map_err(StartError::Config)?;
            // Two batches per consumer loop in flight: one being settled, the next arriving.
            let workers = &settings.workers;
            let auto = workers.concurrency.saturating_mul(workers.batch_size).saturating_mul(2);
            let prefetch = rabbit.prefetch.or(Some(u16::try_from(auto).unwrap_or(u16::MAX)));
            let rabbit =
                ordermill_bus::RabbitSettings { url: amqp.expose().to_owned(), prefetch, ..rabbit };
            let bus = Arc::new(
                RabbitBus::start(rabbit, settings.topology.clone(), ports.outbox.clone())
                    .await
                    .map_err(StartError::Bus)?,
            );
            tracing::info!(store = %url, engine = sql.engine(), queue_prefix = %settings.rabbitmq.queue_prefix, "Scaled-out engines: shared database, RabbitMQ bus.");
            Ok(Backends {
                store: ports.store,
                deals: ports.deals,
                reports: ports.reports,
                report_files: ports.report_files,
                // Files go to the database; a run writes its own here first.
                report_work_dir: report_dir(settings)?.work_dir().to_path_buf(),
                purchase_limits: ports.limits,
                sql: Some(sql),
                embedded: None,
                bus: bus.clone(),
                cache,
                order_cache: orders,
                rate_limiter,
                shared: true,
                relay: Some((bus, ports.outbox)),
            })
        }
        (StoreUrl::Postgres(_) | StoreUrl::Mysql(_), BusUrl::Embedded) => {
            unreachable!("check_pairing() refuses a shared store with the embedded bus")
        }
    }
}

struct Caches {
    cache: Arc<dyn StockCache>,
    orders: Arc<dyn OrderReadCache>,
    rate_limiter: Option<Arc<dyn RateLimiter>>,
}

/// The hot-stock cache, the order read cache and the request budgets the settings name.
async fn caches(settings: &Settings) -> Result<Caches, StartError> {
    let ttl = settings.order_cache.ttl.get();
    let quota = settings.rate_limit.quota();
    match &settings.cache {
        CacheUrl::Local => Ok(Caches {
            cache: Arc::new(LocalStockCache::new()),
            orders: Arc::new(LocalOrderCache::new(settings.order_cache.entries, ttl)),
            rate_limiter: quota.map(|quota| {
                let limiter = Arc::new(LocalRateLimiter::new(quota));
                forget_idle_clients(&limiter);
                limiter as Arc<dyn RateLimiter>
            }),
        }),
        CacheUrl::Redis(url) => {
            let prefix = &settings.redis.key_prefix;
            let root_pem = match &settings.redis.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    StartError::Config(format!(
                        "redis.ca_file = {}: cannot read it: {e}",
                        path.display()
                    ))
                })?),
                None => None,
            };
            let cache = RedisStockCache::connect_with(url.expose(), prefix, root_pem)
                .await
                .map_err(|source| StartError::Cache { url: url.to_string(), source })?;
            tracing::info!(prefix = %prefix, "Hot stock and the order read cache are in Redis.");
            // Shared counts: a release that cannot reach Redis ends in a rebuild.
            let every = settings.redis.check_interval.get();
            Ok(Caches {
                cache: ReturnsOwed::wrap(Arc::new(cache.clone()), every),
                orders: Arc::new(cache.order_cache(ttl)),
                rate_limiter: quota
                    .map(|quota| Arc::new(cache.rate_limiter(quota)) as Arc<dyn RateLimiter>),
            })
        }
    }
}

/// Keeps a node-local limiter's memory to the clients seen in the last minute; ends with it.
fn forget_idle_clients(limiter: &Arc<LocalRateLimiter>) {
    let limiter = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            match limiter.upgrade() {
                Some(limiter) => limiter.forget_idle(),
                None => break,
            }
        }
    });
}

impl From<BusError> for StartError {
    fn from(error: BusError) -> Self {
        StartError::Bus(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_and_bus_that_do_not_go_together_are_refused() {
        let with = |store: &str, bus: &str| Settings {
            store: store.parse().unwrap(),
            bus: bus.parse().unwrap(),
            ..Settings::default()
        };
        assert!(check_pairing(&with("sqlite", "embedded")).is_ok());
        assert!(check_pairing(&with("postgres://p@h/db", "amqp://g:g@h/%2f")).is_ok());
        assert!(check_pairing(&with("mysql://p@h/db", "amqp://g:g@h/%2f")).is_ok());
        for (store, bus, needle) in [
            ("postgres://h/db", "embedded", "set bus = amqp"),
            ("mysql://h/db", "embedded", "set bus = amqp"),
            ("sqlite", "amqp://h", "set store = postgres"),
        ] {
            let err = check_pairing(&with(store, bus)).unwrap_err().to_string();
            assert!(err.contains(needle), "{store} {bus}: {err}");
        }
    }
}
