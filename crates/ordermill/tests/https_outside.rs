//! Payment gateways and webhooks over `https://`: a stub serves both over TLS with a
//! certificate for 127.0.0.1 signed by a CA made for the test. A node given that CA in
//! `payment.ca_file` / `notify.ca_file` charges and notifies through it; a node without it
//! refuses the certificate, sends nothing (no charge crosses an unverified connection),
//! retries, dead-letters, and says which setting would fix it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordermill_tls_testkit::TlsAcceptor;
use serde_json::{Value, json};
use support::Node;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the stub received over TLS: the path and body of each request, and its signature
/// header when it had one.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, String, Option<String>)>,
}

/// Reads one request (head and `Content-Length` body), notes it, answers 200 and closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, seen: Arc<Mutex<Seen>>) {
    let Some((head, body)) = support::read_request(&mut stream).await else { return };
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    };
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap().requests.push((path, body, header("x-ordermill-signature")));
    let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
                 Connection: close\r\n\r\n{}";
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The TLS stub's port; what it received goes to `seen`.
async fn tls_stub(acceptor: TlsAcceptor, seen: Arc<Mutex<Seen>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    answer(tls, seen).await;
                }
            });
        }
    });
    port
}

async fn get(client: &reqwest::Client, node: &Node, path: &str) -> Value {
    let reply = client.get(node.url(path)).bearer_auth("adm-token").send().await.unwrap();
    reply.json().await.unwrap()
}

/// Starts a node calling the stub at `port` over https, trusting `ca_file` when given; its
/// log lines go to the returned buffer.
fn node(
    dir: &std::path::Path,
    port: u16,
    ca_file: Option<&std::path::Path>,
) -> (Node, Arc<Mutex<Vec<String>>>) {
    let payment_url = format!("https://127.0.0.1:{port}/charge?key=pay-key-secret");
    let notify_url = format!("https://localhost:{port}/hook");
    let ca = ca_file.map(|p| p.to_str().unwrap().to_owned());
    let mut env = vec![
        ("ORDERMILL_WORKERS__MAX_ATTEMPTS", "2"),
        ("ORDERMILL_WORKERS__RETRY_BASE", "50ms"),
        ("ORDERMILL_ADMIN_TOKEN", "adm-token"),
        ("ORDERMILL_PAYMENT__GATEWAY", "http"),
        ("ORDERMILL_PAYMENT__URL", &payment_url),
        ("ORDERMILL_NOTIFY__NOTIFIER", "webhook"),
        ("ORDERMILL_NOTIFY__URL", &notify_url),
        ("ORDERMILL_NOTIFY__WEBHOOK_SECRET", "whsec-test"),
    ];
    if let Some(ca) = &ca {
        env.push(("ORDERMILL_PAYMENT__CA_FILE", ca));
        env.push(("ORDERMILL_NOTIFY__CA_FILE", ca));
    }
    let (node, lines) = Node::start_unread(dir, &env);
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (node, log)
}

async fn order(client: &reqwest::Client, node: &Node, customer: &str) -> String {
    assert!(
        node.put_product(client, "a", json!({"name": "A", "price": "1.00", "stock": 10}))
            .await
            .status()
            .is_success()
    );
    format!("/api/orders/{}", node.order(client, customer, "a", 1).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_and_webhooks_go_over_verified_tls_and_an_unknown_ca_sends_nothing() {
    let ca = ordermill_tls_testkit::TestCa::new();
    let ca_file = ca.pem_file();
    let acceptor = ca.acceptor;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = tls_stub(acceptor, seen.clone()).await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let (trusting, _) = node(dirs.0.path(), port, Some(&ca_file));
    let (doubting, doubting_log) = node(dirs.1.path(), port, None);
    let client = reqwest::Client::new();
    let trusted_order = order(&client, &trusting, "tls-trusted").await;
    let doubted_order = order(&client, &doubting, "tls-doubted").await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let confirmed = get(&client, &trusting, &trusted_order).await["status"] == "confirmed";
        let hooked = seen.lock().unwrap().requests.iter().any(|(path, body, _)| {
            path == "/hook" && body.contains("tls-trusted") && body.contains("confirmed")
        });
        let dead = get(&client, &doubting, "/admin/dlq/payment").await;
        if confirmed && hooked && dead["count"] == 1 {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "not settled in 30 s: trusted confirmed {confirmed}, webhook {hooked}, doubting node's dead letters {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let requests = std::mem::take(&mut seen.lock().unwrap().requests);
    let charges: Vec<_> =
        requests.iter().filter(|(path, ..)| path.starts_with("/charge")).collect();
    assert!(
        charges
            .iter()
            .any(|(path, body, _)| path.contains("key=pay-key-secret")
                && body.contains("tls-trusted")),
        "the trusting node's charge arrived over TLS: {requests:?}"
    );
    assert!(
        requests.iter().all(|(_, body, _)| !body.contains("tls-doubted")),
        "nothing of the doubting node's order crossed the unverified connection: {requests:?}"
    );
    assert!(
        requests.iter().any(|(path, _, signature)| path == "/hook" && signature.is_some()),
        "the webhook arrived signed: {requests:?}"
    );

    let error = dead["dead_letters"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("certificate"), "the dead letter says why: {error}");
    assert!(error.contains("set payment.ca_file"), "and which setting fixes it: {error}");
    assert!(error.contains("key=***") && !error.contains("pay-key-secret"), "masked: {error}");
    assert_eq!(get(&client, &doubting, &doubted_order).await["status"], "accepted");

    trusting.stop();
    doubting.stop();
    let log = doubting_log.lock().unwrap();
    assert!(log.iter().all(|l| !l.contains("pay-key-secret")), "no secret in the log");
    assert!(
        log.iter().any(|l| l.contains("Message dead-lettered.") && l.contains("certificate")),
        "the log says the certificate was refused"
    );
}
