//! Start and stop: [`Application::build`] opens the backends, reconciles stock and binds the
//! port; [`Application::run_until_stopped`] serves until told to stop, then lets in-flight
//! requests finish and the committer flush before returning.
//!
//! A node plays a [`Role`]: everything in one process (`serve`), the HTTP side only (`api`:
//! intake, committer, outbox relay, deal scheduler), or consumers only (`worker`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ordermill_core::ports::{CacheError, StoreError};
use ordermill_core::{Clock, OrderIdGenerator};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapters::http::auth::Auth;
use crate::adapters::http::rate_limit::RateLimit;
use crate::adapters::http::serve::EdgeLimits;
use crate::adapters::http::{self, AppState, Shared};
use crate::adapters::integrations::{self, IntegrationError};
use crate::adapters::workers::pay_later::PayLater;
use crate::adapters::workers::{self, Pipeline};
use crate::services::catalog::{Catalog, CatalogError, Reconcile};
use crate::services::deals::{self, Deals};
use crate::services::intake::Intake;
use crate::services::intake::committer::{Batching, Committer};
use crate::services::intake::idempotency::Idempotency;
use crate::services::lease::{Lease, Renewal};
use crate::services::order_cache::OrderCache;
use crate::services::purchase_limits::PurchaseLimits;
use crate::services::stock_repair::{self, RepairSettings};
use crate::startup::backends::{self, Backends};
use crate::startup::prebound::Prebound;
use crate::startup::settings::Settings;
use crate::startup::settings::{CacheUrl, PaymentMode, Secret, networks};
use crate::telemetry;

/// What a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything: HTTP, committer, consumers, scheduler (and the relay with a broker).
    All,
    /// HTTP, committer, deal scheduler and outbox relay; no consumers. Needs a shared bus.
    Api,
    /// Consumers of these queues only (all of the topology's when empty); no HTTP.
    Worker {
        /// Queue names.
        queues: Vec<String>,
    },
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::All => f.write_str("all"),
            Role::Api => f.write_str("api"),
            Role::Worker { .. } => f.write_str("worker"),
        }
    }
}

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
    /// The PostgreSQL store could not be opened or read.
    #[error(
        "cannot use the PostgreSQL store: {0}. Check `store` (ORDERMILL_STORE, --store); a new database needs `ordermill migrate` once."
    )]
    Database(#[source] StoreError),
    /// The settings name engines that do not go together, or an unknown one.
    #[error("{0}")]
    Config(String),
    /// The catalog could not be loaded or stock reconciled.
    #[error("cannot load the catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The hot-stock cache could not be reached or is misnamed.
    #[error(
        "cannot use the hot-stock cache {url:?}: {source}. Check `cache` (ORDERMILL_CACHE, --cache) and, for a rediss:// certificate, `redis.ca_file`."
    )]
    Cache {
        /// What was configured.
        url: String,
        /// The cause.
        #[source]
        source: CacheError,
    },
    /// The bus could not start (recover its queues, or reach the broker).
    #[error("cannot start the event bus: {0}")]
    Bus(#[source] ordermill_core::ports::BusError),
    /// A payment gateway or notifier is misconfigured.
    #[error("invalid integration settings: {0}")]
    Integration(#[from] IntegrationError),
    /// Protected mode: the node would listen beyond loopback while anyone may act as anyone.
    #[error(
        "refusing to listen on {addr}: anyone who reaches it could act as any customer or change the catalog. Set {why}; or listen on 127.0.0.1; or, to accept the risk, start with --insecure-open (auth.insecure_open = true)."
    )]
    Unprotected {
        /// The address.
        addr: SocketAddr,
        /// The settings that are missing.
        why: String,
    },
    /// A thread the service runs on could not be started.
    #[error("cannot start the {name} thread: {source}. The system is out of threads or memory.")]
    Thread {
        /// What it is for.
        name: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
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

impl StartError {
    /// Whether an engine could not be reached (it may be starting or restarting), as opposed
    /// to a mistake waiting cannot cure.
    pub fn is_engine_unavailable(&self) -> bool {
        self.unreachable_engine().is_some()
    }

    /// The setting naming the engine that could not be reached (`store`, `bus` or `cache`),
    /// when that is why the node could not start.
    pub fn unreachable_engine(&self) -> Option<&'static str> {
        use ordermill_core::ports::BusError;
        match self {
            StartError::Database(StoreError::Unavailable(_))
            | StartError::Catalog(CatalogError::Store(StoreError::Unavailable(_))) => Some("store"),
            StartError::Bus(BusError::Unavailable(_)) => Some("bus"),
            StartError::Cache { source: CacheError::Unavailable(_), .. }
            | StartError::Catalog(CatalogError::Cache(CacheError::Unavailable(_))) => Some("cache"),
            _ => None,
        }
    }
}

/// Refuses to listen beyond loopback while anyone may act as anyone, unless told
/// `insecure_open` (then says so at start).
fn protected_mode(settings: &Settings) -> Result<(), StartError> {
    let Some(why) = settings.auth.unprotected(settings.listen.ip()) else { return Ok(()) };
    if settings.auth.insecure_open {
        tracing::warn!(listen = %settings.listen, missing = %why, "INSECURE: listening beyond loopback with --insecure-open: anyone who reaches this node may act as any customer or change the catalog.");
        Ok(())
    } else {
        Err(StartError::Unprotected { addr: settings.listen, why })
    }
}

/// A built, not yet serving, ordermill node.
pub struct Application {
    /// The HTTP side (not on a worker).
    http: Option<HttpSide>,
    /// A worker's `/metrics` listener (`workers.metrics_listen`).
    metrics: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
    pipeline: Pipeline,
    backends: Backends,
    role: Role,
    settings: Settings,
}

struct HttpSide {
    listener: TcpListener,
    router: axum::Router,
    committer: Committer,
    deals: Arc<Deals>,
    catalog: Arc<Catalog>,
    /// This api node's id among those sharing the hot-stock cache.
    node: Option<String>,
    /// Pay later: callbacks and the payment deadline scheduler.
    pay_later: Option<Arc<PayLater>>,
}

impl Application {
    /// Builds an all-in-one node on its real clock ([`super::clock::for_node`]).
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Self::build_role(settings, Role::All).await
    }

    /// Builds a node playing `role` on its real clock: the system's with the embedded store,
    /// PostgreSQL's when scaled out ([`super::clock::for_node`]).
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn build_role(settings: Settings, role: Role) -> Result<Application, StartError> {
        Self::build_role_on(settings, role, &Prebound::default()).await
    }

    async fn build_role_on(
        settings: Settings,
        role: Role,
        prebound: &Prebound,
    ) -> Result<Application, StartError> {
        // Mistakes in the settings first: reading the database's clock would otherwise wait
        // for an engine the node refuses to use anyway.
        Self::check_role(&settings, &role)?;
        let clock = super::clock::for_node(&settings).await?;
        Self::build_on(settings, role, clock, prebound).await
    }

    /// What `role` refuses in `settings` before any engine is touched.
    fn check_role(settings: &Settings, role: &Role) -> Result<(), StartError> {
        if *role != Role::All && settings.cache == CacheUrl::Local {
            return Err(StartError::Config(
                "`ordermill api` and `ordermill worker` must share one stock count: with cache = \"local\" each node would sell the full stock, and units a worker gives back would never reach an api node. Set cache = redis://... (ORDERMILL_CACHE, --cache)".into(),
            ));
        }
        if matches!(role, Role::All | Role::Api) {
            protected_mode(settings)?;
        }
        Ok(())
    }

    /// Builds a node playing `role`, waiting for engines that cannot be reached yet (a node
    /// started before its database, broker or cache, or during their restart): each failed
    /// attempt is logged with its cause and retried after a capped backoff. Its port (a
    /// worker's `workers.metrics_listen`) is bound first and answers meanwhile as
    /// [`http::starting`] says, so probes see a node that is alive but not ready rather than
    /// a closed port. `None` when `stop` completes first.
    ///
    /// # Errors
    /// Any [`StartError`] that waiting cannot cure (a configuration mistake, a missing
    /// migration, a port in use).
    pub async fn build_when_ready(
        settings: Settings,
        role: Role,
        stop: impl Future<Output = ()>,
    ) -> Result<Option<Application>, StartError> {
        Self::check_role(&settings, &role)?;
        let prebound = Prebound::bind(&settings, &role).await?;
        let (tell, waiting) = tokio::sync::watch::channel(None);
        let stand_in = prebound.stand_in(&settings, waiting)?;
        telemetry::starting(true);
        let built = Self::build_waiting(&settings, &role, &prebound, &tell, stop).await;
        stand_in.stop().await;
        if matches!(built, Ok(Some(_))) {
            telemetry::starting(false);
        }
        built
    }

    async fn build_waiting(
        settings: &Settings,
        role: &Role,
        prebound: &Prebound,
        tell: &tokio::sync::watch::Sender<Option<&'static str>>,
        stop: impl Future<Output = ()>,
    ) -> Result<Option<Application>, StartError> {
        tokio::pin!(stop);
        let mut delay = Duration::from_millis(500);
        let mut first_wait = true;
        loop {
            match Self::build_role_on(settings.clone(), role.clone(), prebound).await {
                Ok(app) => return Ok(Some(app)),
                Err(error) => {
                    let Some(engine) = error.unreachable_engine() else { return Err(error) };
                    if first_wait {
                        prebound.log_answering();
                        first_wait = false;
                    }
                    tell.send_replace(Some(engine));
                    telemetry::start_waited(engine);
                    tracing::warn!(error = %error, engine, retry_in_ms = delay.as_millis() as u64, "Waiting for an engine to be reachable before starting.");
                }
            }
            tokio::select! {
                () = &mut stop => return Ok(None),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    /// Builds an all-in-one node with the given clock (tests fake time with it).
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartError> {
        Self::build_as(settings, Role::All, clock).await
    }

    /// Builds a node playing `role`.
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn build_as(
        settings: Settings,
        role: Role,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartError> {
        Self::build_on(settings, role, clock, &Prebound::default()).await
    }

    /// [`Application::build_as`] on the listeners `prebound` holds, binding the others.
    async fn build_on(
        settings: Settings,
        role: Role,
        clock: Arc<dyn Clock>,
        prebound: &Prebound,
    ) -> Result<Application, StartError> {
        Self::check_role(&settings, &role)?;
        let metrics = telemetry::install();
        let backends = backends::open(&settings, clock.clone()).await?;
        if role != Role::All && !backends.shared {
            return Err(StartError::Config(
                "`ordermill api` and `ordermill worker` share work through a broker and a database: set bus = amqp://... and store = postgres://... or mysql://... (or run everything in one process with `ordermill serve`)".into(),
            ));
        }
        if let Role::Worker { queues } = &role {
            let known = backends.bus.queues();
            if let Some(unknown) = queues.iter().find(|q| !known.contains(q)) {
                return Err(StartError::Config(format!(
                    "no queue named {unknown:?} in the topology; the queues are {}",
                    known.join(", ")
                )));
            }
        }
        let database = |source| StartError::Database(source);
        let purchase_limits =
            PurchaseLimits::load(backends.purchase_limits.clone()).await.map_err(database)?;
        // Scaled out, PostgreSQL counts for every node (0006): a node's own count would be
        // both too low (orders through other nodes) and too high (cancellations by workers).
        let purchase_limits = Arc::new(if backends.shared {
            purchase_limits.counted_by_store()
        } else {
            purchase_limits
        });
        let order_cache = OrderCache::new(backends.order_cache.clone());
        let pipeline = Pipeline {
            store: backends.store.clone(),
            bus: backends.bus.clone(),
            cache: backends.cache.clone(),
            clock: clock.clone(),
            ids: Arc::new(OrderIdGenerator::new()),
            order_cache: order_cache.clone(),
            gateway: integrations::payment_gateway(&settings.payment)?,
            notifier: integrations::notifier(&settings.notify, clock.clone())?,
            purchase_limits: purchase_limits.clone(),
            message_timeout: settings.workers.message_timeout.get(),
            unrouted: ordermill_core::RoutingKeys::of(|key| {
                settings.topology.queues_for(key.as_str()).is_empty()
            }),
            pay_later: (settings.payment.mode == PaymentMode::AwaitCallback)
                .then(|| settings.payment.pay_within.get()),
            reports: Arc::new(
                crate::services::reports::Reports::new(
                    backends.reports.clone(),
                    (backends.store.clone(), backends.deals.clone()),
                    backends.report_files.clone(),
                    backends.bus.clone(),
                    clock.clone(),
                    backends.report_work_dir.clone(),
                    crate::services::reports::ReportRules::from(&settings.reports),
                )
                .map_err(|source| StartError::Thread { name: "report", source })?,
            ),
        };
        if !matches!(role, Role::Api) {
            integrations::warn_if_unreachable(&settings.payment, &settings.notify);
        }
        let worker_metrics = match (&role, settings.workers.metrics_listen) {
            (Role::Worker { .. }, Some(addr)) => {
                Some((prebound.listener(addr).await?, metrics.clone()))
            }
            _ => None,
        };
        let http = match role {
            Role::Worker { .. } => None,
            Role::All | Role::Api => Some(
                Self::http_side(
                    &settings,
                    &backends,
                    (purchase_limits, order_cache, &pipeline),
                    (clock, metrics),
                    prebound,
                )
                .await?,
            ),
        };
        Ok(Application { http, metrics: worker_metrics, pipeline, backends, role, settings })
    }

    async fn http_side(
        settings: &Settings,
        backends: &Backends,
        (purchase_limits, order_cache, pipeline): (Arc<PurchaseLimits>, OrderCache, &Pipeline),
        (clock, metrics): (Arc<dyn Clock>, metrics_exporter_prometheus::PrometheusHandle),
        prebound: &Prebound,
    ) -> Result<HttpSide, StartError> {
        let Backends { store, bus, cache, .. } = backends;
        let node = backends.shared.then(|| format!("api-{}", uuid::Uuid::now_v7().simple()));
        let reconcile = match &node {
            Some(node) => {
                Reconcile::Shared { node: node.clone(), ttl: settings.redis.node_ttl.get() }
            }
            None => Reconcile::Reset,
        };
        let catalog = Arc::new(Catalog::load(store.clone(), cache.clone(), reconcile).await?);
        let (committer, handle) = Committer::new(
            store.clone(),
            cache.clone(),
            bus.clone(),
            Batching {
                max_orders: settings.commit.max_batch_orders,
                capacity: settings.commit.queue_capacity,
                linger: settings.commit.linger.get(),
                // Only a broker's cost is per message; the embedded bus hands events over in
                // memory.
                publish_linger: if backends.relay.is_some() {
                    settings.rabbitmq.publish_linger.get()
                } else {
                    Duration::ZERO
                },
            },
            (settings.http.max_queue_wait.get(), catalog.lease().clone()),
        );
        let idempotency = Arc::new(Idempotency::new(
            store.clone(),
            settings.idempotency.cache_entries,
            settings.idempotency_ttl.get(),
            clock.clone(),
        ));
        let intake = Arc::new(Intake::new(
            catalog.clone(),
            cache.clone(),
            handle,
            idempotency.clone(),
            purchase_limits.clone(),
            clock.clone(),
            bus.clone(),
            (settings.max_backlog, settings.http.max_queue_wait.get(), settings.http.max_in_flight),
        ));
        let deals = Arc::new(Deals::new(
            backends.deals.clone(),
            catalog.clone(),
            cache.clone(),
            purchase_limits.clone(),
            idempotency,
            bus.clone(),
            order_cache.clone(),
            clock.clone(),
        ));
        let proxies = networks("rate_limit.trusted_proxies", &settings.rate_limit.trusted_proxies)
            .map_err(StartError::Config)?;
        let pay_later = pipeline.pay_later.map(|_| Arc::new(PayLater::new(pipeline.clone())));
        let callbacks = match (&pay_later, &settings.payment.callback_secret) {
            (Some(service), Some(secret)) => Some(http::payments::Callbacks {
                service: service.clone(),
                secret: secret.clone(),
                clock: clock.clone(),
            }),
            _ => None,
        };
        let admin_token = settings.admin_token.as_ref().map(Secret::expose);
        let auth =
            Arc::new(Auth::new(&settings.auth, admin_token, clock).map_err(StartError::Config)?);
        let catalog_for_refresh = catalog.clone();
        let state = AppState::new(Shared {
            intake,
            catalog,
            store: store.clone(),
            metrics,
            bus: bus.clone(),
            order_cache,
            deals: deals.clone(),
            purchase_limits,
            auth,
            rate_limit: backends.rate_limiter.clone().map(|limiter| RateLimit { limiter, proxies }),
            callbacks,
            peers: http::dashboard::Peers::new(
                settings.dashboard.peers.iter().map(|url| url.expose().to_owned()).collect(),
            )
            .map_err(|e| {
                StartError::Config(format!("cannot build the dashboard's HTTP client: {e}"))
            })?,
            reports: pipeline.reports.clone(),
            order_admin: Arc::new(crate::adapters::workers::order_admin::OrderAdmin::new(
                pipeline.clone(),
            )),
        });
        let router = http::router(state, &settings.http);
        let listener = prebound.listener(settings.listen).await?;
        Ok(HttpSide {
            listener,
            router,
            committer,
            deals,
            catalog: catalog_for_refresh,
            node,
            pay_later,
        })
    }

    /// The bound address (useful with port 0); the configured one on a worker, which does
    /// not listen.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; failure would be an OS-level bug.
        self.http
            .as_ref()
            .and_then(|h| h.listener.local_addr().ok())
            .unwrap_or(self.settings.listen)
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
        let Application { http, metrics, pipeline, backends, role, settings } = self;
        let stop_workers = CancellationToken::new();
        let working = TaskTracker::new();
        match &role {
            Role::All => {
                workers::spawn_all(&pipeline, &settings.workers, None, &working, &stop_workers)
            }
            Role::Worker { queues } => {
                let only = (!queues.is_empty()).then_some(queues.as_slice());
                workers::spawn_all(&pipeline, &settings.workers, only, &working, &stop_workers);
            }
            Role::Api => {}
        }
        working.spawn(telemetry::watch_queues(
            pipeline.bus.clone(),
            Duration::from_secs(1),
            stop_workers.clone(),
        ));
        let Some(http) = http else {
            let stop_metrics = CancellationToken::new();
            let metrics_addr = match metrics {
                Some((listener, handle)) => {
                    let addr = listener.local_addr().ok();
                    let limits = EdgeLimits {
                        header_read_timeout: settings.http.header_read_timeout.get(),
                        max_connections: 64,
                    };
                    let router = http::metrics::worker_router(
                        handle,
                        pipeline.store.clone(),
                        pipeline.bus.clone(),
                    );
                    working.spawn(http::serve::serve(
                        listener,
                        router,
                        limits,
                        stop_metrics.clone().cancelled_owned(),
                    ));
                    addr
                }
                None => None,
            };
            working.close();
            let queues = match &role {
                Role::Worker { queues } if !queues.is_empty() => queues.join(","),
                _ => pipeline.bus.queues().join(","),
            };
            let threads = tokio::runtime::Handle::current().metrics().num_workers();
            match metrics_addr {
                Some(metrics) => {
                    tracing::info!(role = %role, queues = %queues, metrics = %metrics, threads, "ordermill worker is consuming.");
                }
                None => {
                    tracing::info!(role = %role, queues = %queues, threads, "ordermill worker is consuming.")
                }
            }
            shutdown.await;
            stop_metrics.cancel();
            tracing::info!("Letting consumers finish the messages in hand.");
            stop_workers.cancel();
            working.wait().await;
            return Ok(());
        };
        working.spawn(deals::scheduler::run(
            http.deals.clone(),
            settings.deals.check_interval.get(),
            stop_workers.clone(),
        ));
        working.spawn(
            pipeline
                .reports
                .clone()
                .sweep_every(settings.reports.sweep_interval.get(), stop_workers.clone()),
        );
        if let Some(pay_later) = &http.pay_later {
            working.spawn(crate::adapters::workers::pay_later::run(
                pay_later.clone(),
                settings.payment.check_interval.get(),
                stop_workers.clone(),
            ));
        }
        if let Some(node) = &http.node {
            let ttl = settings.redis.node_ttl.get();
            working.spawn(keep_alive(
                backends.cache.clone(),
                (node.clone(), http.catalog.lease().clone()),
                ttl,
                stop_workers.clone(),
            ));
        }
        if matches!(settings.cache, CacheUrl::Redis(_)) {
            let node = http
                .node
                .clone()
                .unwrap_or_else(|| format!("serve-{}", uuid::Uuid::now_v7().simple()));
            working.spawn(stock_repair::watch(
                backends.cache.clone(),
                backends.store.clone(),
                RepairSettings {
                    node,
                    every: settings.redis.check_interval.get(),
                    settle: settings.redis.rebuild_settle.get(),
                    return_grace: settings.redis.return_grace.get(),
                },
                stop_workers.clone(),
            ));
        }
        if backends.shared {
            working.spawn(crate::services::catalog::keep_fresh(
                http.catalog.clone(),
                pipeline.purchase_limits.clone(),
                settings.catalog.refresh.get(),
                stop_workers.clone(),
            ));
        }
        if let Some(sqlite) = &backends.embedded {
            working.spawn(crate::startup::maintenance::run_embedded(
                sqlite.clone(),
                (
                    settings.sqlite.processed_retention.get(),
                    settings.sqlite.maintenance_interval.get(),
                ),
                pipeline.clock.clone(),
                stop_workers.clone(),
            ));
        }
        if let Some(sql) = &backends.sql {
            working.spawn(crate::startup::maintenance::run(
                sql.clone(),
                settings.clone(),
                stop_workers.clone(),
            ));
        }
        if let Some((bus, outbox)) = &backends.relay {
            working.spawn(ordermill_bus::run_relay(
                bus.clone(),
                outbox.clone(),
                settings.rabbitmq.relay_sweep.get(),
                stop_workers.clone(),
            ));
        }
        working.close();
        let stop_committer = CancellationToken::new();
        let committing = TaskTracker::new();
        committing.spawn(http.committer.run(stop_committer.clone()));
        committing.close();

        let listen = http.listener.local_addr().unwrap_or(settings.listen);
        let threads = tokio::runtime::Handle::current().metrics().num_workers();
        tracing::info!(listen = %listen, role = %role, store = %settings.store, bus = %settings.bus, cache = %settings.cache, threads, "ordermill is serving.");
        let limits = EdgeLimits {
            header_read_timeout: settings.http.header_read_timeout.get(),
            max_connections: settings.http.max_connections,
        };
        let served = http::serve::serve(http.listener, http.router, limits, shutdown).await;
        tracing::info!("HTTP server stopped; flushing the committer.");
        stop_committer.cancel();
        committing.wait().await;
        tracing::info!("Committer flushed; letting consumers finish the messages in hand.");
        stop_workers.cancel();
        working.wait().await;
        if let Some(node) = &http.node
            && let Err(error) = backends.cache.leave(node).await
        {
            tracing::warn!(node = %node, error = %error, "Could not leave the shared hot-stock cache; the next node to start waits for this one's heartbeat to lapse before resetting counts.");
        }
        served
    }
}

/// Renews this api node's heartbeat on the shared hot-stock cache every third of `ttl`, so the
/// others know a reservation of its may be in flight, and keeps its [`Lease`] current.
async fn keep_alive(
    cache: Arc<dyn ordermill_core::ports::StockCache>,
    (node, lease): (String, Arc<Lease>),
    ttl: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(ttl / 3) => {}
        }
        let sent_at = std::time::Instant::now();
        let renewed = cache.heartbeat(&node, ttl).await;
        if renewed.is_ok() && lease.renewed(sent_at, ttl) == Renewal::AfterLapse {
            tracing::warn!(node = %node, "This api node's lease on the shared hot stock had lapsed (no heartbeat reached Redis within redis.node_ttl): it reserved and wrote nothing meanwhile and sells again now.");
        }
        match renewed {
            Ok(0) => {}
            Ok(expired) => {
                tracing::warn!(node = %node, expired, "An api node's lease on the shared hot stock ran out (killed, or cut off); the counts are rebuilt from the store to free what it had reserved.");
            }
            Err(error) => {
                tracing::warn!(node = %node, error = %error, "Could not renew this node's heartbeat on the shared hot-stock cache.");
            }
        }
    }
}
