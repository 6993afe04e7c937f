//! What `bench compare` measured, printed as a table next to the seed article's claim and
//! serialized as JSON for scripts.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::run::report::{E2e, Summary};
use crate::stubs::StubConfig;

/// One design's figures as the seed article published them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Mean latency of an order request, in ms.
    pub avg_ms: f64,
    /// 99th percentile latency, in ms.
    pub p99_ms: f64,
    /// Orders per second.
    pub per_sec: f64,
}

/// The seed article's "before" (synchronous) figures.
pub const CLAIM_SYNC: Claim = Claim { avg_ms: 650.0, p99_ms: 2000.0, per_sec: 1000.0 };
/// The seed article's "after" (asynchronous) figures.
pub const CLAIM_ASYNC: Claim = Claim { avg_ms: 10.0, p99_ms: 50.0, per_sec: 10_000.0 };

/// How the comparison was set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Stub latency of inventory, in ms.
    pub inventory_ms: f64,
    /// Stub latency of payment, in ms.
    pub payment_ms: f64,
    /// Stub latency of notify, in ms.
    pub notify_ms: f64,
    /// Share of charges the payment stub fails with 503.
    pub payment_fail_rate: f64,
    /// Keep-alive connections per design.
    pub connections: usize,
    /// Seconds of steady load per design.
    pub duration_secs: f64,
    /// Seconds of load per design while payment is down.
    pub outage_secs: f64,
    /// Catalog size.
    pub skus: usize,
    /// ordermill's `workers.max_attempts` for this run.
    pub ordermill_max_attempts: u32,
    /// Whether this was a debug build (of the bench, and so of the ordermill it started).
    pub debug_build: bool,
}

impl Setup {
    /// The setup of a comparison with these stubs and loads.
    pub(crate) fn new(
        stubs: &StubConfig,
        connections: usize,
        duration_secs: f64,
        outage_secs: f64,
        skus: usize,
        ordermill_max_attempts: u32,
    ) -> Setup {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        Setup {
            inventory_ms: ms(stubs.inventory_latency),
            payment_ms: ms(stubs.payment_latency),
            notify_ms: ms(stubs.notify_latency),
            payment_fail_rate: stubs.payment_fail_rate,
            connections,
            duration_secs,
            outage_secs,
            skus,
            ordermill_max_attempts,
            debug_build: cfg!(debug_assertions),
        }
    }

    /// The most orders per second the synchronous design can answer with this many
    /// connections: each holds its connection for the whole chain of calls.
    pub fn sync_bound_per_sec(&self) -> f64 {
        let chain_secs = (self.inventory_ms + self.payment_ms + self.notify_ms) / 1000.0;
        if chain_secs > 0.0 { self.connections as f64 / chain_secs } else { f64::INFINITY }
    }
}

/// The steady phase: the same load against both designs, everything up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steady {
    /// The synchronous baseline.
    pub sync: Summary,
    /// ordermill.
    pub ordermill: Summary,
    /// Accept→confirmed latency of a sample of ordermill's accepted orders.
    pub ordermill_e2e: Option<E2e>,
}

/// Whether ordermill's bus emptied after the steady phase, before the outage began.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    /// Every queue was empty (dead letters aside).
    pub drained: bool,
    /// Seconds from the end of the steady phase's polling until empty (or until giving up).
    pub secs: f64,
    /// Messages still ready, delayed or in flight when giving up (0 when drained, or when the
    /// queues could not be read).
    pub pending: u64,
    /// Dead letters at that point.
    pub dead: u64,
}

/// ordermill after the payment came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    /// The sampled outage orders, followed until final. Their accept→confirmed latency
    /// includes the outage.
    pub orders: E2e,
    /// Every sampled order became final within the wait.
    pub finished: bool,
    /// Seconds from payment coming back until the last sampled order was seen final (polled
    /// every 100 ms); `None` when not all did.
    pub secs: Option<f64>,
}

/// The fault-isolation phase: payment down, the same short load against both designs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// The synchronous baseline.
    pub sync: Summary,
    /// ordermill.
    pub ordermill: Summary,
    /// Payment calls the down stub refused during the baseline's load.
    pub payment_refused_sync: u64,
    /// Payment calls the down stub refused from the start of ordermill's load until payment
    /// came back: its retries.
    pub payment_refused_ordermill: u64,
    /// ordermill catching up once payment was back.
    pub catch_up: CatchUp,
}

/// Everything `ordermill bench compare` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// How it was set up.
    pub setup: Setup,
    /// The claim for the synchronous design.
    pub claim_sync: Claim,
    /// The claim for the asynchronous design.
    pub claim_async: Claim,
    /// Both designs under the same load.
    pub steady: Steady,
    /// ordermill's bus between the phases.
    pub drain: Drain,
    /// Both designs with payment down, and ordermill's catch-up.
    pub outage: Outage,
}

impl CompareReport {
    /// Writes the report as pretty JSON to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(path, text)
    }
}

/// Share of completed requests that were errors, in percent.
pub fn error_rate(summary: &Summary) -> f64 {
    let total = summary.responses.total();
    if total == 0 { 0.0 } else { 100.0 * summary.responses.errors() as f64 / total as f64 }
}

/// `n` with thousands separated by commas.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A whole number with thousands separators, for the claim's round figures.
fn whole(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return format!("{x:.0}");
    }
    thousands(x.round() as u64)
}

/// A figure with one decimal and thousands separators.
fn figure(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return format!("{x:.1}");
    }
    let tenths = (x * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

// Column widths of the tables: label, then the claim's two columns, then the two measured.
const LABEL: usize = 30;
const CLAIM: usize = 10;
const MEASURED: usize = 18;

fn row(f: &mut fmt::Formatter<'_>, label: &str, cells: [&str; 4]) -> fmt::Result {
    let [claim_sync, claim_async, sync, ordermill] = cells;
    writeln!(
        f,
        "{label:<LABEL$}{claim_sync:<CLAIM$}{claim_async:<CLAIM$}{sync:<MEASURED$}{ordermill}"
    )
}

fn accepted(summary: &Summary) -> String {
    format!("{} / {}", thousands(summary.orders.created), thousands(summary.requests))
}

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        writeln!(f, "ordermill bench compare: the synchronous design and ordermill, same load")?;
        writeln!(
            f,
            "stubs         inventory {} ms, payment {} ms, notify {} ms (payment fail rate {})",
            s.inventory_ms, s.payment_ms, s.notify_ms, s.payment_fail_rate
        )?;
        writeln!(
            f,
            "load          {} connections, closed loop, {} s per design over {} SKUs,\n              \
             then {} s per design with payment down",
            s.connections, s.duration_secs, s.skus, s.outage_secs
        )?;
        writeln!(
            f,
            "ordermill     {}, payment gateway and webhook notifier on the stubs,\n              \
             workers.max_attempts = {} (default 25) so that an outage is retried, not dead-lettered",
            if s.debug_build {
                "debug build (use --release for real figures)"
            } else {
                "release build"
            },
            s.ordermill_max_attempts
        )?;
        writeln!(f)?;

        let (c_sync, c_async) = (&self.claim_sync, &self.claim_async);
        let (sync, ordermill) = (&self.steady.sync, &self.steady.ordermill);
        writeln!(
            f,
            "{:<LABEL$}{:<w$}measured here",
            "steady load",
            "claimed (article)",
            w = 2 * CLAIM
        )?;
        row(f, "", ["sync", "async", "sync baseline", "ordermill"])?;
        row(
            f,
            "avg latency (ms)",
            [
                &whole(c_sync.avg_ms),
                &whole(c_async.avg_ms),
                &figure(sync.latency_ms.mean),
                &figure(ordermill.latency_ms.mean),
            ],
        )?;
        row(
            f,
            "p99 latency (ms)",
            [
                &whole(c_sync.p99_ms),
                &whole(c_async.p99_ms),
                &figure(sync.latency_ms.p99),
                &figure(ordermill.latency_ms.p99),
            ],
        )?;
        row(
            f,
            "throughput (orders/s)",
            [
                &whole(c_sync.per_sec),
                &whole(c_async.per_sec),
                &figure(sync.throughput.orders_per_sec),
                &figure(ordermill.throughput.orders_per_sec),
            ],
        )?;
        row(f, "accepted / requests", ["", "", &accepted(sync), &accepted(ordermill)])?;
        row(
            f,
            "errors (non-2xx, no answer)",
            ["", "", &thousands(sync.responses.errors()), &thousands(ordermill.responses.errors())],
        )?;
        let e2e = match &self.steady.ordermill_e2e {
            Some(e) => format!(
                "p50 {}  p99 {}  max {}  ({} of {} confirmed)",
                figure(e.latency_ms.p50),
                figure(e.latency_ms.p99),
                figure(e.latency_ms.max),
                e.confirmed,
                e.sampled
            ),
            None => "not measured".to_owned(),
        };
        row(f, "accept→confirmed (ms)", ["", "", "= latency above", &e2e])?;
        writeln!(f)?;
        let chain_secs = (s.inventory_ms + s.payment_ms + s.notify_ms) / 1000.0;
        writeln!(
            f,
            "note          the sync design holds a connection for the whole chain of calls, so it \
             answers at most\n              {} connections ÷ {:.3} s = {} orders/s here; the \
             claimed {}/s would take {} requests in flight.",
            s.connections,
            chain_secs,
            figure(s.sync_bound_per_sec()),
            whole(c_sync.per_sec),
            whole(c_sync.per_sec * chain_secs),
        )?;
        writeln!(
            f,
            "note          ordermill's 201 means durable, not paid: payment and notification run \
             behind the bus,\n              so its end-to-end figure is the accept→confirmed row \
             (server timestamps)."
        )?;
        let d = &self.drain;
        if d.drained {
            writeln!(
                f,
                "pipeline      ordermill's queues were empty {:.1} s after the steady phase \
                 ({} dead letters)",
                d.secs, d.dead
            )?;
        } else if d.pending > 0 {
            writeln!(
                f,
                "pipeline      ordermill's queues still held {} messages after {:.1} s; the \
                 outage phase started anyway",
                thousands(d.pending),
                d.secs
            )?;
        } else {
            writeln!(
                f,
                "pipeline      ordermill's queues could not be read for {:.1} s; the outage \
                 phase started anyway",
                d.secs
            )?;
        }
        writeln!(f)?;

        let o = &self.outage;
        writeln!(
            f,
            "payment outage ({} s per design; the payment stub answers 503 at once)",
            s.outage_secs
        )?;
        // The same measured columns as the steady table, without the claim (it has none).
        let pair = |f: &mut fmt::Formatter<'_>, label: &str, sync: String, ordermill: String| {
            row(f, label, ["", "", &sync, &ordermill])
        };
        pair(f, "", "sync baseline".to_owned(), "ordermill".to_owned())?;
        pair(f, "accepted / requests", accepted(&o.sync), accepted(&o.ordermill))?;
        let rate = |summary: &Summary| format!("{:.1}%", error_rate(summary));
        pair(f, "error rate", rate(&o.sync), rate(&o.ordermill))?;
        let latency = |summary: &Summary| {
            format!("{} / {}", figure(summary.latency_ms.mean), figure(summary.latency_ms.p99))
        };
        pair(f, "avg / p99 latency (ms)", latency(&o.sync), latency(&o.ordermill))?;
        pair(
            f,
            "payment calls refused",
            thousands(o.payment_refused_sync),
            format!("{} (retries, with backoff)", thousands(o.payment_refused_ordermill)),
        )?;
        let c = &o.catch_up;
        let orders = &c.orders;
        match c.secs {
            Some(secs) if c.finished => writeln!(
                f,
                "catch-up      all {} sampled outage orders final {:.1} s after payment came back \
                 ({} confirmed, {} cancelled);\n              their accept→confirmed p50 {} ms, \
                 max {} ms",
                orders.sampled,
                secs,
                orders.confirmed,
                orders.cancelled,
                figure(orders.latency_ms.p50),
                figure(orders.latency_ms.max)
            ),
            _ => writeln!(
                f,
                "catch-up      NOT finished: of {} sampled outage orders, {} confirmed, {} \
                 cancelled, {} not final, {} unreadable after {:.1} s",
                orders.sampled,
                orders.confirmed,
                orders.cancelled,
                orders.not_final,
                orders.unreadable,
                orders.waited_secs
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_and_figures_keep_one_decimal() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(figure(10_000.0), "10,000.0");
        assert_eq!(figure(0.04), "0.0");
        assert_eq!(figure(652.35), "652.4");
        assert_eq!(whole(10_000.0), "10,000");
        assert_eq!(whole(649.6), "650");
    }

    #[test]
    fn the_sync_bound_is_connections_over_the_chain() {
        let setup = Setup::new(&StubConfig::default(), 64, 20.0, 5.0, 100, 30);
        assert!((setup.sync_bound_per_sec() - 64.0 / 0.65).abs() < 1e-9);
    }
}
