//! PostgreSQL restarts (`pg_ctlcluster ... restart`) under order load, with one `ordermill api`
//! and one `ordermill worker` on it. Nothing restarts ordermill: while the database is down
//! intake answers 503 (nothing is written, nothing held), consumers hold their messages without
//! spending attempts, both processes reconnect by themselves, every order answered 201 ends
//! confirmed, every effect happened once, nothing is dead-lettered, and the hot-stock count is
//! exactly the store's `stock − reserved` afterwards (an order whose commit reply was lost is
//! neither sold twice nor stranded).
//!
//! A test binary of its own ON PURPOSE (see broker_restart.rs): cargo runs test binaries one
//! after another, so while this one restarts the database no other test is using it.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL, ORDERMILL_TEST_REDIS_URL and
//! `pg_ctlcluster` for the database they point at; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::scaled::{Deployment, Load, Services};

const SKU: &str = "mooncake";
const STOCK: i64 = 100_000;

/// The local cluster's version (`/etc/postgresql/<version>/main`).
fn cluster_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
}

/// Runs `pg_ctlcluster <version> main <action>` and asserts it succeeded.
fn pg_ctl(version: &str, action: &str) {
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctlcluster {version} main {action} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the cluster again when dropped, so a failing test never leaves PostgreSQL down.
struct DatabaseGuard(String);

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.0, "main", "start"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_load_loses_no_order_and_repeats_no_effect() {
    let Some(services) = Services::from_env() else { return };
    let version = match cluster_version() {
        Some(version) if Command::new("pg_ctlcluster").arg("--help").output().is_ok() => version,
        _ => {
            assert!(
                std::env::var("ORDERMILL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "pg_ctlcluster or /etc/postgresql is missing but ORDERMILL_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping: no local PostgreSQL cluster to restart");
            return;
        }
    };
    let (deployment, mut api, mut worker) =
        Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let (seed, before) = load.until_a_seeded_moment().await;
    let guard = DatabaseGuard(version.clone());
    let restart = Instant::now();
    pg_ctl(&version, "restart");
    drop(guard);
    let restarted_in = restart.elapsed();
    load.assert_selling_again(seed).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    eprintln!(
        "seed {seed}: {before} accepted before the restart ({restarted_in:.1?}), {} in all; \
         answers {:?}; {} without an answer; samples {:?}",
        report.accepted.len(),
        report.statuses,
        report.transport_errors,
        report.samples
    );
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}
