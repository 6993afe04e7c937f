//! Storage of group-buy deals. Joining, completing and expiring a deal each change the deal,
//! its members' orders and the outbox in ONE transaction, so a deal never completes or
//! expires twice and a crash leaves none half-closed.

use async_trait::async_trait;
use uuid::Uuid;

use crate::clock::UnixMillis;
use crate::deal::{Deal, DealId, JoinRefusal};
use crate::event::OutboxEvent;
use crate::order::Order;
use crate::order_id::OrderId;
use crate::ports::store::{AcceptedOrder, StoreError};

/// What [`DealStore::join_deal`] did.
// One is made per join and moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum JoinOutcome {
    /// The member's order is durable; if it filled the group, the deal completed in the same
    /// transaction.
    Joined {
        /// The deal after the join (status `completed` if this join filled it).
        deal: Deal,
        /// The new member's order (status `awaiting_group`, or `accepted` if it completed the
        /// group).
        order: Order,
        /// Events written to the outbox, to publish now: `deal.joined` for the new order and,
        /// on completion, `deal.completed` for every member's order.
        emitted: Vec<OutboxEvent>,
        /// Member orders that moved on to `accepted` (empty unless the group completed).
        completed: Vec<Order>,
    },
    /// The deal refused the customer; nothing was written.
    Refused(JoinRefusal),
    /// No such deal; nothing was written.
    NotFound,
}

impl JoinOutcome {
    /// A join that was written: `order` as it ended up (moved on with its batch-mates if it
    /// completed the group).
    pub fn joined(
        deal: Deal,
        order: &Order,
        emitted: Vec<OutboxEvent>,
        completed: Vec<Order>,
    ) -> Self {
        let order =
            completed.iter().find(|o| o.id == order.id).cloned().unwrap_or_else(|| order.clone());
        JoinOutcome::Joined { deal, order, emitted, completed }
    }
}

/// A deal that expired, and what its expiry did.
#[derive(Debug, Clone)]
pub struct ExpiredDeal {
    /// The deal, now `expired`.
    pub deal: Deal,
    /// Its members' orders, now `cancelled` (their stock is released by inventory on
    /// `deal.expired`).
    pub cancelled: Vec<Order>,
    /// The `deal.expired` events written to the outbox, one per member order.
    pub emitted: Vec<OutboxEvent>,
}

/// Durable group-buy deals.
#[async_trait]
pub trait DealStore: Send + Sync + 'static {
    /// Stores a new open deal.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if its SKU is not a product; otherwise a backend failure.
    async fn create_deal(&self, deal: &Deal) -> Result<(), StoreError>;

    /// One deal with its members.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn get_deal(&self, id: DealId) -> Result<Option<Deal>, StoreError>;

    /// In ONE transaction: checks [`Deal::check_join`] at `at` for the order's customer,
    /// writes `order` (status `awaiting_group`, its `deal.joined` event with id
    /// `order.event_id`, units added to `reserved`) and the membership; if that fills the
    /// group, marks the deal completed and moves every member's order to `accepted` with a
    /// `deal.completed` event each, taking their ids from `completion_event_ids` (at least
    /// `group_size` of them). Concurrent joins are decided one at a time.
    ///
    /// # Errors
    /// A backend failure; nothing was written. [`StoreError::Conflict`] for a reused
    /// idempotency key.
    async fn join_deal(
        &self,
        deal_id: DealId,
        order: AcceptedOrder,
        completion_event_ids: Vec<Uuid>,
        at: UnixMillis,
    ) -> Result<JoinOutcome, StoreError>;

    /// The order of a join as stored, or `None` if it is not, asked after
    /// [`DealStore::join_deal`] failed in a way that leaves it unclear (the connection was
    /// lost, or cut off past its deadline, after the COMMIT may have reached the database).
    ///
    /// Like [`crate::ports::OrderStore::batch_stored`], a store whose commit may still be
    /// running on the server after the call gave up answers only once no join of `deal_id`
    /// is in progress (a join locks its deal first): a read alone could look just before that
    /// commit lands, and the caller would give back a unit that is sold.
    ///
    /// # Errors
    /// On a backend failure; the outcome stays unclear.
    async fn joined_order(
        &self,
        deal_id: DealId,
        order_id: OrderId,
    ) -> Result<Option<Order>, StoreError>;

    /// Deals created in `[from, to)`, newest first, at most `limit`, older than `before` (the
    /// previous page's last id) when given: a `deals` report's pages.
    ///
    /// # Errors
    /// On a backend failure.
    async fn deals_created(
        &self,
        (from, to): (UnixMillis, UnixMillis),
        before: Option<DealId>,
        limit: u32,
    ) -> Result<Vec<DealId>, StoreError>;

    /// Open deals whose deadline is at or before `now`, oldest deadline first, at most
    /// `limit`.
    ///
    /// # Errors
    /// On a backend failure.
    async fn due_deals(&self, now: UnixMillis, limit: usize) -> Result<Vec<DealId>, StoreError>;

    /// In ONE transaction, if the deal is still open and due at `at`: marks it expired, moves
    /// every member's order to `cancelled` and writes a `deal.expired` event for each, with
    /// ids from `event_ids` (at least one per member). `None` if it was not open and due
    /// (already expired or completed): expiring twice does nothing.
    ///
    /// # Errors
    /// On a backend failure; nothing was written.
    async fn expire_deal(
        &self,
        deal_id: DealId,
        event_ids: Vec<Uuid>,
        at: UnixMillis,
    ) -> Result<Option<ExpiredDeal>, StoreError>;
}
