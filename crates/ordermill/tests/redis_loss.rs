//! Redis loses its data (a restart without persistence, a FLUSHDB) under order load, with one
//! `ordermill api` and one `ordermill worker` running on PostgreSQL, RabbitMQ and Redis.
//! Nothing restarts ordermill: for the moment the counts are gone, orders are answered 503
//! `unavailable` — never a false `out_of_stock` — the api rebuilds every count from the store
//! by itself, selling resumes within seconds, and afterwards the counts are exactly the store's
//! `stock − reserved`, every 201 is confirmed and every effect happened once.
//!
//! The loss is this deployment's keys deleted in one atomic DEL, which is what a restart looks
//! like to ordermill, without disturbing the other tests sharing the Redis.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::scaled::{Deployment, Load, Services, await_confirmed};

const SKU: &str = "crab";
const STOCK: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_data_mid_load_answers_503_then_heals_itself_without_false_sold_out() {
    let Some(services) = Services::from_env() else { return };
    let (deployment, mut api, mut worker) =
        Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");

    let load = Load::start(&base, 4, SKU, &deployment.id);
    // The loss lands at a seeded random moment of the first seconds of load.
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    tokio::time::sleep(Duration::from_millis(700 + rng.u64(0..1_300))).await;
    let before = load.accepted();
    assert!(before > 0, "orders were accepted before the loss");
    let lost = deployment.lose_redis_data().await;
    let lost_at = Instant::now();

    // Selling resumes by itself within 10 s.
    let healed_in = loop {
        let now = load.accepted();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if load.accepted() > now && lost_at.elapsed() > Duration::from_millis(200) {
            break lost_at.elapsed();
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(10),
            "orders were not accepted again within 10 s of the loss (seed {seed})"
        );
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    eprintln!(
        "seed {seed}: {lost} keys lost after {before} orders; selling again {healed_in:.1?} \
         later; answers {:?}; samples {:?}",
        report.statuses, report.samples
    );
    let rebuilt = "Hot-stock counts were lost (cache restarted or flushed, or a node's lease lapsed); rebuilt them from the store. Selling resumes.";
    assert!(!api.logged(rebuilt).is_empty(), "the api rebuilt the counts");
    let unexpected: Vec<_> = report.statuses.keys().filter(|s| ![201, 503].contains(*s)).collect();
    assert!(
        unexpected.is_empty(),
        "only 201 or 503 while {STOCK} units are on sale (a 409 is a false sold-out): \
         {unexpected:?}: {:?}",
        report.samples
    );
    let distinct: HashSet<&String> = report.accepted.iter().collect();
    assert_eq!(distinct.len(), report.accepted.len(), "every key got an order of its own");

    let not_confirmed = await_confirmed(&base, &report.accepted, Duration::from_secs(60)).await;
    assert!(not_confirmed.is_empty(), "{} orders not confirmed", not_confirmed.len());
    let ledger = deployment.settled(Duration::from_secs(20)).await;
    if report.transport_errors == 0 {
        assert_eq!(ledger.orders, report.accepted.len() as i64, "no order without its 201");
    }
    // Exactly: the rebuilt count is the store's stock − reserved, nothing stranded or oversold.
    ledger.assert_exactly_once(&[(SKU, STOCK)], 0);
    assert_eq!(deployment.dead_letters(), 0, "no dead letters");
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}
