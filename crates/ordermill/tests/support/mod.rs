//! A real `ordermill serve` process for the binary's tests: started on port 0 with a data
//! dir and extra environment, its address read from its "serving" log line, killed on drop.
//! `scaled` starts the scaled-out deployment (migrate, api, worker, nginx) on the real services;
//! `proxy` stands between one node and an engine, to cut that node off alone.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; a panic is the failure report

pub mod kill;
pub mod proxy;
pub mod scaled;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A node's log, line by line.
pub type LogLines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// A running node.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its "ordermill is serving." log line.
    pub serving: Value,
}

impl Drop for Node {
    // A failing test must not leave a server running (it would hold the test's pipes open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The merchant token every test node accepts (catalog writes send it).
pub const MERCHANT_TOKEN: &str = "test-merchant-token";
/// The admin token of scaled-out deployments' nodes.
pub const ADMIN_TOKEN: &str = "test-admin-token";

impl Node {
    /// Starts `ordermill serve` on `dir` with `env` set, and waits until it serves.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Node {
        let (node, lines) = Node::start_unread(dir, env);
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        node
    }

    /// [`Node::start`], but its log (stdout) is left to the caller: unread, the pipe fills.
    pub fn start_unread(dir: &Path, env: &[(&str, &str)]) -> (Node, LogLines) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordermill"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            // Thread counts come from the settings under test, not the runner's environment.
            .env_remove("TOKIO_WORKER_THREADS")
            .env("ORDERMILL_MERCHANT_TOKEN", MERCHANT_TOKEN)
            // Correctness under load, not shedding: a loaded debug build may queue longer.
            .env("ORDERMILL_HTTP__MAX_QUEUE_WAIT", "10s")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the ordermill binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let serving = loop {
            assert!(Instant::now() < deadline, "no 'serving' log line within 30 s");
            let line = lines.next().expect("server exited before serving").unwrap();
            let Ok(log) = serde_json::from_str::<Value>(&line) else { continue };
            if log["message"] == "ordermill is serving." {
                break log;
            }
        };
        let addr = serving["listen"].as_str().unwrap().parse().unwrap();
        (Node { child, addr, serving }, lines)
    }

    /// Creates or replaces a product, as a merchant: `PUT /api/products/{sku}` with `body`.
    pub async fn put_product(
        &self,
        client: &reqwest::Client,
        sku: &str,
        body: Value,
    ) -> reqwest::Response {
        client
            .put(self.url(&format!("/api/products/{sku}")))
            .bearer_auth(MERCHANT_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Places an order of `quantity` × `sku` as `customer`: `POST /api/orders`, asserting the
    /// 201. Returns the order's id.
    pub async fn order(
        &self,
        client: &reqwest::Client,
        customer: &str,
        sku: &str,
        quantity: u32,
    ) -> String {
        let reply = client
            .post(self.url("/api/orders"))
            .json(&serde_json::json!({
                "customer_id": customer,
                "items": [{"sku": sku, "quantity": quantity}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201, "{customer}'s order");
        let order: Value = reply.json().await.unwrap();
        order["order_id"].as_str().unwrap().to_owned()
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops it with SIGTERM and asserts a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    }
}

/// Where libfaketime is, to preload into a process whose wall clock a test sets.
pub fn libfaketime() -> String {
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
        .iter()
        .map(|dir| format!("{dir}/faketime/libfaketime.so.1"))
        .find(|path| Path::new(path).exists())
        .expect("libfaketime is installed (apt-get install faketime; .ci/services.sh does)")
}

/// `GET url` with `Authorization: Bearer token`, its body as JSON.
pub async fn get_json(client: &reqwest::Client, url: String, token: &str) -> Value {
    client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Reads one HTTP/1.1 request from `stream`: its head (request line and headers) and its body
/// (`Content-Length` bytes), for the stub services tests stand up. `None` when the peer closes
/// or fails before a whole head arrived.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<(String, String)> {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_start = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_string();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => request.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    Some((head, String::from_utf8_lossy(&request[body_start..]).to_string()))
}
