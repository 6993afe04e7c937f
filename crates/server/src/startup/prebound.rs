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

/// The port a node bound before building itself: an api node's `listen`, a worker's
/// `workers.metrics_listen` (none for a worker without it).
#[derive(Default)]
pub(super) struct Prebound(Option<Bound>);

struct Bound {
    listener: std::net::TcpListener,
    /// The address as configured (port 0 stays 0), which [`Prebound::listener`] is asked for.
    asked: SocketAddr,
    /// The address as bound, for the log.
    local: SocketAddr,
    /// Whether it is a worker's `/metrics` port (the log names it `metrics`, not `listen`).
    metrics: bool,
}

impl Prebound {
    /// Binds the port `role` serves on.
    pub(super) async fn bind(settings: &Settings, role: &Role) -> Result<Prebound, StartError> {
        let (asked, metrics) = match (role, settings.workers.metrics_listen) {
            (Role::All | Role::Api, _) => (settings.listen, false),
            (Role::Worker { .. }, Some(addr)) => (addr, true),
            (Role::Worker { .. }, None) => return Ok(Prebound::default()),
        };
        let bind_error = |source| StartError::Bind { addr: asked, source };
        let listener = super::listener::bind(asked)
            .await
            .and_then(TcpListener::into_std)
            .map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(Prebound(Some(Bound { listener, asked, local, metrics })))
    }

    /// A listener on `addr`: another handle on the socket bound here for it, or a new one.
    pub(super) async fn listener(&self, addr: SocketAddr) -> Result<TcpListener, StartError> {
        match &self.0 {
            Some(bound) if bound.asked == addr => bound.duplicate(),
            _ => super::listener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source }),
        }
    }

    /// Logs where the stand-in answers (once, when the node starts waiting).
    pub(super) fn log_answering(&self) {
        match &self.0 {
            Some(Bound { local, metrics: false, .. }) => {
                tracing::info!(listen = %local, "Answering probes while waiting for the engines.");
            }
            Some(Bound { local, metrics: true, .. }) => {
                tracing::info!(metrics = %local, "Answering probes while waiting for the engines.");
            }
            None => {}
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
        let Some(bound) = &self.0 else { return Ok(StandIn { stop, task: None }) };
        let limits = EdgeLimits {
            header_read_timeout: settings.http.header_read_timeout.get(),
            max_connections: STAND_IN_CONNECTIONS,
        };
        let router = http::starting::router(waiting, telemetry::install());
        let task = tokio::spawn(http::serve::serve(
            bound.duplicate()?,
            router,
            limits,
            stop.clone().cancelled_owned(),
        ));
        Ok(StandIn { stop, task: Some(task) })
    }
}

impl Bound {
    /// Another handle on the same listening socket, for the runtime.
    fn duplicate(&self) -> Result<TcpListener, StartError> {
        self.listener
            .try_clone()
            .and_then(TcpListener::from_std)
            .map_err(|source| StartError::Bind { addr: self.asked, source })
    }
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
