//! Versioned schema migrations, embedded in the binary from `migrations/postgres/NNNN_name.sql`.
//!
//! Each migration runs in a transaction of its own with its `schema_migrations` row, under a
//! transaction-scoped advisory lock keyed by the current schema: two processes migrating at
//! once (two api nodes starting together) take turns, and the second finds the work done.

use sqlx::PgPool;

use ordermill_core::ports::StoreError;

use super::error::from_sqlx;

/// `(version, name, sql)`, in order. Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_init", include_str!("../../migrations/postgres/0001_init.sql")),
    (2, "0002_deals", include_str!("../../migrations/postgres/0002_deals.sql")),
    (3, "0003_customer_scope", include_str!("../../migrations/postgres/0003_customer_scope.sql")),
    (4, "0004_stock_guard", include_str!("../../migrations/postgres/0004_stock_guard.sql")),
    (5, "0005_partitions", include_str!("../../migrations/postgres/0005_partitions.sql")),
    (6, "0006_customer_units", include_str!("../../migrations/postgres/0006_customer_units.sql")),
    (7, "0007_pay_later", include_str!("../../migrations/postgres/0007_pay_later.sql")),
    (8, "0008_reports", include_str!("../../migrations/postgres/0008_reports.sql")),
    (9, "0009_orders_room", include_str!("../../migrations/postgres/0009_orders_room.sql")),
    (10, "0010_stock_returns", include_str!("../../migrations/postgres/0010_stock_returns.sql")),
    (11, "0011_outbox_batches", include_str!("../../migrations/postgres/0011_outbox_batches.sql")),
];

/// First half of the advisory lock key ("om" in ASCII): keeps our lock apart from any other
/// application's advisory locks in the same database. The second half is the schema's hash.
const LOCK_CLASS: i32 = 0x6f6d;

/// Takes the schema's advisory lock until `tx` ends: schema changes (migrations, partition
/// maintenance) from several processes then take turns.
pub(crate) async fn lock_schema(tx: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(LOCK_CLASS)
        .execute(tx)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Applies every migration not yet recorded; returns the names of those it applied.
pub(crate) async fn migrate(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let mut tx = pool.begin().await.map_err(from_sqlx)?;
        lock_schema(&mut tx).await?;
        // Created under the lock, so two first runs cannot race on the catalog.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     integer PRIMARY KEY,
                 name        text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )",
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let done: Option<i32> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        if done.is_some() {
            // Nothing to do. Rolled back here, not by dropping `tx`: a dropped transaction is
            // rolled back later by a task on the runtime, and until then it holds the advisory
            // lock and its locks on the schema (a test that drops the schema right after would
            // wait on it for ever).
            tx.rollback().await.map_err(from_sqlx)?;
            continue;
        }
        // Simple-query protocol: a migration file holds several statements.
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(from_sqlx)?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        tracing::info!(version, name, "Applied PostgreSQL schema migration.");
        applied.push((*name).to_owned());
    }
    Ok(applied)
}

/// The migrations not yet applied to the current schema, in order (all of them on a schema
/// that was never migrated).
pub(crate) async fn pending(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    // to_regclass: NULL instead of an error when the table does not exist.
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('schema_migrations')::text")
            .fetch_one(pool)
            .await
            .map_err(from_sqlx)?;
    let applied: Vec<i32> = if exists.is_some() {
        sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .filter(|(version, _, _)| !applied.contains(version))
        .map(|(_, name, _)| (*name).to_owned())
        .collect())
}
