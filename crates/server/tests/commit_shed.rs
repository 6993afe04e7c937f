//! Shedding at the committer: an order that has waited past `http.max_queue_wait` when its
//! commit forms is refused and not written, its units given back — and the refusal says what
//! held it up: the node being behind (`backlog`), or a commit the store was slow to finish
//! (`slow_commit`), which an operator fixes differently. The store is the real SQLite store
//! behind a wrapper that stalls a commit.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ordermill_core::ports::{OrderStore, StockCache};
use ordermill_server::services::intake::committer::{
    CommitFailed, CommitRequest, Committed, CommitterHandle, FailKind, ShedCause,
};
use support::faulty_store::{Rig, rig, start_committer, until_stalling};
use tokio::sync::oneshot;

const MAX_QUEUE_WAIT: Duration = Duration::from_millis(100);
/// Well past `MAX_QUEUE_WAIT`, as the stalled flushes measured on a shared VM (100–400 ms).
const STALL: Duration = Duration::from_millis(400);

type Answer = oneshot::Receiver<Result<Committed, CommitFailed>>;

/// A committer on `rig` taking at most `max_orders` per commit, running until the token fires.
fn start(
    rig: &Rig,
    max_orders: usize,
) -> (CommitterHandle, tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
    start_committer(rig, max_orders, MAX_QUEUE_WAIT)
}

/// Reserves one unit of tea for a new order that reached the node at `arrived` and queues it.
async fn queue(
    rig: &Rig,
    handle: &CommitterHandle,
    ids: &ordermill_core::OrderIdGenerator,
    arrived: Instant,
) -> (ordermill_core::OrderId, Answer) {
    let order = ordermill_store::contract::accepted(ids, &[("tea", 1)], None);
    let reserved_under = rig.cache.reserve(&order.order.lines).await.unwrap();
    let id = order.order.id;
    let (reply, answer) = oneshot::channel();
    let request = CommitRequest { orders: vec![order], reply, arrived, reserved_under };
    assert!(handle.submit(request, Duration::from_secs(1)).await.is_ok());
    (id, answer)
}

/// Queues an order whose commit stalls for [`STALL`]; returns once that commit has begun.
async fn queue_stalled(
    rig: &Rig,
    handle: &CommitterHandle,
    ids: &ordermill_core::OrderIdGenerator,
) -> (ordermill_core::OrderId, Answer) {
    rig.store.next_commit_stall_ms.store(STALL.as_millis() as u64, Ordering::SeqCst);
    let queued = queue(rig, handle, ids, Instant::now()).await;
    until_stalling(rig).await;
    queued
}

fn shed_cause(failed: &CommitFailed) -> ShedCause {
    match failed.kind {
        FailKind::Shed { waited, cause } => {
            assert!(waited > MAX_QUEUE_WAIT, "shed after {waited:?} only");
            cause
        }
        ref other => panic!("not shed but {other:?}: {}", failed.message),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_queued_in_time_behind_a_commit_that_stalled_is_shed_as_slow_commit() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (handle, stop, running) = start(&rig, 64);
    let (first, first_answer) = queue_stalled(&rig, &handle, &ids).await;
    // This one is queued while the first order's commit stalls, well in time.
    let (held_up, held_up_answer) = queue(&rig, &handle, &ids, Instant::now()).await;

    assert!(first_answer.await.unwrap().is_ok(), "the stalled commit completes");
    let failed = held_up_answer.await.unwrap().unwrap_err();
    assert_eq!(shed_cause(&failed), ShedCause::SlowCommit);
    assert!(rig.sqlite.get_order(first).await.unwrap().is_some());
    assert!(rig.sqlite.get_order(held_up).await.unwrap().is_none(), "the shed one not written");
    assert_eq!(rig.cache.available(&rig.product.sku).await.unwrap(), Some(9), "its unit is back");
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_that_reached_the_queue_late_is_shed_as_backlog() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (handle, stop, running) = start(&rig, 64);
    // Slow to reserve its stock, say: it arrived long before it was queued.
    let arrived = Instant::now().checked_sub(MAX_QUEUE_WAIT * 2).unwrap();
    let (late, answer) = queue(&rig, &handle, &ids, arrived).await;

    let failed = answer.await.unwrap().unwrap_err();
    assert_eq!(shed_cause(&failed), ShedCause::Backlog);
    assert!(rig.sqlite.get_order(late).await.unwrap().is_none());
    assert_eq!(rig.cache.available(&rig.product.sku).await.unwrap(), Some(10));
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_queued_in_time_but_more_than_one_commit_takes_are_shed_as_backlog() {
    let rig = rig(10).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (handle, stop, running) = start(&rig, 2);
    let (_, first_answer) = queue_stalled(&rig, &handle, &ids).await;
    // Three queued in time behind the stall; the next commit takes two of them: the node is
    // behind, not only held up.
    let mut behind = Vec::new();
    for _ in 0..3 {
        behind.push(queue(&rig, &handle, &ids, Instant::now()).await);
    }

    assert!(first_answer.await.unwrap().is_ok());
    let mut causes = Vec::new();
    for (_, answer) in behind {
        causes.push(shed_cause(&answer.await.unwrap().unwrap_err()));
    }
    assert_eq!(&causes[..2], [ShedCause::Backlog, ShedCause::Backlog], "{causes:?}");
    assert_eq!(rig.cache.available(&rig.product.sku).await.unwrap(), Some(9));
    stop.cancel();
    running.await.unwrap();
}
