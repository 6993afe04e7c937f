//! What a broker-ceiling run measured, printed for people and serialized as JSON for scripts.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::BrokerCeilingError;

// Confirm latencies are kept in microseconds up to an hour; anything slower counts as an hour.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// A histogram of confirm latencies in microseconds.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Records `latency` in `histogram` at microsecond resolution.
pub(crate) fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    // 1 µs is the histogram's floor; a faster confirm is still a confirm.
    histogram.saturating_record(us.max(1));
}

/// Time from `basic.publish` to its confirm, in milliseconds at microsecond resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfirmLatency {
    /// How many publishes were timed.
    pub samples: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest confirm.
    pub max: f64,
}

impl ConfirmLatency {
    /// The summary of `histogram` (microseconds).
    pub(crate) fn of(histogram: &Histogram<u64>) -> ConfirmLatency {
        if histogram.is_empty() {
            return ConfirmLatency::default();
        }
        ConfirmLatency {
            samples: histogram.len(),
            mean: ms(histogram.mean().round() as u64),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// The publish phase: persistent messages with publisher confirms, up to `window` unconfirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishSummary {
    /// Messages the broker confirmed (acked); the run fails on a nack or a return.
    pub confirmed: u64,
    /// From the first `basic.publish` to the last confirm.
    pub elapsed_secs: f64,
    /// Confirmed events per second.
    pub events_per_sec: f64,
    /// Copies stored per second: events × queues, since each event is routed to every queue.
    pub deliveries_per_sec: f64,
    /// Per publish, from `basic.publish` to its confirm.
    pub confirm_latency_ms: ConfirmLatency,
}

/// The consume phase: every queue drained at once, with manual (multiple) acks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeSummary {
    /// Distinct copies received and acked, over all queues: messages × queues when complete.
    pub acked: u64,
    /// Copies received a second time (redeliveries); 0 on a healthy run.
    pub duplicates: u64,
    /// From the first `basic.consume` to the last ack.
    pub elapsed_secs: f64,
    /// Acked copies per second.
    pub deliveries_per_sec: f64,
}

/// Everything `ordermill bench broker-ceiling` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerCeilingReport {
    /// The broker, without the password.
    pub amqp: String,
    /// The topic exchange the run declared (deleted again at the end).
    pub exchange: String,
    /// The durable queues bound to it with `order.created` (deleted again at the end).
    pub queues: Vec<String>,
    /// Messages published.
    pub messages: u64,
    /// Body size of each message.
    pub payload_bytes: usize,
    /// Most unconfirmed publishes at once.
    pub window: usize,
    /// `basic.qos` prefetch of each consumer.
    pub prefetch: u16,
    /// The publish phase.
    pub publish: PublishSummary,
    /// The consume phase.
    pub consume: ConsumeSummary,
    /// Set when deleting the bench's exchange or queues failed: what may be left and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_behind: Option<String>,
}

impl BrokerCeilingReport {
    /// Writes the report as pretty JSON to `path`.
    ///
    /// # Errors
    /// [`BrokerCeilingError::WriteJson`] when the file cannot be written.
    pub fn write_json(&self, path: &Path) -> Result<(), BrokerCeilingError> {
        let failed = |source| BrokerCeilingError::WriteJson { path: path.to_owned(), source };
        let text = serde_json::to_vec_pretty(self).map_err(|e| failed(e.into()))?;
        std::fs::write(path, text).map_err(failed)
    }
}

/// `n` per second over `elapsed`, rounded to three decimals (0 for no time at all).
pub(crate) fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { round3(n as f64 / secs) } else { 0.0 }
}

/// Seconds at microsecond resolution.
pub(crate) fn secs(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1e6).round() / 1e6
}

// Three decimals print and parse back to the same f64, so a JSON report round-trips exactly.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl fmt::Display for BrokerCeilingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "broker        {} (topic exchange {}, {} durable queues bound with order.created)",
            self.amqp,
            self.exchange,
            self.queues.len()
        )?;
        writeln!(
            f,
            "messages      {} persistent, {} bytes each, confirm window {}, prefetch {}",
            self.messages, self.payload_bytes, self.window, self.prefetch
        )?;
        let p = &self.publish;
        writeln!(
            f,
            "publish       {} confirmed in {:.3} s: {:.1} events/s, {:.1} deliveries/s",
            p.confirmed, p.elapsed_secs, p.events_per_sec, p.deliveries_per_sec
        )?;
        let l = &p.confirm_latency_ms;
        writeln!(
            f,
            "confirm (ms)  p50 {:.3}  p99 {:.3}  max {:.3}  (mean {:.3} over {} publishes)",
            l.p50, l.p99, l.max, l.mean, l.samples
        )?;
        let c = &self.consume;
        let expected = self.messages.saturating_mul(self.queues.len() as u64);
        writeln!(
            f,
            "consume       {} of {expected} copies acked in {:.3} s: {:.1} deliveries/s \
             ({} duplicates)",
            c.acked, c.elapsed_secs, c.deliveries_per_sec, c.duplicates
        )?;
        if let Some(left) = &self.left_behind {
            writeln!(f, "note          {left}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BrokerCeilingReport {
        let mut histogram = latency_histogram();
        for us in 1..=1000 {
            record(&mut histogram, Duration::from_micros(us));
        }
        let second = Duration::from_secs(2);
        BrokerCeilingReport {
            amqp: "amqp://guest:***@127.0.0.1:5672/%2f".to_owned(),
            exchange: "bench-ceiling-x".to_owned(),
            queues: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            messages: 1000,
            payload_bytes: 320,
            window: 1024,
            prefetch: 256,
            publish: PublishSummary {
                confirmed: 1000,
                elapsed_secs: secs(second),
                events_per_sec: per_sec(1000, second),
                deliveries_per_sec: per_sec(3000, second),
                confirm_latency_ms: ConfirmLatency::of(&histogram),
            },
            consume: ConsumeSummary {
                acked: 3000,
                duplicates: 0,
                elapsed_secs: 1.0,
                deliveries_per_sec: 3000.0,
            },
            left_behind: None,
        }
    }

    #[test]
    fn rates_count_every_queue_and_percentiles_come_in_order() {
        let report = report();
        assert_eq!(report.publish.events_per_sec, 500.0);
        assert_eq!(report.publish.deliveries_per_sec, 1500.0);
        let l = report.publish.confirm_latency_ms;
        assert_eq!(l.samples, 1000);
        assert!(l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
        // Below 2.048 ms the histogram is exact at 1 µs.
        assert_eq!(l.max, 1.0);
        assert_eq!(per_sec(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn the_json_report_round_trips_and_the_table_names_both_phases() {
        let report = report();
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("left_behind"), "{json}");
        assert_eq!(serde_json::from_str::<BrokerCeilingReport>(&json).unwrap(), report);
        let text = report.to_string();
        for word in ["events/s", "deliveries/s", "p50", "p99", "3000 of 3000 copies"] {
            assert!(text.contains(word), "{word:?} missing from\n{text}");
        }
    }
}
