//! Reading ordermill's own Prometheus text back: what `ordermill status` shows from each
//! node's `/metrics`, and what `/admin/overview` (the dashboard) shows from this process's
//! recorder and its peers'. Only the series those views need; everything else is skipped.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    COMMIT_SHED, CONFIRM_SECONDS, CONSUMER_MESSAGES, INTAKE_SECONDS, LATE_COMMITS, ORDERS_ACCEPTED,
    ORDERS_CANCELLED, ORDERS_CONFIRMED, ORDERS_FENCED, ORDERS_REJECTED, QUEUE_DEAD, QUEUE_DEPTH,
    STAGE_SECONDS, STOCK_REBUILDS,
};

/// Order counters, summed over nodes (or, as rates, per second).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Answered 201.
    pub accepted: f64,
    /// Confirmed by the pipeline.
    pub confirmed: f64,
    /// Cancelled (out of stock, declined, expired, by an operator).
    pub cancelled: f64,
    /// Refused at intake, every reason.
    pub rejected: f64,
    /// Shed under overload (503 `overloaded`).
    pub shed: f64,
}

impl Totals {
    /// Per second from `before` to `self` over `seconds` (a counter reset reads as 0).
    pub fn rates_since(&self, before: &Totals, seconds: f64) -> Totals {
        let rate = |now: f64, then: f64| ((now - then) / seconds.max(0.001)).max(0.0);
        Totals {
            accepted: rate(self.accepted, before.accepted),
            confirmed: rate(self.confirmed, before.confirmed),
            cancelled: rate(self.cancelled, before.cancelled),
            rejected: rate(self.rejected, before.rejected),
            shed: rate(self.shed, before.shed),
        }
    }

    fn add(&mut self, other: &Totals) {
        self.accepted += other.accepted;
        self.confirmed += other.confirmed;
        self.cancelled += other.cancelled;
        self.rejected += other.rejected;
        self.shed += other.shed;
    }
}

/// What the shared hot-stock counts went through, summed over nodes: each figure above 0
/// means orders were answered 503 `unavailable` for a while (docs/OPERATIONS.md, "Redis loses
/// its data").
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StockFaults {
    /// Times the counts were rebuilt from the store.
    pub rebuilds: f64,
    /// Orders not written because the counts moved on after they reserved.
    pub fenced_orders: f64,
    /// Commits that landed after the counts moved on, each followed by a rebuild.
    pub late_commits: f64,
}

impl StockFaults {
    /// Whether anything happened.
    pub fn any(&self) -> bool {
        self.rebuilds + self.fenced_orders + self.late_commits > 0.0
    }
}

/// One or more nodes' `/metrics`, read.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// Order counters.
    pub totals: Totals,
    /// Intake refusals by reason code.
    pub rejected_by_reason: BTreeMap<String, f64>,
    /// The hot-stock counts' faults.
    pub stock: StockFaults,
    /// Consumer messages by (queue, outcome: ack, retry, dead).
    pub consumer_messages: BTreeMap<(String, String), f64>,
    /// Queue depth gauges by queue.
    pub depth: BTreeMap<String, f64>,
    /// Dead-letter gauges by queue.
    pub dead: BTreeMap<String, f64>,
    /// `le` bound → cumulative count of the accept→confirmed histogram.
    pub confirm_buckets: BTreeMap<String, f64>,
    /// `le` bound → cumulative count of the intake latency histogram.
    pub intake_buckets: BTreeMap<String, f64>,
    /// (queue, stage) → the stage histogram's count and sum of seconds (queue empty for an
    /// api node's own stages).
    pub stages: BTreeMap<(String, String), StageSums>,
}

/// A stage histogram's count and sum, since its node started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageSums {
    /// Times the stage ran.
    pub count: f64,
    /// Seconds it took in all.
    pub seconds: f64,
}

/// One stage over an interval, every node together.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageRate {
    /// `reserve`, `commit`, `effects`, …
    pub stage: String,
    /// The consumer's queue; empty for an api node's own stages.
    pub queue: String,
    /// Times the stage ran per second.
    pub per_sec: f64,
    /// Mean time per run, ms.
    pub mean_ms: f64,
}

/// What each stage did between `before` and `now` (`seconds` apart), the stages that ran;
/// a node restarted in between counts from its restart.
pub fn stages_since(
    now: &BTreeMap<(String, String), StageSums>,
    before: &BTreeMap<(String, String), StageSums>,
    seconds: f64,
) -> Vec<StageRate> {
    now.iter()
        .filter_map(|((queue, stage), now)| {
            let then = before.get(&(queue.clone(), stage.clone())).copied().unwrap_or_default();
            let then = if then.count > now.count { StageSums::default() } else { then };
            let count = now.count - then.count;
            (count >= 1.0).then(|| StageRate {
                stage: stage.clone(),
                queue: queue.clone(),
                per_sec: count / seconds.max(0.001),
                mean_ms: (now.seconds - then.seconds) / count * 1000.0,
            })
        })
        .collect()
}

impl Scrape {
    /// Reads the lines of the Prometheus text format these views need.
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let label = |key: &str| {
                let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
                labels[start..].split_once('"').map(|(v, _)| v.to_owned())
            };
            let bucket =
                |suffix: &str| name.strip_suffix("_bucket").is_some_and(|base| base == suffix);
            let stage_part = name.strip_prefix(STAGE_SECONDS);
            match name {
                ORDERS_ACCEPTED => scrape.totals.accepted += value,
                ORDERS_CONFIRMED => scrape.totals.confirmed += value,
                ORDERS_CANCELLED => scrape.totals.cancelled += value,
                COMMIT_SHED => scrape.totals.shed += value,
                STOCK_REBUILDS => scrape.stock.rebuilds += value,
                ORDERS_FENCED => scrape.stock.fenced_orders += value,
                LATE_COMMITS => scrape.stock.late_commits += value,
                ORDERS_REJECTED => {
                    scrape.totals.rejected += value;
                    let reason = label("reason").unwrap_or_default();
                    *scrape.rejected_by_reason.entry(reason).or_default() += value;
                }
                CONSUMER_MESSAGES => {
                    if let (Some(queue), Some(outcome)) = (label("queue"), label("outcome")) {
                        *scrape.consumer_messages.entry((queue, outcome)).or_default() += value;
                    }
                }
                QUEUE_DEPTH => {
                    if let Some(queue) = label("queue") {
                        scrape.depth.insert(queue, value);
                    }
                }
                QUEUE_DEAD => {
                    if let Some(queue) = label("queue") {
                        scrape.dead.insert(queue, value);
                    }
                }
                _ if bucket(CONFIRM_SECONDS) => {
                    if let Some(le) = label("le") {
                        *scrape.confirm_buckets.entry(le).or_default() += value;
                    }
                }
                _ if bucket(INTAKE_SECONDS) => {
                    if let Some(le) = label("le") {
                        *scrape.intake_buckets.entry(le).or_default() += value;
                    }
                }
                _ if matches!(stage_part, Some("_count" | "_sum")) => {
                    if let Some(stage) = label("stage") {
                        let key = (label("queue").unwrap_or_default(), stage);
                        let sums = scrape.stages.entry(key).or_default();
                        if stage_part == Some("_count") {
                            sums.count += value;
                        } else {
                            sums.seconds += value;
                        }
                    }
                }
                _ => {}
            }
        }
        scrape
    }

    /// Adds `other` in: counters and histogram buckets summed, bus gauges maxed (every node
    /// reports the same queues).
    pub fn merge(&mut self, other: Scrape) {
        self.totals.add(&other.totals);
        self.stock.rebuilds += other.stock.rebuilds;
        self.stock.fenced_orders += other.stock.fenced_orders;
        self.stock.late_commits += other.stock.late_commits;
        let sum = |into: &mut BTreeMap<String, f64>, from: BTreeMap<String, f64>| {
            for (key, v) in from {
                *into.entry(key).or_default() += v;
            }
        };
        let max = |into: &mut BTreeMap<String, f64>, from: BTreeMap<String, f64>| {
            for (key, v) in from {
                let slot = into.entry(key).or_default();
                *slot = slot.max(v);
            }
        };
        sum(&mut self.rejected_by_reason, other.rejected_by_reason);
        sum(&mut self.confirm_buckets, other.confirm_buckets);
        sum(&mut self.intake_buckets, other.intake_buckets);
        for (key, v) in other.stages {
            let sums = self.stages.entry(key).or_default();
            sums.count += v.count;
            sums.seconds += v.seconds;
        }
        for (key, v) in other.consumer_messages {
            *self.consumer_messages.entry(key).or_default() += v;
        }
        max(&mut self.depth, other.depth);
        max(&mut self.dead, other.dead);
    }
}

/// The smallest bucket bound under which `q` of the observations fall (`+Inf` when it is
/// beyond the last bound); `None` before any observation.
pub fn quantile(buckets: &BTreeMap<String, f64>, q: f64) -> Option<f64> {
    let mut bounds: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, count)| {
            (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) }, *count)
        })
        .filter(|(le, _)| !le.is_nan())
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    bounds.iter().find(|(_, count)| *count >= q * total).map(|(le, _)| *le)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP ordermill_orders_accepted_total Orders made durable and answered 201.
# TYPE ordermill_orders_accepted_total counter
ordermill_orders_accepted_total 120
ordermill_orders_rejected_total{reason="out_of_stock"} 3
ordermill_orders_rejected_total{reason="invalid_order"} 2
ordermill_consumer_messages_total{queue="payment",outcome="ack"} 40
ordermill_consumer_messages_total{queue="payment",outcome="dead"} 1
ordermill_queue_depth{queue="payment"} 7
ordermill_stock_rebuilds_total 2
ordermill_orders_fenced_total{cause="lease_lapsed"} 3
ordermill_orders_fenced_total{cause="counts_set_anew"} 1
ordermill_late_commits_total{cause="counts_set_anew"} 1
ordermill_queue_dead_letters{queue="payment"} 1
ordermill_accept_to_confirm_seconds_bucket{le="0.005"} 50
ordermill_accept_to_confirm_seconds_bucket{le="0.01"} 99
ordermill_accept_to_confirm_seconds_bucket{le="0.025"} 100
ordermill_accept_to_confirm_seconds_bucket{le="+Inf"} 100
ordermill_intake_duration_seconds_bucket{le="0.001"} 10
ordermill_intake_duration_seconds_bucket{le="+Inf"} 11
ordermill_intake_duration_seconds_sum 0.02
ordermill_stage_duration_seconds_bucket{stage="reserve",le="0.001"} 9
ordermill_stage_duration_seconds_sum{stage="reserve"} 0.004
ordermill_stage_duration_seconds_count{stage="reserve"} 10
ordermill_stage_duration_seconds_sum{stage="effects",queue="payment"} 0.2
ordermill_stage_duration_seconds_count{stage="effects",queue="payment"} 4
"#;

    #[test]
    fn reads_counters_gauges_and_histograms() {
        let scrape = Scrape::parse(METRICS);
        assert_eq!(scrape.totals.accepted, 120.0);
        assert_eq!(scrape.totals.rejected, 5.0, "summed over reasons");
        assert_eq!(scrape.rejected_by_reason["out_of_stock"], 3.0);
        assert_eq!(scrape.consumer_messages[&("payment".into(), "dead".into())], 1.0);
        assert_eq!(scrape.depth["payment"], 7.0);
        assert_eq!(scrape.dead["payment"], 1.0);
        let stock = StockFaults { rebuilds: 2.0, fenced_orders: 4.0, late_commits: 1.0 };
        assert_eq!(scrape.stock, stock, "summed over causes");
        assert!(!Scrape::default().stock.any());
        assert_eq!(quantile(&scrape.confirm_buckets, 0.5), Some(0.005));
        assert_eq!(quantile(&scrape.confirm_buckets, 0.99), Some(0.01));
        assert_eq!(quantile(&scrape.intake_buckets, 0.99), Some(f64::INFINITY));
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn nodes_add_their_counters_and_share_their_queues() {
        let mut merged = Scrape::default();
        merged.merge(Scrape::parse(METRICS));
        merged.merge(Scrape::parse(METRICS));
        assert_eq!(merged.totals.accepted, 240.0);
        assert_eq!(merged.rejected_by_reason["invalid_order"], 4.0);
        assert_eq!(merged.consumer_messages[&("payment".into(), "ack".into())], 80.0);
        assert_eq!(merged.depth["payment"], 7.0, "the same bus, seen twice");
        assert_eq!(merged.stock.fenced_orders, 8.0, "each node fenced its own");
    }

    #[test]
    fn stages_are_timed_over_the_interval_for_every_node_together() {
        let before = Scrape::parse(METRICS);
        let mut now = Scrape::parse(METRICS);
        now.merge(Scrape::parse(METRICS));
        let key = |queue: &str, stage: &str| (queue.to_owned(), stage.to_owned());
        assert_eq!(now.stages[&key("", "reserve")], StageSums { count: 20.0, seconds: 0.008 });
        let rates = stages_since(&now.stages, &before.stages, 2.0);
        assert_eq!(rates.len(), 2, "{rates:?}");
        let (reserve, effects) = (&rates[0], &rates[1]);
        assert_eq!((reserve.queue.as_str(), reserve.stage.as_str()), ("", "reserve"));
        assert_eq!((reserve.per_sec, reserve.mean_ms), (5.0, 0.4));
        assert_eq!((effects.queue.as_str(), effects.stage.as_str()), ("payment", "effects"));
        assert_eq!(effects.per_sec, 2.0);
        assert!((effects.mean_ms - 50.0).abs() < 1e-9, "{effects:?}");
        assert!(stages_since(&before.stages, &before.stages, 2.0).is_empty(), "nothing ran");
        let restarted = stages_since(&before.stages, &now.stages, 2.0);
        assert_eq!(restarted.len(), 2, "a restarted node counts from its restart: {restarted:?}");
        assert_eq!(restarted[0].per_sec, 5.0);
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        let before = Totals { accepted: 100.0, confirmed: 50.0, ..Totals::default() };
        let now = Totals { accepted: 300.0, confirmed: 10.0, ..Totals::default() };
        let rates = now.rates_since(&before, 2.0);
        assert_eq!(rates.accepted, 100.0);
        assert_eq!(rates.confirmed, 0.0, "a restarted node's counter is not a negative rate");
    }
}
