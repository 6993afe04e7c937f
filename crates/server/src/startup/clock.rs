//! Whose time a node keeps. Scaled out, every node takes the shared database's (PostgreSQL's
//! or MySQL's): deal deadlines, order
//! and event times and the time inside ids then come from one authority, so a node whose own
//! clock is off (or is stepped) neither expires deals early nor admits late joins. Between
//! readings the time runs on the machine's monotonic clock ([`AnchoredClock`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::settings::Settings;
use super::sql_store::SqlStore;
use crate::StartError;
use ordermill_core::{AnchoredClock, Clock, SystemClock};

/// How often the database's clock is read again (bounds the drift between readings).
const RESYNC: Duration = Duration::from_secs(60);
/// A correction above this is logged: some node's clock, or the database's, is off.
const NOTEWORTHY_MS: i64 = 1_000;

/// The clock a node on these settings keeps: the system's for the embedded store, the shared
/// database's otherwise.
///
/// # Errors
/// When the database cannot be reached or read ([`StartError::is_engine_unavailable`] says
/// whether waiting helps).
pub async fn for_node(settings: &Settings) -> Result<Arc<dyn Clock>, StartError> {
    if settings.store.shared().is_none() {
        return Ok(Arc::new(SystemClock));
    }
    let store = SqlStore::open(settings, Some(1)).await?;
    let (at, when) = store.database_time().await.map_err(StartError::Database)?;
    let clock = Arc::new(AnchoredClock::new(at, when));
    let local = SystemClock.now().0 - at.0;
    if local.abs() > NOTEWORTHY_MS {
        tracing::warn!(
            offset_ms = local,
            engine = store.engine(),
            "This machine's clock and the database's disagree; this node keeps the database's time."
        );
    }
    tokio::spawn(resync(Arc::downgrade(&clock), store));
    Ok(clock)
}

/// Reads the database's clock every [`RESYNC`] until the node's clock is dropped.
async fn resync(clock: Weak<AnchoredClock>, store: SqlStore) {
    loop {
        tokio::time::sleep(RESYNC).await;
        let Some(clock) = clock.upgrade() else { break };
        match store.database_time().await {
            Ok((at, when)) => {
                let moved = clock.anchor(at, when);
                if moved.abs() > NOTEWORTHY_MS {
                    tracing::warn!(
                        corrected_ms = moved,
                        "Re-read the database's clock: this node's time moved."
                    );
                }
            }
            // Keeps running on the monotonic clock; drift over a minute or two is milliseconds.
            Err(error) => {
                tracing::debug!(error = %error, "Could not read the database's clock; keeping time from the last reading.")
            }
        }
    }
    store.close().await;
}
