//! Payment and webhook URLs may carry credentials (a password, a `?key=`): no error path shows
//! them. A gateway and a webhook that refuse connections dead-letter their messages, and the
//! dead letters' errors name the URL with its secrets masked.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use ordermill_server::startup::settings::{GatewayKind, NotifierKind, Secret, SecretUrl};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_errors_never_show_the_secrets_of_outside_urls() {
    // A port nothing listens on: every call fails at once with a refused connection.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.admin_token = Some(Secret::new("adm"));
        s.workers.max_attempts = 1;
        s.payment.gateway = GatewayKind::Http;
        s.payment.url = Some(SecretUrl::new(format!(
            "http://shop:pay-pw-secret@{closed}/charge?key=pay-key-secret"
        )));
        s.notify.notifier = NotifierKind::Webhook;
        s.notify.url =
            Some(SecretUrl::new(format!("http://{closed}/hook?token=hook-token-secret")));
    })
    .await;
    app.put_product("a", "1.00", 5).await;
    assert_eq!(app.order("c-1", &[("a", 1)]).await.status, 201);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut errors = Vec::new();
    for queue in ["payment", "notify"] {
        loop {
            let page = app
                .send(app.client.get(app.url(&format!("/admin/dlq/{queue}"))).bearer_auth("adm"))
                .await;
            if let Some(letter) = page.body["dead_letters"].as_array().and_then(|l| l.first()) {
                errors.push(letter["error"].as_str().unwrap().to_owned());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{queue} never dead-lettered: {:?}",
                page.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for error in &errors {
        for secret in ["pay-pw-secret", "pay-key-secret", "hook-token-secret"] {
            assert!(!error.contains(secret), "{secret} leaked into a dead letter: {error}");
        }
        assert!(error.contains("***"), "the URL is named, masked: {error}");
    }
    let listing: Value =
        app.send(app.client.get(app.url("/admin/dlq/payment")).bearer_auth("adm")).await.body;
    assert!(!listing.to_string().contains("secret"), "{listing}");
    app.stop().await;
}
