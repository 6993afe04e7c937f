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

/// Events claimed per round.
const BATCH: usize = 500;
/// Younger events are still being published by the node that committed them.
const MIN_AGE: Duration = Duration::from_secs(3);
/// How long a claim keeps other nodes off the events.
const LEASE: Duration = Duration::from_secs(30);

/// Sweeps the outbox at once, then every `every`, until `stop`.
pub async fn run_relay(
    bus: Arc<RabbitBus>,
    outbox: Arc<dyn Outbox>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        sweep(&bus, &*outbox).await;
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
        let events = match outbox.claim_unpublished(BATCH, MIN_AGE, LEASE).await {
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
