//! Scaled out, every node keeps PostgreSQL's time: an api node whose own clock is two hours
//! ahead neither expires a deal early nor refuses a join to it, and stamps orders with the
//! shared time. The skewed node runs under libfaketime (`faketime`, a Debian package that
//! `.ci/services.sh` installs). Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and
//! ORDERMILL_TEST_REDIS_URL; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::MERCHANT_TOKEN;
use support::scaled::{Deployment, Services, put_product};

/// Sends `request`; the status and the JSON body.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap())
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[tokio::test]
async fn a_node_whose_clock_runs_ahead_keeps_the_shared_time() {
    let Some(services) = Services::from_env() else { return };
    assert!(
        std::process::Command::new("faketime").arg("--version").output().is_ok(),
        "faketime is not installed: run `bash .ci/services.sh` (or apt-get install faketime)"
    );
    let deployment = Deployment::new(services);
    deployment.migrate();
    let honest = deployment.api("honest").await;
    let ahead = deployment.api_with_clock_off("ahead", "+2h").await;
    // The skew took: the node stamps its own log lines two hours ahead.
    let log = std::fs::read_to_string(&ahead.log).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let stamped = humantime::parse_rfc3339_weak(first["timestamp"].as_str().unwrap()).unwrap();
    let ahead_by = stamped.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        ahead_by > std::time::Duration::from_secs(3600),
        "the node's clock is not ahead: {first}"
    );
    let client = reqwest::Client::new();

    assert!(put_product(&honest.url(""), "abalone", 10).await.is_success());
    let (_, deal) = answer(client.post(honest.url("/api/deals")).bearer_auth(MERCHANT_TOKEN).json(
        &json!({"sku": "abalone", "deal_price": "5.00", "group_size": 3, "expires_in": "1h"}),
    ))
    .await;
    let id = deal["deal_id"].as_str().unwrap().to_owned();

    // Several of the skewed node's deadline sweeps (every 500 ms) go by: on its own clock
    // the deadline passed an hour ago.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, seen) = answer(client.get(honest.url(&format!("/api/deals/{id}")))).await;
    assert_eq!(seen["status"], "open", "expired early by the skewed node: {seen}");

    let (status, body) = answer(
        client
            .post(ahead.url(&format!("/api/deals/{id}/join")))
            .json(&json!({"customer_id": "c-ahead"})),
    )
    .await;
    assert_eq!(status, 201, "the skewed node refused a join before the deadline: {body}");

    // Its orders carry the shared time, not its own.
    let (_, placed) =
        answer(client.post(ahead.url("/api/orders")).json(
            &json!({"customer_id": "c-plain", "items": [{"sku": "abalone", "quantity": 1}]}),
        ))
        .await;
    let created = humantime::parse_rfc3339(placed["created_at"].as_str().unwrap()).unwrap();
    let created = i64::try_from(created.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    assert!((created - now_ms()).abs() < 60_000, "stamped {} ms off", created - now_ms());
    drop((honest, ahead));
    deployment.clean_up().await;
}
