//! The deadline scheduler: expires deals whose deadline has passed.
//!
//! Deadlines live in the store, not in timers, so a restart loses none: the first check runs
//! at start-up and fires whatever came due while the node was down. The expiry itself is one
//! transaction guarded by "still open", so a deadline fires once even if two nodes check it.
//! Time is read from the injected clock at every check, so tests move it by hand.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Deals;

/// Checks for due deals every `every` until `stop`.
pub async fn run(deals: Arc<Deals>, every: Duration, stop: CancellationToken) {
    loop {
        if let Err(error) = deals.expire_due().await {
            tracing::error!(error = %error, "Could not expire due deals; trying again at the next check.");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    tracing::debug!("Deal scheduler stopped.");
}
