//! The flags of `ordermill bench run`, and the checks that keep a run from measuring nonsense.

use std::path::PathBuf;
use std::time::Duration;

use super::BenchError;

/// The most orders one batch request may carry; ordermill refuses larger batches.
pub const MAX_BATCH: usize = 1000;
/// The most stock a SKU may hold; ordermill refuses more.
pub const MAX_STOCK: u64 = 1_000_000_000;

const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";
const DEFAULT_CONNECTIONS: usize = 64;
const DEFAULT_DURATION: Duration = Duration::from_secs(30);
const DEFAULT_SKUS: usize = 10_000;
const DEFAULT_HOT_SKUS: usize = 10;
const DEFAULT_HOT_SHARE: f64 = 0.8;
const DEFAULT_SEED: u64 = 1;
const DEFAULT_GROUP_SIZE: u32 = 3;
const DEFAULT_E2E_SAMPLE: usize = 200;
const DEFAULT_E2E_WAIT: Duration = Duration::from_secs(30);
/// The most orders `--e2e-sample` may follow; each costs GET requests after the load.
pub const MAX_E2E_SAMPLE: usize = 100_000;

/// What load to send where: connections, duration, closed or open loop, SKU skew, batching.
///
/// Example: `ordermill bench run --target http://127.0.0.1:8080 --connections 64 --duration 30s
/// --setup --json report.json`
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Base URL of the ordermill server under test (plain http, no path).
    #[arg(long, value_name = "URL", default_value = DEFAULT_TARGET)]
    pub target: String,
    /// Keep-alive HTTP/1.1 connections, each with one request in flight at a time.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// How long to send load, e.g. 30s, 2m, 500ms.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Open loop: this many requests per second in total, spread over the connections. Latency
    /// counts from each request's intended send time, so a stalled server cannot hide its
    /// stall (no coordinated omission). Without it: closed loop, where each connection sends
    /// its next request as soon as the previous answer is in.
    #[arg(long, value_name = "REQ_PER_SEC")]
    pub rate: Option<u64>,
    /// Catalog size: SKUs bench-0 to bench-{N-1}.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SKUS)]
    pub skus: usize,
    /// How many SKUs are on flash sale: the first N of the catalog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HOT_SKUS)]
    pub hot_skus: usize,
    /// Share of orders for the flash-sale SKUs (0 to 1), each picked uniformly among them; the
    /// rest go uniformly to the other SKUs.
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT_HOT_SHARE)]
    pub hot_share: f64,
    /// Orders per request. Above 1, each request is POST /api/orders/batch with N single-item
    /// orders, and throughput is counted in accepted orders.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub batch: usize,
    /// First create (or reset) the catalog with PUT /api/products/bench-{i}. Without it the
    /// SKUs must already exist with enough stock.
    #[arg(long)]
    pub setup: bool,
    /// The merchant token --setup sends (catalog writes need one; the target's
    /// `auth.merchant_tokens`).
    #[arg(long, env = "ORDERMILL_MERCHANT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub merchant_token: Option<String>,
    /// Stock per SKU for --setup. A small value makes a deliberate sell-out run (409s).
    #[arg(long, value_name = "N", default_value_t = MAX_STOCK)]
    pub stock: u64,
    /// Also write the summary as JSON to FILE, for scripts.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// After the main run, send the same load to a reference server (started with
    /// `ordermill bench ceiling --listen ADDR`) and print ordermill's throughput and p99 as a
    /// ratio of the reference's. The reference gets no catalog set-up. It is loaded once the
    /// target's queues are empty (read from its /metrics, at most 60 s), so the target's
    /// consumers draining the backlog do not share the cores with it.
    #[arg(long, value_name = "URL")]
    pub reference: Option<String>,
    /// Seed of the SKU choice: two runs with the same seed send the same SKU sequence per
    /// connection.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// After the load, measure accept→confirmed latency on a sample of the accepted orders:
    /// poll GET /api/orders/{id} until each is confirmed or cancelled and subtract the
    /// server's own timestamps (the history's "confirmed" time minus created_at). The sample
    /// is spread over the whole run. Skipped when ctrl-c stopped the run.
    #[arg(long)]
    pub e2e: bool,
    /// The target's `admin_token`, which --e2e reads orders with: needed when the target runs
    /// `auth.customer = "jwt"` (an order is shown only to its customer or the admin).
    #[arg(long, env = "ORDERMILL_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// How many accepted orders --e2e follows.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_E2E_SAMPLE)]
    pub e2e_sample: usize,
    /// How long --e2e waits for the sampled orders to become final; the rest are reported as
    /// not final.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = humantime::parse_duration)]
    pub e2e_wait: Duration,
    /// Do not draw the progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// For a target with `auth.customer = "jwt"` and HS256: its `auth.jwt.secret`. Each order
    /// then carries `Authorization: Bearer` with a token for its customer, signed here.
    #[arg(
        long,
        env = "ORDERMILL_AUTH__JWT__SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        conflicts_with = "jwt_key"
    )]
    pub jwt_secret: Option<String>,
    /// For a target with `auth.customer = "jwt"` and a public-key algorithm: the private key
    /// (PEM) matching its `auth.jwt.public_key_file`; name the algorithm with
    /// --jwt-algorithm. Signing costs this generator ~17 µs (EdDSA), ~26 µs (ES256) or
    /// ~650 µs (RS256) per token: with RS256 raise --orders-per-customer, or the generator,
    /// not the target, sets the pace.
    #[arg(long, value_name = "FILE", requires = "jwt_algorithm")]
    pub jwt_key: Option<PathBuf>,
    /// The algorithm of --jwt-key.
    #[arg(long, value_name = "ALG", requires = "jwt_key")]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// The `iss` claim the tokens carry (the target's `auth.jwt.issuer`, when it checks one).
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// The `aud` claim the tokens carry (the target's `auth.jwt.audience`, when it checks one).
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// Orders each customer places in a row on one connection before the next customer
    /// starts; with a JWT option they all carry that customer's one token, which the target
    /// verifies in full only the first time. 1 (the default): every order is a new customer
    /// with a new token, a flash sale's worst case.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub orders_per_customer: u64,
    /// Send an idempotency key with every order, new for each order and each run, as a client
    /// that may retry does (what the README recommends): the `Idempotency-Key` header of a
    /// single order, each order's `idempotency_key` in a batch (`--batch`). A keyed order costs
    /// the target an index entry more; without this flag the load is of keyless orders.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Join group-buy deals instead of placing orders: --setup (required) opens N deals on
    /// SKU bench-0, groups of --group-size, and each request is POST /api/deals/{id}/join for
    /// a new customer on a deal picked uniformly. Open deals × --group-size must outnumber the
    /// joins sent, or the last ones are 409 `deal_full`.
    #[arg(long, value_name = "N")]
    pub deals: Option<usize>,
    /// Members each deal of --deals needs (2 to 1000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GROUP_SIZE)]
    pub group_size: u32,
    /// Read where the time went (`ordermill_stage_duration_seconds`: reserve, commit and
    /// publish on api nodes; receive, effects, publish and settle per consumer queue) from this
    /// node's /metrics instead of the target's, just before and just after the load. Repeat it
    /// for each api node and each worker (its `--metrics-listen` address) when the target is a
    /// load balancer or the consumers run apart.
    #[arg(long = "metrics", value_name = "URL")]
    pub metrics: Vec<String>,
}

/// A public-key algorithm of `--jwt-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            target: DEFAULT_TARGET.to_owned(),
            connections: DEFAULT_CONNECTIONS,
            duration: DEFAULT_DURATION,
            rate: None,
            skus: DEFAULT_SKUS,
            hot_skus: DEFAULT_HOT_SKUS,
            hot_share: DEFAULT_HOT_SHARE,
            batch: 1,
            setup: false,
            merchant_token: None,
            stock: MAX_STOCK,
            json: None,
            reference: None,
            seed: DEFAULT_SEED,
            e2e: false,
            e2e_sample: DEFAULT_E2E_SAMPLE,
            e2e_wait: DEFAULT_E2E_WAIT,
            admin_token: None,
            quiet: false,
            jwt_secret: None,
            jwt_key: None,
            jwt_algorithm: None,
            jwt_issuer: None,
            jwt_audience: None,
            orders_per_customer: 1,
            idempotency_keys: false,
            deals: None,
            group_size: DEFAULT_GROUP_SIZE,
            metrics: Vec::new(),
        }
    }
}

impl RunArgs {
    /// Refuses values that would make the run fail late or measure something else.
    ///
    /// # Errors
    /// [`BenchError::InvalidArgs`] naming the flag and what it accepts.
    pub fn check(&self) -> Result<(), BenchError> {
        let invalid = |message: String| Err(BenchError::InvalidArgs(message));
        if self.connections == 0 {
            return invalid("--connections must be at least 1".to_owned());
        }
        if self.duration.is_zero() {
            return invalid("--duration must be longer than zero, e.g. 30s".to_owned());
        }
        if self.rate == Some(0) {
            return invalid("--rate must be at least 1 request per second".to_owned());
        }
        if self.skus == 0 {
            return invalid("--skus must be at least 1".to_owned());
        }
        if self.hot_skus > self.skus {
            return invalid(format!(
                "--hot-skus ({}) cannot exceed --skus ({})",
                self.hot_skus, self.skus
            ));
        }
        if !(0.0..=1.0).contains(&self.hot_share) {
            return invalid(format!("--hot-share must be between 0 and 1, got {}", self.hot_share));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return invalid(format!(
                "--batch must be between 1 and {MAX_BATCH} (ordermill's batch limit), got {}",
                self.batch
            ));
        }
        if self.stock > MAX_STOCK {
            return invalid(format!(
                "--stock must be at most {MAX_STOCK} (ordermill's stock limit), got {}",
                self.stock
            ));
        }
        if self.e2e && !(1..=MAX_E2E_SAMPLE).contains(&self.e2e_sample) {
            return invalid(format!(
                "--e2e-sample must be between 1 and {MAX_E2E_SAMPLE}, got {}",
                self.e2e_sample
            ));
        }
        if self.orders_per_customer == 0 {
            return invalid("--orders-per-customer must be at least 1".to_owned());
        }
        if self.signs_tokens() && self.batch > 1 {
            return invalid(
                "--jwt-secret and --jwt-key send single orders (a token names one customer, a \
                 batch holds many); drop --batch"
                    .to_owned(),
            );
        }
        if self.signs_tokens() && self.e2e && self.admin_token.is_none() {
            return invalid(
                "--e2e reads orders back, which a target in jwt mode allows their customers and \
                 the admin: pass its --admin-token (or ORDERMILL_ADMIN_TOKEN), or drop --e2e \
                 (--jwt-secret may have come from ORDERMILL_AUTH__JWT__SECRET)"
                    .to_owned(),
            );
        }
        if let Some(deals) = self.deals {
            if deals == 0 || !self.setup {
                return invalid(
                    "--deals opens at least one deal, with --setup (the joins need their ids)"
                        .to_owned(),
                );
            }
            if !(2..=1000).contains(&self.group_size) {
                return invalid(format!(
                    "--group-size must be between 2 and 1000, got {}",
                    self.group_size
                ));
            }
            if self.batch > 1 || self.e2e || self.reference.is_some() || self.signs_tokens() {
                return invalid(
                    "--deals sends single joins as the merchant-less public API does: drop \
                     --batch, --e2e, --reference and the JWT options"
                        .to_owned(),
                );
            }
        }
        if let Some(url) =
            self.metrics.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return invalid(format!(
                "--metrics takes a node's base URL, e.g. http://127.0.0.1:9100 (a worker's \
                 --metrics-listen address); got {url:?}"
            ));
        }
        if self.batch > 1 && self.reference.is_some() {
            // The ceiling serves POST /api/orders only; a batch run against it would compare
            // ordermill with a stream of 404s.
            return invalid(
                "--reference compares single-order load; the reference server has no batch \
                 endpoint, so drop --batch or --reference"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Whether each order carries a customer token.
    pub(crate) fn signs_tokens(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_checks() {
        RunArgs::default().check().unwrap();
    }

    #[test]
    fn each_bad_value_is_refused_with_its_flag_named() {
        let jwt = || RunArgs { jwt_secret: Some("s".into()), ..RunArgs::default() };
        let deals = |n| RunArgs { deals: Some(n), setup: true, ..RunArgs::default() };
        let cases: [(RunArgs, &str); 17] = [
            (RunArgs { connections: 0, ..RunArgs::default() }, "--connections"),
            (RunArgs { duration: Duration::ZERO, ..RunArgs::default() }, "--duration"),
            (RunArgs { rate: Some(0), ..RunArgs::default() }, "--rate"),
            (RunArgs { skus: 5, hot_skus: 6, ..RunArgs::default() }, "--hot-skus"),
            (RunArgs { hot_share: 1.5, ..RunArgs::default() }, "--hot-share"),
            (RunArgs { batch: MAX_BATCH + 1, ..RunArgs::default() }, "--batch"),
            (RunArgs { stock: MAX_STOCK + 1, ..RunArgs::default() }, "--stock"),
            (RunArgs { e2e: true, e2e_sample: 0, ..RunArgs::default() }, "--e2e-sample"),
            (
                RunArgs { batch: 10, reference: Some("http://x".into()), ..RunArgs::default() },
                "--reference",
            ),
            (RunArgs { orders_per_customer: 0, ..RunArgs::default() }, "--orders-per-customer"),
            (RunArgs { batch: 2, ..jwt() }, "--batch"),
            (RunArgs { e2e: true, ..jwt() }, "--e2e"),
            (deals(0), "--deals"),
            (RunArgs { deals: Some(5), ..RunArgs::default() }, "--setup"),
            (RunArgs { group_size: 1, ..deals(5) }, "--group-size"),
            (RunArgs { batch: 2, ..deals(5) }, "--batch"),
            (RunArgs { metrics: vec!["127.0.0.1:9100".into()], ..RunArgs::default() }, "--metrics"),
        ];
        for (args, flag) in cases {
            let message = args.check().unwrap_err().to_string();
            assert!(message.contains(flag), "{message:?} should name {flag}");
        }
    }

    #[test]
    fn e2e_with_signed_tokens_reads_orders_with_the_admin_token() {
        let args = RunArgs {
            jwt_secret: Some("s".into()),
            e2e: true,
            admin_token: Some("admin".into()),
            ..RunArgs::default()
        };
        args.check().unwrap();
    }

    #[test]
    fn a_nan_hot_share_is_refused() {
        let args = RunArgs { hot_share: f64::NAN, ..RunArgs::default() };
        assert!(args.check().is_err());
    }
}
