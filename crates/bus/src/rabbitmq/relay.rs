//! The outbox relay: publishes events a store transaction wrote but no broker confirmed.
//!
//! The committer publishes right after each commit; this catches what a crash or an outage
//! left behind. Rows are claimed under a lease, so with several api nodes each event is
//! published by one node at a time, and a node that dies holding a claim leaves its events to
//! the next sweep once the lease runs out.

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::ports::{EventBus, Outbox};
use tokio_util::sync::CancellationToken;

use super::RabbitBus;

/// Seconds the oldest event no broker has confirmed has waited, 0 when none: set by every api
/// node's relay after each sweep (they all read the same outbox, so take the max over nodes).
pub const OUTBOX_OLDEST_SECONDS: &str = "ordermill_outbox_oldest_unpublished_seconds";

/// Events claimed per round.
const BATCH: usize = 500;
/// Younger events may still be waiting for their confirms on the node that committed them:
/// that publish gives up only after `rabbitmq.confirm_timeout`, so the relay waits that long
/// and this much more before it takes an event for abandoned. (It used to wait a fixed 3 s;
/// under load confirms took longer and events went out twice.)
const MIN_AGE_MARGIN: Duration = Duration::from_secs(2);
/// How long a claim keeps other nodes off the events.
const LEASE: Duration = Duration::from_secs(30);

/// Sweeps the outbox at once, then every `every`, until `stop`.
pub async fn run_relay(
    bus: Arc<RabbitBus>,
    outbox: Arc<dyn Outbox>,
    every: Duration,
    stop: CancellationToken,
) {
    let oldest = metrics::gauge!(OUTBOX_OLDEST_SECONDS);
    loop {
        sweep(&bus, &*outbox).await;
        // After the sweep: what it could not publish is what an operator needs to see.
        match outbox.oldest_unpublished_age().await {
            Ok(age) => oldest.set(age.unwrap_or_default().as_secs_f64()),
            // The gauge keeps its last value: a store that does not answer already shows in
            // the failed claims and commits, which warn.
            Err(error) => {
                tracing::debug!(error = %error, "Could not read the outbox's oldest event.")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Publishes claimed events until none are left or the broker fails; returns how many.
async fn sweep(bus: &RabbitBus, outbox: &dyn Outbox) -> usize {
    let mut relayed = 0;
    loop {
        let min_age = bus.shared.settings.confirm_timeout() + MIN_AGE_MARGIN;
        let events = match outbox.claim_unpublished(BATCH, min_age, LEASE).await {
            Ok(events) if events.is_empty() => break,
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(error = %error, "Could not claim unpublished outbox events.");
                break;
            }
        };
        let count = events.len();
        let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
        // `publish` marks them published after the broker confirmed every one.
        if let Err(error) = bus.publish(events).await {
            tracing::warn!(events = count, error = %error, "Could not relay outbox events; will try again.");
            // Given back at once: holding the claim for the whole lease would delay these
            // events by that long after the broker is back (seen: 30 s after a restart).
            if let Err(release) = outbox.release_claims(ids).await {
                tracing::warn!(error = %release, "Could not release the outbox claim; it lapses after its lease.");
            }
            break;
        }
        relayed += count;
        if count < BATCH {
            break;
        }
    }
    if relayed > 0 {
        tracing::info!(events = relayed, "Relayed unpublished outbox events.");
    }
    relayed
}
