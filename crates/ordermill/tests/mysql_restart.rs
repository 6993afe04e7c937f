//! MySQL (MariaDB) restarts under order load, with one `ordermill api` and one `ordermill
//! worker` on it — tests/postgres_restart.rs for the third store. Nothing restarts ordermill:
//! while the database is down intake answers 503 (nothing written, nothing held), consumers
//! hold their messages without spending attempts, both processes reconnect by themselves,
//! every order answered 201 ends confirmed, every effect happened once, nothing is
//! dead-lettered, and the hot-stock count is exactly the store's `stock − reserved` afterwards.
//!
//! A test binary of its own ON PURPOSE: cargo runs test binaries one after another, so while
//! this one restarts the database no other test is using it.
//!
//! The server is stopped with `mysqladmin shutdown` (a clean shutdown, as a restart does) and
//! started again as `mariadbd --user=mysql`, detached; a guard starts it if the test fails in
//! between, so the shared engine is left running either way. Needs ORDERMILL_TEST_MYSQL_URL
//! pointing at the local server and `mysqladmin`; skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::scaled::Services;

const SKU: &str = "zongzi";
const STOCK: i64 = 100_000;
const SERVER: &str = "/usr/sbin/mariadbd";

fn port_open() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:3306".parse().unwrap(), Duration::from_secs(1))
        .is_ok()
}

/// Starts the server (detached: it outlives this test) and waits for its port.
fn start_server() {
    if port_open() {
        return;
    }
    let _ = std::fs::create_dir_all("/run/mysqld");
    let _ = Command::new("chown").args(["mysql:mysql", "/run/mysqld"]).status();
    // `setsid --fork` returns at once, leaving the server in a session of its own.
    let started = Command::new("setsid")
        .args(["--fork", SERVER, "--user=mysql"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(started.success(), "setsid --fork {SERVER} failed");
    let until = Instant::now() + Duration::from_secs(60);
    while !port_open() {
        assert!(Instant::now() < until, "mariadbd did not listen on 3306 within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the server again when dropped, so a failing test never leaves MySQL down.
struct ServerGuard;

impl Drop for ServerGuard {
    fn drop(&mut self) {
        start_server();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_restart_mid_load_loses_no_order_and_repeats_no_effect() {
    let Some(services) = Services::from_env_mysql() else { return };
    let local = services.mysql.as_deref().is_some_and(|u| u.contains("@127.0.0.1:3306/"));
    if !local || !std::path::Path::new(SERVER).exists() {
        assert!(
            std::env::var("ORDERMILL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "no local MariaDB at 127.0.0.1:3306 to restart but ORDERMILL_TEST_REQUIRE_SERVICES=1"
        );
        eprintln!("skipping: no local MariaDB server to restart");
        return;
    }
    support::scaled::database_restart_under_load(services, SKU, STOCK, || {
        let guard = ServerGuard;
        let stopped = Command::new("mysqladmin").args(["-uroot", "shutdown"]).output().unwrap();
        assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
        let until = Instant::now() + Duration::from_secs(30);
        while port_open() {
            assert!(Instant::now() < until, "mariadbd still listening 30 s after shutdown");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Down for a moment under load: intake answers 503 meanwhile.
        std::thread::sleep(Duration::from_millis(500));
        start_server();
        drop(guard);
    })
    .await;
}
