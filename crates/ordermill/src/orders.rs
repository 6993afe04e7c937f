//! `ordermill orders list|cancel`: the admin API's order actions (`/admin/orders`) from a
//! terminal, against a running api node or `serve`.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Which orders to list.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// The node's base URL.
    pub url: String,
    /// The admin token.
    pub admin_token: String,
    /// A status, or `refund_required`.
    pub status: String,
    /// Only orders at least this old (`"10m"`).
    pub older_than: String,
    /// Only orders at most this old (`"7days"`).
    pub within: String,
    /// At most this many.
    pub limit: u32,
    /// Print the JSON page instead of a table.
    pub json: bool,
}

/// An HTTP client whose requests (body included) may take `timeout`.
pub(crate) fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(timeout).build().context("cannot build the HTTP client")
}

/// The error body's message, or the status when the answer has none.
pub(crate) fn refusal(status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
    match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
        (Some(code), Some(message)) => anyhow::anyhow!("{status} {code}: {message}"),
        _ => anyhow::anyhow!("the node answered {status}"),
    }
}

pub(crate) async fn call(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let response =
        request.send().await.with_context(|| format!("cannot reach the node to {what}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(refusal(status, &body));
    }
    Ok(body)
}

/// Lists orders, one line each (id, status, age, customer, total), following pages up to
/// `limit` orders.
///
/// # Errors
/// When the node cannot be reached or refuses the request.
pub async fn list(request: ListRequest) -> anyhow::Result<()> {
    let client = client(Duration::from_secs(30))?;
    let base = request.url.trim_end_matches('/');
    let limit = request.limit.to_string();
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/admin/orders"),
        [
            ("status", request.status.as_str()),
            ("older_than", request.older_than.as_str()),
            ("within", request.within.as_str()),
            ("limit", limit.as_str()),
        ],
    )
    .with_context(|| {
        format!("{base} is not a URL; give the node's base URL, e.g. http://127.0.0.1:8080")
    })?;
    let page = call(client.get(url).bearer_auth(&request.admin_token), "list orders").await?;
    if request.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    let orders = page["orders"].as_array().cloned().unwrap_or_default();
    if orders.is_empty() {
        println!(
            "no {} orders created between {} and {} ago",
            request.status, request.within, request.older_than
        );
        return Ok(());
    }
    println!("{:<36}  {:<16}  {:<24}  {:>14}  customer", "order", "status", "created", "total");
    for order in &orders {
        println!(
            "{:<36}  {:<16}  {:<24}  {:>14}  {}",
            order["order_id"].as_str().unwrap_or("?"),
            order["status"].as_str().unwrap_or("?"),
            order["created_at"].as_str().unwrap_or("?"),
            order["total"].as_str().unwrap_or("?"),
            order["customer_id"].as_str().unwrap_or("?"),
        );
    }
    if page["next"].is_string() {
        println!("(more: raise --limit, or narrow --within / --older-than)");
    }
    Ok(())
}

/// Cancels one order and says what happened.
///
/// # Errors
/// When the node cannot be reached or refuses (a confirmed order, an unknown one).
pub async fn cancel(
    url: &str,
    admin_token: &str,
    order_id: &str,
    reason: Option<String>,
) -> anyhow::Result<()> {
    if order_id.is_empty() {
        bail!("give the order id: ordermill orders cancel <ORDER_ID> --url ...");
    }
    let body = reason.map_or_else(|| json!({}), |reason| json!({ "reason": reason }));
    let answer = call(
        client(Duration::from_secs(30))?
            .post(format!("{}/admin/orders/{order_id}/cancel", url.trim_end_matches('/')))
            .bearer_auth(admin_token)
            .json(&body),
        "cancel the order",
    )
    .await?;
    match answer["outcome"].as_str() {
        Some("cancelled") => {
            println!(
                "order {order_id} cancelled; its stock goes back on sale and its customer is told"
            )
        }
        Some("already_cancelled") => println!("order {order_id} was already cancelled"),
        _ => println!("{answer}"),
    }
    Ok(())
}
