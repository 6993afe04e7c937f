//! Reports (报表) on the real app: asked for with a merchant token, run by the consumer of
//! `reports`, downloaded as CSV or XLSX whose totals equal what the store holds; empty ranges,
//! validation, a report not yet run (409 `not_ready`), a missing one (404), and expiry.
//!
//! Every scenario runs twice: on the embedded engines (`<name>::embedded`) and on the real
//! PostgreSQL, RabbitMQ and Redis (`<name>::scaled_out`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ordermill_core::{Clock, HumanDuration, ManualClock, SystemClock, UnixMillis};
use ordermill_server::startup::settings::Secret;
use serde_json::{Value, json};
use support::{Engines, Reply, TestApp, spawn_app_on};

on_both_engines!(reports_add_up_to_what_the_store_holds, a_report_expires_with_its_file);

const ADMIN: &str = "reports-admin-token";

fn iso(at: UnixMillis) -> String {
    at.to_string()
}

async fn ask(app: &TestApp, body: &Value) -> Reply {
    app.post("/api/reports", body).await
}

/// Polls the report until it is done (10 s at most).
async fn done(app: &TestApp, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let report = app.get(&format!("/api/reports/{id}")).await.body;
        if report["status"] == "done" {
            return report;
        }
        assert_ne!(report["status"], "failed", "{report}");
        assert!(std::time::Instant::now() < deadline, "not done within 10 s: {report}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn download(app: &TestApp, id: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let reply =
        app.client.get(app.url(&format!("/api/reports/{id}/download"))).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let headers = reply.headers().clone();
    (headers, reply.bytes().await.unwrap().to_vec())
}

/// Per SKU: (units, orders, revenue in cents), from the orders as the API shows them.
fn sales_of(orders: &[Value]) -> BTreeMap<String, (u64, u64, i64)> {
    let mut sales = BTreeMap::new();
    for order in orders.iter().filter(|o| o["status"] == "confirmed") {
        for line in order["items"].as_array().unwrap() {
            let entry = sales.entry(line["sku"].as_str().unwrap().to_owned()).or_insert((0, 0, 0));
            entry.0 += line["quantity"].as_u64().unwrap();
            entry.1 += 1;
            let cents = line["line_total"].as_str().unwrap().replace('.', "");
            entry.2 += cents.parse::<i64>().unwrap();
        }
    }
    sales
}

async fn reports_add_up_to_what_the_store_holds(engines: Engines) {
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), Arc::new(SystemClock), |s| {
        s.admin_token = Some(Secret::new(ADMIN));
    })
    .await;
    let start = UnixMillis(SystemClock.now().0 - 1000);
    app.put_product("crab", "19.99", 100).await;
    app.put_product("tea", "5.00", 100).await;
    let mut ids = Vec::new();
    for (customer, items) in [
        ("顾客甲", vec![("crab", 2)]),
        ("bo", vec![("crab", 1), ("tea", 3)]),
        ("test-decline", vec![("tea", 1)]),
    ] {
        let placed = app.order(customer, &items).await;
        assert_eq!(placed.status, 201, "{:?}", placed.body);
        ids.push(placed.body["order_id"].as_str().unwrap().to_owned());
    }
    for (id, status) in ids.iter().zip(["confirmed", "confirmed", "cancelled"]) {
        app.wait_for_status(id, status).await;
    }
    let end = UnixMillis(SystemClock.now().0 + 1000);

    // Merchant or admin only.
    let body = json!({"kind": "sales_by_sku", "from": iso(start), "to": iso(end)});
    let anonymous =
        app.send(reqwest::Client::new().post(app.url("/api/reports")).json(&body)).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));

    // Sales by SKU, CSV: equal to the confirmed orders' lines.
    let asked = ask(&app, &body).await;
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    assert_eq!(asked.body["status"], "queued");
    let id = asked.body["report_id"].as_str().unwrap().to_owned();
    assert_eq!(asked.headers["location"], format!("/api/reports/{id}"));
    let report = done(&app, &id).await;
    assert_eq!((report["percent"].as_u64(), report["rows_done"].as_u64()), (Some(100), Some(2)));
    // Every order in the range, counted in slices of it (services/reports, count_orders).
    assert_eq!(report["rows_estimated"], 3, "{report}");
    assert!(report["expires_at"].is_string() && report["download_url"].is_string(), "{report}");
    let (headers, bytes) = download(&app, &id).await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"sales_by_sku-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let orders: Vec<Value> = {
        let mut all = Vec::new();
        for id in &ids {
            all.push(
                app.send(app.client.get(app.url(&format!("/api/orders/{id}"))).bearer_auth(ADMIN))
                    .await
                    .body,
            );
        }
        all
    };
    let mut csv = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(csv.headers().unwrap(), vec!["sku", "units", "orders", "revenue"]);
    let mut reported = BTreeMap::new();
    for row in csv.records() {
        let row = row.unwrap();
        let cents: i64 = row[3].replace('.', "").parse().unwrap();
        reported
            .insert(row[0].to_owned(), (row[1].parse().unwrap(), row[2].parse().unwrap(), cents));
    }
    assert_eq!(reported, sales_of(&orders), "the report's totals are the store's");
    assert_eq!(reported["crab"], (3, 2, 5997));

    // Orders, XLSX, filtered: one row per confirmed order, numbers as numbers, Chinese intact.
    let asked = ask(
        &app,
        &json!({"kind": "orders", "from": start.0, "to": end.0, "format": "xlsx", "filters": {"status": "confirmed"}}),
    )
    .await;
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    let id = asked.body["report_id"].as_str().unwrap().to_owned();
    assert_eq!(done(&app, &id).await["rows_done"], 2);
    let (headers, bytes) = download(&app, &id).await;
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml").unwrap().read_to_string(&mut sheet).unwrap();
    assert!(
        sheet.contains(&ids[0]) && sheet.contains(&ids[1]) && !sheet.contains(&ids[2]),
        "{sheet}"
    );
    assert!(sheet.contains("顾客甲"), "Chinese text intact");
    assert!(
        sheet.contains("<v>39.98</v>") && sheet.contains("<v>34.99</v>"),
        "totals as numbers: {sheet}"
    );

    // Payments: what became of each order's money.
    let asked = ask(&app, &json!({"kind": "payments", "from": iso(start), "to": iso(end)})).await;
    let id = asked.body["report_id"].as_str().unwrap().to_owned();
    assert_eq!(done(&app, &id).await["rows_done"], 3);
    let (_, bytes) = download(&app, &id).await;
    let mut csv = csv::Reader::from_reader(bytes.as_slice());
    let outcomes: BTreeMap<String, (String, String)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), (r[3].to_owned(), r[4].to_owned()))
        })
        .collect();
    assert_eq!(outcomes[&ids[0]], ("39.98".to_owned(), "paid".to_owned()));
    assert_eq!(outcomes[&ids[2]].1, "not_paid", "the declined order");

    // Deals: one row per deal created in the range, with its members.
    let deal = app
        .post(
            "/api/deals",
            &json!({"sku": "crab", "deal_price": "9.90", "group_size": 3, "expires_in": "1h"}),
        )
        .await;
    assert_eq!(deal.status, 201, "{:?}", deal.body);
    let deal_id = deal.body["deal_id"].as_str().unwrap().to_owned();
    let joined =
        app.post(&format!("/api/deals/{deal_id}/join"), &json!({"customer_id": "dee"})).await;
    assert_eq!(joined.status, 201, "{:?}", joined.body);
    let until = UnixMillis(SystemClock.now().0 + 1000);
    let asked =
        ask(&app, &json!({"kind": "deals", "from": iso(start), "to": iso(until), "format": "csv"}))
            .await;
    let id = asked.body["report_id"].as_str().unwrap().to_owned();
    assert_eq!(done(&app, &id).await["rows_done"], 1);
    let (_, bytes) = download(&app, &id).await;
    let text = String::from_utf8(bytes).unwrap();
    let row = text.lines().nth(1).unwrap().to_owned();
    assert!(row.starts_with(&deal_id) && row.contains(",crab,9.90,3,1,open,"), "{text}");

    // format and filters may be null: csv, no filter (as the document says).
    let nulls = json!({"kind": "orders", "from": iso(start), "to": iso(end), "format": null, "filters": null});
    let asked = ask(&app, &nulls).await;
    assert_eq!(
        (asked.status, asked.body["format"].as_str()),
        (202, Some("csv")),
        "{:?}",
        asked.body
    );

    // An empty range: done, with the header row only.
    let before = UnixMillis(start.0 - 86_400_000);
    let asked = ask(
        &app,
        &json!({"kind": "orders", "from": iso(before), "to": iso(UnixMillis(before.0 + 1000))}),
    )
    .await;
    let id = asked.body["report_id"].as_str().unwrap().to_owned();
    assert_eq!(done(&app, &id).await["rows_done"], 0);
    let (_, bytes) = download(&app, &id).await;
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "order_id,created_at,customer_id,status,items,units,total\r\n"
    );

    // Refusals.
    for (body, status, code) in [
        (
            json!({"kind": "everything", "from": iso(start), "to": iso(end)}),
            422,
            "invalid_report_kind",
        ),
        (
            json!({"kind": "orders", "from": iso(end), "to": iso(start)}),
            422,
            "invalid_report_range",
        ),
        (
            json!({"kind": "orders", "from": "yesterday", "to": iso(end)}),
            422,
            "invalid_report_range",
        ),
        (
            json!({"kind": "orders", "from": iso(start), "to": iso(end), "format": "pdf"}),
            422,
            "invalid_report_format",
        ),
        (
            json!({"kind": "sales_by_sku", "from": iso(start), "to": iso(end), "filters": {"status": "confirmed"}}),
            422,
            "invalid_report_filter",
        ),
        (
            json!({"kind": "orders", "from": iso(start), "to": iso(end), "filters": {"status": "shipped"}}),
            422,
            "invalid_report_filter",
        ),
        (
            json!({"kind": "deals", "from": iso(start), "to": iso(end), "filters": {"status": "confirmed"}}),
            422,
            "invalid_report_filter",
        ),
        (
            json!({"kind": "orders", "from": iso(start), "to": iso(end), "extra": 1}),
            422,
            "invalid_request",
        ),
    ] {
        let reply = ask(&app, &body).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {:?}", reply.body);
    }
    let missing = app.get("/api/reports/01900000-0000-7000-8000-000000000000").await;
    assert_eq!((missing.status, missing.code()), (404, "report_not_found"));
    let bad = app.get("/api/reports/not-an-id/download").await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_report_id"));
    app.stop().await;
}

async fn a_report_expires_with_its_file(engines: Engines) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let app = spawn_app_on(engines, tempfile::tempdir().unwrap(), clock.clone(), |s| {
        s.reports.keep = HumanDuration::from_secs(600);
        s.reports.sweep_interval = HumanDuration::from_millis(50);
    })
    .await;
    let now = clock.now();
    let asked = ask(&app, &json!({"kind": "orders", "from": iso(UnixMillis(now.0 - 1000)), "to": iso(UnixMillis(now.0 + 1000))})).await;
    let id = asked.body["report_id"].as_str().unwrap().to_owned();
    let report = done(&app, &id).await;
    assert_eq!(report["expires_at"], iso(UnixMillis(report_finished(&report) + 600_000)));
    clock.advance(Duration::from_secs(601));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let gone = app.get(&format!("/api/reports/{id}")).await;
        if gone.status == 404 {
            assert_eq!(gone.code(), "report_not_found");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not removed: {:?}", gone.body);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let file = app.get(&format!("/api/reports/{id}/download")).await;
    assert_eq!((file.status, file.code()), (404, "report_not_found"));
    app.stop().await;
}

fn report_finished(report: &Value) -> i64 {
    let at = humantime::parse_rfc3339(report["finished_at"].as_str().unwrap()).unwrap();
    i64::try_from(at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_nobody_runs_yet_is_not_ready() {
    // No consumer of reports here (the binding is left out): the report stays queued.
    let app = support::spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.topology.0.retain(|b| b.queue != "reports");
    })
    .await;
    let now = SystemClock.now();
    let asked = ask(
        &app,
        &json!({"kind": "orders", "from": iso(UnixMillis(now.0 - 1000)), "to": iso(now)}),
    )
    .await;
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    let id = asked.body["report_id"].as_str().unwrap();
    let early = app.get(&format!("/api/reports/{id}/download")).await;
    assert_eq!((early.status, early.code()), (409, "not_ready"));
    let status = app.get(&format!("/api/reports/{id}")).await;
    assert_eq!(
        (status.body["status"].as_str(), status.body["percent"].as_u64()),
        (Some("queued"), Some(0))
    );
    assert!(status.body.get("download_url").is_none());
    app.stop().await;
}
