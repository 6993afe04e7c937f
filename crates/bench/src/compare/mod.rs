//! `ordermill bench compare`: the synchronous "before" design and ordermill under the same
//! load, against the same slow downstream services, then the same payment outage.
//!
//! # Layout
//! - `node`: `ordermill serve` as a child process (temporary data dir, port 0, payment and
//!   notify pointed at the stubs), killed when dropped.
//! - [`report`]: the [`CompareReport`], printed as a table next to the published claim.
//!
//! A comparison is:
//! 1. start the stubs and the sync baseline in-process on port 0, and ordermill as a child
//!    with its HTTP payment gateway on the stubs' `/payment` and its webhook notifier on
//!    `/notify` (its inventory is internal; the inventory stub serves the baseline only);
//! 2. steady phase: the same `bench run` load against the baseline, then against ordermill
//!    (after creating the catalog, and with `--e2e` so its accept→confirmed time is known);
//! 3. wait for ordermill's queues to drain, so the outage starts from a quiet pipeline;
//! 4. outage phase: payment stub down, the same short load against both, sampling the ids
//!    of ordermill's accepted orders;
//! 5. payment back up: poll the sampled orders until final and time the catch-up.
//!
//! The designs are loaded one after the other, never together, so neither measures the other.

mod node;
pub mod report;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::run::{BenchError, RunArgs, e2e, load_target, run_with};
use crate::stubs::{Service, StubConfig, Stubs};
use crate::sync_baseline::{self, SyncBaselineError, SyncConfig};

pub use report::CompareReport;
use report::{CLAIM_ASYNC, CLAIM_SYNC, CatchUp, Drain, Outage, Setup, Steady};

use node::{Node, NodeSettings};

// ordermill's default (5 attempts, backoff from 200 ms) dead-letters a charge after about 3 s
// of failures, so a longer outage would leave orders waiting for an operator's replay. With
// the backoff capped at 30 s, 30 attempts ride out about 12 minutes of outage.
const ORDERMILL_MAX_ATTEMPTS: u32 = 30;
// How often the catch-up polls the sampled orders: the resolution of the catch-up time.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);
const DRAIN_POLL: Duration = Duration::from_millis(250);
// Hot SKUs in the catalog, as in `bench run`'s default (fewer when the catalog is smaller).
const HOT_SKUS: usize = 10;

/// The flags of `ordermill bench compare`.
///
/// Example: `ordermill bench compare --duration 20s --connections 64 --inventory-latency 200ms
/// --payment-latency 300ms --notify-latency 150ms`
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Steady load per design, e.g. 20s.
    #[arg(long, value_name = "TIME", default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Keep-alive connections, the same for both designs.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub connections: usize,
    /// Stub latencies and payment failures.
    #[command(flatten)]
    pub stubs: StubConfig,
    /// Load per design while the payment stub is down.
    #[arg(long, value_name = "TIME", default_value = "5s", value_parser = humantime::parse_duration)]
    pub outage: Duration,
    /// Catalog size (SKUs bench-0 to bench-{N-1}), created on ordermill before the load.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub skus: usize,
    /// ordermill's accepted orders whose accept→confirmed latency is measured in the steady
    /// phase.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub e2e_sample: usize,
    /// Orders ordermill accepted during the outage that are followed until confirmed.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub outage_sample: usize,
    /// Longest wait for sampled orders to become final, and for ordermill's queues to drain.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print no progress: no phase notes, no progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for CompareArgs {
    fn default() -> Self {
        CompareArgs {
            duration: Duration::from_secs(20),
            connections: 64,
            stubs: StubConfig::default(),
            outage: Duration::from_secs(5),
            skus: 100,
            e2e_sample: 200,
            outage_sample: 50,
            wait: Duration::from_secs(60),
            json: None,
            quiet: false,
        }
    }
}

impl CompareArgs {
    /// Refuses values that would make the comparison fail late or measure nothing.
    ///
    /// # Errors
    /// [`CompareError::InvalidArgs`] naming the flag.
    pub fn check(&self) -> Result<(), CompareError> {
        let invalid = |message: &str| Err(CompareError::InvalidArgs(message.to_owned()));
        if self.duration.is_zero() {
            return invalid("--duration must be longer than zero, e.g. 20s");
        }
        if self.outage.is_zero() {
            return invalid("--outage must be longer than zero, e.g. 5s");
        }
        if self.connections == 0 {
            return invalid("--connections must be at least 1");
        }
        if self.skus == 0 {
            return invalid("--skus must be at least 1");
        }
        if self.e2e_sample == 0 || self.outage_sample == 0 {
            return invalid("--e2e-sample and --outage-sample must be at least 1");
        }
        self.stubs.check().map_err(CompareError::InvalidArgs)?;
        // The load itself is checked by `bench run`'s own rules, before anything starts.
        let load = self.load("http://127.0.0.1:1".to_owned(), self.duration);
        load.check().map_err(|error| CompareError::InvalidArgs(error.to_string()))
    }

    /// One downstream call's timeout, for both designs: generous next to the stubs' latency,
    /// so that only an outage (not a slow stub) makes a call fail.
    fn call_timeout(&self) -> Duration {
        let slowest = Service::ALL.into_iter().map(|s| self.stubs.latency(s)).max();
        (slowest.unwrap_or_default() * 4).max(Duration::from_secs(2))
    }

    /// The `bench run` load of one phase against `target`.
    fn load(&self, target: String, duration: Duration) -> RunArgs {
        RunArgs {
            target,
            connections: self.connections,
            duration,
            skus: self.skus,
            hot_skus: HOT_SKUS.min(self.skus),
            quiet: self.quiet,
            ..RunArgs::default()
        }
    }
}

/// Why a comparison could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A flag has a value the comparison cannot use; the message names the flag.
    #[error("{0}")]
    InvalidArgs(String),
    /// Local set-up failed (a port, a temporary directory, a file).
    #[error("cannot {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sync baseline could not be started.
    #[error(transparent)]
    SyncBaseline(#[from] SyncBaselineError),
    /// The ordermill executable could not be started.
    #[error("cannot start {exe}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// ordermill started but did not serve, or stopped during the comparison.
    #[error("ordermill did not serve: {reason}{output}")]
    NotServing {
        /// What happened.
        reason: String,
        /// Its last lines of output, if any, starting with a separator.
        output: String,
    },
    /// A load phase failed before it had a report.
    #[error("{phase} against the {design} failed")]
    Phase {
        /// Which phase.
        phase: &'static str,
        /// "sync baseline" or "ordermill".
        design: &'static str,
        /// Why.
        #[source]
        source: BenchError,
    },
    /// The payment stub could not be taken down or brought back.
    #[error("cannot toggle the payment stub: {0}")]
    Toggle(String),
    /// Ctrl-C came; ordermill was stopped and nothing is reported.
    #[error("interrupted; ordermill was stopped")]
    Interrupted,
}

/// Runs the comparison against `ordermill_exe` (started as `ordermill_exe serve`); ctrl-c stops
/// it, kills the child and answers [`CompareError::Interrupted`].
///
/// The report is not printed and `args.json` is not written here: the caller does both.
///
/// # Errors
/// See [`run_until`].
pub async fn run(args: CompareArgs, ordermill_exe: PathBuf) -> Result<CompareReport, CompareError> {
    run_until(args, ordermill_exe, async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// Like [`run`], but stops when `stop` completes instead of on ctrl-c.
///
/// # Errors
/// [`CompareError::InvalidArgs`] for bad flags; [`CompareError::Io`],
/// [`CompareError::SyncBaseline`], [`CompareError::Spawn`] and [`CompareError::NotServing`]
/// when something cannot start; [`CompareError::Phase`] when a load cannot run at all;
/// [`CompareError::Toggle`] when the stub does not obey; [`CompareError::Interrupted`] when
/// `stop` completes first. The child is killed on every path.
pub async fn run_until(
    args: CompareArgs,
    ordermill_exe: PathBuf,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<CompareReport, CompareError> {
    args.check()?;
    let token = CancellationToken::new();
    let _watch = AbortOnDropHandle::new(tokio::spawn({
        let token = token.clone();
        async move {
            stop.await;
            token.cancel();
        }
    }));

    let stubs = Stubs::new(args.stubs);
    let (stubs_addr, _stubs_task) = serve_local(stubs.router(), "start the stubs").await?;
    let baseline = sync_baseline::router(SyncConfig::from_stubs(stubs_addr, args.call_timeout()))?;
    let (sync_addr, _sync_task) = serve_local(baseline, "start the sync baseline").await?;
    let rig =
        Rig { args: &args, token, stubs, stubs_addr, sync_url: format!("http://{sync_addr}") };
    rig.note(format!("stubs on {stubs_addr}, sync baseline on {sync_addr}; starting ordermill"));
    let mut node = node::start(
        &ordermill_exe,
        &NodeSettings {
            payment_url: format!("http://{stubs_addr}/{}", Service::Payment),
            notify_url: format!("http://{stubs_addr}/{}", Service::Notify),
            call_timeout: args.call_timeout(),
            max_attempts: ORDERMILL_MAX_ATTEMPTS,
        },
    )
    .await?;
    rig.note(format!("ordermill serving on {}", node.addr));
    let client = e2e::client(None).map_err(|source| phase_error("set-up", "ordermill", source))?;

    let steady = rig.steady(&mut node).await?;
    rig.note("waiting for ordermill's queues to drain".to_owned());
    let drain = drain(&node, &client, args.wait, &rig.token).await;
    interrupted(&rig.token)?;
    let outage = rig.outage(&mut node, &client).await?;
    // Killed now rather than at the end of the scope: nothing more is asked of it.
    drop(node);

    Ok(CompareReport {
        setup: Setup::new(
            &args.stubs,
            args.connections,
            args.duration.as_secs_f64(),
            args.outage.as_secs_f64(),
            args.skus,
            ORDERMILL_MAX_ATTEMPTS,
        ),
        claim_sync: CLAIM_SYNC,
        claim_async: CLAIM_ASYNC,
        steady,
        drain,
        outage,
    })
}

/// What the phases share: the flags, the stop token, the stubs and the baseline's URL.
struct Rig<'a> {
    args: &'a CompareArgs,
    token: CancellationToken,
    stubs: Stubs,
    stubs_addr: SocketAddr,
    sync_url: String,
}

impl Rig<'_> {
    /// A progress note on stderr, unless `--quiet`.
    fn note(&self, text: String) {
        if !self.args.quiet {
            eprintln!("compare: {text}");
        }
    }

    /// The same load against the baseline, then against ordermill (after creating its
    /// catalog), following a sample of ordermill's orders until confirmed.
    async fn steady(&self, node: &mut Node) -> Result<Steady, CompareError> {
        let (args, token) = (self.args, &self.token);
        let secs = args.duration.as_secs_f64();
        self.note(format!("steady load: sync baseline for {secs} s"));
        let sync = run_with(&args.load(self.sync_url.clone(), args.duration), token)
            .await
            .map_err(|source| phase_error("the steady load", "sync baseline", source))?;
        interrupted(token)?;
        self.note(format!(
            "steady load: creating {} products on ordermill, then ordermill for {secs} s, then \
             following {} of its orders until confirmed",
            args.skus, args.e2e_sample
        ));
        let ordermill_args = RunArgs {
            setup: true,
            merchant_token: Some(node.merchant_token.clone()),
            e2e: true,
            e2e_sample: args.e2e_sample,
            e2e_wait: args.wait,
            ..args.load(node.url(), args.duration)
        };
        let ordermill = run_with(&ordermill_args, token)
            .await
            .map_err(|source| ordermill_error(node, "the steady load", source))?;
        interrupted(token)?;
        Ok(Steady { sync: sync.run, ordermill: ordermill.run, ordermill_e2e: ordermill.e2e })
    }

    /// Payment down, the same short load against both; payment back up, and ordermill's
    /// orders of the outage followed until final.
    async fn outage(
        &self,
        node: &mut Node,
        client: &reqwest::Client,
    ) -> Result<Outage, CompareError> {
        let (args, token) = (self.args, &self.token);
        let secs = args.outage.as_secs_f64();
        set_down(client, self.stubs_addr, Service::Payment, true).await?;
        let refused = || self.stubs.stats().payment.refused_down;
        let before_sync = refused();
        self.note(format!("payment down: sync baseline for {secs} s"));
        let sync = run_with(&args.load(self.sync_url.clone(), args.outage), token)
            .await
            .map_err(|source| phase_error("the outage load", "sync baseline", source))?;
        interrupted(token)?;
        let before_ordermill = refused();
        self.note(format!("payment down: ordermill for {secs} s"));
        let load = args.load(node.url(), args.outage);
        let loaded = load_target(&load, args.outage_sample, token)
            .await
            .map_err(|source| ordermill_error(node, "the outage load", source))?;
        let (ordermill, sampled) = (loaded.main, loaded.sampled);
        interrupted(token)?;
        let at_up = refused();
        set_down(client, self.stubs_addr, Service::Payment, false).await?;

        self.note(format!(
            "payment up: following {} orders placed during the outage",
            sampled.len()
        ));
        let polled =
            e2e::poll(client, &node.url(), &sampled, args.wait, CATCH_UP_POLL, token).await;
        interrupted(token)?;
        let orders = e2e::summarize(&polled, sampled.len(), args.wait);
        let finished = !sampled.is_empty() && orders.not_final == 0 && orders.unreadable == 0;
        let last_seen = polled.finals.iter().map(|f| f.seen_after).max().unwrap_or_default();
        let secs = finished.then(|| round3(last_seen.as_secs_f64()));
        Ok(Outage {
            sync: sync.run,
            ordermill,
            payment_refused_sync: before_ordermill.saturating_sub(before_sync),
            payment_refused_ordermill: at_up.saturating_sub(before_ordermill),
            catch_up: CatchUp { orders, finished, secs },
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn interrupted(token: &CancellationToken) -> Result<(), CompareError> {
    if token.is_cancelled() { Err(CompareError::Interrupted) } else { Ok(()) }
}

fn phase_error(phase: &'static str, design: &'static str, source: BenchError) -> CompareError {
    match source {
        // Ctrl-C during a catalog set-up: the comparison as a whole was interrupted.
        BenchError::Interrupted => CompareError::Interrupted,
        source => CompareError::Phase { phase, design, source },
    }
}

/// A failed ordermill phase, explained by the child's exit when it died.
fn ordermill_error(node: &mut Node, phase: &'static str, source: BenchError) -> CompareError {
    if node.is_running() {
        phase_error(phase, "ordermill", source)
    } else {
        CompareError::NotServing {
            reason: format!("it exited during {phase} ({source})"),
            output: node.output(),
        }
    }
}

/// Serves `router` on 127.0.0.1, port 0, until the handle is dropped.
async fn serve_local(
    router: Router,
    what: &'static str,
) -> Result<(SocketAddr, AbortOnDropHandle<()>), CompareError> {
    let io = |source| CompareError::Io { what, source };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(error = %error, "An in-process bench server failed.");
        }
    });
    Ok((addr, AbortOnDropHandle::new(task)))
}

/// Takes a stub service down or brings it back, through its admin route (the same one a
/// person would use against `ordermill bench stubs`).
async fn set_down(
    client: &reqwest::Client,
    stubs: SocketAddr,
    service: Service,
    down: bool,
) -> Result<(), CompareError> {
    let url = format!("http://{stubs}/admin/{}/{service}", if down { "down" } else { "up" });
    let response = client
        .post(&url)
        .send()
        .await
        .map_err(|e| CompareError::Toggle(format!("POST {url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(CompareError::Toggle(format!("POST {url} answered {status}")))
    }
}

/// Waits until ordermill's bus holds nothing but dead letters, at most `wait`.
async fn drain(
    node: &Node,
    client: &reqwest::Client,
    wait: Duration,
    token: &CancellationToken,
) -> Drain {
    let start = Instant::now();
    loop {
        let backlog = node.backlog(client).await;
        let secs = round3(start.elapsed().as_secs_f64());
        match backlog {
            Ok(backlog) if backlog.pending == 0 => {
                return Drain { drained: true, secs, pending: 0, dead: backlog.dead };
            }
            Ok(backlog) if start.elapsed() >= wait => {
                return Drain {
                    drained: false,
                    secs,
                    pending: backlog.pending,
                    dead: backlog.dead,
                };
            }
            Err(error) if start.elapsed() >= wait => {
                tracing::warn!(error = %error, "Cannot read ordermill's queues.");
                return Drain { drained: false, secs, pending: 0, dead: 0 };
            }
            _ => {}
        }
        tokio::select! {
            () = token.cancelled() => {
                return Drain { drained: false, secs, pending: 0, dead: 0 };
            }
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_checks() {
        CompareArgs::default().check().unwrap();
    }

    #[test]
    fn each_bad_value_is_refused_with_its_flag_named() {
        let cases = [
            (CompareArgs { duration: Duration::ZERO, ..CompareArgs::default() }, "--duration"),
            (CompareArgs { outage: Duration::ZERO, ..CompareArgs::default() }, "--outage"),
            (CompareArgs { connections: 0, ..CompareArgs::default() }, "--connections"),
            (CompareArgs { skus: 0, ..CompareArgs::default() }, "--skus"),
            (CompareArgs { outage_sample: 0, ..CompareArgs::default() }, "--outage-sample"),
            (
                CompareArgs {
                    stubs: StubConfig { payment_fail_rate: 2.0, ..StubConfig::default() },
                    ..CompareArgs::default()
                },
                "--payment-fail-rate",
            ),
        ];
        for (args, flag) in cases {
            let message = args.check().unwrap_err().to_string();
            assert!(message.contains(flag), "{message:?} should name {flag}");
        }
    }

    #[test]
    fn a_call_times_out_well_after_the_slowest_stub() {
        let args = CompareArgs::default();
        assert_eq!(args.call_timeout(), Duration::from_secs(2));
        let slow = CompareArgs {
            stubs: StubConfig { payment_latency: Duration::from_secs(3), ..StubConfig::default() },
            ..CompareArgs::default()
        };
        assert_eq!(slow.call_timeout(), Duration::from_secs(12));
    }

    #[test]
    fn a_small_catalog_has_no_more_hot_skus_than_skus() {
        let args = CompareArgs { skus: 3, ..CompareArgs::default() };
        let load = args.load("http://127.0.0.1:1".to_owned(), Duration::from_secs(1));
        assert_eq!(load.hot_skus, 3);
        load.check().unwrap();
    }
}
