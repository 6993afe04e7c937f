//! Payment and webhook URLs may carry credentials (a password, a `?key=`), and the webhook
//! secret and admin token are secrets too: none of them reaches the log or an error, whatever
//! the outside service answers. A stub gateway answers each customer's charge its own way (a
//! success, 500, 400, a decline, no answer in time, absolute and relative redirects) and the
//! webhook always redirects; `ordermill serve` runs with two attempts per message, so every
//! failure that may pass is retried once, then dead-lettered. Then its whole log and every dead letter are searched.
//!
//! Redirects are refused, not followed: a followed 302 would have turned the charge into a GET
//! of the redirect's target, whose 200 read as a payment made.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Node;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const SECRETS: &[&str] = &[
    "pay-pw-secret",
    "pay-key-secret",
    "hook-token-secret",
    "whsec-secret-value",
    "adm-token-secret",
    "redirect-pw-secret",
    "redirect-token-secret",
    "relative-token-secret",
    "hook-redirect-secret",
];

/// Customers whose charges fail, each in its own way; all end as dead letters.
const FAILING: &[&str] = &["sc-500", "sc-302", "sc-307", "sc-400", "sc-slow"];

/// Reads one request (head and `Content-Length` body) and answers it as `route` says, then
/// closes the connection.
async fn answer(mut stream: TcpStream, port: u16) {
    let Some((head, body)) = support::read_request(&mut stream).await else { return };
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let customer = |c: &str| body.contains(&format!("\"customer_id\":\"{c}\""));
    let (status, extra, text) = if path.starts_with("/charge") {
        if customer("sc-500") {
            ("500 Internal Server Error", String::new(), "down")
        } else if customer("sc-302") {
            let to = format!(
                "http://user:redirect-pw-secret@127.0.0.1:{port}/elsewhere?token=redirect-token-secret"
            );
            ("302 Found", format!("Location: {to}\r\n"), "")
        } else if customer("sc-307") {
            (
                "307 Temporary Redirect",
                "Location: /elsewhere?t=relative-token-secret\r\n".into(),
                "",
            )
        } else if customer("sc-400") {
            ("400 Bad Request", String::new(), "bad charge")
        } else if customer("sc-402") {
            ("402 Payment Required", String::new(), "card declined")
        } else if customer("sc-slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ("200 OK", String::new(), "{}")
        } else {
            ("200 OK", String::new(), "{}")
        }
    } else if path.starts_with("/hook") {
        ("303 See Other", "Location: /moved?sig=hook-redirect-secret\r\n".into(), "")
    } else {
        // Where the redirects point: a followed redirect would be answered a success here.
        ("200 OK", String::new(), "{}")
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn stub() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, port));
        }
    });
    port
}

async fn get(client: &reqwest::Client, node: &Node, path: &str) -> Value {
    let reply = client.get(node.url(path)).bearer_auth("adm-token-secret").send().await.unwrap();
    reply.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_or_a_dead_letter_whatever_outside_services_answer() {
    let port = stub().await;
    let payment_url =
        format!("http://shop:pay-pw-secret@127.0.0.1:{port}/charge?key=pay-key-secret");
    let notify_url = format!("http://127.0.0.1:{port}/hook?token=hook-token-secret");
    let dir = tempfile::tempdir().unwrap();
    let (node, lines) = Node::start_unread(
        dir.path(),
        &[
            // Two attempts, the second soon: the retry's log line and the dead letter's both.
            ("ORDERMILL_WORKERS__MAX_ATTEMPTS", "2"),
            ("ORDERMILL_WORKERS__RETRY_BASE", "50ms"),
            ("ORDERMILL_ADMIN_TOKEN", "adm-token-secret"),
            ("ORDERMILL_PAYMENT__GATEWAY", "http"),
            ("ORDERMILL_PAYMENT__URL", &payment_url),
            ("ORDERMILL_PAYMENT__TIMEOUT", "300ms"),
            ("ORDERMILL_NOTIFY__NOTIFIER", "webhook"),
            ("ORDERMILL_NOTIFY__URL", &notify_url),
            ("ORDERMILL_NOTIFY__WEBHOOK_SECRET", "whsec-secret-value"),
            ("RUST_LOG", "debug"),
        ],
    );
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        })
    };
    let client = reqwest::Client::new();
    assert!(
        node.put_product(&client, "a", json!({"name": "A", "price": "1.00", "stock": 50}))
            .await
            .status()
            .is_success()
    );

    let mut orders = Vec::new();
    for customer in FAILING.iter().chain(&["sc-ok", "sc-402"]) {
        orders.push((*customer, node.order(&client, customer, "a", 1).await));
    }
    let status_of = |customer: &str| {
        let id = &orders.iter().find(|(c, _)| *c == customer).unwrap().1;
        format!("/api/orders/{id}")
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    let (payment, notify) = loop {
        let payment = get(&client, &node, "/admin/dlq/payment").await;
        let notify = get(&client, &node, "/admin/dlq/notify").await;
        let ok = get(&client, &node, &status_of("sc-ok")).await;
        let declined = get(&client, &node, &status_of("sc-402")).await;
        if payment["count"] == FAILING.len()
            && notify["count"].as_u64().unwrap_or(0) >= 1
            && ok["status"] == "confirmed"
            && declined["status"] == "cancelled"
        {
            break (payment, notify);
        }
        assert!(
            Instant::now() < deadline,
            "not settled in 30 s: payment {payment}, notify {notify}, ok {ok}, declined {declined}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for customer in ["sc-302", "sc-307"] {
        let order = get(&client, &node, &status_of(customer)).await;
        assert_eq!(order["status"], "accepted", "a redirect is not a payment: {order}");
    }
    let errors: Vec<String> = payment["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .chain(notify["dead_letters"].as_array().unwrap())
        .map(|letter| letter["error"].as_str().unwrap().to_owned())
        .collect();
    let any = |text: &str| errors.iter().any(|e| e.contains(text));
    assert!(any("gateway answered 500"), "{errors:#?}");
    assert!(any("gateway answered 400"), "{errors:#?}");
    assert!(
        any(&format!(
            "gateway answered 302 Found, a redirect to http://user:***@127.0.0.1:{port}/elsewhere?token=***"
        )),
        "{errors:#?}"
    );
    assert!(
        any(&format!("a redirect to http://127.0.0.1:{port}/elsewhere?t=***")),
        "a relative redirect is resolved and masked too: {errors:#?}"
    );
    assert!(any("set payment.url to"), "{errors:#?}");
    assert!(any("webhook answered 303 See Other"), "{errors:#?}");
    assert!(
        any(&format!(
            "POST http://shop:***@127.0.0.1:{port}/charge?key=***: no answer within payment.timeout"
        )),
        "a timeout names the URL, masked, and the setting: {errors:#?}"
    );

    node.stop();
    reader.join().unwrap();
    let log = log.lock().unwrap();
    for logged in ["Message failed; will retry.", "Message dead-lettered."] {
        assert!(log.iter().any(|l| l.contains(logged)), "{logged} was logged");
    }
    for secret in SECRETS {
        for text in log.iter().chain(&errors) {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    // Read once more from the stopped node's data: the dead letters as `ordermill dlq list`
    // prints them.
    for queue in ["payment", "notify"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordermill"))
            .args(["dlq", "list", "--queue", queue, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && listed.contains("dead letter(s)"), "{listed}");
        for secret in SECRETS {
            assert!(!listed.contains(secret), "{secret} leaked into `dlq list`: {listed}");
        }
    }
}
