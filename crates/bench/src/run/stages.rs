//! Where the target's time went during the load: the nodes' stage histograms
//! (`ordermill_stage_duration_seconds`: on api nodes `reserve`, `commit`, `publish`; on
//! consumers, per queue, `receive`, `duplicate_check`, `effects`, `publish`, `settle`), read
//! from their `/metrics` just before and just after the load and subtracted, so the figures
//! cover the load alone — not the set-up, a warm-up or an earlier run.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BenchError;
use super::metrics_text::samples;

/// The histogram every ordermill node records its stages in.
const STAGE_SECONDS: &str = "ordermill_stage_duration_seconds";
/// How long one node may take to answer `/metrics`.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One stage of one node over the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// The node's base URL.
    pub node: String,
    /// The stage (`reserve`, `commit`, `effects`, …).
    pub stage: String,
    /// The consumer's queue; empty for an api node's own stages.
    pub queue: String,
    /// How many times the stage ran during the load (per order, per batch or per message,
    /// as the stage counts).
    pub count: u64,
    /// Mean time per run of the stage, ms.
    pub mean_ms: f64,
    /// The histogram bucket bound that half of them stayed under, ms (`None`: above the last
    /// bound).
    pub p50_under_ms: Option<f64>,
    /// The bound that 99% of them stayed under, ms.
    pub p99_under_ms: Option<f64>,
}

/// The stages of every node read, and the nodes that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stages {
    /// Ordered by node, then queue, then stage.
    pub timings: Vec<StageTiming>,
    /// `URL: why` for each `--metrics` node that did not answer.
    pub unread: Vec<String>,
}

/// A stage as the reports name it: `queue/stage` for a consumer's, the bare stage for an api
/// node's own.
pub fn stage_name(queue: &str, stage: &str) -> String {
    if queue.is_empty() { stage.to_owned() } else { format!("{queue}/{stage}") }
}

/// A stage's mean time, eight characters wide: in µs under 0.1 ms, where an in-process
/// reservation would read 0.000 ms.
pub fn mean_text(ms: f64) -> String {
    if ms < 0.1 { format!("{:>8.1} µs", ms * 1000.0) } else { format!("{ms:>8.3} ms") }
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.timings.is_empty() {
            writeln!(
                f,
                "stages        during the load, from ordermill_stage_duration_seconds (p50 and \
                 p99 as the bucket bound they stay under)"
            )?;
        }
        let under = |ms: Option<f64>| {
            ms.map_or_else(|| "beyond the buckets".to_owned(), |ms| format!("≤ {ms} ms"))
        };
        for t in &self.timings {
            let (stage, mean) = (stage_name(&t.queue, &t.stage), mean_text(t.mean_ms));
            writeln!(
                f,
                "  {}  {stage:<26} {:>9} × mean {mean}  p50 {}  p99 {}",
                t.node,
                t.count,
                under(t.p50_under_ms),
                under(t.p99_under_ms)
            )?;
        }
        for unread in &self.unread {
            writeln!(f, "stages        not read from {unread}")?;
        }
        Ok(())
    }
}

/// One stage's histogram as a node reports it (cumulative since the node started).
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    count: f64,
    sum: f64,
    /// Bucket bound (`le`, seconds; `+Inf` as infinity) → observations at or under it.
    buckets: Vec<(f64, f64)>,
}

/// A node's stage histograms by (queue, stage).
type Snapshot = BTreeMap<(String, String), Histogram>;

/// Reads the stage histograms of `text`.
fn parse(text: &str) -> Snapshot {
    let mut snapshot = Snapshot::new();
    for sample in samples(text) {
        let Some(part) = sample.name.strip_prefix(STAGE_SECONDS) else { continue };
        let Some(stage) = sample.label("stage") else { continue };
        let key = (sample.label("queue").unwrap_or_default().to_owned(), stage.to_owned());
        let histogram = || snapshot.entry(key).or_default();
        match part {
            "_count" => histogram().count = sample.value,
            "_sum" => histogram().sum = sample.value,
            "_bucket" => {
                let le = match sample.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                histogram().buckets.push((le, sample.value));
            }
            _ => {}
        }
    }
    for histogram in snapshot.values_mut() {
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    snapshot
}

/// What `after` recorded since `before` (all of `after` when the node restarted in between).
fn since(after: &Histogram, before: Option<&Histogram>) -> Histogram {
    let Some(before) = before.filter(|b| b.count <= after.count) else { return after.clone() };
    let earlier = |le: f64| {
        before.buckets.iter().find(|(bound, _)| *bound == le).map_or(0.0, |(_, count)| *count)
    };
    Histogram {
        count: after.count - before.count,
        sum: after.sum - before.sum,
        buckets: after.buckets.iter().map(|&(le, count)| (le, count - earlier(le))).collect(),
    }
}

/// The smallest bucket bound, in ms, under which `q` of the observations fall; `None` when
/// that is only the `+Inf` bucket.
fn under_ms(histogram: &Histogram, q: f64) -> Option<f64> {
    let wanted = q * histogram.count;
    let (le, _) = histogram.buckets.iter().find(|(_, count)| *count >= wanted)?;
    // Rounded to the µs, so that a bound of 0.00025 s prints as 0.25 ms.
    le.is_finite().then(|| (le * 1_000_000.0).round() / 1000.0)
}

fn timings(node: &str, before: &Snapshot, after: &Snapshot) -> Vec<StageTiming> {
    after
        .iter()
        .filter_map(|((queue, stage), histogram)| {
            let run = since(histogram, before.get(&(queue.clone(), stage.clone())));
            (run.count >= 1.0).then(|| StageTiming {
                node: node.to_owned(),
                stage: stage.clone(),
                queue: queue.clone(),
                // Counts are whole numbers carried as floats by the text format.
                count: run.count.round() as u64,
                mean_ms: run.sum / run.count * 1000.0,
                p50_under_ms: under_ms(&run, 0.5),
                p99_under_ms: under_ms(&run, 0.99),
            })
        })
        .collect()
}

/// The nodes to read and what was read of them before the load.
pub(crate) struct Before {
    client: reqwest::Client,
    /// Whether the nodes were named (`--metrics`): then one that does not answer is reported.
    named: bool,
    nodes: Vec<(String, Result<Snapshot, String>)>,
}

impl Before {
    /// Reads the stage histograms of `nodes` (base URLs), or of `target` when none is named.
    ///
    /// # Errors
    /// [`BenchError::HttpClient`] when the HTTP client cannot be built.
    pub(crate) async fn read(nodes: &[String], target: &str) -> Result<Before, BenchError> {
        let client = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(BenchError::HttpClient)?;
        let named = !nodes.is_empty();
        let urls = if named { nodes.to_vec() } else { vec![target.to_owned()] };
        let mut read = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.trim_end_matches('/').to_owned();
            let snapshot = scrape(&client, &url).await;
            read.push((url, snapshot));
        }
        Ok(Before { client, named, nodes: read })
    }

    /// Reads the nodes again and reports what each stage did in between.
    pub(crate) async fn after(self) -> Stages {
        let mut stages = Stages::default();
        for (url, before) in self.nodes {
            let after = scrape(&self.client, &url).await;
            match (before, after) {
                (Ok(before), Ok(after)) => stages.timings.extend(timings(&url, &before, &after)),
                (Err(why), _) | (_, Err(why)) if self.named => {
                    stages.unread.push(format!("{url}: {why}"));
                }
                _ => {}
            }
        }
        stages
    }
}

async fn scrape(client: &reqwest::Client, url: &str) -> Result<Snapshot, String> {
    let reply = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .map_err(|e| format!("no answer from /metrics ({})", e.without_url()))?;
    if !reply.status().is_success() {
        return Err(format!("/metrics answered {}", reply.status()));
    }
    let text = reply.text().await.map_err(|e| format!("reading /metrics: {}", e.without_url()))?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve(buckets: [u64; 3], sum: f64) -> String {
        format!(
            "# TYPE ordermill_stage_duration_seconds histogram\n\
             ordermill_stage_duration_seconds_bucket{{stage=\"reserve\",le=\"0.001\"}} {}\n\
             ordermill_stage_duration_seconds_bucket{{stage=\"reserve\",le=\"0.005\"}} {}\n\
             ordermill_stage_duration_seconds_bucket{{stage=\"reserve\",le=\"+Inf\"}} {}\n\
             ordermill_stage_duration_seconds_sum{{stage=\"reserve\"}} {sum}\n\
             ordermill_stage_duration_seconds_count{{stage=\"reserve\"}} {}\n\
             ordermill_commit_duration_seconds_count 99\n",
            buckets[0], buckets[1], buckets[2], buckets[2]
        )
    }

    const EFFECTS: &str = "\
ordermill_stage_duration_seconds_bucket{stage=\"effects\",queue=\"payment\",le=\"0.01\"} 4
ordermill_stage_duration_seconds_bucket{stage=\"effects\",queue=\"payment\",le=\"+Inf\"} 4
ordermill_stage_duration_seconds_sum{stage=\"effects\",queue=\"payment\"} 0.02
ordermill_stage_duration_seconds_count{stage=\"effects\",queue=\"payment\"} 4
";

    #[test]
    fn a_stage_is_timed_over_the_load_alone() {
        let before = parse(&(reserve([10, 10, 10], 0.005) + EFFECTS));
        // During the load: 100 more reservations, 60 within 1 ms, 99 within 5 ms.
        let after = parse(&(reserve([70, 109, 110], 0.205) + EFFECTS));
        let timings = timings("http://n", &before, &after);
        assert_eq!(timings.len(), 1, "a stage with nothing new is left out: {timings:?}");
        let reserve = &timings[0];
        assert_eq!((reserve.stage.as_str(), reserve.queue.as_str()), ("reserve", ""));
        assert_eq!(reserve.count, 100);
        assert!((reserve.mean_ms - 2.0).abs() < 1e-9, "{reserve:?}");
        assert_eq!((reserve.p50_under_ms, reserve.p99_under_ms), (Some(1.0), Some(5.0)));
    }

    #[test]
    fn a_stage_first_seen_or_restarted_during_the_load_counts_from_zero() {
        let before = parse(&reserve([500, 500, 500], 1.0));
        let after = parse(&(reserve([3, 3, 4], 0.012) + EFFECTS));
        let timings = timings("http://n", &before, &after);
        let reserve = timings.iter().find(|t| t.stage == "reserve").unwrap();
        assert_eq!(reserve.count, 4, "the node restarted: all of its counts are new");
        assert_eq!(reserve.p99_under_ms, None, "the slowest beyond the last bound");
        let effects = timings.iter().find(|t| t.stage == "effects").unwrap();
        assert_eq!((effects.queue.as_str(), effects.count), ("payment", 4));
        assert!((effects.mean_ms - 5.0).abs() < 1e-9, "{effects:?}");
    }

    #[test]
    fn printed_per_node_with_fast_stages_in_microseconds_and_unread_nodes_named() {
        assert_eq!(Stages::default().to_string(), "", "nothing read, nothing printed");
        let timing = |stage: &str, queue: &str, mean_ms| StageTiming {
            node: "http://n".into(),
            stage: stage.into(),
            queue: queue.into(),
            count: 7,
            mean_ms,
            p50_under_ms: Some(0.1),
            p99_under_ms: None,
        };
        let stages = Stages {
            timings: vec![timing("reserve", "", 0.0004), timing("effects", "payment", 9.5)],
            unread: vec!["http://w: no answer".into()],
        };
        let text = stages.to_string();
        assert!(text.contains("reserve") && text.contains("0.4 µs"), "{text}");
        assert!(text.contains("payment/effects") && text.contains("9.500 ms"), "{text}");
        assert!(text.contains("p50 ≤ 0.1 ms  p99 beyond the buckets"), "{text}");
        assert!(text.contains("not read from http://w: no answer"), "{text}");
    }

    #[test]
    fn other_series_are_not_stages() {
        let parsed = parse("ordermill_commit_duration_seconds_count 99\nup 1\n");
        assert!(parsed.is_empty(), "{parsed:?}");
    }
}
