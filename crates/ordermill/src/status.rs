//! `ordermill status`: a terminal summary of a running deployment, read from what its nodes
//! serve — `/readyz`, `/metrics`, and `/admin/queues` when the admin token is given. Nothing
//! here talks to an engine: it sees what an operator's load balancer and Prometheus see.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use ordermill_bench::run::stages::{mean_text, stage_name};
use ordermill_server::telemetry::scrape::{
    Scrape, StageRate, StageSums, StockFaults, Totals, quantile, stages_since,
};
use serde::Serialize;

/// What `ordermill status` was asked.
pub struct StatusRequest {
    /// Base URLs of the nodes (api nodes, `serve`, workers' `--metrics-listen`).
    pub urls: Vec<String>,
    /// Adds `/admin/queues` (in flight, delayed) to what the metrics say.
    pub admin_token: Option<String>,
    /// Rates are measured over this long (and `--watch` refreshes this often).
    pub every: Duration,
    /// Print JSON instead of text.
    pub json: bool,
    /// Refresh until interrupted.
    pub watch: bool,
}

/// One node's answers.
#[derive(Debug, Clone, Serialize)]
struct NodeView {
    url: String,
    ready: bool,
    /// `/readyz`'s body when it answered, else why it did not.
    detail: String,
}

/// One queue, from the nodes' gauges (the largest any node reports: each reports the same bus).
#[derive(Debug, Clone, Default, Serialize)]
struct QueueView {
    queue: String,
    depth: f64,
    dead: f64,
    /// From `/admin/queues`, with the admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delayed: Option<f64>,
}

/// The whole picture at one moment.
#[derive(Debug, Clone, Serialize)]
struct Status {
    nodes: Vec<NodeView>,
    totals: Totals,
    /// Per second, between this snapshot and the one before.
    rates: Totals,
    /// Over the nodes' whole life: the bucket bound under which 50% / 99% of orders were
    /// confirmed, seconds (`None` before any confirmation).
    accept_to_confirm_p50_s: Option<f64>,
    accept_to_confirm_p99_s: Option<f64>,
    queues: Vec<QueueView>,
    /// Rebuilds of the shared hot-stock counts and the orders they touched, since the nodes
    /// started.
    stock: StockFaults,
    /// Where the time went between this snapshot and the one before, every node together.
    stages: Vec<StageRate>,
    /// The nodes' stage histograms as read, for the next interval's figures.
    #[serde(skip)]
    stage_sums: BTreeMap<(String, String), StageSums>,
}

/// Runs the command; `Ok(false)` when some node is not ready (the exit status says so).
///
/// # Errors
/// When no node answers at all, or the HTTP client cannot be built.
pub async fn run(request: StatusRequest) -> anyhow::Result<bool> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the HTTP client")?;
    let mut before = snapshot(&client, &request).await?;
    let mut taken = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(request.every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(true),
        }
        let elapsed = taken.elapsed().as_secs_f64();
        let status = with_rates(snapshot(&client, &request).await?, &before, elapsed);
        let all_ready = status.nodes.iter().all(|n| n.ready);
        if request.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            if request.watch {
                // Clear the screen and home the cursor, as `watch` does.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render(&status, elapsed));
        }
        if !request.watch {
            return Ok(all_ready);
        }
        before = status;
        taken = Instant::now();
    }
}

async fn snapshot(client: &reqwest::Client, request: &StatusRequest) -> anyhow::Result<Status> {
    let mut nodes = Vec::new();
    let mut merged = Scrape::default();
    let mut answered = 0;
    for url in &request.urls {
        let base = url.trim_end_matches('/');
        let ready = client.get(format!("{base}/readyz")).send().await;
        let (ready, detail) = match ready {
            Ok(reply) => {
                let ok = reply.status().is_success();
                (ok, reply.text().await.unwrap_or_default().trim().to_owned())
            }
            Err(error) => (false, format!("no answer: {}", error.without_url())),
        };
        if let Ok(reply) = client.get(format!("{base}/metrics")).send().await
            && let Ok(text) = reply.text().await
        {
            answered += 1;
            merged.merge(Scrape::parse(&text));
        }
        nodes.push(NodeView { url: base.to_owned(), ready, detail });
    }
    if answered == 0 {
        anyhow::bail!(
            "no node answered /metrics at {}; check the URLs (an api node's --listen, a worker's \
             --metrics-listen)",
            request.urls.join(", ")
        );
    }
    let mut queues: BTreeMap<String, QueueView> = BTreeMap::new();
    for (queue, depth) in &merged.depth {
        queues.entry(queue.clone()).or_default().depth = *depth;
    }
    for (queue, dead) in &merged.dead {
        queues.entry(queue.clone()).or_default().dead = *dead;
    }
    if let Some(token) = &request.admin_token {
        for url in &request.urls {
            let reply = client
                .get(format!("{}/admin/queues", url.trim_end_matches('/')))
                .bearer_auth(token)
                .send()
                .await;
            let Ok(reply) = reply else { continue };
            let Ok(body) = reply.json::<serde_json::Value>().await else { continue };
            for q in body["queues"].as_array().into_iter().flatten() {
                let Some(name) = q["queue"].as_str() else { continue };
                let view = queues.entry(name.to_owned()).or_default();
                view.in_flight = q["in_flight"].as_f64();
                view.delayed = q["delayed"].as_f64();
            }
            break; // one node answers for the whole bus
        }
    }
    let queues = queues
        .into_iter()
        .map(|(queue, mut view)| {
            view.queue = queue;
            view
        })
        .collect();
    let status = Status {
        nodes,
        totals: merged.totals,
        rates: Totals::default(),
        accept_to_confirm_p50_s: quantile(&merged.confirm_buckets, 0.5),
        accept_to_confirm_p99_s: quantile(&merged.confirm_buckets, 0.99),
        queues,
        stock: merged.stock,
        stages: Vec::new(),
        stage_sums: merged.stages,
    };
    Ok(status)
}

fn with_rates(mut status: Status, before: &Status, seconds: f64) -> Status {
    status.rates = status.totals.rates_since(&before.totals, seconds);
    status.stages = stages_since(&status.stage_sums, &before.stage_sums, seconds);
    status
}

fn render(status: &Status, seconds: f64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ready = status.nodes.iter().filter(|n| n.ready).count();
    let _ = writeln!(out, "nodes ready   {ready} of {}", status.nodes.len());
    for node in &status.nodes {
        let mark = if node.ready { "ready    " } else { "NOT READY" };
        let _ = writeln!(out, "  {mark}  {}  {}", node.url, node.detail);
    }
    let (t, r) = (&status.totals, &status.rates);
    let _ = writeln!(
        out,
        "orders/s      accepted {:.0}  confirmed {:.0}  cancelled {:.0}  rejected {:.0}  shed {:.0}  (over {seconds:.1} s)",
        r.accepted, r.confirmed, r.cancelled, r.rejected, r.shed
    );
    let _ = writeln!(
        out,
        "orders        accepted {:.0}  confirmed {:.0}  cancelled {:.0}  rejected {:.0}  shed {:.0}  (since the nodes started)",
        t.accepted, t.confirmed, t.cancelled, t.rejected, t.shed
    );
    let bound = |s: Option<f64>| match s {
        None => "-".to_owned(),
        Some(s) if s.is_infinite() => "> 2.5 s".to_owned(),
        Some(s) => format!("≤ {} ms", s * 1000.0),
    };
    let _ = writeln!(
        out,
        "accept→confirmed  p50 {}  p99 {}",
        bound(status.accept_to_confirm_p50_s),
        bound(status.accept_to_confirm_p99_s)
    );
    let stock = &status.stock;
    if stock.any() {
        let _ = writeln!(
            out,
            "hot stock     rebuilt {:.0}×  fenced orders {:.0}  late commits {:.0}  (since the nodes started; docs/OPERATIONS.md, \"Redis loses its data\")",
            stock.rebuilds, stock.fenced_orders, stock.late_commits
        );
    }
    let _ = writeln!(out, "queue         depth      dead  in flight  delayed");
    for q in &status.queues {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        let _ = writeln!(
            out,
            "  {:<10} {:>7.0} {:>9.0} {:>10} {:>8}",
            q.queue,
            q.depth,
            q.dead,
            opt(q.in_flight),
            opt(q.delayed)
        );
    }
    if status.queues.iter().any(|q| q.dead > 0.0) {
        let _ = writeln!(
            out,
            "dead letters: GET /admin/dlq/<queue> lists them (docs/OPERATIONS.md, \"Dead letters\")"
        );
    }
    if !status.stages.is_empty() {
        let _ = writeln!(
            out,
            "stage                          per s        mean  (every node, over {seconds:.1} s)"
        );
        for s in &status.stages {
            let (name, mean) = (stage_name(&s.queue, &s.stage), mean_text(s.mean_ms));
            let _ = writeln!(out, "  {name:<26} {:>9.0} {mean}", s.per_sec);
        }
    }
    out
}
