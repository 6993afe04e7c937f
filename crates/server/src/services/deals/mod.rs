//! Group buying: opening deals, joining them, and the scheduler that expires them.
//!
//! Joining is intake for a group-buy order: idempotency → purchase limit → hot-stock
//! reservation → ONE store transaction that writes the order, checks the deal (open, not
//! full, not joined before) and, if this join fills the group, completes the deal and moves
//! every member's order on to payment. Concurrent joins for the last slot are decided one at
//! a time by that transaction; the losers' reservations are given back.

pub mod scheduler;

use std::sync::Arc;

use metrics::counter;
use ordermill_core::ports::{
    AcceptedOrder, DealStore, Envelope, EventBus, JoinOutcome, StockCache, StoreError,
};
use ordermill_core::{
    Clock, CustomerId, Deal, DealId, DealStatus, GroupSize, IdempotencyKey, JoinRefusal, Money,
    Order, OrderIdGenerator, OrderLine, OrderStatus, OutboxEvent, Quantity, Sku, StatusChange,
    UnixMillis,
};
use thiserror::Error;

use crate::services::catalog::Catalog;
use crate::services::epoch_check;
use crate::services::intake::idempotency::{Begin, Idempotency, KeyClaim, Lookup};
use crate::services::intake::{IntakeError, Slot};
use crate::services::order_cache::OrderCache;
use crate::services::purchase_limits::{LimitHold, PurchaseLimits};
use crate::services::unclear::{read_back, recount_held_units};
use crate::telemetry;

/// Why a deal operation failed.
#[derive(Debug, Clone, Error)]
pub enum DealError {
    /// As for any order: bad input, unknown SKU, sold out, over the limit, idempotency, store.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// No such deal.
    #[error("no deal with id {0}")]
    NotFound(DealId),
    /// The deal refused the customer.
    #[error(transparent)]
    Refused(JoinRefusal),
}

fn unavailable(error: StoreError) -> DealError {
    DealError::Intake(IntakeError::Unavailable(error.to_string()))
}

/// A deal to open, validated.
#[derive(Debug, Clone)]
pub struct NewDeal {
    /// What is sold.
    pub sku: Sku,
    /// The price each member pays.
    pub deal_price: Money,
    /// Members needed.
    pub group_size: GroupSize,
    /// The deadline.
    pub expires_at: UnixMillis,
}

/// A join's result.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The deal as the join left it.
    pub deal_id: DealId,
    /// The member's order.
    pub order: Arc<Order>,
    /// Whether an earlier request with the same idempotency key made it.
    pub replayed: bool,
}

/// The group-buy service.
pub struct Deals {
    store: Arc<dyn DealStore>,
    catalog: Arc<Catalog>,
    cache: Arc<dyn StockCache>,
    purchase_limits: Arc<PurchaseLimits>,
    idempotency: Arc<Idempotency>,
    bus: Arc<dyn EventBus>,
    order_cache: OrderCache,
    clock: Arc<dyn Clock>,
    ids: OrderIdGenerator,
}

impl Deals {
    /// Wires the service.
    #[allow(clippy::too_many_arguments)] // the parts a join touches; built once, in app.rs
    pub fn new(
        store: Arc<dyn DealStore>,
        catalog: Arc<Catalog>,
        cache: Arc<dyn StockCache>,
        purchase_limits: Arc<PurchaseLimits>,
        idempotency: Arc<Idempotency>,
        bus: Arc<dyn EventBus>,
        order_cache: OrderCache,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Deals {
            store,
            catalog,
            cache,
            purchase_limits,
            idempotency,
            bus,
            order_cache,
            clock,
            ids: OrderIdGenerator::new(),
        }
    }

    /// The current time, for deadlines given relative to now.
    pub fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// Opens a deal.
    ///
    /// # Errors
    /// `unknown_sku` if the SKU is not in the catalog; 503 on a store failure.
    pub async fn open(&self, new: NewDeal) -> Result<Deal, DealError> {
        if self.catalog.price(&[(new.sku.clone(), Quantity::ONE)]).is_err() {
            return Err(IntakeError::UnknownSku(new.sku).into());
        }
        let now = self.clock.now();
        let deal = Deal {
            id: DealId::from_uuid(self.ids.next_uuid(now)),
            sku: new.sku,
            deal_price: new.deal_price,
            group_size: new.group_size,
            created_at: now,
            expires_at: new.expires_at,
            status: DealStatus::Open,
            members: Vec::new(),
        };
        match self.store.create_deal(&deal).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(IntakeError::UnknownSku(deal.sku).into()),
            Err(other) => return Err(unavailable(other)),
        }
        counter!(telemetry::DEALS_OPENED).increment(1);
        tracing::info!(deal_id = %deal.id, sku = %deal.sku, group_size = deal.group_size.get(), expires_at = %deal.expires_at, "Deal opened.");
        Ok(deal)
    }

    /// One deal with its members.
    ///
    /// # Errors
    /// [`DealError::NotFound`], or 503 on a store failure.
    pub async fn get(&self, id: DealId) -> Result<Deal, DealError> {
        self.store.get_deal(id).await.map_err(unavailable)?.ok_or(DealError::NotFound(id))
    }

    /// Open deals, the soonest to close first, at most `limit` (for the dashboard). A deal
    /// that closes between the two reads is left out.
    ///
    /// # Errors
    /// 503 on a store failure.
    pub async fn open_soonest(&self, limit: usize) -> Result<Vec<Deal>, DealError> {
        // Every open deal is "due" by the end of time: the same indexed scan the expiry
        // scheduler makes.
        let ids = self.store.due_deals(UnixMillis(i64::MAX), limit).await.map_err(unavailable)?;
        let mut open = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(deal) = self.store.get_deal(id).await.map_err(unavailable)?
                && deal.status == DealStatus::Open
            {
                open.push(deal);
            }
        }
        Ok(open)
    }

    /// Joins `customer` to a deal: returns once their order is durable (or refused). `slot`,
    /// the request's place among the order requests this node works on ([`crate::services::intake::Intake::admit`]),
    /// is held until then, even if the client goes.
    ///
    /// # Errors
    /// See [`DealError`]; on any error nothing is written and no stock or limit stays taken.
    pub async fn join(
        self: &Arc<Self>,
        deal_id: DealId,
        customer: CustomerId,
        key: Option<IdempotencyKey>,
        slot: Slot,
    ) -> Result<Joined, DealError> {
        let this = self.clone();
        // Its own task, like intake: a client that disconnects cannot strand a reservation.
        tokio::spawn(async move {
            let joined = this.join_now(deal_id, customer, key).await;
            drop(slot);
            joined
        })
        .await
        .unwrap_or_else(|join| {
            tracing::error!(error = %join, "Deal join task failed.");
            Err(IntakeError::Unavailable("deal join task failed".into()).into())
        })
    }

    async fn join_now(
        &self,
        deal_id: DealId,
        customer: CustomerId,
        key: Option<IdempotencyKey>,
    ) -> Result<Joined, DealError> {
        let now = self.clock.now();
        let deal = self.get(deal_id).await?;
        let items = [(deal.sku.clone(), Quantity::ONE)];
        // A retried join is answered before the deal is checked: its customer is a member now.
        let claim = match &key {
            None => None,
            Some(key) => {
                match self
                    .idempotency
                    .begin(key, &customer, &items, Lookup::First)
                    .await
                    .map_err(unavailable)?
                {
                    Begin::Replay(order) => return Ok(Joined { deal_id, order, replayed: true }),
                    Begin::Mismatch => return Err(IntakeError::IdempotencyMismatch.into()),
                    Begin::InProgress => return Err(IntakeError::IdempotencyInProgress.into()),
                    Begin::Proceed(claim) => Some(claim),
                }
            }
        };
        // Refuse early what the transaction would refuse anyway, before taking stock.
        deal.check_join(&customer, now).map_err(DealError::Refused)?;
        let line = OrderLine::priced(deal.sku.clone(), Quantity::ONE, deal.deal_price)
            .map_err(IntakeError::from)?;
        let lines = vec![line];
        let hold = self.purchase_limits.take(&customer, &lines).map_err(IntakeError::from)?;
        self.catalog.lease().ensure_held().map_err(IntakeError::from)?;
        let reserved_under = self.cache.reserve(&lines).await.map_err(IntakeError::from)?;
        self.catalog.lease().saw(reserved_under);
        let order = Order {
            id: self.ids.next(now),
            customer_id: customer,
            total: lines[0].line_total,
            lines,
            status: OrderStatus::AwaitingGroup,
            created_at: now,
            idempotency_key: key,
            history: vec![StatusChange::new(OrderStatus::AwaitingGroup, now)],
            awaited_payment: None,
        };
        let accepted = AcceptedOrder { order, event_id: self.ids.next_uuid(now) };
        let completion_ids = (0..deal.group_size.get()).map(|_| self.ids.next_uuid(now)).collect();
        let lines = accepted.order.lines.clone();
        let deal_sku = deal.sku.clone();
        let order_id = accepted.order.id;
        let joining = self.store.join_deal(deal_id, accepted, completion_ids, now).await;
        let maybe_written =
            matches!(joining, Ok(JoinOutcome::Joined { .. }) | Err(StoreError::Unavailable(_)));
        if maybe_written {
            epoch_check::recount_if_superseded(&self.cache, self.catalog.lease(), reserved_under);
        }
        let refusal = match joining {
            Ok(JoinOutcome::Joined { deal, order, emitted, completed }) => {
                if deal.status == DealStatus::Completed {
                    counter!(telemetry::DEALS_COMPLETED).increment(1);
                    tracing::info!(deal_id = %deal.id, members = completed.len(), "Deal completed; its orders go on to payment.");
                }
                self.publish_behind(emitted);
                return Ok(self.joined(deal_id, order, hold, claim));
            }
            Ok(JoinOutcome::Refused(refusal)) => DealError::Refused(refusal),
            Ok(JoinOutcome::NotFound) => DealError::NotFound(deal_id),
            // The customer's orders through other nodes already reach the SKU's limit.
            Err(StoreError::LimitExceeded(_)) => {
                DealError::Intake(IntakeError::LimitReached { sku: deal_sku.clone() })
            }
            // The connection may have failed after the COMMIT reached the database: the
            // customer may be a member. Read back before giving anything back.
            Err(error @ StoreError::Unavailable(_)) => {
                match read_back(|| self.store.joined_order(deal_id, order_id)).await {
                    Ok(Some(order)) => {
                        // Its events are in the outbox; the relay's sweep sends them.
                        tracing::warn!(deal_id = %deal_id, order_id = %order_id, error = %error, "A deal join reported a failure but is stored; answering it as joined.");
                        return Ok(self.joined(deal_id, order, hold, claim));
                    }
                    Ok(None) => unavailable(error),
                    Err(read) => {
                        tracing::error!(deal_id = %deal_id, order_id = %order_id, error = %error, read_error = %read, "A deal join's outcome is unknown (the store stayed unreachable); answering 503 and keeping its unit held until the counts are rebuilt from the store.");
                        recount_held_units(&*self.cache).await;
                        return Err(unavailable(error));
                    }
                }
            }
            Err(error) => unavailable(error),
        };
        // Nothing was written: give the unit back (the hold and the claim go by themselves).
        if let Err(error) = self.cache.release(&lines).await {
            tracing::error!(deal_id = %deal_id, error = %error, "Could not release hot stock of a refused join; the counts will be rebuilt from the store once the cache answers.");
        }
        Err(refusal)
    }

    /// A join that is stored: the customer's units stay counted, a retry with its key replays.
    fn joined(
        &self,
        deal_id: DealId,
        order: Order,
        hold: LimitHold,
        claim: Option<KeyClaim>,
    ) -> Joined {
        hold.keep();
        let order = Arc::new(order);
        if let Some(claim) = claim {
            self.idempotency.complete(claim, order.clone());
        }
        Joined { deal_id, order, replayed: false }
    }

    /// Expires every deal whose deadline has passed; returns how many expired.
    ///
    /// # Errors
    /// When the store cannot be read or written; the deals are tried again next time.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut expired = 0;
        for deal_id in self.store.due_deals(now, 100).await? {
            let Some(deal) = self.store.get_deal(deal_id).await? else { continue };
            let event_ids = deal.members.iter().map(|_| self.ids.next_uuid(now)).collect();
            let Some(done) = self.store.expire_deal(deal_id, event_ids, now).await? else {
                continue; // completed or expired meanwhile (another node): nothing to do
            };
            expired += 1;
            counter!(telemetry::DEALS_EXPIRED).increment(1);
            tracing::info!(deal_id = %deal_id, members = done.cancelled.len(), group_size = done.deal.group_size.get(), "Deal expired unfilled; its orders are cancelled.");
            for order in done.cancelled {
                self.purchase_limits.give_back(&order.customer_id, &order.lines);
                counter!(telemetry::ORDERS_CANCELLED).increment(1);
                self.order_cache.insert(&order).await;
            }
            publish(&*self.bus, done.emitted).await;
        }
        Ok(expired)
    }

    /// Publishes a join's events without holding up its answer: they are in the outbox, and
    /// the answer waited for a broker confirm that told the customer nothing (scaled out, a
    /// fifth of the joins a node answered: docs/BENCHMARKS.md, "Group-buying joins scaled
    /// out"). A node that stops meanwhile leaves them to the relay's sweep.
    fn publish_behind(&self, events: Vec<OutboxEvent>) {
        let bus = self.bus.clone();
        tokio::spawn(async move { publish(&*bus, events).await });
    }
}

/// Publishes deal events; the relay sends them if this fails (they are in the outbox already).
async fn publish(bus: &dyn EventBus, events: Vec<OutboxEvent>) {
    if events.is_empty() {
        return;
    }
    let events: Vec<Envelope> = events.into_iter().map(Envelope::from).collect();
    if let Err(error) = bus.publish(events).await {
        tracing::error!(error = %error, "Could not publish deal events; they stay in the outbox.");
    }
}
