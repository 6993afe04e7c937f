//! Storage of reports (报表): their rows in the store of record, claimed by one run at a time.
//!
//! A run claims a report with a fresh token; its progress, completion and failure are only
//! written while the report still carries that token. A run presumed dead (no progress for a
//! while) can so be replaced by a new one, and the old one, if it was only slow, can no longer
//! touch the report: a report is never done twice, as two different files.

use async_trait::async_trait;
use uuid::Uuid;

use crate::clock::UnixMillis;
use crate::ports::store::StoreError;
use crate::report::{Report, ReportId};

/// What [`ReportStore::claim_report`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The report is this run's now.
    Claimed(Report),
    /// Done or failed already: nothing to run.
    Finished(Report),
    /// Another run holds it and showed progress within the stale window.
    Busy,
    /// No such report (expired and removed, or never asked for).
    Missing,
}

/// Durable reports.
#[async_trait]
pub trait ReportStore: Send + Sync + 'static {
    /// Stores a report just asked for (status `queued`).
    ///
    /// # Errors
    /// A backend failure; nothing was written.
    async fn create_report(&self, report: &Report) -> Result<(), StoreError>;

    /// One report.
    ///
    /// # Errors
    /// A backend failure or a row that does not parse.
    async fn get_report(&self, id: ReportId) -> Result<Option<Report>, StoreError>;

    /// Claims the report for a run with `token` at `now`: granted when it is queued, or
    /// running without progress since `stale_before` (its run is presumed dead). The claim
    /// sets status `running`, clears the progress and records `rows_estimated`.
    ///
    /// # Errors
    /// A backend failure.
    async fn claim_report(
        &self,
        id: ReportId,
        token: Uuid,
        rows_estimated: u64,
        now: UnixMillis,
        stale_before: UnixMillis,
    ) -> Result<Claim, StoreError>;

    /// Records `rows_done` for the run holding `token`; `false` if another run holds it now.
    ///
    /// # Errors
    /// A backend failure.
    async fn report_progress(
        &self,
        id: ReportId,
        token: Uuid,
        rows_done: u64,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;

    /// Marks the report done (its file stored: `size_bytes`, kept until `expires_at`) for the
    /// run holding `token`; `false` if another run holds it now (its file must not be kept).
    ///
    /// # Errors
    /// A backend failure.
    async fn finish_report(
        &self,
        id: ReportId,
        token: Uuid,
        rows_done: u64,
        size_bytes: u64,
        (now, expires_at): (UnixMillis, UnixMillis),
    ) -> Result<bool, StoreError>;

    /// Marks the report failed with `error` for the run holding `token`; `false` if another
    /// run holds it now.
    ///
    /// # Errors
    /// A backend failure.
    async fn fail_report(
        &self,
        id: ReportId,
        token: Uuid,
        error: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;

    /// Puts back in the queue the reports that wait for a run: queued, or running without
    /// progress, since before `stale_before`, and asked for before `asked_before` (a fresh one
    /// is still on its way to a worker): the longest silent first, at most `limit`, returned
    /// in the order they were asked for. Each is marked queued
    /// again at `now` (its run, if only slow, can no longer write) and returned, for the caller
    /// to send its request again: the first may have been lost (a node stopped before it
    /// reached the bus), and a dead run's report starts over. Marking them touched sends each
    /// again at most once per stale window.
    ///
    /// # Errors
    /// A backend failure.
    async fn requeue_stalled(
        &self,
        stale_before: UnixMillis,
        asked_before: UnixMillis,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ReportId>, StoreError>;

    /// Reports whose file expires at or before `now`, at most `limit`.
    ///
    /// # Errors
    /// A backend failure.
    async fn expired_reports(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ReportId>, StoreError>;

    /// Removes the report's row (its file is removed first, by the caller).
    ///
    /// # Errors
    /// A backend failure.
    async fn delete_report(&self, id: ReportId) -> Result<(), StoreError>;

    /// How many orders were created in `[from, to)`: a report's `rows_estimated`.
    ///
    /// # Errors
    /// A backend failure.
    async fn count_orders(&self, from: UnixMillis, to: UnixMillis) -> Result<u64, StoreError>;
}

/// How report files are read back: in chunks of this many bytes.
pub const FILE_CHUNK: usize = 1 << 20;

/// Where finished report files are kept until they expire.
#[async_trait]
pub trait ReportFiles: Send + Sync + 'static {
    /// Keeps the file at `path` (written by a run on this machine) as report `id`'s, replacing
    /// any earlier one, and returns its size. `path` is consumed (moved or deleted).
    ///
    /// # Errors
    /// A backend failure; nothing is kept for the report then.
    async fn put(&self, id: ReportId, path: &std::path::Path) -> Result<u64, StoreError>;

    /// The `index`th chunk of [`FILE_CHUNK`] bytes of report `id`'s file (the last may be
    /// shorter); `None` past its end or when it has no file.
    ///
    /// # Errors
    /// A backend failure.
    async fn chunk(&self, id: ReportId, index: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes report `id`'s file; removing one that is gone is no error.
    ///
    /// # Errors
    /// A backend failure.
    async fn remove(&self, id: ReportId) -> Result<(), StoreError>;
}
