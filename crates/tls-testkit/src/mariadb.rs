//! A MariaDB server of the test's own that ends TLS itself, with a certificate the test's CA
//! signed, and takes no connection without TLS (`require_secure_transport`). MySQL negotiates
//! TLS inside its own handshake, after the server's greeting, so a front like
//! [`crate::TestCa::front`] cannot stand before the shared server; this is the real server
//! instead, in a temporary directory, on a free loopback port, stopped on drop.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestCa;

/// The user tests log in as.
pub const USER: &str = "ordermill";

/// A running private MariaDB where [`USER`] (no password, every privilege) logs in over TLS
/// only.
pub struct TlsMariadb {
    child: Child,
    dir: tempfile::TempDir,
    /// Its loopback port.
    pub port: u16,
}

impl TlsMariadb {
    /// Initialises a data directory and starts the server on it, presenting `ca`'s server
    /// certificate. Panics, with the server's error log, when it does not start within 60 s.
    pub fn start(ca: &TestCa) -> TlsMariadb {
        let dir = tempfile::Builder::new().prefix("ordermill-mariadb-").tempdir().unwrap();
        let path = dir.path().to_path_buf();
        for (name, pem) in [
            ("ca.pem", &ca.pem),
            ("server.pem", &ca.server_cert_pem),
            ("server-key.pem", &ca.server_key_pem),
        ] {
            std::fs::write(path.join(name), pem).unwrap();
        }
        let data = path.join("data");
        let installed = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", data.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect(
                "mariadb-install-db runs (apt-get install mariadb-server; .ci/services.sh does)",
            );
        assert!(
            installed.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let arg = |name: &str, file: &Path| format!("--{name}={}", file.display());
        let child = Command::new(mariadbd())
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(arg("datadir", &data))
            .arg(arg("socket", &path.join("sock")))
            .arg(arg("pid-file", &path.join("pid")))
            .arg(arg("log-error", &path.join("error.log")))
            .arg(arg("ssl-ca", &path.join("ca.pem")))
            .arg(arg("ssl-cert", &path.join("server.pem")))
            .arg(arg("ssl-key", &path.join("server-key.pem")))
            .args([
                "--require-secure-transport=ON",
                // Clients are who they say from their address (127.0.0.1), not a name looked up.
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let server = TlsMariadb { child, dir, port };
        server.wait_listening();
        // root logs in over the socket as the system's root; the tests' user over TCP.
        let created = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", path.join("sock").display()))
            .args(["-u", "root", "-e"])
            .arg(format!("CREATE USER '{USER}'@'%'; GRANT ALL ON *.* TO '{USER}'@'%'"))
            .output()
            .expect("the mariadb client runs");
        assert!(
            created.status.success(),
            "could not create the tests' user: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        server
    }

    /// [`TlsMariadb::start`] off the async runtime's threads (it waits for the server).
    pub async fn spawn(ca: TestCa) -> TlsMariadb {
        tokio::task::spawn_blocking(move || TlsMariadb::start(&ca)).await.unwrap()
    }

    /// `mysql://USER@127.0.0.1:PORT/mysql`: a store URL without TLS parameters, for a test to
    /// add its `ssl-mode` to.
    pub fn url(&self) -> String {
        format!("mysql://{USER}@127.0.0.1:{}/mysql", self.port)
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("error.log"));
                panic!("the private MariaDB did not listen within 60 s: {log:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TlsMariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary: `mariadbd` where the package puts it, else on the PATH.
fn mariadbd() -> &'static str {
    ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .unwrap_or("mariadbd")
}
