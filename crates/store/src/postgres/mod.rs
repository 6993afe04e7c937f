//! The PostgreSQL store, for the scaled-out mode: several `api` and `worker` processes share
//! one database. Same contract as the SQLite store (the suite in [`crate::contract`] runs on
//! both); what differs is how the work reaches the server:
//!
//! - The group commit is ONE statement (`orders.rs`): arrays bound once per column and
//!   `UNNEST`ed, so a batch of hundreds of orders is one round trip and one WAL flush, and
//!   `reserved` is updated once per distinct SKU.
//! - Consumers' effects (`effects.rs`) run the `core::Lifecycle` state machine in Rust and write
//!   the results with a fixed number of statements per batch.
//! - Rows are locked in a fixed order (processed pairs, then orders by id, then products by
//!   SKU), so concurrent nodes wait for each other instead of deadlocking.
//! - The outbox (`outbox.rs`) is claimed with `FOR UPDATE SKIP LOCKED` and a lease.
//! - Group-buy deals (`deals.rs`): joins queue on each node (`crate::join_queue`) and the joins
//!   queued together are decided in one transaction (`join_group.rs`) that locks their deals'
//!   rows first, as an expiry locks its deal's, so joins for the last slot on several nodes
//!   are decided one at a time; it then takes the locks above in the same order. Purchase
//!   limits live in `limits.rs`.
//!
//! Files: the schema lives in `migrations/postgres/*.sql` (`migrations.rs` embeds and applies
//! them), `rows.rs` decodes rows, `products.rs` holds the catalog, `error.rs` maps sqlx errors.
//!
//! Scaling further: orders would be range-partitioned on their UUIDv7 id (time), see the
//! comment on `orders` in `0001_init.sql`; products and the outbox stay small.

mod deals;
mod effects;
mod error;
mod join_group;
mod limits;
mod migrations;
mod orders;
mod outbox;
pub mod partitions;
mod products;
mod report_files;
mod reports;
mod rows;
mod tls;

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
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Connection, Postgres};
use uuid::Uuid;

use self::error::from_sqlx;
use self::join_group::Joiner;
use self::tls::tls_as_the_url_says;
pub use crate::deadline::DEFAULT_QUERY_TIMEOUT;
use crate::deadline::{Calls, Engine, Limit, bounded};
use crate::join::Join;
use crate::join_queue::JoinQueue;
use crate::pools::Pools;

/// How long `connect` waits for the first connection, and a pooled call for a free one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL-backed [`OrderStore`], [`ordermill_core::ports::Outbox`], [`DealStore`] and
/// [`LimitStore`]; cheap to clone (a handle to one pool, see `pools.rs`).
#[derive(Clone)]
pub struct PostgresStore {
    /// Its pools and their calls' deadline (`crate::deadline`).
    calls: Arc<Calls<Postgres>>,
    /// Where deal joins queue to be decided together (`crate::join_queue`).
    joins: JoinQueue,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("target", &self.calls.target).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects a pool of up to `pool_size` connections to the database at `url`
    /// (`postgres://user[:password]@host[:port]/database`). With `schema`, the schema is
    /// created if missing and every pooled connection runs `SET search_path` to it (tests
    /// isolate themselves this way; a deployment may share one database between instances).
    ///
    /// A call that goes unanswered for `query_timeout` (`postgres.query_timeout`,
    /// [`DEFAULT_QUERY_TIMEOUT`] by default) fails as [`StoreError::Unavailable`] and its
    /// connection is closed (`deadline.rs`); calls that scan whole tables get at least 10
    /// minutes.
    ///
    /// Does NOT migrate: `ordermill migrate` calls [`PostgresStore::migrate`], so that a schema
    /// change is a deliberate step and not a side effect of whichever node starts first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached or refuses the login
    /// (the message names host, port, database and user, and what to check);
    /// [`StoreError::Backend`] for a malformed URL or schema name.
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        pool_size: u32,
        query_timeout: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let query_timeout = query_timeout.max(Duration::from_millis(1));
        let options = tls_as_the_url_says(url)?;
        // random_page_cost 1.1 (for data in memory or on SSD, the usual advice) makes the
        // planner look a batch's SKUs up in `products_pkey` instead of scanning every product
        // row on each commit: measured, PostgreSQL's CPU per order fell from ~420 to ~340 µs.
        //
        // Plans are left to PostgreSQL's default (`plan_cache_mode = auto`): after five custom
        // plans a prepared statement keeps a generic one when it costs no more. Planning every
        // execution instead (`force_custom_plan`, tried) cost a quarter of PostgreSQL's CPU
        // on the hot path: the group commit and the effects' statements are large, and their
        // partitioned tables are opened at each planning (docs/BENCHMARKS.md, "Generic plans").
        // The statement that suffered from generic plans, the duplicate check, now runs only
        // for redeliveries and is planned for its own ids (`processed`).
        // This session's setting only; the server's default stays as it is.
        //
        // A transaction left open by a connection that went silent (the server still waits
        // for its next statement) would hold its row locks until the server's TCP keepalive
        // gives up, hours by default: orders locked by it could not be confirmed. Ours never
        // pause between statements, so one idle in a transaction for as long as a call may
        // take is abandoned, and the server rolls it back and ends the session.
        let idle_in_transaction = format!("{}ms", query_timeout.as_millis());
        let options = options.options([
            ("random_page_cost", "1.1"),
            ("idle_in_transaction_session_timeout", idle_in_transaction.as_str()),
        ]);
        let target: Arc<str> = format!(
            "{}:{}/{} as {}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)"),
            options.get_username()
        )
        .into();
        let unreachable = |error: sqlx::Error| {
            let error = error.to_string();
            let hint = crate::url_tls::certificate_hint(&error, &crate::url_tls::POSTGRES)
                .unwrap_or_else(|| {
                    "check that the server is running and listening there, that the URL's \
                     host, port, database and user are right, and that pg_hba.conf admits this \
                     user from this host (a server that takes only TLS needs sslmode=verify-full \
                     in the URL)"
                        .to_owned()
                });
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {target}: {error}; {hint}"
            ))
        };
        // One connection first, outside the pool: it reports why it failed (the pool would
        // retry a refused connection until its timeout and then say only "timed out"), and
        // it creates the schema before any pooled connection points at it.
        let mut first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {target}: no answer within {}s; check the \
                     host and port, and any firewall in between",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(unreachable)?;
        let search_path = match schema {
            Some(schema) => {
                let quoted = quote_identifier(schema)?;
                let create = format!("CREATE SCHEMA IF NOT EXISTS {quoted}");
                match sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut first).await {
                    Ok(_) => {}
                    // Two processes creating it at once: the loser's unique violation means
                    // the schema exists, which is all we wanted.
                    Err(sqlx::Error::Database(db))
                        if matches!(db.code().as_deref(), Some("23505" | "42P06")) => {}
                    Err(error) => return Err(from_sqlx(error)),
                }
                Some(Arc::<str>::from(format!("SET search_path TO {quoted}")))
            }
            None => None,
        };
        // Closing is best effort: the connection did its job either way.
        let _ = first.close().await;

        let open = move || {
            let mut pool = PgPoolOptions::new()
                .max_connections(pool_size.max(1))
                .acquire_timeout(CONNECT_TIMEOUT)
                .test_before_acquire(false)
                .before_acquire(crate::pool::ping_if_idle::<sqlx::Postgres>);
            if let Some(set) = search_path.clone() {
                pool = pool.after_connect(move |conn, _meta| {
                    let set = set.clone();
                    Box::pin(async move {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(conn).await.map(drop)
                    })
                });
            }
            pool.connect_lazy_with(options.clone())
        };
        let pools = Pools::new(open);
        tracing::info!(target = %target, schema = schema, pool_size, "Connected PostgreSQL store.");
        let engine =
            Engine { name: "PostgreSQL", setting: "postgres.query_timeout", error: from_sqlx };
        let calls = Arc::new(Calls { pools, target, query_timeout, engine });
        Ok(PostgresStore { joins: JoinQueue::start(Joiner { calls: calls.clone() }), calls })
    }

    /// Applies the embedded migrations (`migrations/postgres/NNNN_name.sql`) not yet recorded
    /// in `schema_migrations`, in order, each in a transaction of its own; returns the names
    /// of those applied (empty when the schema is current). Safe to run from several processes
    /// at once: they serialise on an advisory lock and the later ones apply nothing.
    ///
    /// # Errors
    /// When a migration fails; that migration is rolled back, the ones before it stay.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        migrations::migrate(&self.calls.pools.current().pool).await
    }

    /// The schema migrations this release has that the database lacks (`ordermill migrate`
    /// applies them); empty when the schema is up to date.
    ///
    /// # Errors
    /// On a backend failure.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        migrations::pending(&self.calls.pools.current().pool).await
    }

    /// Creates upcoming daily partitions and drops `processed_events` partitions older than
    /// `retention` ([`partitions::maintain`]); safe to run from every node at any time.
    ///
    /// # Errors
    /// On a backend failure (nothing is half done: it is one transaction).
    pub async fn maintain(
        &self,
        retention: Duration,
    ) -> Result<partitions::Maintenance, StoreError> {
        bounded!(self, Limit::Long, "partition maintenance", |conn| partitions::maintain(
            conn, retention
        ))
    }

    /// PostgreSQL's clock, read now: the time and the local instant it was true at (the
    /// middle of the round trip).
    ///
    /// # Errors
    /// When the database cannot be asked.
    pub async fn database_time(
        &self,
    ) -> Result<(ordermill_core::UnixMillis, std::time::Instant), StoreError> {
        bounded!(self, Limit::Query, "reading the database's clock", |conn| async {
            let sent = std::time::Instant::now();
            let ms: i64 =
                sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
            let back = std::time::Instant::now();
            Ok((ordermill_core::UnixMillis(ms), sent + (back - sent) / 2))
        })
    }

    /// Closes every pooled connection, waiting for calls in progress to finish.
    pub async fn close(&self) {
        self.calls.pools.close().await;
    }
}

/// `name` as a quoted SQL identifier (`"a""b"`); refused when empty or over PostgreSQL's limit.
fn quote_identifier(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(StoreError::Backend(
            format!("invalid schema name {name:?}: 1 to 63 bytes, no NUL").into(),
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

#[async_trait]
impl OrderStore for PostgresStore {
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
        bounded!(
            self,
            Limit::Query,
            "an idempotency-key lookup",
            |conn| orders::by_idempotency_key(conn, customer.as_str(), key.as_str())
        )
    }

    async fn find_by_idempotency_keys(
        &self,
        keys: &[(CustomerId, IdempotencyKey)],
    ) -> Result<Vec<Order>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let customers: Vec<&str> = keys.iter().map(|(c, _)| c.as_str()).collect();
        let keys: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
        bounded!(self, Limit::Query, "an idempotency-key lookup", |conn| {
            orders::by_idempotency_keys(conn, &customers, &keys)
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
        bounded!(self, Limit::Query, "listing a customer's orders", |conn| orders::of_customer(
            conn,
            customer.as_str(),
            before.map(|id| id.as_uuid()),
            limit
        ))
    }

    async fn find_orders(&self, query: OrderQuery) -> Result<Vec<Order>, StoreError> {
        bounded!(self, Limit::Query, "an order search", |conn| orders::find(conn, query))
    }

    async fn due_payments(&self, now: UnixMillis, limit: u32) -> Result<Vec<OrderId>, StoreError> {
        let due: Vec<Uuid> = bounded!(self, Limit::Query, "listing unpaid orders", |conn| async {
            sqlx::query_scalar(
                "SELECT order_id FROM payment_deadlines WHERE pay_by <= $1 ORDER BY pay_by LIMIT $2",
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
        // Published events are deleted (see `outbox.rs`), so every event left is unpublished;
        // a batch row holds several (0011).
        let n: i64 = bounded!(self, Limit::Query, "counting the outbox", |conn| async {
            sqlx::query_scalar(
                "SELECT coalesce(sum(coalesce(cardinality(event_ids), 1)), 0)::bigint FROM outbox",
            )
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
        if orders.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = orders.iter().map(|o| o.as_uuid()).collect();
        bounded!(self, Limit::Query, "forgetting stock returns", |conn| async {
            // Losing this delete in a crash costs a rebuild of the counts, not a unit: no
            // need to wait for the WAL flush (see the outbox's delete).
            sqlx::query(
                "DELETE FROM stock_returns
                 USING (SELECT set_config('synchronous_commit', 'off', true)) AS s
                 WHERE order_id = ANY($1::uuid[])",
            )
            .bind(ids)
            .execute(conn)
            .await
            .map_err(from_sqlx)
        })?;
        Ok(())
    }

    async fn overdue_stock_returns(
        &self,
        age: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OrderId>, StoreError> {
        let millis = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let ids: Vec<Uuid> =
            bounded!(self, Limit::Query, "reading overdue stock returns", |conn| async {
                sqlx::query_scalar(
                    "SELECT order_id FROM stock_returns
                 WHERE written_at <= now() - $1::bigint * interval '1 millisecond'
                 LIMIT $2",
                )
                .bind(millis)
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
        let done: Vec<Uuid> = bounded!(self, Limit::Query, "a duplicate check", |conn| async {
            sqlx::query_scalar(
                "SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            )
            .bind(consumer)
            .bind(&events)
            // Unnamed, so planned for these ids each time: a generic plan made while the table
            // was small scans every row of a partition that has grown since (profiled: 38% of
            // PostgreSQL's CPU on a fresh schema). It runs only for redeliveries.
            .persistent(false)
            .fetch_all(conn)
            .await
            .map_err(from_sqlx)
        })?;
        // In the caller's order, as the SQLite store answers.
        Ok(events.into_iter().filter(|e| done.contains(e)).collect())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        // A reachable server can still refuse writes: a hot standby, or a database set
        // read-only (e.g. by an operator during maintenance).
        let (recovery, read_only): (bool, String) =
            bounded!(self, Limit::Query, "a read-only check", |conn| async {
                sqlx::query_as(
                    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')",
                )
                .fetch_one(conn)
                .await
                .map_err(from_sqlx)
            })?;
        if recovery || read_only == "on" {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL at {} is read-only (a standby, or default_transaction_read_only is on)",
                self.calls.target
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl DealStore for PostgresStore {
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
impl LimitStore for PostgresStore {
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

#[async_trait]
impl ordermill_core::ports::ReportStore for PostgresStore {
    async fn create_report(
        &self,
        report: &ordermill_core::report::Report,
    ) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "creating a report", |conn| reports::create(conn, report))
    }

    async fn get_report(
        &self,
        id: ordermill_core::report::ReportId,
    ) -> Result<Option<ordermill_core::report::Report>, StoreError> {
        bounded!(self, Limit::Query, "reading a report", |conn| reports::get(conn, id))
    }

    async fn claim_report(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        rows_estimated: u64,
        now: UnixMillis,
        stale_before: UnixMillis,
    ) -> Result<ordermill_core::ports::Claim, StoreError> {
        bounded!(self, Limit::Query, "claiming a report", |conn| reports::claim(
            conn,
            id,
            token,
            rows_estimated,
            now,
            stale_before
        ))
    }

    async fn report_progress(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        rows_done: u64,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        bounded!(self, Limit::Query, "a report's progress", |conn| reports::progress(
            conn, id, token, rows_done, now
        ))
    }

    async fn finish_report(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        rows_done: u64,
        size_bytes: u64,
        at: (UnixMillis, UnixMillis),
    ) -> Result<bool, StoreError> {
        bounded!(self, Limit::Query, "finishing a report", |conn| reports::finish(
            conn,
            id,
            token,
            (rows_done, size_bytes),
            at
        ))
    }

    async fn fail_report(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        error: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        bounded!(self, Limit::Query, "failing a report", |conn| reports::fail(
            conn, id, token, error, now
        ))
    }

    async fn requeue_stalled(
        &self,
        stale_before: UnixMillis,
        asked_before: UnixMillis,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ordermill_core::report::ReportId>, StoreError> {
        bounded!(self, Limit::Query, "requeueing stalled reports", |conn| reports::requeue(
            conn,
            stale_before,
            asked_before,
            now,
            limit
        ))
    }

    async fn expired_reports(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ordermill_core::report::ReportId>, StoreError> {
        bounded!(self, Limit::Query, "listing expired reports", |conn| reports::expired(
            conn, now, limit
        ))
    }

    async fn delete_report(&self, id: ordermill_core::report::ReportId) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "deleting a report", |conn| reports::delete(conn, id))
    }

    async fn count_orders(&self, from: UnixMillis, to: UnixMillis) -> Result<u64, StoreError> {
        bounded!(self, Limit::Long, "counting a report's orders", |conn| reports::count_orders(
            conn, from, to
        ))
    }
}
