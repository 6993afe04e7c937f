//! `--deals`: the group-buy deals a join run needs, opened on the target before the load
//! (`POST /api/deals` on SKU `bench-0`, which `--setup` created), and the join paths the load
//! picks from.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::BenchError;
use super::catalog::{finish_all, merchant_authorization, setup_exchange, sku};
use super::conn::{Endpoint, Sender};
use super::load::progress_style;

/// The deals to open.
pub(crate) struct Deals<'a> {
    pub count: usize,
    pub group_size: u32,
    /// Sent as `Authorization: Bearer` (opening a deal is a merchant's write).
    pub merchant_token: Option<&'a str>,
}

/// Opens `deals.count` deals over up to `connections` connections; returns each deal's join
/// path, `/api/deals/{id}/join`.
///
/// # Errors
/// [`BenchError::DealSetup`] on the first deal the target does not open, connection errors as
/// for the load, and [`BenchError::Interrupted`] when `stop` fires first.
pub(crate) async fn open(
    endpoint: &Endpoint,
    deals: &Deals<'_>,
    connections: usize,
    quiet: bool,
    stop: &CancellationToken,
) -> Result<Vec<Uri>, BenchError> {
    let failed = |problem: String| BenchError::DealSetup { target: endpoint.url.clone(), problem };
    let authorization = merchant_authorization(deals.merchant_token).map_err(failed)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(deals.count as u64) };
    bar.set_style(progress_style("{prefix} {wide_bar} {pos}/{len} deals"));
    bar.set_prefix(format!("deals {}", endpoint.url));
    // Open long enough for any run: the deadline is not what a join run measures.
    let body = Bytes::from(format!(
        r#"{{"sku":"{}","deal_price":"9.90","group_size":{},"expires_in":"24h"}}"#,
        sku(0),
        deals.group_size
    ));
    let left = Arc::new(AtomicUsize::new(deals.count));
    let mut tasks = JoinSet::new();
    for _ in 0..connections.min(deals.count) {
        let sender = endpoint.connect_or_explain().await?;
        let opener = Opener {
            endpoint: endpoint.clone(),
            body: body.clone(),
            authorization: authorization.clone(),
            bar: bar.clone(),
        };
        tasks.spawn(opener.open_some(sender, left.clone()));
    }
    let opened = finish_all(tasks, stop, &bar).await?;
    Ok(opened.into_iter().flatten().collect())
}

/// What each connection opening deals needs.
struct Opener {
    endpoint: Endpoint,
    body: Bytes,
    authorization: Option<HeaderValue>,
    bar: ProgressBar,
}

#[derive(serde::Deserialize)]
struct Opened {
    deal_id: String,
}

impl Opener {
    /// Opens deals until `left` is used up; their join paths.
    async fn open_some(
        self,
        mut sender: Sender,
        left: Arc<AtomicUsize>,
    ) -> Result<Vec<Uri>, BenchError> {
        let failed =
            |problem: String| BenchError::DealSetup { target: self.endpoint.url.clone(), problem };
        let mut paths = Vec::new();
        while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
        {
            let request = self.endpoint.request(
                Method::POST,
                Uri::from_static("/api/deals"),
                self.body.clone(),
            );
            let (status, body) = setup_exchange(&mut sender, request, self.authorization.as_ref())
                .await
                .map_err(failed)?;
            if status != StatusCode::CREATED {
                let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                let hint = if status == StatusCode::UNAUTHORIZED {
                    " (opening deals needs the target's merchant token: --merchant-token or ORDERMILL_MERCHANT_TOKEN)"
                } else {
                    ""
                };
                return Err(failed(format!("answered {status}{hint}: {text}")));
            }
            let opened: Opened = serde_json::from_slice(&body)
                .map_err(|error| failed(format!("answered without a deal_id: {error}")))?;
            let path = Uri::try_from(format!("/api/deals/{}/join", opened.deal_id))
                .map_err(|error| failed(format!("answered a deal_id that is no path: {error}")))?;
            paths.push(path);
            self.bar.inc(1);
        }
        Ok(paths)
    }
}
