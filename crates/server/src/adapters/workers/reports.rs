//! The consumer of `reports`: each `report.requested` delivery runs its report
//! ([`crate::services::reports::Reports::run`]). A report already done, gone, or held by
//! another live run is acked without work; a store outage holds the delivery.

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::ports::Delivery;
use ordermill_core::report::ReportId;

use super::{Handler, Outcome};
use crate::services::reports::{Reports, RunOutcome};

/// Runs reports.
pub struct ReportRuns {
    reports: Arc<Reports>,
}

impl ReportRuns {
    /// The consumer over the reports service.
    pub fn new(reports: Arc<Reports>) -> Self {
        ReportRuns { reports }
    }
}

#[derive(serde::Deserialize)]
struct Request {
    report_id: String,
}

#[async_trait]
impl Handler for ReportRuns {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            let id = serde_json::from_str::<Request>(&delivery.envelope.payload)
                .ok()
                .and_then(|r| ReportId::parse(&r.report_id).ok());
            let Some(id) = id else {
                outcomes.push(Outcome::Dead("not a report request: no valid report_id".into()));
                continue;
            };
            outcomes.push(match self.reports.run(id).await {
                Ok(RunOutcome::Done { .. } | RunOutcome::Failed(_) | RunOutcome::Replaced) => {
                    Outcome::Ack
                }
                Ok(RunOutcome::Skipped(why)) => {
                    tracing::debug!(report_id = %id, why, "Report request acked without a run.");
                    Outcome::Ack
                }
                Err(error) => Outcome::Unavailable(error.to_string()),
            });
        }
        outcomes
    }
}
