//! The MySQL store (MySQL 8, MariaDB 10.6+), a third store of record for the scaled-out mode
//! beside PostgreSQL: same ports, same contract suites, same outcomes. What differs is
//! InnoDB's SQL, which has no arrays, no `RETURNING` (in MySQL) and no DML in CTEs:
//!
//! - The group commit (`orders.rs`) is one transaction with one multi-row statement per
//!   table and one conditional `UPDATE` of the products (`reserved` raised only within stock);
//!   an oversold or over-limit batch writes nothing.
//! - Deal joins queue on each node (`crate::join_queue`) and the joins queued together are
//!   decided in one transaction (`join_group.rs`) that locks their deals' rows first, as an
//!   expiry locks its deal's (`deals.rs`).
//! - Consumers' effects (`effects.rs`) run `crate::batch` (the state machine, shared with
//!   PostgreSQL) and write with a fixed number of statements per batch (`UPDATE ... JOIN` a
//!   derived table of the new values).
//! - Rows are locked in the same order as on PostgreSQL (processed pairs, orders by id,
//!   products by SKU); deadlocks and lock-wait timeouts (1213/1205) that happen anyway are
//!   retried whole, with a bound (`tx.rs`), never surfaced as failed orders.
//! - Every session runs READ COMMITTED: a deal join reads its members in the statement after
//!   its row lock is granted and must see every join committed meanwhile (REPEATABLE READ's
//!   snapshot would miss the one that took the last slot), and inserts take no gap locks
//!   (fewer deadlocks between nodes inserting orders). MySQL then needs `binlog_format=ROW`
//!   (docs/OPERATIONS.md).
//! - Migrations (`migrations.rs`) serialise on `GET_LOCK`; partitions (`partitions.rs`) are
//!   daily RANGE COLUMNS partitions on the UUIDv7 ids.

mod deals;
mod effects;
mod error;
mod join_group;
mod limits;
mod migrations;
mod orders;
mod outbox;
mod partitions;
mod products;
mod report_files;
mod reports;
mod rows;
mod shape;
mod tx;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{
    AcceptedOrder, DealStore, Effect, EffectOutcome, ExpiredDeal, JoinOutcome, LimitStore,
    OrderQuery, OrderStore, StoreError,
};
use ordermill_core::{
    CustomerId, Deal, DealId, IdempotencyKey, Order, OrderId, Product, Sku, UnixMillis,
    units_by_sku,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection, MySql};
use uuid::Uuid;

use self::error::from_sqlx;
use self::join_group::Joiner;
pub use crate::deadline::DEFAULT_QUERY_TIMEOUT;
use crate::deadline::{Calls, Engine, Limit, bounded};
use crate::join::Join;
use crate::join_queue::JoinQueue;
use crate::pools::Pools;

/// How long `connect` waits for the first connection, and a pooled call for a free one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The database's clock in ms since the epoch (sessions run in UTC: sqlx sets `time_zone`).
pub(crate) const NOW_MS: &str = "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

/// Run on every pooled connection: see the module comment for READ COMMITTED; a row lock not
/// granted in 10 s fails the statement (and `tx.rs` runs the transaction again) instead of
/// InnoDB's 50 s default, which would hold an order's answer far past any client's patience;
/// strict mode makes a value that does not fit an error, never a silent truncation.
const SESSION: [&str; 3] = [
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION innodb_lock_wait_timeout = 10",
    "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_TRANS_TABLES')",
];

/// A MySQL-backed [`OrderStore`], [`ordermill_core::ports::Outbox`], [`DealStore`],
/// [`LimitStore`] and report store; cheap to clone (a handle to its pools).
#[derive(Clone)]
pub struct MysqlStore {
    /// Its pools and their calls' deadline (`crate::deadline`).
    calls: Arc<Calls<MySql>>,
    /// Where deal joins queue to be decided together (`crate::join_queue`).
    joins: JoinQueue,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore").field("target", &self.calls.target).finish_non_exhaustive()
    }
}

impl MysqlStore {
    /// Connects a pool of up to `pool_size` connections to the database at `url`
    /// (`mysql://user[:password]@host[:port]/database`). With `database`, that database is
    /// used instead of the URL's, created (utf8mb4, binary collation) if missing: tests
    /// isolate themselves this way.
    ///
    /// A call that goes unanswered for `query_timeout` (`mysql.query_timeout`,
    /// [`DEFAULT_QUERY_TIMEOUT`] by default) fails as [`StoreError::Unavailable`] and its
    /// connection is closed (`crate::deadline`), the retries of a transaction InnoDB undid
    /// included; calls that scan whole tables get at least 10 minutes.
    ///
    /// Does NOT migrate: `ordermill migrate` calls [`MysqlStore::migrate`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server cannot be reached or refuses the login (the
    /// message names host, port, database and user, and what to check);
    /// [`StoreError::Backend`] for a malformed URL or database name.
    pub async fn connect(
        url: &str,
        database: Option<&str>,
        pool_size: u32,
        query_timeout: Duration,
    ) -> Result<MysqlStore, StoreError> {
        let query_timeout = query_timeout.max(Duration::from_millis(1));
        let options: MySqlConnectOptions = url
            .parse()
            .map_err(|error| StoreError::Backend(format!("invalid MySQL URL: {error}").into()))?;
        // The binary collation everywhere: values bound by ordermill then compare with the
        // columns (utf8mb4_bin) without an "illegal mix of collations".
        let options = options.charset("utf8mb4").collation("utf8mb4_bin");
        // Plaintext unless the URL asks (crate::url_tls says why).
        let options = if crate::url_tls::names_a_mode(url, &crate::url_tls::MYSQL) {
            options
        } else {
            options.ssl_mode(sqlx::mysql::MySqlSslMode::Disabled)
        };
        let url_database = options.get_database().map(str::to_owned);
        let target: Arc<str> = format!(
            "{}:{}/{} as {}",
            options.get_host(),
            options.get_port(),
            database.or(url_database.as_deref()).unwrap_or("(no database)"),
            options.get_username()
        )
        .into();
        let unreachable = |error: sqlx::Error| {
            let error = error.to_string();
            let hint = crate::url_tls::certificate_hint(&error, &crate::url_tls::MYSQL)
                .unwrap_or_else(|| {
                    "check that the server is running and listening there, that the URL's host, \
                     port, database and user are right, and that this user may log in from this \
                     host (a server that takes only TLS needs ssl-mode=VERIFY_IDENTITY in the \
                     URL)"
                        .to_owned()
                });
            StoreError::Unavailable(format!("cannot connect to MySQL at {target}: {error}; {hint}"))
        };
        // One connection first, outside the pool: it says why it failed (the pool would only
        // say "timed out"), and creates the database before any pooled connection uses it.
        let mut first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "cannot connect to MySQL at {target}: no answer within {}s; check the host \
                     and port, and any firewall in between",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(unreachable)?;
        let options = match database {
            Some(name) => {
                let quoted = quote_identifier(name)?;
                let create = format!(
                    "CREATE DATABASE IF NOT EXISTS {quoted} \
                     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                    .execute(&mut first)
                    .await
                    .map_err(from_sqlx)?;
                options.database(name)
            }
            None if url_database.is_none() => {
                return Err(StoreError::Backend(
                    format!(
                        "the MySQL URL names no database: use mysql://user:pass@{}/DATABASE",
                        options.get_host()
                    )
                    .into(),
                ));
            }
            None => options,
        };
        let abandon = abandon_idle_transactions(&mut first, query_timeout).await?;
        let _ = first.close().await;

        let open = move || {
            let abandon = abandon.clone();
            MySqlPoolOptions::new()
                .max_connections(pool_size.max(1))
                .acquire_timeout(CONNECT_TIMEOUT)
                .test_before_acquire(false)
                .before_acquire(crate::pool::ping_if_idle::<sqlx::MySql>)
                .after_connect(move |conn, _meta| {
                    let abandon = abandon.clone();
                    Box::pin(async move {
                        for statement in SESSION {
                            sqlx::raw_sql(statement).execute(&mut *conn).await?;
                        }
                        sqlx::raw_sql(sqlx::AssertSqlSafe(&*abandon)).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options.clone())
        };
        let pools = Pools::new(open);
        tracing::info!(target = %target, pool_size, "Connected MySQL store.");
        let engine = Engine { name: "MySQL", setting: "mysql.query_timeout", error: from_sqlx };
        let calls = Arc::new(Calls { pools, target, query_timeout, engine });
        Ok(MysqlStore { joins: JoinQueue::start(Joiner { calls: calls.clone() }), calls })
    }

    /// Applies the embedded migrations not yet recorded in `schema_migrations`, then makes
    /// the coming days' partitions; returns the names of the migrations applied (empty when
    /// the schema is current). Safe to run from several processes at once (`GET_LOCK`).
    ///
    /// # Errors
    /// When a statement fails; run it again once the cause is fixed (statements already run
    /// are skipped, see `migrations.rs`).
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let pool = self.calls.pools.current().pool;
        let applied = migrations::migrate(&pool).await?;
        let mut conn = pool.acquire().await.map_err(from_sqlx)?;
        partitions::maintain(&mut conn, None).await?;
        Ok(applied)
    }

    /// The schema migrations this release has that the database lacks.
    ///
    /// # Errors
    /// On a backend failure.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        migrations::pending(&self.calls.pools.current().pool).await
    }

    /// Creates upcoming daily partitions and drops `processed_events` partitions older than
    /// `retention`; safe to run from every node at any time.
    ///
    /// # Errors
    /// On a backend failure.
    pub async fn maintain(
        &self,
        retention: Duration,
    ) -> Result<crate::partitions::Maintenance, StoreError> {
        bounded!(self, Limit::Long, "partition maintenance", |conn| partitions::maintain(
            conn,
            Some(retention)
        ))
    }

    /// The database's clock, read now: the time and the local instant it was true at.
    ///
    /// # Errors
    /// When the database cannot be asked.
    pub async fn database_time(&self) -> Result<(UnixMillis, std::time::Instant), StoreError> {
        bounded!(self, Limit::Query, "reading the database's clock", |conn| async {
            let sent = std::time::Instant::now();
            let ms: i64 =
                sqlx::query_scalar(NOW_MS).fetch_one(&mut *conn).await.map_err(from_sqlx)?;
            let back = std::time::Instant::now();
            Ok((UnixMillis(ms), sent + (back - sent) / 2))
        })
    }

    /// Closes every pooled connection, waiting for calls in progress to finish.
    pub async fn close(&self) {
        self.calls.pools.close().await;
    }
}

/// The session setting that makes the server end a session left idle inside a transaction
/// for `query_timeout`, rolling it back. A connection that went silent mid-transaction (the
/// server still waits for its next statement) would otherwise keep its row locks until the
/// server's `wait_timeout`, 8 hours by default: orders it had locked could not be confirmed.
/// Ours never pause between statements. MariaDB has `idle_transaction_timeout`; MySQL has
/// none, so there the session's `wait_timeout` (idle in a transaction or not) is shortened,
/// and a pooled connection the server closed while idle fails its ping and is replaced.
async fn abandon_idle_transactions(
    first: &mut sqlx::MySqlConnection,
    query_timeout: Duration,
) -> Result<Arc<str>, StoreError> {
    let version: String =
        sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut *first).await.map_err(from_sqlx)?;
    let seconds = query_timeout.as_secs() + u64::from(query_timeout.subsec_nanos() > 0);
    let variable =
        if version.contains("MariaDB") { "idle_transaction_timeout" } else { "wait_timeout" };
    Ok(Arc::from(format!("SET SESSION {variable} = {}", seconds.max(1))))
}

/// `name` as a quoted identifier (`` `a``b` ``); refused when empty or over MySQL's limit.
fn quote_identifier(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || name.len() > 64 || name.contains('\0') {
        return Err(StoreError::Backend(
            format!("invalid database name {name:?}: 1 to 64 bytes, no NUL").into(),
        ));
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

#[async_trait]
impl OrderStore for MysqlStore {
    async fn commit_orders(&self, batch: Arc<Vec<AcceptedOrder>>) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "a group commit", |conn| orders::commit(conn, &batch))
    }

    async fn batch_stored(&self, batch: &[AcceptedOrder]) -> Result<bool, StoreError> {
        let Some(first) = batch.first() else { return Ok(false) };
        let skus: Vec<&str> = units_by_sku(batch.iter().map(|a| &a.order)).into_keys().collect();
        bounded!(self, Limit::Query, "reading back an unclear commit", |conn| {
            orders::stored(conn, first.order.id.as_uuid(), &skus)
        })
    }

    async fn upsert_product(
        &self,
        product: &Product,
    ) -> Result<(Product, Option<Product>), StoreError> {
        bounded!(self, Limit::Query, "a product update", |conn| products::upsert(conn, product))
    }

    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError> {
        bounded!(self, Limit::Query, "reading a product", |conn| products::get(conn, sku.as_str()))
    }

    async fn load_products(&self) -> Result<Vec<Product>, StoreError> {
        bounded!(self, Limit::Query, "loading the catalog", |conn| products::load(conn))
    }

    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        bounded!(self, Limit::Query, "reading an order", |conn| orders::by_id(conn, id.as_uuid()))
    }

    async fn find_by_idempotency_key(
        &self,
        customer: &CustomerId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError> {
        bounded!(self, Limit::Query, "reading an order", |conn| orders::by_idempotency_key(
            conn,
            customer.as_str(),
            key.as_str()
        ))
    }

    async fn find_by_idempotency_keys(
        &self,
        keys: &[(CustomerId, IdempotencyKey)],
    ) -> Result<Vec<Order>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        bounded!(self, Limit::Query, "an idempotency-key lookup", |conn| {
            orders::by_idempotency_keys(conn, keys)
        })
    }

    async fn forget_idempotency_key(&self, order: OrderId) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "forgetting an idempotency key", |conn| orders::forget_key(
            conn,
            order.as_uuid()
        ))
    }

    async fn orders_of_customer(
        &self,
        customer: &CustomerId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let before = before.map(|id| id.as_uuid());
        bounded!(self, Limit::Query, "listing a customer's orders", |conn| orders::of_customer(
            conn,
            customer.as_str(),
            before,
            limit
        ))
    }

    async fn find_orders(&self, query: OrderQuery) -> Result<Vec<Order>, StoreError> {
        bounded!(self, Limit::Query, "an order search", |conn| orders::find(conn, query))
    }

    async fn due_payments(&self, now: UnixMillis, limit: u32) -> Result<Vec<OrderId>, StoreError> {
        let due: Vec<Uuid> = bounded!(self, Limit::Query, "listing unpaid orders", |conn| async {
            sqlx::query_scalar(
                "SELECT order_id FROM payment_deadlines WHERE pay_by <= ? ORDER BY pay_by LIMIT ?",
            )
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await
            .map_err(from_sqlx)
        })?;
        Ok(due.into_iter().map(OrderId::from_uuid).collect())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = bounded!(self, Limit::Query, "counting the outbox", |conn| async {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
                .fetch_one(conn)
                .await
                .map_err(from_sqlx)
        })?;
        Ok(n.max(0).unsigned_abs())
    }

    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError> {
        bounded!(self, Limit::Query, "a consumer's effects", |conn| effects::apply(conn, &effects))
    }

    async fn stock_returned(&self, orders: Vec<OrderId>) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = orders.iter().map(|o| o.as_uuid()).collect();
        let delete = "DELETE FROM stock_returns WHERE order_id IN (";
        bounded!(self, Limit::Query, "forgetting stock returns", |conn| outbox::by_ids(
            conn, delete, &ids
        ))
    }

    async fn overdue_stock_returns(
        &self,
        age: Duration,
        limit: u32,
    ) -> Result<Vec<OrderId>, StoreError> {
        let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        let ids: Vec<Uuid> =
            bounded!(self, Limit::Query, "reading overdue stock returns", |conn| async {
                sqlx::query_scalar(
                    "SELECT order_id FROM stock_returns
                 WHERE written_at <= NOW(3) - INTERVAL ? MICROSECOND LIMIT ?",
                )
                .bind(micros)
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await
                .map_err(from_sqlx)
            })?;
        Ok(ids.into_iter().map(OrderId::from_uuid).collect())
    }

    async fn processed(&self, consumer: &str, events: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let done = bounded!(self, Limit::Query, "a duplicate check", |conn| async {
            let mut done: Vec<Uuid> = Vec::new();
            for list in shape::padded(&events) {
                let mut query = sqlx::QueryBuilder::<sqlx::MySql>::new(
                    "SELECT event_id FROM processed_events WHERE consumer = ",
                );
                query.push_bind(consumer).push(" AND event_id IN (");
                let mut ids = query.separated(", ");
                for event in list {
                    ids.push_bind(event);
                }
                query.push(")");
                let found: Vec<Uuid> =
                    query.build_query_scalar().fetch_all(&mut *conn).await.map_err(from_sqlx)?;
                done.extend(found);
            }
            Ok(done)
        })?;
        // In the caller's order, as the other stores answer.
        Ok(events.into_iter().filter(|e| done.contains(e)).collect())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        // A reachable server can still refuse writes: a replica, or a server set read-only
        // by an operator during maintenance.
        let read_only: i64 = bounded!(self, Limit::Query, "a read-only check", |conn| async {
            sqlx::query_scalar("SELECT @@GLOBAL.read_only").fetch_one(conn).await.map_err(from_sqlx)
        })?;
        if read_only != 0 {
            return Err(StoreError::Unavailable(format!(
                "MySQL at {} is read-only (a replica, or read_only is on)",
                self.calls.target
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl DealStore for MysqlStore {
    async fn create_deal(&self, deal: &Deal) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "creating a deal", |conn| deals::create(conn, deal))
    }

    async fn get_deal(&self, id: DealId) -> Result<Option<Deal>, StoreError> {
        bounded!(self, Limit::Query, "reading a deal", |conn| deals::get(conn, id))
    }

    async fn join_deal(
        &self,
        deal_id: DealId,
        order: AcceptedOrder,
        completion_event_ids: Vec<Uuid>,
        at: UnixMillis,
    ) -> Result<JoinOutcome, StoreError> {
        self.joins.join(Join { deal_id, order, completion_ids: completion_event_ids, at }).await
    }

    async fn joined_order(
        &self,
        deal_id: DealId,
        order_id: OrderId,
    ) -> Result<Option<Order>, StoreError> {
        bounded!(self, Limit::Query, "reading back an unclear deal join", |conn| {
            deals::joined_order(conn, deal_id, order_id)
        })
    }

    async fn due_deals(&self, now: UnixMillis, limit: usize) -> Result<Vec<DealId>, StoreError> {
        bounded!(self, Limit::Query, "listing due deals", |conn| deals::due(conn, now, limit))
    }

    async fn deals_created(
        &self,
        range: (UnixMillis, UnixMillis),
        before: Option<DealId>,
        limit: u32,
    ) -> Result<Vec<DealId>, StoreError> {
        bounded!(self, Limit::Query, "listing deals", |conn| deals::created(
            conn, range, before, limit
        ))
    }

    async fn expire_deal(
        &self,
        deal_id: DealId,
        event_ids: Vec<Uuid>,
        at: UnixMillis,
    ) -> Result<Option<ExpiredDeal>, StoreError> {
        bounded!(self, Limit::Query, "a deal's expiry", |conn| deals::expire(
            conn, deal_id, &event_ids, at
        ))
    }
}

#[async_trait]
impl LimitStore for MysqlStore {
    async fn set_purchase_limit(&self, sku: &Sku, limit: Option<u32>) -> Result<(), StoreError> {
        bounded!(self, Limit::Long, "setting a purchase limit", |conn| limits::set(
            conn, sku, limit
        ))
    }

    async fn purchase_limits(&self) -> Result<Vec<(Sku, u32)>, StoreError> {
        bounded!(self, Limit::Query, "reading purchase limits", |conn| limits::all(conn))
    }

    async fn units_by_customer(&self, sku: &Sku) -> Result<Vec<(CustomerId, u64)>, StoreError> {
        bounded!(
            self,
            Limit::Long,
            "counting a customer's units",
            |conn| limits::units_by_customer(conn, sku)
        )
    }
}
