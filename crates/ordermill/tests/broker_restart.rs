//! RabbitMQ restarts (`rabbitmqctl stop_app`, `start_app`; one with a second's outage, then
//! quick ones) under order load, with one `ordermill api` and one `ordermill worker` on it. Nothing restarts ordermill: the
//! api keeps accepting (a 201 means committed to PostgreSQL; the publish fails and the relay
//! sends the event once the broker is back), both processes reconnect by themselves, every
//! order answered 201 ends confirmed, and every effect happened once.
//!
//! This file is a test binary of its own ON PURPOSE: cargo runs test binaries one after
//! another, so while this one stops the broker no other test of the workspace is using it.
//! Keep it to this one test, and do not move it into a file with other tests.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL, ORDERMILL_TEST_REDIS_URL and
//! `rabbitmqctl` for the broker they point at; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::scaled::{Deployment, Load, Services, await_confirmed, put_product};

const SKU: &str = "mooncake";
const STOCK: i64 = 100_000;
/// Restarts after the first, with load running throughout.
const QUICK_RESTARTS: u32 = 3;

/// Runs `rabbitmqctl <args>` and asserts it succeeded.
fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker's application again when dropped, so that a failing test never leaves
/// RabbitMQ stopped for everything that runs after it.
struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl").args(["await_startup", "--timeout", "60"]).status();
    }
}

/// The api's `ordermill_outbox_oldest_unpublished_seconds`, `None` until it reports one.
async fn outbox_wait(base: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics")).await.ok()?.text().await.ok()?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("ordermill_outbox_oldest_unpublished_seconds "))?;
    value.trim().parse().ok()
}

/// Samples [`outbox_wait`] every 100 ms into `highest` until aborted.
async fn highest_outbox_wait(base: String, highest: Arc<Mutex<f64>>) {
    loop {
        if let Some(wait) = outbox_wait(&base).await {
            let mut highest = highest.lock().unwrap();
            *highest = highest.max(wait);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_load_loses_no_order_and_repeats_no_effect() {
    let Some(services) = Services::from_env() else { return };
    if Command::new("rabbitmqctl").arg("status").output().is_err() {
        assert!(
            std::env::var("ORDERMILL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "rabbitmqctl is missing but ORDERMILL_TEST_REQUIRE_SERVICES=1"
        );
        eprintln!("skipping: rabbitmqctl is not installed, so the broker cannot be restarted");
        return;
    }
    let began = Instant::now();
    // Declared first, dropped last: processes die before their schema, queues and keys go,
    // and the broker guard (declared after) has started the broker again by then.
    let deployment = Deployment::new(services);
    deployment.migrate();
    let mut api = deployment.api("api").await;
    let mut worker = deployment.worker("worker");
    let base = api.url("");
    assert!(put_product(&base, SKU, STOCK).await.is_success());

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let highest_wait = Arc::new(Mutex::new(0.0));
    let oldest_seen = tokio::spawn(highest_outbox_wait(base.clone(), highest_wait.clone()));
    let load_began = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_outage = load.accepted();
    assert!(before_outage > 0, "orders were accepted before the outage");

    let guard = BrokerGuard;
    let stop = Instant::now();
    rabbitmqctl(&["stop_app"]);
    let down_at = load.accepted();
    let stopped_in = stop.elapsed();
    // The outage lasts as long as the broker takes to come back, at least a second of load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let up_from = load.accepted();
    let start = Instant::now();
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup", "--timeout", "60"]);
    drop(guard);
    let started_in = start.elapsed();
    let back_at = load.accepted();
    // Then quick restarts: each one can catch a consumer mid-ack or mid-publish as its
    // connection dies (a call lapin then never completed stopped one queue's consumer for
    // good once), and a reconnect can land while the broker is still booting.
    let quick = Instant::now();
    for _ in 0..QUICK_RESTARTS {
        let guard = BrokerGuard;
        rabbitmqctl(&["stop_app"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup", "--timeout", "60"]);
        drop(guard);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let quick_took = quick.elapsed();
    // At least two more seconds of load on the restarted broker.
    let rest = Duration::from_secs(2);
    tokio::time::sleep(rest).await;
    let report = load.stop().await;
    let load_took = load_began.elapsed();
    oldest_seen.abort();
    eprintln!(
        "load: {} accepted in {load_took:.1?}: {before_outage} before stop_app, {} while it ran \
         ({stopped_in:.1?}), {} while stopped, {} while start_app ran ({started_in:.1?}), {} \
         after ({QUICK_RESTARTS} quick restarts in {quick_took:.1?} among them); answers {:?}; \
         {} without an answer; samples {:?}",
        report.accepted.len(),
        down_at - before_outage,
        up_from - down_at,
        back_at - up_from,
        report.accepted.len() as u64 - back_at,
        report.statuses,
        report.transport_errors,
        report.samples
    );
    assert!(
        up_from > down_at,
        "the api accepted orders while the broker was stopped (intake needs only PostgreSQL)"
    );
    assert!(
        report.accepted.len() as u64 > back_at,
        "the api accepted orders after the broker came back"
    );
    let unexpected: Vec<_> = report.statuses.keys().filter(|s| ![201, 503].contains(*s)).collect();
    assert!(unexpected.is_empty(), "unexpected answers {unexpected:?}: {:?}", report.samples);
    let distinct: HashSet<&String> = report.accepted.iter().collect();
    assert_eq!(distinct.len(), report.accepted.len(), "every key got an order of its own");

    let not_confirmed = await_confirmed(&base, &report.accepted, Duration::from_secs(60)).await;
    assert!(
        not_confirmed.is_empty(),
        "{} of {} orders answered 201 are not confirmed 60 s after the load; e.g. {:?}; \
         api warnings: {:?}; worker warnings: {:?}",
        not_confirmed.len(),
        report.accepted.len(),
        &not_confirmed[..not_confirmed.len().min(5)],
        api.warnings().iter().rev().take(5).collect::<Vec<_>>(),
        worker.warnings().iter().rev().take(5).collect::<Vec<_>>()
    );
    let confirmed_in = load_began.elapsed();

    let ledger = deployment.settled(Duration::from_secs(20)).await;
    if !ledger.is_settled() {
        eprintln!(
            "not settled 20 s after every 201 was confirmed; queues (ready, unacked, consumers):\n\
             {}\nworker warnings: {:#?}",
            deployment.queue_report(),
            worker.warnings().iter().rev().take(20).collect::<Vec<_>>()
        );
    }
    for id in &report.accepted {
        assert!(ledger.confirmed_ids.contains(id), "order {id} confirmed in PostgreSQL");
    }
    // A request that got no answer may still have been committed; otherwise every stored
    // order is one the load was answered 201 for.
    if report.transport_errors == 0 {
        assert_eq!(ledger.orders, report.accepted.len() as i64, "no order without its 201");
    }
    assert!(ledger.orders >= report.accepted.len() as i64);
    ledger.assert_exactly_once(&[(SKU, STOCK)], 0);
    assert_eq!(deployment.dead_letters(), 0, "no dead letters");
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
    // What an operator watching the api saw (OrdermillOutboxStuck reads it): the events of
    // the outage waited for the relay, and nothing waits once every order is confirmed.
    let highest = *highest_wait.lock().unwrap();
    eprintln!("ordermill_outbox_oldest_unpublished_seconds reached {highest:.1} s");
    assert!(highest >= 1.0, "the outage's events were seen waiting: at most {highest} s");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = outbox_wait(&base).await;
        if now == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox's oldest wait stayed at {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let relayed: u64 = api
        .logged("Relayed unpublished outbox events.")
        .iter()
        .map(|entry| entry["events"].as_u64().unwrap_or(0))
        .sum();
    eprintln!(
        "api: {relayed} events relayed from the outbox, {} warnings/errors; worker: {} \
         warnings/errors",
        api.warnings().len(),
        worker.warnings().len()
    );
    eprintln!(
        "settled: {} orders, every 201 confirmed {confirmed_in:.1?} after the load began; \
         total {:.1?}",
        ledger.orders,
        began.elapsed()
    );
}
