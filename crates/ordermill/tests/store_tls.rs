//! Scaled-out deployments (`ordermill migrate`, one `api`, one `worker`) whose every store
//! connection goes over TLS, checked against a private CA named in the store URL, as with a
//! managed database:
//! - PostgreSQL (`sslmode=verify-full&sslrootcert=PATH`): the real shared server, reached
//!   through a TLS front this test owns (a CA made for the run); the front speaks only TLS, so
//!   a connection that did not ask for it would fail;
//! - MySQL (`ssl-mode=VERIFY_IDENTITY&ssl-ca=PATH`): a MariaDB of the test's own that ends TLS
//!   itself and takes no connection without it (MySQL asks for TLS inside its handshake, after
//!   the server's greeting, so no front can stand before the shared server).
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL (or ORDERMILL_TEST_MYSQL_URL and MariaDB's binaries),
//! ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL; skips with the reason otherwise.

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
    let ca_file = ca.pem_file();
    let front = through(&services.postgres, ([127, 0, 0, 1], port).into());
    let separator = if front.contains('?') { '&' } else { '?' };
    services.postgres =
        format!("{front}{separator}sslmode=verify-full&sslrootcert={}", ca_file.display());

    let deployment = sells_and_confirms(services).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_on_mysql_over_verified_tls_takes_and_confirms_orders() {
    let Some(mut services) = Services::from_env_mysql() else { return };
    let ca = ordermill_tls_testkit::TestCa::new();
    let ca_file = ca.pem_file();
    // Bound before the deployment: it stops after the deployment dropped its database.
    let server = ordermill_tls_testkit::mariadb::TlsMariadb::spawn(ca).await;
    services.mysql =
        Some(format!("{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", server.url(), ca_file.display()));
    sells_and_confirms(services).await;
}

/// A migrated deployment of one api and one worker on `services`, under order load for 2 s:
/// orders taken, nothing lost, and no warning about TLS (the modes used check the
/// certificate). Returned for more checks; its nodes are stopped.
async fn sells_and_confirms(services: Services) -> Deployment {
    let (deployment, api, worker) = Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");
    wait_ready(&worker.url("/readyz"), Duration::from_secs(10)).await;
    let load = Load::start(&base, 4, SKU, &deployment.id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    assert!(!report.accepted.is_empty(), "orders were taken: {:?}", report.statuses);
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    for node in [&api, &worker] {
        let warnings = node.warnings();
        assert!(
            !warnings.iter().any(|w| w.contains("does not check")),
            "a checked TLS mode drew a warning: {warnings:?}"
        );
    }
    deployment
}
