//! Reports (报表): asking for one, running it, and keeping the files tidy.
//!
//! A request is a `reports` row (the source of truth) and a `report.requested` message on the
//! bus. A run claims the row with a token, reads the store page by page, writes the file on
//! this machine, hands it to the file store and marks the row done, all only while it still
//! holds the claim. The sweeper, on api and serve nodes, sends again the requests of reports
//! that wait without progress (a request lost before it reached the bus, a run that died) and
//! removes expired files. docs/ARCHITECTURE.md, "Reports", says why it is built this way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::ports::{
    Claim, DealStore, EventBus, OrderFilter, OrderQuery, OrderStore, ReportFiles, ReportStore,
    StoreError,
};
use ordermill_core::report::{
    Report, ReportId, ReportKind, ReportSpec, SalesBySku, deal_row, includes, order_row,
    payment_row,
};
use ordermill_core::{Clock, OrderIdGenerator, RoutingKey, UnixMillis};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub mod idle_thread;
pub mod writer;

use self::idle_thread::{IdleThread, ThreadGone};
use self::writer::{RowWriter, WriteError};

/// Reports sent again per sweep, at most.
const SWEEP_BATCH: u32 = 100;
/// What one slice of a paced count should take.
const COUNT_SLICE: Duration = Duration::from_millis(10);
/// Progress is written at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// How reports run and how long their files are kept.
#[derive(Debug, Clone)]
pub struct ReportRules {
    /// A finished file is kept this long.
    pub keep: Duration,
    /// A run silent this long is presumed dead; its report starts over.
    pub stale_after: Duration,
    /// Orders read per page.
    pub page_size: u32,
    /// Format pages and files under `SCHED_IDLE` (only when the CPU is otherwise idle).
    pub idle_priority: bool,
    /// The percent of its time a run may spend reading the store (1–100).
    pub read_share: u8,
}

impl From<&crate::startup::settings::ReportSettings> for ReportRules {
    fn from(settings: &crate::startup::settings::ReportSettings) -> Self {
        ReportRules {
            keep: settings.keep.get(),
            stale_after: settings.stale_after.get(),
            page_size: settings.page_size,
            idle_priority: settings.idle_priority,
            read_share: settings.read_share,
        }
    }
}

/// Why a report request or read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such report (never asked for, or expired and removed).
    #[error("no report {0}; reports are kept until their expires_at")]
    NotFound(ReportId),
    /// Its file is not written yet (or the report failed).
    #[error("report {id} is {status}, not done; GET /api/reports/{id} shows its progress")]
    NotReady {
        /// The report.
        id: ReportId,
        /// Its status.
        status: &'static str,
    },
    /// The store could not answer.
    #[error("the store cannot answer: {0}")]
    Store(#[from] StoreError),
}

/// What one run of a report came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Written and marked done by this run.
    Done { rows: u64, size: u64 },
    /// It could not be written; the report is marked failed with why.
    Failed(String),
    /// Nothing to do: done or failed already, gone, or another run holds it.
    Skipped(&'static str),
    /// This run lost its claim (presumed dead and replaced): its file was thrown away.
    Replaced,
}

/// The reports service.
pub struct Reports {
    store: Arc<dyn ReportStore>,
    orders: Arc<dyn OrderStore>,
    deals: Arc<dyn DealStore>,
    files: Arc<dyn ReportFiles>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    ids: OrderIdGenerator,
    work_dir: PathBuf,
    rules: ReportRules,
    /// Formats pages and assembles files: CPU work that must not slow intake
    /// (`reports.idle_priority`). One per node, so reports take at most one core together.
    cpu: IdleThread,
}

impl Reports {
    /// The service over these parts; runs write their files in `work_dir` first.
    ///
    /// # Errors
    /// The report thread could not be started.
    #[allow(clippy::too_many_arguments)] // the parts it is made of, named once at start-up
    pub fn new(
        store: Arc<dyn ReportStore>,
        (orders, deals): (Arc<dyn OrderStore>, Arc<dyn DealStore>),
        files: Arc<dyn ReportFiles>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        work_dir: PathBuf,
        rules: ReportRules,
    ) -> std::io::Result<Self> {
        let cpu = IdleThread::start("ordermill-report", rules.idle_priority)?;
        Ok(Reports {
            store,
            orders,
            deals,
            files,
            bus,
            clock,
            ids: OrderIdGenerator::new(),
            work_dir,
            rules,
            cpu,
        })
    }

    /// The current time, for ranges given relative to now.
    pub fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// Asks for a report: durable once this returns; it runs on a consumer of `reports`.
    ///
    /// # Errors
    /// The store's failure (nothing asked then).
    pub async fn request(&self, spec: ReportSpec) -> Result<Report, ReportError> {
        let now = self.clock.now();
        let report = Report::queued(ReportId::from_uuid(self.ids.next_uuid(now)), spec, now);
        self.store.create_report(&report).await?;
        tracing::info!(report_id = %report.id, kind = report.spec.kind.as_str(), format = report.spec.format.as_str(), "Report requested.");
        self.send(report.id).await;
        Ok(report)
    }

    /// One report.
    ///
    /// # Errors
    /// [`ReportError::NotFound`] or the store's failure.
    pub async fn get(&self, id: ReportId) -> Result<Report, ReportError> {
        self.store.get_report(id).await?.ok_or(ReportError::NotFound(id))
    }

    /// A done report, for its download.
    ///
    /// # Errors
    /// [`ReportError::NotFound`], [`ReportError::NotReady`] or the store's failure.
    pub async fn downloadable(&self, id: ReportId) -> Result<Report, ReportError> {
        let report = self.get(id).await?;
        if report.status != ordermill_core::report::ReportStatus::Done {
            return Err(ReportError::NotReady { id, status: report.status.as_str() });
        }
        Ok(report)
    }

    /// The `index`th chunk of a done report's file.
    ///
    /// # Errors
    /// The file store's failure.
    pub async fn chunk(&self, id: ReportId, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.files.chunk(id, index).await
    }

    /// Sends the report's request to the bus. A failure is logged, not returned: the row is
    /// the request, and the sweeper sends it again.
    async fn send(&self, id: ReportId) {
        let event_id = self.ids.next_uuid(self.clock.now());
        let envelope = ordermill_core::ports::Envelope {
            event_id,
            routing_key: Arc::from(RoutingKey::ReportRequested.as_str()),
            payload: Arc::from(json!({"event_id": event_id, "report_id": id}).to_string()),
        };
        if let Err(error) = self.bus.publish(vec![envelope]).await {
            tracing::warn!(report_id = %id, error = %error, "Could not send a report request to the bus; the sweeper sends it again.");
        }
    }

    /// Runs report `id`: the consumer of `reports` calls this for each request.
    ///
    /// # Errors
    /// The store's failure before the run could claim or record anything (the request is then
    /// held and tried again).
    pub async fn run(&self, id: ReportId) -> Result<RunOutcome, StoreError> {
        let Some(report) = self.store.get_report(id).await? else {
            return Ok(RunOutcome::Skipped("no such report"));
        };
        if report.status.is_final() {
            return Ok(RunOutcome::Skipped("finished already"));
        }
        let estimate = match report.spec.kind {
            ReportKind::Deals => self.deal_ids(&report.spec).await?.len() as u64,
            _ => self.count_orders(&report.spec).await?,
        };
        let token = uuid::Uuid::now_v7();
        let now = self.clock.now();
        let stale_before = UnixMillis(now.0.saturating_sub(millis(self.rules.stale_after)));
        let report = match self.store.claim_report(id, token, estimate, now, stale_before).await? {
            Claim::Claimed(report) => report,
            Claim::Finished(_) => return Ok(RunOutcome::Skipped("finished already")),
            Claim::Busy => return Ok(RunOutcome::Skipped("another run holds it")),
            Claim::Missing => return Ok(RunOutcome::Skipped("no such report")),
        };
        tracing::info!(report_id = %id, rows_estimated = estimate, "Report running.");
        self.remove_abandoned_parts();
        let path = self.work_dir.join(format!("{id}.{token}.part"));
        let written = self.write(&report, token, &path).await;
        let rows = match written {
            Ok(Some(rows)) => rows,
            Ok(None) => {
                let _ = std::fs::remove_file(&path);
                tracing::warn!(report_id = %id, "Report run replaced by another; its file is dropped.");
                return Ok(RunOutcome::Replaced);
            }
            Err(RunError::Store(error)) => {
                // The store, not the report: held and tried again (the claim lapses, then the
                // sweeper sends it again).
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                let why = error.to_string();
                tracing::error!(report_id = %id, error = %why, "Report failed.");
                self.store.fail_report(id, token, &why, self.clock.now()).await?;
                return Ok(RunOutcome::Failed(why));
            }
        };
        // Still ours? The claim is refreshed, so no other run takes over during the hand-over
        // to the file store (which must take less than `stale_after`).
        if !self.store.report_progress(id, token, rows, self.clock.now()).await? {
            let _ = std::fs::remove_file(&path);
            return Ok(RunOutcome::Replaced);
        }
        let size = match self.files.put(id, &path).await {
            Ok(size) => size,
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        let now = self.clock.now();
        let expires = UnixMillis(now.0.saturating_add(millis(self.rules.keep)));
        if !self.store.finish_report(id, token, rows, size, (now, expires)).await? {
            return Ok(RunOutcome::Replaced);
        }
        tracing::info!(report_id = %id, rows, size_bytes = size, "Report done.");
        Ok(RunOutcome::Done { rows, size })
    }

    /// Removes what runs killed on this machine left in the work dir: `.part` files untouched
    /// for longer than a live run ever leaves one (it writes a page at a time).
    fn remove_abandoned_parts(&self) {
        let Ok(entries) = std::fs::read_dir(&self.work_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let abandoned = path.extension().is_some_and(|e| e == "part")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .is_some_and(|age| age > self.rules.stale_after);
            if abandoned && std::fs::remove_file(&path).is_ok() {
                tracing::info!(file = %path.display(), "Removed a report file a killed run left.");
            }
        }
    }

    /// Waits after a store read that took `took`, so reads take `read_share` percent of a
    /// run's time at most.
    async fn pace(&self, took: Duration) -> Duration {
        let share = u32::from(self.rules.read_share.clamp(1, 100));
        let pause = took * (100 - share) / share;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        pause
    }

    /// The orders in the report's range, for `rows_estimated`. A count over 10⁶ orders is a
    /// second of a core in one statement, so it goes in slices of the range sized to take
    /// about [`COUNT_SLICE`] each, paced like the pages.
    async fn count_orders(&self, spec: &ReportSpec) -> Result<u64, StoreError> {
        let (from, to) = (spec.from.0, spec.to.0);
        let mut width = (to.saturating_sub(from) / 16).max(1);
        let (mut at, mut total, mut slices, mut reading) = (from, 0, 0u32, Duration::ZERO);
        let started_count = Instant::now();
        while at < to {
            let end = at.saturating_add(width).min(to);
            let started = Instant::now();
            total += self.store.count_orders(UnixMillis(at), UnixMillis(end)).await?;
            let took = started.elapsed();
            self.pace(took).await;
            (slices, reading) = (slices + 1, reading + took);
            at = end;
            width = if took < COUNT_SLICE / 2 {
                width.saturating_mul(2)
            } else if took > COUNT_SLICE * 2 {
                (width / 2).max(1)
            } else {
                width
            };
        }
        tracing::debug!(
            orders = total,
            slices,
            read_ms = reading.as_millis(),
            total_ms = started_count.elapsed().as_millis(),
            "Report counted its orders."
        );
        Ok(total)
    }

    /// Every deal created in the report's range, newest first (deals are few: ids only).
    async fn deal_ids(&self, spec: &ReportSpec) -> Result<Vec<ordermill_core::DealId>, StoreError> {
        let mut all = Vec::new();
        loop {
            let page =
                self.deals.deals_created((spec.from, spec.to), all.last().copied(), 10_000).await?;
            let last = page.len() < 10_000;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// Writes a `deals` report: one row per deal, read one at a time.
    async fn write_deals(
        &self,
        report: &Report,
        token: uuid::Uuid,
        writer: &mut RowWriter,
    ) -> Result<Option<u64>, RunError> {
        let mut rows = 0u64;
        let mut reported = Instant::now();
        for id in self.deal_ids(&report.spec).await? {
            let Some(deal) = self.deals.get_deal(id).await? else { continue };
            if report.spec.sku.as_ref().is_some_and(|sku| sku != &deal.sku) {
                continue;
            }
            writer.write(&deal_row(&deal))?;
            rows += 1;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                if !self.store.report_progress(report.id, token, rows, self.clock.now()).await? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(rows))
    }

    /// Writes the report's file at `path`: `Some(rows)`, or `None` if the run lost its claim.
    async fn write(
        &self,
        report: &Report,
        token: uuid::Uuid,
        path: &std::path::Path,
    ) -> Result<Option<u64>, RunError> {
        let spec = &report.spec;
        let mut writer = RowWriter::create(spec.format, path, spec.kind.columns())?;
        if spec.kind == ReportKind::Deals {
            let Some(rows) = self.write_deals(report, token, &mut writer).await? else {
                return Ok(None);
            };
            return self.finish(writer).await.map(|()| Some(rows));
        }
        let mut sales = SalesBySku::default();
        let filter = match (spec.kind, spec.status) {
            (ReportKind::SalesBySku, _) => {
                OrderFilter::Status(ordermill_core::OrderStatus::Confirmed)
            }
            (_, Some(status)) => OrderFilter::Status(status),
            (_, None) => OrderFilter::Any,
        };
        let (mut rows, mut read, mut before) = (0u64, 0u64, None);
        let mut reported = Instant::now();
        let (mut reading, mut paused, mut formatting) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        loop {
            let started = Instant::now();
            let page = self
                .orders
                .find_orders(OrderQuery {
                    filter,
                    since: spec.from,
                    until: UnixMillis(spec.to.0.saturating_sub(1)),
                    before,
                    limit: self.rules.page_size,
                })
                .await?;
            let took = started.elapsed();
            reading += took;
            paused += self.pace(took).await;
            let formatted = Instant::now();
            let last = page.len() < self.rules.page_size as usize;
            before = page.last().map(|o| o.id);
            read += page.len() as u64;
            // Formatting a page is a millisecond of CPU or more (XLSX): on the report thread,
            // so intake keeps the cores.
            let page_spec = spec.clone();
            let (back, written) = self
                .cpu
                .run(move || {
                    let (mut writer, mut sales) = (writer, sales);
                    let written = write_page(&page_spec, &page, &mut writer, &mut sales);
                    ((writer, sales), written)
                })
                .await?;
            (writer, sales) = back;
            formatting += formatted.elapsed();
            rows += written?;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                let done = if spec.kind == ReportKind::SalesBySku { read } else { rows };
                if !self.store.report_progress(report.id, token, done, self.clock.now()).await? {
                    return Ok(None);
                }
            }
            if last || before.is_none() {
                break;
            }
        }
        if spec.kind == ReportKind::SalesBySku {
            for row in sales.rows() {
                writer.write(&row)?;
            }
            rows = sales.len() as u64;
        }
        tracing::debug!(
            report_id = %report.id,
            read_ms = reading.as_millis(),
            paused_ms = paused.as_millis(),
            format_ms = formatting.as_millis(),
            "Report read its pages."
        );
        self.finish(writer).await.map(|()| Some(rows))
    }

    /// Completes the file: assembling an XLSX zips the whole sheet, seconds for a large one.
    async fn finish(&self, writer: RowWriter) -> Result<(), RunError> {
        self.cpu.run(move || writer.finish()).await??;
        Ok(())
    }

    /// Sends again the requests of reports waiting without progress, and removes expired
    /// files. Returns (sent again, removed).
    ///
    /// # Errors
    /// The store's failure.
    pub async fn sweep(&self) -> Result<(usize, usize), StoreError> {
        let now = self.clock.now();
        let stale_before = UnixMillis(now.0.saturating_sub(millis(self.rules.stale_after)));
        let requeued =
            self.store.requeue_stalled(stale_before, stale_before, now, SWEEP_BATCH).await?;
        for id in &requeued {
            tracing::warn!(report_id = %id, "Report waited without progress; sending its request again.");
            self.send(*id).await;
        }
        let expired = self.store.expired_reports(now, SWEEP_BATCH).await?;
        for id in &expired {
            self.files.remove(*id).await?;
            self.store.delete_report(*id).await?;
            tracing::info!(report_id = %id, "Report expired; its file is removed.");
        }
        Ok((requeued.len(), expired.len()))
    }

    /// Sweeps every `every` until `stop`.
    pub async fn sweep_every(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            if let Err(error) = self.sweep().await {
                tracing::warn!(error = %error, "Report sweep failed; trying again at the next one.");
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Why writing a report's file stopped.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot read the orders: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Thread(#[from] ThreadGone),
}

/// Writes the rows of one page of orders (or adds them to the sales totals); returns the rows
/// written.
fn write_page(
    spec: &ReportSpec,
    page: &[ordermill_core::Order],
    writer: &mut RowWriter,
    sales: &mut SalesBySku,
) -> Result<u64, WriteError> {
    let mut rows = 0;
    for order in page.iter().filter(|o| includes(spec, o)) {
        match spec.kind {
            ReportKind::SalesBySku => sales.add(order, spec.sku.as_ref()),
            ReportKind::Payments => {
                writer.write(&payment_row(order))?;
                rows += 1;
            }
            _ => {
                writer.write(&order_row(order))?;
                rows += 1;
            }
        }
    }
    Ok(rows)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
