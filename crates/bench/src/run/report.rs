//! What a run measured: the raw tally each load task keeps, and the summary built from it,
//! printed for people and serialized as JSON for scripts.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::BenchError;
use super::stages::Stages;

// Latencies are kept in microseconds up to an hour; anything slower is recorded as an hour.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Completed requests by answer. Every completed request lands in exactly one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responses {
    /// 201 Created: the order was accepted.
    #[serde(rename = "201")]
    pub created: u64,
    /// 409 Conflict: sold out.
    #[serde(rename = "409")]
    pub conflict: u64,
    /// Other 2xx, such as the 200 of a batch request (whose orders are counted in [`Orders`]).
    pub other_2xx: u64,
    /// 4xx other than 409: the request was refused, e.g. for an unknown SKU.
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// 1xx or 3xx, which ordermill never sends.
    pub other: u64,
    /// No answer: the connection could not be opened or failed mid-request.
    pub connection_errors: u64,
}

impl Responses {
    /// All completed requests, answered or not.
    pub fn total(&self) -> u64 {
        self.answered() + self.connection_errors
    }

    /// Requests that got an HTTP answer, whatever its status.
    pub fn answered(&self) -> u64 {
        self.created
            + self.conflict
            + self.other_2xx
            + self.client_error
            + self.server_error
            + self.other
    }

    /// Answers that mean something went wrong: everything but 2xx and 409, plus no answer.
    pub fn errors(&self) -> u64 {
        self.client_error + self.server_error + self.other + self.connection_errors
    }

    fn count(&mut self, status: u16) {
        match status {
            201 => self.created += 1,
            409 => self.conflict += 1,
            200..=299 => self.other_2xx += 1,
            400..=499 => self.client_error += 1,
            500..=599 => self.server_error += 1,
            _ => self.other += 1,
        }
    }

    fn add(&mut self, other: &Responses) {
        self.created += other.created;
        self.conflict += other.conflict;
        self.other_2xx += other.other_2xx;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.other += other.other;
        self.connection_errors += other.connection_errors;
    }
}

/// Orders in answered requests, by outcome: one per request, or `--batch` per request.
///
/// `sent` is always `created + conflict + rejected`; orders in requests that got no answer
/// are not counted, since nobody knows what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    /// Orders in answered requests.
    pub sent: u64,
    /// Accepted (201).
    pub created: u64,
    /// Sold out (409).
    pub conflict: u64,
    /// Refused for any other reason, including a whole batch refused.
    pub rejected: u64,
}

impl Orders {
    /// The outcome of one single-order request answered with `status`.
    pub(crate) fn single(status: u16) -> Orders {
        let mut orders = Orders::default();
        orders.count(status);
        orders
    }

    /// Counts one order answered with `status`.
    pub(crate) fn count(&mut self, status: u16) {
        self.sent += 1;
        match status {
            201 => self.created += 1,
            409 => self.conflict += 1,
            _ => self.rejected += 1,
        }
    }

    fn add(&mut self, other: &Orders) {
        self.sent += other.sent;
        self.created += other.created;
        self.conflict += other.conflict;
        self.rejected += other.rejected;
    }
}

/// Throughput over the measured time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Answered requests per second (any status).
    pub requests_per_sec: f64,
    /// Accepted orders (201) per second.
    pub orders_per_sec: f64,
}

/// Latency of answered requests in milliseconds, at microsecond resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// How many requests were timed.
    pub samples: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest answer.
    pub max: f64,
}

/// How requests were paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// Each connection sent its next request when the previous answer arrived.
    Closed,
    /// Requests were sent at a fixed total rate; latency counts from the intended send time.
    Open {
        /// Requests per second over all connections.
        rate: u64,
    },
}

/// What one load run against one server measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The URL the load went to.
    pub target: String,
    /// Closed or open loop.
    pub mode: Mode,
    /// Keep-alive connections.
    pub connections: usize,
    /// Orders per request.
    pub batch: usize,
    /// Seconds of load that the counts cover.
    pub elapsed_secs: f64,
    /// Whether ctrl-c stopped the run before its duration.
    pub interrupted: bool,
    /// Completed requests: `responses.total()`.
    pub requests: u64,
    /// Requests still waiting for their answer when the run stopped, not counted elsewhere.
    pub unfinished: u64,
    /// Open loop only: requests sent after their intended time because their connection was
    /// still waiting for an earlier answer. Their latency includes that wait.
    #[serde(default)]
    pub sent_late: u64,
    /// Completed requests by answer.
    pub responses: Responses,
    /// Orders by outcome.
    pub orders: Orders,
    /// Requests and accepted orders per second.
    pub throughput: Throughput,
    /// Latency percentiles in milliseconds.
    pub latency_ms: Latency,
    /// The same for 2xx answers only (what an accepted order waited).
    #[serde(default)]
    pub accepted_latency_ms: Latency,
    /// The same for 503 answers only (how fast a shed request was told to come back).
    #[serde(default)]
    pub unavailable_latency_ms: Latency,
    /// The algorithm of the customer tokens each order carried (`--jwt-secret`: HS256,
    /// `--jwt-key`), or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tokens: Option<String>,
    /// Orders each customer placed in a row (`--orders-per-customer`).
    #[serde(default = "one")]
    pub orders_per_customer: u64,
    /// Whether each order carried an `Idempotency-Key` (`--idempotency-keys`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotency_keys: bool,
}

fn one() -> u64 {
    1
}

/// The same load against a reference server, and ordermill's figures as ratios of its.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The reference run.
    pub run: Summary,
    /// Ordermill's accepted orders/s over the reference's (1.0 = as fast as doing nothing);
    /// `None` when the reference accepted no order.
    pub throughput_ratio: Option<f64>,
    /// Ordermill's p99 latency over the reference's (above 1 = slower); `None` when the
    /// reference had no latency to compare with.
    pub p99_ratio: Option<f64>,
    /// Whether the target's queues were empty before the reference was loaded.
    #[serde(default)]
    pub target_settled: Settled,
}

/// What the target's pipeline was doing when the reference run began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Settled {
    /// Its queues were empty, this long after the main run (and `--e2e`) ended.
    Drained {
        /// Seconds waited.
        secs: f64,
    },
    /// Still this many messages queued when the wait gave up: the reference shared the cores
    /// with the target's consumers, so the ratio flatters the target.
    Busy {
        /// Messages still queued.
        messages: f64,
    },
    /// The target publishes no queue depths (not ordermill, or no bus): not waited for.
    #[default]
    Unknown,
}

/// Accept→confirmed latency of the confirmed orders of an `--e2e` sample, in milliseconds (the
/// server stamps times to the millisecond). Percentiles are by nearest rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct E2eLatency {
    /// Confirmed orders timed.
    pub samples: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// What `--e2e` found about its sample of accepted orders after the load. Every sampled order
/// is counted in exactly one of `confirmed`, `cancelled`, `not_final` and `unreadable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2e {
    /// Accepted orders followed.
    pub sampled: u64,
    /// Confirmed: the orders timed in `latency_ms`.
    pub confirmed: u64,
    /// Cancelled, e.g. a declined payment.
    pub cancelled: u64,
    /// Still not final when the wait ran out.
    pub not_final: u64,
    /// Never read: every GET failed or answered something that is not an order.
    pub unreadable: u64,
    /// Seconds spent polling after the load.
    pub waited_secs: f64,
    /// The longest the polling would wait (`--e2e-wait`).
    pub wait_limit_secs: f64,
    /// Confirmed time minus `created_at`, by the server's clock.
    pub latency_ms: E2eLatency,
}

impl fmt::Display for E2e {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "e2e           {} sampled: {} confirmed, {} cancelled, {} not final after {:.0} s, \
             {} unreadable (polled {:.3} s)",
            self.sampled,
            self.confirmed,
            self.cancelled,
            self.not_final,
            self.wait_limit_secs,
            self.unreadable,
            self.waited_secs
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "e2e (ms)      accept→confirmed p50 {:.0}  p99 {:.0}  max {:.0}  (mean {:.1} over {} \
             confirmed; server timestamps)",
            l.p50, l.p99, l.max, l.mean, l.samples
        )
    }
}

/// Everything `ordermill bench run` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run against the target.
    pub run: Summary,
    /// The run against `--reference`, when given.
    pub reference: Option<Comparison>,
    /// Accept→confirmed latency of a sample of the target's accepted orders, with `--e2e`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2e>,
    /// Where the target's time went during the load, from its nodes' stage histograms.
    #[serde(default)]
    pub stages: Stages,
}

impl Report {
    /// A report of `run`, compared with `reference` when there is one.
    pub fn new(run: Summary, reference: Option<Summary>) -> Report {
        let reference = reference.map(|reference| Comparison {
            throughput_ratio: ratio(
                run.throughput.orders_per_sec,
                reference.throughput.orders_per_sec,
            ),
            p99_ratio: ratio(run.latency_ms.p99, reference.latency_ms.p99),
            target_settled: Settled::Unknown,
            run: reference,
        });
        Report { run, reference, e2e: None, stages: Stages::default() }
    }

    /// Writes the report as pretty JSON to `path`.
    ///
    /// # Errors
    /// [`BenchError::WriteJson`] when the file cannot be written.
    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let failed = |source| BenchError::WriteJson { path: path.to_owned(), source };
        let text = serde_json::to_vec_pretty(self).map_err(|e| failed(e.into()))?;
        std::fs::write(path, text).map_err(failed)
    }
}

fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (theirs > 0.0).then(|| round3(ours / theirs))
}

// Three decimals print and parse back to the same f64, so a JSON report round-trips exactly.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// How a run was set up, for its summary.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub target: String,
    pub mode: Mode,
    pub connections: usize,
    pub batch: usize,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub customer_tokens: Option<String>,
    pub orders_per_customer: u64,
    pub idempotency_keys: bool,
}

/// The counts one load task keeps; merged into one at the end of the run.
#[derive(Debug)]
pub(crate) struct Tally {
    latency_us: Histogram<u64>,
    accepted_us: Histogram<u64>,
    unavailable_us: Histogram<u64>,
    responses: Responses,
    orders: Orders,
    unfinished: u64,
    sent_late: u64,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        let histogram = || {
            Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("constant histogram bounds are valid")
        };
        Tally {
            latency_us: histogram(),
            accepted_us: histogram(),
            unavailable_us: histogram(),
            responses: Responses::default(),
            orders: Orders::default(),
            unfinished: 0,
            sent_late: 0,
        }
    }

    /// Counts one answered request and its orders.
    pub(crate) fn answered(&mut self, status: u16, latency: Duration, orders: &Orders) {
        self.responses.count(status);
        self.orders.add(orders);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // 1 µs is the histogram's floor; a faster answer is still an answer.
        self.latency_us.saturating_record(us.max(1));
        if (200..300).contains(&status) {
            self.accepted_us.saturating_record(us.max(1));
        } else if status == 503 {
            self.unavailable_us.saturating_record(us.max(1));
        }
    }

    /// Counts one request that got no answer.
    pub(crate) fn connection_error(&mut self) {
        self.responses.connection_errors += 1;
    }

    /// Counts one request abandoned when the run stopped.
    pub(crate) fn unfinished(&mut self) {
        self.unfinished += 1;
    }

    /// Counts one open-loop request that went out behind its schedule.
    pub(crate) fn sent_late(&mut self) {
        self.sent_late += 1;
    }

    /// Adds `other`'s counts to this one.
    pub(crate) fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in [
            (&mut self.latency_us, &other.latency_us),
            (&mut self.accepted_us, &other.accepted_us),
            (&mut self.unavailable_us, &other.unavailable_us),
        ] {
            mine.add(theirs).expect("tallies share the same histogram bounds");
        }
        self.responses.add(&other.responses);
        self.orders.add(&other.orders);
        self.unfinished += other.unfinished;
        self.sent_late += other.sent_late;
    }

    /// The summary of these counts over `info.elapsed`.
    pub(crate) fn summary(&self, info: RunInfo) -> Summary {
        let secs = info.elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { round3(n as f64 / secs) } else { 0.0 };
        let latency = |h: &Histogram<u64>| {
            if h.is_empty() {
                Latency::default()
            } else {
                Latency {
                    samples: h.len(),
                    mean: ms(h.mean().round() as u64),
                    p50: ms(h.value_at_quantile(0.5)),
                    p90: ms(h.value_at_quantile(0.9)),
                    p99: ms(h.value_at_quantile(0.99)),
                    p99_9: ms(h.value_at_quantile(0.999)),
                    max: ms(h.max()),
                }
            }
        };
        Summary {
            target: info.target,
            mode: info.mode,
            connections: info.connections,
            batch: info.batch,
            elapsed_secs: (secs * 1e6).round() / 1e6,
            interrupted: info.interrupted,
            requests: self.responses.total(),
            unfinished: self.unfinished,
            sent_late: self.sent_late,
            responses: self.responses,
            orders: self.orders,
            throughput: Throughput {
                requests_per_sec: per_sec(self.responses.answered()),
                orders_per_sec: per_sec(self.orders.created),
            },
            latency_ms: latency(&self.latency_us),
            accepted_latency_ms: latency(&self.accepted_us),
            unavailable_latency_ms: latency(&self.unavailable_us),
            customer_tokens: info.customer_tokens,
            orders_per_customer: info.orders_per_customer,
            idempotency_keys: info.idempotency_keys,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Closed => "closed loop".to_owned(),
            Mode::Open { rate } => format!("open loop at {rate} req/s"),
        };
        let per_request = if self.batch == 1 { "order" } else { "orders" };
        let customers = match (&self.customer_tokens, self.orders_per_customer) {
            (Some(algorithm), n) => format!(", {n} per customer and {algorithm} token"),
            (None, 1) => String::new(),
            (None, n) => format!(", {n} per customer"),
        };
        let keys = match (self.idempotency_keys, self.batch) {
            (false, _) => "",
            (true, 1) => ", each with an Idempotency-Key",
            (true, _) => ", each order with an idempotency_key",
        };
        writeln!(
            f,
            "target        {} ({mode}, {} connections, {} {per_request} per request{customers}{keys})",
            self.target, self.connections, self.batch
        )?;
        let stopped = if self.interrupted { ", stopped early by ctrl-c" } else { "" };
        writeln!(f, "elapsed       {:.3} s{stopped}", self.elapsed_secs)?;
        writeln!(
            f,
            "requests      {} completed, {} unfinished at stop",
            self.requests, self.unfinished
        )?;
        if let Mode::Open { rate } = self.mode {
            let sent = self.requests + self.unfinished;
            let share = if sent > 0 { 100.0 * self.sent_late as f64 / sent as f64 } else { 0.0 };
            writeln!(
                f,
                "schedule      {} of {sent} requests ({share:.1}%) went out late, their \
                 connection still waiting for an earlier answer",
                self.sent_late
            )?;
            // Each connection carries rate ÷ connections requests a second, so an answer slower
            // than connections ÷ rate holds up the next one on its connection: the tail then
            // measures the generator's queue as much as the server's.
            if share >= 1.0 {
                writeln!(
                    f,
                    "note          their latency counts from the intended send, so it includes \
                     waiting in this load generator; answers slower than {:.1} ms ({} \
                     connections ÷ {rate} req/s) hold up the next request — more --connections \
                     let the server's own queueing show",
                    self.connections as f64 * 1000.0 / rate.max(1) as f64,
                    self.connections
                )?;
            }
        }
        let r = &self.responses;
        writeln!(
            f,
            "responses     201: {}  409: {}  other 2xx: {}  4xx: {}  5xx: {}  other: {}  \
             connection errors: {}",
            r.created,
            r.conflict,
            r.other_2xx,
            r.client_error,
            r.server_error,
            r.other,
            r.connection_errors
        )?;
        let o = &self.orders;
        writeln!(
            f,
            "orders        {} sent: {} accepted (201), {} sold out (409), {} rejected",
            o.sent, o.created, o.conflict, o.rejected
        )?;
        writeln!(
            f,
            "throughput    {:.1} req/s, {:.1} orders/s",
            self.throughput.requests_per_sec, self.throughput.orders_per_sec
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency (ms)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  \
             (mean {:.3} over {} answers)",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean, l.samples
        )?;
        // Split only when some were refused: then the two tell different stories.
        if self.unavailable_latency_ms.samples > 0 {
            for (name, l) in [
                ("2xx only", &self.accepted_latency_ms),
                ("503 only", &self.unavailable_latency_ms),
            ] {
                writeln!(
                    f,
                    "  {name}    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  \
                     (over {} answers)",
                    l.p50, l.p90, l.p99, l.p99_9, l.max, l.samples
                )?;
            }
        }
        if o.created == 0 && r.client_error > 0 {
            writeln!(
                f,
                "note          no order was accepted and the target answered 4xx; if the SKUs \
                 do not exist yet, run again with --setup"
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.run)?;
        if let Some(e2e) = &self.e2e {
            write!(f, "{e2e}")?;
        }
        write!(f, "{}", self.stages)?;
        if let Some(reference) = &self.reference {
            writeln!(f)?;
            match reference.target_settled {
                Settled::Drained { secs } => writeln!(
                    f,
                    "reference (loaded once the target's queues were empty, {secs:.1} s after its run)"
                )?,
                Settled::Busy { messages } => writeln!(
                    f,
                    "reference (the target still had {messages:.0} messages queued after 60 s: \
                     the reference shared the cores with its consumers, so the ratio flatters it)"
                )?,
                Settled::Unknown => writeln!(f, "reference")?,
            }
            write!(f, "{}", reference.run)?;
            writeln!(f)?;
            let show = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}"));
            writeln!(
                f,
                "ratio to reference  throughput (orders/s) {}  p99 latency {}",
                show(reference.throughput_ratio),
                show(reference.p99_ratio)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(elapsed: Duration) -> RunInfo {
        RunInfo {
            target: "http://127.0.0.1:1".to_owned(),
            mode: Mode::Closed,
            connections: 2,
            batch: 1,
            elapsed,
            interrupted: false,
            customer_tokens: None,
            orders_per_customer: 1,
            idempotency_keys: false,
        }
    }

    #[test]
    fn every_completed_request_is_counted_once_by_answer() {
        let mut tally = Tally::new();
        for status in [201, 201, 409, 200, 404, 422, 503, 302] {
            tally.answered(status, Duration::from_millis(1), &Orders::single(status));
        }
        tally.connection_error();
        tally.unfinished();
        let summary = tally.summary(info(Duration::from_secs(2)));
        let r = summary.responses;
        assert_eq!(
            (r.created, r.conflict, r.other_2xx, r.client_error, r.server_error, r.other),
            (2, 1, 1, 2, 1, 1)
        );
        assert_eq!(r.connection_errors, 1);
        assert_eq!(summary.requests, 9);
        assert_eq!(r.total(), summary.requests);
        assert_eq!(summary.unfinished, 1);
        assert_eq!(r.errors(), 5);
        let o = summary.orders;
        assert_eq!((o.sent, o.created, o.conflict, o.rejected), (8, 2, 1, 5));
        assert_eq!(summary.throughput.requests_per_sec, 4.0);
        assert_eq!(summary.throughput.orders_per_sec, 1.0);
    }

    #[test]
    fn merged_tallies_add_up_and_percentiles_come_in_order() {
        let mut total = Tally::new();
        for task in 0..4u64 {
            let mut tally = Tally::new();
            for i in 1..=1000u64 {
                tally.answered(201, Duration::from_micros(i * (task + 1)), &Orders::single(201));
            }
            total.merge(&tally);
        }
        let summary = total.summary(info(Duration::from_secs(1)));
        assert_eq!(summary.requests, 4000);
        assert_eq!(summary.orders.created, 4000);
        let l = summary.latency_ms;
        assert_eq!(l.samples, 4000);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.max);
        // The slowest sample is 4 ms; three significant digits keep it within 0.1%.
        assert!((l.max - 4.0).abs() <= 0.004, "max {}", l.max);
    }

    #[test]
    fn the_target_line_says_how_customers_signed_their_orders() {
        let line = |customer_tokens: Option<&str>, orders_per_customer| {
            let info = RunInfo {
                customer_tokens: customer_tokens.map(str::to_owned),
                orders_per_customer,
                ..info(Duration::from_secs(1))
            };
            Tally::new().summary(info).to_string().lines().next().unwrap_or_default().to_owned()
        };
        assert!(
            line(Some("ES256"), 3)
                .ends_with("1 order per request, 3 per customer and ES256 token)")
        );
        assert!(line(None, 5).ends_with("1 order per request, 5 per customer)"));
        assert!(line(None, 1).ends_with("1 order per request)"));
        let keyed = RunInfo { idempotency_keys: true, ..info(Duration::from_secs(1)) };
        let keyed = Tally::new().summary(keyed).to_string();
        assert!(keyed.lines().next().unwrap_or_default().ends_with("with an Idempotency-Key)"));
    }

    #[test]
    fn an_empty_run_has_zero_latency_and_throughput() {
        let summary = Tally::new().summary(info(Duration::ZERO));
        assert_eq!(summary.latency_ms, Latency::default());
        assert_eq!(summary.throughput, Throughput::default());
    }

    #[test]
    fn ratios_compare_accepted_orders_and_p99_and_skip_a_zero_reference() {
        let mut ours = Tally::new();
        let mut theirs = Tally::new();
        for _ in 0..10 {
            // Below 2.048 ms the histogram is exact at 1 µs, so the ratio is too.
            ours.answered(201, Duration::from_millis(2), &Orders::single(201));
            theirs.answered(201, Duration::from_millis(1), &Orders::single(201));
            theirs.answered(201, Duration::from_millis(1), &Orders::single(201));
        }
        let second = Duration::from_secs(1);
        let report = Report::new(ours.summary(info(second)), Some(theirs.summary(info(second))));
        let comparison = report.reference.as_ref().unwrap();
        assert_eq!(comparison.throughput_ratio, Some(0.5));
        assert_eq!(comparison.p99_ratio, Some(2.0));

        let empty = Tally::new().summary(info(second));
        let report = Report::new(ours.summary(info(second)), Some(empty));
        assert_eq!(report.reference.unwrap().throughput_ratio, None);
    }

    #[test]
    fn the_summary_names_every_count_and_hints_at_setup_when_all_orders_failed() {
        let mut tally = Tally::new();
        tally.answered(404, Duration::from_millis(1), &Orders::single(404));
        let text = tally.summary(info(Duration::from_secs(1))).to_string();
        for word in ["201:", "409:", "4xx: 1", "5xx:", "connection errors:", "p99.9", "--setup"] {
            assert!(text.contains(word), "{word:?} missing from\n{text}");
        }
    }
}
