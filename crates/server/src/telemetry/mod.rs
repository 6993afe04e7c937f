//! Metrics: names in one place, the Prometheus recorder, and the handles the hot path uses.
//!
//! Labels are low-cardinality (a reason code, never an id). The intake path holds
//! pre-registered handles so it never formats a metric name per request.

pub mod scrape;

use std::sync::OnceLock;

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ordermill_bus::OUTBOX_OLDEST_SECONDS;
use ordermill_cache::redis::MERGED_CALL_ITEMS;
use ordermill_store::{JOIN_TRANSACTION_JOINS, JOIN_TRANSACTION_SECONDS};

/// Orders made durable and answered 201.
pub const ORDERS_ACCEPTED: &str = "ordermill_orders_accepted_total";
/// Orders refused, labelled by `reason` (the error code).
pub const ORDERS_REJECTED: &str = "ordermill_orders_rejected_total";
/// Time from request start to the durable answer, seconds.
pub const INTAKE_SECONDS: &str = "ordermill_intake_duration_seconds";
/// Orders per group-commit transaction.
pub const COMMIT_BATCH_ORDERS: &str = "ordermill_commit_batch_orders";
/// Duration of one group-commit transaction including fsync, seconds.
pub const COMMIT_SECONDS: &str = "ordermill_commit_duration_seconds";
/// Group-commit transactions that failed (their orders answered 503, stock released).
pub const COMMIT_FAILURES: &str = "ordermill_commit_failures_total";
/// Orders shed (503 `overloaded`) because they waited longer than `http.max_queue_wait`.
pub const COMMIT_SHED: &str = "ordermill_orders_shed_total";
/// Orders not written (503 `unavailable`) because the shared hot-stock counts moved on after
/// they reserved their units, by `cause`: `lease_lapsed` (this node's lease lapsed) or
/// `counts_set_anew` (the counts were rebuilt from the store).
pub const ORDERS_FENCED: &str = "ordermill_orders_fenced_total";
/// Commits that landed after the shared counts had moved on under their reservations (the
/// same `cause`s as [`ORDERS_FENCED`]); each marked the counts for a rebuild.
pub const LATE_COMMITS: &str = "ordermill_late_commits_total";

/// Where the time goes, by `stage` (and `queue` on consumers), seconds. api nodes:
/// `reserve` (hot stock), `commit` (group commit), `publish` (order.created, publish to
/// confirm). Consumers, per batch: `receive` (waiting for deliveries), `duplicate_check`,
/// `effects` (the effect transaction), `publish` (emitted events, to confirm), `settle`
/// (acks, retries, dead letters).
pub const STAGE_SECONDS: &str = "ordermill_stage_duration_seconds";

/// A stage's histogram (see [`STAGE_SECONDS`]); `queue` is empty on the api side.
pub fn stage(stage: &'static str, queue: &str) -> Histogram {
    if queue.is_empty() {
        histogram!(STAGE_SECONDS, "stage" => stage)
    } else {
        histogram!(STAGE_SECONDS, "stage" => stage, "queue" => queue.to_owned())
    }
}

/// Messages handled by consumers, by `queue` and `outcome` (ack, retry, dead).
pub const CONSUMER_MESSAGES: &str = "ordermill_consumer_messages_total";
/// Time to handle one batch of deliveries, by `queue`, seconds.
pub const CONSUMER_SECONDS: &str = "ordermill_consumer_batch_duration_seconds";
/// Messages waiting or in flight, by `queue`.
pub const QUEUE_DEPTH: &str = "ordermill_queue_depth";
/// Dead letters, by `queue`.
pub const QUEUE_DEAD: &str = "ordermill_queue_dead_letters";
/// Orders confirmed.
pub const ORDERS_CONFIRMED: &str = "ordermill_orders_confirmed_total";
/// Orders cancelled.
pub const ORDERS_CANCELLED: &str = "ordermill_orders_cancelled_total";
/// Payments that arrived for orders already cancelled (a late callback): money to give back.
pub const REFUNDS_REQUIRED: &str = "ordermill_payments_refund_required_total";
/// Pay-later orders cancelled because their payment deadline passed.
pub const PAYMENT_TIMEOUTS: &str = "ordermill_payment_timeouts_total";
/// Payment callbacks answered, by `outcome` (`paid`, `failed`, `refund_required`, `repeat`,
/// `refused`).
pub const PAYMENT_CALLBACKS: &str = "ordermill_payment_callbacks_total";
/// Time from acceptance to confirmation, seconds.
pub const CONFIRM_SECONDS: &str = "ordermill_accept_to_confirm_seconds";
/// Group-buy deals opened.
pub const DEALS_OPENED: &str = "ordermill_deals_opened_total";
/// Group-buy deals whose group filled before the deadline.
pub const DEALS_COMPLETED: &str = "ordermill_deals_completed_total";
/// Group-buy deals whose deadline passed unfilled.
pub const DEALS_EXPIRED: &str = "ordermill_deals_expired_total";
/// Times a consumer held messages because an engine was unavailable, by queue.
pub const CONSUMER_PAUSES: &str = "ordermill_consumer_pauses_total";
/// Times this node rebuilt lost hot-stock counts from the store.
pub const STOCK_REBUILDS: &str = "ordermill_stock_rebuilds_total";
/// 1 while the node waits for its engines at start (its port answers only probes and
/// `/metrics`), 0 once it serves.
pub const NODE_STARTING: &str = "ordermill_node_starting";
/// Start attempts that found an engine unreachable, by `engine` (the setting naming it:
/// `store`, `bus`, `cache`).
pub const START_WAITS: &str = "ordermill_start_waits_total";
/// Log lines dropped because stdout did not take them as fast as they came.
pub const LOG_LINES_DROPPED: &str = "ordermill_log_lines_dropped_total";

/// Whether the node still waits for its engines at start ([`NODE_STARTING`]).
pub fn starting(waiting: bool) {
    gauge!(NODE_STARTING).set(if waiting { 1.0 } else { 0.0 });
}

/// A start attempt found the engine `setting` names unreachable ([`START_WAITS`]).
pub fn start_waited(setting: &'static str) {
    counter!(START_WAITS, "engine" => setting).increment(1);
}

/// Records how many log lines the process has dropped so far (the log writer counts them).
pub fn log_lines_dropped(total: u64) {
    counter!(LOG_LINES_DROPPED).absolute(total);
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle. Later calls
/// (several apps in one test process) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ];
            // Accepted → confirmed runs to minutes when a backlog drains: a p99 capped at 2.5 s
            // would hide how far behind the consumers are.
            let confirm: Vec<f64> =
                latency.iter().copied().chain([5.0, 10.0, 30.0, 60.0, 120.0, 300.0]).collect();
            let sizes =
                [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0];
            // A full name's buckets win over a suffix's.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(COMMIT_BATCH_ORDERS.into()), &sizes)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(CONFIRM_SECONDS.into()), &confirm)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(MERGED_CALL_ITEMS.into()), &sizes)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(JOIN_TRANSACTION_JOINS.into()), &sizes)
                })
                .expect("bucket lists are non-empty constants");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's); then our
            // handle renders empty, which /metrics shows rather than failing start-up.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("A metrics recorder was already installed; /metrics will be empty.");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(ORDERS_ACCEPTED, "Orders made durable and answered 201.");
    describe_gauge!(
        NODE_STARTING,
        "1 while the node waits for its engines at start, 0 once it serves."
    );
    describe_counter!(START_WAITS, "Start attempts that found an engine unreachable, by engine.");
    describe_counter!(
        CONSUMER_PAUSES,
        "Times a consumer held messages for an unavailable engine instead of spending their attempts."
    );
    describe_counter!(
        STOCK_REBUILDS,
        "Times this node rebuilt the hot-stock counts from the store after the cache lost them."
    );
    describe_counter!(ORDERS_REJECTED, "Orders refused, by reason code.");
    describe_counter!(
        ORDERS_FENCED,
        "Orders not written because the shared hot-stock counts moved on after they reserved, by cause (lease_lapsed, counts_set_anew)."
    );
    describe_counter!(
        LATE_COMMITS,
        "Commits that landed after the shared hot-stock counts moved on under them, by cause; each marked the counts for a rebuild."
    );
    describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because stdout did not take them as fast as they came (intake never waits for the log)."
    );
    // Shown from the start (at 0), not only from the log writer's first count a second later.
    counter!(LOG_LINES_DROPPED).increment(0);
    describe_histogram!(
        INTAKE_SECONDS,
        Unit::Seconds,
        "Order intake latency to the durable answer."
    );
    describe_histogram!(COMMIT_BATCH_ORDERS, Unit::Count, "Orders per group-commit transaction.");
    describe_histogram!(
        MERGED_CALL_ITEMS,
        Unit::Count,
        "Requests per merged Redis script call, by call (reservation, rate_limit)."
    );
    describe_histogram!(
        JOIN_TRANSACTION_JOINS,
        Unit::Count,
        "Deal joins decided per transaction (PostgreSQL and MySQL)."
    );
    describe_histogram!(
        JOIN_TRANSACTION_SECONDS,
        Unit::Seconds,
        "Time to decide and commit one transaction of deal joins (PostgreSQL and MySQL)."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Group-commit transaction time including fsync."
    );
    describe_counter!(COMMIT_FAILURES, "Group-commit transactions that failed.");
    describe_counter!(
        COMMIT_SHED,
        "Orders shed because they waited longer than http.max_queue_wait, by cause: backlog (the node is behind) or slow_commit (queued in time, held up by a commit that ran long)."
    );
    describe_counter!(CONSUMER_MESSAGES, "Messages handled by consumers, by queue and outcome.");
    describe_histogram!(
        STAGE_SECONDS,
        Unit::Seconds,
        "Time per pipeline stage, by stage and queue."
    );
    describe_histogram!(CONSUMER_SECONDS, Unit::Seconds, "Time to handle one batch of deliveries.");
    describe_gauge!(QUEUE_DEPTH, "Messages ready, delayed or in flight, by queue.");
    describe_gauge!(QUEUE_DEAD, "Dead letters, by queue.");
    describe_gauge!(
        OUTBOX_OLDEST_SECONDS,
        Unit::Seconds,
        "How long the oldest outbox event no broker has confirmed has waited (0: none); api nodes with a broker."
    );
    describe_counter!(ORDERS_CONFIRMED, "Orders confirmed.");
    describe_counter!(ORDERS_CANCELLED, "Orders cancelled.");
    describe_counter!(REFUNDS_REQUIRED, "Payments that arrived for orders already cancelled.");
    describe_counter!(PAYMENT_TIMEOUTS, "Pay-later orders cancelled at their payment deadline.");
    describe_counter!(PAYMENT_CALLBACKS, "Payment callbacks answered, by outcome.");
    describe_histogram!(CONFIRM_SECONDS, Unit::Seconds, "Time from acceptance to confirmation.");
    describe_counter!(DEALS_OPENED, "Group-buy deals opened.");
    describe_counter!(DEALS_COMPLETED, "Group-buy deals whose group filled in time.");
    describe_counter!(DEALS_EXPIRED, "Group-buy deals whose deadline passed unfilled.");
}

/// Pre-registered handles for the intake path.
#[derive(Clone)]
pub struct IntakeMetrics {
    /// [`ORDERS_ACCEPTED`].
    pub accepted: Counter,
    /// [`INTAKE_SECONDS`].
    pub latency: Histogram,
    /// [`STAGE_SECONDS`] `reserve`.
    pub reserve: Histogram,
}

impl IntakeMetrics {
    /// Registers the handles with the installed recorder.
    pub fn new() -> Self {
        IntakeMetrics {
            accepted: counter!(ORDERS_ACCEPTED),
            latency: histogram!(INTAKE_SECONDS),
            reserve: stage("reserve", ""),
        }
    }

    /// Counts one refused order by its (static) reason code.
    pub fn rejected(&self, reason: &'static str) {
        counter!(ORDERS_REJECTED, "reason" => reason).increment(1);
    }
}

impl Default for IntakeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Pre-registered handles for the committer.
#[derive(Clone)]
pub struct CommitMetrics {
    /// [`COMMIT_BATCH_ORDERS`].
    pub batch_orders: Histogram,
    /// [`COMMIT_SECONDS`].
    pub duration: Histogram,
    /// [`COMMIT_FAILURES`].
    pub failures: Counter,
    /// [`COMMIT_SHED`] `cause="backlog"`: the node is behind.
    pub shed_backlog: Counter,
    /// [`COMMIT_SHED`] `cause="slow_commit"`: queued in time, held up by a commit that ran
    /// long.
    pub shed_slow_commit: Counter,
    /// [`ORDERS_FENCED`] `cause="lease_lapsed"`.
    pub fenced_lease: Counter,
    /// [`ORDERS_FENCED`] `cause="counts_set_anew"`.
    pub fenced_epoch: Counter,
    /// [`LATE_COMMITS`] `cause="lease_lapsed"`.
    pub late_lease: Counter,
    /// [`LATE_COMMITS`] `cause="counts_set_anew"`.
    pub late_epoch: Counter,
    /// [`STAGE_SECONDS`] `commit`.
    pub stage_commit: Histogram,
    /// [`STAGE_SECONDS`] `publish`.
    pub stage_publish: Histogram,
}

impl CommitMetrics {
    /// Registers the handles with the installed recorder.
    pub fn new() -> Self {
        CommitMetrics {
            batch_orders: histogram!(COMMIT_BATCH_ORDERS),
            duration: histogram!(COMMIT_SECONDS),
            failures: counter!(COMMIT_FAILURES),
            shed_backlog: counter!(COMMIT_SHED, "cause" => "backlog"),
            shed_slow_commit: counter!(COMMIT_SHED, "cause" => "slow_commit"),
            fenced_lease: counter!(ORDERS_FENCED, "cause" => "lease_lapsed"),
            fenced_epoch: counter!(ORDERS_FENCED, "cause" => "counts_set_anew"),
            late_lease: counter!(LATE_COMMITS, "cause" => "lease_lapsed"),
            late_epoch: counter!(LATE_COMMITS, "cause" => "counts_set_anew"),
            stage_commit: stage("commit", ""),
            stage_publish: stage("publish", ""),
        }
    }
}

impl Default for CommitMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Publishes queue depths as gauges every `every` until `stop`.
pub async fn watch_queues(
    bus: std::sync::Arc<dyn ordermill_core::ports::EventBus>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Ok(depths) = bus.depths().await {
            for (queue, depth) in depths {
                gauge!(QUEUE_DEPTH, "queue" => queue.clone()).set(depth.backlog() as f64);
                gauge!(QUEUE_DEAD, "queue" => queue).set(depth.dead as f64);
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric this module names.
    const ALL: &[&str] = &[
        ORDERS_ACCEPTED,
        ORDERS_REJECTED,
        INTAKE_SECONDS,
        COMMIT_BATCH_ORDERS,
        COMMIT_SECONDS,
        COMMIT_FAILURES,
        COMMIT_SHED,
        ORDERS_FENCED,
        LATE_COMMITS,
        STAGE_SECONDS,
        CONSUMER_MESSAGES,
        CONSUMER_SECONDS,
        QUEUE_DEPTH,
        QUEUE_DEAD,
        ORDERS_CONFIRMED,
        ORDERS_CANCELLED,
        REFUNDS_REQUIRED,
        PAYMENT_TIMEOUTS,
        PAYMENT_CALLBACKS,
        CONFIRM_SECONDS,
        DEALS_OPENED,
        DEALS_COMPLETED,
        DEALS_EXPIRED,
        CONSUMER_PAUSES,
        STOCK_REBUILDS,
        OUTBOX_OLDEST_SECONDS,
        NODE_STARTING,
        START_WAITS,
    ];

    /// The `ordermill_*` names a file uses, with histogram suffixes taken off.
    fn used_in(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("ordermill_") {
            let tail = &rest[at..];
            let end =
                tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.push(base.to_owned());
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_alerts_and_the_dashboard_use_only_metrics_that_exist() {
        for (file, text) in [
            ("alerts.yml", include_str!("../../../../deploy/prometheus/alerts.yml")),
            ("alerts.test.yml", include_str!("../../../../deploy/prometheus/alerts.test.yml")),
            (
                "grafana-dashboard.json",
                include_str!("../../../../deploy/prometheus/grafana-dashboard.json"),
            ),
        ] {
            let used = used_in(text);
            assert!(!used.is_empty(), "{file} names no metric");
            for name in used {
                assert!(ALL.contains(&name.as_str()), "{file} uses {name}, which no node serves");
            }
        }
    }

    #[test]
    fn accept_to_confirm_counts_waits_of_minutes_and_intake_stays_fine_grained() {
        let handle = install();
        metrics::histogram!(CONFIRM_SECONDS).record(40.0);
        metrics::histogram!(INTAKE_SECONDS).record(0.0003);
        let text = handle.render();
        for bucket in [
            format!("{CONFIRM_SECONDS}_bucket{{le=\"60\"}}"),
            format!("{CONFIRM_SECONDS}_bucket{{le=\"300\"}}"),
            format!("{INTAKE_SECONDS}_bucket{{le=\"0.0005\"}}"),
        ] {
            assert!(text.contains(&bucket), "{bucket} missing from:\n{text}");
        }
        assert!(!text.contains(&format!("{INTAKE_SECONDS}_bucket{{le=\"60\"}}")), "{text}");
    }
}
