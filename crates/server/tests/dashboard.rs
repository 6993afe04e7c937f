//! `/dashboard` and `/admin/overview` on the real app: the page's files come from the binary
//! with headers that keep them to this origin; the overview needs the admin token and shows
//! what the node holds — counters that move, recent orders newest first, an open deal with its
//! slots left, a dead letter with its order, every queue — and a peer that does not answer
//! as down rather than as an error. The page itself is driven in a real browser by
//! scripts/browser/dashboard.sh.
//!
//! Every scenario runs twice: on the embedded engines (`<name>::embedded`) and on the real
//! PostgreSQL, RabbitMQ and Redis (`<name>::scaled_out`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::sync::Arc;

use ordermill_core::{HumanDuration, SystemClock};
use ordermill_server::startup::settings::{Secret, SecretUrl};
use serde_json::{Value, json};
use support::{Engines, Reply, TestApp, spawn_app_on};

on_both_engines!(the_overview_shows_what_the_node_holds);

const ADMIN: &str = "dashboard-admin-token";

async fn overview(app: &TestApp) -> Reply {
    app.send(app.client.get(app.url("/admin/overview")).bearer_auth(ADMIN)).await
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect()
}

async fn the_overview_shows_what_the_node_holds(engines: Engines) {
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), Arc::new(SystemClock), |s| {
        s.admin_token = Some(Secret::new(ADMIN));
        // test-down's charge always fails: with one attempt it is dead-lettered at once.
        s.workers.max_attempts = 1;
        s.workers.retry_base = HumanDuration::from_millis(10);
        // Nothing listens on the discard port: a peer that is down. Its password is never shown.
        s.dashboard.peers = vec![SecretUrl::new("http://ops:peer-pw@127.0.0.1:9")];
    })
    .await;

    let anonymous = app.send(reqwest::Client::new().get(app.url("/admin/overview"))).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    let wrong = app.send(app.client.get(app.url("/admin/overview")).bearer_auth("nope")).await;
    assert_eq!(wrong.status, 401);

    let empty = overview(&app).await;
    assert_eq!(empty.status, 200, "{:?}", empty.body);
    assert_eq!(empty.headers["cache-control"], "no-store");
    assert!(ids(&empty.body["recent_orders"]).is_empty(), "{:?}", empty.body);
    // Counts in this node's memory are never rebuilt.
    assert_eq!(
        empty.body["hot_stock"],
        json!({"rebuilds": 0, "fenced_orders": 0, "late_commits": 0}),
        "{:?}",
        empty.body
    );
    let queues: Vec<&str> = empty.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    for queue in ["inventory", "payment", "notify"] {
        assert!(queues.contains(&queue), "{queue} missing from {queues:?}");
    }
    let nodes = empty.body["nodes"].as_array().unwrap();
    assert_eq!(nodes[0], json!({"node": "self", "ok": true}));
    assert_eq!(
        (nodes[1]["node"].as_str(), nodes[1]["ok"].as_bool()),
        (Some("http://ops:***@127.0.0.1:9"), Some(false))
    );
    assert!(nodes[1]["error"].as_str().is_some_and(|e| e.contains("no answer")), "{nodes:?}");
    // Counters are process-wide (several apps share one test process): compare, don't pin.
    // Whole counts, not Prometheus' floats: `as_u64` is None for 3.0.
    let accepted_before = empty.body["totals"]["accepted"].as_u64().unwrap();

    app.put_product("crab", "19.99", 10).await;
    let paid = app.order("ann", &[("crab", 1)]).await;
    let paid_id = paid.body["order_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&paid_id, "confirmed").await;
    // Ids are UUIDv7 from more than one generator: a millisecond apart, their order is sure.
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(3));
    pause().await;
    let stuck = app.order("test-down", &[("crab", 2)]).await;
    let stuck_id = stuck.body["order_id"].as_str().unwrap().to_owned();
    let deal = app
        .post(
            "/api/deals",
            &json!({"sku": "crab", "deal_price": "9.90", "group_size": 3, "expires_in": "15m"}),
        )
        .await;
    assert_eq!(deal.status, 201, "{:?}", deal.body);
    let deal_id = deal.body["deal_id"].as_str().unwrap().to_owned();
    pause().await;
    let joined =
        app.post(&format!("/api/deals/{deal_id}/join"), &json!({"customer_id": "bo"})).await;
    assert_eq!(joined.status, 201, "{:?}", joined.body);
    let member_order = joined.body["order_id"].as_str().unwrap().to_owned();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let body = overview(&app).await.body;
        let listed = body["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["order_id"] == stuck_id.as_str() && d["queue"] == "payment");
        if listed {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "the dead letter is not shown: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        ids(&body["recent_orders"]),
        [member_order.as_str(), stuck_id.as_str(), paid_id.as_str()],
        "newest first"
    );
    assert_eq!(body["recent_orders"][2]["status"], "confirmed");
    assert_eq!(body["recent_orders"][0]["status"], "awaiting_group");
    let deals = body["deals"].as_array().unwrap();
    assert_eq!(deals.len(), 1, "{deals:?}");
    assert_eq!(
        (deals[0]["deal_id"].as_str(), deals[0]["slots_left"].as_u64()),
        (Some(deal_id.as_str()), Some(2))
    );
    assert!(deals[0].get("members").is_none(), "member lists stay in the deal's own view");
    assert!(body["totals"]["accepted"].as_u64().unwrap() >= accepted_before + 2, "{body}");
    assert!(body["latency"]["accept_to_confirm"]["count"].as_u64().unwrap() >= 1, "{body}");
    let payment =
        body["queues"].as_array().unwrap().iter().find(|q| q["queue"] == "payment").unwrap();
    assert!(payment["dead"].as_u64().unwrap() >= 1, "{payment}");
    assert!(body["unavailable"].as_array().unwrap().is_empty(), "{body}");

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_comes_from_the_binary_and_stays_on_its_origin() {
    let app = support::spawn_app().await;
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let reply = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let headers = reply.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let text = reply.text().await.unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let page = app.get_text("/dashboard").await;
    assert!(page.contains("/dashboard/app.js") && page.contains("/dashboard/app.css"));
    // With no admin token configured the page still loads; its data answers 404 admin_disabled.
    let data = app.send(app.client.get(app.url("/admin/overview"))).await;
    assert_eq!((data.status, data.code()), (404, "admin_disabled"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_answers_adds_its_counters() {
    let peer = support::spawn_app().await;
    let peer_url = peer.url("");
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.admin_token = Some(Secret::new(ADMIN));
        s.dashboard.peers = vec![SecretUrl::new(format!("{peer_url}/"))];
    })
    .await;
    // Read first: counters only grow, so the overview after it shows at least twice this.
    let own = ordermill_server::telemetry::scrape::Scrape::parse(&app.get_text("/metrics").await);
    let body = overview(&app).await.body;
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_eq!(
        (nodes[1]["node"].as_str(), nodes[1]["ok"].as_bool()),
        (Some(peer_url.as_str()), Some(true))
    );
    // One process, one recorder: the peer's counters are this node's, so every total doubles.
    let shown = body["totals"]["accepted"].as_f64().unwrap();
    assert!(shown >= 2.0 * own.totals.accepted, "{shown} vs {}", own.totals.accepted);
    app.stop().await;
    peer.stop().await;
}
