//! A group commit the store refuses for some of its requests: the others are still written,
//! and written together when the refusal is an idempotency key the store already holds (a
//! retry that missed this node's memory). The real SQLite store, behind a wrapper that stalls
//! a commit so that requests gather into one group, and counts commits.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ordermill_core::OrderIdGenerator;
use ordermill_core::ports::{AcceptedOrder, OrderStore, StockCache};
use ordermill_server::services::intake::committer::{
    CommitFailed, CommitRequest, Committed, CommitterHandle, FailKind,
};
use ordermill_store::contract::accepted_by;
use support::faulty_store::{Rig, rig, start_committer, until_stalling};
use tokio::sync::oneshot;

/// Long enough that nothing here is shed.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);

type Answer = oneshot::Receiver<Result<Committed, CommitFailed>>;

/// Reserves `order`'s units and queues it as a request of its own.
async fn queue(rig: &Rig, handle: &CommitterHandle, order: AcceptedOrder) -> Answer {
    let reserved_under = rig.cache.reserve(&order.order.lines).await.unwrap();
    let (reply, answer) = oneshot::channel();
    let arrived = Instant::now();
    let request = CommitRequest { orders: vec![order], reply, arrived, reserved_under };
    assert!(handle.submit(request, Duration::from_secs(1)).await.is_ok());
    answer
}

fn tea(ids: &OrderIdGenerator, customer: &str, key: Option<&str>) -> AcceptedOrder {
    accepted_by(ids, customer, &[("tea", 1)], key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_stored_key_is_refused_and_its_batch_mates_are_committed_together() {
    let rig = rig(10).await;
    let ids = OrderIdGenerator::new();
    let (handle, stop, running) = start_committer(&rig, 64, MAX_QUEUE_WAIT);
    // Stored before: through another node, or before this node restarted.
    let stored = queue(&rig, &handle, tea(&ids, "kim", Some("k-1"))).await;
    stored.await.unwrap().unwrap();

    // The next commit stalls, so that the four requests below gather into one group behind it.
    rig.store.next_commit_stall_ms.store(300, Ordering::SeqCst);
    let stalled = queue(&rig, &handle, tea(&ids, "ann", None)).await;
    until_stalling(&rig).await;
    let retry = queue(&rig, &handle, tea(&ids, "kim", Some("k-1"))).await;
    let mut others = Vec::new();
    for (customer, key) in [("lee", Some("k-1")), ("ann", None), ("kim", Some("k-2"))] {
        others.push(queue(&rig, &handle, tea(&ids, customer, key)).await);
    }
    stalled.await.unwrap().unwrap();

    let refused = retry.await.unwrap().unwrap_err();
    assert_eq!(refused.kind, FailKind::Conflict, "{}", refused.message);
    for answer in others {
        let committed = answer.await.unwrap().unwrap();
        assert_eq!(committed.batch.len(), 3, "the other three are written in one commit");
    }
    // The first order, the stalled one, the refused group, and the other three once more.
    assert_eq!(rig.store.commits.load(Ordering::SeqCst), 4);
    assert_eq!(
        rig.cache.available(&rig.product.sku).await.unwrap(),
        Some(5),
        "the retry's unit is back"
    );
    let kim = ordermill_core::CustomerId::parse("kim").unwrap();
    assert_eq!(rig.sqlite.orders_of_customer(&kim, None, 10).await.unwrap().len(), 2);
    stop.cancel();
    running.await.unwrap();
}
