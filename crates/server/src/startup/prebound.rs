//! A node's port, bound before its engines are reached: while the node waits for them the
//! port answers as [`http::starting`] says, and once the node is built it serves on the same
//! socket (a duplicate of it), so the port never closes between the two.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::app::{Role, StartError};
use super::settings::Settings;
use crate::adapters::http::{self, serve::EdgeLimits};
use crate::telemetry;

/// Connections the stand-in serves at once: probes and a few early clients.
const STAND_IN_CONNECTIONS: usize = 64;
/// How long the stand-in's answers in flight may hold up the node's start once it is built.
const STAND_IN_DRAIN: Duration = Duration::from_secs(1);

/// The listeners a node bound before building itself (none for a worker without
/// `workers.metrics_listen`).
#[derive(Default)]
pub(super) struct Prebound {
    http: Option<(std::net::TcpListener, SocketAddr)>,
    metrics: Option<(std::net::TcpListener, SocketAddr)>,
}

impl Prebound {
    /// Binds the port `role` serves on.
    pub(super) async fn bind(settings: &Settings, role: &Role) -> Result<Prebound, StartError> {
        let bound = |addr: SocketAddr| async move {
            let listener = super::listener::bind(addr)
                .await
                .and_then(TcpListener::into_std)
                .map_err(|source| StartError::Bind { addr, source })?;
            let local =
                listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
            Ok::<_, StartError>((listener, local))
        };
        Ok(match (role, settings.workers.metrics_listen) {
            (Role::All | Role::Api, _) => {
                Prebound { http: Some(bound(settings.listen).await?), metrics: None }
            }
            (Role::Worker { .. }, Some(addr)) => {
                Prebound { http: None, metrics: Some(bound(addr).await?) }
            }
            (Role::Worker { .. }, None) => Prebound::default(),
        })
    }

    /// The API's listener, if bound here.
    pub(super) fn http(&self) -> Result<Option<TcpListener>, StartError> {
        duplicate(self.http.as_ref())
    }

    /// A worker's `/metrics` listener, if bound here.
    pub(super) fn metrics(&self) -> Result<Option<TcpListener>, StartError> {
        duplicate(self.metrics.as_ref())
    }

    /// Logs where the stand-in answers (once, when the node starts waiting).
    pub(super) fn log_answering(&self) {
        if let Some((_, addr)) = &self.http {
            tracing::info!(listen = %addr, "Answering probes while waiting for the engines.");
        }
        if let Some((_, addr)) = &self.metrics {
            tracing::info!(metrics = %addr, "Answering probes while waiting for the engines.");
        }
    }

    /// Starts answering on the bound port while the node waits; `waiting` names the setting
    /// of the engine it waits for.
    pub(super) fn stand_in(
        &self,
        settings: &Settings,
        waiting: watch::Receiver<Option<&'static str>>,
    ) -> Result<StandIn, StartError> {
        let stop = CancellationToken::new();
        let Some(listener) = self.http()?.or(self.metrics()?) else {
            return Ok(StandIn { stop, task: None });
        };
        let limits = EdgeLimits {
            header_read_timeout: settings.http.header_read_timeout.get(),
            max_connections: STAND_IN_CONNECTIONS,
        };
        let router = http::starting::router(waiting, telemetry::install());
        let task = tokio::spawn(http::serve::serve(
            listener,
            router,
            limits,
            stop.clone().cancelled_owned(),
        ));
        Ok(StandIn { stop, task: Some(task) })
    }
}

/// Another handle on the same listening socket, for the runtime.
fn duplicate(
    bound: Option<&(std::net::TcpListener, SocketAddr)>,
) -> Result<Option<TcpListener>, StartError> {
    bound
        .map(|(listener, addr)| {
            listener
                .try_clone()
                .and_then(TcpListener::from_std)
                .map_err(|source| StartError::Bind { addr: *addr, source })
        })
        .transpose()
}

/// The stand-in serving while the node waits.
pub(super) struct StandIn {
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl StandIn {
    /// Stops accepting at once; answers in flight get [`STAND_IN_DRAIN`] to finish before the
    /// node goes on without waiting for them.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = tokio::time::timeout(STAND_IN_DRAIN, task).await;
        }
    }
}
