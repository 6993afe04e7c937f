//! Start and stop: [`Application::build`] opens the backends, reconciles stock and binds the
//! port; [`Application::run_until_stopped`] serves until told to stop, then lets in-flight
//! requests finish and the committer flush before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ordermill_cache::LocalStockCache;
use ordermill_core::ports::{OrderStore, StockCache};
use ordermill_core::{Clock, SystemClock};
use ordermill_store::SqliteStore;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, CatalogError};
use crate::http::{self, AppState};
use crate::intake::Intake;
use crate::intake::committer::Committer;
use crate::intake::idempotency::Idempotency;
use crate::settings::Settings;
use crate::telemetry;

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

/// A built, not yet serving, ordermill node.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    committer: Committer,
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
        let store: Arc<dyn OrderStore> = Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
                .await
                .map_err(|e| StartError::Store {
                    dir: settings.data_dir.display().to_string(),
                    source: ordermill_core::ports::StoreError::Unavailable(e.to_string()),
                })?
                .map_err(|source| StartError::Store {
                    dir: settings.data_dir.display().to_string(),
                    source,
                })?,
        );
        let cache: Arc<dyn StockCache> = Arc::new(LocalStockCache::new());
        let catalog = Arc::new(Catalog::load(store.clone(), cache.clone()).await?);
        let (committer, handle) = Committer::new(
            store.clone(),
            cache.clone(),
            settings.commit.max_batch_orders,
            settings.commit.queue_capacity,
        );
        let idempotency = Idempotency::new(store.clone(), settings.idempotency_cache_entries);
        let intake = Arc::new(Intake::new(catalog.clone(), cache, handle, idempotency, clock));
        let state = AppState { intake, catalog, store, metrics };
        let router = http::router(state, &settings.http);
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| StartError::Bind { addr: settings.listen, source })?;
        Ok(Application { listener, router, committer, settings })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; failure would be an OS-level bug.
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests
    /// finish, flushes the committer, and returns.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(listen = %self.local_addr(), data_dir = %self.settings.data_dir.display(), "ordermill is serving.");
        let stop_committer = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(self.committer.run(stop_committer.clone()));
        tasks.close();
        let served = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await;
        tracing::info!("HTTP server stopped; flushing the committer.");
        stop_committer.cancel();
        tasks.wait().await;
        served
    }
}
