//! The OpenAPI document against the real API: every operation it lists is called on a running
//! app, every answer's status is one the document lists for it, and every JSON body has the
//! shape of its documented schema (no undocumented field, no missing required one, the right
//! types, recursively). `/docs` serves the reference page from the binary.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::BTreeSet;

use ordermill_server::startup::settings::Secret;
use serde_json::{Value, json};
use support::{Reply, TestApp};

const ADMIN: &str = "openapi-admin";

/// Resolves `#/components/schemas/X`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `value` has the shape `schema` documents; the error says where it does not.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        // A flattened struct: its parts' properties together.
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for part in all {
            let part = resolve(doc, part);
            for (k, v) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][k] = v.clone();
            }
            for r in part["required"].as_array().into_iter().flatten() {
                merged["required"].as_array_mut().unwrap().push(r.clone());
            }
        }
        return conforms(doc, &merged, value, at);
    }
    if let Some(any) = schema["oneOf"].as_array() {
        return if any.iter().any(|s| conforms(doc, s, value, at).is_ok()) {
            Ok(())
        } else {
            Err(format!("{at}: {value} matches none of {any:?}"))
        };
    }
    let types = types(schema);
    if types.is_empty() {
        return Ok(()); // any value (an event's payload)
    }
    let ok = match value {
        Value::Null => types.contains(&"null"),
        Value::Bool(_) => types.contains(&"boolean"),
        Value::Number(n) => {
            types.contains(&"number") || (types.contains(&"integer") && (n.is_i64() || n.is_u64()))
        }
        Value::String(_) => types.contains(&"string"),
        Value::Array(items) => {
            if !types.contains(&"array") {
                return Err(format!("{at}: an array where {types:?} is documented"));
            }
            for (i, item) in items.iter().enumerate() {
                conforms(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
            true
        }
        Value::Object(fields) => {
            if !types.contains(&"object") {
                return Err(format!("{at}: an object where {types:?} is documented"));
            }
            let properties = schema["properties"].as_object().cloned().unwrap_or_default();
            for (key, field) in fields {
                let extra = &schema["additionalProperties"];
                let Some(property) = properties.get(key).or(extra.is_object().then_some(extra))
                else {
                    return Err(format!("{at}.{key} is not documented"));
                };
                conforms(doc, property, field, &format!("{at}.{key}"))?;
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !fields.contains_key(key) {
                    return Err(format!("{at}.{key} is required but missing"));
                }
            }
            true
        }
    };
    if ok { Ok(()) } else { Err(format!("{at}: {value} is not {types:?}")) }
}

struct Checker {
    doc: Value,
    called: BTreeSet<(String, String)>,
}

impl Checker {
    /// Checks `reply` to `method template` against the document and records the operation.
    fn check(&mut self, method: &str, template: &str, reply: &Reply) {
        let operation = &self.doc["paths"][template][method];
        assert!(operation.is_object(), "{method} {template} is not in the document");
        let status = reply.status.to_string();
        let response = &operation["responses"][&status];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not list: {:?}",
            reply.body
        );
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_object() {
            conforms(&self.doc, schema, &reply.body, "body")
                .unwrap_or_else(|e| panic!("{method} {template} {status}: {e}"));
        }
        self.called.insert((method.to_owned(), template.to_owned()));
    }
}

async fn admin(app: &TestApp, request: reqwest::RequestBuilder) -> Reply {
    app.send(request.bearer_auth(ADMIN)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.admin_token = Some(Secret::new(ADMIN));
    })
    .await;
    let doc: Value = serde_json::from_str(&app.get_text("/openapi.json").await).unwrap();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(include_str!("../../../docs/openapi.json")).unwrap(),
        "the node serves the committed document"
    );
    let mut c = Checker { doc, called: BTreeSet::new() };
    let (get, post, put, delete) = ("get", "post", "put", "delete");

    c.check(get, "/healthz", &app.get("/healthz").await);
    c.check(get, "/readyz", &app.get("/readyz").await);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    c.called.insert((get.into(), "/metrics".into()));

    let product =
        json!({"name": "蟹 gift box", "price": "19.99", "stock": 10, "per_customer_limit": 5});
    let put_product = |body: Value| {
        let app = &app;
        async move { app.send(app.client.put(app.url("/api/products/crab")).json(&body)).await }
    };
    c.check(put, "/api/products/{sku}", &put_product(product.clone()).await);
    c.check(put, "/api/products/{sku}", &put_product(product.clone()).await);
    c.check(
        put,
        "/api/products/{sku}",
        &put_product(json!({"name": "x", "price": "1.001", "stock": 1})).await,
    );
    c.check(get, "/api/products/{sku}", &app.get("/api/products/crab").await);
    c.check(get, "/api/products/{sku}", &app.get("/api/products/nope").await);
    c.check(get, "/api/products", &app.get("/api/products").await);

    let order = app.order("c-1", &[("crab", 2)]).await;
    c.check(post, "/api/orders", &order);
    c.check(post, "/api/orders", &app.order("c-1", &[("crab", 99)]).await);
    c.check(post, "/api/orders", &app.post_raw("/api/orders", "{").await);
    let id = order.body["order_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "confirmed").await;
    c.check(get, "/api/orders/{id}", &app.get(&format!("/api/orders/{id}")).await);
    c.check(get, "/api/orders/{id}", &app.get("/api/orders/not-an-id").await);
    let batch = json!({"orders": [
        {"customer_id": "c-2", "items": [{"sku": "crab", "quantity": 1}], "idempotency_key": "b-1"},
        {"customer_id": "c-2", "items": [{"sku": "nope", "quantity": 1}]},
    ]});
    c.check(post, "/api/orders/batch", &app.post("/api/orders/batch", &batch).await);
    c.check(
        get,
        "/api/customers/me/orders",
        &app.get("/api/customers/me/orders?customer_id=c-1").await,
    );

    let deal = app
        .post(
            "/api/deals",
            &json!({"sku": "crab", "deal_price": "9.90", "group_size": 2, "expires_in": "15m"}),
        )
        .await;
    c.check(post, "/api/deals", &deal);
    let deal_id = deal.body["deal_id"].as_str().unwrap().to_owned();
    let joined =
        app.post(&format!("/api/deals/{deal_id}/join"), &json!({"customer_id": "c-3"})).await;
    c.check(post, "/api/deals/{id}/join", &joined);
    let again =
        app.post(&format!("/api/deals/{deal_id}/join"), &json!({"customer_id": "c-3"})).await;
    c.check(post, "/api/deals/{id}/join", &again);
    c.check(get, "/api/deals/{id}", &app.get(&format!("/api/deals/{deal_id}")).await);
    c.check(
        get,
        "/api/deals/{id}",
        &admin(&app, app.client.get(app.url(&format!("/api/deals/{deal_id}")))).await,
    );
    c.check(post, "/api/deals", &app.post("/api/deals", &json!({"sku": "crab"})).await);

    // Pay later is off on this node: the callback is 404.
    c.check(post, "/api/payments/callback", &app.post("/api/payments/callback", &json!({})).await);

    c.check(get, "/admin/queues", &admin(&app, app.client.get(app.url("/admin/queues"))).await);
    c.check(get, "/admin/queues", &app.get("/admin/queues").await);
    c.check(
        get,
        "/admin/dlq/{queue}",
        &admin(&app, app.client.get(app.url("/admin/dlq/payment"))).await,
    );
    c.check(
        get,
        "/admin/dlq/{queue}",
        &admin(&app, app.client.get(app.url("/admin/dlq/nope"))).await,
    );
    let replay = app.client.post(app.url("/admin/dlq/payment/replay"));
    c.check(post, "/admin/dlq/{queue}/replay", &admin(&app, replay).await);
    c.check(
        delete,
        "/admin/dlq/{queue}",
        &admin(&app, app.client.delete(app.url("/admin/dlq/payment"))).await,
    );
    let listed = admin(&app, app.client.get(app.url("/admin/orders?status=confirmed"))).await;
    c.check(get, "/admin/orders", &listed);
    c.check(
        get,
        "/admin/orders",
        &admin(&app, app.client.get(app.url("/admin/orders?status=x"))).await,
    );
    let cancel = app.client.post(app.url(&format!("/admin/orders/{id}/cancel"))).json(&json!({}));
    c.check(post, "/admin/orders/{id}/cancel", &admin(&app, cancel).await);
    // Reports: asked for, read, downloaded once done.
    let now = ordermill_core::Clock::now(&ordermill_core::SystemClock);
    let report = app
        .post(
            "/api/reports",
            &json!({"kind": "orders", "from": now.0 - 60_000, "to": now.0 + 1000, "format": "csv"}),
        )
        .await;
    c.check(post, "/api/reports", &report);
    c.check(post, "/api/reports", &app.post("/api/reports", &json!({"kind": "x"})).await);
    let report_id = report.body["report_id"].as_str().unwrap().to_owned();
    let status_path = format!("/api/reports/{report_id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get(&status_path).await.body["status"] != "done" {
        assert!(std::time::Instant::now() < deadline, "the report never finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.check(get, "/api/reports/{id}", &app.get(&status_path).await);
    c.check(get, "/api/reports/{id}", &app.get("/api/reports/nope").await);
    let file = app.client.get(app.url(&format!("{status_path}/download"))).send().await.unwrap();
    assert_eq!(file.status(), 200);
    c.called.insert((get.into(), "/api/reports/{id}/download".into()));
    c.check(
        get,
        "/api/reports/{id}/download",
        &app.get("/api/reports/01900000-0000-7000-8000-000000000000/download").await,
    );

    let overview = admin(&app, app.client.get(app.url("/admin/overview"))).await;
    assert!(
        overview.body["recent_orders"].as_array().is_some_and(|o| !o.is_empty()),
        "{:?}",
        overview.body
    );
    c.check(get, "/admin/overview", &overview);
    c.check(get, "/admin/overview", &app.get("/admin/overview").await);

    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&c.called).collect();
    assert!(missed.is_empty(), "documented but not called here: {missed:?}");

    // The reference page and its assets come from the binary.
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger") && html.contains("/openapi.json"), "{html}");
    app.stop().await;
}
