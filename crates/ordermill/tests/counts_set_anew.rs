//! Redis loses its data while an api node's group commit is held up in PostgreSQL, so the
//! counts are rebuilt from a store that does not have that commit's orders yet, nor those
//! queued behind it: their units are on sale again. Then
//! - the commit held up lands (it passed every check before it stalled): its order stands, and
//!   the node, finding the counts set anew since it reserved, marks them for a rebuild — else
//!   Redis would offer its unit twice;
//! - an order reserved before the rebuild and still queued is not written (503 `unavailable`),
//!   its unit left to the rebuilt counts, which have it already;
//! - an order reserved after the rebuild is written as usual;
//!
//! and afterwards Redis offers exactly PostgreSQL's `stock − reserved`. The commit is held up
//! by a lock on the product's row, which the group commit updates: a stand-in for a slow disk
//! or a stalled node, long enough for the rebuild's settle time to pass.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use support::scaled::{Deployment, Services, get_product};

const SKU: &str = "crab";
const STOCK: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_in_flight_across_a_rebuild_of_the_counts_are_fenced_or_recounted() {
    let Some(services) = Services::from_env() else { return };
    let postgres = services.postgres.clone();
    let (deployment, mut api, mut worker) =
        Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");

    let mut lock = PgConnection::connect(&postgres).await.unwrap();
    let schema = format!("SET search_path TO \"{}\"", deployment.id);
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema)).execute(&mut lock).await.unwrap();
    let mut held = lock.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE")
        .bind(SKU)
        .execute(&mut *held)
        .await
        .unwrap();

    // A reserves and its commit waits on the row; C reserves and queues behind it.
    let first = tokio::spawn(place(base.clone(), "ann"));
    // Its commit waits on the row (not merely queued, where C could join it).
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))",
        )
        .fetch_one(&mut *held)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < until, "the first order's commit never waited on the row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = tokio::spawn(place(base.clone(), "cho"));
    until_offered(&base, STOCK - 2).await;

    // The counts are lost and rebuilt from a store that has neither order.
    deployment.lose_redis_data().await;
    until_offered(&base, STOCK).await;

    // B reserves from the rebuilt counts.
    let after = tokio::spawn(place(base.clone(), "bo"));
    until_offered(&base, STOCK - 1).await;
    // Its node takes in the new epoch as the reservation's answer comes back: let it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.rollback().await.unwrap();

    let (first, queued, after) = (answer(first).await, answer(queued).await, answer(after).await);
    assert_eq!(first.0, 201, "the commit held up lands and stands: {first:?}");
    assert_eq!(after.0, 201, "reserved from the rebuilt counts: {after:?}");
    assert_eq!(queued.0, 503, "reserved before the rebuild, not written: {queued:?}");
    assert_eq!(queued.1["error"]["code"], "unavailable", "{queued:?}");

    let ledger = deployment.settled(Duration::from_secs(30)).await;
    assert_eq!(ledger.orders, 2, "A and B stored, C not");
    // Redis offers exactly the store's stock − reserved: the first order's unit, counted free
    // by the rebuild, is not offered a second time (checked once the counts were set again).
    let exact = within(Duration::from_secs(15), || async {
        let ledger = deployment.ledger(&mut deployment.db().await).await;
        (ledger.stranded(SKU) == 0).then_some(ledger)
    })
    .await;
    assert!(
        exact.is_some(),
        "Redis offers {:?} of {SKU} against the store's {:?} (stock, reserved)",
        ledger.available[SKU],
        ledger.products[SKU]
    );
    let recounted = api.logged("Orders were written after the hot-stock counts had been set anew from the store (a rebuild or a reset since they reserved their units); marked the counts for a rebuild, so their units are not offered twice.");
    assert!(!recounted.is_empty(), "the commit that landed after the rebuild was noticed");
    let fenced = api.logged("The hot-stock counts were set anew from the store after these orders reserved their units, which are on sale again; not writing them (503).");
    assert_eq!(fenced.len(), 1);
    let metrics = reqwest::get(api.url("/metrics")).await.unwrap().text().await.unwrap();
    let value = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    assert_eq!(value(r#"ordermill_orders_fenced_total{cause="counts_set_anew"}"#), 1.0);
    assert!(value(r#"ordermill_late_commits_total{cause="counts_set_anew"}"#) >= 1.0);
    assert_eq!(value(r#"ordermill_orders_fenced_total{cause="lease_lapsed"}"#), 0.0);
    let status = deployment.run(&["status", "--url", &base]);
    let status = String::from_utf8_lossy(&status.stdout);
    let line = status.lines().find(|l| l.starts_with("hot stock"));
    assert!(line.is_some_and(|l| l.contains("fenced orders 1 ")), "{status}");
    // The dashboard's figures, from the same counters.
    let client = reqwest::Client::new();
    let overview =
        support::get_json(&client, api.url("/admin/overview"), support::ADMIN_TOKEN).await;
    let hot = &overview["hot_stock"];
    assert_eq!(hot["fenced_orders"], 1, "{overview}");
    assert!(hot["late_commits"].as_u64().is_some_and(|n| n >= 1), "{overview}");
    assert!(hot["rebuilds"].as_u64().is_some_and(|n| n >= 1), "{overview}");
    assert!(api.running() && worker.running());
}

/// Posts a one-unit order as `customer`.
async fn place(base: String, customer: &'static str) -> (u16, Value) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let reply = client
        .post(format!("{base}/api/orders"))
        .json(&json!({"customer_id": customer, "items": [{"sku": SKU, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn answer(task: tokio::task::JoinHandle<(u16, Value)>) -> (u16, Value) {
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap()
}

/// Waits until the api offers `units` of the SKU (read from Redis).
async fn until_offered(base: &str, units: i64) {
    let offered = within(Duration::from_secs(15), || async {
        let (status, product) = get_product(base, SKU).await;
        (status == 200 && product["stock_available"] == units).then_some(())
    })
    .await;
    assert!(offered.is_some(), "{SKU} never offered {units}: {:?}", get_product(base, SKU).await);
}

/// Polls `check` every 50 ms until it gives a value or `limit` passes.
async fn within<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    check: impl Fn() -> F,
) -> Option<T> {
    let until = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
