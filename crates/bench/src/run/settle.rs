//! Before the reference run: wait until the target's pipeline is quiet. Right after the main
//! run an ordermill target's consumers are still working through the backlog it left, and a
//! reference loaded meanwhile shares the cores with them: on 2026-12-02 the bare ceiling came
//! out at 69.5k instead of 113.8k req/s that way, and ordermill's ratio 1.7 times too good.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics_text::samples;
use super::report::Settled;

/// The longest the reference waits for the target's queues to empty.
const LIMIT: Duration = Duration::from_secs(60);
/// How often the target's `/metrics` is read meanwhile (it refreshes queue depths each second).
const EVERY: Duration = Duration::from_millis(250);
/// The gauge that holds each queue's messages ready, delayed or in flight.
const QUEUE_DEPTH: &str = "ordermill_queue_depth";

/// The messages waiting in all of the target's queues, read from its Prometheus text; `None`
/// when it publishes no queue depth (not ordermill, or a node without a bus).
pub(crate) fn backlog(metrics: &str) -> Option<f64> {
    samples(metrics).filter(|s| s.name == QUEUE_DEPTH).map(|s| s.value).reduce(|a, b| a + b)
}

/// Waits until the target's queues are empty (at most [`LIMIT`]).
pub(crate) async fn until_drained(
    client: &reqwest::Client,
    target: &str,
    token: &CancellationToken,
) -> Settled {
    let started = Instant::now();
    let url = format!("{}/metrics", target.trim_end_matches('/'));
    loop {
        let read = match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        };
        let Some(waiting) = read.as_deref().and_then(backlog) else {
            return Settled::Unknown;
        };
        if waiting == 0.0 {
            return Settled::Drained { secs: started.elapsed().as_secs_f64() };
        }
        if started.elapsed() >= LIMIT {
            return Settled::Busy { messages: waiting };
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = token.cancelled() => return Settled::Busy { messages: waiting },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_sums_every_queue_and_ignores_other_metrics() {
        let text = "# HELP ordermill_queue_depth Messages ready, delayed or in flight, by queue.\n\
                    # TYPE ordermill_queue_depth gauge\n\
                    ordermill_queue_depth{queue=\"inventory\"} 12\n\
                    ordermill_queue_depth{queue=\"notify\"} 3\n\
                    ordermill_queue_depth_total 99\n\
                    ordermill_queue_dead{queue=\"notify\"} 7\n";
        assert_eq!(backlog(text), Some(15.0));
        assert_eq!(backlog("ordermill_queue_depth{queue=\"payment\"} 0\n"), Some(0.0));
        assert_eq!(backlog("# a server without a bus\nhttp_requests_total 5\n"), None);
        assert_eq!(backlog(""), None);
    }
}
