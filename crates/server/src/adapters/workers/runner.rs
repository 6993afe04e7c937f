//! The consumer loop: receive a batch, handle it under a timeout, then ack, retry with
//! exponential backoff and jitter, or dead-letter each delivery.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use metrics::{counter, histogram};
use ordermill_core::ports::{Delivery, EventBus};
use tokio_util::sync::CancellationToken;

use super::{Handler, Outcome};
use crate::startup::settings::WorkerSettings;
use crate::telemetry;

/// The delay before delivery number `attempt + 1`: base × 2^(attempt−1), capped, with full
/// jitter over its upper half so retries of a burst do not come back in lockstep.
pub fn backoff(settings: &WorkerSettings, attempt: u32) -> Duration {
    let base = settings.retry_base.as_millis_u64();
    let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(settings.retry_max.as_millis_u64()).max(1);
    let half = capped / 2;
    Duration::from_millis(half + fastrand::u64(0..=capped - half))
}

/// The first and the longest pause while an engine is unavailable.
const INFRA_PAUSE_MIN: Duration = Duration::from_millis(100);
const INFRA_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Runs the handler on `batch` under `timeout`, turning a panic, a timeout or a wrong count of
/// outcomes into a retry of every delivery.
async fn handle_guarded(
    handler: &dyn Handler,
    batch: &[Delivery],
    timeout: Duration,
    queue: &str,
) -> Vec<Outcome> {
    // A panic in the handler retries the batch instead of killing this consumer or, worse,
    // letting its deliveries be acknowledged unhandled.
    let handled = AssertUnwindSafe(handler.handle(batch)).catch_unwind();
    match tokio::time::timeout(timeout, handled).await {
        Ok(Ok(outcomes)) if outcomes.len() == batch.len() => outcomes,
        Ok(Err(_panic)) => {
            tracing::error!(
                queue,
                deliveries = batch.len(),
                "The handler panicked; retrying its batch. This is a bug."
            );
            vec![Outcome::Retry("the handler panicked".into()); batch.len()]
        }
        Ok(Ok(outcomes)) => {
            tracing::error!(
                queue,
                got = outcomes.len(),
                want = batch.len(),
                "Handler answered for the wrong number of deliveries; retrying the batch. This is a bug."
            );
            vec![Outcome::Retry("handler bug: outcome count mismatch".into()); batch.len()]
        }
        Err(_) => {
            vec![Outcome::Retry(format!("timed out after {} ms", timeout.as_millis())); batch.len()]
        }
    }
}

/// Runs until `stop`; the batch in hand is always finished and settled first (or, while an
/// engine is down, left unacked to be delivered again).
pub async fn run(
    queue: String,
    handler: Arc<dyn Handler>,
    bus: Arc<dyn EventBus>,
    settings: WorkerSettings,
    stop: CancellationToken,
) {
    let latency = histogram!(telemetry::CONSUMER_SECONDS, "queue" => queue.clone());
    let (receive_stage, settle_stage) =
        (telemetry::stage("receive", &queue), telemetry::stage("settle", &queue));
    // Each outside call has its own timeout (message_timeout); the batch as a whole gets
    // twice that, as a last guard against a stuck store call.
    let timeout = settings.message_timeout.get().saturating_mul(2);
    // The last batch held more than one delivery: the queue is busy, more are on their way.
    let mut last_shared = false;
    loop {
        let waiting = Instant::now();
        let received = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            received = bus.receive(&queue, settings.batch_size.max(1), Duration::from_millis(500)) => received,
        };
        let batch = match received {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => {
                let lingers = batch.len() > 1 || last_shared;
                let batch = if lingers && !settings.linger.get().is_zero() {
                    gather(
                        &*bus,
                        &queue,
                        batch,
                        settings.batch_size.max(1),
                        settings.linger.get(),
                        &stop,
                    )
                    .await
                } else {
                    batch
                };
                last_shared = batch.len() > 1;
                receive_stage.record(waiting.elapsed().as_secs_f64());
                batch
            }
            Err(error) => {
                tracing::error!(queue = %queue, error = %error, "Cannot receive from the bus; retrying in 1 s.");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let started = Instant::now();
        let mut pending = batch;
        let mut pause = INFRA_PAUSE_MIN;
        loop {
            let outcomes = handle_guarded(&*handler, &pending, timeout, &queue).await;
            // An engine's failure is not the message's: such deliveries are held, unacked, and
            // handled again once the engine is back, without spending an attempt.
            let (held, done): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .zip(outcomes)
                .partition(|(_, outcome)| matches!(outcome, Outcome::Unavailable(_)));
            let (batch, outcomes): (Vec<Delivery>, Vec<Outcome>) = done.into_iter().unzip();
            let settling = Instant::now();
            settle_outcomes(&queue, &*bus, &settings, &batch, outcomes).await;
            settle_stage.record(settling.elapsed().as_secs_f64());
            let Some((_, Outcome::Unavailable(error))) = held.first() else { break };
            counter!(telemetry::CONSUMER_PAUSES, "queue" => queue.clone()).increment(1);
            tracing::warn!(queue = %queue, messages = held.len(), pause_ms = pause.as_millis() as u64, error = %error, "An engine is unavailable; holding the messages without spending their attempts and trying again.");
            tokio::select! {
                () = stop.cancelled() => {
                    tracing::info!(queue = %queue, messages = held.len(), "Stopping with messages held for an unavailable engine; they are delivered again.");
                    break;
                }
                () = tokio::time::sleep(pause) => {}
            }
            pause = pause.saturating_mul(2).min(INFRA_PAUSE_MAX);
            pending = held.into_iter().map(|(delivery, _)| delivery).collect();
        }
        latency.record(started.elapsed().as_secs_f64());
    }
    tracing::debug!(queue = %queue, "Consumer stopped.");
}

/// Adds to `batch` what arrives within `linger`, up to `max` deliveries: one store transaction
/// and one published message then cover more orders, and each costs PostgreSQL and RabbitMQ
/// per round, not per order. Stopping or a failed receive ends the wait early; the batch in
/// hand is handled either way.
async fn gather(
    bus: &dyn EventBus,
    queue: &str,
    mut batch: Vec<Delivery>,
    max: usize,
    linger: Duration,
    stop: &CancellationToken,
) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let more = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            more = bus.receive(queue, max - batch.len(), left) => more,
        };
        match more {
            Ok(more) => batch.extend(more),
            // The next receive reports it, after this batch is settled.
            Err(_) => break,
        }
    }
    batch
}

async fn settle_outcomes(
    queue: &str,
    bus: &dyn EventBus,
    settings: &WorkerSettings,
    batch: &[Delivery],
    outcomes: Vec<Outcome>,
) {
    let mut acks = Vec::with_capacity(batch.len());
    for (delivery, outcome) in batch.iter().zip(outcomes) {
        let (kind, result) = match outcome {
            Outcome::Ack => {
                acks.push(delivery.clone());
                continue;
            }
            Outcome::Retry(error) if delivery.attempt < settings.max_attempts => {
                let after = backoff(settings, delivery.attempt);
                tracing::warn!(queue, event_id = %delivery.envelope.event_id, attempt = delivery.attempt, retry_in_ms = after.as_millis() as u64, error = %error, "Message failed; will retry.");
                ("retry", bus.retry(delivery, after, &error).await)
            }
            Outcome::Retry(error) => {
                let error = format!("gave up after {} attempts: {error}", delivery.attempt);
                tracing::error!(queue, event_id = %delivery.envelope.event_id, attempt = delivery.attempt, error = %error, "Message dead-lettered.");
                ("dead", bus.dead_letter(delivery, &error).await)
            }
            Outcome::Unavailable(error) => {
                // `run` holds these; settling one here would be a bug, and a retry is safe.
                ("retry", bus.retry(delivery, backoff(settings, delivery.attempt), &error).await)
            }
            Outcome::Dead(error) => {
                tracing::error!(queue, event_id = %delivery.envelope.event_id, attempt = delivery.attempt, error = %error, "Message dead-lettered.");
                ("dead", bus.dead_letter(delivery, &error).await)
            }
        };
        counter!(telemetry::CONSUMER_MESSAGES, "queue" => queue.to_owned(), "outcome" => kind)
            .increment(1);
        if let Err(error) = result {
            tracing::error!(queue, event_id = %delivery.envelope.event_id, error = %error, "Could not record the message's outcome; it will be delivered again.");
        }
    }
    if !acks.is_empty() {
        let n = acks.len() as u64;
        match bus.ack(&acks).await {
            Ok(()) => counter!(telemetry::CONSUMER_MESSAGES, "queue" => queue.to_owned(), "outcome" => "ack").increment(n),
            Err(error) => tracing::error!(queue, messages = n, error = %error, "Could not record acks; the messages will be delivered again (their effects are not repeated)."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_an_outside_outage_of_half_an_hour_is_retried_through() {
        let s = WorkerSettings::default();
        // The least the jitter can give: every delay at the bottom of its range.
        let mut shortest = Duration::ZERO;
        for attempt in 1..s.max_attempts {
            let cap = (s.retry_base.get() * 2u32.pow((attempt - 1).min(20))).min(s.retry_max.get());
            shortest += cap / 2;
            let delay = backoff(&s, attempt);
            assert!(delay >= cap / 2 && delay <= cap, "attempt {attempt}: {delay:?}");
        }
        assert!(shortest >= Duration::from_secs(30 * 60), "only {shortest:?} of retries");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let s = WorkerSettings {
            retry_base: ordermill_core::HumanDuration::from_millis(100),
            retry_max: ordermill_core::HumanDuration::from_secs(1),
            ..WorkerSettings::default()
        };
        for _ in 0..200 {
            let first = backoff(&s, 1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(&s, 3).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = backoff(&s, 30).as_millis();
            assert!((500..=1_000).contains(&late), "{late}");
        }
    }
}
