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

use support::scaled::Services;

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
    support::scaled::database_restart_under_load(services, SKU, STOCK, || {
        let guard = DatabaseGuard(version.clone());
        pg_ctl(&version, "restart");
        drop(guard);
    })
    .await;
}
