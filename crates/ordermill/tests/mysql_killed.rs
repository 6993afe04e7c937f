//! tests/scaled_out.rs on MySQL: two `ordermill api` behind nginx and two `ordermill worker`
//! on MySQL (MariaDB here), RabbitMQ and Redis; one api and one worker are killed with SIGKILL
//! under order load. Nothing answered 201 is lost, nothing is oversold, no effect happens
//! twice (support/kill.rs says how each is checked).
//!
//! Needs ORDERMILL_TEST_MYSQL_URL besides the scaled-out services and nginx; skips with the
//! reason otherwise (fails under ORDERMILL_TEST_REQUIRE_SERVICES=1).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use support::scaled::Services;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mysql_killing_an_api_and_a_worker_mid_load_loses_no_order_and_repeats_no_effect() {
    let Some(services) = Services::from_env_mysql() else { return };
    support::kill::kill_an_api_and_a_worker_mid_load(services).await;
}
