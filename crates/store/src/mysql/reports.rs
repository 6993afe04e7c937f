//! Reports in MySQL. Same outcomes as the other stores; a claim is one conditional `UPDATE`,
//! so two runs claiming at once take turns on the row and one of them wins.

use async_trait::async_trait;
use ordermill_core::UnixMillis;
use ordermill_core::ports::reports::Claim;
use ordermill_core::ports::{ReportStore, StoreError};
use ordermill_core::report::{Report, ReportId};
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use uuid::Uuid;

use super::MysqlStore;
use super::error::{TxError, from_sqlx};
use super::tx::transaction;
use crate::deadline::{Limit, bounded};
use crate::decode::{REPORT_COLUMNS, ReportColumns, stored_count};

type Query<'q> = sqlx::query::Query<'q, MySql, MySqlArguments>;

fn columns(r: &MySqlRow) -> Result<ReportColumns, StoreError> {
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

async fn get(conn: &mut MySqlConnection, id: ReportId) -> Result<Option<Report>, StoreError> {
    let sql = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.map(|r| columns(&r)?.into_report()).transpose()
}

/// Runs `query` (its parameters bound by the caller, the id and token last) and says whether
/// it changed the report's row: whether the run still holds it.
async fn held(conn: &mut MySqlConnection, query: Query<'_>) -> Result<bool, StoreError> {
    Ok(query.execute(conn).await.map_err(from_sqlx)?.rows_affected() == 1)
}

async fn ids(
    conn: &mut MySqlConnection,
    sql: &'static str,
    binds: &[i64],
) -> Result<Vec<ReportId>, StoreError> {
    let mut query = sqlx::query_scalar::<_, Uuid>(sql);
    for value in binds {
        query = query.bind(*value);
    }
    let ids = query.fetch_all(conn).await.map_err(from_sqlx)?;
    Ok(ids.into_iter().map(ReportId::from_uuid).collect())
}

/// Stale or queued reports asked before `asked_before`, put back to `queued`. SKIP LOCKED:
/// two api nodes sweeping at once split the rows instead of waiting.
async fn requeue_in(
    conn: &mut MySqlConnection,
    (stale_before, asked_before, now, limit): (i64, i64, i64, i64),
) -> Result<Vec<ReportId>, TxError> {
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM reports
         WHERE status IN ('queued', 'running') AND touched_at < ? AND created_at < ?
         ORDER BY touched_at LIMIT ?
         FOR UPDATE SKIP LOCKED",
    )
    .bind(stale_before)
    .bind(asked_before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if !found.is_empty() {
        let mut update = QueryBuilder::<MySql>::new(
            "UPDATE reports SET status = 'queued', run_token = NULL, touched_at = ",
        );
        update.push_bind(now).push(" WHERE id IN (");
        let mut list = update.separated(", ");
        for id in &found {
            list.push_bind(*id);
        }
        update.push(")");
        update.build().execute(&mut *conn).await?;
    }
    let mut found: Vec<ReportId> = found.into_iter().map(ReportId::from_uuid).collect();
    // The oldest first, as asked (ids are UUIDv7: time-ordered).
    found.sort();
    Ok(found)
}

#[async_trait]
impl ReportStore for MysqlStore {
    async fn create_report(&self, report: &Report) -> Result<(), StoreError> {
        let spec = &report.spec;
        bounded!(self, Limit::Query, "creating a report", |conn| async {
            sqlx::query(
                "INSERT INTO reports (id, kind, format, range_from, range_to, status_filter,
                                  sku_filter, status, created_at, touched_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .bind(report.created_at.0)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?;
            Ok(())
        })
    }

    async fn get_report(&self, id: ReportId) -> Result<Option<Report>, StoreError> {
        bounded!(self, Limit::Query, "reading a report", |conn| get(conn, id))
    }

    async fn claim_report(
        &self,
        id: ReportId,
        token: Uuid,
        rows_estimated: u64,
        now: UnixMillis,
        stale_before: UnixMillis,
    ) -> Result<Claim, StoreError> {
        let (claimed, report) = bounded!(self, Limit::Query, "claiming a report", |conn| async {
            let claimed = sqlx::query(
                "UPDATE reports SET status = 'running', run_token = ?, rows_done = 0,
                    rows_estimated = ?, touched_at = ?
             WHERE id = ? AND (status = 'queued' OR (status = 'running' AND touched_at < ?))",
            )
            .bind(token)
            .bind(stored_count(rows_estimated))
            .bind(now.0)
            .bind(id.as_uuid())
            .bind(stale_before.0)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .rows_affected();
            Ok((claimed, get(conn, id).await?))
        })?;
        Ok(match report {
            // Ours unless another run claimed it between the UPDATE and this read, which the
            // token on the row would show; the run then finds out at its first progress.
            Some(report) if claimed == 1 => Claim::Claimed(report),
            None => Claim::Missing,
            Some(report) if report.status.is_final() => Claim::Finished(report),
            Some(_) => Claim::Busy,
        })
    }

    async fn report_progress(
        &self,
        id: ReportId,
        token: Uuid,
        rows_done: u64,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE reports SET rows_done = ?, touched_at = ?
             WHERE id = ? AND run_token = ? AND status = 'running'",
        )
        .bind(stored_count(rows_done))
        .bind(now.0)
        .bind(id.as_uuid())
        .bind(token);
        bounded!(self, Limit::Query, "a report's progress", |conn| held(conn, query))
    }

    async fn finish_report(
        &self,
        id: ReportId,
        token: Uuid,
        rows_done: u64,
        size_bytes: u64,
        (now, expires): (UnixMillis, UnixMillis),
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE reports SET status = 'done', rows_done = ?, size_bytes = ?, touched_at = ?,
                    finished_at = ?, expires_at = ?
             WHERE id = ? AND run_token = ? AND status = 'running'",
        )
        .bind(stored_count(rows_done))
        .bind(stored_count(size_bytes))
        .bind(now.0)
        .bind(now.0)
        .bind(expires.0)
        .bind(id.as_uuid())
        .bind(token);
        bounded!(self, Limit::Query, "finishing a report", |conn| held(conn, query))
    }

    async fn fail_report(
        &self,
        id: ReportId,
        token: Uuid,
        error: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE reports SET status = 'failed', error = ?, touched_at = ?, finished_at = ?
             WHERE id = ? AND run_token = ? AND status = 'running'",
        )
        .bind(error.to_owned())
        .bind(now.0)
        .bind(now.0)
        .bind(id.as_uuid())
        .bind(token);
        bounded!(self, Limit::Query, "failing a report", |conn| held(conn, query))
    }

    async fn requeue_stalled(
        &self,
        stale_before: UnixMillis,
        asked_before: UnixMillis,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ReportId>, StoreError> {
        let args = (stale_before.0, asked_before.0, now.0, i64::from(limit));
        bounded!(self, Limit::Query, "requeueing stalled reports", |conn| async {
            transaction!(conn, |tx| requeue_in(&mut tx, args))
        })
    }

    async fn expired_reports(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ReportId>, StoreError> {
        let sql = "SELECT id FROM reports WHERE expires_at IS NOT NULL AND expires_at <= ?
             ORDER BY expires_at LIMIT ?";
        let binds = [now.0, i64::from(limit)];
        bounded!(self, Limit::Query, "listing expired reports", |conn| ids(conn, sql, &binds))
    }

    async fn delete_report(&self, id: ReportId) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "deleting a report", |conn| async {
            sqlx::query("DELETE FROM reports WHERE id = ?")
                .bind(id.as_uuid())
                .execute(conn)
                .await
                .map_err(from_sqlx)?;
            Ok(())
        })
    }

    async fn count_orders(&self, from: UnixMillis, to: UnixMillis) -> Result<u64, StoreError> {
        let (low, high) = crate::decode::id_bounds(from, to);
        let n: i64 = bounded!(self, Limit::Long, "counting a report's orders", |conn| async {
            sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE id >= ? AND id < ?")
                .bind(low)
                .bind(high)
                .fetch_one(conn)
                .await
                .map_err(from_sqlx)
        })?;
        Ok(n.max(0).unsigned_abs())
    }
}
