//! `--e2e`: accept→confirmed latency of a sample of the accepted orders.
//!
//! A 201 from ordermill means "durable", not "done": inventory, payment and notification
//! happen behind the bus. To measure the whole way, each load connection keeps a reservoir of
//! the ids of its accepted orders (algorithm R), so the sample spreads over the whole run
//! without knowing beforehand how many orders will be accepted. After the load the sampled
//! orders are polled with `GET /api/orders/{id}` until each is final (confirmed or cancelled)
//! or the wait is over. An order's latency is its history's "confirmed" time minus its
//! `created_at`: both are stamped by the server, so neither the polling interval nor the
//! bench's clock enters the figure.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::BenchError;
use super::report::{E2e, E2eLatency};

// GETs in flight at once while polling: enough to read a few hundred orders per round quickly,
// few enough not to compete with the pipeline being measured.
const POLL_CONCURRENCY: usize = 16;
// One GET that takes longer than this is counted as unanswered for the round.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client that polls orders, sending `admin_token` (which may read any order) with
/// every request when given: a target in jwt mode shows an order only to its customer or the
/// admin.
///
/// # Errors
/// [`BenchError::HttpClient`] when it cannot be built, [`BenchError::InvalidArgs`] when the
/// token cannot be sent in a header.
pub(crate) fn client(admin_token: Option<&str>) -> Result<reqwest::Client, BenchError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = admin_token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| {
                BenchError::InvalidArgs(
                    "--admin-token holds characters an HTTP header cannot carry".to_owned(),
                )
            })?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(POLL_TIMEOUT)
        // The target is a local server; a proxy from the environment must not sit in between.
        .no_proxy()
        .build()
        .map_err(BenchError::HttpClient)
}

/// A uniform sample of at most `cap` accepted order ids out of a stream of unknown length
/// (algorithm R): the `k`th accepted order (from 0) replaces a random slot with probability
/// `cap / (k + 1)`.
#[derive(Debug)]
pub(crate) struct Reservoir {
    cap: usize,
    seen: u64,
    ids: Vec<String>,
    rng: fastrand::Rng,
}

impl Reservoir {
    /// An empty sample of at most `cap` ids; the draws are repeatable for one `seed`.
    pub(crate) fn new(cap: usize, seed: u64) -> Reservoir {
        Reservoir { cap, seen: 0, ids: Vec::new(), rng: fastrand::Rng::with_seed(seed) }
    }

    /// Whether anything is sampled at all.
    pub(crate) fn is_active(&self) -> bool {
        self.cap > 0
    }

    /// Counts one more accepted order and says where its id goes in the sample, or `None`
    /// when it is not sampled. Decided before its body is read, so unsampled bodies are never
    /// copied.
    pub(crate) fn offer(&mut self) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let k = self.seen;
        self.seen += 1;
        if k < self.cap as u64 {
            return Some(k as usize);
        }
        let j = self.rng.u64(0..=k);
        (j < self.cap as u64).then_some(j as usize)
    }

    /// Puts `id` in `slot` (from [`Reservoir::offer`]).
    pub(crate) fn put(&mut self, slot: usize, id: String) {
        match self.ids.get_mut(slot) {
            Some(held) => *held = id,
            // A slot past the end is a fill-up slot whose earlier body could not be read.
            None => self.ids.push(id),
        }
    }

    /// The sampled ids.
    pub(crate) fn into_ids(self) -> Vec<String> {
        self.ids
    }
}

/// Joins the connections' samples into one of at most `n` ids, dropping a random surplus.
pub(crate) fn merge(samples: Vec<Vec<String>>, n: usize, seed: u64) -> Vec<String> {
    let mut ids: Vec<String> = samples.into_iter().flatten().collect();
    if ids.len() > n {
        fastrand::Rng::with_seed(seed).shuffle(&mut ids);
        ids.truncate(n);
    }
    ids
}

/// How a final order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Confirmed,
    Cancelled,
}

/// A sampled order that reached a final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Final {
    pub ending: Ending,
    /// The final status's time minus `created_at`, by the server's clock.
    pub latency: Duration,
    /// When polling first saw it final, from the start of polling.
    pub seen_after: Duration,
}

/// What polling found about a sample.
#[derive(Debug, Clone, Default)]
pub(crate) struct Polled {
    /// The orders seen final.
    pub finals: Vec<Final>,
    /// Orders read at least once but still not final when polling stopped.
    pub not_final: u64,
    /// Orders never read: every GET failed or answered something that is not an order.
    pub unreadable: u64,
    /// How long polling took.
    pub waited: Duration,
}

#[derive(Deserialize)]
struct OrderBody {
    status: String,
    created_at: String,
    #[serde(default)]
    history: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    status: String,
    at: String,
}

/// One read of one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Final(Ending, Duration),
    Pending,
    Failed,
}

impl OrderBody {
    fn read(&self) -> Read {
        let ending = match self.status.as_str() {
            "confirmed" => Ending::Confirmed,
            "cancelled" => Ending::Cancelled,
            _ => return Read::Pending,
        };
        let at = self.history.iter().rev().find(|c| c.status == self.status).map(|c| &c.at);
        let (Some(at), Ok(created)) = (at, humantime::parse_rfc3339(&self.created_at)) else {
            return Read::Failed;
        };
        let Ok(at) = humantime::parse_rfc3339(at) else { return Read::Failed };
        // A final time before creation would be a server clock step; count it as zero rather
        // than refuse the sample.
        Read::Final(ending, at.duration_since(created).unwrap_or(Duration::ZERO))
    }
}

fn read_body(body: &[u8]) -> Read {
    serde_json::from_slice::<OrderBody>(body).map_or(Read::Failed, |order| order.read())
}

async fn read(client: reqwest::Client, url: String) -> Read {
    let Ok(response) = client.get(&url).send().await else { return Read::Failed };
    if !response.status().is_success() {
        return Read::Failed;
    }
    match response.bytes().await {
        Ok(body) => read_body(&body),
        Err(_) => Read::Failed,
    }
}

/// Reads every order of `urls` once, at most [`POLL_CONCURRENCY`] at a time.
async fn read_all(client: &reqwest::Client, urls: &[Arc<str>]) -> Vec<Read> {
    let mut reads = vec![Read::Failed; urls.len()];
    let mut tasks = JoinSet::new();
    let mut next = 0;
    loop {
        while next < urls.len() && tasks.len() < POLL_CONCURRENCY {
            let (client, url, i) = (client.clone(), urls[next].to_string(), next);
            tasks.spawn(async move { (i, read(client, url).await) });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok((i, outcome))) => reads[i] = outcome,
            // A panicked read stays Failed and is tried again next round.
            Some(Err(_)) => {}
            None => return reads,
        }
    }
}

/// Polls `GET {base}/api/orders/{id}` for every id, every `every`, until each is final, `wait`
/// has passed, or `stop` fires.
pub(crate) async fn poll(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
    wait: Duration,
    every: Duration,
    stop: &CancellationToken,
) -> Polled {
    let base = base.trim_end_matches('/');
    let start = Instant::now();
    let mut pending: Vec<(Arc<str>, bool)> =
        ids.iter().map(|id| (Arc::from(format!("{base}/api/orders/{id}")), false)).collect();
    let mut polled = Polled::default();
    while !pending.is_empty() {
        let urls: Vec<Arc<str>> = pending.iter().map(|(url, _)| url.clone()).collect();
        let reads = read_all(client, &urls).await;
        let seen_after = start.elapsed();
        let mut still = Vec::with_capacity(pending.len());
        for ((url, was_read), outcome) in pending.into_iter().zip(reads) {
            match outcome {
                Read::Final(ending, latency) => {
                    polled.finals.push(Final { ending, latency, seen_after });
                }
                Read::Pending => still.push((url, true)),
                Read::Failed => still.push((url, was_read)),
            }
        }
        pending = still;
        if pending.is_empty() || start.elapsed() >= wait {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    polled.not_final = pending.iter().filter(|(_, was_read)| *was_read).count() as u64;
    polled.unreadable = pending.len() as u64 - polled.not_final;
    polled.waited = start.elapsed();
    polled
}

/// The `e2e` section of a report from what polling found, for a sample of `sampled` orders
/// polled for at most `wait`.
pub(crate) fn summarize(polled: &Polled, sampled: usize, wait: Duration) -> E2e {
    let mut confirmed: Vec<u64> = polled
        .finals
        .iter()
        .filter(|f| f.ending == Ending::Confirmed)
        .map(|f| u64::try_from(f.latency.as_millis()).unwrap_or(u64::MAX))
        .collect();
    confirmed.sort_unstable();
    let cancelled = polled.finals.iter().filter(|f| f.ending == Ending::Cancelled).count();
    E2e {
        sampled: sampled as u64,
        confirmed: confirmed.len() as u64,
        cancelled: cancelled as u64,
        not_final: polled.not_final,
        unreadable: polled.unreadable,
        waited_secs: round3(polled.waited.as_secs_f64()),
        wait_limit_secs: round3(wait.as_secs_f64()),
        latency_ms: latency(&confirmed),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Percentiles of `sorted` (milliseconds, ascending) by nearest rank: each is a latency some
/// sampled order really had.
fn latency(sorted: &[u64]) -> E2eLatency {
    let Some(&max) = sorted.last() else { return E2eLatency::default() };
    let n = sorted.len();
    let rank = |q: f64| {
        let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        sorted[index] as f64
    };
    let sum: u64 = sorted.iter().fold(0, |sum, &ms| sum.saturating_add(ms));
    E2eLatency {
        samples: n as u64,
        mean: round3(sum as f64 / n as f64),
        p50: rank(0.5),
        p99: rank(0.99),
        max: max as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservoir_keeps_at_most_its_cap_and_samples_the_whole_stream() {
        let mut late = 0;
        for seed in 0..200 {
            let mut reservoir = Reservoir::new(10, seed);
            for i in 0..1000 {
                if let Some(slot) = reservoir.offer() {
                    reservoir.put(slot, i.to_string());
                }
            }
            let ids = reservoir.into_ids();
            assert_eq!(ids.len(), 10);
            late += ids.iter().filter(|id| id.parse::<u32>().unwrap() >= 500).count();
        }
        // Uniform over the stream: about half of 2000 picks come from its second half.
        assert!((800..1200).contains(&late), "{late} of 2000 from the second half");
    }

    #[test]
    fn an_empty_reservoir_samples_nothing() {
        let mut reservoir = Reservoir::new(0, 1);
        assert!(!reservoir.is_active());
        assert_eq!(reservoir.offer(), None);
    }

    #[test]
    fn merging_keeps_at_most_n_ids() {
        let samples = vec![vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]];
        assert_eq!(merge(samples.clone(), 5, 1).len(), 3);
        let merged = merge(samples, 2, 1);
        assert_eq!(merged.len(), 2);
        assert_ne!(merged[0], merged[1]);
    }

    #[test]
    fn a_confirmed_order_is_timed_from_created_at_to_its_confirmed_entry() {
        let body =
            br#"{"order_id":"x","status":"confirmed","created_at":"2026-11-22T05:00:00.120Z",
            "history":[{"status":"accepted","at":"2026-11-22T05:00:00.120Z"},
                       {"status":"confirmed","at":"2026-11-22T05:00:01.465Z"}]}"#;
        assert_eq!(read_body(body), Read::Final(Ending::Confirmed, Duration::from_millis(1345)));
        let body = br#"{"status":"cancelled","created_at":"2026-11-22T05:00:00.000Z",
            "history":[{"status":"cancelled","at":"2026-11-22T05:00:00.007Z"}]}"#;
        assert_eq!(read_body(body), Read::Final(Ending::Cancelled, Duration::from_millis(7)));
    }

    #[test]
    fn an_accepted_order_is_pending_and_nonsense_is_a_failed_read() {
        let body = br#"{"status":"accepted","created_at":"2026-11-22T05:00:00.000Z","history":[]}"#;
        assert_eq!(read_body(body), Read::Pending);
        for bad in [
            &br#"{"error":{"code":"order_not_found"}}"#[..],
            br#"{"status":"confirmed","created_at":"yesterday","history":[]}"#,
            br#"{"status":"confirmed","created_at":"2026-11-22T05:00:00.000Z","history":[]}"#,
        ] {
            assert_eq!(read_body(bad), Read::Failed);
        }
    }

    #[test]
    fn the_summary_counts_every_sampled_order_once_and_orders_its_percentiles() {
        let finals = (1..=100u64)
            .map(|ms| Final {
                ending: if ms == 100 { Ending::Cancelled } else { Ending::Confirmed },
                latency: Duration::from_millis(ms),
                seen_after: Duration::ZERO,
            })
            .collect();
        let polled =
            Polled { finals, not_final: 3, unreadable: 2, waited: Duration::from_millis(1500) };
        let e2e = summarize(&polled, 105, Duration::from_secs(30));
        assert_eq!((e2e.confirmed, e2e.cancelled, e2e.not_final, e2e.unreadable), (99, 1, 3, 2));
        assert_eq!(e2e.confirmed + e2e.cancelled + e2e.not_final + e2e.unreadable, e2e.sampled);
        let l = e2e.latency_ms;
        assert_eq!((l.samples, l.p50, l.p99, l.max), (99, 50.0, 99.0, 99.0));
        assert_eq!(l.mean, 50.0);
        assert_eq!(
            summarize(&Polled::default(), 0, Duration::ZERO).latency_ms,
            E2eLatency::default()
        );
    }
}
