//! Reports in PostgreSQL. Same outcomes as `sqlite/reports.rs`; a claim is one conditional
//! `UPDATE`, so two runs claiming at once take turns on the row and one of them wins.

use ordermill_core::UnixMillis;
use ordermill_core::ports::StoreError;
use ordermill_core::ports::reports::Claim;
use ordermill_core::report::{Report, ReportId};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::error::from_sqlx;
use crate::decode::{REPORT_COLUMNS, ReportColumns, stored_count};

pub(crate) async fn create(conn: &mut PgConnection, report: &Report) -> Result<(), StoreError> {
    let spec = &report.spec;
    sqlx::query(
        "INSERT INTO reports (id, kind, format, range_from, range_to, status_filter, sku_filter,
                              status, created_at, touched_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(report.id.as_uuid())
    .bind(spec.kind.as_str())
    .bind(spec.format.as_str())
    .bind(spec.from.0)
    .bind(spec.to.0)
    .bind(spec.status.map(|s| s.as_str()))
    .bind(spec.sku.as_ref().map(|s| s.as_str()))
    .bind(report.status.as_str())
    .bind(report.created_at.0)
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

pub(crate) async fn get(
    conn: &mut PgConnection,
    id: ReportId,
) -> Result<Option<Report>, StoreError> {
    let sql = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.map(|r| columns(&r)?.into_report()).transpose()
}

fn columns(r: &sqlx::postgres::PgRow) -> Result<ReportColumns, StoreError> {
    Ok(ReportColumns {
        id: r.try_get(0).map_err(from_sqlx)?,
        kind: r.try_get(1).map_err(from_sqlx)?,
        format: r.try_get(2).map_err(from_sqlx)?,
        range_from: r.try_get(3).map_err(from_sqlx)?,
        range_to: r.try_get(4).map_err(from_sqlx)?,
        status_filter: r.try_get(5).map_err(from_sqlx)?,
        sku_filter: r.try_get(6).map_err(from_sqlx)?,
        status: r.try_get(7).map_err(from_sqlx)?,
        rows_done: r.try_get(8).map_err(from_sqlx)?,
        rows_estimated: r.try_get(9).map_err(from_sqlx)?,
        error: r.try_get(10).map_err(from_sqlx)?,
        created_at: r.try_get(11).map_err(from_sqlx)?,
        finished_at: r.try_get(12).map_err(from_sqlx)?,
        expires_at: r.try_get(13).map_err(from_sqlx)?,
        size_bytes: r.try_get(14).map_err(from_sqlx)?,
    })
}

pub(crate) async fn claim(
    conn: &mut PgConnection,
    id: ReportId,
    token: Uuid,
    estimate: u64,
    now: UnixMillis,
    stale_before: UnixMillis,
) -> Result<Claim, StoreError> {
    let sql = format!(
        "UPDATE reports SET status = 'running', run_token = $2, rows_done = 0,
                rows_estimated = $3, touched_at = $4
         WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND touched_at < $5))
         RETURNING {REPORT_COLUMNS}"
    );
    let claimed = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .bind(token)
        .bind(stored_count(estimate))
        .bind(now.0)
        .bind(stale_before.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    if let Some(row) = claimed {
        return Ok(Claim::Claimed(columns(&row)?.into_report()?));
    }
    Ok(match get(&mut *conn, id).await? {
        None => Claim::Missing,
        Some(report) if report.status.is_final() => Claim::Finished(report),
        Some(_) => Claim::Busy,
    })
}

/// Runs `sql` (parameters: id, token, then `bind`'s) if the run holds the report.
async fn held<'q>(
    conn: &mut PgConnection,
    sql: &'static str,
    id: ReportId,
    token: Uuid,
    bind: impl FnOnce(
        sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<bool, StoreError> {
    let query = bind(sqlx::query(sql).bind(id.as_uuid()).bind(token));
    let changed = query.execute(&mut *conn).await.map_err(from_sqlx)?.rows_affected();
    Ok(changed == 1)
}

pub(crate) async fn progress(
    conn: &mut PgConnection,
    id: ReportId,
    token: Uuid,
    rows: u64,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    held(
        &mut *conn,
        "UPDATE reports SET rows_done = $3, touched_at = $4
         WHERE id = $1 AND run_token = $2 AND status = 'running'",
        id,
        token,
        |q| q.bind(stored_count(rows)).bind(now.0),
    )
    .await
}

pub(crate) async fn finish(
    conn: &mut PgConnection,
    id: ReportId,
    token: Uuid,
    (rows, size): (u64, u64),
    (now, expires): (UnixMillis, UnixMillis),
) -> Result<bool, StoreError> {
    held(
        &mut *conn,
        "UPDATE reports SET status = 'done', rows_done = $3, size_bytes = $4, touched_at = $5,
                finished_at = $5, expires_at = $6
         WHERE id = $1 AND run_token = $2 AND status = 'running'",
        id,
        token,
        |q| q.bind(stored_count(rows)).bind(stored_count(size)).bind(now.0).bind(expires.0),
    )
    .await
}

pub(crate) async fn fail(
    conn: &mut PgConnection,
    id: ReportId,
    token: Uuid,
    error: &str,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    let error = error.to_owned();
    held(
        &mut *conn,
        "UPDATE reports SET status = 'failed', error = $3, touched_at = $4, finished_at = $4
         WHERE id = $1 AND run_token = $2 AND status = 'running'",
        id,
        token,
        |q| q.bind(error).bind(now.0),
    )
    .await
}

async fn ids(
    conn: &mut PgConnection,
    query: sqlx::query::QueryScalar<'_, sqlx::Postgres, Uuid, sqlx::postgres::PgArguments>,
) -> Result<Vec<ReportId>, StoreError> {
    let ids = query.fetch_all(&mut *conn).await.map_err(from_sqlx)?;
    Ok(ids.into_iter().map(ReportId::from_uuid).collect())
}

pub(crate) async fn requeue(
    conn: &mut PgConnection,
    stale_before: UnixMillis,
    asked_before: UnixMillis,
    now: UnixMillis,
    limit: u32,
) -> Result<Vec<ReportId>, StoreError> {
    // SKIP LOCKED: two api nodes sweeping at once split the rows instead of waiting.
    let query = sqlx::query_scalar(
        "WITH waiting AS (
             SELECT id FROM reports
             WHERE status IN ('queued', 'running') AND touched_at < $1 AND created_at < $2
             ORDER BY touched_at LIMIT $3
             FOR UPDATE SKIP LOCKED
         )
         UPDATE reports r SET status = 'queued', run_token = NULL, touched_at = $4
         FROM waiting WHERE r.id = waiting.id
         RETURNING r.id",
    )
    .bind(stale_before.0)
    .bind(asked_before.0)
    .bind(i64::from(limit))
    .bind(now.0);
    let mut found = ids(&mut *conn, query).await?;
    // RETURNING gives no order; the oldest first, as asked (ids are UUIDv7: time-ordered).
    found.sort();
    Ok(found)
}

pub(crate) async fn expired(
    conn: &mut PgConnection,
    now: UnixMillis,
    limit: u32,
) -> Result<Vec<ReportId>, StoreError> {
    let query = sqlx::query_scalar(
        "SELECT id FROM reports WHERE expires_at IS NOT NULL AND expires_at <= $1
         ORDER BY expires_at LIMIT $2",
    )
    .bind(now.0)
    .bind(i64::from(limit));
    ids(&mut *conn, query).await
}

pub(crate) async fn delete(conn: &mut PgConnection, id: ReportId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM reports WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Orders created in `[from, to)`: a primary-key range (UUIDv7), pruned to the partitions it
/// covers.
pub(crate) async fn count_orders(
    conn: &mut PgConnection,
    from: UnixMillis,
    to: UnixMillis,
) -> Result<u64, StoreError> {
    let (low, high) = crate::decode::id_bounds(from, to);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id >= $1 AND id < $2")
        .bind(low)
        .bind(high)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(n.max(0).unsigned_abs())
}
