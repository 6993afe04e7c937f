//! A TCP proxy a test owns between a node and an engine (PostgreSQL, MySQL, Redis), so the
//! engine can be cut off from that node alone while everything else sharing it goes on.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; a panic is the failure report

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A TCP proxy to an engine that can cut every connection through it and refuse new ones,
/// or silence every connection open now.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    /// Bumped to silence every link opened before.
    silence: watch::Sender<u64>,
    /// Silenced links' sockets, held open and never read.
    pub graves: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
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
    pub fn graves_closer(&self) -> GravesCloser {
        GravesCloser(self.graves.clone())
    }

    /// Every connection open now stops forwarding anything, in either direction, and stays
    /// open; connections made after this work.
    pub fn silence_open_links(&self) {
        self.silence.send_modify(|generation| *generation += 1);
    }

    /// Drops every connection through the proxy and refuses new ones for `outage`.
    pub async fn cut_for(&self, outage: Duration) {
        self.cut();
        tokio::time::sleep(outage).await;
        self.restore();
    }

    /// Drops every connection through the proxy and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Takes new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

pub struct GravesCloser(Arc<Mutex<Vec<(TcpStream, TcpStream)>>>);

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
pub fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// The host and port `url` names (`default_port` when it names none).
pub async fn upstream_of(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:{default_port}") };
    tokio::net::lookup_host(host).await.unwrap().next().unwrap()
}
