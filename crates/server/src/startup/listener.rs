//! Binding the HTTP listener with an accept queue that holds a crowd.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may hold finished but not yet accepted. tokio's `bind` asks for
/// 1,024: 2,000 clients connecting at once then overflow it, and each dropped handshake costs
/// its client a SYN retransmission (1 s, then 3 s), which shows up as seconds of tail latency
/// for requests ordermill never saw. The kernel caps this at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 65_535;

/// Binds `addr` for serving, with address reuse (a restarted node rebinds at once) and the
/// deep accept queue above.
///
/// # Errors
/// When the address cannot be bound or listened on.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_an_ephemeral_port_and_accepts() {
        let listener = bind("127.0.0.1:0".parse().expect("literal address")).await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let (accepted, connected) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        assert!(accepted.is_ok() && connected.is_ok());
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error() {
        let first = bind("127.0.0.1:0".parse().expect("literal address")).await.expect("bind");
        let taken = first.local_addr().expect("bound");
        assert!(bind(taken).await.is_err(), "a listening address cannot be bound twice");
    }
}
