//! A worker gives declined orders' units back in PostgreSQL but never in Redis: it has lost
//! Redis (a proxy this test owns cuts that worker alone off) and is then killed (SIGKILL), so
//! nothing it remembered can make up for it. The units are not lost for sale: the store noted
//! each return with its effect, the notes outlive the worker, and the api node, finding one
//! older than `redis.return_grace`, has the counts rebuilt from the store. Afterwards Redis
//! offers what the store has (`stock − reserved`) and the units sell again.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::proxy::{Proxy, through, upstream_of};
use support::scaled::{Deployment, Services, get_product, put_product};

const SKU: &str = "yuebing";
const STOCK: i64 = 10;
/// The simulated gateway declines every charge of this customer.
const DECLINED: &str = "test-decline";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_a_killed_worker_never_gave_back_to_redis_are_sold_again() {
    let Some(services) = Services::from_env() else { return };
    let proxy = Proxy::start(upstream_of(&services.redis, 6379).await).await;
    let worker_redis = through(&services.redis, proxy.addr);
    let deployment = Deployment::new(services);
    deployment.migrate();
    let api = deployment.api_with("api", &[("ORDERMILL_REDIS__RETURN_GRACE", "3s")]).await;
    let mut worker = deployment.worker_with("worker", &[("ORDERMILL_CACHE", &worker_redis)]);
    let base = api.url("");
    assert!(put_product(&base, SKU, STOCK).await.is_success());

    proxy.cut();
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let reply = client
            .post(format!("{base}/api/orders"))
            .json(&json!({"customer_id": DECLINED, "items": [{"sku": SKU, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
    }
    // Declined, cancelled and given back in the store; the worker could not tell Redis.
    let mut db = deployment.db().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ledger = deployment.ledger(&mut db).await;
        let cancelled = ledger.by_status.get("cancelled").copied().unwrap_or(0);
        let failed = worker.logged("Could not give released units back to the hot-stock cache; the counts will be rebuilt from the store once the cache answers.");
        if cancelled == 3 && ledger.products[SKU] == (STOCK, 0) && failed.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not given back in the store within 30 s: {:?}, {cancelled} cancelled, {} failed \
             releases; worker warnings {:?}",
            ledger.products,
            failed.len(),
            worker.warnings()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.kill();

    let deadline = Instant::now() + Duration::from_secs(30);
    let healed_in = Instant::now();
    loop {
        let ledger = deployment.ledger(&mut db).await;
        if ledger.stranded(SKU) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis still offers {:?} of the store's {} units 30 s after the worker died; api \
             warnings {:?}",
            ledger.available[SKU],
            STOCK,
            api.warnings()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("counts whole again {:.1?} after the kill", healed_in.elapsed());
    let marked = api.logged("Units given back in the store never reached the hot-stock counts (the node giving them back was killed or lost Redis); marked the counts for a rebuild from the store.");
    assert!(!marked.is_empty(), "the api says why it rebuilt: {:?}", api.warnings());
    assert_eq!(get_product(&base, SKU).await.1["stock_available"], STOCK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client
            .post(format!("{base}/api/orders"))
            .json(&json!({"customer_id": "c-all", "items": [{"sku": SKU, "quantity": STOCK}]}))
            .send()
            .await
            .unwrap();
        // 503 while the rebuild settles, if it is not done yet.
        if reply.status() == 201 {
            break;
        }
        assert_eq!(reply.status(), 503);
        assert!(Instant::now() < deadline, "the whole stock never sold again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ledger = deployment.ledger(&mut db).await;
    assert_eq!(ledger.products[SKU], (STOCK, STOCK), "all of it held by the last order");
    assert_eq!(ledger.stranded(SKU), 0);
    drop(db);
}
