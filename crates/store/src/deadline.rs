//! Every call to PostgreSQL or MySQL ends within a deadline, and a connection that misses one
//! is closed.
//!
//! A connection whose peer stops answering without closing anything (a network cut that drops
//! packets, a frozen proxy, a stalled server) would otherwise hold the call on it until the
//! operating system gives up on the socket, which takes minutes; sqlx has no socket timeout.
//! Measured before this existed: an api whose PostgreSQL connections went silent took no order
//! for the 60 s watched and logged nothing.
//!
//! Past its deadline a call's connection is dropped, never handed back: its statement may still
//! be on the wire or running, and sqlx pings a connection going back to the pool with no bound,
//! so a silent one would hold its pool slot for good. For the same reason a connection that
//! did answer goes back through a ping bounded by the same deadline. A commit cut off this way
//! has an unclear outcome: the caller reads it back (`batch_stored`, `joined_order`, which wait
//! out a transaction still holding the rows) before it answers.

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::ports::StoreError;
use sqlx::Database;
use sqlx::pool::PoolConnection;
use tokio::time::error::Elapsed;

use crate::pools::Pools;

/// `postgres.query_timeout`'s and `mysql.query_timeout`'s default: far above any statement of
/// the order path (a group commit of hundreds of orders takes milliseconds, tens under
/// contention), so that only a connection that is not answering reaches it.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// For the calls that scan or rebuild whole tables (partition maintenance, a purchase limit's
/// recount, a report's row count, a report file's upload): they run on an operator's request
/// or a timer, never on the order path, and legitimately take long on a large database.
const LONG_CALL: Duration = Duration::from_secs(600);

/// Which deadline a call gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// The store's `query_timeout`: every call of the order path, consumers and relays.
    Query,
    /// [`LONG_CALL`].
    Long,
}

/// What the messages say about the engine behind the calls.
pub(crate) struct Engine {
    /// "PostgreSQL"
    pub(crate) name: &'static str,
    /// The setting that sets the deadline, "postgres.query_timeout".
    pub(crate) setting: &'static str,
    /// How the engine's errors become store errors (a pool timeout is `Unavailable`).
    pub(crate) error: fn(sqlx::Error) -> StoreError,
}

/// A store's pools and the deadline of its calls.
pub(crate) struct Calls<DB: Database> {
    pub(crate) pools: Arc<Pools<DB>>,
    /// `host:port/database` (never the password), for messages.
    pub(crate) target: Arc<str>,
    /// How long a call may go unanswered before its connection is closed.
    pub(crate) query_timeout: Duration,
    pub(crate) engine: Engine,
}

/// Runs `$body`, an expression using `$conn: &mut <the engine's connection>`, on a pooled
/// connection of `$store` (a store with a `calls: Calls<_>` field) within `$limit`'s deadline;
/// `$what` names the call in the warning and the error when it is cut off ("a group commit").
///
/// A macro rather than a function taking a closure: the work borrows both the connection and
/// the caller's arguments, which a closure returning a boxed future cannot express for every
/// connection lifetime.
macro_rules! bounded {
    ($store:expr, $limit:expr, $what:expr, |$conn:ident| $body:expr) => {{
        let calls = &$store.calls;
        let limit = calls.deadline($limit);
        let (generation, mut pooled) = calls.acquire().await?;
        let outcome = {
            let $conn = &mut *pooled;
            tokio::time::timeout(limit, $body).await
        };
        calls.settle(generation, pooled, outcome, $what, limit)
    }};
}
pub(crate) use bounded;

impl<DB: Database> Calls<DB> {
    pub(crate) fn deadline(&self, limit: Limit) -> Duration {
        match limit {
            Limit::Query => self.query_timeout,
            Limit::Long => LONG_CALL.max(self.query_timeout),
        }
    }

    /// A connection from the current pool, and that pool's generation; the pool's own acquire
    /// timeout bounds the wait (and the ping of a connection idle for a while, see
    /// `crate::pool`).
    pub(crate) async fn acquire(&self) -> Result<(u64, PoolConnection<DB>), StoreError> {
        let current = self.pools.current();
        let pooled = current.pool.acquire().await.map_err(self.engine.error)?;
        Ok((current.number, pooled))
    }

    /// The call's result, its connection handed back; or, past the deadline, the connection
    /// closed and the store reported unavailable.
    pub(crate) fn settle<T>(
        &self,
        generation: u64,
        mut pooled: PoolConnection<DB>,
        outcome: Result<Result<T, StoreError>, Elapsed>,
        what: &'static str,
        limit: Duration,
    ) -> Result<T, StoreError> {
        let engine = self.engine.name;
        match outcome {
            Ok(result) => {
                // `return_to_pool` is what dropping the connection would spawn, unbounded;
                // dropping it past the deadline closes the connection and frees its slot.
                // (Public but hidden in sqlx 0.9: an upgrade that removes it fails to build.)
                // Boxed where it is made: the future is ~13 KB (it holds the ping), and moved by
                // value into a task it was copied whole several times, ~80k instructions per
                // call (callgrind; docs/BENCHMARKS.md).
                let back = Box::pin(pooled.return_to_pool());
                drop(pooled);
                tokio::spawn(async move {
                    if tokio::time::timeout(limit, back).await.is_err() {
                        tracing::warn!(
                            timeout_ms = limit.as_millis() as u64,
                            "A {engine} connection did not answer the check made as it went back to the pool; closed it."
                        );
                    }
                });
                result
            }
            Err(_) => {
                // Dropped, not closed politely: a close writes to the socket that stopped
                // answering. The pool opens a new connection when one is next needed.
                drop(pooled.detach());
                let retired = self.pools.retire(generation);
                tracing::warn!(
                    database = %self.target,
                    call = what,
                    timeout_ms = limit.as_millis() as u64,
                    pool_replaced = retired,
                    "{engine} did not answer a call in time; closed its connection, and later calls go to new connections."
                );
                Err(StoreError::Unavailable(format!(
                    "{engine} at {} did not answer {what} within {} ms ({}); its connection was \
                     closed",
                    self.target,
                    limit.as_millis(),
                    self.engine.setting
                )))
            }
        }
    }
}
