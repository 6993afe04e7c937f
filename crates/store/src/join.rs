//! A deal join as a store queues it. Joins queued together are decided in one transaction (the
//! SQLite writer's, or the PostgreSQL join queue's), each as it would be alone.

use ordermill_core::ports::{AcceptedOrder, StoreError};
use ordermill_core::{DealId, UnixMillis};
use uuid::Uuid;

/// One [`ordermill_core::ports::DealStore::join_deal`] call's arguments.
pub(crate) struct Join {
    pub deal_id: DealId,
    pub order: AcceptedOrder,
    pub completion_ids: Vec<Uuid>,
    pub at: UnixMillis,
}

/// `error` once more, for each join of a transaction that failed as a whole ([`StoreError`] is
/// not `Clone`: a backend's error need not be). What a retry may cure stays itself; anything
/// else is answered as the store being unavailable, which sends the caller to read back.
pub(crate) fn again(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict(message) => StoreError::Conflict(message.clone()),
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        other => StoreError::Unavailable(other.to_string()),
    }
}
