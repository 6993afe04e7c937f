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
    // 6: order, event and deal ids as their 16 bytes instead of 36 characters of text, in every
    // key and every index that holds one (each order's rows carry about ten of them). UUIDv7
    // bytes sort as their text did, so ranges and "newest first" read the same. STRICT BLOB
    // columns refuse a text id outright. SQLite cannot change a column's type in place: each
    // table is copied into its new shape. Reports keep text ids: one row per report, off the
    // order path.
    r#"
    CREATE TABLE orders_v6 (
        id               BLOB PRIMARY KEY,
        customer_id      TEXT NOT NULL,
        status           TEXT NOT NULL,
        total_minor      INTEGER NOT NULL,
        items            TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        idempotency_key  TEXT,
        stock_state      TEXT NOT NULL DEFAULT 'held',
        payment_state    TEXT NOT NULL DEFAULT 'pending',
        history          TEXT,
        pay_by           INTEGER,
        payment_url      TEXT
    ) STRICT, WITHOUT ROWID;
    INSERT INTO orders_v6
        SELECT unhex(replace(id, '-', '')), customer_id, status, total_minor, items, created_at,
               idempotency_key, stock_state, payment_state, history, pay_by, payment_url
        FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_v6 RENAME TO orders;
    CREATE INDEX orders_by_customer ON orders (customer_id, id);
    CREATE UNIQUE INDEX orders_idempotency_key ON orders (customer_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE outbox_v6 (
        event_id     BLOB PRIMARY KEY,
        order_id     BLOB NOT NULL,
        routing_key  TEXT NOT NULL,
        payload      TEXT,
        created_at   INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO outbox_v6
        SELECT unhex(replace(event_id, '-', '')), unhex(replace(order_id, '-', '')), routing_key,
               payload, created_at
        FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v6 RENAME TO outbox;

    CREATE TABLE bus_acks_v6 (
        event_id  BLOB NOT NULL,
        queue     TEXT NOT NULL,
        PRIMARY KEY (event_id, queue)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO bus_acks_v6 SELECT unhex(replace(event_id, '-', '')), queue FROM bus_acks;
    DROP TABLE bus_acks;
    ALTER TABLE bus_acks_v6 RENAME TO bus_acks;

    CREATE TABLE bus_retries_v6 (
        queue       TEXT NOT NULL,
        event_id    BLOB NOT NULL,
        attempts    INTEGER NOT NULL,
        not_before  INTEGER NOT NULL,
        error       TEXT NOT NULL,
        PRIMARY KEY (queue, event_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO bus_retries_v6
        SELECT queue, unhex(replace(event_id, '-', '')), attempts, not_before, error
        FROM bus_retries;
    DROP TABLE bus_retries;
    ALTER TABLE bus_retries_v6 RENAME TO bus_retries;

    CREATE TABLE bus_dead_letters_v6 (
        queue     TEXT NOT NULL,
        event_id  BLOB NOT NULL,
        attempts  INTEGER NOT NULL,
        error     TEXT NOT NULL,
        died_at   INTEGER NOT NULL,
        PRIMARY KEY (queue, event_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO bus_dead_letters_v6
        SELECT queue, unhex(replace(event_id, '-', '')), attempts, error, died_at
        FROM bus_dead_letters;
    DROP TABLE bus_dead_letters;
    ALTER TABLE bus_dead_letters_v6 RENAME TO bus_dead_letters;

    CREATE TABLE processed_events_v6 (
        consumer  TEXT NOT NULL,
        event_id  BLOB NOT NULL,
        PRIMARY KEY (consumer, event_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO processed_events_v6
        SELECT consumer, unhex(replace(event_id, '-', '')) FROM processed_events;
    DROP TABLE processed_events;
    ALTER TABLE processed_events_v6 RENAME TO processed_events;

    CREATE TABLE payments_v6 (
        order_id  BLOB PRIMARY KEY,
        status    TEXT NOT NULL,
        event_id  BLOB NOT NULL,
        at        INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO payments_v6
        SELECT unhex(replace(order_id, '-', '')), status, unhex(replace(event_id, '-', '')), at
        FROM payments;
    DROP TABLE payments;
    ALTER TABLE payments_v6 RENAME TO payments;

    CREATE TABLE deals_v6 (
        id                BLOB PRIMARY KEY,
        sku               TEXT NOT NULL,
        deal_price_minor  INTEGER NOT NULL CHECK (deal_price_minor >= 0),
        group_size        INTEGER NOT NULL CHECK (group_size >= 2),
        created_at        INTEGER NOT NULL,
        expires_at        INTEGER NOT NULL,
        status            TEXT NOT NULL,
        closed_at         INTEGER
    ) STRICT, WITHOUT ROWID;
    INSERT INTO deals_v6
        SELECT unhex(replace(id, '-', '')), sku, deal_price_minor, group_size, created_at,
               expires_at, status, closed_at
        FROM deals;
    DROP TABLE deals;
    ALTER TABLE deals_v6 RENAME TO deals;
    CREATE INDEX deals_open_by_deadline ON deals (expires_at) WHERE status = 'open';

    CREATE TABLE deal_members_v6 (
        deal_id      BLOB NOT NULL,
        customer_id  TEXT NOT NULL,
        order_id     BLOB NOT NULL,
        joined_at    INTEGER NOT NULL,
        PRIMARY KEY (deal_id, customer_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO deal_members_v6
        SELECT unhex(replace(deal_id, '-', '')), customer_id, unhex(replace(order_id, '-', '')),
               joined_at
        FROM deal_members;
    DROP TABLE deal_members;
    ALTER TABLE deal_members_v6 RENAME TO deal_members;

    CREATE TABLE payment_deadlines_v6 (
        order_id  BLOB PRIMARY KEY,
        pay_by    INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO payment_deadlines_v6
        SELECT unhex(replace(order_id, '-', '')), pay_by FROM payment_deadlines;
    DROP TABLE payment_deadlines;
    ALTER TABLE payment_deadlines_v6 RENAME TO payment_deadlines;
    CREATE INDEX payment_deadlines_by_time ON payment_deadlines (pay_by);
    "#,
    // 7: consumers' records keyed by event first. Keyed by consumer, each order's four
    // records went to four places in the tree (the end of each consumer's range), each a
    // page of its own in every commit; keyed by the time-ordered event id, they append
    // together at the tree's right edge. Lookups name both columns, so either order serves
    // them; retention deletes the oldest events, now one range at the start.
    r#"
    CREATE TABLE processed_events_v7 (
        event_id  BLOB NOT NULL,
        consumer  TEXT NOT NULL,
        PRIMARY KEY (event_id, consumer)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO processed_events_v7 (event_id, consumer)
        SELECT event_id, consumer FROM processed_events ORDER BY event_id, consumer;
    DROP TABLE processed_events;
    ALTER TABLE processed_events_v7 RENAME TO processed_events;
    "#,
];

/// Brings the database to the latest schema.
///
/// # Errors
/// When a migration fails; the failing migration's transaction is rolled back.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// The schema version of a data dir written by a newer release than this one, which this
/// release must not touch (its statements would not match the tables).
pub(super) fn newer_than_known(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok((current > MIGRATIONS.len() as i64).then_some(current))
}

/// The latest schema version this release knows.
pub(super) fn latest() -> usize {
    MIGRATIONS.len()
}

/// [`migrate`], stopping at schema version `target` (tests build older data dirs with it).
pub(super) fn migrate_to(conn: &mut Connection, target: usize) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let pending = MIGRATIONS.iter().enumerate().take(target).skip(current.max(0) as usize);
    for (version, sql) in pending {
        // Some copy whole tables (6: ~9 s per million orders; 7: ~5 s per million orders'
        // consumer records): say so before the pause.
        tracing::info!(version = version + 1, "Applying SQLite schema migration.");
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "Applied SQLite schema migration.");
    }
    Ok(())
}
