//! sqlx errors mapped to the [`StoreError`] variants callers branch on, and which failures a
//! transaction is simply run again for.

use ordermill_core::ports::StoreError;
use sqlx::mysql::MySqlDatabaseError;

/// ER_DUP_ENTRY: a unique or primary key already holds the value.
pub(crate) const DUPLICATE: u16 = 1062;
/// ER_LOCK_DEADLOCK: InnoDB chose this transaction as a deadlock's victim and rolled it back.
const DEADLOCK: u16 = 1213;
/// ER_LOCK_WAIT_TIMEOUT: a row lock was not granted within `innodb_lock_wait_timeout`.
const LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The server's error number, when the error came from the server.
pub(crate) fn number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<MySqlDatabaseError>().map(|e| e.number())
        }
        _ => None,
    }
}

/// Whether InnoDB undid the transaction (or the statement) for lack of a lock, so the same
/// transaction run again from the start may well succeed.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    matches!(number(error), Some(DEADLOCK | LOCK_WAIT_TIMEOUT))
}

pub(crate) fn from_sqlx(error: sqlx::Error) -> StoreError {
    match number(&error) {
        Some(DUPLICATE) => {
            let message = match &error {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            };
            return StoreError::Conflict(message);
        }
        Some(DEADLOCK | LOCK_WAIT_TIMEOUT) => {
            return StoreError::Unavailable(format!(
                "MySQL kept aborting the transaction on lock conflicts, retry: {error}"
            ));
        }
        // Too many connections, server shutting down, read-only (--read-only, a replica),
        // InnoDB in read-only mode, server gone away / lost connection.
        Some(1040 | 1053 | 1290 | 1792 | 1836 | 1874 | 2006 | 2013) => {
            return StoreError::Unavailable(format!("MySQL: {error}"));
        }
        _ => {}
    }
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            StoreError::Unavailable(format!("cannot reach MySQL: {error}"))
        }
        error => StoreError::Backend(Box::new(error)),
    }
}

/// A failure inside a store transaction: the database's, kept whole so the retry loop can
/// tell a lock conflict from the rest, or a refusal the store decided itself.
#[derive(Debug)]
pub(crate) enum TxError {
    Sql(sqlx::Error),
    Store(StoreError),
    /// Another transaction got there first in a way that only running again sorts out (a
    /// concurrent batch recorded the same event); the message says what.
    Raced(&'static str),
}

impl From<sqlx::Error> for TxError {
    fn from(error: sqlx::Error) -> Self {
        TxError::Sql(error)
    }
}

impl From<StoreError> for TxError {
    fn from(error: StoreError) -> Self {
        TxError::Store(error)
    }
}

impl TxError {
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            TxError::Sql(error) => is_transient(error),
            TxError::Raced(_) => true,
            TxError::Store(_) => false,
        }
    }

    pub(crate) fn into_store(self) -> StoreError {
        match self {
            TxError::Sql(error) => from_sqlx(error),
            TxError::Store(error) => error,
            TxError::Raced(what) => StoreError::Unavailable(format!("MySQL: {what}; retry")),
        }
    }
}
