//! A scaled-out deployment for the binary's tests: `ordermill migrate`, `ordermill api` and
//! `ordermill worker` processes on the real PostgreSQL (or MySQL), RabbitMQ and Redis, every
//! name unique to the test (schema or database, queue prefix, exchanges, cache prefix), an
//! order load, and the ledger read back from the database and Redis to check that each effect
//! happened exactly once.
//!
//! Every process is killed when its handle drops, and the deployment drops its schema, queues,
//! exchanges and Redis keys when it drops (after the processes, which the test declares later),
//! so a failing test cleans up too. Process logs go to files in a temp dir that is kept, and
//! named, when the test fails (or always, with `ORDERMILL_TEST_KEEP_LOGS=1`).

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; a panic is the failure report

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ordermill_core::test_support::service_url;
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

/// Where the three services are.
#[derive(Debug, Clone)]
pub struct Services {
    pub postgres: String,
    /// When set, the store is this MySQL server (a database named after the deployment)
    /// instead of PostgreSQL.
    pub mysql: Option<String>,
    pub amqp: String,
    pub redis: String,
}

impl Services {
    /// The services' URLs from `ORDERMILL_TEST_*_URL`; `None` (with the reason printed) when
    /// one is unset, a panic instead under `ORDERMILL_TEST_REQUIRE_SERVICES=1`.
    pub fn from_env() -> Option<Services> {
        let postgres =
            service_url("ORDERMILL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")?;
        let amqp = service_url("ORDERMILL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")?;
        let redis = service_url("ORDERMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379")?;
        Some(Services { postgres, mysql: None, amqp, redis })
    }

    /// [`Services::from_env`] with MySQL (`ORDERMILL_TEST_MYSQL_URL`) as the store.
    pub fn from_env_mysql() -> Option<Services> {
        let mysql = service_url("ORDERMILL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")?;
        Some(Services { mysql: Some(mysql), ..Services::from_env()? })
    }
}

/// A connection to the deployment's database, whichever engine holds it.
pub enum Db {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
}

impl Db {
    /// Runs a query returning rows of `T`, written the same for both engines.
    async fn rows<T>(&mut self, sql: &'static str) -> Vec<T>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>,
    {
        match self {
            Db::Postgres(db) => sqlx::query_as(sql).fetch_all(db).await.unwrap(),
            Db::Mysql(db) => sqlx::query_as(sql).fetch_all(db).await.unwrap(),
        }
    }

    async fn count(&mut self, sql: &'static str) -> i64 {
        let (n,): (i64,) = self.rows(sql).await.remove(0);
        n
    }

    /// Every order: id, status, items as JSON text.
    async fn orders(&mut self) -> Vec<(String, String, String)> {
        let rows: Vec<(Uuid, String, String)> = match self {
            Db::Postgres(_) => self.rows("SELECT id, status, items::text FROM orders").await,
            Db::Mysql(_) => self.rows("SELECT id, status, CAST(items AS CHAR) FROM orders").await,
        };
        rows.into_iter().map(|(id, status, items)| (id.to_string(), status, items)).collect()
    }
}

/// One deployment's names and its log dir; cleans the services up on drop.
pub struct Deployment {
    pub services: Services,
    /// Unique per test: the PostgreSQL schema, the Redis prefix, the start of every broker name.
    pub id: String,
    logs: Option<tempfile::TempDir>,
}

impl Deployment {
    /// New names (`om_<uuid>`) and a log dir.
    pub fn new(services: Services) -> Deployment {
        let id = format!("om_{}", uuid::Uuid::now_v7().simple());
        let logs = tempfile::Builder::new().prefix("ordermill-scaled-").tempdir().unwrap();
        Deployment { services, id, logs: Some(logs) }
    }

    /// The log dir (process logs, nginx's files).
    pub fn dir(&self) -> &Path {
        self.logs.as_ref().unwrap().path()
    }

    /// The queue prefix on the broker (`<id>.`).
    pub fn queue_prefix(&self) -> String {
        format!("{}.", self.id)
    }

    /// The environment every process of this deployment gets.
    pub fn env(&self) -> Vec<(String, String)> {
        let id = &self.id;
        let store = self.services.mysql.clone().unwrap_or_else(|| self.services.postgres.clone());
        [
            ("ORDERMILL_STORE", store),
            ("ORDERMILL_MYSQL__DATABASE", id.clone()),
            ("ORDERMILL_BUS", self.services.amqp.clone()),
            ("ORDERMILL_CACHE", self.services.redis.clone()),
            ("ORDERMILL_POSTGRES__SCHEMA", id.clone()),
            ("ORDERMILL_RABBITMQ__QUEUE_PREFIX", self.queue_prefix()),
            ("ORDERMILL_RABBITMQ__EXCHANGE", format!("{id}.orders")),
            ("ORDERMILL_RABBITMQ__DEAD_LETTER_EXCHANGE", format!("{id}.dlx")),
            ("ORDERMILL_REDIS__KEY_PREFIX", id.clone()),
            // A killed api node stops counting as live on the shared cache this soon.
            ("ORDERMILL_REDIS__NODE_TTL", "1500ms".to_owned()),
            // Lost stock counts are noticed and rebuilt this soon.
            ("ORDERMILL_REDIS__CHECK_INTERVAL", "200ms".to_owned()),
            ("ORDERMILL_REDIS__REBUILD_SETTLE", "500ms".to_owned()),
            ("ORDERMILL_MERCHANT_TOKEN", super::MERCHANT_TOKEN.to_owned()),
            ("ORDERMILL_ADMIN_TOKEN", super::ADMIN_TOKEN.to_owned()),
            // Correctness under load, not shedding: a loaded debug build may queue longer.
            ("ORDERMILL_HTTP__MAX_QUEUE_WAIT", "10s".to_owned()),
            // As deploy/ordermill-scaled.toml runs: kill, restart and loss tests cover
            // batches that waited for company.
            ("ORDERMILL_COMMIT__LINGER", "2ms".to_owned()),
            // ...and consumer batches that waited for more deliveries.
            ("ORDERMILL_WORKERS__LINGER", "10ms".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `ordermill <args>` on this deployment's engines, in its log dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordermill"));
        command
            .args(args)
            // No ordermill.toml from the test's working directory.
            .current_dir(self.dir())
            .envs(self.env());
        command
    }

    /// A migrated deployment with one `ordermill api` and one `ordermill worker`, selling
    /// `stock` units of `sku`. Bind the three in this order (`let (deployment, api, worker)`):
    /// the processes then die before their schema, queues and keys go.
    pub async fn one_api_one_worker(
        services: Services,
        sku: &str,
        stock: i64,
    ) -> (Self, Proc, Proc) {
        let deployment = Deployment::new(services);
        deployment.migrate();
        let api = deployment.api("api").await;
        let worker = deployment.worker("worker");
        assert!(put_product(&api.url(""), sku, stock).await.is_success());
        (deployment, api, worker)
    }

    /// Runs `ordermill <args>` on this deployment's engines to its end.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Runs `ordermill migrate` and asserts it succeeded.
    pub fn migrate(&self) {
        let out = self.command(&["migrate"]).output().unwrap();
        assert!(
            out.status.success(),
            "ordermill migrate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `ordermill api` on a free port and waits until it serves and `/readyz` is 200.
    pub async fn api(&self, name: &str) -> Proc {
        self.api_with(name, &[]).await
    }

    /// [`Deployment::api`] with more environment (e.g. report settings).
    pub async fn api_with(&self, name: &str, env: &[(&str, &str)]) -> Proc {
        let mut command = self.command(&["api", "--listen", "127.0.0.1:0", "--log-format", "json"]);
        command.envs(env.iter().copied());
        let proc = Proc::spawn(name, &mut command, self.dir(), "ordermill is serving.");
        let addr = proc.addr.unwrap();
        wait_ready(&format!("http://{addr}/readyz"), Duration::from_secs(30)).await;
        proc
    }

    /// Starts `ordermill api` with more environment and returns once it says it answers probes
    /// while it waits for an engine (its `addr` is that port), without waiting for it to serve.
    pub fn api_waiting(&self, name: &str, env: &[(&str, &str)]) -> Proc {
        let mut command = self.command(&["api", "--listen", "127.0.0.1:0", "--log-format", "json"]);
        command.envs(env.iter().copied());
        Proc::spawn(
            name,
            &mut command,
            self.dir(),
            "Answering probes while waiting for the engines.",
        )
    }

    /// Starts `ordermill api` on a machine whose wall clock reads `offset` (libfaketime's
    /// `-f` syntax, e.g. `+2h`) away from the real one, and waits until it is ready.
    pub async fn api_with_clock_off(&self, name: &str, offset: &str) -> Proc {
        // libfaketime preloaded into ordermill itself, not through the `faketime` wrapper: the
        // wrapper forks, so killing it (as Proc's drop does) left the node running, orphaned,
        // after the test.
        let library = super::libfaketime();
        let mut command = self.command(&["api", "--listen", "127.0.0.1:0", "--log-format", "json"]);
        command
            .env("LD_PRELOAD", library)
            .env("FAKETIME", offset)
            // Only the wall clock is off; timers keep running at the real pace.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        let proc = Proc::spawn(name, &mut command, self.dir(), "ordermill is serving.");
        let addr = proc.addr.unwrap();
        wait_ready(&format!("http://{addr}/readyz"), Duration::from_secs(30)).await;
        proc
    }

    /// Starts `ordermill worker` (every queue, `/metrics` on a free port: its `addr`) and
    /// waits until it consumes.
    pub fn worker(&self, name: &str) -> Proc {
        self.worker_with(name, &[])
    }

    /// [`Deployment::worker`] with more environment (e.g. a payment gateway to call).
    pub fn worker_with(&self, name: &str, env: &[(&str, &str)]) -> Proc {
        let mut command =
            self.command(&["worker", "--log-format", "json", "--metrics-listen", "127.0.0.1:0"]);
        command.envs(env.iter().copied());
        Proc::spawn(name, &mut command, self.dir(), "ordermill worker is consuming.")
    }

    /// What every fault test checks once its load stopped: only 201 or 503 answers, one order
    /// per key, every order answered 201 confirmed (within 60 s) in PostgreSQL too, every effect
    /// once with stock and the shared count agreeing (`sku` started with `stock` units), and no
    /// dead letter (an outage spends no attempt).
    pub async fn assert_nothing_lost(
        &self,
        base: &str,
        report: &LoadReport,
        sku: &str,
        stock: i64,
    ) {
        let unexpected: Vec<_> =
            report.statuses.keys().filter(|s| ![201, 503].contains(*s)).collect();
        assert!(unexpected.is_empty(), "unexpected answers {unexpected:?}: {:?}", report.samples);
        let distinct: HashSet<&String> = report.accepted.iter().collect();
        assert_eq!(distinct.len(), report.accepted.len(), "every key got an order of its own");
        let not_confirmed = await_confirmed(base, &report.accepted, Duration::from_secs(60)).await;
        assert!(
            not_confirmed.is_empty(),
            "{} of {} orders answered 201 are not confirmed 60 s after the load; e.g. {:?}",
            not_confirmed.len(),
            report.accepted.len(),
            &not_confirmed[..not_confirmed.len().min(5)]
        );
        let ledger = self.settled(Duration::from_secs(30)).await;
        for id in &report.accepted {
            assert!(ledger.confirmed_ids.contains(id), "order {id} confirmed in PostgreSQL");
        }
        assert!(ledger.orders >= report.accepted.len() as i64);
        ledger.assert_exactly_once(&[(sku, stock)], 0);
        assert_eq!(self.dead_letters(), 0, "no dead letters: an outage spends no attempt");
    }

    /// A connection to the deployment's schema (PostgreSQL) or database (MySQL).
    pub async fn db(&self) -> Db {
        if let Some(mysql) = &self.services.mysql {
            let mut db = MySqlConnection::connect(mysql).await.unwrap();
            let set = format!("USE `{}`", self.id);
            sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&mut db).await.unwrap();
            return Db::Mysql(db);
        }
        let mut db = PgConnection::connect(&self.services.postgres).await.unwrap();
        let set = format!("SET search_path TO \"{}\"", self.id);
        sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&mut db).await.unwrap();
        Db::Postgres(db)
    }

    /// What the database and Redis say now.
    pub async fn ledger(&self, db: &mut Db) -> Ledger {
        let mut by_status = HashMap::new();
        let mut confirmed_ids = HashSet::new();
        let mut confirmed_units: HashMap<String, i64> = HashMap::new();
        let rows = db.orders().await;
        let orders = rows.len() as i64;
        for (id, status, items) in rows {
            if status == "confirmed" {
                for line in serde_json::from_str::<Vec<Value>>(&items).unwrap() {
                    *confirmed_units
                        .entry(line["sku"].as_str().unwrap().to_owned())
                        .or_default() += line["quantity"].as_i64().unwrap();
                }
                confirmed_ids.insert(id);
            }
            *by_status.entry(status).or_insert(0) += 1;
        }
        let products: Vec<(String, i64, i64)> =
            db.rows("SELECT sku, stock, reserved FROM products").await;
        let processed: Vec<(String, i64)> =
            db.rows("SELECT consumer, count(*) FROM processed_events GROUP BY consumer").await;
        let payments = db.count("SELECT count(*) FROM payments").await;
        let paid_confirmed = db
            .count(
                "SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id \
                 WHERE o.status = 'confirmed'",
            )
            .await;
        let outbox = db.count("SELECT count(*) FROM outbox").await;
        let mut available = HashMap::new();
        let mut redis = self.redis().await;
        for (sku, _, _) in &products {
            let key = format!("{{{}}}:stock:{sku}", self.id);
            let count: Option<i64> =
                redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
            available.insert(sku.clone(), count);
        }
        Ledger {
            orders,
            by_status,
            confirmed_ids,
            confirmed_units,
            products: products.into_iter().map(|(s, stock, held)| (s, (stock, held))).collect(),
            payments,
            paid_confirmed,
            processed: processed.into_iter().collect(),
            outbox,
            available,
        }
    }

    /// Deletes every key of this deployment from Redis at once (one DEL, atomic), as a Redis
    /// restart without persistence or a FLUSHDB would, without touching other tests' keys.
    /// Returns how many keys went.
    pub async fn lose_redis_data(&self) -> usize {
        let mut redis = self.redis().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}}}:*", self.id))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(!keys.is_empty(), "the deployment has keys in Redis to lose");
        let deleted: usize = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
        deleted
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.services.redis.as_str()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// Waits until every stored order is confirmed and every consumer has recorded each of
    /// its events (or the deadline passes), then returns the ledger for the assertions.
    pub async fn settled(&self, deadline: Duration) -> Ledger {
        let mut db = self.db().await;
        let until = Instant::now() + deadline;
        loop {
            let ledger = self.ledger(&mut db).await;
            if ledger.is_settled() || Instant::now() > until {
                return ledger;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Drops the schema, the queues and exchanges, and the Redis keys (done on drop too).
    pub async fn clean_up(&self) {
        Teardown { services: self.services.clone(), id: self.id.clone() }.run().await;
    }

    /// This deployment's queues as the broker sees them (name, ready, unacked, consumers),
    /// one per line: what a failure report needs to tell a stalled consumer from a slow one.
    pub fn queue_report(&self) -> String {
        let prefix = self.queue_prefix();
        let listed = Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Messages waiting in this deployment's dead-letter queues.
    pub fn dead_letters(&self) -> u64 {
        let prefix = self.queue_prefix();
        let listed = Command::new("rabbitmqctl")
            .args(["list_queues", "-q", "--no-table-headers", "name", "messages"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (name, count) = (fields.next()?, fields.next()?);
                (name.starts_with(&prefix) && name.ends_with(".dead"))
                    .then(|| count.parse::<u64>().ok())?
            })
            .sum()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // An async clean-up from a destructor: a runtime of its own on a thread of its own
        // (the test's runtime may be the one running this drop).
        let teardown = Teardown { services: self.services.clone(), id: self.id.clone() };
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(teardown.run());
            }
        })
        .join();
        if done.is_err() {
            eprintln!("clean-up of {} panicked", self.id);
        }
        let keep = std::env::var_os("ORDERMILL_TEST_KEEP_LOGS").is_some();
        if let Some(logs) = self.logs.take()
            && (keep || std::thread::panicking())
        {
            eprintln!("process logs kept in {}", logs.keep().display());
        }
    }
}

/// What a deployment leaves on the services, to delete.
struct Teardown {
    services: Services,
    id: String,
}

impl Teardown {
    /// Drops the schema, the queues and exchanges, and the Redis keys. Best effort: reports
    /// what it could not delete.
    async fn run(&self) {
        let id = &self.id;
        if let Some(mysql) = &self.services.mysql {
            match MySqlConnection::connect(mysql).await {
                Ok(mut db) => {
                    let drop = format!("DROP DATABASE IF EXISTS `{id}`");
                    if let Err(error) =
                        sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut db).await
                    {
                        eprintln!("clean-up: cannot drop database {id}: {error}");
                    }
                }
                Err(error) => eprintln!("clean-up: cannot reach MySQL: {error}"),
            }
        }
        match PgConnection::connect(&self.services.postgres).await {
            Ok(mut db) => {
                let drop = format!("DROP SCHEMA IF EXISTS \"{id}\" CASCADE");
                if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut db).await
                {
                    eprintln!("clean-up: cannot drop schema {id}: {error}");
                }
            }
            Err(error) => eprintln!("clean-up: cannot reach PostgreSQL: {error}"),
        }
        if let Err(error) = self.delete_broker_objects().await {
            eprintln!("clean-up: cannot delete the broker objects of {id}: {error}");
        }
        match redis::Client::open(self.services.redis.as_str()) {
            Ok(client) => match client.get_multiplexed_async_connection().await {
                Ok(mut redis) => {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{{{id}}}:*"))
                        .query_async(&mut redis)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<i64, _> =
                            redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
                    }
                }
                Err(error) => eprintln!("clean-up: cannot reach Redis: {error}"),
            },
            Err(error) => eprintln!("clean-up: bad Redis URL: {error}"),
        }
    }

    // Queue names come from the broker (`rabbitmqctl list_queues`, one call) so a change in
    // the bus's naming (topology.rs: <prefix><queue>, .dead, .retry.<ms>) cannot leave any
    // behind; deleting them goes over AMQP, which is a round trip each instead of a
    // rabbitmqctl start each.
    async fn delete_broker_objects(&self) -> Result<(), String> {
        let prefix = format!("{}.", self.id);
        let listed = Command::new("rabbitmqctl")
            .args(["list_queues", "-q", "--no-table-headers", "name"])
            .output()
            .map_err(|e| format!("rabbitmqctl: {e}"))?;
        let queues: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(str::trim)
            .filter(|name| name.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        let connection =
            lapin::Connection::connect(&self.services.amqp, lapin::ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string())?;
        let channel = connection.create_channel().await.map_err(|e| e.to_string())?;
        for queue in &queues {
            channel
                .queue_delete(queue.as_str().into(), lapin::options::QueueDeleteOptions::default())
                .await
                .map_err(|e| format!("{queue}: {e}"))?;
        }
        for exchange in [format!("{}.orders", self.id), format!("{}.dlx", self.id)] {
            channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await
                .map_err(|e| format!("{exchange}: {e}"))?;
        }
        let _ = connection.close(200, "test done".into()).await;
        Ok(())
    }
}

/// A database restart under order load, on one `ordermill api` and one `ordermill worker`:
/// `restart` (which stops the database and starts it again, leaving it running however it
/// ends) runs at a seeded moment while 4 clients order `sku`; then the load goes on until
/// selling resumes and 2 s more, and [`Deployment::assert_nothing_lost`] checks the outcome.
/// Neither ordermill process is restarted.
pub async fn database_restart_under_load(
    services: Services,
    sku: &str,
    stock: i64,
    restart: impl FnOnce(),
) {
    let (deployment, mut api, mut worker) =
        Deployment::one_api_one_worker(services, sku, stock).await;
    let base = api.url("");
    let load = Load::start(&base, 4, sku, &deployment.id);
    let (seed, before) = load.until_a_seeded_moment().await;
    let started = Instant::now();
    restart();
    let restarted_in = started.elapsed();
    load.assert_selling_again(seed).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    eprintln!(
        "seed {seed}: {before} accepted before the restart ({restarted_in:.1?}), {} in all; \
         answers {:?}; {} without an answer; samples {:?}",
        report.accepted.len(),
        report.statuses,
        report.transport_errors,
        report.samples
    );
    deployment.assert_nothing_lost(&base, &report, sku, stock).await;
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}

/// What the database and Redis say.
#[derive(Debug)]
pub struct Ledger {
    pub orders: i64,
    pub by_status: HashMap<String, i64>,
    pub confirmed_ids: HashSet<String>,
    /// Units of confirmed orders, per SKU.
    pub confirmed_units: HashMap<String, i64>,
    /// (stock, reserved) per SKU.
    pub products: HashMap<String, (i64, i64)>,
    pub payments: i64,
    /// Payment rows whose order is confirmed.
    pub paid_confirmed: i64,
    /// `processed_events` rows per consumer.
    pub processed: HashMap<String, i64>,
    pub outbox: i64,
    /// The Redis hot-stock count per SKU (`None`: no key).
    pub available: HashMap<String, Option<i64>>,
}

impl Ledger {
    fn confirmed(&self) -> i64 {
        self.by_status.get("confirmed").copied().unwrap_or(0)
    }

    /// Units the store says are available (`stock − reserved`) that Redis does not offer:
    /// positive when units are stranded (held by a reservation nobody will commit or release),
    /// negative when Redis would oversell.
    pub fn stranded(&self, sku: &str) -> i64 {
        let (stock, reserved) = self.products[sku];
        stock - reserved - self.available[sku].unwrap_or(0)
    }

    fn processed_by(&self, consumer: &str) -> i64 {
        self.processed.get(consumer).copied().unwrap_or(0)
    }

    /// Everything done that the simulated gateway (which accepts every customer the load
    /// uses) leads to: all orders confirmed, every consumer finished, the outbox empty.
    pub fn is_settled(&self) -> bool {
        self.confirmed() == self.orders
            && self.outbox == 0
            && self.processed_by("inventory") == self.orders
            && self.processed_by("payment") == self.orders
            && self.processed_by("notify") == 2 * self.orders
            && self.products.values().all(|(_, reserved)| *reserved == 0)
    }

    /// Every order went through the pipeline exactly once and stock agrees with the orders,
    /// in PostgreSQL and in Redis. `processed_events` has (consumer, event) as its primary key,
    /// so a duplicate row cannot exist; a double effect would show as a count or a stock
    /// figure off instead.
    ///
    /// Redis must never offer more than `stock − reserved` (an oversell), and may offer up to
    /// `may_strand` units fewer: what requests in flight on a SIGKILLed api node had reserved
    /// in Redis and never committed (pass 0 when no api node was killed).
    pub fn assert_exactly_once(&self, initial: &[(&str, i64)], may_strand: i64) {
        let confirmed = self.confirmed();
        assert_eq!(
            confirmed, self.orders,
            "every stored order confirmed (the simulated gateway accepts all): {:?}",
            self.by_status
        );
        assert_eq!(self.outbox, 0, "every event published");
        assert_eq!(self.payments, confirmed, "one payments row per confirmed order");
        assert_eq!(self.paid_confirmed, confirmed, "each confirmed order has its payments row");
        assert_eq!(
            self.processed_by("inventory"),
            self.orders,
            "inventory recorded each order.created once: {:?}",
            self.processed
        );
        assert_eq!(
            self.processed_by("payment"),
            self.orders,
            "payment recorded each order.created once: {:?}",
            self.processed
        );
        assert_eq!(
            self.processed_by("notify"),
            2 * self.orders,
            "notify recorded created + confirmed per order: {:?}",
            self.processed
        );
        for (sku, initial) in initial {
            let sold = self.confirmed_units.get(*sku).copied().unwrap_or(0);
            let (stock, reserved) = self.products[*sku];
            assert_eq!(
                stock,
                initial - sold,
                "{sku}: stock of record deducted exactly once per confirmed unit \
                 ({initial} initial, {sold} sold)"
            );
            assert_eq!(reserved, 0, "{sku}: nothing left held");
            let stranded = self.stranded(sku);
            assert!(
                (0..=may_strand).contains(&stranded),
                "{sku}: Redis offers {:?} units, the store stock − reserved = {}: {} stranded, \
                 allowed 0..={may_strand} (negative would be an oversell)",
                self.available[*sku],
                stock - reserved,
                stranded
            );
        }
    }
}

/// A child process of the test, killed when dropped. Its stdout and stderr go to
/// `<dir>/<name>.log`.
pub struct Proc {
    pub name: String,
    pub child: Child,
    /// Where it listens (an api node; a worker's `/metrics`).
    pub addr: Option<SocketAddr>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `command` and waits for the JSON log line whose message is `ready` (its
    /// `listen` field, or a worker's `metrics`, is the address).
    fn spawn(name: &str, command: &mut Command, dir: &Path, ready: &'static str) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let stderr = File::create(dir.join(format!("{name}.stderr"))).unwrap();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("the ordermill binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut file = File::create(&log).unwrap();
        // Reads every line into the log file (the process never blocks on a full pipe) and
        // reports the ready line.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                if tx.is_some()
                    && let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"] == ready
                {
                    let _ = tx.take().unwrap().send(entry);
                }
            }
        });
        let entry = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|error| {
            let _ = child.kill();
            panic!("{name}: no {ready:?} log line ({error}); see {}", log.display())
        });
        let addr =
            entry["listen"].as_str().or(entry["metrics"].as_str()).map(|a| a.parse().unwrap());
        Proc { name: name.to_owned(), child, addr, log }
    }

    /// `http://ADDR{path}` of an api node.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.unwrap())
    }

    /// SIGTERM, and wait for a clean exit (in-flight work drained).
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}; see {}", self.name, self.log.display());
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) and fails the test if `kill` does.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(sent.success(), "kill -{signal} {} ({pid}) failed", self.name);
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its log lines (JSON) whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["message"] == message)
            .collect()
    }

    /// Lines of its log at level WARN or ERROR, for a report.
    pub fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `url` until it answers 200.
pub async fn wait_ready(url: &str, within: Duration) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let until = Instant::now() + within;
    loop {
        if let Ok(reply) = client.get(url).send().await
            && reply.status() == 200
        {
            return;
        }
        assert!(Instant::now() < until, "{url} not ready within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port (bound and released; another process could take it in between,
/// which on a test machine does not happen in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `PUT /api/products/{sku}` at `base`.
pub async fn put_product(base: &str, sku: &str, stock: i64) -> reqwest::StatusCode {
    reqwest::Client::new()
        .put(format!("{base}/api/products/{sku}"))
        .bearer_auth(super::MERCHANT_TOKEN)
        .json(&json!({"name": sku, "price": "1.00", "stock": stock}))
        .send()
        .await
        .unwrap()
        .status()
}

/// `GET /api/products/{sku}` at `base`: the status and the body.
pub async fn get_product(base: &str, sku: &str) -> (reqwest::StatusCode, Value) {
    let reply =
        reqwest::Client::new().get(format!("{base}/api/products/{sku}")).send().await.unwrap();
    let status = reply.status();
    (status, reply.json().await.unwrap_or(Value::Null))
}

/// What a load run got back.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Order ids answered 201.
    pub accepted: Vec<String>,
    /// Answers by status (201 included).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection refused or reset, timeout).
    pub transport_errors: u64,
    /// A few bodies of answers other than 201, for the report.
    pub samples: Vec<String>,
    /// Units ordered by requests not answered 201 (refused, or lost with a killed node).
    pub unanswered_units: i64,
}

impl LoadReport {
    /// One report for several clients, or for loads run side by side through different
    /// nodes (the first 8 samples kept).
    pub fn merged(reports: impl IntoIterator<Item = LoadReport>) -> LoadReport {
        let mut all = LoadReport::default();
        for report in reports {
            all.accepted.extend(report.accepted);
            for (status, n) in report.statuses {
                *all.statuses.entry(status).or_default() += n;
            }
            all.transport_errors += report.transport_errors;
            all.unanswered_units += report.unanswered_units;
            all.samples
                .extend(report.samples.into_iter().take(8usize.saturating_sub(all.samples.len())));
        }
        all
    }
}

/// Order load: `clients` tasks, each posting orders for `sku` one after another, each with an
/// Idempotency-Key of its own, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts the clients against `base` (`http://host:port`).
    pub fn start(base: &str, clients: usize, sku: &str, key_prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|c| {
                let (stop, accepted) = (stop.clone(), accepted.clone());
                let url = format!("{base}/api/orders");
                let (sku, key_prefix) = (sku.to_owned(), key_prefix.to_owned());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    let mut report = LoadReport::default();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let quantity = 1 + n % 3;
                        let body = json!({
                            "customer_id": format!("c-{c}"),
                            "items": [{"sku": sku, "quantity": quantity}],
                        });
                        let sent = client
                            .post(&url)
                            .header("Idempotency-Key", format!("{key_prefix}-{c}-{n}"))
                            .json(&body)
                            .send()
                            .await;
                        let reply = match sent {
                            Ok(reply) => reply,
                            Err(_) => {
                                report.transport_errors += 1;
                                report.unanswered_units += quantity as i64;
                                // Nothing listens for a moment (a restart): do not spin.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        };
                        let status = reply.status().as_u16();
                        *report.statuses.entry(status).or_default() += 1;
                        let text = reply.text().await.unwrap_or_default();
                        if status == 201 {
                            let body: Value = serde_json::from_str(&text).unwrap();
                            report.accepted.push(body["order_id"].as_str().unwrap().to_owned());
                            accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            report.unanswered_units += quantity as i64;
                            if report.samples.len() < 3 {
                                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                                let text: String = text.chars().take(160).collect();
                                report.samples.push(format!("{status} {text}"));
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    report
                })
            })
            .collect();
        Load { stop, accepted, tasks }
    }

    /// 201s so far.
    /// Waits for a seeded random moment 0.8–2 s into the load (the seed is returned, to print
    /// with any failure) and checks orders were taken by then; returns `(seed, accepted)`.
    pub async fn until_a_seeded_moment(&self) -> (u64, u64) {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        tokio::time::sleep(Duration::from_millis(800 + rng.u64(0..1_200))).await;
        let before = self.accepted();
        assert!(before > 0, "orders were accepted before the fault (seed {seed})");
        (seed, before)
    }

    /// Asserts selling resumes by itself (20 more orders taken) within 10 s of the fault's end.
    pub async fn assert_selling_again(&self, seed: u64) {
        let back_at = self.accepted();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.accepted() < back_at + 20 {
            assert!(Instant::now() < deadline, "intake did not recover within 10 s (seed {seed})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops the clients (each finishes its request in flight) and merges their reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            reports.push(task.await.unwrap());
        }
        LoadReport::merged(reports)
    }
}

/// Polls `GET /api/orders/{id}` at `base` until every order in `ids` is `confirmed` or the
/// deadline passes; returns the ones that are not, with their last status.
pub async fn await_confirmed(
    base: &str,
    ids: &[String],
    within: Duration,
) -> Vec<(String, String)> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let pending = Arc::new(Mutex::new(
        ids.iter().map(|id| (id.clone(), "not read".to_owned())).collect::<Vec<_>>(),
    ));
    let until = Instant::now() + within;
    loop {
        let round = std::mem::take(&mut *pending.lock().unwrap());
        // A few readers at once: thousands of orders, one GET each.
        let chunks: Vec<Vec<(String, String)>> =
            round.chunks(round.len().div_ceil(8).max(1)).map(<[_]>::to_vec).collect();
        let readers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (client, pending) = (client.clone(), pending.clone());
                let base = base.to_owned();
                tokio::spawn(async move {
                    for (id, _) in chunk {
                        let status =
                            match client.get(format!("{base}/api/orders/{id}")).send().await {
                                Ok(reply) if reply.status() == 200 => {
                                    let body: Value = reply.json().await.unwrap_or(Value::Null);
                                    body["status"].as_str().unwrap_or("unreadable").to_owned()
                                }
                                Ok(reply) => format!("HTTP {}", reply.status()),
                                Err(error) => format!("no answer: {error}"),
                            };
                        if status != "confirmed" {
                            pending.lock().unwrap().push((id, status));
                        }
                    }
                })
            })
            .collect();
        for reader in readers {
            reader.await.unwrap();
        }
        let left = pending.lock().unwrap().clone();
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// nginx in front of api nodes, as a child process on a config of its own; killed on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub error_log: PathBuf,
}

impl Nginx {
    /// Whether an `nginx` binary is on the PATH.
    pub fn installed() -> bool {
        Command::new("nginx").arg("-v").output().is_ok_and(|out| out.status.success())
    }

    /// Writes `<dir>/nginx/nginx.conf` balancing over `upstreams` and starts nginx on it;
    /// waits until it accepts connections.
    pub async fn start(dir: &Path, upstreams: &[SocketAddr]) -> Nginx {
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let servers: String =
            upstreams.iter().map(|addr| format!("        server {addr};\n")).collect();
        let root_text = root.display();
        let conf = format!(
            r#"# Written by crates/ordermill/tests/support/scaled.rs for one test run.
# One process in the foreground: the test owns it, and a SIGKILL leaves no worker behind
# (with a master process, killed workers' sockets would outlive the test; and no worker
# switches to another user that could not write this dir).
daemon off;
master_process off;
pid {root_text}/nginx.pid;
error_log {root_text}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {root_text}/client_body;
    proxy_temp_path {root_text}/proxy;
    fastcgi_temp_path {root_text}/fastcgi;
    uwsgi_temp_path {root_text}/uwsgi;
    scgi_temp_path {root_text}/scgi;

    upstream ordermill {{
{servers}        keepalive 32;
        keepalive_timeout 5s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ordermill;
            # Keep-alive to the upstreams needs HTTP/1.1 and no "Connection: close".
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 15s;
            # A node that refuses the connection or does not answer: try the other one.
            # `non_idempotent` is NOT enabled. Without it nginx still passes a POST to the
            # next node when it could not be sent (connection refused: the killed node), but
            # not once it was sent: that node may have committed the order before dying, and
            # an order POSTed without an Idempotency-Key would then be placed twice. With a
            # key a retry would be safe (the other node replays the stored order), but nginx
            # cannot tell the two apart here, so the client retries, with its key.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"#
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(root.join("stderr.log")).unwrap()))
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx { child, port, error_log: root.join("error.log") };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(exit) = nginx.child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({exit}): {}",
                    std::fs::read_to_string(root.join("stderr.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "nginx not listening on {port} within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
