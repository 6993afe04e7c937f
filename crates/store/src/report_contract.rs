//! The contract every [`ReportStore`] backend must honour: a report reads back as it was
//! asked for; one run at a time holds it, a run presumed dead is replaced and can then no
//! longer write; finished reports are not run again; the sweeper and the expiry find what they
//! look for; orders are counted by creation time. A backend's test calls [`run_all`] with a
//! fresh, empty store.

use std::sync::Arc;

use ordermill_core::ports::{Claim, FILE_CHUNK, OrderStore, ReportFiles, ReportStore};
use ordermill_core::report::{
    Report, ReportFormat, ReportId, ReportKind, ReportSpec, ReportStatus,
};
use ordermill_core::{OrderIdGenerator, OrderStatus, Sku, UnixMillis};
use uuid::Uuid;

const NOW: UnixMillis = UnixMillis(1_790_000_000_000);
const MINUTE: i64 = 60_000;

fn at(minutes: i64) -> UnixMillis {
    UnixMillis(NOW.0 + minutes * MINUTE)
}

fn report(ids: &OrderIdGenerator, kind: ReportKind, sku: Option<&str>) -> Report {
    let status = (kind == ReportKind::Orders).then_some(OrderStatus::Confirmed);
    let spec = ReportSpec::new(
        kind,
        ReportFormat::Xlsx,
        (UnixMillis(NOW.0 - 86_400_000), NOW),
        status,
        sku.map(|s| Sku::parse(s).expect("fixture sku is valid")),
    )
    .expect("fixture spec is valid");
    Report::queued(ReportId::from_uuid(ids.next_uuid(NOW)), spec, NOW)
}

/// Runs every check against `store`.
pub async fn run_all<S: OrderStore + ReportStore>(store: Arc<S>) {
    a_report_reads_back_as_asked(&*store).await;
    one_run_holds_a_report_and_a_dead_one_is_replaced(&*store).await;
    a_failed_report_keeps_its_error(&*store).await;
    the_sweeper_and_the_expiry_find_their_reports(&*store).await;
    two_runs_claiming_at_once_one_wins(store.clone()).await;
    orders_are_counted_by_creation_time(&*store).await;
}

async fn a_report_reads_back_as_asked<S: ReportStore>(store: &S) {
    let ids = OrderIdGenerator::new();
    let asked = report(&ids, ReportKind::Orders, Some("crab-1"));
    store.create_report(&asked).await.expect("create");
    assert_eq!(store.get_report(asked.id).await.expect("read"), Some(asked.clone()));
    let other = report(&ids, ReportKind::SalesBySku, None);
    store.create_report(&other).await.expect("create");
    assert_eq!(store.get_report(other.id).await.expect("read"), Some(other));
    let missing = ReportId::from_uuid(ids.next_uuid(NOW));
    assert_eq!(store.get_report(missing).await.expect("read"), None);
}

async fn one_run_holds_a_report_and_a_dead_one_is_replaced<S: ReportStore>(store: &S) {
    let ids = OrderIdGenerator::new();
    let asked = report(&ids, ReportKind::Orders, None);
    store.create_report(&asked).await.expect("create");
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());

    let claimed = store.claim_report(asked.id, first, 1000, at(1), at(-5)).await.expect("claim");
    let Claim::Claimed(running) = claimed else { panic!("expected a claim, got {claimed:?}") };
    assert_eq!(
        (running.status, running.rows_estimated, running.rows_done),
        (ReportStatus::Running, Some(1000), 0)
    );
    assert!(store.report_progress(asked.id, first, 400, at(2)).await.expect("progress"));
    let read = store.get_report(asked.id).await.expect("read").expect("exists");
    assert_eq!((read.rows_done, read.percent()), (400, 40));

    // Alive (progress at 2 min, stale only before 1 min): a second run is turned away.
    let busy = store.claim_report(asked.id, second, 1000, at(3), at(1)).await.expect("claim");
    assert_eq!(busy, Claim::Busy);
    // Silent since 2 min, stale before 10: presumed dead, replaced from the first row.
    let taken = store.claim_report(asked.id, second, 1000, at(12), at(10)).await.expect("claim");
    let Claim::Claimed(restarted) = taken else { panic!("expected a claim, got {taken:?}") };
    assert_eq!(restarted.rows_done, 0, "a new run starts over");

    // The replaced run can write nothing any more; the new one finishes.
    assert!(!store.report_progress(asked.id, first, 900, at(13)).await.expect("progress"));
    assert!(
        !store.finish_report(asked.id, first, 1000, 5, (at(13), at(100))).await.expect("finish")
    );
    assert!(!store.fail_report(asked.id, first, "late", at(13)).await.expect("fail"));
    assert!(
        store.finish_report(asked.id, second, 998, 12_345, (at(14), at(74))).await.expect("finish")
    );
    let done = store.get_report(asked.id).await.expect("read").expect("exists");
    assert_eq!(
        (done.status, done.rows_done, done.size_bytes, done.finished_at, done.expires_at),
        (ReportStatus::Done, 998, Some(12_345), Some(at(14)), Some(at(74)))
    );
    assert_eq!(done.percent(), 100);

    // Done is done: no run takes it again, however old.
    let again =
        store.claim_report(asked.id, Uuid::now_v7(), 1, at(500), at(499)).await.expect("claim");
    assert_eq!(again, Claim::Finished(done));
    let missing = ReportId::from_uuid(ids.next_uuid(NOW));
    assert_eq!(
        store.claim_report(missing, first, 1, at(1), at(0)).await.expect("claim"),
        Claim::Missing
    );
}

async fn a_failed_report_keeps_its_error<S: ReportStore>(store: &S) {
    let ids = OrderIdGenerator::new();
    let asked = report(&ids, ReportKind::SalesBySku, None);
    store.create_report(&asked).await.expect("create");
    let token = Uuid::now_v7();
    assert!(matches!(
        store.claim_report(asked.id, token, 0, at(1), at(0)).await.expect("claim"),
        Claim::Claimed(_)
    ));
    assert!(store.fail_report(asked.id, token, "disk full: 报表", at(2)).await.expect("fail"));
    let failed = store.get_report(asked.id).await.expect("read").expect("exists");
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (ReportStatus::Failed, Some("disk full: 报表"))
    );
    assert!(matches!(
        store.claim_report(asked.id, token, 0, at(9), at(8)).await.expect("claim"),
        Claim::Finished(_)
    ));
}

async fn the_sweeper_and_the_expiry_find_their_reports<S: ReportStore>(store: &S) {
    // Far from the other checks' times, so only these rows fall in the windows below.
    let base = 10_000;
    let ids = OrderIdGenerator::new();
    let make = |minute: i64| {
        let mut r = report(&ids, ReportKind::Orders, None);
        r.created_at = at(base + minute);
        r
    };
    let (waiting, running, finished, fresh) = (make(0), make(1), make(2), make(30));
    for r in [&waiting, &running, &finished, &fresh] {
        store.create_report(r).await.expect("create");
    }
    let token = Uuid::now_v7();
    store.claim_report(running.id, token, 5, at(base + 3), at(base)).await.expect("claim");
    store.claim_report(finished.id, token, 5, at(base + 3), at(base)).await.expect("claim");
    store
        .finish_report(finished.id, token, 5, 10, (at(base + 4), at(base + 64)))
        .await
        .expect("finish");

    // Nothing touched since base+10, asked before base+20: the queued one and the silent run
    // (and the other checks' queued reports, older still).
    let ours = [waiting.id, running.id, finished.id, fresh.id];
    let mine =
        |all: Vec<ReportId>| all.into_iter().filter(|id| ours.contains(id)).collect::<Vec<_>>();
    // The run claimed at base+3 shows progress at base+11: alive, so not requeued.
    assert!(store.report_progress(running.id, token, 3, at(base + 11)).await.expect("progress"));
    let requeue = |stale: i64, asked: i64, now: i64| {
        store.requeue_stalled(at(base + stale), at(base + asked), at(base + now), 100)
    };
    let requeued = requeue(10, 20, 12).await.expect("requeue");
    assert_eq!(mine(requeued), vec![waiting.id], "not the live run, the done one or the fresh one");
    // Sent again once per stale window: touched at base+12, it is not stalled before then.
    assert!(mine(requeue(10, 20, 13).await.expect("requeue")).is_empty());
    // Later the run falls silent too: requeued, and then it can no longer write.
    let later = requeue(40, 50, 41).await.expect("requeue");
    assert_eq!(mine(later), vec![waiting.id, running.id, fresh.id], "in the order asked for");
    let back = store.get_report(running.id).await.expect("read").expect("exists");
    assert_eq!(back.status, ReportStatus::Queued);
    assert!(!store.report_progress(running.id, token, 4, at(base + 42)).await.expect("progress"));
    let rerun = store
        .claim_report(running.id, Uuid::now_v7(), 5, at(base + 43), at(base + 40))
        .await
        .expect("claim");
    assert!(matches!(rerun, Claim::Claimed(_)), "a requeued report is claimed at once: {rerun:?}");
    let one = store
        .requeue_stalled(at(base + 500), at(base + 500), at(base + 501), 1)
        .await
        .expect("requeue");
    assert_eq!(one.len(), 1, "at most the limit");

    let expired =
        |now| async move { mine(store.expired_reports(now, 100).await.expect("expired")) };
    assert!(expired(at(base + 63)).await.is_empty());
    assert_eq!(expired(at(base + 64)).await, vec![finished.id]);
    store.delete_report(finished.id).await.expect("delete");
    assert_eq!(store.get_report(finished.id).await.expect("read"), None);
    assert!(expired(at(base + 100)).await.is_empty());
}

async fn two_runs_claiming_at_once_one_wins<S: ReportStore>(store: Arc<S>) {
    let ids = OrderIdGenerator::new();
    for round in 0..8 {
        let asked = report(&ids, ReportKind::Orders, None);
        store.create_report(&asked).await.expect("create");
        let claims: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .claim_report(asked.id, Uuid::now_v7(), 1, at(1), at(0))
                        .await
                        .expect("claim")
                })
            })
            .collect();
        let mut won = 0;
        for claim in claims {
            match claim.await.expect("task") {
                Claim::Claimed(_) => won += 1,
                Claim::Busy => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one run holds the report");
    }
}

async fn orders_are_counted_by_creation_time<S: OrderStore + ReportStore>(store: &S) {
    // Twenty days after every other check's orders, so only these fall in the window.
    let day = 86_400_000;
    let start = UnixMillis(NOW.0 + 20 * day);
    let ids = OrderIdGenerator::new();
    store.upsert_product(&crate::contract::product_for_tests("rc1", 100)).await.expect("insert");
    let orders: Vec<_> = (0..5)
        .map(|i| {
            let mut a = crate::contract::accepted(&ids, &[("rc1", 1)], None);
            let created = UnixMillis(start.0 + i * day);
            a.order.id = ids.next(created);
            a.order.created_at = created;
            a
        })
        .collect();
    store.commit_orders(Arc::new(orders)).await.expect("commit");
    let count = |from: i64, to: i64| {
        store.count_orders(UnixMillis(start.0 + from * day), UnixMillis(start.0 + to * day))
    };
    assert_eq!(count(0, 5).await.expect("count"), 5);
    assert_eq!(count(1, 3).await.expect("count"), 2, "[from, to): day 3 not counted");
    assert_eq!(count(5, 9).await.expect("count"), 0);
}

/// The contract of a [`ReportFiles`] backend; `scratch` is a directory for the files to put.
pub async fn files_contract(files: &dyn ReportFiles, scratch: &std::path::Path) {
    let ids = OrderIdGenerator::new();
    let id = ReportId::from_uuid(ids.next_uuid(NOW));
    let write = |name: &str, bytes: &[u8]| {
        let path = scratch.join(name);
        std::fs::write(&path, bytes).expect("scratch file");
        path
    };
    let big: Vec<u8> = (0..FILE_CHUNK * 5 / 2).map(|i| (i % 251) as u8).collect();
    assert_eq!(files.put(id, &write("a", &big)).await.expect("put"), big.len() as u64);
    let mut read = Vec::new();
    let mut index = 0;
    while let Some(chunk) = files.chunk(id, index).await.expect("chunk") {
        assert!(chunk.len() <= FILE_CHUNK);
        read.extend(chunk);
        index += 1;
    }
    assert_eq!((index, read == big), (3, true), "three chunks, the file as it was");
    assert_eq!(files.chunk(id, 99).await.expect("chunk"), None);

    // A second put replaces the first whole: no chunk of the old file survives.
    assert_eq!(files.put(id, &write("b", "大闸蟹,3\r\n".as_bytes())).await.expect("put"), 13);
    assert_eq!(
        files.chunk(id, 0).await.expect("chunk").as_deref(),
        Some("大闸蟹,3\r\n".as_bytes())
    );
    assert_eq!(files.chunk(id, 1).await.expect("chunk"), None);

    files.remove(id).await.expect("remove");
    assert_eq!(files.chunk(id, 0).await.expect("chunk"), None);
    files.remove(id).await.expect("removing twice is no error");
}
