//! `ordermill_redis_merged_call_items` on an app whose cache is the real Redis named by
//! `ORDERMILL_TEST_REDIS_URL`. A file of its own: the metrics recorder is global to a test
//! process, and other tests' requests would be counted in the same histograms.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;

use support::spawn_app_in;

fn redis_url() -> Option<String> {
    ordermill_cache::contract::service_url("ORDERMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// `ordermill_redis_merged_call_items` counts every request once in the call that carried it:
/// 12 orders (2 of them sold out) are 12 reservations and, with rate limits on, 12 budget
/// spends, however they were merged; a batch's orders are reserved in a few calls, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_redis_calls_count_each_request_once_and_carry_a_batch_together() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let app = spawn_app_in(tempfile::tempdir().unwrap(), move |s| {
        s.cache = url.parse().expect("a redis:// URL");
        s.redis.key_prefix = prefix;
        s.rate_limit.per_second = 1000;
    })
    .await;
    let app = Arc::new(app);
    app.put_product("m", "1.00", 10).await;
    let mut orders = tokio::task::JoinSet::new();
    for i in 0..12 {
        let app = app.clone();
        // Without the merchant token the test client carries: the request is counted.
        let anonymous = reqwest::Client::new()
            .post(app.url("/api/orders"))
            .json(&support::order_body(&format!("c{i}"), &[("m", 1)]));
        orders.spawn(async move { app.send(anonymous).await.status });
    }
    let mut statuses = orders.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [[201; 10].as_slice(), &[409; 2]].concat());

    let metrics = || async {
        app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
    };
    let text = metrics().await;
    assert_eq!(merged(&text, "sum", "reservation"), Some(12.0), "{text}");
    assert_eq!(merged(&text, "sum", "rate_limit"), Some(12.0), "{text}");

    // A batch's reservations go out together, in the batch's order: 603 orders in at most a
    // few calls (256 items each), not 603 calls one after the other.
    let calls_before = merged(&text, "count", "reservation").unwrap();
    app.put_product("few", "1.00", 3).await;
    app.put_product("many", "1.00", 600).await;
    let mut orders = vec![
        support::order_body("b0", &[("few", 2)]),
        support::order_body("b1", &[("few", 2)]),
        support::order_body("b2", &[("few", 1)]),
    ];
    orders.extend((0..600).map(|i| support::order_body(&format!("m{i}"), &[("many", 1)])));
    let batch = app.post("/api/orders/batch", &serde_json::json!({ "orders": orders })).await;
    let results = batch.body["results"].as_array().unwrap();
    let statuses: Vec<_> = results.iter().take(3).map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 409, 201], "the second finds one unit left: {:?}", &results[..3]);
    assert_eq!(batch.body["accepted"], 602);
    assert_eq!(app.available("many").await, 0);
    let text = metrics().await;
    assert_eq!(merged(&text, "sum", "reservation"), Some(615.0), "{text}");
    let calls = merged(&text, "count", "reservation").unwrap() - calls_before;
    assert!(calls <= 4.0, "{calls} reservation calls for one batch of 603 orders");
}

/// `ordermill_redis_merged_call_items_{sum,count}` of `call` in a `/metrics` text.
fn merged(text: &str, field: &str, call: &str) -> Option<f64> {
    let name = format!(r#"ordermill_redis_merged_call_items_{field}{{call="{call}"}} "#);
    text.lines().find_map(|l| l.strip_prefix(name.as_str())).map(|v| v.parse::<f64>().unwrap())
}
