//! `bench compare` and `bench run --e2e` against the real binary. They live here rather than
//! in the bench crate because only this crate's tests know where the ordermill binary is.
//! Phases are kept tiny (1 s, 5 ms stubs, 4 connections): the assertions are about the
//! report's arithmetic and the outage's outcome, never about speed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::path::PathBuf;
use std::time::Duration;

use ordermill_bench::compare::{self, CompareArgs};
use ordermill_bench::run::report::{Settled, Summary};
use ordermill_bench::stubs::StubConfig;
use ordermill_bench::{Report, RunArgs, run};
use support::Node;

/// The invariants every summary keeps, whatever the load did.
fn assert_adds_up(name: &str, s: &Summary) {
    assert_eq!(s.responses.total(), s.requests, "{name}: {s:#?}");
    let o = &s.orders;
    assert_eq!(o.sent, o.created + o.conflict + o.rejected, "{name}: {s:#?}");
    assert_eq!(s.latency_ms.samples, s.responses.answered(), "{name}: {s:#?}");
    let l = &s.latency_ms;
    assert!(l.p50 <= l.p99 && l.p99 <= l.max, "{name}: {l:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_compare_adds_up_and_ordermill_rides_out_the_payment_outage() {
    let quick = Duration::from_millis(5);
    let args = CompareArgs {
        duration: Duration::from_secs(1),
        connections: 4,
        stubs: StubConfig {
            inventory_latency: quick,
            payment_latency: quick,
            notify_latency: quick,
            payment_fail_rate: 0.0,
        },
        outage: Duration::from_secs(1),
        skus: 10,
        e2e_sample: 20,
        outage_sample: 10,
        wait: Duration::from_secs(30),
        json: None,
        quiet: true,
    };
    let report = compare::run(args, PathBuf::from(env!("CARGO_BIN_EXE_ordermill"))).await.unwrap();

    let steady = &report.steady;
    let outage = &report.outage;
    for (name, summary) in [
        ("steady sync", &steady.sync),
        ("steady ordermill", &steady.ordermill),
        ("outage sync", &outage.sync),
        ("outage ordermill", &outage.ordermill),
    ] {
        assert_adds_up(name, summary);
    }

    // Steady: both designs accept orders, and ordermill's sampled orders get confirmed.
    assert!(steady.sync.responses.created > 0, "{:#?}", steady.sync);
    assert!(steady.ordermill.responses.created > 0, "{:#?}", steady.ordermill);
    let e2e = steady.ordermill_e2e.as_ref().expect("the steady phase measures e2e");
    assert!(e2e.sampled > 0, "{e2e:#?}");
    assert_eq!(e2e.confirmed + e2e.cancelled + e2e.not_final + e2e.unreadable, e2e.sampled);
    assert!(e2e.latency_ms.p50 <= e2e.latency_ms.p99);
    assert!(report.drain.drained, "{:#?}", report.drain);

    // Outage: the synchronous design fails every order, ordermill keeps accepting them.
    assert!(outage.sync.responses.errors() > 0, "{:#?}", outage.sync);
    assert_eq!(outage.sync.orders.created, 0, "{:#?}", outage.sync);
    assert!(outage.payment_refused_sync > 0);
    assert!(outage.ordermill.responses.created > 0, "{:#?}", outage.ordermill);
    assert_eq!(outage.ordermill.responses.errors(), 0, "{:#?}", outage.ordermill);

    // Catch-up: every sampled outage order is confirmed once payment is back.
    let catch_up = &outage.catch_up;
    assert!(catch_up.finished, "{catch_up:#?}");
    assert!(catch_up.secs.is_some());
    assert!(catch_up.orders.sampled > 0);
    assert_eq!(catch_up.orders.confirmed, catch_up.orders.sampled, "{catch_up:#?}");

    let text = report.to_string();
    for word in ["claimed (article)", "accept→confirmed", "payment outage", "catch-up"] {
        assert!(text.contains(word), "{word:?} missing from\n{text}");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outage"]["catch_up"]["finished"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_run_with_e2e_times_accepted_orders_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let args = RunArgs {
        target: format!("http://{}", node.addr),
        connections: 4,
        duration: Duration::from_secs(1),
        skus: 10,
        hot_skus: 2,
        setup: true,
        merchant_token: Some(support::MERCHANT_TOKEN.to_owned()),
        e2e: true,
        e2e_sample: 50,
        e2e_wait: Duration::from_secs(30),
        quiet: true,
        ..RunArgs::default()
    };
    let report = run(args).await.unwrap();
    assert!(report.run.orders.created > 0, "{:#?}", report.run);
    let e2e = report.e2e.as_ref().expect("an e2e section with --e2e");
    assert!(e2e.sampled > 0 && e2e.sampled <= 50, "{e2e:#?}");
    assert_eq!(e2e.confirmed + e2e.cancelled + e2e.not_final + e2e.unreadable, e2e.sampled);
    assert!(e2e.confirmed > 0, "{e2e:#?}");
    let l = e2e.latency_ms;
    assert_eq!(l.samples, e2e.confirmed);
    assert!(l.p50 <= l.p99 && l.p99 <= l.max, "{l:#?}");
    drop(node);
}

/// `--reference` loads the reference only once the target's queues are empty: a reference
/// loaded while `serve`'s consumers still drain the main run's backlog shares the cores with
/// them, and the ratio flatters ordermill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_run_loads_the_reference_once_the_targets_queues_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ceiling = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, ordermill_bench::ceiling::router()).await });
    let args = RunArgs {
        target: format!("http://{}", node.addr),
        reference: Some(format!("http://{ceiling}")),
        connections: 8,
        duration: Duration::from_secs(1),
        skus: 10,
        hot_skus: 2,
        setup: true,
        merchant_token: Some(support::MERCHANT_TOKEN.to_owned()),
        quiet: true,
        ..RunArgs::default()
    };
    let report = run(args).await.unwrap();
    assert!(report.run.orders.created > 0, "{:#?}", report.run);
    let comparison = report.reference.as_ref().expect("a reference section");
    assert!(
        matches!(comparison.target_settled, Settled::Drained { .. }),
        "{:?}",
        comparison.target_settled
    );
    assert!(report.to_string().contains("loaded once the target's queues were empty"));
    drop(node);
}

/// The report says where the target's time went during the load — `serve`'s own stages and
/// each consumer's, counted over that load alone (a second run's counts are its own, not the
/// node's since it started) — and names a `--metrics` node that did not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_run_reports_the_targets_stages_over_the_load_alone() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let target = format!("http://{}", node.addr);
    let args = |setup: bool, duration: Duration| RunArgs {
        target: target.clone(),
        connections: 4,
        duration,
        skus: 10,
        hot_skus: 2,
        setup,
        merchant_token: Some(support::MERCHANT_TOKEN.to_owned()),
        quiet: true,
        ..RunArgs::default()
    };
    let stage = |report: &Report, queue: &str, name: &str| {
        let found = report.stages.timings.iter().find(|t| t.queue == queue && t.stage == name);
        found.cloned().unwrap_or_else(|| panic!("no {queue}/{name} in {:#?}", report.stages))
    };
    // Each single order is one reservation; those still in flight when the load stopped may
    // or may not have been counted.
    let reserved_per_order = |report: &Report| {
        let reserve = stage(report, "", "reserve");
        let (created, sent) = (report.run.orders.created, report.run.orders.sent);
        assert!(
            reserve.count >= created && reserve.count <= sent + 4,
            "{reserve:?} against {:#?}",
            report.run.orders
        );
        assert!(reserve.mean_ms > 0.0, "{reserve:?}");
    };

    let first = run(args(true, Duration::from_secs(1))).await.unwrap();
    assert!(first.run.orders.created > 100, "{:#?}", first.run);
    reserved_per_order(&first);
    let commit = stage(&first, "", "commit");
    assert!((1..=first.run.orders.created).contains(&commit.count), "{commit:?}");
    assert!(commit.mean_ms > 0.0, "{commit:?}");
    stage(&first, "inventory", "effects");
    assert!(first.stages.unread.is_empty(), "{:?}", first.stages.unread);
    let text = first.to_string();
    assert!(text.contains("stages") && text.contains("inventory/effects"), "{text}");
    let json = serde_json::to_value(&first).unwrap();
    assert!(json["stages"]["timings"].as_array().is_some_and(|t| !t.is_empty()), "{json}");

    let second = run(args(false, Duration::from_millis(500))).await.unwrap();
    reserved_per_order(&second);

    let gone = "http://127.0.0.1:1".to_owned();
    let named =
        RunArgs { metrics: vec![target.clone(), gone], ..args(false, Duration::from_millis(300)) };
    let third = run(named).await.unwrap();
    reserved_per_order(&third);
    assert_eq!(third.stages.unread.len(), 1, "{:?}", third.stages.unread);
    assert!(third.stages.unread[0].starts_with("http://127.0.0.1:1: "), "{:?}", third.stages);
    assert!(third.to_string().contains("not read from http://127.0.0.1:1"));
    drop(node);
}
