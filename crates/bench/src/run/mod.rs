//! `ordermill bench run`: the load generator.
//!
//! # Layout
//! - [`args`]: the flags ([`RunArgs`]) and their checks.
//! - `conn`: the target's address, keep-alive HTTP/1.1 connections (hyper), one exchange.
//! - `catalog`: SKU names, the flash-sale skew, pre-rendered bodies, `--setup`.
//! - `load`: one task per connection, closed or open loop, the progress bar.
//! - [`report`]: the per-task tally (HDR histogram), the [`Report`] printed and saved as JSON.
//!
//! A run is: check the flags, resolve the target (and reference), create the catalog if asked,
//! load the target, then load the reference with the same flags and compare.

pub mod args;
mod catalog;
mod conn;
mod error;
mod load;
pub mod report;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use args::RunArgs;
pub use error::BenchError;
pub use report::Report;

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

/// Like [`run`], but stops early when `stop` completes instead of on ctrl-c.
///
/// # Errors
/// [`BenchError::InvalidArgs`] for flags that cannot work together,
/// [`BenchError::Unreachable`] when the target or the reference does not accept connections,
/// [`BenchError::Setup`] when `--setup` is refused, [`BenchError::Interrupted`] when `stop`
/// completes during the set-up. Failures during the load are counted in the report.
pub async fn run_until(
    args: RunArgs,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Report, BenchError> {
    args.check()?;
    let token = CancellationToken::new();
    let _watch = AbortOnDropHandle::new(tokio::spawn({
        let token = token.clone();
        async move {
            stop.await;
            token.cancel();
        }
    }));

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
        catalog::setup(&target, args.skus, args.stock, args.connections, args.quiet, &token)
            .await?;
    }
    let chooser = SkuChooser::new(args.skus, args.hot_skus, args.hot_share);
    let bodies = Arc::new(Bodies::new(chooser, args.batch));
    let spec = LoadSpec {
        connections: args.connections,
        duration: args.duration,
        rate: args.rate,
        seed: args.seed,
        quiet: args.quiet,
    };
    let main = load::drive(&target, &spec, bodies.clone(), &token).await?;
    let reference = match reference {
        Some(reference) if !token.is_cancelled() => {
            Some(load::drive(&reference, &spec, bodies, &token).await?)
        }
        _ => None,
    };
    Ok(Report::new(main, reference))
}
