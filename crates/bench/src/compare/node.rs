//! `ordermill serve` as a child process of `bench compare`: a fresh temporary data dir, port 0,
//! payment and notifications pointed at the stubs, and a kill when the handle is dropped, so
//! that no error path (or panic) can leave a server running.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;

use super::CompareError;

// A debug build on a busy machine starts in well under a second; this is a hang, not a start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
// Output lines kept to explain a failed start.
const TAIL_LINES: usize = 40;
// The only line ordermill logs at info under the filter below: the one that gives its port.
const LOG_FILTER: &str = "error,ordermill_server::startup::app=info";
const SERVING: &str = "ordermill is serving.";

/// How the child is configured, beyond its defaults.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    /// The HTTP payment gateway's URL (the stubs' `/payment`).
    pub payment_url: String,
    /// The webhook notifier's URL (the stubs' `/notify`).
    pub notify_url: String,
    /// Per-call timeout of the gateway and the webhook.
    pub call_timeout: Duration,
    /// `workers.max_attempts`: deliveries of a message before it is dead-lettered.
    pub max_attempts: u32,
}

/// The last lines the child wrote, stdout and stderr interleaved.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// A child process, killed (SIGKILL) and reaped when dropped. ordermill loses nothing it
/// answered 201 to on a kill, and its data dir is thrown away anyway.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // Either can only fail when the child is already gone, which is what we want.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `ordermill serve`.
pub(crate) struct Node {
    // Dropped before `_dir`: the process dies before its data dir is removed.
    process: Process,
    _dir: tempfile::TempDir,
    /// Where it serves.
    pub addr: SocketAddr,
    admin_token: String,
    /// What its catalog writes need.
    pub(crate) merchant_token: String,
    tail: Tail,
}

/// What the bus still holds, over all queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backlog {
    /// Ready, delayed (awaiting a retry) and in-flight messages.
    pub pending: u64,
    /// Dead letters.
    pub dead: u64,
}

#[derive(Deserialize)]
struct Queues {
    queues: Vec<Depth>,
}

#[derive(Deserialize)]
struct Depth {
    ready: u64,
    delayed: u64,
    in_flight: u64,
    dead: u64,
}

fn keep(tail: &Tail, line: String) {
    if let Ok(mut lines) = tail.lock() {
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

fn show(tail: &Tail) -> String {
    let lines = tail.lock().map(|lines| lines.iter().cloned().collect::<Vec<_>>());
    match lines {
        Ok(lines) if !lines.is_empty() => format!("; its last output:\n{}", lines.join("\n")),
        _ => String::new(),
    }
}

/// The listen address in one of ordermill's JSON log lines, if it is the "serving" line.
fn serving_addr(line: &str) -> Option<SocketAddr> {
    #[derive(Deserialize)]
    struct Log {
        message: String,
        listen: Option<String>,
    }
    let log: Log = serde_json::from_str(line).ok()?;
    if log.message != SERVING {
        return None;
    }
    log.listen?.parse().ok()
}

/// Reads the child's stdout to its end on a thread of its own (the pipe must keep draining or
/// the child blocks on a full pipe), sends the address of the "serving" line, keeps the tail.
fn watch_stdout(stdout: impl Read + Send + 'static, tail: Tail) -> oneshot::Receiver<SocketAddr> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = serving_addr(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr);
            }
            keep(&tail, line);
        }
    });
    rx
}

fn watch_stderr(stderr: impl Read + Send + 'static, tail: Tail) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            keep(&tail, line);
        }
    });
}

/// Starts `exe serve` on 127.0.0.1 port 0 with a fresh data dir and waits until it serves.
///
/// The child's configuration is fixed here: its own empty config file (so an `ordermill.toml`
/// in the current directory does not apply), no inherited `ORDERMILL_*` or `RUST_LOG`
/// variables, and the settings below.
///
/// # Errors
/// [`CompareError::Io`] when the data dir cannot be made, [`CompareError::Spawn`] when the
/// executable cannot be started, [`CompareError::NotServing`] when it exits or hangs before
/// serving.
pub(crate) async fn start(exe: &Path, settings: &NodeSettings) -> Result<Node, CompareError> {
    let io = |what: &'static str| move |source| CompareError::Io { what, source };
    let dir = tempfile::Builder::new()
        .prefix("ordermill-compare-")
        .tempdir()
        .map_err(io("create a temporary data dir"))?;
    let config = dir.path().join("compare.toml");
    std::fs::write(&config, "# bench compare sets everything through the environment.\n")
        .map_err(io("write the child's config file"))?;
    let admin_token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let merchant_token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let call_timeout = format!("{}ms", settings.call_timeout.as_millis());
    // A batch of calls runs concurrently; it must have time for one call and its retry.
    let message_timeout = (settings.call_timeout * 2).max(Duration::from_secs(10));

    let mut command = Command::new(exe);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ORDERMILL_") || key == OsStr::new("RUST_LOG") {
            command.env_remove(key);
        }
    }
    command
        .env("ORDERMILL_LOG_FILTER", LOG_FILTER)
        .env("ORDERMILL_ADMIN_TOKEN", &admin_token)
        .env("ORDERMILL_MERCHANT_TOKEN", &merchant_token)
        // The comparison is of designs under a payment outage, not of shedding: a debug build
        // on a loaded machine can queue a commit past the 100 ms default and answer 503.
        .env("ORDERMILL_HTTP__MAX_QUEUE_WAIT", "5s")
        .env("ORDERMILL_PAYMENT__GATEWAY", "http")
        .env("ORDERMILL_PAYMENT__URL", &settings.payment_url)
        .env("ORDERMILL_PAYMENT__TIMEOUT", &call_timeout)
        .env("ORDERMILL_NOTIFY__NOTIFIER", "webhook")
        .env("ORDERMILL_NOTIFY__URL", &settings.notify_url)
        .env("ORDERMILL_NOTIFY__TIMEOUT", &call_timeout)
        .env("ORDERMILL_WORKERS__MAX_ATTEMPTS", settings.max_attempts.to_string())
        .env("ORDERMILL_WORKERS__MESSAGE_TIMEOUT", format!("{}ms", message_timeout.as_millis()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|source| CompareError::Spawn { exe: PathBuf::from(exe), source })?;
    let tail: Tail = Arc::default();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut process = Process(child);
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        return Err(CompareError::NotServing {
            reason: "its output pipes were not set up".to_owned(),
            output: String::new(),
        });
    };
    let serving = watch_stdout(stdout, tail.clone());
    watch_stderr(stderr, tail.clone());

    let addr = match tokio::time::timeout(START_TIMEOUT, serving).await {
        Ok(Ok(addr)) => addr,
        Ok(Err(_)) => {
            // stdout closed without the line: the child exited. Give the stderr thread a moment
            // to collect the reason it printed.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let status = process.0.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(CompareError::NotServing {
                reason: format!("it exited ({status})"),
                output: show(&tail),
            });
        }
        Err(_) => {
            return Err(CompareError::NotServing {
                reason: format!("no \"{SERVING}\" log line within {}s", START_TIMEOUT.as_secs()),
                output: show(&tail),
            });
        }
    };
    Ok(Node { process, _dir: dir, addr, admin_token, merchant_token, tail })
}

impl Node {
    /// Its base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the child is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.process.0.try_wait(), Ok(None))
    }

    /// Its last lines of output, for an error message.
    pub(crate) fn output(&self) -> String {
        show(&self.tail)
    }

    /// What its bus still holds, from `GET /admin/queues`.
    ///
    /// # Errors
    /// A description of the failed request.
    pub(crate) async fn backlog(&self, client: &reqwest::Client) -> Result<Backlog, String> {
        let url = format!("{}/admin/queues", self.url());
        let response = client
            .get(&url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        let queues: Queues = response.json().await.map_err(|e| format!("GET {url}: {e}"))?;
        Ok(queues.queues.iter().fold(Backlog::default(), |sum, q| Backlog {
            pending: sum.pending + q.ready + q.delayed + q.in_flight,
            dead: sum.dead + q.dead,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_gives_the_address_and_other_lines_do_not() {
        let line = r#"{"timestamp":"x","level":"INFO","message":"ordermill is serving.","listen":"127.0.0.1:4321","data_dir":"/tmp/d"}"#;
        assert_eq!(serving_addr(line), Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(serving_addr(r#"{"message":"ordermill stopped cleanly."}"#), None);
        assert_eq!(serving_addr("ordermill: invalid configuration"), None);
    }

    fn settings() -> NodeSettings {
        NodeSettings {
            payment_url: "http://127.0.0.1:1/payment".to_owned(),
            notify_url: "http://127.0.0.1:1/notify".to_owned(),
            call_timeout: Duration::from_secs(2),
            max_attempts: 30,
        }
    }

    #[tokio::test]
    async fn an_executable_that_does_not_exist_is_named_in_the_error() {
        let exe = Path::new("/nonexistent/ordermill");
        let error = start(exe, &settings()).await.err().unwrap();
        assert!(matches!(error, CompareError::Spawn { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/ordermill"), "{error}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_child_that_exits_before_serving_is_reported_with_its_exit() {
        let error = start(Path::new("/bin/false"), &settings()).await.err().unwrap();
        assert!(matches!(error, CompareError::NotServing { .. }), "{error:?}");
        assert!(error.to_string().contains("it exited"), "{error}");
    }

    #[test]
    fn the_tail_keeps_only_the_last_lines() {
        let tail: Tail = Arc::default();
        for i in 0..100 {
            keep(&tail, i.to_string());
        }
        let shown = show(&tail);
        assert!(shown.ends_with("\n99"), "{shown}");
        assert!(!shown.contains("\n59\n"), "{shown}");
        assert_eq!(show(&Arc::default()), "");
    }
}
