//! Keeping the partitioned tables (0005) in shape: daily partitions of `orders` and
//! `processed_events` created ahead, and `processed_events` partitions past their retention
//! dropped whole. The work itself is in SQL functions of the migration, so `ordermill
//! migrate`, `ordermill maintain` and the api nodes' timer all do exactly the same thing.

use std::time::Duration;

use ordermill_core::ports::StoreError;
use sqlx::{Connection, PgConnection};

use super::error::from_sqlx;
use super::migrations::lock_schema;

pub use crate::partitions::{DAYS_AHEAD, MIN_RETENTION, Maintenance};

/// Creates the partitions [`DAYS_AHEAD`] and drops the `processed_events` partitions that
/// hold only events older than `retention` (at least [`MIN_RETENTION`]), by the database's
/// clock, under the migrations' advisory lock (never in the middle of a migration, one node at
/// a time).
pub(crate) async fn maintain(
    conn: &mut PgConnection,
    retention: Duration,
) -> Result<Maintenance, StoreError> {
    let retention = retention.max(MIN_RETENTION);
    let millis = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    lock_schema(&mut tx).await?;
    let created: Vec<String> = sqlx::query_scalar("SELECT ordermill_ensure_partitions($1)")
        .bind(DAYS_AHEAD)
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    let dropped: Vec<String> = sqlx::query_scalar(
        "SELECT ordermill_drop_processed_before(now() - $1::bigint * interval '1 millisecond')",
    )
    .bind(millis)
    .fetch_one(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(Maintenance { created, dropped })
}
