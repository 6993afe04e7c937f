//! A scaled-out deployment (`ordermill migrate`, one `api`, one `worker`) whose every
//! PostgreSQL connection goes over TLS, checked against a private CA named in the store URL
//! (`sslmode=verify-full&sslrootcert=PATH`), as with a managed database. The server behind is
//! the real one, reached through a TLS front this test owns (a CA made for the run); the front
//! speaks only TLS, so a connection that did not ask for it would fail.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::proxy::{through, upstream_of};
use support::scaled::{Deployment, Load, Services, wait_ready};

const SKU: &str = "mooncake";
const STOCK: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_on_postgres_over_verified_tls_takes_and_confirms_orders() {
    let Some(mut services) = Services::from_env() else { return };
    let ca = ordermill_tls_testkit::TestCa::new();
    let upstream = upstream_of(&services.postgres, 5432).await;
    let (port, relayed) = ca.front_postgres(upstream.to_string()).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let front = through(&services.postgres, ([127, 0, 0, 1], port).into());
    let separator = if front.contains('?') { '&' } else { '?' };
    services.postgres =
        format!("{front}{separator}sslmode=verify-full&sslrootcert={}", ca_file.display());

    let (deployment, api, worker) = Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");
    wait_ready(&worker.url("/readyz"), Duration::from_secs(10)).await;
    let load = Load::start(&base, 4, SKU, &deployment.id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    assert!(!report.accepted.is_empty(), "orders were taken: {:?}", report.statuses);
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    // migrate, the api's pool and the worker's: each opened its own sessions through TLS.
    assert!(
        relayed.load(Ordering::Relaxed) >= 3,
        "{} TLS sessions",
        relayed.load(Ordering::Relaxed)
    );
    // sslmode=require encrypts and checks nothing: it works, and says so as it starts.
    let out = deployment
        .command(&["migrate"])
        .env("ORDERMILL_STORE", format!("{front}{separator}sslmode=require"))
        .output()
        .unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("does not check the PostgreSQL server's certificate"), "{said}");
    for node in [&api, &worker] {
        let warnings = node.warnings();
        assert!(
            !warnings.iter().any(|w| w.contains("sslmode")),
            "verify-full checks the certificate, nothing to warn about: {warnings:?}"
        );
    }
}
