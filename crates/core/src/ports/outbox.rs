//! The outbox as a broker relay sees it (scaled-out mode): events written by a store
//! transaction that a broker has not yet confirmed. The embedded bus does not use this: its
//! messages are the outbox rows themselves, tracked through [`crate::ports::BusLedger`].

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::ports::bus::Envelope;
use crate::ports::store::StoreError;

/// Unconfirmed outbox events, shared by every node that relays them to a broker.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Claims up to `limit` events, oldest first, that are not yet published, were written
    /// at least `min_age` ago (younger ones are still being published by the node that
    /// committed them), and are not under another claim. The claim lasts `lease`: a node that
    /// dies holding it leaves the events to the next sweep after the lease runs out, so with
    /// several nodes each event is published by one node at a time and none is orphaned.
    ///
    /// # Errors
    /// On a backend failure; nothing was claimed.
    async fn claim_unpublished(
        &self,
        limit: usize,
        min_age: Duration,
        lease: Duration,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// Gives up a claim at once (the publish failed), so the next sweep, on this node or
    /// another, takes the events without waiting for the lease to run out.
    ///
    /// # Errors
    /// On a backend failure; the claim then simply lapses after its lease.
    async fn release_claims(&self, events: Vec<Uuid>) -> Result<(), StoreError>;

    /// Records that the broker confirmed these events; they are never relayed again.
    ///
    /// # Errors
    /// On a backend failure; the events stay unpublished and will be sent again (consumers
    /// deduplicate on the event id).
    async fn mark_published(&self, events: Vec<Uuid>) -> Result<(), StoreError>;

    /// How long the oldest event no broker has confirmed yet has been waiting, claimed or not,
    /// by the database's clock (the one that stamped it); `None` when every event is
    /// published. Under load it stays within a publish's round trip; growing, it means no
    /// node manages to publish (the broker is down, or every relay fails).
    ///
    /// # Errors
    /// On a backend failure.
    async fn oldest_unpublished_age(&self) -> Result<Option<Duration>, StoreError>;
}
