//! The HTTP edge: accepting connections with a cap, hyper's header-read timeout (which also
//! closes keep-alive connections idle that long, since hyper arms it whenever it waits for a
//! request head), and a graceful stop that lets in-flight requests finish.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never fires there and a client
//! that sends headers one byte a minute holds a connection forever (slowloris); this loop is
//! the same as axum's plus those limits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// When a request's head was read: the start of its wait, for `http.max_queue_wait`.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub std::time::Instant);

/// Limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// A request head not complete within this long, or a keep-alive connection idle this
    /// long, is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the requests in flight.
///
/// # Errors
/// Never today (accept errors are logged and retried); kept as `io::Result` for the caller.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: give connections time to close.
                    tracing::warn!(error = %error, "Accepting a connection failed; retrying shortly.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request.extensions_mut().insert(Arrived(std::time::Instant::now()));
            request.map(axum::body::Body::new)
        });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, peer = %peer, "A connection ended with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
