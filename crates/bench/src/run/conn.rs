//! One keep-alive HTTP/1.1 connection per load task: the target's address, connecting, and one
//! request/answer exchange.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::BenchError;

/// The sending half of one connection.
pub(crate) type Sender = SendRequest<Full<Bytes>>;

// A connect that takes this long is a dead address, not a slow server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server to send load to, resolved once so that no task looks the name up again.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The URL as given, for messages and the report.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header every request carries.
    pub host: HeaderValue,
    /// What to start when the address does not answer.
    hint: String,
}

impl Endpoint {
    /// Parses `url` (given with `flag`) and resolves its host.
    ///
    /// `start_with` is the command that starts a server there, for the error when none is.
    pub(crate) async fn resolve(
        url: &str,
        flag: &str,
        start_with: &str,
    ) -> Result<Endpoint, BenchError> {
        let invalid = |why: &str| BenchError::InvalidArgs(format!("{flag} {url:?} {why}"));
        let uri: Uri =
            url.parse().map_err(|_| invalid("is not a URL like http://127.0.0.1:8080"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "uses https; ordermill serves plain HTTP, so point the bench at it directly",
                ));
            }
            _ => return Err(invalid("needs the http:// scheme, e.g. http://127.0.0.1:8080")),
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid("has no host, e.g. http://127.0.0.1:8080"));
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("must be a base URL without a path, e.g. http://127.0.0.1:8080"));
        }
        if authority.as_str().contains('@') {
            return Err(invalid("carries credentials, which the bench would not send"));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| invalid("has a host that cannot be sent in a Host header"))?;
        let port = authority.port_u16().unwrap_or(80);
        let name = authority.host().trim_start_matches('[').trim_end_matches(']');
        let hint = format!("is a server running there? Start one with `{start_with} {authority}`");
        let unknown = |cause| BenchError::Unreachable {
            target: url.to_owned(),
            cause,
            hint: "check the host name".to_owned(),
        };
        let addr = tokio::net::lookup_host((name, port))
            .await
            .map_err(unknown)?
            .next()
            .ok_or_else(|| unknown(std::io::ErrorKind::NotFound.into()))?;
        Ok(Endpoint { url: url.to_owned(), addr, host, hint })
    }

    /// Opens a connection, turning failure into an error that says what to start.
    pub(crate) async fn connect_or_explain(&self) -> Result<Sender, BenchError> {
        connect(self.addr).await.map_err(|error| match error {
            ConnectError::Io(cause) => {
                BenchError::Unreachable { target: self.url.clone(), cause, hint: self.hint.clone() }
            }
            ConnectError::Http(source) => {
                BenchError::Handshake { target: self.url.clone(), source }
            }
        })
    }

    /// A request to this endpoint with a JSON body.
    pub(crate) fn request(&self, method: Method, path: Uri, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = path;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// TCP connect failed or timed out.
    Io(std::io::Error),
    /// HTTP/1.1 handshake failed.
    Http(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(error) => error.fmt(f),
            ConnectError::Http(error) => error.fmt(f),
        }
    }
}

/// Opens one keep-alive connection and drives it on its own task.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(ConnectError::Io)?;
    // Orders are small writes; Nagle would hold each one back waiting for the last ACK.
    stream.set_nodelay(true).map_err(ConnectError::Io)?;
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(ConnectError::Http)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "A bench connection closed with an error.");
        }
    });
    Ok(sender)
}

/// Sends `request` and reads the whole answer; the body is kept only when `keep_body`.
///
/// Dropping the future mid-way closes the connection (HTTP/1 cannot abandon one request).
pub(crate) async fn exchange(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
    keep_body: bool,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    exchange_with(sender, request, |_| keep_body).await
}

/// Like [`exchange`], but whether the body is kept is decided by `keep_body` from the status,
/// so that a caller sampling some answers copies only the bodies it samples.
pub(crate) async fn exchange_with(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
    keep_body: impl FnOnce(StatusCode) -> bool,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    if keep_body(status) {
        return Ok((status, body.collect().await?.to_bytes()));
    }
    // Read to the end, or the connection cannot carry the next request; nothing is kept, so
    // nothing is concatenated.
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok((status, Bytes::new()))
}
