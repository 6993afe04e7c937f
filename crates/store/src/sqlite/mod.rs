//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`, so a commit
//! returns only once the WAL is fsync'd.
//!
//! Writes go to a dedicated writer thread ([`writer`]); reads run on `spawn_blocking` with a
//! small pool of read-only connections, which WAL lets proceed while the writer commits.

mod deals;
mod effects;
mod error;
#[cfg(test)]
mod join_tests;
mod ledger;
mod reports;
mod retention;
mod rows;
mod schema;
#[cfg(test)]
mod upgrade_tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ordermill_core::ports::{
    AcceptedOrder, BusLedger, DealStore, Effect, EffectOutcome, ExpiredDeal, JoinOutcome,
    LedgerEntry, LimitStore, OrderQuery, OrderStore, StoreError,
};
use ordermill_core::{
    CustomerId, Deal, DealId, IdempotencyKey, Order, OrderId, Product, Sku, UnixMillis,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;
use uuid::Uuid;

use self::error::from_sqlite;
use self::writer::Command;

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "ordermill.db";

/// Read connections kept open for reuse; more are opened on demand and closed after use.
const READ_POOL: usize = 8;
/// Commands that may wait for the writer thread. Each intake commit is one command carrying a
/// whole batch, so this is far more than a healthy writer ever has queued.
const WRITER_QUEUE: usize = 1024;

/// Runs `sql` from the connection's statement cache, returning the rows it changed: parsed
/// once per connection, not at every run (a group-buying join's four statements were parsed
/// afresh each time; docs/BENCHMARKS.md, fortieth session).
fn execute_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute(params)).map_err(from_sqlite)
}

/// A SQLite-backed [`OrderStore`].
pub struct SqliteStore {
    commands: tokio::sync::mpsc::Sender<Command>,
    path: PathBuf,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// The last write failed for want of disk space, and none has succeeded since.
    disk_full: Arc<AtomicBool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `ordermill.db` in `data_dir`, applies migrations and starts
    /// the writer thread.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the directory or file cannot be created or opened (the
    /// message names the path), or a migration fails.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot create data dir {}: {error}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(|error| {
            StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
        })?;
        // WAL: readers never block the writer. FULL: the WAL is fsync'd at every commit, which
        // is what makes a 201 mean durable.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(from_sqlite)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(from_sqlite)?;
        conn.pragma_update(None, "busy_timeout", 5_000).map_err(from_sqlite)?;
        // A checkpoint runs inside the commit that crosses this many WAL pages, and every
        // order arriving meanwhile queues behind it: at 8,192 pages (32 MiB) each one stalled
        // the writer 6–11 ms. 2,000 (8 MiB) makes the stalls smaller (commits over 5 ms at
        // 9,000 orders/s: 10–31 against 49–72; the server answered 98.6–99.2% of orders
        // within 5 ms against 96.9–98.3%) for 2–5% of closed-loop throughput: hot pages
        // (B-tree right edges, the hot SKUs' rows) are copied more often (docs/BENCHMARKS.md,
        // twelfth session).
        conn.pragma_update(None, "wal_autocheckpoint", 2_000).map_err(from_sqlite)?;
        conn.set_prepared_statement_cache_capacity(32);
        if let Some(version) = schema::newer_than_known(&conn).map_err(from_sqlite)? {
            return Err(StoreError::Unavailable(format!(
                "{} has schema version {version}, written by a newer ordermill (this one knows up \
                 to {}): run that release, or restore a backup taken before the upgrade",
                path.display(),
                schema::latest()
            )));
        }
        schema::migrate(&mut conn).map_err(from_sqlite)?;

        // Bounded: callers wait for room instead of queueing without limit behind a writer
        // that is slower than they are (a disk that stalls, a burst of consumer batches).
        let (commands, receiver) = tokio::sync::mpsc::channel(WRITER_QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer::run(conn, receiver))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start writer thread: {error}"))
            })?;
        tracing::info!(path = %path.display(), "Opened SQLite store.");
        Ok(SqliteStore { commands, path, readers: Arc::default(), disk_full: Arc::default() })
    }

    /// Removes up to `limit` consumers' records of events made before `older_than` (see
    /// `sqlite.processed_retention`), in one short transaction, and says how many went. Call
    /// it again until it removes fewer than `limit`: each call is one chunk, so orders'
    /// commits never wait long behind it.
    ///
    /// # Errors
    /// When the writer cannot run it.
    pub async fn prune_processed(
        &self,
        older_than: UnixMillis,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let before = ordermill_core::first_id_at(older_than);
        self.written(|reply| Command::PruneProcessed { before, limit, reply }).await
    }

    /// [`SqliteStore::write`] for a command that answers with a `Result`, remembering whether
    /// the disk was full: `check_writable` (readiness) reports it until a write succeeds.
    async fn written<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<R, StoreError>>) -> Command,
    ) -> Result<R, StoreError> {
        let result = self.write(make).await?;
        match &result {
            Ok(_) => self.disk_full.store(false, Ordering::Relaxed),
            Err(error) if self::error::is_disk_full(error) => {
                self.disk_full.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Unavailable("SQLite writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("SQLite writer thread stopped mid-command".into()))
    }

    /// Runs `query` on a pooled read-only connection off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(from_sqlite)?;
                    conn.pragma_update(None, "busy_timeout", 5_000).map_err(from_sqlite)?;
                    conn
                }
            };
            let result = query(&conn);
            let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READ_POOL {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("read task failed: {error}")))?
    }

    async fn read_order(&self, sql: String, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| {
                    stmt.query_row([id.as_uuid().as_bytes()], rows::order_state).optional()
                })
                .map_err(from_sqlite)?
                .transpose()
                .map(|found| found.map(|(order, _)| order))
        })
        .await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn commit_orders(&self, batch: Arc<Vec<AcceptedOrder>>) -> Result<(), StoreError> {
        self.written(|reply| Command::CommitOrders { batch, reply }).await
    }

    async fn upsert_product(
        &self,
        product: &Product,
    ) -> Result<(Product, Option<Product>), StoreError> {
        let product = product.clone();
        self.written(|reply| Command::UpsertProduct { product, reply }).await
    }

    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError> {
        let sku = sku.to_string();
        self.read(move |conn| {
            let sql = format!("SELECT {} FROM products WHERE sku = ?1", rows::PRODUCT_COLUMNS);
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| stmt.query_row([sku], rows::product).optional())
                .map_err(from_sqlite)?
                .transpose()
        })
        .await
    }

    async fn load_products(&self) -> Result<Vec<Product>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {} FROM products ORDER BY sku", rows::PRODUCT_COLUMNS);
            let mut stmt = conn.prepare(&sql).map_err(from_sqlite)?;
            let products = stmt
                .query_map([], rows::product)
                .map_err(from_sqlite)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(from_sqlite)?;
            products.into_iter().collect()
        })
        .await
    }

    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let sql = format!("SELECT {} FROM orders WHERE id = ?1", rows::ORDER_COLUMNS);
        self.read_order(sql, id).await
    }

    async fn find_by_idempotency_key(
        &self,
        customer: &CustomerId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError> {
        let sql = format!(
            "SELECT {} FROM orders WHERE customer_id = ?1 AND idempotency_key = ?2",
            rows::ORDER_COLUMNS
        );
        let (customer, key) = (customer.as_str().to_owned(), key.as_str().to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| stmt.query_row([customer, key], rows::order_state).optional())
                .map_err(from_sqlite)?
                .transpose()
                .map(|found| found.map(|(order, _)| order))
        })
        .await
    }

    async fn find_by_idempotency_keys(
        &self,
        keys: &[(CustomerId, IdempotencyKey)],
    ) -> Result<Vec<Order>, StoreError> {
        // One trip to a reader thread; each key is an index probe there, no round trip.
        let sql = format!(
            "SELECT {} FROM orders WHERE customer_id = ?1 AND idempotency_key = ?2",
            rows::ORDER_COLUMNS
        );
        let keys: Vec<(String, String)> =
            keys.iter().map(|(c, k)| (c.as_str().to_owned(), k.as_str().to_owned())).collect();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(from_sqlite)?;
            let mut found = Vec::new();
            for (customer, key) in keys {
                if let Some(row) = stmt
                    .query_row([customer, key], rows::order_state)
                    .optional()
                    .map_err(from_sqlite)?
                {
                    found.push(row?.0);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn forget_idempotency_key(&self, order: OrderId) -> Result<(), StoreError> {
        self.written(|reply| Command::ForgetKey { order, reply }).await
    }

    async fn orders_of_customer(
        &self,
        customer: &CustomerId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        // Ids are UUIDv7: their byte order is creation order. Every id sorts below the
        // largest UUID, so no bound is the same query.
        let sql = format!(
            "SELECT {} FROM orders WHERE customer_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            rows::ORDER_COLUMNS
        );
        let customer = customer.as_str().to_owned();
        let before = before.map_or(Uuid::max(), |id| id.as_uuid());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(from_sqlite)?;
            let rows = stmt
                .query_map(
                    rusqlite::params![customer, before.as_bytes(), i64::from(limit)],
                    rows::order_state,
                )
                .map_err(from_sqlite)?;
            rows.map(|row| row.map_err(from_sqlite)?.map(|(order, _)| order)).collect()
        })
        .await
    }

    async fn find_orders(&self, query: OrderQuery) -> Result<Vec<Order>, StoreError> {
        let (condition, value) = crate::decode::filter_condition(query.filter, "?1");
        let sql = format!(
            "SELECT {} FROM orders WHERE {condition} AND id >= ?2 AND id < ?3 \
             ORDER BY id DESC LIMIT ?4",
            rows::ORDER_COLUMNS
        );
        let (low, high) = query.id_range();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(from_sqlite)?;
            let rows = stmt
                .query_map(
                    rusqlite::params![
                        value,
                        low.as_bytes(),
                        high.as_bytes(),
                        i64::from(query.limit)
                    ],
                    rows::order_state,
                )
                .map_err(from_sqlite)?;
            rows.map(|row| row.map_err(from_sqlite)?.map(|(order, _)| order)).collect()
        })
        .await
    }

    async fn due_payments(&self, now: UnixMillis, limit: u32) -> Result<Vec<OrderId>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT order_id FROM payment_deadlines WHERE pay_by <= ?1 \
                     ORDER BY pay_by LIMIT ?2",
                )
                .map_err(from_sqlite)?;
            stmt.query_map(rusqlite::params![now.0, i64::from(limit)], |row| {
                row.get::<_, Uuid>(0).map(OrderId::from_uuid)
            })
            .map_err(from_sqlite)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(from_sqlite)
        })
        .await
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM outbox", [], |row| row.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(from_sqlite)
        })
        .await
    }

    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError> {
        self.written(|reply| Command::ApplyEffects { effects, reply }).await
    }

    // No returns are noted here: the one node on this store sets its hot-stock counts from the
    // store at every start, so units a crash kept from the counts come back with the restart.
    async fn stock_returned(&self, _: Vec<OrderId>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn overdue_stock_returns(
        &self,
        _: std::time::Duration,
        _: u32,
    ) -> Result<Vec<OrderId>, StoreError> {
        Ok(Vec::new())
    }

    async fn processed(&self, consumer: &str, events: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        let consumer = consumer.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT 1 FROM processed_events WHERE consumer = ?1 AND event_id = ?2",
                )
                .map_err(from_sqlite)?;
            let mut done = Vec::new();
            for event in events {
                if stmt
                    .exists(rusqlite::params![consumer, event.as_bytes()])
                    .map_err(from_sqlite)?
                {
                    done.push(event);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        // After a disk-full failure, only a write that needs new space proves it is back;
        // otherwise taking the write lock is enough.
        let probe = self.disk_full.load(Ordering::Relaxed);
        self.written(|reply| Command::CheckWritable { probe, reply }).await
    }
}

#[async_trait]
impl BusLedger for SqliteStore {
    async fn unfinished(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        self.read(ledger::unfinished).await
    }

    async fn record_acks(
        &self,
        acks: Vec<(Arc<str>, Uuid)>,
        finished: Vec<Uuid>,
    ) -> Result<(), StoreError> {
        self.written(|reply| Command::RecordAcks { acks, finished, reply }).await
    }

    async fn record_retry(
        &self,
        queue: &str,
        event_id: Uuid,
        attempts: u32,
        not_before: UnixMillis,
        error: &str,
    ) -> Result<(), StoreError> {
        let (queue, error) = (queue.to_owned(), error.to_owned());
        self.written(|reply| Command::RecordRetry {
            queue,
            event: event_id,
            attempts,
            not_before,
            error,
            reply,
        })
        .await
    }

    async fn record_dead(
        &self,
        queue: &str,
        event_id: Uuid,
        attempts: u32,
        error: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let (queue, error) = (queue.to_owned(), error.to_owned());
        self.written(|reply| Command::RecordDead {
            queue,
            event: event_id,
            attempts,
            error,
            at,
            reply,
        })
        .await
    }

    async fn clear_dead(&self, queue: &str, events: Vec<Uuid>) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.written(|reply| Command::ClearDead { queue, events, reply }).await
    }
}

#[async_trait]
impl DealStore for SqliteStore {
    async fn create_deal(&self, deal: &Deal) -> Result<(), StoreError> {
        let deal = deal.clone();
        self.written(|reply| Command::CreateDeal { deal, reply }).await
    }

    async fn get_deal(&self, id: DealId) -> Result<Option<Deal>, StoreError> {
        self.read(move |conn| deals::load(conn, id)).await
    }

    async fn join_deal(
        &self,
        deal_id: DealId,
        order: AcceptedOrder,
        completion_event_ids: Vec<Uuid>,
        at: UnixMillis,
    ) -> Result<JoinOutcome, StoreError> {
        let join = crate::join::Join { deal_id, order, completion_ids: completion_event_ids, at };
        self.written(|reply| Command::JoinDeal { join, reply }).await
    }

    // One writer: a join's call ends only when its transaction has.
    async fn joined_order(
        &self,
        _deal_id: DealId,
        order_id: OrderId,
    ) -> Result<Option<Order>, StoreError> {
        OrderStore::get_order(self, order_id).await
    }

    async fn due_deals(&self, now: UnixMillis, limit: usize) -> Result<Vec<DealId>, StoreError> {
        self.read(move |conn| deals::due(conn, now, limit)).await
    }

    async fn deals_created(
        &self,
        range: (UnixMillis, UnixMillis),
        before: Option<DealId>,
        limit: u32,
    ) -> Result<Vec<DealId>, StoreError> {
        self.read(move |conn| deals::created(conn, range, before, limit)).await
    }

    async fn expire_deal(
        &self,
        deal_id: DealId,
        event_ids: Vec<Uuid>,
        at: UnixMillis,
    ) -> Result<Option<ExpiredDeal>, StoreError> {
        self.written(|reply| Command::ExpireDeal { deal_id, event_ids, at, reply }).await
    }
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn set_purchase_limit(&self, sku: &Sku, limit: Option<u32>) -> Result<(), StoreError> {
        let sku = sku.clone();
        self.written(|reply| Command::SetLimit { sku, limit, reply }).await
    }

    async fn purchase_limits(&self) -> Result<Vec<(Sku, u32)>, StoreError> {
        self.read(deals::limits).await
    }

    async fn units_by_customer(&self, sku: &Sku) -> Result<Vec<(CustomerId, u64)>, StoreError> {
        let sku = sku.clone();
        self.read(move |conn| deals::units_by_customer(conn, &sku)).await
    }
}

#[async_trait]
impl ordermill_core::ports::ReportStore for SqliteStore {
    async fn create_report(
        &self,
        report: &ordermill_core::report::Report,
    ) -> Result<(), StoreError> {
        let write = reports::Write::Create(Box::new(report.clone()));
        self.report_write(write).await.map(drop)
    }

    async fn get_report(
        &self,
        id: ordermill_core::report::ReportId,
    ) -> Result<Option<ordermill_core::report::Report>, StoreError> {
        self.read(move |conn| reports::get(conn, id)).await
    }

    async fn claim_report(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        rows_estimated: u64,
        now: UnixMillis,
        stale_before: UnixMillis,
    ) -> Result<ordermill_core::ports::Claim, StoreError> {
        let write =
            reports::Write::Claim { id, token, estimate: rows_estimated, now, stale_before };
        match self.report_write(write).await? {
            reports::Written::Claim(claim) => Ok(claim),
            other => {
                Err(StoreError::Unavailable(format!("the writer answered {other:?} to a claim")))
            }
        }
    }

    async fn report_progress(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        rows_done: u64,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.report_held(reports::Write::Progress { id, token, rows: rows_done, now }).await
    }

    async fn finish_report(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        rows_done: u64,
        size_bytes: u64,
        (now, expires_at): (UnixMillis, UnixMillis),
    ) -> Result<bool, StoreError> {
        let write = reports::Write::Finish {
            id,
            token,
            rows: rows_done,
            size: size_bytes,
            now,
            expires: expires_at,
        };
        self.report_held(write).await
    }

    async fn fail_report(
        &self,
        id: ordermill_core::report::ReportId,
        token: Uuid,
        error: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let error = error.to_owned();
        self.report_held(reports::Write::Fail { id, token, error, now }).await
    }

    async fn requeue_stalled(
        &self,
        stale_before: UnixMillis,
        asked_before: UnixMillis,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ordermill_core::report::ReportId>, StoreError> {
        match self
            .report_write(reports::Write::Requeue { stale_before, asked_before, now, limit })
            .await?
        {
            reports::Written::Requeued(ids) => Ok(ids),
            other => {
                Err(StoreError::Unavailable(format!("the writer answered {other:?} to a requeue")))
            }
        }
    }

    async fn expired_reports(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ordermill_core::report::ReportId>, StoreError> {
        self.read(move |conn| reports::expired(conn, now, limit)).await
    }

    async fn delete_report(&self, id: ordermill_core::report::ReportId) -> Result<(), StoreError> {
        self.report_write(reports::Write::Delete(id)).await.map(drop)
    }

    async fn count_orders(&self, from: UnixMillis, to: UnixMillis) -> Result<u64, StoreError> {
        self.read(move |conn| reports::count_orders(conn, from, to)).await
    }
}

impl SqliteStore {
    async fn report_write(&self, write: reports::Write) -> Result<reports::Written, StoreError> {
        self.written(|reply| Command::Report { write, reply }).await
    }

    /// A write made only while the run holds the report: whether it still did.
    async fn report_held(&self, write: reports::Write) -> Result<bool, StoreError> {
        match self.report_write(write).await? {
            reports::Written::Held(held) => Ok(held),
            other => Err(StoreError::Unavailable(format!("the writer answered {other:?}"))),
        }
    }
}
