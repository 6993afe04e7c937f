//! The bench catalog: SKU names, the flash-sale skew that picks them, the pre-rendered order
//! bodies, and `--setup`, which creates the SKUs on the target.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode, Uri};
use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::BenchError;
use super::conn::{Endpoint, Sender, exchange};
use super::load::progress_style;

/// The name of SKU number `index`.
pub(crate) fn sku(index: usize) -> String {
    format!("bench-{index}")
}

/// Picks a SKU index with a flash-sale skew.
///
/// With probability `hot_share` the pick is uniform among the first `hot` SKUs (the items on
/// sale, where every order contends for the same few stock counters); otherwise it is uniform
/// among the rest of the catalog (the long tail). This two-tier shape is what a flash sale
/// looks like to the reservation path, and unlike a true Zipf its two knobs map directly to
/// "how many items are hot" and "how much of the traffic they get". With no hot SKUs, or with
/// every SKU hot, the pick is uniform over the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SkuChooser {
    skus: usize,
    hot: usize,
    hot_share: f64,
}

impl SkuChooser {
    /// A chooser over `skus` SKUs of which the first `hot` get `hot_share` of the picks.
    ///
    /// Values are clamped into range; [`super::RunArgs::check`] refuses them earlier with a
    /// message.
    pub(crate) fn new(skus: usize, hot: usize, hot_share: f64) -> SkuChooser {
        let skus = skus.max(1);
        SkuChooser { skus, hot: hot.min(skus), hot_share: hot_share.clamp(0.0, 1.0) }
    }

    /// The number of SKUs in the catalog.
    pub(crate) fn skus(&self) -> usize {
        self.skus
    }

    /// Whether SKU `index` is one of the hot ones.
    #[cfg(test)]
    pub(crate) fn is_hot(&self, index: usize) -> bool {
        index < self.hot && self.hot < self.skus
    }

    /// The next SKU index, in `0..skus`.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        if self.hot == 0 || self.hot == self.skus {
            return rng.usize(0..self.skus);
        }
        if rng.f64() < self.hot_share {
            rng.usize(0..self.hot)
        } else {
            rng.usize(self.hot..self.skus)
        }
    }
}

/// Renders order bodies from pre-rendered per-SKU item fragments, so that a request costs a
/// few copies into a reused buffer rather than JSON serialization: the generator must not be
/// what limits the measurement.
#[derive(Debug)]
pub(crate) struct Bodies {
    chooser: SkuChooser,
    /// `{"sku":"bench-17","quantity":1}` for every SKU, by index.
    items: Vec<Box<[u8]>>,
    batch: usize,
    /// Orders each customer places before the next one starts (`--orders-per-customer`).
    per_customer: u64,
    /// This run's tag in every order's idempotency key (`--idempotency-keys`), so keys never
    /// repeat across runs against one target (customers' names do).
    keys: Option<u64>,
    /// `--deals`: the deals' join paths; each request joins one of them instead of ordering.
    joins: Vec<Uri>,
}

impl Bodies {
    /// Bodies of `batch` single-item orders (a plain order when `batch` is 1), each customer
    /// placing `per_customer` of them in a row; with `keys` (the run's tag), every order
    /// carries an idempotency key of its own.
    pub(crate) fn new(
        chooser: SkuChooser,
        batch: usize,
        per_customer: u64,
        keys: Option<u64>,
    ) -> Bodies {
        let items = (0..chooser.skus())
            .map(|i| format!(r#"{{"sku":"{}","quantity":1}}"#, sku(i)).into_bytes().into())
            .collect();
        Bodies {
            chooser,
            items,
            batch: batch.max(1),
            per_customer: per_customer.max(1),
            keys,
            joins: Vec::new(),
        }
    }

    /// The same requests as joins of these deals (`/api/deals/{id}/join`), each request one
    /// customer's join of a deal picked uniformly.
    pub(crate) fn joining(self, joins: Vec<Uri>) -> Bodies {
        Bodies { joins, ..self }
    }

    /// Where the next request goes.
    pub(crate) fn path(&self, rng: &mut fastrand::Rng) -> Uri {
        if !self.joins.is_empty() {
            self.joins[rng.usize(0..self.joins.len())].clone()
        } else if self.batch > 1 {
            Uri::from_static("/api/orders/batch")
        } else {
            Uri::from_static("/api/orders")
        }
    }

    /// Whether orders carry idempotency keys.
    pub(crate) fn keyed(&self) -> bool {
        self.keys.is_some()
    }

    /// The `Idempotency-Key` header of connection `conn`'s next request (order number `seq`):
    /// only a single order's; a batch's orders carry theirs in the body.
    pub(crate) fn header_key(&self, conn: usize, seq: u64) -> Option<String> {
        let run = self.keys.filter(|_| self.batch == 1)?;
        Some(key_of(run, conn, seq))
    }

    /// The customer of connection `conn`'s order number `seq`, as its body names it.
    pub(crate) fn customer(&self, conn: usize, seq: u64) -> String {
        format!("bench-{conn}-{}", self.customer_number(seq))
    }

    /// Orders each customer places in a row.
    pub(crate) fn per_customer(&self) -> u64 {
        self.per_customer
    }

    /// The number of the customer placing a connection's order number `seq`.
    pub(crate) fn customer_number(&self, seq: u64) -> u64 {
        seq / self.per_customer
    }

    /// Orders per request.
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// The next request body for connection `conn`; `seq` numbers its orders, so customer ids
    /// (`bench-<conn>-<n>`, see [`Bodies::customer`]) never repeat across connections.
    pub(crate) fn render(
        &self,
        buf: &mut Vec<u8>,
        rng: &mut fastrand::Rng,
        conn: usize,
        seq: &mut u64,
    ) -> Bytes {
        buf.clear();
        if !self.joins.is_empty() {
            buf.extend_from_slice(br#"{"customer_id":"bench-"#);
            push_decimal(buf, conn as u64);
            buf.push(b'-');
            push_decimal(buf, self.customer_number(*seq));
            buf.extend_from_slice(br#""}"#);
            *seq += 1;
        } else if self.batch == 1 {
            self.order(buf, rng, conn, seq);
        } else {
            buf.extend_from_slice(br#"{"orders":["#);
            for i in 0..self.batch {
                if i > 0 {
                    buf.push(b',');
                }
                self.order(buf, rng, conn, seq);
            }
            buf.extend_from_slice(b"]}");
        }
        Bytes::copy_from_slice(buf)
    }

    fn order(&self, buf: &mut Vec<u8>, rng: &mut fastrand::Rng, conn: usize, seq: &mut u64) {
        buf.extend_from_slice(br#"{"customer_id":"bench-"#);
        push_decimal(buf, conn as u64);
        buf.push(b'-');
        push_decimal(buf, self.customer_number(*seq));
        buf.extend_from_slice(br#"","items":["#);
        buf.extend_from_slice(&self.items[self.chooser.pick(rng)]);
        buf.push(b']');
        if let Some(run) = self.keys.filter(|_| self.batch > 1) {
            buf.extend_from_slice(br#","idempotency_key":""#);
            buf.extend_from_slice(key_of(run, conn, *seq).as_bytes());
            buf.push(b'"');
        }
        buf.push(b'}');
        *seq += 1;
    }
}

/// The key of connection `conn`'s order number `seq` in run `run`: unique per run,
/// connection and order.
fn key_of(run: u64, conn: usize, seq: u64) -> String {
    format!("{run:016x}-{conn}-{seq}")
}

/// Appends `n` in decimal without going through `fmt` (which would need a `Result` handled
/// for a write into a `Vec` that cannot fail).
fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

// A set-up request that takes this long means the target is stuck; the run would measure
// nothing.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `Authorization: Bearer <token>` for the set-up's merchant writes (none without a token); the
/// problem, for the caller's error, when the token cannot be a header.
pub(super) fn merchant_authorization(token: Option<&str>) -> Result<Option<HeaderValue>, String> {
    token
        .map(|token| {
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                "cannot be sent: the merchant token is not a valid header value".to_owned()
            })
        })
        .transpose()
}

/// One set-up request, with `authorization`, answered within [`SETUP_TIMEOUT`]; the problem,
/// for the caller's error, when it is not.
pub(super) async fn setup_exchange(
    sender: &mut Sender,
    mut request: Request<Full<Bytes>>,
    authorization: Option<&HeaderValue>,
) -> Result<(StatusCode, Bytes), String> {
    if let Some(authorization) = authorization {
        request.headers_mut().insert(hyper::header::AUTHORIZATION, authorization.clone());
    }
    tokio::time::timeout(SETUP_TIMEOUT, exchange(sender, request, true))
        .await
        .map_err(|_| format!("got no answer within {}s", SETUP_TIMEOUT.as_secs()))?
        .map_err(|error| format!("failed: {error}"))
}

/// What `--setup` creates.
pub(crate) struct Setup<'a> {
    /// SKUs `bench-0..bench-{skus-1}`.
    pub skus: usize,
    /// Units of each.
    pub stock: u64,
    /// Sent as `Authorization: Bearer`.
    pub merchant_token: Option<&'a str>,
}

/// Creates (or resets) the SKUs of `catalog` over up to `connections` connections.
///
/// # Errors
/// [`BenchError::Setup`] on the first SKU the target does not accept, connection errors as for
/// the load, and [`BenchError::Interrupted`] when `stop` fires first.
pub(crate) async fn setup(
    endpoint: &Endpoint,
    catalog: &Setup<'_>,
    connections: usize,
    quiet: bool,
    stop: &CancellationToken,
) -> Result<(), BenchError> {
    let (skus, stock) = (catalog.skus, catalog.stock);
    let authorization = merchant_authorization(catalog.merchant_token).map_err(|problem| {
        BenchError::Setup { target: endpoint.url.clone(), sku: sku(0), problem }
    })?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(skus as u64) };
    bar.set_style(progress_style("{prefix} {wide_bar} {pos}/{len} SKUs"));
    bar.set_prefix(format!("setup {}", endpoint.url));
    let next = Arc::new(AtomicUsize::new(0));
    let endpoint = Arc::new(endpoint.clone());
    let mut tasks = JoinSet::new();
    for _ in 0..connections.min(skus) {
        let sender = endpoint.connect_or_explain().await?;
        let (next, endpoint, bar) = (next.clone(), endpoint.clone(), bar.clone());
        let authorization = authorization.clone();
        tasks.spawn(put_some(sender, next, endpoint, (skus, stock), authorization, bar));
    }
    finish_all(tasks, stop, &bar).await.map(drop)
}

/// What every set-up task returned, in the order they ended; the first failure, or
/// [`BenchError::Interrupted`] when `stop` fires first, stops the others at once.
pub(super) async fn finish_all<T: 'static>(
    mut tasks: JoinSet<Result<T, BenchError>>,
    stop: &CancellationToken,
    bar: &ProgressBar,
) -> Result<Vec<T>, BenchError> {
    let mut done = Vec::with_capacity(tasks.len());
    let outcome = tokio::select! {
        () = stop.cancelled() => Err(BenchError::Interrupted),
        outcome = async {
            while let Some(joined) = tasks.join_next().await {
                done.push(joined.map_err(BenchError::Worker)??);
            }
            Ok(())
        } => outcome,
    };
    tasks.abort_all();
    bar.finish_and_clear();
    outcome.map(|()| done)
}

async fn put_some(
    mut sender: Sender,
    next: Arc<AtomicUsize>,
    endpoint: Arc<Endpoint>,
    (skus, stock): (usize, u64),
    authorization: Option<HeaderValue>,
    bar: ProgressBar,
) -> Result<(), BenchError> {
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= skus {
            return Ok(());
        }
        let sku = sku(index);
        let failed = |problem: String| BenchError::Setup {
            target: endpoint.url.clone(),
            sku: sku.clone(),
            problem,
        };
        let path = Uri::try_from(format!("/api/products/{sku}"))
            .map_err(|error| failed(format!("has no valid path: {error}")))?;
        let body = format!(r#"{{"name":"Bench product {index}","price":"19.99","stock":{stock}}}"#);
        let request = endpoint.request(Method::PUT, path, Bytes::from(body));
        let (status, body) =
            setup_exchange(&mut sender, request, authorization.as_ref()).await.map_err(failed)?;
        if status != StatusCode::OK && status != StatusCode::CREATED {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(200).collect();
            let hint = if status == StatusCode::NOT_FOUND
                || status == StatusCode::METHOD_NOT_ALLOWED
            {
                " (is the target ordermill? the reference server has no products API)"
            } else if status == StatusCode::UNAUTHORIZED {
                " (catalog writes need the target's merchant token: --merchant-token or ORDERMILL_MERCHANT_TOKEN)"
            } else {
                ""
            };
            return Err(failed(format!("answered {status}{hint}: {text}")));
        }
        bar.inc(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_share_holds_within_five_points_over_100k_draws() {
        let chooser = SkuChooser::new(10_000, 10, 0.8);
        let mut rng = fastrand::Rng::with_seed(42);
        let draws = 100_000;
        let hot = (0..draws).filter(|_| chooser.is_hot(chooser.pick(&mut rng))).count();
        let share = hot as f64 / f64::from(draws);
        assert!((share - 0.8).abs() < 0.05, "hot share was {share}");
    }

    #[test]
    fn hot_picks_spread_over_every_hot_sku_and_cold_picks_avoid_them() {
        let chooser = SkuChooser::new(100, 4, 0.5);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[chooser.pick(&mut rng)] += 1;
        }
        // Each hot SKU gets about 0.5 / 4 = 12.5%, each cold one about 0.5 / 96 = 0.5%.
        for &count in &counts[..4] {
            assert!((11_000..14_000).contains(&count), "hot count {count}");
        }
        for &count in &counts[4..] {
            assert!((300..800).contains(&count), "cold count {count}");
        }
    }

    #[test]
    fn no_hot_skus_or_all_hot_means_uniform_over_the_catalog() {
        for chooser in [SkuChooser::new(10, 0, 0.9), SkuChooser::new(10, 10, 0.1)] {
            let mut rng = fastrand::Rng::with_seed(1);
            let mut seen = [false; 10];
            for _ in 0..1_000 {
                seen[chooser.pick(&mut rng)] = true;
            }
            assert!(seen.iter().all(|&s| s), "{chooser:?} missed a SKU");
        }
    }

    #[test]
    fn the_same_seed_picks_the_same_sequence() {
        let chooser = SkuChooser::new(1_000, 10, 0.8);
        let picks = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..100).map(|_| chooser.pick(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(picks(3), picks(3));
        assert_ne!(picks(3), picks(4));
    }

    #[test]
    fn a_single_order_body_is_the_json_ordermill_reads() {
        let bodies = Bodies::new(SkuChooser::new(1, 0, 0.0), 1, 1, None);
        let (mut buf, mut rng, mut seq) = (Vec::new(), fastrand::Rng::with_seed(1), 41);
        let body = bodies.render(&mut buf, &mut rng, 3, &mut seq);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"customer_id": "bench-3-41", "items": [{"sku": "bench-0", "quantity": 1}]})
        );
        assert_eq!(seq, 42);
    }

    #[test]
    fn a_join_run_sends_each_customer_once_to_a_deal_picked_among_all() {
        let paths: Vec<Uri> =
            (0..4).map(|i| Uri::try_from(format!("/api/deals/d{i}/join")).unwrap()).collect();
        let bodies = Bodies::new(SkuChooser::new(1, 0, 0.0), 1, 1, None).joining(paths.clone());
        let (mut buf, mut rng, mut seq) = (Vec::new(), fastrand::Rng::with_seed(1), 0);
        let body = bodies.render(&mut buf, &mut rng, 3, &mut seq);
        assert_eq!(&body[..], br#"{"customer_id":"bench-3-0"}"#);
        let body = bodies.render(&mut buf, &mut rng, 3, &mut seq);
        assert_eq!(&body[..], br#"{"customer_id":"bench-3-1"}"#);
        let picked: std::collections::HashSet<Uri> =
            (0..200).map(|_| bodies.path(&mut rng)).collect();
        assert_eq!(picked, paths.into_iter().collect());
        let orders = Bodies::new(SkuChooser::new(1, 0, 0.0), 1, 1, None);
        assert_eq!(orders.path(&mut rng), "/api/orders");
    }

    #[test]
    fn a_batch_body_holds_n_orders_with_distinct_customers() {
        let bodies = Bodies::new(SkuChooser::new(50, 5, 0.8), 7, 1, None);
        let (mut buf, mut rng, mut seq) = (Vec::new(), fastrand::Rng::with_seed(1), 0);
        let body = bodies.render(&mut buf, &mut rng, 0, &mut seq);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let orders = value["orders"].as_array().unwrap();
        assert_eq!(orders.len(), 7);
        assert_eq!(orders[6]["customer_id"], "bench-0-6");
        assert!(orders.iter().all(|o| o.get("idempotency_key").is_none()));
        assert_eq!(seq, 7);
    }

    #[test]
    fn keyed_batch_orders_carry_their_keys_in_the_body_and_single_orders_in_the_header() {
        let batched = Bodies::new(SkuChooser::new(1, 0, 0.0), 3, 1, Some(0xab));
        let (mut buf, mut rng, mut seq) = (Vec::new(), fastrand::Rng::with_seed(1), 5);
        assert_eq!(batched.header_key(2, seq), None);
        let body = batched.render(&mut buf, &mut rng, 2, &mut seq);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let keys: Vec<&str> = value["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["idempotency_key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["00000000000000ab-2-5", "00000000000000ab-2-6", "00000000000000ab-2-7"]);

        let single = Bodies::new(SkuChooser::new(1, 0, 0.0), 1, 1, Some(0xab));
        assert_eq!(single.header_key(2, 8).as_deref(), Some("00000000000000ab-2-8"));
        let body = single.render(&mut buf, &mut rng, 2, &mut seq);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(value.get("idempotency_key").is_none(), "single orders send the header");
    }

    #[test]
    fn a_customer_places_orders_per_customer_in_a_row() {
        let bodies = Bodies::new(SkuChooser::new(1, 0, 0.0), 1, 3, None);
        let (mut buf, mut rng, mut seq) = (Vec::new(), fastrand::Rng::with_seed(1), 0);
        let customers: Vec<(String, String)> = (0..7)
            .map(|_| {
                let named = bodies.customer(2, seq);
                let body = bodies.render(&mut buf, &mut rng, 2, &mut seq);
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                (named, value["customer_id"].as_str().unwrap().to_owned())
            })
            .collect();
        let rendered: Vec<&str> = customers.iter().map(|(_, body)| body.as_str()).collect();
        assert_eq!(
            rendered,
            [
                "bench-2-0",
                "bench-2-0",
                "bench-2-0",
                "bench-2-1",
                "bench-2-1",
                "bench-2-1",
                "bench-2-2"
            ]
        );
        assert!(customers.iter().all(|(named, body)| named == body), "{customers:?}");
    }

    #[test]
    fn decimals_are_written_like_display_does() {
        for n in [0, 7, 10, 1234, u64::MAX] {
            let mut buf = Vec::new();
            push_decimal(&mut buf, n);
            assert_eq!(buf, n.to_string().into_bytes());
        }
    }
}
