//! Which engines a node runs on, chosen by URL in the settings: the embedded defaults (SQLite
//! in the data dir, the in-process bus over its outbox, in-process hot stock) or the scaled-out
//! engines (PostgreSQL, RabbitMQ, Redis). Nothing else in the server knows which it got.

use std::sync::Arc;

use ordermill_bus::{EmbeddedBus, RabbitBus};
use ordermill_cache::{LocalOrderCache, LocalStockCache, RedisStockCache};
use ordermill_core::Clock;
use ordermill_core::ports::{
    BusError, CacheError, DealStore, EventBus, LimitStore, OrderReadCache, OrderStore, Outbox,
    StockCache, StoreError,
};
use ordermill_store::{PostgresStore, SqliteStore};

use crate::app::StartError;
use crate::settings::Settings;

/// Where orders are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// SQLite in the data dir.
    Sqlite,
    /// PostgreSQL at this URL.
    Postgres(String),
}

/// How events travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    /// In-process, over the store's outbox.
    Embedded,
    /// RabbitMQ at this URL.
    Amqp(String),
}

/// Reads `store` from the settings.
///
/// # Errors
/// [`StartError::Config`] naming the setting and the values it takes.
pub fn store_choice(settings: &Settings) -> Result<StoreChoice, StartError> {
    match settings.store.as_str() {
        "" | "sqlite" | "sqlite:" | "embedded" | "local" => Ok(StoreChoice::Sqlite),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(StoreChoice::Postgres(url.to_owned()))
        }
        other => Err(StartError::Config(format!(
            "store = {:?} is not a store: use \"sqlite\" (embedded, the default) or a postgres:// URL (ORDERMILL_STORE, --store)",
            redact(other)
        ))),
    }
}

/// Reads `store` and `bus` from the settings, and checks they go together.
///
/// # Errors
/// [`StartError::Config`] naming the setting and the values it takes.
pub fn choices(settings: &Settings) -> Result<(StoreChoice, BusChoice), StartError> {
    let store = store_choice(settings)?;
    let bus = match settings.bus.as_str() {
        "" | "embedded" | "local" => BusChoice::Embedded,
        url if url.starts_with("amqp://") || url.starts_with("amqps://") => {
            BusChoice::Amqp(url.to_owned())
        }
        other => {
            return Err(StartError::Config(format!(
                "bus = {:?} is not a bus: use \"embedded\" (the default) or an amqp:// URL (ORDERMILL_BUS, --bus)",
                redact(other)
            )));
        }
    };
    match (&store, &bus) {
        (StoreChoice::Postgres(_), BusChoice::Embedded) => Err(StartError::Config(
            "the embedded bus keeps its queues in the embedded store; with store = postgres://... set bus = amqp://... too".into(),
        )),
        (StoreChoice::Sqlite, BusChoice::Amqp(_)) => Err(StartError::Config(
            "the RabbitMQ bus relays from the PostgreSQL outbox; with bus = amqp://... set store = postgres://... too (the SQLite store has no broker relay)".into(),
        )),
        _ => Ok((store, bus)),
    }
}

/// A URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => {
                    format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The opened engines.
pub struct Backends {
    /// Orders, products, effects.
    pub store: Arc<dyn OrderStore>,
    /// Group-buy deals.
    pub deals: Arc<dyn DealStore>,
    /// Per-customer limits.
    pub limits: Arc<dyn LimitStore>,
    /// The bus.
    pub bus: Arc<dyn EventBus>,
    /// Hot stock.
    pub cache: Arc<dyn StockCache>,
    /// Order views behind `GET /api/orders/{id}`.
    pub orders: Arc<dyn OrderReadCache>,
    /// Whether other nodes share the store and cache (the scaled-out engines): then the cache
    /// is reconciled without overwriting live counts.
    pub shared: bool,
    /// The broker relay's two ends, when events go through a broker.
    pub relay: Option<(Arc<RabbitBus>, Arc<dyn Outbox>)>,
}

/// Opens the store named by the settings (without the bus), for maintenance commands.
///
/// # Errors
/// See [`StartError`].
pub async fn open_postgres(settings: &Settings, url: &str) -> Result<PostgresStore, StartError> {
    PostgresStore::connect(url, settings.postgres.schema.as_deref(), settings.postgres.pool_size)
        .await
        .map_err(StartError::Database)
}

/// Opens every engine the settings name.
///
/// # Errors
/// See [`StartError`].
pub async fn open(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Backends, StartError> {
    let (store, bus) = choices(settings)?;
    let (cache, orders) = caches(settings).await?;
    match (store, bus) {
        (StoreChoice::Sqlite, _) => {
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
            Ok(Backends {
                store: sqlite.clone(),
                deals: sqlite.clone(),
                limits: sqlite,
                bus: Arc::new(bus),
                cache,
                orders,
                shared: false,
                relay: None,
            })
        }
        (StoreChoice::Postgres(url), BusChoice::Amqp(amqp)) => {
            let pg = Arc::new(open_postgres(settings, &url).await?);
            let outbox: Arc<dyn Outbox> = pg.clone();
            let rabbit = settings.rabbitmq.clone();
            let rabbit = ordermill_bus::RabbitSettings { url: amqp, ..rabbit };
            let bus = Arc::new(
                RabbitBus::start(rabbit, settings.topology.clone(), outbox.clone())
                    .await
                    .map_err(StartError::Bus)?,
            );
            tracing::info!(store = %redact(&url), queue_prefix = %settings.rabbitmq.queue_prefix, "Scaled-out engines: PostgreSQL store, RabbitMQ bus.");
            Ok(Backends {
                store: pg.clone(),
                deals: pg.clone(),
                limits: pg,
                bus: bus.clone(),
                cache,
                orders,
                shared: true,
                relay: Some((bus, outbox)),
            })
        }
        (StoreChoice::Postgres(_), BusChoice::Embedded) => {
            unreachable!("choices() refuses a PostgreSQL store with the embedded bus")
        }
    }
}

/// The hot-stock cache and the order read cache the settings name.
async fn caches(
    settings: &Settings,
) -> Result<(Arc<dyn StockCache>, Arc<dyn OrderReadCache>), StartError> {
    let ttl = std::time::Duration::from_millis(settings.order_cache_ttl_ms.max(1));
    match settings.cache.as_str() {
        "local" | "embedded" | "" => Ok((
            Arc::new(LocalStockCache::new()),
            Arc::new(LocalOrderCache::new(settings.order_cache_entries, ttl)),
        )),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            let cache = RedisStockCache::connect(url, &settings.cache_prefix)
                .await
                .map_err(|source| StartError::Cache { url: redact(url), source })?;
            tracing::info!(prefix = %settings.cache_prefix, "Hot stock and the order read cache are in Redis.");
            Ok((Arc::new(cache.clone()), Arc::new(cache.order_cache(ttl))))
        }
        other => Err(StartError::Cache {
            url: redact(other),
            source: CacheError::Unavailable("use \"local\" or a redis:// URL".into()),
        }),
    }
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
    fn passwords_never_reach_messages() {
        assert_eq!(redact("amqp://guest:secret@host:5672/%2f"), "amqp://guest:***@host:5672/%2f");
        assert_eq!(redact("postgres://app@db/orders"), "postgres://app@db/orders");
        assert_eq!(redact("sqlite"), "sqlite");
    }

    #[test]
    fn backends_are_chosen_by_url_and_mismatches_are_refused() {
        let with = |store: &str, bus: &str| Settings {
            store: store.into(),
            bus: bus.into(),
            ..Settings::default()
        };
        assert_eq!(
            choices(&with("sqlite", "embedded")).unwrap(),
            (StoreChoice::Sqlite, BusChoice::Embedded)
        );
        assert_eq!(choices(&with("sqlite:", "local")).unwrap().0, StoreChoice::Sqlite);
        let (store, bus) = choices(&with("postgres://p@h/db", "amqp://g:g@h/%2f")).unwrap();
        assert!(matches!((store, bus), (StoreChoice::Postgres(_), BusChoice::Amqp(_))));
        for (store, bus, needle) in [
            ("postgres://h/db", "embedded", "set bus = amqp"),
            ("sqlite", "amqp://h", "set store = postgres"),
            ("mysql://h", "embedded", "is not a store"),
            ("sqlite", "kafka://h", "is not a bus"),
        ] {
            let err = choices(&with(store, bus)).unwrap_err().to_string();
            assert!(err.contains(needle), "{store} {bus}: {err}");
        }
    }
}
