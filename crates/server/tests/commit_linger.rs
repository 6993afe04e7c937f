//! `commit.linger`: a batch that found other requests queued behind its first waits for more
//! before it commits (fewer, fuller transactions under load), and a lone request never waits
//! (no latency added when there is nothing to share the commit with). The store is the real
//! SQLite store.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::ports::AcceptedOrder;
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
        Batching { max_orders: 64, capacity: 64, linger },
        (Duration::from_secs(60), Arc::new(Lease::unconditional())),
    )
}

/// A running committer (`linger`) that finds two requests queued when it first looks, as a
/// loaded node does; returns the handle, the two answers and the way to stop it.
async fn started_under_load(
    rig: &Rig,
    ids: &ordermill_core::OrderIdGenerator,
    linger: Duration,
) -> (CommitterHandle, [Answer; 2], Running) {
    let (committer, handle) = committer(rig, linger);
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
    let request = CommitRequest { orders: vec![order], reply, arrived: Instant::now() };
    assert!(handle.submit(request, Duration::from_secs(1)).await.is_ok());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_load_waits_for_the_orders_behind_it() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (handle, [first, second], running) = started_under_load(&rig, &ids, LINGER).await;
    // Arrives while the batch lingers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = queue(&handle, &ids).await;

    for answer in [first, second, late] {
        let committed = answer.await.unwrap().unwrap();
        assert_eq!(committed.batch.len(), 3, "the late order joined the lingering batch");
    }
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
    let (handle, pair, running) = started_under_load(&rig, &ids, linger).await;
    for answer in pair {
        assert_eq!(answer.await.unwrap().unwrap().batch.len(), 2);
    }
    let first_back = queue(&handle, &ids).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second_back = queue(&handle, &ids).await;

    assert_eq!(first_back.await.unwrap().unwrap().batch.len(), 2, "it waited for the second");
    assert_eq!(second_back.await.unwrap().unwrap().batch.len(), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_linger_a_batch_commits_what_is_queued_at_once() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (handle, [first, second], running) = started_under_load(&rig, &ids, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = queue(&handle, &ids).await;

    assert_eq!(first.await.unwrap().unwrap().batch.len(), 2);
    assert_eq!(second.await.unwrap().unwrap().batch.len(), 2);
    assert_eq!(late.await.unwrap().unwrap().batch.len(), 1);
    running.stop().await;
}
