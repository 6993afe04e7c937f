//! Bad input gets a 4xx JSON error with a specific code, never a 500.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use serde_json::json;
use support::spawn_app;

#[tokio::test]
async fn every_bad_order_gets_its_own_code() {
    let app = spawn_app().await;
    app.put_product("sku-1", "1.00", 100).await;
    let items_101: Vec<_> =
        (0..101).map(|i| json!({"sku": format!("s{i}"), "quantity": 1})).collect();
    let cases = [
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 0}]}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 10001}]}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": -3}]}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 1.5}]}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": "2"}]}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 1e40}]}),
            422,
            "invalid_quantity",
        ),
        (json!({"customer_id": "c", "items": [{"sku": "sku-1"}]}), 422, "invalid_quantity"),
        (
            json!({"customer_id": "c", "items": [{"sku": "nope", "quantity": 1}]}),
            422,
            "unknown_sku",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "bad sku", "quantity": 1}]}),
            422,
            "invalid_sku",
        ),
        (json!({"customer_id": "c", "items": [{"sku": 7, "quantity": 1}]}), 422, "invalid_sku"),
        (json!({"customer_id": "c", "items": items_101}), 422, "too_many_items"),
        (json!({"customer_id": "c", "items": []}), 422, "no_items"),
        (json!({"customer_id": "c"}), 422, "no_items"),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 1}, {"sku": "sku-1", "quantity": 2}]}),
            422,
            "duplicate_sku",
        ),
        (
            json!({"customer_id": "", "items": [{"sku": "sku-1", "quantity": 1}]}),
            422,
            "invalid_customer_id",
        ),
        (
            json!({"customer_id": "x".repeat(65), "items": [{"sku": "sku-1", "quantity": 1}]}),
            422,
            "invalid_customer_id",
        ),
        (
            json!({"customer_id": "a\u{7}b", "items": [{"sku": "sku-1", "quantity": 1}]}),
            422,
            "invalid_customer_id",
        ),
        (
            json!({"customer_id": 42, "items": [{"sku": "sku-1", "quantity": 1}]}),
            422,
            "invalid_customer_id",
        ),
        (json!({"items": [{"sku": "sku-1", "quantity": 1}]}), 422, "invalid_customer_id"),
        (
            json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 1}], "price": "0.01"}),
            422,
            "invalid_request",
        ),
        (json!({"customer_id": "c", "items": "everything"}), 422, "invalid_request"),
        (json!([1, 2, 3]), 422, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let reply = app.post("/api/orders", &body).await;
        assert_eq!((reply.status, reply.code()), (status, code), "for {body}");
        assert!(reply.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(app.available("sku-1").await, 100, "no bad order took stock");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for raw in ["", "{", "{\"customer_id\": }", "not json", "\u{0}"] {
        let reply = app.post_raw("/api/orders", raw).await;
        assert_eq!((reply.status, reply.code()), (400, "malformed_json"), "for {raw:?}");
    }
}

#[tokio::test]
async fn an_oversized_body_is_413_and_the_batch_endpoint_takes_more() {
    let app = spawn_app().await;
    let big = format!(r#"{{"customer_id": "{}"}}"#, "x".repeat(100 * 1024));
    let reply = app.post_raw("/api/orders", big.clone()).await;
    assert_eq!((reply.status, reply.code()), (413, "payload_too_large"));
    let reply = app.post_raw("/api/orders/batch", big).await;
    assert_eq!(reply.status, 422, "100 KiB is within the batch limit: {:?}", reply.body);
    let huge = format!(r#"{{"orders": ["{}"]}}"#, "x".repeat(9 * 1024 * 1024));
    assert_eq!(app.post_raw("/api/orders/batch", huge).await.code(), "payload_too_large");
}

#[tokio::test]
async fn bad_batches_get_their_own_codes() {
    let app = spawn_app().await;
    let reply = app.post("/api/orders/batch", &json!({"orders": []})).await;
    assert_eq!((reply.status, reply.code()), (422, "no_orders"));
    let many: Vec<_> = (0..1001).map(|_| json!({"customer_id": "c", "items": []})).collect();
    let reply = app.post("/api/orders/batch", &json!({"orders": many})).await;
    assert_eq!((reply.status, reply.code()), (422, "too_many_orders"));
    let reply = app
        .post(
            "/api/orders/batch",
            &json!({"orders": [{"customer_id": "c", "items": [], "idempotency_key": ""}]}),
        )
        .await;
    assert_eq!(reply.body["results"][0]["error"]["code"], "invalid_idempotency_key");
}

#[tokio::test]
async fn bad_idempotency_keys_are_422() {
    let app = spawn_app().await;
    app.put_product("a", "1.00", 1).await;
    let body = json!({"customer_id": "c", "items": [{"sku": "a", "quantity": 1}]});
    for key in ["", &"k".repeat(256)] {
        let reply = app
            .send(
                app.client.post(app.url("/api/orders")).header("Idempotency-Key", key).json(&body),
            )
            .await;
        assert_eq!((reply.status, reply.code()), (422, "invalid_idempotency_key"), "for {key:?}");
    }
    let reply = app.post("/api/orders", &json!({"customer_id": "c", "items": [{"sku": "a", "quantity": 1}], "idempotency_key": "k"})).await;
    assert_eq!((reply.status, reply.code()), (422, "invalid_request"));
}

#[tokio::test]
async fn bad_products_get_their_own_codes() {
    let app = spawn_app().await;
    let put = |sku: &str, body: serde_json::Value| {
        app.send(app.client.put(app.url(&format!("/api/products/{sku}"))).json(&body))
    };
    let cases = [
        ("ok", json!({"name": "A", "price": 19.99, "stock": 1}), "invalid_price"),
        ("ok", json!({"name": "A", "price": "19.999", "stock": 1}), "invalid_price"),
        ("ok", json!({"name": "A", "price": "-1", "stock": 1}), "invalid_price"),
        ("ok", json!({"name": "A", "stock": 1}), "invalid_price"),
        ("ok", json!({"name": "A", "price": "1.00", "stock": -1}), "invalid_stock"),
        ("ok", json!({"name": "A", "price": "1.00", "stock": 1.5}), "invalid_stock"),
        ("ok", json!({"name": "A", "price": "1.00"}), "invalid_stock"),
        ("ok", json!({"name": "", "price": "1.00", "stock": 1}), "invalid_name"),
        ("ok", json!({"price": "1.00", "stock": 1}), "invalid_name"),
        (
            "ok",
            json!({"name": "A", "price": "1.00", "stock": 1, "color": "red"}),
            "invalid_request",
        ),
        ("bad%20sku", json!({"name": "A", "price": "1.00", "stock": 1}), "invalid_sku"),
    ];
    for (sku, body, code) in cases {
        let reply = put(sku, body.clone()).await;
        assert_eq!((reply.status, reply.code()), (422, code), "for {sku} {body}");
    }
    assert_eq!(app.get("/api/products/ok").await.code(), "product_not_found");
    assert_eq!(app.get("/api/products").await.body["products"], json!([]));
}

#[tokio::test]
async fn unknown_routes_methods_and_ids_are_json_errors() {
    let app = spawn_app().await;
    let reply = app.get("/no/such/route").await;
    assert_eq!((reply.status, reply.code()), (404, "not_found"));
    let reply = app.send(app.client.delete(app.url("/api/orders"))).await;
    assert_eq!((reply.status, reply.code()), (405, "method_not_allowed"));
    let reply = app.get("/api/orders/not-a-uuid").await;
    assert_eq!((reply.status, reply.code()), (400, "invalid_order_id"));
    let reply = app.get("/api/orders/01936f4e-0000-7000-8000-000000000000").await;
    assert_eq!((reply.status, reply.code()), (404, "order_not_found"));
}

#[tokio::test]
async fn error_messages_follow_accept_language_and_codes_never_change() {
    let app = spawn_app().await;
    app.put_product("sku-1", "1.00", 1).await;
    let order = json!({"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 2}]});
    let ask = |lang: &'static str| {
        let request =
            app.client.post(app.url("/api/orders")).header("accept-language", lang).json(&order);
        app.send(request)
    };
    let zh = ask("zh-CN,zh;q=0.9,en;q=0.8").await;
    assert_eq!((zh.status, zh.code()), (409, "out_of_stock"));
    assert_eq!(zh.body["error"]["message"], "库存不足，商品已售罄。");
    let detail = zh.body["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("sku-1"), "the English specifics stay: {detail}");
    let en = ask("en-US,en;q=0.9,zh-CN;q=0.8").await;
    assert_eq!((en.status, en.code()), (409, "out_of_stock"));
    assert!(en.body["error"]["message"].as_str().unwrap().contains("sku-1"));
    assert!(en.body["error"].get("detail").is_none(), "{:?}", en.body);

    // Errors made outside handlers are translated too: an unknown route, a batch's orders.
    let missing =
        app.send(app.client.get(app.url("/api/nowhere")).header("accept-language", "zh")).await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
    assert!(missing.body["error"]["message"].as_str().unwrap().contains("没有此接口"));
    let batch =
        json!({"orders": [{"customer_id": "c", "items": [{"sku": "nope", "quantity": 1}]}]});
    let reply = app
        .send(
            app.client
                .post(app.url("/api/orders/batch"))
                .header("accept-language", "zh")
                .json(&batch),
        )
        .await;
    let error = &reply.body["results"][0]["error"];
    assert_eq!(error["code"], "unknown_sku", "{:?}", reply.body);
    assert_eq!(error["message"], "目录中没有此商品（SKU）。");
}

#[tokio::test]
async fn a_struct_sent_as_an_array_is_refused_not_read_field_by_field() {
    let app = spawn_app().await;
    app.put_product("sku-1", "1.00", 10).await;
    let top = app.post_raw("/api/orders", r#"["c", [{"sku": "sku-1", "quantity": 1}]]"#).await;
    assert_eq!((top.status, top.code()), (422, "invalid_request"), "{:?}", top.body);
    let line =
        app.post_raw("/api/orders", r#"{"customer_id": "c", "items": [["sku-1", 1]]}"#).await;
    assert_eq!((line.status, line.code()), (422, "invalid_request"), "{:?}", line.body);
    let batch = app.post_raw("/api/orders/batch", r#"{"orders": [["c", [], null]]}"#).await;
    assert_eq!((batch.status, batch.code()), (422, "invalid_request"), "{:?}", batch.body);
    let fine = app
        .post_raw(
            "/api/orders",
            r#"{"customer_id": "c", "items": [{"sku": "sku-1", "quantity": 1}]}"#,
        )
        .await;
    assert_eq!(fine.status, 201, "{:?}", fine.body);
}
