//! The scaled-out deployment as it would run: two `ordermill api` behind nginx and two
//! `ordermill worker` on the real PostgreSQL, RabbitMQ and Redis. Under order load one api and
//! one worker are killed with SIGKILL; the survivors carry on. Every order answered 201 ends
//! confirmed (the surviving api's relay publishes what the dead one committed but never
//! published; RabbitMQ redelivers what the dead worker held unacked), and every effect happened
//! once: one payment per order, each consumer's record per event, stock of record and the
//! shared Redis count agreeing with the confirmed orders.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL, ORDERMILL_TEST_REDIS_URL and an
//! `nginx` binary (`bash .ci/services.sh` installs it); skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use support::scaled::Services;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_api_and_a_worker_mid_load_loses_no_order_and_repeats_no_effect() {
    let Some(services) = Services::from_env() else { return };
    support::kill::kill_an_api_and_a_worker_mid_load(services).await;
}
