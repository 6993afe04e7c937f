//! A group commit whose reply is lost (the connection failed after COMMIT reached the
//! database) is read back before anything is released: stored orders are answered as
//! accepted and keep their units; orders that were not stored are released and refused.
//! The store is the real SQLite store behind a wrapper that loses the commit's reply.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ordermill_core::ports::{AcceptedOrder, Epoch, OrderStore, StockCache};
use ordermill_server::services::intake::committer::{Batching, CommitRequest, Committer, FailKind};
use ordermill_server::services::lease::Lease;
use support::faulty_store::{COMMIT_THEN_FAIL, FAIL_WITHOUT_COMMIT, Rig, rig};
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_reply_is_read_back_before_anything_is_released() {
    let Rig { dir: _dir, sqlite, store, product, cache, bus } = rig(10).await;
    let lease = Arc::new(Lease::unconditional());
    let (committer, handle) = Committer::new(
        store.clone(),
        cache.clone(),
        bus,
        Batching {
            max_orders: 64,
            capacity: 64,
            linger: Duration::ZERO,
            publish_linger: Duration::ZERO,
        },
        (Duration::from_secs(10), lease),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(committer.run(stop.clone()));
    let ids = ordermill_core::OrderIdGenerator::new();

    let place = |units: i64| {
        let order = ordermill_store::contract::accepted(&ids, &[("tea", units)], None);
        let lines = order.order.lines.clone();
        (order, lines)
    };
    let submit = |order: AcceptedOrder| {
        let (reply, answer) = oneshot::channel();
        let handle = handle.clone();
        async move {
            let arrived = Instant::now();
            let reserved_under = Epoch::ONLY;
            let request = CommitRequest { orders: vec![order], reply, arrived, reserved_under };
            assert!(handle.submit(request, Duration::from_secs(1)).await.is_ok());
            answer.await.unwrap()
        }
    };

    // Stored, but the reply was lost: answered as durable, its units stay held.
    let (stored, lines) = place(3);
    cache.reserve(&lines).await.unwrap();
    store.next_commit.store(COMMIT_THEN_FAIL, Ordering::SeqCst);
    let outcome = submit(stored.clone()).await;
    assert!(outcome.is_ok(), "read back and found: {outcome:?}");
    assert!(sqlite.get_order(stored.order.id).await.unwrap().is_some());
    assert_eq!(cache.available(&product.sku).await.unwrap(), Some(7), "its 3 stay held");

    // Not stored: refused and released.
    let (lost, lines) = place(2);
    cache.reserve(&lines).await.unwrap();
    store.next_commit.store(FAIL_WITHOUT_COMMIT, Ordering::SeqCst);
    let outcome = submit(lost.clone()).await.unwrap_err();
    assert_eq!(outcome.kind, FailKind::Store);
    assert!(sqlite.get_order(lost.order.id).await.unwrap().is_none());
    assert_eq!(cache.available(&product.sku).await.unwrap(), Some(7), "its 2 came back");

    stop.cancel();
    running.await.unwrap();
}
