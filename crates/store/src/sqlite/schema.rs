//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`. Append only: never edit a
/// migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: catalog, orders (items as one JSON column: one row per order keeps the group commit
    // cheap), the outbox, and the embedded bus's and consumers' bookkeeping.
    r#"
    CREATE TABLE products (
        sku          TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        price_minor  INTEGER NOT NULL CHECK (price_minor >= 0),
        stock        INTEGER NOT NULL CHECK (stock >= 0),
        reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0)
    ) STRICT;
    CREATE TABLE orders (
        id               TEXT PRIMARY KEY,
        customer_id      TEXT NOT NULL,
        status           TEXT NOT NULL,
        total_minor      INTEGER NOT NULL,
        items            TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        idempotency_key  TEXT,
        stock_state      TEXT NOT NULL DEFAULT 'held',
        payment_state    TEXT NOT NULL DEFAULT 'pending',
        -- JSON [{"status", "at"}] of statuses after 'accepted'; NULL while there are none.
        history          TEXT
    ) STRICT, WITHOUT ROWID;
    -- Partial: most orders carry no key, and an index entry per order would cost every commit.
    CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    -- One row per event until every bound queue is done with it. payload is NULL for
    -- order.created: the body is rebuilt from the order. Keyed by the UUIDv7 event id, so
    -- rows sort by time and inserts append.
    CREATE TABLE outbox (
        event_id     TEXT PRIMARY KEY,
        order_id     TEXT NOT NULL,
        routing_key  TEXT NOT NULL,
        payload      TEXT,
        created_at   INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE bus_acks (
        event_id  TEXT NOT NULL,
        queue     TEXT NOT NULL,
        PRIMARY KEY (event_id, queue)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE bus_retries (
        queue       TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        not_before  INTEGER NOT NULL,
        error       TEXT NOT NULL,
        PRIMARY KEY (queue, event_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE bus_dead_letters (
        queue     TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        attempts  INTEGER NOT NULL,
        error     TEXT NOT NULL,
        died_at   INTEGER NOT NULL,
        PRIMARY KEY (queue, event_id)
    ) STRICT, WITHOUT ROWID;
    -- "consumer X processed event E", written in the transaction of X's effect.
    CREATE TABLE processed_events (
        consumer  TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        PRIMARY KEY (consumer, event_id)
    ) STRICT, WITHOUT ROWID;
    -- The payment ledger: one row per order the gateway charged or declined.
    CREATE TABLE payments (
        order_id  TEXT PRIMARY KEY,
        status    TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        at        INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: group-buy deals and their members; per-customer purchase limits.
    r#"
    CREATE TABLE deals (
        id                TEXT PRIMARY KEY,
        sku               TEXT NOT NULL,
        deal_price_minor  INTEGER NOT NULL CHECK (deal_price_minor >= 0),
        group_size        INTEGER NOT NULL CHECK (group_size >= 2),
        created_at        INTEGER NOT NULL,
        expires_at        INTEGER NOT NULL,
        status            TEXT NOT NULL,
        closed_at         INTEGER
    ) STRICT, WITHOUT ROWID;
    -- The expiry scheduler's query: open deals by deadline. Partial, so closed deals cost
    -- nothing here.
    CREATE INDEX deals_open_by_deadline ON deals (expires_at) WHERE status = 'open';
    -- The primary key is the "joins a deal at most once" rule.
    CREATE TABLE deal_members (
        deal_id      TEXT NOT NULL,
        customer_id  TEXT NOT NULL,
        order_id     TEXT NOT NULL,
        joined_at    INTEGER NOT NULL,
        PRIMARY KEY (deal_id, customer_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE purchase_limits (
        sku                 TEXT PRIMARY KEY,
        per_customer_limit  INTEGER NOT NULL CHECK (per_customer_limit >= 1)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: a customer's own orders, newest first (GET /api/customers/me/orders); idempotency
    // keys per customer, so one customer's key never answers another's request.
    r#"
    CREATE INDEX orders_by_customer ON orders (customer_id, id);
    DROP INDEX orders_idempotency_key;
    CREATE UNIQUE INDEX orders_idempotency_key ON orders (customer_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    "#,
    // 4: pay-later orders. An awaiting order's payment URL and deadline live on its row (read
    // with it); the deadlines still to watch live in a table of their own, a row only while
    // the order awaits payment, so the scheduler's query reads a few rows, never the orders.
    r#"
    ALTER TABLE orders ADD COLUMN pay_by INTEGER;
    ALTER TABLE orders ADD COLUMN payment_url TEXT;
    CREATE TABLE payment_deadlines (
        order_id  TEXT PRIMARY KEY,
        pay_by    INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX payment_deadlines_by_time ON payment_deadlines (pay_by);
    "#,
    // 5: reports (报表). One row per report; run_token names the run that holds it, so a run
    // presumed dead and replaced can no longer finish it. The partial indexes keep the
    // sweeper's and the expiry's queries to the few rows they look for.
    r#"
    CREATE TABLE reports (
        id              TEXT PRIMARY KEY,
        kind            TEXT NOT NULL,
        format          TEXT NOT NULL,
        range_from      INTEGER NOT NULL,
        range_to        INTEGER NOT NULL,
        status_filter   TEXT,
        sku_filter      TEXT,
        status          TEXT NOT NULL,
        rows_done       INTEGER NOT NULL DEFAULT 0,
        rows_estimated  INTEGER,
        error           TEXT,
        created_at      INTEGER NOT NULL,
        touched_at      INTEGER NOT NULL,
        finished_at     INTEGER,
        expires_at      INTEGER,
        size_bytes      INTEGER,
        run_token       TEXT
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX reports_waiting ON reports (touched_at) WHERE status IN ('queued', 'running');
    CREATE INDEX reports_expiring ON reports (expires_at) WHERE expires_at IS NOT NULL;
    "#,
];

/// Brings the database to the latest schema.
///
/// # Errors
/// When a migration fails; the failing migration's transaction is rolled back.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "Applied SQLite schema migration.");
    }
    Ok(())
}
