//! The HTTP edge with raw sockets: a client that sends its headers too slowly, or leaves a
//! keep-alive connection idle, is disconnected; connections beyond the cap wait their turn.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use ordermill_core::HumanDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or 5 s pass); returns what came and when.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (all, started.elapsed()),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_and_an_idle_keep_alive_connection_are_closed() {
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.http.header_read_timeout = HumanDuration::from_millis(300);
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let (_, after) = until_closed(&mut slow).await;
    assert!(after >= Duration::from_millis(250) && after < Duration::from_secs(3), "{after:?}");

    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (answer, after) = until_closed(&mut idle).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "answered first");
    assert!(after >= Duration::from_millis(250), "then closed once idle: {after:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.http.max_connections = 2;
    })
    .await;
    let first = TcpStream::connect(app.addr).await.unwrap();
    let _second = TcpStream::connect(app.addr).await.unwrap();
    // Let the server take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(400), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap of 2");
    drop(first);
    let (answer, _) = until_closed(&mut third).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "served once one closed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_that_waited_past_max_queue_wait_is_shed_at_once_and_not_written() {
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        // Every order has waited longer than this by the time intake sees it.
        s.http.max_queue_wait = HumanDuration(Duration::from_nanos(1));
    })
    .await;
    app.put_product("tea", "2.50", 10).await;
    let shed = app.order("sam", &[("tea", 1)]).await;
    assert_eq!((shed.status, shed.code()), (503, "overloaded"), "{:?}", shed.body);
    assert_eq!(shed.headers["retry-after"], "1");
    assert!(shed.body["error"]["message"].as_str().unwrap().contains("http.max_queue_wait"));
    assert_eq!(app.available("tea").await, 10, "nothing held");
    assert_eq!(app.count("SELECT count(*) FROM orders"), 0, "nothing written");
    // Refused before its body is read: under overload most requests are refusals, and none
    // may cost the parsing and validation an accepted order needs.
    let unread = app.post_raw("/api/orders", "{this is not json").await;
    assert_eq!((unread.status, unread.code()), (503, "overloaded"), "{:?}", unread.body);
    let batch = app
        .post(
            "/api/orders/batch",
            &serde_json::json!({"orders": [support::order_body("sam", &[("tea", 1)])]}),
        )
        .await;
    assert_eq!(batch.body["results"][0]["status"], 503);
    app.stop().await;

    let app = support::spawn_app().await;
    app.put_product("tea", "2.50", 10).await;
    assert_eq!(app.order("sam", &[("tea", 1)]).await.status, 201, "the default lets orders in");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_in_flight_an_order_is_refused_at_once_and_holds_nothing() {
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.http.max_in_flight = 1;
    })
    .await;
    app.put_product("tea", "2.50", 1_000).await;
    let app = std::sync::Arc::new(app);
    let mut orders = tokio::task::JoinSet::new();
    for i in 0..200 {
        let app = app.clone();
        orders.spawn(async move { app.order(&format!("c-{i}"), &[("tea", 1)]).await });
    }
    let (accepted, refused) = accepted_or_refused_past_max_in_flight(orders).await;
    assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
    assert_eq!(app.available("tea").await, 1_000 - accepted, "the refused hold nothing");
    assert_eq!(app.count("SELECT count(*) FROM orders"), accepted);
}

/// A join is an order request: past `http.max_in_flight` it is refused at once like an order,
/// and one that waited past `http.max_queue_wait` is shed. Without that a join joined the
/// store's queue whatever its length: at 2,000 connections every join waited 0.7–1.2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_past_max_in_flight_or_max_queue_wait_are_refused_at_once_and_hold_nothing() {
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.http.max_in_flight = 1;
    })
    .await;
    app.put_product("crab", "19.99", 1_000).await;
    let deal = open_deal(&app, "crab").await;
    let app = std::sync::Arc::new(app);
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (app, deal) = (app.clone(), deal.clone());
        joins.spawn(async move { join(&app, &deal, &format!("c-{i}")).await });
    }
    let (accepted, refused) = accepted_or_refused_past_max_in_flight(joins).await;
    assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
    assert_eq!(app.available("crab").await, 1_000 - accepted, "the refused hold nothing");
    let members = app.get(&format!("/api/deals/{deal}")).await.body["member_count"].as_i64();
    assert_eq!(members, Some(accepted));

    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.http.max_queue_wait = HumanDuration(Duration::from_nanos(1));
    })
    .await;
    app.put_product("crab", "19.99", 10).await;
    let deal = open_deal(&app, "crab").await;
    let shed = join(&app, &deal, "sam").await;
    assert_eq!((shed.status, shed.code()), (503, "overloaded"), "{:?}", shed.body);
    assert!(shed.body["error"]["message"].as_str().unwrap().contains("http.max_queue_wait"));
    assert_eq!(app.available("crab").await, 10, "nothing held");
    assert_eq!(app.count("SELECT count(*) FROM deal_members"), 0, "nothing written");
    app.stop().await;
}

/// How many of `requests` were accepted (201) and how many refused 503 `overloaded` for
/// `http.max_in_flight`; any other answer fails the test.
async fn accepted_or_refused_past_max_in_flight(
    mut requests: tokio::task::JoinSet<support::Reply>,
) -> (i64, i64) {
    let (mut accepted, mut refused) = (0, 0);
    while let Some(reply) = requests.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            201 => accepted += 1,
            503 => {
                assert_eq!(reply.code(), "overloaded");
                assert!(reply.body["error"]["message"].as_str().unwrap().contains("max_in_flight"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    (accepted, refused)
}

async fn open_deal(app: &support::TestApp, sku: &str) -> String {
    let body = serde_json::json!({"sku": sku, "deal_price": "9.90", "group_size": 1000, "expires_in": "15m"});
    let reply = app.post("/api/deals", &body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["deal_id"].as_str().unwrap().to_owned()
}

async fn join(app: &support::TestApp, deal: &str, customer: &str) -> support::Reply {
    let body = serde_json::json!({"customer_id": customer});
    app.post(&format!("/api/deals/{deal}/join"), &body).await
}
