//! The reports service over one SQLite store, for tests that build a `Pipeline` by hand.

use std::path::Path;
use std::sync::Arc;

use ordermill_core::SystemClock;
use ordermill_core::ports::EventBus;
use ordermill_server::services::reports::{ReportRules, Reports};
use ordermill_server::startup::settings::ReportSettings;
use ordermill_store::SqliteStore;
use ordermill_store::files::DirReportFiles;

/// Reports on `sqlite`, writing their files under `dir/reports`, with the default rules.
pub fn sqlite_reports(
    sqlite: &Arc<SqliteStore>,
    bus: Arc<dyn EventBus>,
    dir: &Path,
) -> Arc<Reports> {
    let work_dir = dir.join("reports");
    #[allow(clippy::unwrap_used)] // tests: a panic is the failure report
    let reports = Reports::new(
        sqlite.clone(),
        (sqlite.clone(), sqlite.clone()),
        Arc::new(DirReportFiles::open(&work_dir).unwrap()),
        bus,
        Arc::new(SystemClock),
        work_dir,
        ReportRules::from(&ReportSettings::default()),
    )
    .unwrap();
    Arc::new(reports)
}
