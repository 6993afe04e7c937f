//! Reports in SQLite: writes go through the writer thread as one [`Write`] command each,
//! reads through the read connections. Same outcomes as `postgres/reports.rs`.

use ordermill_core::UnixMillis;
use ordermill_core::ports::StoreError;
use ordermill_core::ports::reports::Claim;
use ordermill_core::report::{Report, ReportId};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::error::from_sqlite;
use super::execute_cached;
use crate::decode::{REPORT_COLUMNS, ReportColumns, corrupt, stored_count};

/// A change to a report, run by the writer.
#[derive(Debug)]
pub(crate) enum Write {
    Create(Box<Report>),
    Claim { id: ReportId, token: Uuid, estimate: u64, now: UnixMillis, stale_before: UnixMillis },
    Progress { id: ReportId, token: Uuid, rows: u64, now: UnixMillis },
    Finish { id: ReportId, token: Uuid, rows: u64, size: u64, now: UnixMillis, expires: UnixMillis },
    Fail { id: ReportId, token: Uuid, error: String, now: UnixMillis },
    Delete(ReportId),
    Requeue { stale_before: UnixMillis, asked_before: UnixMillis, now: UnixMillis, limit: u32 },
}

/// What a [`Write`] did.
#[derive(Debug)]
pub(crate) enum Written {
    Done,
    Claim(Claim),
    /// Whether the run still held the report (and so the write was made).
    Held(bool),
    Requeued(Vec<ReportId>),
}

pub(crate) fn apply(conn: &mut Connection, write: Write) -> Result<Written, StoreError> {
    match write {
        Write::Create(report) => create(conn, &report).map(|()| Written::Done),
        Write::Claim { id, token, estimate, now, stale_before } => {
            claim(conn, id, token, estimate, now, stale_before).map(Written::Claim)
        }
        Write::Progress { id, token, rows, now } => held(
            conn,
            "UPDATE reports SET rows_done = ?3, touched_at = ?4
             WHERE id = ?1 AND run_token = ?2 AND status = 'running'",
            params![id.to_string(), token.to_string(), stored_count(rows), now.0],
        ),
        Write::Finish { id, token, rows, size, now, expires } => held(
            conn,
            "UPDATE reports SET status = 'done', rows_done = ?3, size_bytes = ?4, touched_at = ?5,
                    finished_at = ?5, expires_at = ?6
             WHERE id = ?1 AND run_token = ?2 AND status = 'running'",
            params![
                id.to_string(),
                token.to_string(),
                stored_count(rows),
                stored_count(size),
                now.0,
                expires.0
            ],
        ),
        Write::Fail { id, token, error, now } => held(
            conn,
            "UPDATE reports SET status = 'failed', error = ?3, touched_at = ?4, finished_at = ?4
             WHERE id = ?1 AND run_token = ?2 AND status = 'running'",
            params![id.to_string(), token.to_string(), error, now.0],
        ),
        Write::Requeue { stale_before, asked_before, now, limit } => {
            requeue(conn, stale_before, asked_before, now, limit).map(Written::Requeued)
        }
        Write::Delete(id) => conn
            .execute("DELETE FROM reports WHERE id = ?1", [id.to_string()])
            .map(|_| Written::Done)
            .map_err(from_sqlite),
    }
}

fn held(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Written, StoreError> {
    Ok(Written::Held(execute_cached(conn, sql, params)? == 1))
}

fn create(conn: &Connection, report: &Report) -> Result<(), StoreError> {
    let spec = &report.spec;
    conn.prepare_cached(
        "INSERT INTO reports (id, kind, format, range_from, range_to, status_filter, sku_filter,
                              status, created_at, touched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            report.id.to_string(),
            spec.kind.as_str(),
            spec.format.as_str(),
            spec.from.0,
            spec.to.0,
            spec.status.map(|s| s.as_str()),
            spec.sku.as_ref().map(|s| s.as_str()),
            report.status.as_str(),
            report.created_at.0,
        ])
    })
    .map(drop)
    .map_err(from_sqlite)
}

fn claim(
    conn: &mut Connection,
    id: ReportId,
    token: Uuid,
    estimate: u64,
    now: UnixMillis,
    stale_before: UnixMillis,
) -> Result<Claim, StoreError> {
    let tx = conn.transaction().map_err(from_sqlite)?;
    let changed = tx
        .prepare_cached(
            "UPDATE reports SET status = 'running', run_token = ?2, rows_done = 0,
                    rows_estimated = ?3, touched_at = ?4
             WHERE id = ?1 AND (status = 'queued' OR (status = 'running' AND touched_at < ?5))",
        )
        .and_then(|mut s| {
            s.execute(params![
                id.to_string(),
                token.to_string(),
                stored_count(estimate),
                now.0,
                stale_before.0
            ])
        })
        .map_err(from_sqlite)?;
    let report = get(&tx, id)?;
    tx.commit().map_err(from_sqlite)?;
    Ok(match report {
        None => Claim::Missing,
        Some(report) if changed == 1 => Claim::Claimed(report),
        Some(report) if report.status.is_final() => Claim::Finished(report),
        Some(_) => Claim::Busy,
    })
}

pub(crate) fn get(conn: &Connection, id: ReportId) -> Result<Option<Report>, StoreError> {
    let sql = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1");
    let columns = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row([id.to_string()], columns).optional())
        .map_err(from_sqlite)?;
    columns.map(|c| c?.into_report()).transpose()
}

fn columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ReportColumns, StoreError>> {
    let id: String = r.get(0)?;
    let id = match Uuid::try_parse(&id) {
        Ok(id) => id,
        Err(_) => return Ok(Err(corrupt(format!("report id {id:?} is not a UUID")))),
    };
    Ok(Ok(ReportColumns {
        id,
        kind: r.get(1)?,
        format: r.get(2)?,
        range_from: r.get(3)?,
        range_to: r.get(4)?,
        status_filter: r.get(5)?,
        sku_filter: r.get(6)?,
        status: r.get(7)?,
        rows_done: r.get(8)?,
        rows_estimated: r.get(9)?,
        error: r.get(10)?,
        created_at: r.get(11)?,
        finished_at: r.get(12)?,
        expires_at: r.get(13)?,
        size_bytes: r.get(14)?,
    }))
}

fn ids(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ReportId>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(from_sqlite)?;
    let rows = stmt.query_map(params, |r| r.get::<_, String>(0)).map_err(from_sqlite)?;
    rows.map(|id| ReportId::parse(&id.map_err(from_sqlite)?).map_err(corrupt)).collect()
}

fn requeue(
    conn: &mut Connection,
    stale_before: UnixMillis,
    asked_before: UnixMillis,
    now: UnixMillis,
    limit: u32,
) -> Result<Vec<ReportId>, StoreError> {
    let tx = conn.transaction().map_err(from_sqlite)?;
    let mut found = ids(
        &tx,
        "SELECT id FROM reports
         WHERE status IN ('queued', 'running') AND touched_at < ?1 AND created_at < ?2
         ORDER BY touched_at LIMIT ?3",
        params![stale_before.0, asked_before.0, i64::from(limit)],
    )?;
    for id in &found {
        tx.prepare_cached(
            "UPDATE reports SET status = 'queued', run_token = NULL, touched_at = ?2 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id.to_string(), now.0]))
        .map_err(from_sqlite)?;
    }
    tx.commit().map_err(from_sqlite)?;
    // In the order they were asked for (ids are UUIDv7), as the PostgreSQL store answers.
    found.sort();
    Ok(found)
}

pub(crate) fn expired(
    conn: &Connection,
    now: UnixMillis,
    limit: u32,
) -> Result<Vec<ReportId>, StoreError> {
    ids(
        conn,
        "SELECT id FROM reports WHERE expires_at IS NOT NULL AND expires_at <= ?1
         ORDER BY expires_at LIMIT ?2",
        params![now.0, i64::from(limit)],
    )
}

/// Orders created in `[from, to)`: ids are UUIDv7, so the range is a primary-key range.
pub(crate) fn count_orders(
    conn: &Connection,
    from: UnixMillis,
    to: UnixMillis,
) -> Result<u64, StoreError> {
    let (low, high) = crate::decode::id_bounds(from, to);
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM orders WHERE id >= ?1 AND id < ?2")
        .and_then(|mut s| s.query_row(params![low.as_bytes(), high.as_bytes()], |r| r.get(0)))
        .map_err(from_sqlite)?;
    Ok(n.max(0).unsigned_abs())
}
