//! `spawn_app()`: a real ordermill on port 0 with its own temp data dir.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; a panic is the failure report

pub mod faulty_store;
pub mod reports;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ordermill_server::{Application, Settings};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs scenario `$name(engines)` once per engine set, as `$name::embedded`,
/// `$name::scaled_out` (PostgreSQL, RabbitMQ, Redis) and `$name::mysql` (MySQL, RabbitMQ,
/// Redis).
#[allow(unused_macros)] // each test binary includes this module; not all run both
macro_rules! on_both_engines {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(super::Engines::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn scaled_out() {
                let Some(engines) = super::Engines::scaled() else { return };
                engines.prepare().await;
                super::$name(engines.clone()).await;
                engines.clean_up().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                let Some(engines) = super::Engines::scaled_mysql() else { return };
                engines.prepare().await;
                super::$name(engines.clone()).await;
                engines.clean_up().await;
            }
        }
    )+};
}

/// Which engines a test app runs on.
#[derive(Debug, Clone)]
pub enum Engines {
    /// SQLite in the app's temp dir, the in-process bus and cache.
    Embedded,
    /// The real PostgreSQL, RabbitMQ and Redis, isolated by a schema and name prefix of the
    /// test's own.
    ScaledOut(Scaled),
}

/// Where a scaled-out test app's data lives.
#[derive(Debug, Clone)]
pub struct Scaled {
    pub postgres: String,
    /// When set, the store is this MySQL server (a database named [`Scaled::name`]) instead
    /// of PostgreSQL.
    pub mysql: Option<String>,
    pub amqp: String,
    pub redis: String,
    /// Schema, queue/exchange prefix and Redis key prefix.
    pub name: String,
    /// Apps the test dropped without stopping: [`Engines::clean_up`] stops them first, or
    /// one still running would declare its queues again after they were deleted.
    running: Arc<Mutex<Vec<Running>>>,
}

type Running = (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>);

impl Engines {
    /// The scaled-out engines, or `None` (printing why) when their URLs are unset.
    pub fn scaled() -> Option<Engines> {
        use ordermill_core::test_support::service_url;
        let postgres =
            service_url("ORDERMILL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")?;
        let amqp = service_url("ORDERMILL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")?;
        let redis = service_url("ORDERMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379")?;
        let name = format!("om_t_{}", uuid::Uuid::now_v7().simple());
        Some(Engines::ScaledOut(Scaled {
            postgres,
            mysql: None,
            amqp,
            redis,
            name,
            running: Arc::default(),
        }))
    }

    /// The scaled-out engines with MySQL as the store, or `None` (printing why) when their
    /// URLs are unset.
    pub fn scaled_mysql() -> Option<Engines> {
        let mysql = ordermill_core::test_support::service_url(
            "ORDERMILL_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        )?;
        match Engines::scaled()? {
            Engines::ScaledOut(s) => Some(Engines::ScaledOut(Scaled { mysql: Some(mysql), ..s })),
            Engines::Embedded => None,
        }
    }

    /// The shared store of these engines, opened with a small pool.
    async fn sql_store(&self) -> ordermill_server::startup::sql_store::SqlStore {
        let mut settings = Settings::default();
        self.apply(&mut settings);
        ordermill_server::startup::sql_store::SqlStore::open(&settings, Some(2)).await.unwrap()
    }

    fn apply(&self, settings: &mut Settings) {
        if let Engines::ScaledOut(s) = self {
            match &s.mysql {
                Some(mysql) => {
                    settings.store = mysql.parse().expect("a mysql:// URL");
                    settings.mysql.database = Some(s.name.clone());
                    settings.mysql.pool_size = 8;
                }
                None => {
                    settings.store = s.postgres.parse().expect("a postgres:// URL");
                    settings.postgres.schema = Some(s.name.clone());
                    settings.postgres.pool_size = 8;
                }
            }
            settings.bus = s.amqp.parse().expect("an amqp:// URL");
            settings.rabbitmq.queue_prefix = format!("{}.", s.name);
            settings.rabbitmq.exchange = format!("{}.orders", s.name);
            settings.rabbitmq.dead_letter_exchange = format!("{}.dlx", s.name);
            settings.cache = s.redis.parse().expect("a redis:// URL");
            settings.redis.key_prefix = s.name.clone();
            settings.rabbitmq.relay_sweep = ordermill_core::HumanDuration::from_millis(200);
        }
    }

    /// Creates the schema's tables (scaled out); the SQLite store does so itself.
    pub async fn prepare(&self) {
        if let Engines::ScaledOut(_) = self {
            let store = self.sql_store().await;
            store.migrate().await.unwrap();
            store.close().await;
        }
    }

    /// Drops what a scaled-out test left on the shared engines.
    pub async fn clean_up(&self) {
        let Engines::ScaledOut(s) = self else { return };
        let running: Vec<Running> = std::mem::take(&mut *s.running.lock().unwrap());
        for (stop, serving) in running {
            let _ = stop.send(());
            let _ = serving.await;
        }
        let store = self.sql_store().await;
        let mut settings = Settings::default();
        self.apply(&mut settings);
        let rabbit = ordermill_bus::RabbitSettings { url: s.amqp.clone(), ..settings.rabbitmq };
        if let Ok(bus) =
            ordermill_bus::RabbitBus::start(rabbit, settings.topology.clone(), store.ports().outbox)
                .await
        {
            let _ = bus.delete_topology().await;
        }
        store.close().await;
        // The name is the test's own uuid-based identifier, never outside input.
        match &s.mysql {
            Some(mysql) => {
                use sqlx::Connection;
                let mut conn = sqlx::MySqlConnection::connect(mysql).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{}`", s.name)))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            None => {
                let pool = sqlx::PgPool::connect(&s.postgres).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    s.name
                )))
                .execute(&pool)
                .await
                .unwrap();
                pool.close().await;
            }
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub engines: Engines,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<std::io::Result<()>>>,
}

/// The merchant token every test app accepts; [`TestApp::client`] sends it on every request
/// (tests of the credentials themselves use a client of their own).
pub const MERCHANT_TOKEN: &str = "test-merchant-token";

pub async fn spawn_app() -> TestApp {
    spawn_app_in(tempfile::tempdir().unwrap(), |_| {}).await
}

pub async fn spawn_app_in(dir: TempDir, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_clocked(dir, std::sync::Arc::new(ordermill_core::SystemClock), tweak).await
}

/// [`spawn_app_in`] on a clock the test controls.
pub async fn spawn_app_clocked(
    dir: TempDir,
    clock: std::sync::Arc<dyn ordermill_core::Clock>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_on(Engines::Embedded, dir, clock, tweak).await
}

/// A test app on `engines` (prepare them once first with [`Engines::prepare`]).
pub async fn spawn_app_on(
    engines: Engines,
    dir: TempDir,
    clock: std::sync::Arc<dyn ordermill_core::Clock>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    settings.auth.merchant_tokens =
        vec![ordermill_server::startup::settings::Secret::new(MERCHANT_TOKEN)];
    // Debug builds on a loaded CI machine can queue a commit past the 100 ms default; these
    // tests are about correctness, not shedding (tests/edge.rs covers that).
    settings.http.max_queue_wait = ordermill_core::HumanDuration::from_secs(10);
    engines.apply(&mut settings);
    tweak(&mut settings);
    let app = Application::build_with_clock(settings, clock).await.expect("app builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let mut merchant = reqwest::header::HeaderMap::new();
    merchant.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {MERCHANT_TOKEN}").parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .default_headers(merchant)
        .build()
        .unwrap();
    TestApp { addr, client, dir, engines, stop: Some(stop), serving: Some(serving) }
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
        Reply { status, body, headers }
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(self.client.post(self.url(path)).body(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.client.get(self.url(path)).send().await.unwrap().text().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn put_product(&self, sku: &str, price: &str, stock: i64) -> Reply {
        let body = json!({"name": format!("Product {sku}"), "price": price, "stock": stock});
        self.send(self.client.put(self.url(&format!("/api/products/{sku}"))).json(&body)).await
    }

    pub async fn order(&self, customer: &str, items: &[(&str, i64)]) -> Reply {
        self.post("/api/orders", &order_body(customer, items)).await
    }

    /// Polls `GET /api/orders/{id}` until its status is `status` (10 s at most).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let order = self.get(&format!("/api/orders/{id}")).await.body;
            if order["status"] == status {
                return order;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {id} is {} after 10 s, not {status}",
                order["status"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Counts rows in the app's database, whichever engine holds it.
    pub async fn count_rows(&self, sql: &str) -> i64 {
        match &self.engines {
            Engines::Embedded => self.count(sql),
            Engines::ScaledOut(Scaled { mysql: Some(mysql), name, .. }) => {
                use sqlx::Connection;
                let mut conn = sqlx::MySqlConnection::connect(mysql).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("USE `{name}`")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.unwrap()
            }
            Engines::ScaledOut(s) => {
                let pool = sqlx::PgPool::connect(&s.postgres).await.unwrap();
                let mut conn = pool.acquire().await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path TO {}", s.name)))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                drop(conn);
                pool.close().await;
                n
            }
        }
    }

    /// Counts rows in the app's SQLite database.
    pub fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.dir.path().join("ordermill.db")).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub async fn available(&self, sku: &str) -> i64 {
        self.product(sku).await["stock_available"].as_i64().unwrap()
    }

    pub async fn product(&self, sku: &str) -> Value {
        let reply = self.get(&format!("/api/products/{sku}")).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body
    }

    /// Stops gracefully (in-flight requests finish, the committer flushes); returns the data dir.
    pub async fn stop(mut self) -> TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Dropped unstopped: on the shared engines, hand it to clean_up to stop; embedded, the
        // dropped sender stops it as before.
        if let (Engines::ScaledOut(s), Some(stop), Some(serving)) =
            (&self.engines, self.stop.take(), self.serving.take())
        {
            s.running.lock().unwrap_or_else(|p| p.into_inner()).push((stop, serving));
        }
    }
}

/// Polls until `check` holds (10 s at most); `what` says what was awaited.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn order_body(customer: &str, items: &[(&str, i64)]) -> Value {
    let items: Vec<Value> =
        items.iter().map(|(sku, qty)| json!({"sku": sku, "quantity": qty})).collect();
    json!({"customer_id": customer, "items": items})
}

/// One order of a batch body: `quantity` of `sku` for `customer`, carrying `key` as its
/// `idempotency_key`.
pub fn keyed_batch_order(customer: &str, sku: &str, quantity: i64, key: &str) -> Value {
    let mut order = order_body(customer, &[(sku, quantity)]);
    order["idempotency_key"] = json!(key);
    order
}
