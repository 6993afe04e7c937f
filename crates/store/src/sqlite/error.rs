//! rusqlite errors mapped to the variants callers branch on.

use ordermill_core::ports::StoreError;
use rusqlite::ErrorCode;

/// How a write refused for want of disk space begins its message (readiness and operators
/// grep for it).
pub(crate) const DISK_FULL: &str = "the disk holding the data dir is full";

/// Whether `error` is a write refused for want of disk space.
pub(crate) fn is_disk_full(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(message) if message.starts_with(DISK_FULL))
}

pub(crate) fn from_sqlite(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(error.to_string()),
        Some(ErrorCode::DiskFull) => StoreError::Unavailable(format!(
            "{DISK_FULL} ({error}): nothing was written; free space and ordermill resumes by \
             itself"
        )),
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly,
        ) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Backend(Box::new(error)),
    }
}
