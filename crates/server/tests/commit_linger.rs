//! `commit.linger`: a batch that found other requests queued behind its first waits for the
//! requests on their way (fewer, fuller transactions under load), no longer than the linger
//! and no longer than someone is on the way; a lone request never waits (no latency added
//! when there is nothing to share the commit with). The store is the real SQLite store.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::ports::{AcceptedOrder, Epoch};
use ordermill_server::services::intake::committer::{
    Batching, CommitRequest, Committed, Committer, CommitterHandle,
};
use ordermill_server::services::lease::Lease;
use support::faulty_store::{Rig, rig};
use tokio::sync::oneshot;

const LINGER: Duration = Duration::from_secs(2);

fn committer(rig: &Rig, linger: Duration) -> (Committer, CommitterHandle) {
    Committer::new(
        rig.store.clone(),
        rig.cache.clone(),
        rig.bus.clone(),
        Batching { max_orders: 64, capacity: 64, linger, publish_linger: Duration::ZERO },
        (Duration::from_secs(60), Arc::new(Lease::unconditional())),
    )
}

/// `committer` running, having found two requests queued when it first looked, as a loaded
/// node does; returns the handle, the two answers and the way to stop it.
async fn started_under_load(
    ids: &ordermill_core::OrderIdGenerator,
    (committer, handle): (Committer, CommitterHandle),
) -> (CommitterHandle, [Answer; 2], Running) {
    let queued = [queue(&handle, ids).await, queue(&handle, ids).await];
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(committer.run(stop.clone()));
    (handle, queued, Running { stop, task })
}

struct Running {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

type Answer = oneshot::Receiver<
    Result<Committed, ordermill_server::services::intake::committer::CommitFailed>,
>;

/// Queues one order and returns where its outcome arrives.
async fn queue(handle: &CommitterHandle, ids: &ordermill_core::OrderIdGenerator) -> Answer {
    let order: AcceptedOrder = ordermill_store::contract::accepted(ids, &[("tea", 1)], None);
    let (reply, answer) = oneshot::channel();
    let arrived = Instant::now();
    let request =
        CommitRequest { orders: vec![order], reply, arrived, reserved_under: Epoch::ONLY };
    assert!(handle.submit(request, Duration::from_secs(1)).await.is_ok());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_load_waits_for_the_order_on_its_way() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (committer, handle) = committer(&rig, LINGER);
    // A request still reserving its stock when the batch forms.
    let on_its_way = handle.approach();
    let (handle, [first, second], running) = started_under_load(&ids, (committer, handle)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = queue(&handle, &ids).await;
    drop(on_its_way);

    for answer in [first, second, late] {
        let committed = answer.await.unwrap().unwrap();
        assert_eq!(committed.batch.len(), 3, "the late order joined the lingering batch");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_load_commits_at_once_when_nothing_is_on_its_way() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let started = Instant::now();
    let (_handle, [first, second], running) =
        started_under_load(&ids, committer(&rig, LINGER)).await;

    for answer in [first, second] {
        assert_eq!(answer.await.unwrap().unwrap().batch.len(), 2);
    }
    assert!(
        started.elapsed() < LINGER / 2,
        "the batch lingered {:?} for nobody",
        started.elapsed()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_ends_when_the_order_on_its_way_gives_up() {
    // Sold out, say: it never reaches the committer.
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (committer, handle) = committer(&rig, LINGER);
    let on_its_way = handle.approach();
    let started = Instant::now();
    let (_handle, [first, second], running) = started_under_load(&ids, (committer, handle)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(on_its_way);

    for answer in [first, second] {
        assert_eq!(answer.await.unwrap().unwrap().batch.len(), 2);
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "it did not wait for the order on its way");
    assert!(waited < LINGER / 2, "it waited {waited:?} after the order on its way gave up");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_order_commits_without_waiting() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (committer, handle) = committer(&rig, LINGER);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = Running { task: tokio::spawn(committer.run(stop.clone())), stop };

    let started = Instant::now();
    let alone = queue(&handle, &ids).await;
    let committed = alone.await.unwrap().unwrap();
    assert_eq!(committed.batch.len(), 1);
    assert!(started.elapsed() < LINGER / 2, "a lone order waited {:?}", started.elapsed());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_shared_commit_even_a_lone_order_waits_for_company() {
    // Clients answered together come back together, a moment after the commit.
    let linger = Duration::from_millis(500);
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (handle, pair, running) = started_under_load(&ids, committer(&rig, linger)).await;
    for answer in pair {
        assert_eq!(answer.await.unwrap().unwrap().batch.len(), 2);
    }
    let second_on_its_way = handle.approach();
    let first_back = queue(&handle, &ids).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second_back = queue(&handle, &ids).await;
    drop(second_on_its_way);

    assert_eq!(first_back.await.unwrap().unwrap().batch.len(), 2, "it waited for the second");
    assert_eq!(second_back.await.unwrap().unwrap().batch.len(), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_linger_a_batch_commits_what_is_queued_at_once() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (committer, handle) = committer(&rig, Duration::ZERO);
    let on_its_way = handle.approach();
    let (handle, [first, second], running) = started_under_load(&ids, (committer, handle)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(on_its_way);
    let late = queue(&handle, &ids).await;

    assert_eq!(first.await.unwrap().unwrap().batch.len(), 2);
    assert_eq!(second.await.unwrap().unwrap().batch.len(), 2);
    assert_eq!(late.await.unwrap().unwrap().batch.len(), 1);
    running.stop().await;
}
