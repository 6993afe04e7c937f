//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`. Append only: never edit a
/// migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: catalog, orders (items as one JSON column: one row per order keeps the group commit
    // cheap), outbox.
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
        idempotency_key  TEXT
    ) STRICT, WITHOUT ROWID;
    -- Partial: most orders carry no key, and an index entry per order would cost every commit.
    CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    -- payload is NULL for order.created: the event body is rebuilt from the order when it is
    -- relayed. seq orders the rows present (no AUTOINCREMENT: it costs a write per insert).
    CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY,
        -- UUIDv7 made by intake; consumers deduplicate on it. Not indexed: nothing looks an
        -- event up by id here, and an index would be one more B-tree written per commit.
        event_id     TEXT NOT NULL,
        order_id     TEXT NOT NULL,
        routing_key  TEXT NOT NULL,
        payload      TEXT,
        created_at   INTEGER NOT NULL
    ) STRICT;
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
