//! PostgreSQL (and MySQL, for silent connections) becomes unreachable under order load while
//! the database itself keeps running. One `ordermill api` and one `ordermill worker` reach it
//! through a proxy this test owns, so nothing else sharing the server is touched. Two ways:
//! - for 5 s every connection is dropped and every new one refused (a network cut, a proxy or
//!   a pooler restarting);
//! - every open connection goes silent for good — kept open, never forwarded again — while new
//!   ones work (a frozen proxy, a cut that drops packets on the old path): only the nodes'
//!   deadline on each call (`postgres.query_timeout`, `mysql.query_timeout`) gets them off the
//!   silent connections.
//!
//! Afterwards: every order answered 201 ends confirmed, every effect happened once, nothing is
//! dead-lettered, the hot-stock count matches the store, and selling resumed without a restart.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL
//! (and ORDERMILL_TEST_MYSQL_URL for the MySQL case); skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use support::proxy::{Proxy, through, upstream_of};
use support::scaled::{Deployment, Load, Services, put_product, wait_ready};

const SKU: &str = "zongzi";
const STOCK: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_five_seconds_loses_no_order_and_repeats_no_effect() {
    let Some(mut services) = Services::from_env() else { return };
    let proxy = Proxy::start(upstream_of(&services.postgres, 5432).await).await;
    services.postgres = through(&services.postgres, proxy.addr);
    let (deployment, mut api, mut worker) =
        Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");

    let worker_ready = worker.url("/readyz");
    wait_ready(&worker_ready, Duration::from_secs(10)).await;
    // Its start, as an operator's log shipper reads it: fields are values, not Rust debug text.
    let log = std::fs::read_to_string(&worker.log).unwrap();
    let line = |message: &str| -> serde_json::Value {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|entry| entry["message"].as_str().is_some_and(|m| m.starts_with(message)))
            .unwrap_or_else(|| panic!("no {message:?} line in {log}"))
    };
    let consuming = line("ordermill worker is consuming.");
    assert_eq!(consuming["role"], "worker", "{consuming}");
    assert_eq!(consuming["queues"], "inventory,payment,notify,reports", "{consuming}");
    assert_eq!(line("Payments go to")["gateway"], "simulated");

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let (seed, before) = load.until_a_seeded_moment().await;
    // The worker's /readyz says it cannot work while its store is gone (an answer other than
    // 200, or none within 2 s), and is ready again without a restart.
    let (_, during) = tokio::join!(proxy.cut_for(Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        client.get(&worker_ready).send().await.map(|r| r.status().as_u16()).ok()
    });
    assert_ne!(during, Some(200), "the worker said it was ready while PostgreSQL was cut off");
    load.assert_selling_again(seed).await;
    wait_ready(&worker_ready, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    eprintln!(
        "seed {seed}: {before} accepted before the cut, {} in all; answers {:?}; {} without an \
         answer; samples {:?}; worker /readyz during the cut: {during:?}",
        report.accepted.len(),
        report.statuses,
        report.transport_errors,
        report.samples
    );
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}

/// The api's and the worker's deadline on each call to the database, short for the test.
const QUERY_TIMEOUT: &str = "2s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_gone_silent_are_cut_off_and_lose_no_order() {
    let Some(mut services) = Services::from_env() else { return };
    let proxy = Proxy::start(upstream_of(&services.postgres, 5432).await).await;
    services.postgres = through(&services.postgres, proxy.addr);
    connections_gone_silent(services, proxy, "ORDERMILL_POSTGRES__QUERY_TIMEOUT", "PostgreSQL")
        .await;
}

/// The same on MySQL (MariaDB here): its calls have the same deadline (`mysql.query_timeout`),
/// and a transaction left open on a silenced connection is ended by the server after it
/// (`idle_transaction_timeout`), or the rows it locked would hold their orders back for hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connections_gone_silent_are_cut_off_and_lose_no_order() {
    let Some(mut services) = Services::from_env_mysql() else { return };
    let mysql = services.mysql.take().unwrap();
    let proxy = Proxy::start(upstream_of(&mysql, 3306).await).await;
    services.mysql = Some(through(&mysql, proxy.addr));
    connections_gone_silent(services, proxy, "ORDERMILL_MYSQL__QUERY_TIMEOUT", "MySQL").await;
}

/// An api and a worker reach the database through `proxy`; under load every connection open
/// through it goes silent for good. Both nodes must be selling and confirming again on new
/// connections, each having logged which call went unanswered, with nothing lost.
async fn connections_gone_silent(
    services: Services,
    proxy: Proxy,
    timeout_env: &str,
    engine: &str,
) {
    let deployment = Deployment::new(services);
    let _graves = proxy.graves_closer();
    deployment.migrate();
    let env = [(timeout_env, QUERY_TIMEOUT)];
    let mut api = deployment.api_with("api", &env).await;
    let mut worker = deployment.worker_with("worker", &env);
    let base = api.url("");
    assert!(put_product(&base, SKU, STOCK).await.is_success());
    wait_ready(&worker.url("/readyz"), Duration::from_secs(10)).await;

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let (seed, before) = load.until_a_seeded_moment().await;
    proxy.silence_open_links();
    let silenced_at = std::time::Instant::now();
    // Without the deadline, no order is taken again (measured on PostgreSQL: none for the
    // 60 s watched).
    load.assert_selling_again(seed).await;
    let back_after = silenced_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    let graves = proxy.graves.lock().unwrap().len();
    eprintln!(
        "{engine}, seed {seed}: {before} accepted before {graves} connections went silent, \
         selling again {back_after:?} after, {} in all; answers {:?}; {} without an answer; \
         samples {:?}",
        report.accepted.len(),
        report.statuses,
        report.transport_errors,
        report.samples
    );
    assert!(graves > 0, "connections were open through the proxy when it went silent");
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    // What a node logs when a call misses its deadline.
    let unanswered = format!(
        "{engine} did not answer a call in time; closed its connection, and later calls go to \
         new connections."
    );
    for (name, node) in [("api", &api), ("worker", &worker)] {
        assert!(
            !node.logged(&unanswered).is_empty(),
            "the {name} said which call went unanswered: {:?}",
            node.warnings()
        );
    }
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}
