//! Report files in PostgreSQL (`report_files`, 0008): every api node can stream any report's
//! download, with no shared file system. A put streams the local file in `FILE_CHUNK` pieces
//! into one transaction that first drops the report's earlier chunks.

use std::path::Path;

use async_trait::async_trait;
use ordermill_core::ports::{ReportFiles, StoreError};
use ordermill_core::report::ReportId;
use sqlx::Connection;

use super::PostgresStore;
use super::error::from_sqlx;
use crate::deadline::{Limit, bounded};
use crate::files::Chunks;

#[async_trait]
impl ReportFiles for PostgresStore {
    async fn put(&self, id: ReportId, path: &Path) -> Result<u64, StoreError> {
        let mut chunks = Chunks::open(path).await?;
        let size = bounded!(self, Limit::Long, "a report file's upload", |conn| async {
            let mut tx = conn.begin().await.map_err(from_sqlx)?;
            sqlx::query("DELETE FROM report_files WHERE report_id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            let (mut seq, mut size) = (0i32, 0u64);
            while let Some(chunk) = chunks.next().await? {
                size += chunk.len() as u64;
                sqlx::query("INSERT INTO report_files (report_id, seq, data) VALUES ($1, $2, $3)")
                    .bind(id.as_uuid())
                    .bind(seq)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await
                    .map_err(from_sqlx)?;
                seq += 1;
            }
            tx.commit().await.map_err(from_sqlx)?;
            Ok(size)
        })?;
        chunks.remove().await;
        Ok(size)
    }

    async fn chunk(&self, id: ReportId, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(seq) = i32::try_from(index) else { return Ok(None) };
        bounded!(self, Limit::Query, "reading a report file", |conn| async {
            sqlx::query_scalar("SELECT data FROM report_files WHERE report_id = $1 AND seq = $2")
                .bind(id.as_uuid())
                .bind(seq)
                .fetch_optional(conn)
                .await
                .map_err(from_sqlx)
        })
    }

    async fn remove(&self, id: ReportId) -> Result<(), StoreError> {
        bounded!(self, Limit::Query, "removing a report file", |conn| async {
            sqlx::query("DELETE FROM report_files WHERE report_id = $1")
                .bind(id.as_uuid())
                .execute(conn)
                .await
                .map_err(from_sqlx)
        })?;
        Ok(())
    }
}
