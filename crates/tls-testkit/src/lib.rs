//! Tests only. A certificate authority made for one run, a server certificate it signed for
//! 127.0.0.1 and `localhost`, and a TLS front that ends TLS on a port of its own and passes
//! the bytes on to a plain server — what a managed engine with in-transit encryption, or an
//! engine's own TLS port, looks like to a client (PostgreSQL's, which asks for TLS inside its
//! own protocol first, too). The engines behind stay the real ones.

#![allow(clippy::unwrap_used)] // test support: a panic is the failure report

pub mod mariadb;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::PrivateKeyDer;
pub use tokio_rustls::TlsAcceptor;

/// A CA made for this run and an acceptor presenting a certificate it signed.
pub struct TestCa {
    /// The CA's certificate, PEM: what a client must trust.
    pub pem: String,
    /// Accepts TLS with the server certificate for 127.0.0.1 and `localhost`.
    pub acceptor: TlsAcceptor,
    /// That server certificate and its private key (PKCS#8), PEM: for a server that ends TLS
    /// itself.
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestCa {
    /// A fresh CA and a server certificate for 127.0.0.1 and `localhost`.
    pub fn new() -> TestCa {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ordermill test CA");
        let ca_key = KeyPair::generate().unwrap();
        let pem = ca.self_signed(&ca_key).unwrap().pem();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &Issuer::new(ca, ca_key))
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        TestCa {
            pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            server_cert_pem: leaf.pem(),
            server_key_pem: leaf_key.serialize_pem(),
        }
    }

    /// The CA's certificate in a PEM file of its own, removed on drop: what a client's
    /// `ca_file`, `sslrootcert` or `ssl-ca` names.
    pub fn pem_file(&self) -> tempfile::TempPath {
        let file = tempfile::Builder::new()
            .prefix("ordermill-test-ca-")
            .suffix(".pem")
            .tempfile()
            .unwrap();
        std::fs::write(file.path(), &self.pem).unwrap();
        file.into_temp_path()
    }

    /// Ends TLS on a fresh loopback port and relays each session to the plain server at
    /// `upstream` (`host:port`). Returns the port and a count of the sessions relayed.
    pub async fn front(&self, upstream: String) -> (u16, Arc<AtomicUsize>) {
        self.serve(upstream, Handshake::Tls).await
    }

    /// [`TestCa::front`] before the broker of `amqp_url` (`amqp://user:pass@host[:port]/vhost`):
    /// the same user, password and vhost as an `amqps://` URL to the front, and the count of
    /// sessions relayed.
    pub async fn front_amqp(&self, amqp_url: &str) -> (String, Arc<AtomicUsize>) {
        let rest = amqp_url.strip_prefix("amqp://").unwrap();
        let (userinfo, rest) = rest.rsplit_once('@').unwrap();
        let (authority, vhost) = rest.split_once('/').unwrap_or((rest, "%2f"));
        let upstream = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:5672")
        };
        let (port, relayed) = self.front(upstream).await;
        (format!("amqps://{userinfo}@127.0.0.1:{port}/{vhost}"), relayed)
    }

    /// [`TestCa::front`] for PostgreSQL, whose clients ask for TLS inside its own protocol
    /// first (an `SSLRequest`, answered `S`) and then start the handshake on the same
    /// connection. A client that does not ask is dropped: this front speaks only TLS.
    pub async fn front_postgres(&self, upstream: String) -> (u16, Arc<AtomicUsize>) {
        self.serve(upstream, Handshake::PostgresSslRequest).await
    }

    async fn serve(&self, upstream: String, handshake: Handshake) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed = Arc::new(AtomicUsize::new(0));
        let (acceptor, count) = (self.acceptor.clone(), relayed.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (acceptor, upstream, count) =
                    (acceptor.clone(), upstream.clone(), count.clone());
                tokio::spawn(async move {
                    if handshake == Handshake::PostgresSslRequest
                        && !answer_ssl_request(&mut tcp).await
                    {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        (port, relayed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Handshake {
    Tls,
    PostgresSslRequest,
}

/// PostgreSQL's `SSLRequest`: length 8, then the request code 1234.5679 as two 16-bit halves.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Reads the client's first message; answers `S` (TLS follows) when it is an `SSLRequest`.
async fn answer_ssl_request(tcp: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut first = [0u8; 8];
    if tcp.read_exact(&mut first).await.is_err() || first != SSL_REQUEST {
        return false;
    }
    tcp.write_all(b"S").await.is_ok()
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
