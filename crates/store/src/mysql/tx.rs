//! Running a transaction again when InnoDB undid it for a lock conflict (deadlock 1213, lock
//! wait timeout 1205). A deadlock rolls the whole transaction back; a lock wait timeout only
//! the statement, and the loop rolls back the rest. Nothing of the attempt stays, so running
//! it again from the start is safe, and a caller never sees a failed order for bad timing.

use std::time::Duration;

/// Attempts before the conflict is reported (as `Unavailable`, which callers retry later).
pub(crate) const ATTEMPTS: u32 = 6;

/// How long to wait before attempt `attempt + 1`: a few ms, growing, so two transactions that
/// just deadlocked do not meet again at once.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 8);
    Duration::from_millis(u64::from(attempt) * 4 + jitter)
}

/// `transaction!(conn, |tx| future)`: begins a transaction on `conn` (a `&mut
/// MySqlConnection`), awaits `future` (which uses `tx` and returns `Result<T, TxError>`),
/// commits, and starts over on a transient failure up to [`ATTEMPTS`] times. Evaluates to
/// `Result<T, StoreError>`. The attempts together are bounded by the call's deadline
/// (`crate::deadline`).
macro_rules! transaction {
    ($conn:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut $tx = match sqlx::Connection::begin(&mut *$conn).await {
                Ok(tx) => tx,
                Err(error) => break Err($crate::mysql::error::from_sqlx(error)),
            };
            let outcome: Result<_, $crate::mysql::error::TxError> = $body.await;
            let outcome = match outcome {
                Ok(value) => $tx.commit().await.map(|()| value).map_err(Into::into),
                Err(error) => {
                    // Rolled back here, not by dropping: the connection goes back clean.
                    let _ = $tx.rollback().await;
                    Err(error)
                }
            };
            match outcome {
                Ok(value) => break Ok(value),
                Err(error) if error.is_transient() && attempt < $crate::mysql::tx::ATTEMPTS => {
                    tracing::debug!(attempt, error = ?error, "MySQL transaction hit a lock conflict; running it again.");
                    tokio::time::sleep($crate::mysql::tx::backoff(attempt)).await;
                }
                Err(error) => break Err(error.into_store()),
            }
        }
    }};
}

pub(crate) use transaction;
