//! The command line: help that teaches, the example config parses, and bad config is refused
//! with a message naming the problem.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

fn ordermill(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ordermill")).args(args).output().unwrap()
}

#[test]
fn the_example_config_parses_and_round_trips() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/ordermill.toml");
    let out = ordermill(&["config", "--config", path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("data_dir = \"/var/lib/ordermill\""), "{text}");
    assert!(text.contains("queue = \"inventory\""), "{text}");
}

#[test]
fn a_typo_in_the_config_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordermill.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\nmax_backlogg = 5\n").unwrap();
    let out = ordermill(&["config", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_backlogg"), "{err}");
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["config", "--listen", "127.0.0.1:9999"])
        .env("ORDERMILL_LISTEN", "127.0.0.1:7777")
        .env("ORDERMILL_WORKERS__MAX_ATTEMPTS", "9")
        .env("ORDERMILL_TEST_POSTGRES_URL", "postgres://ignored")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("max_attempts = 9"), "{text}");
}

#[test]
fn help_lists_every_command_with_an_example() {
    let out = ordermill(&["--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "config", "dlq", "bench", "migrate", "maintain"] {
        assert!(text.contains(command), "{command} missing from --help:\n{text}");
    }
    let serve = String::from_utf8(ordermill(&["serve", "--help"]).stdout).unwrap();
    assert!(serve.contains("Example: ordermill serve"), "{serve}");
}

#[test]
fn the_scaled_out_example_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/ordermill-scaled.toml");
    let out = ordermill(&["config", "--config", path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[redis]"), "{text}");
    assert!(!text.contains("secret@"), "passwords are masked:\n{text}");
}

#[test]
fn the_webhook_secret_is_read_from_the_environment_and_never_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["config"])
        .env("ORDERMILL_NOTIFY__WEBHOOK_SECRET", "whsec-do-not-print")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("webhook_secret = \"***\""), "{text}");
    assert!(!text.contains("whsec-do-not-print"), "{text}");
}

#[test]
fn pay_later_is_set_from_the_environment_and_its_secret_never_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["config"])
        .env("ORDERMILL_PAYMENT__MODE", "await_callback")
        .env("ORDERMILL_PAYMENT__CALLBACK_SECRET", "cbsec-do-not-print")
        .env("ORDERMILL_PAYMENT__PAY_WITHIN", "3s")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("mode = \"await_callback\""), "{text}");
    assert!(text.contains("pay_within = \"3s\""), "{text}");
    assert!(text.contains("callback_secret = \"***\""), "{text}");
    assert!(!text.contains("cbsec-do-not-print"), "{text}");

    let refused = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["config"])
        .env("ORDERMILL_PAYMENT__MODE", "await_callback")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "pay later without a callback secret is refused");
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("ORDERMILL_PAYMENT__CALLBACK_SECRET"), "{error}");
}

#[test]
fn each_command_takes_only_the_flags_that_apply_to_it() {
    for args in [
        &["migrate", "--listen", "127.0.0.1:1"][..],
        &["worker", "--data-dir", "/tmp/x"][..],
        &["worker", "--listen", "127.0.0.1:1"][..],
        &["api", "--data-dir", "/tmp/x"][..],
    ] {
        let out = ordermill(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unexpected argument"), "{args:?}: {err}");
    }
}

#[test]
fn a_renamed_environment_variable_is_refused_naming_the_new_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["config"])
        .env("ORDERMILL_CACHE_PREFIX", "shop")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ORDERMILL_REDIS__KEY_PREFIX"), "{err}");
}

#[test]
fn api_and_worker_refuse_a_node_local_stock_cache_and_say_why() {
    for command in ["api", "worker"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
            .args([command, "--store", "postgres://127.0.0.1:1/x", "--bus", "amqp://127.0.0.1:1"])
            .env_remove("ORDERMILL_CACHE")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command} started with a local cache");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("each node would sell the full stock"), "{command}: {err}");
        assert!(err.contains("cache = redis://"), "{command}: {err}");
    }
}

#[test]
fn a_node_started_before_its_engines_waits_for_them_answering_probes_and_stops_cleanly() {
    for (command, port_flag, port_field) in
        [("api", "--listen", "listen"), ("worker", "--metrics-listen", "metrics")]
    {
        waits_answering_probes(command, port_flag, port_field);
    }
}

fn waits_answering_probes(command: &str, port_flag: &str, port_field: &str) {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    // Nothing listens on port 1: the engines are "not up yet".
    let mut node = KilledOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ordermill"))
            .args([command, "--log-format", "json", port_flag, "127.0.0.1:0"])
            .args(["--store", "postgres://127.0.0.1:1/x", "--bus", "amqp://127.0.0.1:1"])
            .args(["--cache", "redis://127.0.0.1:1"])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut node.0;
    let stdout = child.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut waits, mut port) = (0, None);
    while waits < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = seen.recv_timeout(left).expect("two 'waiting' log lines within 20 s");
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
        if entry["message"] == "Answering probes while waiting for the engines." {
            port = Some(entry[port_field].as_str().unwrap().to_owned());
        }
        if entry["message"] == "Waiting for an engine to be reachable before starting." {
            assert!(line.contains("retry_in_ms"), "{line}");
            assert_eq!(entry["engine"], "store", "{line}");
            waits += 1;
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "the {command} waits instead of exiting");
    let port = port.expect("the port it answers on is logged before it waits");
    let alive = http_get(&port, "/healthz");
    assert!(alive.starts_with("HTTP/1.1 200"), "{command}: {alive}");
    assert!(alive.contains(r#""status":"starting""#), "{command}: {alive}");
    let ready = http_get(&port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 503"), "{command}: {ready}");
    assert!(ready.contains(r#""code":"not_ready""#) && ready.contains("`store`"), "{ready}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop a waiting {command}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a stop while waiting is clean: {status:?}");
}

/// A node a failed assertion does not leave running (it would hold the test's output open).
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whole answer to `GET path` at `addr`, head and body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn an_embedded_retention_under_two_days_is_refused_with_its_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["config"])
        .env("ORDERMILL_SQLITE__PROCESSED_RETENTION", "1h")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sqlite.processed_retention must be at least \"2days\""), "{err}");
}
