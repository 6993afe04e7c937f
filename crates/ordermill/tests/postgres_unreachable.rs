//! PostgreSQL (and MySQL, for silent connections) becomes unreachable under order load while
//! the database itself keeps running. One `ordermill api` and one `ordermill worker` reach it
//! through a proxy this test owns, so nothing else sharing the server is touched. Two ways:
//! - for 5 s every connection is dropped and every new one refused (a network cut, a proxy or
//!   a pooler restarting);
//! - every open connection goes silent for good — kept open, never forwarded again — while new
//!   ones work (a frozen proxy, a cut that drops packets on the old path): only the nodes'
//!   deadline on each call (`postgres.query_timeout`, `mysql.query_timeout`) gets them off the
//!   silent connections.
//!
//! Afterwards: every order answered 201 ends confirmed, every effect happened once, nothing is
//! dead-lettered, the hot-stock count matches the store, and selling resumed without a restart.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL
//! (and ORDERMILL_TEST_MYSQL_URL for the MySQL case); skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::scaled::{Deployment, Load, Services, put_product, wait_ready};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

const SKU: &str = "zongzi";
const STOCK: i64 = 100_000;

/// A TCP proxy to the database that can cut every connection through it and refuse new ones,
/// or silence every connection open now.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    /// Bumped to silence every link opened before.
    silence: watch::Sender<u64>,
    /// Silenced links' sockets, held open and never read.
    graves: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let graves: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::default();
        let (silence, silenced) = watch::channel(0u64);
        let (cut_flag, live, buried) = (cut.clone(), links.clone(), graves.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let mut silenced = silenced.clone();
                let born = *silenced.borrow_and_update();
                let buried = buried.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let silent = tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                            _ = silenced.wait_for(|now| *now > born) => true,
                        };
                        if silent {
                            buried.lock().unwrap().push((inbound, outbound));
                        }
                    }
                });
                live.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Proxy { addr, cut, links, accept, silence, graves }
    }

    /// Closes the silenced links' sockets when dropped: declared after the deployment, it goes
    /// first, so the deployment's clean-up (a DROP SCHEMA) never waits on their sessions.
    fn graves_closer(&self) -> GravesCloser {
        GravesCloser(self.graves.clone())
    }

    /// Every connection open now stops forwarding anything, in either direction, and stays
    /// open; connections made after this work.
    fn silence_open_links(&self) {
        self.silence.send_modify(|generation| *generation += 1);
    }

    /// Drops every connection through the proxy and refuses new ones for `outage`.
    async fn cut_for(&self, outage: Duration) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
        tokio::time::sleep(outage).await;
        self.cut.store(false, Ordering::SeqCst);
    }
}

struct GravesCloser(Arc<Mutex<Vec<(TcpStream, TcpStream)>>>);

impl Drop for GravesCloser {
    fn drop(&mut self) {
        self.0.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.graves.lock().unwrap().clear();
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// The host and port `url` names (`default_port` when it names none).
async fn upstream_of(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:{default_port}") };
    tokio::net::lookup_host(host).await.unwrap().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_five_seconds_loses_no_order_and_repeats_no_effect() {
    let Some(mut services) = Services::from_env() else { return };
    let proxy = Proxy::start(upstream_of(&services.postgres, 5432).await).await;
    services.postgres = through(&services.postgres, proxy.addr);
    let (deployment, mut api, mut worker) =
        Deployment::one_api_one_worker(services, SKU, STOCK).await;
    let base = api.url("");

    let worker_ready = worker.url("/readyz");
    wait_ready(&worker_ready, Duration::from_secs(10)).await;
    // Its start, as an operator's log shipper reads it: fields are values, not Rust debug text.
    let log = std::fs::read_to_string(&worker.log).unwrap();
    let line = |message: &str| -> serde_json::Value {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|entry| entry["message"].as_str().is_some_and(|m| m.starts_with(message)))
            .unwrap_or_else(|| panic!("no {message:?} line in {log}"))
    };
    let consuming = line("ordermill worker is consuming.");
    assert_eq!(consuming["role"], "worker", "{consuming}");
    assert_eq!(consuming["queues"], "inventory,payment,notify,reports", "{consuming}");
    assert_eq!(line("Payments go to")["gateway"], "simulated");

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let (seed, before) = load.until_a_seeded_moment().await;
    // The worker's /readyz says it cannot work while its store is gone (an answer other than
    // 200, or none within 2 s), and is ready again without a restart.
    let (_, during) = tokio::join!(proxy.cut_for(Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        client.get(&worker_ready).send().await.map(|r| r.status().as_u16()).ok()
    });
    assert_ne!(during, Some(200), "the worker said it was ready while PostgreSQL was cut off");
    load.assert_selling_again(seed).await;
    wait_ready(&worker_ready, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    eprintln!(
        "seed {seed}: {before} accepted before the cut, {} in all; answers {:?}; {} without an \
         answer; samples {:?}; worker /readyz during the cut: {during:?}",
        report.accepted.len(),
        report.statuses,
        report.transport_errors,
        report.samples
    );
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}

/// The api's and the worker's deadline on each call to the database, short for the test.
const QUERY_TIMEOUT: &str = "2s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_gone_silent_are_cut_off_and_lose_no_order() {
    let Some(mut services) = Services::from_env() else { return };
    let proxy = Proxy::start(upstream_of(&services.postgres, 5432).await).await;
    services.postgres = through(&services.postgres, proxy.addr);
    connections_gone_silent(services, proxy, "ORDERMILL_POSTGRES__QUERY_TIMEOUT", "PostgreSQL")
        .await;
}

/// The same on MySQL (MariaDB here): its calls have the same deadline (`mysql.query_timeout`),
/// and a transaction left open on a silenced connection is ended by the server after it
/// (`idle_transaction_timeout`), or the rows it locked would hold their orders back for hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connections_gone_silent_are_cut_off_and_lose_no_order() {
    let Some(mut services) = Services::from_env_mysql() else { return };
    let mysql = services.mysql.take().unwrap();
    let proxy = Proxy::start(upstream_of(&mysql, 3306).await).await;
    services.mysql = Some(through(&mysql, proxy.addr));
    connections_gone_silent(services, proxy, "ORDERMILL_MYSQL__QUERY_TIMEOUT", "MySQL").await;
}

/// An api and a worker reach the database through `proxy`; under load every connection open
/// through it goes silent for good. Both nodes must be selling and confirming again on new
/// connections, each having logged which call went unanswered, with nothing lost.
async fn connections_gone_silent(
    services: Services,
    proxy: Proxy,
    timeout_env: &str,
    engine: &str,
) {
    let deployment = Deployment::new(services);
    let _graves = proxy.graves_closer();
    deployment.migrate();
    let env = [(timeout_env, QUERY_TIMEOUT)];
    let mut api = deployment.api_with("api", &env).await;
    let mut worker = deployment.worker_with("worker", &env);
    let base = api.url("");
    assert!(put_product(&base, SKU, STOCK).await.is_success());
    wait_ready(&worker.url("/readyz"), Duration::from_secs(10)).await;

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let (seed, before) = load.until_a_seeded_moment().await;
    proxy.silence_open_links();
    let silenced_at = std::time::Instant::now();
    // Without the deadline, no order is taken again (measured on PostgreSQL: none for the
    // 60 s watched).
    load.assert_selling_again(seed).await;
    let back_after = silenced_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    let graves = proxy.graves.lock().unwrap().len();
    eprintln!(
        "{engine}, seed {seed}: {before} accepted before {graves} connections went silent, \
         selling again {back_after:?} after, {} in all; answers {:?}; {} without an answer; \
         samples {:?}",
        report.accepted.len(),
        report.statuses,
        report.transport_errors,
        report.samples
    );
    assert!(graves > 0, "connections were open through the proxy when it went silent");
    deployment.assert_nothing_lost(&base, &report, SKU, STOCK).await;
    // What a node logs when a call misses its deadline.
    let unanswered = format!(
        "{engine} did not answer a call in time; closed its connection, and later calls go to \
         new connections."
    );
    for (name, node) in [("api", &api), ("worker", &worker)] {
        assert!(
            !node.logged(&unanswered).is_empty(),
            "the {name} said which call went unanswered: {:?}",
            node.warnings()
        );
    }
    assert!(api.running() && worker.running(), "ordermill recovered without a restart");
}
