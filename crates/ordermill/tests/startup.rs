//! Starting a scaled-out node on engines that are not ready for it says what to do in one
//! line, instead of failing on a raw database error. Needs ORDERMILL_TEST_POSTGRES_URL,
//! ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use support::proxy::{Proxy, through, upstream_of};
use support::scaled::{Deployment, Services, put_product, wait_ready};

#[tokio::test]
async fn an_api_or_worker_started_before_migrate_names_the_command_to_run() {
    let Some(services) = Services::from_env() else { return };
    let deployment = Deployment::new(services);
    for command in ["api", "worker"] {
        let out = deployment.run(&[command]);
        assert!(!out.status.success(), "{command} started on an empty schema");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not set up for this release"), "{command}: {err}");
        assert!(err.contains("run `ordermill migrate --store postgres://"), "{command}: {err}");
        assert!(!err.contains("does not exist"), "no raw database error: {err}");
    }
    deployment.migrate();
    let out = deployment.run(&["migrate"]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("schema is up to date"));
    // A pipe is no terminal: the log lines carry no colour codes for grep to trip on.
    assert!(said.contains("INFO") && !said.contains('\u{1b}'), "{said:?}");
}

#[tokio::test]
async fn maintain_needs_a_migrated_schema_then_keeps_the_partitions_ahead() {
    let Some(services) = Services::from_env() else { return };
    let deployment = Deployment::new(services);
    let out = deployment.run(&["maintain"]);
    assert!(!out.status.success(), "maintain ran on an empty schema");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `ordermill migrate --store postgres://"), "{err}");
    // migrate creates the coming week's partitions; maintain then finds them there.
    deployment.migrate();
    let out = deployment.run(&["maintain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("partitions checked") && !said.contains("created"), "{said}");
    // A retention under two days is refused before anything is touched.
    let out = deployment
        .command(&["maintain"])
        .env("ORDERMILL_POSTGRES__PROCESSED_RETENTION", "1h")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres.processed_retention"));
}

#[test]
fn maintain_on_the_embedded_store_says_there_is_nothing_to_keep() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["maintain", "--data-dir", dir.path().to_str().unwrap()])
        .env_remove("ORDERMILL_STORE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SQLite store has none"), "{err}");
}

#[test]
fn runtime_worker_threads_sets_how_many_threads_a_node_runs_on() {
    let default = {
        let dir = tempfile::tempdir().unwrap();
        support::Node::start(dir.path(), &[]).serving["threads"].as_u64().unwrap()
    };
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(default, cores, "0 (the default) is one per core");
    for (setting, expected) in [("1", 1), ("3", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let node =
            support::Node::start(dir.path(), &[("ORDERMILL_RUNTIME__WORKER_THREADS", setting)]);
        assert_eq!(node.serving["threads"], expected, "worker_threads = {setting}");
    }
}

#[tokio::test]
async fn a_worker_warns_at_start_when_its_payment_gateway_does_not_answer() {
    let Some(services) = Services::from_env() else { return };
    let deployment = Deployment::new(services);
    deployment.migrate();
    // Nothing listens on the discard port.
    let env = [
        ("ORDERMILL_PAYMENT__GATEWAY", "http"),
        ("ORDERMILL_PAYMENT__URL", "http://127.0.0.1:9/charge"),
    ];
    let worker = deployment.worker_with("worker", &env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&worker.log).unwrap();
        let warned = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|entry| {
                entry["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("An outside service is unreachable"))
            });
        if let Some(entry) = warned {
            assert_eq!(entry["setting"], "payment.url", "{entry}");
            assert_eq!(entry["level"], "WARN", "{entry}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no warning within 10 s:\n{log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_api_started_while_its_cache_is_down_answers_probes_then_serves_on_the_same_port() {
    let Some(services) = Services::from_env() else { return };
    let deployment = Deployment::new(services);
    deployment.migrate();
    let proxy = Proxy::start(upstream_of(&deployment.services.redis, 6379).await).await;
    proxy.cut();
    let cache = through(&deployment.services.redis, proxy.addr);
    let mut api = deployment.api_waiting("api", &[("ORDERMILL_CACHE", cache.as_str())]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let alive = client.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200, "alive while it waits: a liveness probe must not restart it");
    let ready = client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "2");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`cache`"), "names the setting of the engine it waits for: {body}");
    let order = || {
        client
            .post(api.url("/api/orders"))
            .json(
                &serde_json::json!({"customer_id": "c-1", "items": [{"sku": "s", "quantity": 1}]}),
            )
            .send()
    };
    let order_while_waiting = order().await.unwrap();
    assert_eq!(order_while_waiting.status(), 503, "refused clearly, not by a closed port");
    let body: serde_json::Value = order_while_waiting.json().await.unwrap();
    assert_eq!(body["error"]["code"], "starting", "{body}");
    let metrics = client.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ordermill_node_starting 1"), "{metrics}");
    assert!(metrics.contains(r#"ordermill_start_waits_total{engine="cache"}"#), "{metrics}");

    proxy.restore();
    wait_ready(&api.url("/readyz"), Duration::from_secs(30)).await;
    assert!(put_product(&api.url(""), "s", 5).await.is_success());
    assert_eq!(
        order().await.unwrap().status(),
        201,
        "the same port serves once the engine is back"
    );
    let metrics = client.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ordermill_node_starting 0"), "{metrics}");
    assert_eq!(api.logged("ordermill is serving.").len(), 1);
    api.terminate();
}
