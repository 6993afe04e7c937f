//! sqlx errors mapped to the [`StoreError`] variants callers branch on.

use ordermill_core::ports::StoreError;

pub(crate) fn from_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // unique_violation: an idempotency key or an event id already stored.
            Some("23505") => StoreError::Conflict(db.message().to_owned()),
            // ordermill_require_stock (0004): a hold beyond stock.
            Some("OMOVR") => StoreError::Oversold(db.message().to_owned()),
            // ordermill_require_limit (0006): a customer past a SKU's limit.
            Some("OMLIM") => StoreError::LimitExceeded(db.message().to_owned()),
            // Serialization failure, deadlock: the transaction was rolled back whole and the
            // same call may succeed when retried.
            Some("40001" | "40P01") => StoreError::Unavailable(format!(
                "PostgreSQL aborted the transaction, retry: {}",
                db.message()
            )),
            // Connection exceptions (08), too many connections / out of resources (53),
            // shutdown or recovery (57P), a read-only standby (25006).
            Some(code)
                if code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "25006" =>
            {
                StoreError::Unavailable(format!("PostgreSQL: {}", db.message()))
            }
            _ => StoreError::Backend(Box::new(error)),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            StoreError::Unavailable(format!("cannot reach PostgreSQL: {error}"))
        }
        _ => StoreError::Backend(Box::new(error)),
    }
}
