//! An api node frozen for longer than its lease on the shared counts (SIGSTOP, as a VM stall
//! or a long pause would) while it has orders in flight, next to another api node selling
//! the same SKU. The other node presumes it dead and the counts are rebuilt from the store,
//! putting its uncommitted reservations back on sale. When the frozen node wakes up it must
//! neither sell from counts it no longer has a say in nor commit the orders whose units were
//! put back on sale: it answers them 503, rejoins, and afterwards Redis offers exactly the
//! store's `stock − reserved` — without the fence, those late commits leave Redis offering
//! more than the store has.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use support::scaled::{Deployment, Load, LoadReport, Services};

const SKU: &str = "crab";
const STOCK: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_frozen_past_its_lease_is_fenced_and_the_counts_stay_exact() {
    let Some(services) = Services::from_env() else { return };
    let (deployment, mut frozen, mut worker) =
        Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let mut other = deployment.api("api-other").await;
    let through_frozen = Load::start(&frozen.url(""), 8, SKU, &format!("{}-f", deployment.id));
    let through_other = Load::start(&other.url(""), 4, SKU, &format!("{}-o", deployment.id));

    let (seed, _) = through_frozen.until_a_seeded_moment().await;
    frozen.signal("STOP");
    // Twice the deployment's 1.5 s lease: the other node drops it and the counts are rebuilt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    frozen.signal("CONT");
    through_other.assert_selling_again(seed).await;
    through_frozen.assert_selling_again(seed).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = LoadReport::merged([through_frozen.stop().await, through_other.stop().await]);

    let fenced = frozen.logged("This api node's lease on the shared hot stock lapsed after these orders reserved their units; not writing them (503), and marking the counts for a rebuild from the store.");
    let rejoined = frozen.logged("This api node's lease on the shared hot stock had lapsed (no heartbeat reached Redis within redis.node_ttl): it reserved and wrote nothing meanwhile and sells again now.");
    eprintln!(
        "seed {seed}: answers {:?}, {} fenced batches, samples {:?}",
        report.statuses,
        fenced.len(),
        report.samples
    );
    assert!(!rejoined.is_empty(), "the frozen node noticed its lease had lapsed");
    // Every 201 confirmed once, and Redis offers exactly the store's stock − reserved.
    deployment.assert_nothing_lost(&other.url(""), &report, SKU, STOCK).await;
    assert!(frozen.running() && other.running() && worker.running());
}
