//! Versioned schema migrations, embedded from `migrations/mysql/NNNN_name.sql`.
//!
//! MySQL commits each DDL statement by itself, so a migration cannot be one transaction as on
//! PostgreSQL. Instead: every statement of a migration is written to be run again (`IF NOT
//! EXISTS`), the migration is recorded in `schema_migrations` only after its last statement,
//! and processes migrating at once serialise on a named lock (`GET_LOCK`) held by one
//! connection for the whole run — the second finds the work done.

use sqlx::mysql::MySqlConnection;
use sqlx::{Acquire, MySqlPool};

use ordermill_core::ports::StoreError;

use super::error::from_sqlx;

/// `(version, name, sql)`, in order. Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_init", include_str!("../../migrations/mysql/0001_init.sql")),
    (2, "0002_stock_returns", include_str!("../../migrations/mysql/0002_stock_returns.sql")),
];

/// How long a process waits for another's migration or maintenance to finish.
const LOCK_WAIT_SECS: i64 = 600;

/// The statements of a migration file: split after each `;` that ends a line, comment lines
/// dropped. (The files are ours: no `;` ends a line inside a string.)
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The named lock of this database's schema changes (names are server-wide: the database's
/// name keeps two ordermill databases on one server apart).
const LOCK_NAME: &str = "CONCAT('ordermill.schema.', DATABASE())";

/// Holds the schema lock on `conn` until [`unlock_schema`] (or the connection closes).
pub(crate) async fn lock_schema(conn: &mut MySqlConnection) -> Result<(), StoreError> {
    let got: Option<i64> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT GET_LOCK({LOCK_NAME}, ?)")))
            .bind(LOCK_WAIT_SECS)
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    if got != Some(1) {
        return Err(StoreError::Unavailable(format!(
            "another process held the schema lock for {LOCK_WAIT_SECS}s (a migration or \
             partition maintenance still running?); try again when it is done"
        )));
    }
    Ok(())
}

pub(crate) async fn unlock_schema(conn: &mut MySqlConnection) {
    let released = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT RELEASE_LOCK({LOCK_NAME})")))
        .execute(&mut *conn)
        .await;
    if let Err(error) = released {
        // The lock goes with the connection anyway; the pool drops a broken one.
        tracing::debug!(error = %error, "Could not release the MySQL schema lock.");
    }
}

/// Applies every migration not yet recorded; returns the names of those it applied.
pub(crate) async fn migrate(pool: &MySqlPool) -> Result<Vec<String>, StoreError> {
    let mut pooled = pool.acquire().await.map_err(from_sqlx)?;
    let conn = pooled.acquire().await.map_err(from_sqlx)?;
    lock_schema(conn).await?;
    let applied = migrate_locked(conn).await;
    unlock_schema(conn).await;
    applied
}

async fn migrate_locked(conn: &mut MySqlConnection) -> Result<Vec<String>, StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INT NOT NULL PRIMARY KEY,
             name        VARCHAR(100) NOT NULL,
             applied_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
         ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    )
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let done: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        for statement in statements(sql) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await
                .map_err(from_sqlx)?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
            .bind(version)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        tracing::info!(version, name, "Applied MySQL schema migration.");
        applied.push((*name).to_owned());
    }
    Ok(applied)
}

/// The migrations not yet applied, in order (all of them on a database never migrated).
pub(crate) async fn pending(pool: &MySqlPool) -> Result<Vec<String>, StoreError> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'schema_migrations'",
    )
    .fetch_one(pool)
    .await
    .map_err(from_sqlx)?;
    let applied: Vec<i32> = if exists > 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_file_splits_into_its_statements_without_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (\n  x INT -- inline\n);\n\n\
                   -- another\nCREATE TABLE b (y INT);\n";
        let found = statements(sql);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("CREATE TABLE a (") && !found[0].ends_with(';'));
        assert_eq!(found[1], "CREATE TABLE b (y INT)");
    }

    #[test]
    fn the_shipped_migration_is_only_statements_that_can_run_again() {
        for (_, name, sql) in MIGRATIONS {
            for statement in statements(sql) {
                assert!(
                    statement.starts_with("CREATE TABLE IF NOT EXISTS"),
                    "{name}: {statement:.60} cannot be run twice"
                );
            }
        }
    }
}
