//! `ordermill report create|status|download`: reports (报表) from a terminal, against a running
//! api node or `serve`, with the merchant token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::orders::{call, refusal};

/// A report's file can be large: its download may take minutes.
fn client() -> anyhow::Result<reqwest::Client> {
    crate::orders::client(Duration::from_secs(600))
}

/// Where the reports API is.
#[derive(Debug, Clone)]
pub struct Api {
    /// The node's base URL.
    pub url: String,
    /// A merchant token (or the admin token).
    pub token: String,
}

impl Api {
    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

/// What to ask for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// `sales_by_sku` or `orders`.
    pub kind: String,
    /// Created at or after (RFC 3339).
    pub from: String,
    /// Created before (RFC 3339).
    pub to: String,
    /// `csv` or `xlsx`.
    pub format: String,
    /// `orders` only: one status.
    pub status: Option<String>,
    /// Only this SKU.
    pub sku: Option<String>,
    /// Wait for it and download it here (a directory: the file keeps its own name).
    pub wait_into: Option<PathBuf>,
}

/// Asks for a report; prints its id, then (with `wait_into`) waits and downloads it.
///
/// # Errors
/// When the node cannot be reached or refuses the request, or the report fails.
pub async fn create(api: &Api, request: CreateRequest) -> anyhow::Result<()> {
    let client = client()?;
    let mut filters = serde_json::Map::new();
    if let Some(status) = &request.status {
        filters.insert("status".into(), json!(status));
    }
    if let Some(sku) = &request.sku {
        filters.insert("sku".into(), json!(sku));
    }
    let body = json!({
        "kind": request.kind,
        "from": request.from,
        "to": request.to,
        "format": request.format,
        "filters": filters,
    });
    let report = call(
        client.post(format!("{}/api/reports", api.base())).bearer_auth(&api.token).json(&body),
        "ask for a report",
    )
    .await?;
    let id = report["report_id"].as_str().context("the node's answer has no report_id")?;
    println!("report {id} queued");
    let Some(dir) = request.wait_into else { return Ok(()) };
    wait(&client, api, id).await?;
    download(api, id, &dir).await
}

/// Waits for the report with a progress bar until it is done (or failed).
async fn wait(client: &reqwest::Client, api: &Api, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let report = call(
            client.get(format!("{}/api/reports/{id}", api.base())).bearer_auth(&api.token),
            "read the report",
        )
        .await?;
        bar.set_position(report["percent"].as_u64().unwrap_or(0));
        let rows = report["rows_done"].as_u64().unwrap_or(0);
        match report["status"].as_str() {
            Some("done") => {
                bar.finish_with_message(format!("done, {rows} rows"));
                return Ok(());
            }
            Some("failed") => {
                bar.abandon_with_message("failed");
                bail!(
                    "report {id} failed: {}",
                    report["error"].as_str().unwrap_or("no reason given")
                );
            }
            Some(status) => bar.set_message(format!("{status}, {rows} rows")),
            None => bail!("the node's answer has no status"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints the report's status (JSON with `json`).
///
/// # Errors
/// When the node cannot be reached or refuses the request.
pub async fn status(api: &Api, id: &str, json: bool) -> anyhow::Result<()> {
    let report = call(
        client()?.get(format!("{}/api/reports/{id}", api.base())).bearer_auth(&api.token),
        "read the report",
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{id}  {}  {}%  {} of {} rows  {} {}{}",
        report["status"].as_str().unwrap_or("?"),
        report["percent"],
        report["rows_done"],
        report["rows_estimated"],
        report["kind"].as_str().unwrap_or("?"),
        report["format"].as_str().unwrap_or("?"),
        report["error"].as_str().map(|e| format!("  error: {e}")).unwrap_or_default(),
    );
    Ok(())
}

/// Downloads a done report into `dir` under the name the node gives it; prints the path.
///
/// # Errors
/// When the node cannot be reached, the report is not done, or the file cannot be written.
pub async fn download(api: &Api, id: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut response = client()?
        .get(format!("{}/api/reports/{id}/download", api.base()))
        .bearer_auth(&api.token)
        .send()
        .await
        .context("cannot reach the node to download the report")?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        return Err(refusal(status, &body));
    }
    let name = response
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("filename=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && !n.starts_with('.'))
        .map_or_else(|| format!("{id}.report"), str::to_owned);
    let path = dir.join(name);
    let mut file = tokio::fs::File::create(&path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.context("the download was cut")? {
        size += chunk.len() as u64;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    println!("{} ({size} bytes)", path.display());
    Ok(())
}
