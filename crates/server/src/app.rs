//! Start and stop: [`Application::build`] opens the backends, reconciles stock and binds the
//! port; [`Application::run_until_stopped`] serves until told to stop, then lets in-flight
//! requests finish and the committer flush before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ordermill_cache::{LocalStockCache, RedisStockCache};
use std::time::Duration;

use ordermill_bus::EmbeddedBus;
use ordermill_core::ports::{
    BusError, BusLedger, CacheError, DealStore, EventBus, LimitStore, OrderStore, StockCache,
    StoreError,
};
use ordermill_core::{Clock, OrderIdGenerator, SystemClock};
use ordermill_store::SqliteStore;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, CatalogError};
use crate::deals::{self, Deals};
use crate::http::{self, AppState, Shared};
use crate::intake::Intake;
use crate::intake::committer::Committer;
use crate::intake::idempotency::Idempotency;
use crate::integrations::{self, IntegrationError};
use crate::limits::PurchaseLimits;
use crate::read_cache::OrderCache;
use crate::settings::Settings;
use crate::telemetry;
use crate::workers::{self, Pipeline};

/// Why the service could not start. Each message says what to do.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data dir or database could not be opened.
    #[error(
        "cannot open the store in {dir}: {source}. Check the path and its permissions (--data-dir)."
    )]
    Store {
        /// The data dir.
        dir: String,
        /// The cause.
        #[source]
        source: ordermill_core::ports::StoreError,
    },
    /// The catalog could not be loaded or stock reconciled.
    #[error("cannot load the catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The hot-stock cache could not be reached or is misnamed.
    #[error(
        "cannot use the hot-stock cache {url:?}: {source}. Check `cache` (ORDERMILL_CACHE, --cache)."
    )]
    Cache {
        /// What was configured.
        url: String,
        /// The cause.
        #[source]
        source: CacheError,
    },
    /// The bus could not recover its queues from the outbox.
    #[error("cannot start the event bus: {0}")]
    Bus(#[from] BusError),
    /// A payment gateway or notifier is misconfigured.
    #[error("invalid integration settings: {0}")]
    Integration(#[from] IntegrationError),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}. Is another process using it? Pick another with --listen."
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The hot-stock cache the settings name.
async fn stock_cache(settings: &Settings) -> Result<Arc<dyn StockCache>, StartError> {
    match settings.cache.as_str() {
        "local" | "" => Ok(Arc::new(LocalStockCache::new())),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            let cache = RedisStockCache::connect(url, &settings.cache_prefix)
                .await
                .map_err(|source| StartError::Cache { url: url.to_owned(), source })?;
            tracing::info!(prefix = %settings.cache_prefix, "Hot stock is in Redis.");
            Ok(Arc::new(cache))
        }
        other => Err(StartError::Cache {
            url: other.to_owned(),
            source: CacheError::Unavailable("use \"local\" or a redis:// URL".into()),
        }),
    }
}

/// A built, not yet serving, ordermill node.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    committer: Committer,
    pipeline: Pipeline,
    deals: Arc<Deals>,
    settings: Settings,
}

impl Application {
    /// Builds the node on the system clock.
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds the node with the given clock (tests fake time with it).
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartError> {
        let metrics = telemetry::install();
        let data_dir = settings.data_dir.clone();
        let store_error =
            |source| StartError::Store { dir: settings.data_dir.display().to_string(), source };
        let sqlite = Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
                .await
                .map_err(|e| store_error(StoreError::Unavailable(e.to_string())))?
                .map_err(store_error)?,
        );
        let store: Arc<dyn OrderStore> = sqlite.clone();
        let deal_store: Arc<dyn DealStore> = sqlite.clone();
        let limit_store: Arc<dyn LimitStore> = sqlite.clone();
        let ledger: Arc<dyn BusLedger> = sqlite;
        let cache = stock_cache(&settings).await?;
        let catalog = Arc::new(Catalog::load(store.clone(), cache.clone()).await?);
        let bus: Arc<dyn EventBus> =
            Arc::new(EmbeddedBus::start(settings.topology.clone(), ledger, clock.clone()).await?);
        let (committer, handle) = Committer::new(
            store.clone(),
            cache.clone(),
            bus.clone(),
            settings.commit.max_batch_orders,
            settings.commit.queue_capacity,
        );
        let idempotency =
            Arc::new(Idempotency::new(store.clone(), settings.idempotency_cache_entries));
        let limits = Arc::new(PurchaseLimits::load(limit_store).await.map_err(store_error)?);
        let intake = Arc::new(Intake::new(
            catalog.clone(),
            cache.clone(),
            handle,
            idempotency.clone(),
            limits.clone(),
            clock.clone(),
            bus.clone(),
            settings.max_backlog,
        ));
        let orders = OrderCache::new(settings.order_cache_entries);
        let deals = Arc::new(Deals::new(
            deal_store,
            catalog.clone(),
            cache.clone(),
            limits.clone(),
            idempotency,
            bus.clone(),
            orders.clone(),
            clock.clone(),
        ));
        let pipeline = Pipeline {
            store: store.clone(),
            bus: bus.clone(),
            cache,
            clock,
            ids: Arc::new(OrderIdGenerator::new()),
            orders: orders.clone(),
            gateway: integrations::payment_gateway(&settings.payment)?,
            notifier: integrations::notifier(&settings.notify)?,
            limits: limits.clone(),
            message_timeout: Duration::from_millis(settings.workers.message_timeout_ms.max(1)),
        };
        let admin_token = settings.admin_token.as_deref().filter(|t| !t.is_empty()).map(Arc::from);
        let state = AppState::new(Shared {
            intake,
            catalog,
            store,
            metrics,
            bus,
            orders,
            deals: deals.clone(),
            limits,
            admin_token,
        });
        let router = http::router(state, &settings.http);
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| StartError::Bind { addr: settings.listen, source })?;
        Ok(Application { listener, router, committer, pipeline, deals, settings })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; failure would be an OS-level bug.
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests
    /// finish, flushes the committer, lets consumers finish and settle the batch in hand,
    /// and returns. Anything not acked by then is delivered again on the next start.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(listen = %self.local_addr(), data_dir = %self.settings.data_dir.display(), "ordermill is serving.");
        let stop_committer = CancellationToken::new();
        let committing = TaskTracker::new();
        committing.spawn(self.committer.run(stop_committer.clone()));
        committing.close();
        let stop_workers = CancellationToken::new();
        let working = TaskTracker::new();
        workers::spawn_all(&self.pipeline, &self.settings.workers, &working, &stop_workers);
        working.spawn(deals::scheduler::run(
            self.deals.clone(),
            Duration::from_millis(self.settings.deals.check_interval_ms.max(10)),
            stop_workers.clone(),
        ));
        working.spawn(telemetry::watch_queues(
            self.pipeline.bus.clone(),
            Duration::from_secs(1),
            stop_workers.clone(),
        ));
        working.close();

        let served = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await;
        tracing::info!("HTTP server stopped; flushing the committer.");
        stop_committer.cancel();
        committing.wait().await;
        tracing::info!("Committer flushed; letting consumers finish the messages in hand.");
        stop_workers.cancel();
        working.wait().await;
        served
    }
}
