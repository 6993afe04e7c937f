//! The trust boundary on the real app: merchant tokens guard the catalog; a customer proves
//! who they are (JWT, trusted gateway header) and sees and acts only as themselves;
//! idempotency keys are per customer and expire; protected mode; the one money bound.
//!
//! Scenarios that touch the stores run on both engine sets.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ordermill_core::{Clock, HumanDuration, ManualClock, SystemClock};
use ordermill_server::startup::settings::{
    CustomerMode, JwtAlgorithm, JwtSettings, Secret, Settings, TrustedHeaderSettings,
};
use ordermill_server::{Application, StartError};
use serde_json::{Value, json};
use support::{Engines, Reply, TestApp, spawn_app_on};

on_both_engines!(
    catalog_writes_need_a_merchant_token_and_reads_stay_public,
    a_jwt_customer_orders_sees_and_lists_only_as_themselves,
    idempotency_keys_are_per_customer_and_expire,
    a_client_over_its_budget_gets_429_and_service_again_after_the_wait,
);

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ADMIN: &str = "admin-token-for-tests";

fn jwt_mode(s: &mut Settings) {
    s.auth.customer = CustomerMode::Jwt;
    s.auth.jwt = JwtSettings { secret: Some(Secret::new(SECRET)), ..JwtSettings::default() };
    s.admin_token = Some(Secret::new(ADMIN));
}

fn now_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

fn token_at(sub: &str, clock: &ManualClock, exp_in: i64, extra: Value) -> String {
    let now = clock.now().0 / 1000;
    let mut claims = json!({"sub": sub, "exp": now + exp_in});
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

/// A client that sends no credentials of its own.
fn bare() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

async fn as_token(app: &TestApp, token: &str, request: reqwest::RequestBuilder) -> Reply {
    app.send(request.bearer_auth(token)).await
}

async fn catalog_writes_need_a_merchant_token_and_reads_stay_public(engines: Engines) {
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), now_clock(), |_| {}).await;
    let bare = bare();
    let body = json!({"name": "Crab", "price": "0.00", "stock": 1_000_000});
    let put = || bare.put(app.url("/api/products/crab")).json(&body);
    let none = app.send(put()).await;
    assert_eq!((none.status, none.code()), (401, "unauthorized"));
    assert!(none.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let wrong = app.send(put().bearer_auth("not-the-token")).await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthorized"));
    let right = app.send(put().bearer_auth(support::MERCHANT_TOKEN)).await;
    assert!(right.status == 200 || right.status == 201, "{:?}", right.body);

    let deal = json!({"sku": "crab", "deal_price": "0.00", "group_size": 2, "expires_in": "1h"});
    let open = app.send(bare.post(app.url("/api/deals")).json(&deal)).await;
    assert_eq!((open.status, open.code()), (401, "unauthorized"));
    let open = app.send(bare.post(app.url("/api/deals")).json(&deal).bearer_auth("x")).await;
    assert_eq!(open.status, 401);

    let read = app.send(bare.get(app.url("/api/products/crab"))).await;
    assert_eq!((read.status, read.body["price"].as_str()), (200, Some("0.00")));
    assert_eq!(app.send(bare.get(app.url("/api/products"))).await.status, 200);
    app.stop().await;
}

async fn a_jwt_customer_orders_sees_and_lists_only_as_themselves(engines: Engines) {
    let clock = now_clock();
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), clock.clone(), jwt_mode).await;
    app.put_product("tea", "2.50", 100).await;
    let alice = token_at("alice", &clock, 3600, json!({}));
    let bob = token_at("bob", &clock, 3600, json!({}));
    let bare = bare();
    let post = |body: Value| bare.post(app.url("/api/orders")).json(&body);
    let items = json!([{"sku": "tea", "quantity": 1}]);

    let anonymous = app.send(post(json!({"customer_id": "alice", "items": items}))).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    let posing = as_token(&app, &alice, post(json!({"customer_id": "bob", "items": items}))).await;
    assert_eq!((posing.status, posing.code()), (403, "customer_mismatch"));
    let mut mine = Vec::new();
    for _ in 0..3 {
        let placed = as_token(&app, &alice, post(json!({"items": items}))).await;
        assert_eq!((placed.status, placed.body["customer_id"].as_str()), (201, Some("alice")));
        mine.push(placed.body["order_id"].as_str().unwrap().to_owned());
    }
    let named = as_token(&app, &bob, post(json!({"customer_id": "bob", "items": items}))).await;
    assert_eq!(named.status, 201, "naming yourself is allowed");

    let path = format!("/api/orders/{}", mine[0]);
    let own = as_token(&app, &alice, bare.get(app.url(&path))).await;
    assert_eq!((own.status, own.body["customer_id"].as_str()), (200, Some("alice")));
    let other = as_token(&app, &bob, bare.get(app.url(&path))).await;
    assert_eq!((other.status, other.code()), (404, "order_not_found"), "as if it did not exist");
    assert_eq!(app.send(bare.get(app.url(&path))).await.status, 401);
    let admin = as_token(&app, ADMIN, bare.get(app.url(&path))).await;
    assert_eq!(admin.status, 200, "the admin token reads every order");

    let page = as_token(&app, &alice, bare.get(app.url("/api/customers/me/orders?limit=2"))).await;
    let ids = |r: &Reply| -> Vec<String> {
        r.body["orders"].as_array().unwrap().iter().map(|o| o["order_id"].to_string()).collect()
    };
    let quoted = |id: &String| format!("\"{id}\"");
    assert_eq!(ids(&page), vec![quoted(&mine[2]), quoted(&mine[1])], "newest first");
    let next = page.body["next"].as_str().unwrap();
    let rest = as_token(&app, &alice, bare.get(app.url(next))).await;
    assert_eq!(ids(&rest), vec![quoted(&mine[0])]);
    assert!(rest.body.get("next").is_none(), "{:?}", rest.body);
    let spying =
        as_token(&app, &alice, bare.get(app.url("/api/customers/me/orders?customer_id=bob"))).await;
    assert_eq!(spying.status, 400);

    // Tokens that must not get in.
    let expired = token_at("alice", &clock, 60, json!({}));
    clock.advance(Duration::from_secs(60 + 31));
    let refused = as_token(&app, &expired, post(json!({"items": items}))).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("expired"));
    let early = token_at("alice", &clock, 3600, json!({"nbf": clock.now().0 / 1000 + 600}));
    assert_eq!(as_token(&app, &early, post(json!({"items": items}))).await.status, 401);
    let forged = {
        let claims = json!({"sub": "alice", "exp": clock.now().0 / 1000 + 600});
        let key = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes").unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    assert_eq!(as_token(&app, &forged, post(json!({"items": items}))).await.status, 401);
    let other_alg = {
        let claims = json!({"sub": "alice", "exp": clock.now().0 / 1000 + 600});
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS384), &claims, &key).unwrap()
    };
    assert_eq!(as_token(&app, &other_alg, post(json!({"items": items}))).await.status, 401);
    let unsigned = {
        use base64::Engine;
        let encode = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = format!(r#"{{"sub":"alice","exp":{}}}"#, clock.now().0 / 1000 + 600);
        format!("{header}.{}.", encode(claims.as_bytes()))
    };
    let none = as_token(&app, &unsigned, post(json!({"items": items}))).await;
    assert_eq!((none.status, none.code()), (401, "unauthorized"), "alg: none");

    // Deals: counts and "did I join" for customers, members for the admin only.
    let deal = json!({"sku": "tea", "deal_price": "1.00", "group_size": 3, "expires_in": "1h"});
    let opened = app.post("/api/deals", &deal).await;
    let id = opened.body["deal_id"].as_str().unwrap().to_owned();
    let join = bare.post(app.url(&format!("/api/deals/{id}/join"))).json(&json!({}));
    assert_eq!(as_token(&app, &alice, join).await.status, 201);
    let seen = as_token(&app, &alice, bare.get(app.url(&format!("/api/deals/{id}")))).await;
    assert_eq!(
        (seen.body["member_count"].as_u64(), seen.body["joined"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(seen.body.get("members").is_none(), "{:?}", seen.body);
    let by_bob = as_token(&app, &bob, bare.get(app.url(&format!("/api/deals/{id}")))).await;
    assert_eq!(by_bob.body["joined"].as_bool(), Some(false));
    let public = app.send(bare.get(app.url(&format!("/api/deals/{id}")))).await;
    assert!(public.body.get("members").is_none() && public.body.get("joined").is_none());
    let admin = as_token(&app, ADMIN, bare.get(app.url(&format!("/api/deals/{id}")))).await;
    assert_eq!(admin.body["members"][0]["customer_id"], "alice");
    app.stop().await;
}

async fn idempotency_keys_are_per_customer_and_expire(engines: Engines) {
    let clock = now_clock();
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), clock.clone(), |s| {
        jwt_mode(s);
        s.idempotency_ttl = HumanDuration::from_secs(3600);
    })
    .await;
    app.put_product("tea", "2.50", 100).await;
    let bare = bare();
    let keyed = |who: &str| {
        let token = token_at(who, &clock, 7200, json!({}));
        bare.post(app.url("/api/orders"))
            .header("Idempotency-Key", "same-key")
            .bearer_auth(token)
            .json(&json!({"items": [{"sku": "tea", "quantity": 1}]}))
    };
    let alice = app.send(keyed("alice")).await;
    let bob = app.send(keyed("bob")).await;
    assert_eq!((alice.status, bob.status), (201, 201), "{:?}", bob.body);
    assert_ne!(alice.body["order_id"], bob.body["order_id"], "one key, two customers, two orders");
    let replay = app.send(keyed("alice")).await;
    assert_eq!(replay.body["order_id"], alice.body["order_id"]);
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    clock.advance(Duration::from_secs(3601));
    let after = app.send(keyed("alice")).await;
    assert_eq!(after.status, 201, "{:?}", after.body);
    assert_ne!(after.body["order_id"], alice.body["order_id"], "an expired key is a new request");
    assert!(after.headers.get("idempotent-replayed").is_none());
    assert_eq!(app.available("tea").await, 97);
    app.stop().await;
}

// The rate limiter checks the credentials first (to know whose budget a request spends) and
// hands what it found to the handler: a refusal still reaches the client as the handler's 401,
// with its reason, and a route that takes no credentials still ignores a bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_rate_limiter_a_refused_token_is_the_handler_s_401_with_its_reason() {
    let clock = now_clock();
    let app = spawn_app_on(Engines::Embedded, tempfile::tempdir().unwrap(), clock.clone(), |s| {
        jwt_mode(s);
        s.rate_limit.per_second = 1000;
        s.rate_limit.burst = 1000;
    })
    .await;
    app.put_product("tea", "2.50", 10).await;
    let bare = bare();
    let expired = token_at("carol", &clock, -3600, json!({}));
    let order = json!({"items": [{"sku": "tea", "quantity": 1}]});
    let refused =
        app.send(bare.post(app.url("/api/orders")).bearer_auth(&expired).json(&order)).await;
    assert_eq!((refused.status, refused.code()), (401, "unauthorized"));
    assert!(
        refused.body["error"]["message"].as_str().unwrap().contains("expired"),
        "{}",
        refused.body
    );
    assert!(refused.headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let public = app.send(bare.get(app.url("/api/products/tea")).bearer_auth(&expired)).await;
    assert_eq!(public.status, 200, "the catalog takes no credentials");
    let good = token_at("carol", &clock, 3600, json!({}));
    let placed = app.send(bare.post(app.url("/api/orders")).bearer_auth(&good).json(&order)).await;
    assert_eq!((placed.status, placed.body["customer_id"].as_str()), (201, Some("carol")));
    assert_eq!(app.available("tea").await, 9);
    app.stop().await;
}

async fn a_client_over_its_budget_gets_429_and_service_again_after_the_wait(engines: Engines) {
    let clock = now_clock();
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), clock.clone(), |s| {
        jwt_mode(s);
        s.rate_limit.per_second = 2;
        s.rate_limit.burst = 3;
    })
    .await;
    let bare = bare();
    let alice = token_at("alice", &clock, 3600, json!({}));
    let bob = token_at("bob", &clock, 3600, json!({}));
    let mine =
        |token: &str| bare.get(app.url("/api/customers/me/orders")).bearer_auth(token.to_owned());
    for i in 0..3 {
        assert_eq!(app.send(mine(&alice)).await.status, 200, "burst request {i}");
    }
    let over = app.send(mine(&alice)).await;
    assert_eq!((over.status, over.code()), (429, "rate_limited"));
    assert_eq!(over.headers["retry-after"], "1");
    assert_eq!(app.send(mine(&bob)).await.status, 200, "bob's budget is his own");
    for _ in 0..10 {
        assert!(app.put_product("tea", "2.50", 10).await.status < 300, "merchants are not counted");
    }
    // One request back every 500 ms at 2/s: served again once the wait has passed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app.send(mine(&alice)).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.code(), "rate_limited");
        assert!(std::time::Instant::now() < deadline, "never served again after the wait");
        let wait = reply.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap();
        assert!(wait <= 1, "Retry-After {wait} s for a 500 ms refill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without an identity the client address is the key.
    let public = || bare.get(app.url("/api/products/tea"));
    let statuses: Vec<u16> = {
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(app.send(public()).await.status);
        }
        all
    };
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let health = app.send(bare.get(app.url("/healthz"))).await;
    assert_eq!(health.status, 200, "health checks are never limited");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_header_is_believed_only_from_the_configured_proxies() {
    let from = |proxies: &[&str]| {
        let proxies: Vec<String> = proxies.iter().map(|p| (*p).to_owned()).collect();
        move |s: &mut Settings| {
            s.auth.customer = CustomerMode::TrustedHeader;
            s.auth.trusted_header =
                TrustedHeaderSettings { header: "x-customer-id".into(), proxies };
        }
    };
    let order = json!({"items": [{"sku": "tea", "quantity": 1}]});

    let trusted = spawn_app_on(
        Engines::Embedded,
        tempfile::tempdir().unwrap(),
        now_clock(),
        from(&["127.0.0.1/32"]),
    )
    .await;
    trusted.put_product("tea", "2.50", 10).await;
    let bare = bare();
    let placed = trusted
        .send(bare.post(trusted.url("/api/orders")).header("x-customer-id", "carol").json(&order))
        .await;
    assert_eq!((placed.status, placed.body["customer_id"].as_str()), (201, Some("carol")));
    let without = trusted.send(bare.post(trusted.url("/api/orders")).json(&order)).await;
    assert_eq!(without.status, 401, "no header, no customer");
    trusted.stop().await;

    let elsewhere = spawn_app_on(
        Engines::Embedded,
        tempfile::tempdir().unwrap(),
        now_clock(),
        from(&["10.0.0.0/8"]),
    )
    .await;
    elsewhere.put_product("tea", "2.50", 10).await;
    let spoofed = elsewhere
        .send(bare.post(elsewhere.url("/api/orders")).header("x-customer-id", "carol").json(&order))
        .await;
    assert_eq!((spoofed.status, spoofed.code()), (401, "unauthorized"), "127.0.0.1 is not a proxy");
    assert_eq!(elsewhere.available("tea").await, 10);
    elsewhere.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_algorithms_verify_with_the_configured_key_only() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (alg, ours, name) in [
        (JwtAlgorithm::RS256, Algorithm::RS256, "rs256"),
        (JwtAlgorithm::ES256, Algorithm::ES256, "es256"),
        (JwtAlgorithm::EdDSA, Algorithm::EdDSA, "ed25519"),
    ] {
        let public = fixtures.join(format!("{name}.pub"));
        let app = spawn_app_on(Engines::Embedded, tempfile::tempdir().unwrap(), now_clock(), |s| {
            s.auth.customer = CustomerMode::Jwt;
            s.auth.jwt = JwtSettings {
                algorithm: alg,
                public_key_file: Some(public),
                issuer: Some("shop".into()),
                audience: Some("ordermill".into()),
                ..JwtSettings::default()
            };
        })
        .await;
        app.put_product("tea", "2.50", 10).await;
        let private = std::fs::read(fixtures.join(format!("{name}.key"))).unwrap();
        let key = match ours {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
            _ => EncodingKey::from_ed_pem(&private),
        }
        .unwrap();
        let exp = SystemClock.now().0 / 1000 + 600;
        let sign = |claims: Value| jsonwebtoken::encode(&Header::new(ours), &claims, &key).unwrap();
        let post = |token: String| {
            app.client
                .post(app.url("/api/orders"))
                .bearer_auth(token)
                .json(&json!({"items": [{"sku": "tea", "quantity": 1}]}))
        };
        let good = sign(json!({"sub": "dan", "exp": exp, "iss": "shop", "aud": "ordermill"}));
        let placed = app.send(post(good)).await;
        assert_eq!(
            (placed.status, placed.body["customer_id"].as_str()),
            (201, Some("dan")),
            "{name}"
        );
        let wrong_iss = sign(json!({"sub": "dan", "exp": exp, "iss": "evil", "aud": "ordermill"}));
        assert_eq!(app.send(post(wrong_iss)).await.status, 401, "{name}: issuer");
        let wrong_aud = sign(json!({"sub": "dan", "exp": exp, "iss": "shop", "aud": "other"}));
        assert_eq!(app.send(post(wrong_aud)).await.status, 401, "{name}: audience");
        // Algorithm confusion: an HMAC token keyed with the public key's text is refused.
        let pem = std::fs::read(fixtures.join(format!("{name}.pub"))).unwrap();
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "dan", "exp": exp, "iss": "shop", "aud": "ordermill"}),
            &EncodingKey::from_secret(&pem).unwrap(),
        )
        .unwrap();
        assert_eq!(app.send(post(confused)).await.status, 401, "{name}: HS256 with the public key");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_mode_refuses_to_listen_beyond_loopback_while_anyone_may_act_as_anyone() {
    let settings = |tweak: fn(&mut Settings)| {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings {
            listen: "0.0.0.0:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        tweak(&mut s);
        (s, dir)
    };
    let (open, _dir) = settings(|_| {});
    match Application::build(open).await {
        Err(error @ StartError::Unprotected { .. }) => {
            let text = error.to_string();
            for needle in ["auth.customer", "ORDERMILL_MERCHANT_TOKEN", "--insecure-open"] {
                assert!(text.contains(needle), "{needle:?} missing from: {text}");
            }
        }
        Err(other) => panic!("expected protected mode, got {other}"),
        Ok(_) => panic!("an open node started on 0.0.0.0"),
    }
    let (overridden, _dir) = settings(|s| s.auth.insecure_open = true);
    assert!(Application::build(overridden).await.is_ok(), "--insecure-open starts it");
    let (protected, _dir) = settings(|s| {
        jwt_mode(s);
        s.auth.merchant_tokens = vec![Secret::new("m")];
    });
    assert!(Application::build(protected).await.is_ok(), "credentials on both sides: starts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_above_the_money_bound_is_refused_at_intake_not_stuck_later() {
    let app = support::spawn_app().await;
    app.put_product("gold", "100000.00", 20_000).await;
    let reply = app.order("zoe", &[("gold", 10_000)]).await;
    assert_eq!((reply.status, reply.code()), (422, "amount_too_large"), "{:?}", reply.body);
    assert_eq!(app.available("gold").await, 20_000, "nothing held");
    let fits = app.order("zoe", &[("gold", 9_999)]).await;
    assert_eq!(fits.status, 201, "999,900,000.00 is within the bound");
    app.wait_for_status(fits.body["order_id"].as_str().unwrap(), "confirmed").await;
    app.stop().await;
}
