//! `ordermill bench run`: the load generator.
//!
//! # Layout
//! - [`args`]: the flags ([`RunArgs`]) and their checks.
//! - `conn`: the target's address, keep-alive HTTP/1.1 connections (hyper), one exchange.
//! - `catalog`: SKU names, the flash-sale skew, pre-rendered bodies, `--setup`.
//! - `deals`: the deals `--deals` opens and joins instead of ordering.
//! - `jwt`: customer tokens for a target in jwt mode (`--jwt-secret`, `--jwt-key`).
//! - `load`: one task per connection, closed or open loop, the progress bar.
//! - `e2e`: sampling accepted orders during the load and polling them until final
//!   (`--e2e`).
//! - `stages`: where the target's time went during the load, from its nodes' stage
//!   histograms (`--metrics`); `metrics_text` reads their Prometheus text.
//! - [`report`]: the per-task tally (HDR histogram), the [`Report`] printed and saved as JSON.
//!
//! A run is: check the flags, resolve the target (and reference), create the catalog if asked,
//! load the target, follow the sampled orders until final (`--e2e`), then load the reference
//! with the same flags and compare.

pub mod args;
mod catalog;
mod conn;
mod deals;
pub(crate) mod e2e;
mod error;
mod jwt;
mod load;
mod metrics_text;
pub mod report;
mod settle;
pub mod stages;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use args::RunArgs;
pub use error::BenchError;
pub use report::Report;
use report::Summary;
use stages::Stages;

use catalog::{Bodies, SkuChooser};
use conn::Endpoint;
use load::LoadSpec;

/// Runs the load `args` describe and reports what it measured; ctrl-c stops it early and
/// still yields the report of what was sent so far.
///
/// The report is not printed and `args.json` is not written here: the caller does both, so
/// that a report is never lost to an unwritable file.
///
/// # Errors
/// See [`run_until`].
pub async fn run(args: RunArgs) -> Result<Report, BenchError> {
    run_until(args, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a handler, ctrl-c ends the process the ordinary way; the run still
            // stops by itself at the end of --duration.
            std::future::pending::<()>().await;
        }
    })
    .await
}

// How often --e2e reads the sampled orders again. The latency comes from the server's
// timestamps, so this only sets how soon the run notices the last one is final.
const E2E_POLL_EVERY: Duration = Duration::from_millis(250);

/// Like [`run`], but stops early when `stop` completes instead of on ctrl-c.
///
/// # Errors
/// [`BenchError::InvalidArgs`] for flags that cannot work together,
/// [`BenchError::Unreachable`] when the target or the reference does not accept connections,
/// [`BenchError::Setup`] when `--setup` is refused, [`BenchError::Interrupted`] when `stop`
/// completes during the set-up, [`BenchError::HttpClient`] when `--e2e` cannot build its
/// client. Failures during the load are counted in the report.
pub async fn run_until(
    args: RunArgs,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Report, BenchError> {
    let token = CancellationToken::new();
    let _watch = AbortOnDropHandle::new(tokio::spawn({
        let token = token.clone();
        async move {
            stop.await;
            token.cancel();
        }
    }));
    run_with(&args, &token).await
}

/// [`run_until`] on a cancellation token the caller owns, so that one token can stop a
/// sequence of runs (`bench compare`).
pub(crate) async fn run_with(
    args: &RunArgs,
    token: &CancellationToken,
) -> Result<Report, BenchError> {
    let sample = if args.e2e { args.e2e_sample } else { 0 };
    // Built before the load, so that a failure cannot throw a finished load away.
    let client = if args.e2e || args.reference.is_some() {
        Some(e2e::client(args.admin_token.as_deref())?)
    } else {
        None
    };
    let Loaded { main, sampled, stages, prepared } = load_target(args, sample, token).await?;
    let e2e = if let Some(client) = client.as_ref().filter(|_| args.e2e)
        && !token.is_cancelled()
    {
        let polled =
            e2e::poll(client, &args.target, &sampled, args.e2e_wait, E2E_POLL_EVERY, token).await;
        Some(e2e::summarize(&polled, sampled.len(), args.e2e_wait))
    } else {
        None
    };
    // The reference goes after the polling (its load must not slow the pipeline being timed)
    // and once the target's queues are empty (the pipeline must not slow the reference).
    let mut settled = None;
    let reference = match prepared.reference {
        Some(reference) if !token.is_cancelled() => {
            if let Some(client) = &client {
                settled = Some(settle::until_drained(client, &args.target, token).await);
            }
            Some(load::drive(&reference, &prepared.spec, prepared.bodies, token).await?.0)
        }
        _ => None,
    };
    let mut report = Report::new(main, reference);
    report.e2e = e2e;
    report.stages = stages;
    if let (Some(comparison), Some(settled)) = (report.reference.as_mut(), settled) {
        comparison.target_settled = settled;
    }
    Ok(report)
}

/// What [`load_target`] measured, and what it leaves for the reference run.
pub(crate) struct Loaded {
    /// The target's run.
    pub main: Summary,
    /// Ids of the sampled accepted orders.
    pub sampled: Vec<String>,
    /// Where the target's time went during the load.
    pub stages: Stages,
    /// What the reference run needs.
    pub prepared: Prepared,
}

/// The reference run's load.
pub(crate) struct Prepared {
    reference: Option<Endpoint>,
    spec: LoadSpec,
    bodies: Arc<Bodies>,
}

/// Checks the flags, resolves the target (and reference), creates the catalog if asked and
/// loads the target, sampling the ids of up to `sample` accepted orders and reading its
/// nodes' stage timings around the load.
pub(crate) async fn load_target(
    args: &RunArgs,
    sample: usize,
    token: &CancellationToken,
) -> Result<Loaded, BenchError> {
    args.check()?;
    let target = Endpoint::resolve(&args.target, "--target", "ordermill serve --listen").await?;
    let reference = match &args.reference {
        Some(url) => {
            let reference =
                Endpoint::resolve(url, "--reference", "ordermill bench ceiling --listen").await?;
            // Fail now rather than after the whole main run.
            drop(reference.connect_or_explain().await?);
            Some(reference)
        }
        None => None,
    };

    if args.setup {
        let catalog = catalog::Setup {
            skus: args.skus,
            stock: args.stock,
            merchant_token: args.merchant_token.as_deref(),
        };
        catalog::setup(&target, &catalog, args.connections, args.quiet, token).await?;
    }
    let chooser = SkuChooser::new(args.skus, args.hot_skus, args.hot_share);
    let keys = args.idempotency_keys.then(|| fastrand::u64(..));
    let mut bodies = Bodies::new(chooser, args.batch, args.orders_per_customer, keys);
    if let Some(count) = args.deals {
        let opening = deals::Deals {
            count,
            group_size: args.group_size,
            merchant_token: args.merchant_token.as_deref(),
        };
        let joins = deals::open(&target, &opening, args.connections, args.quiet, token).await?;
        bodies = bodies.joining(joins);
    }
    let bodies = Arc::new(bodies);
    let signer = jwt::Signer::from_args(args)?.map(Arc::new);
    let spec = LoadSpec {
        connections: args.connections,
        duration: args.duration,
        rate: args.rate,
        seed: args.seed,
        quiet: args.quiet,
        sample,
        signer,
    };
    let timed = stages::Before::read(&args.metrics, &args.target).await?;
    let (main, sampled) = load::drive(&target, &spec, bodies.clone(), token).await?;
    let stages = timed.after().await;
    // The reference is only timed; nothing of it is sampled.
    let spec = LoadSpec { sample: 0, ..spec };
    Ok(Loaded { main, sampled, stages, prepared: Prepared { reference, spec, bodies } })
}
