//! Sending the load: one task per keep-alive connection, in a closed or an open loop, and the
//! live progress bar.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::BenchError;
use super::catalog::Bodies;
use super::conn::{Endpoint, Sender, connect, exchange_with};
use super::e2e::{self, Reservoir};
use super::jwt::Signer;
use super::report::{Mode, Orders, RunInfo, Summary, Tally};

// After a failed reconnect, wait this long: a dead target must not be hammered with connects
// as fast as the loop can spin, which would also bury the real figures in error counts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
const IDEMPOTENCY_KEY: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("idempotency-key");

/// How to load one server.
#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    pub connections: usize,
    pub duration: Duration,
    pub rate: Option<u64>,
    pub seed: u64,
    pub quiet: bool,
    /// Accepted orders whose ids to sample over the run (0: none).
    pub sample: usize,
    /// Signs each customer's token for a target in jwt mode.
    pub signer: Option<Arc<Signer>>,
}

/// A progress style from `template`, or the default one should the template be refused.
pub(crate) fn progress_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Counts the progress bar reads while the tasks run.
#[derive(Debug, Default)]
struct Live {
    answered: AtomicU64,
    errors: AtomicU64,
}

/// Sends `spec`'s load to `endpoint` until its duration is over or `stop` fires, and
/// summarizes it, with the ids of up to `spec.sample` accepted orders spread over the run.
///
/// # Errors
/// When the connections cannot be opened at the start. Failures during the run are counted,
/// not returned.
pub(crate) async fn drive(
    endpoint: &Endpoint,
    spec: &LoadSpec,
    bodies: Arc<Bodies>,
    stop: &CancellationToken,
) -> Result<(Summary, Vec<String>), BenchError> {
    let endpoint = Arc::new(endpoint.clone());
    // Every connection is open before the clock starts: opening them is not what is measured,
    // and a target that is not there fails the run at once with a clear message.
    let mut connecting = JoinSet::new();
    for _ in 0..spec.connections {
        let endpoint = endpoint.clone();
        connecting.spawn(async move { endpoint.connect_or_explain().await });
    }
    let mut senders = Vec::with_capacity(spec.connections);
    while let Some(joined) = connecting.join_next().await {
        senders.push(joined.map_err(BenchError::Worker)??);
    }

    let run_stop = stop.child_token();
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let deadline = start + spec.duration;
    // Each connection samples its share; the shares are merged (and any surplus dropped) at
    // the end.
    let per_connection = spec.sample.div_ceil(spec.connections.max(1));
    let mut workers = JoinSet::new();
    for (id, sender) in senders.into_iter().enumerate() {
        let worker = Worker {
            id,
            sender: Some(sender),
            endpoint: endpoint.clone(),
            bodies: bodies.clone(),
            rng: fastrand::Rng::with_seed(spec.seed.wrapping_add(id as u64)),
            seq: 0,
            signer: spec.signer.clone(),
            token: None,
            buf: Vec::new(),
            tally: Tally::new(),
            // Its own generator, so sampling never shifts the SKU sequence of a seed.
            sampler: Reservoir::new(per_connection, !spec.seed.wrapping_add(id as u64)),
            live: live.clone(),
            stop: run_stop.clone(),
        };
        match spec.rate {
            None => workers.spawn(worker.closed_loop()),
            Some(rate) => {
                let pacing = Pacing { start, deadline, connections: spec.connections as u64, rate };
                workers.spawn(worker.open_loop(pacing))
            }
        };
    }

    let bar = if spec.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(spec.duration.as_millis().try_into().unwrap_or(u64::MAX))
    };
    bar.set_style(progress_style("{prefix} [{elapsed_precise}] {wide_bar} {msg}"));
    bar.set_prefix(endpoint.url.clone());
    let until = sleep_until(deadline);
    tokio::pin!(until);
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    let (mut last_answered, mut last_at) = (0, start);
    loop {
        tokio::select! {
            () = run_stop.cancelled() => break,
            () = &mut until => {
                run_stop.cancel();
                break;
            }
            now = ticks.tick() => {
                let answered = live.answered.load(Ordering::Relaxed);
                let seconds = (now - last_at).as_secs_f64();
                if seconds > 0.0 {
                    let rate = (answered - last_answered) as f64 / seconds;
                    let errors = live.errors.load(Ordering::Relaxed);
                    bar.set_message(format!("{rate:.0} req/s, {errors} errors"));
                }
                (last_answered, last_at) = (answered, now);
                bar.set_position((now - start).as_millis().try_into().unwrap_or(u64::MAX));
            }
        }
    }
    let elapsed = start.elapsed().min(spec.duration);
    bar.finish_and_clear();

    let mut total = Tally::new();
    let mut samples = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (tally, sampled) = joined.map_err(BenchError::Worker)?;
        total.merge(&tally);
        samples.push(sampled);
    }
    let sampled = e2e::merge(samples, spec.sample, spec.seed);
    let summary = total.summary(RunInfo {
        target: endpoint.url.clone(),
        mode: spec.rate.map_or(Mode::Closed, |rate| Mode::Open { rate }),
        connections: spec.connections,
        batch: bodies.batch(),
        elapsed,
        interrupted: stop.is_cancelled(),
        customer_tokens: spec.signer.as_ref().map(|signer| signer.algorithm()),
        orders_per_customer: bodies.per_customer(),
        idempotency_keys: bodies.keyed(),
    });
    Ok((summary, sampled))
}

/// The open-loop schedule: request `n` of the whole run is due at `start + n / rate`.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    start: Instant,
    deadline: Instant,
    connections: u64,
    rate: u64,
}

impl Pacing {
    /// When connection `conn`'s `k`th request is due, or `None` once that is past the end.
    fn intended(&self, conn: usize, k: u64) -> Option<Instant> {
        // Connection c takes requests c, c + C, c + 2C, ... of the one schedule, so the total
        // rate is exact and the connections' sends interleave evenly.
        let n = (conn as u64).saturating_add(k.saturating_mul(self.connections));
        let at = self.start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        (at < self.deadline).then_some(at)
    }
}

/// One connection's load task.
struct Worker {
    id: usize,
    sender: Option<Sender>,
    endpoint: Arc<Endpoint>,
    bodies: Arc<Bodies>,
    rng: fastrand::Rng,
    seq: u64,
    signer: Option<Arc<Signer>>,
    /// The current customer's number and `Authorization` value, signed when it started.
    token: Option<(u64, HeaderValue)>,
    buf: Vec<u8>,
    tally: Tally,
    sampler: Reservoir,
    live: Arc<Live>,
    stop: CancellationToken,
}

impl Worker {
    /// Sends the next request as soon as the previous answer is in.
    async fn closed_loop(mut self) -> (Tally, Vec<String>) {
        while !self.stop.is_cancelled() {
            // Signed before the clock starts: the generator's signing is not the server's time.
            let authorization = self.authorization();
            if self.send(Instant::now(), authorization).await.is_break() {
                break;
            }
        }
        (self.tally, self.sampler.into_ids())
    }

    /// Sends each request at its intended time, or at once when running late.
    async fn open_loop(mut self, pacing: Pacing) -> (Tally, Vec<String>) {
        for k in 0.. {
            let Some(intended) = pacing.intended(self.id, k) else { break };
            // Signed while the request waits for its turn; a signature that makes it late is
            // the generator's lateness, counted as such below.
            let authorization = self.authorization();
            let began = if intended > Instant::now() {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => break,
                    () = sleep_until(intended) => {}
                }
                // On schedule: the clock starts at the actual send, because the timer's
                // lateness (up to a 1 ms tick) is the generator's, not the server's.
                Instant::now()
            } else {
                // Behind schedule because an earlier answer came late: the clock starts at the
                // intended time, so the server is charged for the wait it caused and a stall
                // cannot hide behind the requests it kept from being sent (coordinated
                // omission).
                self.tally.sent_late();
                intended
            };
            if self.send(began, authorization).await.is_break() {
                break;
            }
        }
        (self.tally, self.sampler.into_ids())
    }

    /// Sends one request timed from `began`, with `authorization` when the run signs tokens,
    /// reconnecting first if the connection is gone.
    async fn send(
        &mut self,
        began: Instant,
        authorization: Option<HeaderValue>,
    ) -> ControlFlow<()> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let connected = tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return ControlFlow::Break(()),
                    connected = connect(self.endpoint.addr) => connected,
                };
                match connected {
                    Ok(sender) => sender,
                    Err(error) => {
                        tracing::debug!(error = %error, "A bench connection could not be reopened.");
                        self.failed();
                        return tokio::select! {
                            biased;
                            () = self.stop.cancelled() => ControlFlow::Break(()),
                            () = sleep(RECONNECT_PAUSE) => ControlFlow::Continue(()),
                        };
                    }
                }
            }
        };
        let batch = self.bodies.batch();
        let key = self.bodies.header_key(self.id, self.seq);
        let body = self.bodies.render(&mut self.buf, &mut self.rng, self.id, &mut self.seq);
        let path = self.bodies.path(&mut self.rng);
        let mut request = self.endpoint.request(Method::POST, path, body);
        if let Some(value) = authorization {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        if let Some(value) = key.and_then(|key| HeaderValue::try_from(key).ok()) {
            request.headers_mut().insert(IDEMPOTENCY_KEY, value);
        }
        // Where this order's id goes in the sample, decided from the status alone so that
        // only sampled single-order bodies are kept (batch bodies are always read).
        let mut slot = None;
        let sampler = &mut self.sampler;
        let keep_body = |status: StatusCode| {
            if status == StatusCode::CREATED {
                slot = sampler.offer();
            }
            batch > 1 || slot.is_some()
        };
        let outcome = tokio::select! {
            biased;
            () = self.stop.cancelled() => {
                self.tally.unfinished();
                return ControlFlow::Break(());
            }
            outcome = exchange_with(&mut sender, request, keep_body) => outcome,
        };
        let latency = began.elapsed();
        match outcome {
            Ok((status, body)) => {
                let orders = if batch > 1 {
                    if self.sampler.is_active() {
                        sample_batch(status, &body, &mut self.sampler);
                    }
                    batch_orders(status, &body, batch)
                } else {
                    if let Some(slot) = slot
                        && let Ok(order) = serde_json::from_slice::<AcceptedOrder>(&body)
                    {
                        self.sampler.put(slot, order.order_id);
                    }
                    Orders::single(status.as_u16())
                };
                self.tally.answered(status.as_u16(), latency, &orders);
                self.live.answered.fetch_add(1, Ordering::Relaxed);
                if !(status.is_success() || status == StatusCode::CONFLICT) {
                    self.live.errors.fetch_add(1, Ordering::Relaxed);
                }
                self.sender = Some(sender);
            }
            Err(error) => {
                tracing::debug!(error = %error, "A bench request got no answer; reconnecting.");
                self.failed();
            }
        }
        ControlFlow::Continue(())
    }

    /// The next order's `Authorization` value when the run signs tokens: the current
    /// customer's, or a new one's once it has placed its orders.
    fn authorization(&mut self) -> Option<HeaderValue> {
        let signer = self.signer.as_ref()?;
        let customer = self.bodies.customer_number(self.seq);
        match &self.token {
            Some((number, value)) if *number == customer => Some(value.clone()),
            _ => {
                let value = signer.bearer(&self.bodies.customer(self.id, self.seq));
                self.token = Some((customer, value.clone()));
                Some(value)
            }
        }
    }

    fn failed(&mut self) {
        self.tally.connection_error();
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    status: u16,
}

/// The id in an accepted order's body.
#[derive(Deserialize)]
struct AcceptedOrder {
    order_id: String,
}

#[derive(Deserialize)]
struct BatchIds {
    results: Vec<BatchId>,
}

#[derive(Deserialize)]
struct BatchId {
    status: u16,
    #[serde(default)]
    order: Option<AcceptedOrder>,
}

/// Offers each accepted order of one batch answer to `sampler`. A second parse of the body,
/// done only when sampling, so that a plain batch run pays nothing for it.
fn sample_batch(status: StatusCode, body: &[u8], sampler: &mut Reservoir) {
    if status != StatusCode::OK {
        return;
    }
    let Ok(answer) = serde_json::from_slice::<BatchIds>(body) else { return };
    for result in answer.results {
        if result.status == 201
            && let Some(order) = result.order
            && let Some(slot) = sampler.offer()
        {
            sampler.put(slot, order.order_id);
        }
    }
}

/// The orders of one batch answer, by each result's status.
fn batch_orders(status: StatusCode, body: &[u8], batch: usize) -> Orders {
    let results = if status == StatusCode::OK {
        serde_json::from_slice::<BatchAnswer>(body).map(|a| a.results).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut orders = Orders::default();
    for result in results.iter().take(batch) {
        orders.count(result.status);
    }
    // Orders the answer says nothing about (a refused batch, an unreadable or short answer)
    // were not accepted.
    let missing = (batch - results.len().min(batch)) as u64;
    orders.sent += missing;
    orders.rejected += missing;
    orders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_counts_each_order_by_its_status() {
        let body = br#"{"accepted":2,"rejected":2,"results":[
            {"status":201,"order":{"order_id":"x"}},{"status":409,"error":{"code":"out_of_stock"}},
            {"status":201},{"status":422}]}"#;
        let orders = batch_orders(StatusCode::OK, body, 4);
        assert_eq!((orders.sent, orders.created, orders.conflict, orders.rejected), (4, 2, 1, 1));
    }

    #[test]
    fn only_accepted_orders_of_a_batch_answer_are_sampled() {
        let body = br#"{"accepted":2,"rejected":1,"results":[
            {"status":201,"order":{"order_id":"a"}},{"status":409,"error":{"code":"out_of_stock"}},
            {"status":201,"order":{"order_id":"b"}}]}"#;
        let mut sampler = Reservoir::new(10, 1);
        sample_batch(StatusCode::OK, body, &mut sampler);
        sample_batch(StatusCode::PAYLOAD_TOO_LARGE, body, &mut sampler);
        assert_eq!(sampler.into_ids(), ["a", "b"]);
    }

    #[test]
    fn a_refused_or_unreadable_batch_rejects_all_its_orders() {
        for (status, body) in [(StatusCode::PAYLOAD_TOO_LARGE, &b"{}"[..]), (StatusCode::OK, b"no")]
        {
            let orders = batch_orders(status, body, 5);
            assert_eq!((orders.sent, orders.created, orders.rejected), (5, 0, 5));
        }
    }

    #[test]
    fn the_open_loop_schedule_interleaves_connections_at_the_total_rate() {
        let start = Instant::now();
        let pacing =
            Pacing { start, deadline: start + Duration::from_secs(1), connections: 4, rate: 200 };
        let due = |conn, k| pacing.intended(conn, k).map(|at| at - start);
        assert_eq!(due(0, 0), Some(Duration::ZERO));
        assert_eq!(due(1, 0), Some(Duration::from_millis(5)));
        assert_eq!(due(0, 1), Some(Duration::from_millis(20)));
        let sends: usize = (0..4).map(|c| (0..).take_while(|&k| due(c, k).is_some()).count()).sum();
        assert_eq!(sends, 200);
    }
}
