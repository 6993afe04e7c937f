//! What the PostgreSQL and MySQL pools share: when a pooled connection is checked before it
//! is handed out.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::{Connection, Database, Error};

/// A connection used within this long is handed out without a ping.
///
/// sqlx pings every connection it hands out by default: a round trip, and a wake-up of the
/// database's backend, before every transaction — 5% of a worker's CPU under load
/// (`perf`, `scripts/bench/scaled.sh`). Under load connections are never idle that long, so
/// none is pinged; after a quiet spell, when the server may have restarted or dropped them,
/// they are. A connection that breaks within the window fails its transaction with a
/// connection error, which every caller already treats as the store being briefly
/// unavailable (intake answers 503 with nothing written, consumers hold their messages), and
/// the pool then replaces it.
pub(crate) const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long that ping may go unanswered: a connection that went silent while idle (a frozen
/// proxy, a cut that drops packets) is closed after this, and the same acquire goes on to
/// another connection, instead of spending the pool's whole acquire timeout on it.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The pool's `before_acquire`: pings connections idle for [`PING_WHEN_IDLE_FOR`] or more.
pub(crate) fn ping_if_idle<DB: Database>(
    conn: &mut DB::Connection,
    meta: PoolConnectionMetadata,
) -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for >= PING_WHEN_IDLE_FOR {
            tokio::time::timeout(PING_TIMEOUT, conn.ping()).await.map_err(|_| {
                Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to a ping of an idle connection",
                ))
            })??;
        }
        Ok(true)
    })
}
