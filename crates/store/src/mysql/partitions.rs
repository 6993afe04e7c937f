//! Partition maintenance on MySQL: `orders` and `processed_events` are partitioned by RANGE
//! COLUMNS on their UUIDv7 key (0001), ending in a catch-all `p_future` (MAXVALUE). Each run
//! splits the coming days off `p_future` (`REORGANIZE PARTITION`, which moves only the rows
//! `p_future` holds: none, normally) and drops `processed_events` partitions whose every
//! event is older than the retention (`DROP PARTITION`: whole, no row-by-row delete).
//!
//! The first split of a table that already holds rows puts every older row into the first
//! daily partition (its lower bound is the previous partition's upper bound: none); that
//! partition is dropped from `processed_events` once its own day has passed the retention.

use std::time::Duration;

use ordermill_core::ports::StoreError;
use sqlx::MySqlConnection;

use super::error::from_sqlx;
use super::migrations::{lock_schema, unlock_schema};
use crate::partitions::{
    DAYS_AHEAD, MIN_RETENTION, Maintenance, day_of, day_of_partition, first_id_of, partition_name,
};

/// Splits the next [`DAYS_AHEAD`] days off `p_future` where missing, and drops the
/// `processed_events` partitions older than `retention` (at least [`MIN_RETENTION`]), by the
/// database's clock, under the schema lock (one process at a time, never mid-migration).
///
/// Without `retention` (a migration), nothing is dropped.
pub(crate) async fn maintain(
    conn: &mut MySqlConnection,
    retention: Option<Duration>,
) -> Result<Maintenance, StoreError> {
    let retention = retention.map(|r| r.max(MIN_RETENTION));
    lock_schema(conn).await?;
    let done = maintain_locked(conn, retention).await;
    unlock_schema(conn).await;
    done
}

async fn maintain_locked(
    conn: &mut sqlx::MySqlConnection,
    retention: Option<Duration>,
) -> Result<Maintenance, StoreError> {
    let now: i64 =
        sqlx::query_scalar(super::NOW_MS).fetch_one(&mut *conn).await.map_err(from_sqlx)?;
    let today = day_of(now);
    let mut done = Maintenance::default();
    for table in ["orders", "processed_events"] {
        let days = daily_partitions(conn, table).await?;
        let newest = days.iter().copied().max().unwrap_or(i64::MIN);
        let new_days: Vec<i64> =
            (today..=today + i64::from(DAYS_AHEAD)).filter(|d| *d > newest).collect();
        if new_days.is_empty() {
            continue;
        }
        let mut parts: Vec<String> = new_days
            .iter()
            .map(|day| {
                format!(
                    "PARTITION {} VALUES LESS THAN (X'{}')",
                    partition_name(*day),
                    first_id_of(day + 1).simple()
                )
            })
            .collect();
        parts.push("PARTITION p_future VALUES LESS THAN (MAXVALUE)".to_owned());
        // The table name is one of the two above and the bounds are hex digits: no input.
        let sql = format!(
            "ALTER TABLE {table} REORGANIZE PARTITION p_future INTO ({})",
            parts.join(", ")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(from_sqlx)?;
        done.created.extend(new_days.iter().map(|d| format!("{table}_{}", partition_name(*d))));
    }
    let Some(retention) = retention else { return Ok(done) };
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now.saturating_sub(retention_ms);
    let expired: Vec<i64> = daily_partitions(conn, "processed_events")
        .await?
        .into_iter()
        // Every event of day d is older than the first moment of day d + 1.
        .filter(|day| (day + 1) * 86_400_000 <= cutoff)
        .collect();
    if !expired.is_empty() {
        let names: Vec<String> = expired.iter().map(|d| partition_name(*d)).collect();
        let sql = format!("ALTER TABLE processed_events DROP PARTITION {}", names.join(", "));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(from_sqlx)?;
        done.dropped.extend(names.iter().map(|n| format!("processed_events_{n}")));
    }
    Ok(done)
}

/// The days of `table`'s daily partitions (not `p_future`).
pub(crate) async fn daily_partitions(
    conn: &mut sqlx::MySqlConnection,
    table: &str,
) -> Result<Vec<i64>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT PARTITION_NAME FROM information_schema.PARTITIONS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(names.iter().filter_map(|n| day_of_partition(n)).collect())
}
