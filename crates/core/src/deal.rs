//! Group buying (团购): a deal sells one SKU at a special price and completes only when
//! `group_size` buyers join before its deadline; otherwise it expires and every member's
//! order is cancelled. The rules are here; the store applies them inside one transaction.

use std::fmt;

use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::clock::UnixMillis;
use crate::customer::CustomerId;
use crate::error::ValidationError;
use crate::event::OutboxEvent;
use crate::lifecycle::{Fact, Lifecycle};
use crate::money::Money;
use crate::order::{Order, StatusChange};
use crate::order_id::OrderId;
use crate::sku::Sku;

/// A deal id: a UUIDv7, time-ordered like order ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DealId(Uuid);

impl DealId {
    /// Parses the hyphenated text form.
    ///
    /// # Errors
    /// [`ValidationError::InvalidDealId`] when the text is not a UUID.
    pub fn parse(text: &str) -> Result<DealId, ValidationError> {
        Uuid::try_parse(text)
            .map(DealId)
            .map_err(|_| ValidationError::InvalidDealId(text.chars().take(80).collect()))
    }

    /// Wraps a UUID (a fresh one from the id generator, or one read back from storage).
    pub fn from_uuid(uuid: Uuid) -> DealId {
        DealId(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for DealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl Serialize for DealId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How many buyers complete a group: `2..=`[`GroupSize::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GroupSize(u32);

impl GroupSize {
    /// The largest group (a group's completion touches every member's order in one
    /// transaction, so it is bounded).
    pub const MAX: u32 = 1_000;

    /// Validates a group size.
    ///
    /// # Errors
    /// [`ValidationError::InvalidGroupSize`] outside `2..=1000` (a group of one is an order).
    pub fn parse(n: i64) -> Result<GroupSize, ValidationError> {
        match u32::try_from(n) {
            Ok(n) if (2..=Self::MAX).contains(&n) => Ok(GroupSize(n)),
            _ => Err(Self::invalid(n)),
        }
    }

    /// The error for a value that is not a valid group size.
    pub fn invalid(got: impl ToString) -> ValidationError {
        ValidationError::InvalidGroupSize { got: got.to_string(), max: Self::MAX }
    }

    /// The number of buyers.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The shortest and longest time a deal may stay open.
pub const MIN_DEAL_MILLIS: i64 = 1_000;
/// See [`MIN_DEAL_MILLIS`]: 30 days.
pub const MAX_DEAL_MILLIS: i64 = 30 * 24 * 3_600_000;

/// Checks a deadline against `now`: at least a second and at most 30 days ahead.
///
/// # Errors
/// [`ValidationError::InvalidExpiry`] otherwise.
pub fn check_deadline(
    expires_at: UnixMillis,
    now: UnixMillis,
) -> Result<UnixMillis, ValidationError> {
    let ahead = expires_at.0.saturating_sub(now.0);
    if (MIN_DEAL_MILLIS..=MAX_DEAL_MILLIS).contains(&ahead) {
        Ok(expires_at)
    } else {
        Err(ValidationError::InvalidExpiry(format!(
            "the deadline must be 1 s to 30 days from now, got {} ms from now",
            ahead
        )))
    }
}

/// Where a deal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    /// Taking members.
    Open,
    /// The group filled before the deadline; its orders go on to payment.
    Completed,
    /// The deadline passed first; its orders were cancelled.
    Expired,
}

impl DealStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
            Self::Expired => "expired",
        }
    }

    /// Reads a stored status back; `None` for an unknown one.
    pub fn parse(text: &str) -> Option<DealStatus> {
        match text {
            "open" => Some(Self::Open),
            "completed" => Some(Self::Completed),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A buyer in a deal and the order they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DealMember {
    /// Who.
    pub customer_id: CustomerId,
    /// Their order (status `awaiting_group` until the deal closes).
    pub order_id: OrderId,
    /// When they joined.
    pub joined_at: UnixMillis,
}

/// A group-buy deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    /// Time-ordered id.
    pub id: DealId,
    /// What is sold (one unit per member).
    pub sku: Sku,
    /// What each member pays.
    pub deal_price: Money,
    /// Members needed to complete.
    pub group_size: GroupSize,
    /// When it was opened.
    pub created_at: UnixMillis,
    /// When it expires if not complete.
    pub expires_at: UnixMillis,
    /// Open, completed or expired.
    pub status: DealStatus,
    /// Members, in joining order.
    pub members: Vec<DealMember>,
}

/// Why a customer cannot join a deal. Each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// The customer is a member already.
    #[error("this customer has already joined this deal")]
    AlreadyJoined,
    /// The group is complete.
    #[error("this deal's group is already complete")]
    Full,
    /// The deadline has passed.
    #[error("this deal has expired")]
    Expired,
}

/// What [`Deal::admit`] did with an admitted customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A member now; the group still needs more.
    Waiting,
    /// This member filled the group: the deal completed.
    Completed,
}

/// A member order that [`Deal::settle_member`] moved on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledMember {
    /// The order's state after.
    pub next: Lifecycle,
    /// The `deal.*` events to write with it.
    pub emitted: Vec<OutboxEvent>,
}

impl JoinRefusal {
    /// The machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::AlreadyJoined => "already_joined",
            Self::Full => "deal_full",
            Self::Expired => "deal_expired",
        }
    }
}

impl Deal {
    /// Whether `customer` may join at `now`. The store calls this inside the join's
    /// transaction, so concurrent joins for the last slot are decided one at a time.
    ///
    /// # Errors
    /// The [`JoinRefusal`] that applies, expiry first (an expired deal is expired for
    /// everyone, members included).
    pub fn check_join(&self, customer: &CustomerId, now: UnixMillis) -> Result<(), JoinRefusal> {
        if self.status == DealStatus::Expired
            || (self.status == DealStatus::Open && self.is_due(now))
        {
            return Err(JoinRefusal::Expired);
        }
        if self.members.iter().any(|m| m.customer_id == *customer) {
            return Err(JoinRefusal::AlreadyJoined);
        }
        if self.status == DealStatus::Completed || self.is_full() {
            return Err(JoinRefusal::Full);
        }
        Ok(())
    }

    /// Admits `customer` with `order_id` at `at` if [`Deal::check_join`] allows it; when
    /// that fills the group the deal completes. The store calls this inside the join's
    /// transaction and persists the member and, on completion, the deal's new status.
    ///
    /// # Errors
    /// The [`JoinRefusal`] that applies; the deal is left as it was.
    pub fn admit(
        &mut self,
        customer: &CustomerId,
        order_id: OrderId,
        at: UnixMillis,
    ) -> Result<Admission, JoinRefusal> {
        self.check_join(customer, at)?;
        self.members.push(DealMember { customer_id: customer.clone(), order_id, joined_at: at });
        if self.is_full() {
            self.status = DealStatus::Completed;
            return Ok(Admission::Completed);
        }
        Ok(Admission::Waiting)
    }

    /// Expires an open deal whose deadline has come; `false` (and nothing changes) otherwise,
    /// so expiring twice does nothing.
    pub fn expire(&mut self, at: UnixMillis) -> bool {
        if !self.is_due(at) {
            return false;
        }
        self.status = DealStatus::Expired;
        true
    }

    /// Moves one member's order on now that the deal is closed: to `accepted` with a
    /// `deal.completed` event when the group completed, to `cancelled` with `deal.expired`
    /// when it expired. `None` when the order does not move (already moved on, or the deal is
    /// still open).
    pub fn settle_member(
        &self,
        order: &mut Order,
        state: Lifecycle,
        event_id: Uuid,
        at: UnixMillis,
    ) -> Option<SettledMember> {
        let fact = match self.status {
            DealStatus::Open => return None,
            DealStatus::Completed => Fact::GroupCompleted,
            DealStatus::Expired => Fact::GroupExpired,
        };
        let transition = state.apply(fact);
        if !transition.status_changed(&state) {
            return None;
        }
        order.status = transition.next.status;
        order.history.push(StatusChange::new(order.status, at));
        let emitted = transition
            .emit
            .into_iter()
            .map(|key| OutboxEvent::deal_order(order, key, self.id, event_id, at))
            .collect();
        Some(SettledMember { next: transition.next, emitted })
    }

    /// Each member with the id of the event its settlement emits, in member order.
    ///
    /// # Errors
    /// When fewer ids than members were given (a caller's bug): nothing may be settled then.
    pub fn members_with_event_ids<'a>(
        &'a self,
        event_ids: &'a [Uuid],
    ) -> Result<impl Iterator<Item = (&'a DealMember, Uuid)>, String> {
        if event_ids.len() < self.members.len() {
            return Err(format!(
                "{} event ids for {} members",
                event_ids.len(),
                self.members.len()
            ));
        }
        Ok(self.members.iter().zip(event_ids.iter().copied()))
    }

    /// Whether the group has every member it needs.
    pub fn is_full(&self) -> bool {
        self.members.len() >= self.group_size.get() as usize
    }

    /// Whether an open deal's deadline has come (it must expire now).
    pub fn is_due(&self, now: UnixMillis) -> bool {
        self.status == DealStatus::Open && now >= self.expires_at
    }

    /// Milliseconds until the deadline while open; 0 once closed or due.
    pub fn millis_left(&self, now: UnixMillis) -> i64 {
        if self.status == DealStatus::Open { (self.expires_at.0 - now.0).max(0) } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(s: &str) -> CustomerId {
        CustomerId::parse(s).unwrap()
    }

    fn deal(size: i64) -> Deal {
        Deal {
            id: DealId::from_uuid(Uuid::now_v7()),
            sku: Sku::parse("s").unwrap(),
            deal_price: Money::parse("deal_price", "9.90").unwrap(),
            group_size: GroupSize::parse(size).unwrap(),
            created_at: UnixMillis(1_000),
            expires_at: UnixMillis(10_000),
            status: DealStatus::Open,
            members: Vec::new(),
        }
    }

    fn member(d: &mut Deal, c: &str) {
        d.members.push(DealMember {
            customer_id: customer(c),
            order_id: crate::OrderIdGenerator::new().next(UnixMillis(2_000)),
            joined_at: UnixMillis(2_000),
        });
    }

    #[test]
    fn a_customer_joins_once_and_the_group_closes_at_its_size() {
        let mut d = deal(2);
        assert_eq!(d.check_join(&customer("a"), UnixMillis(2_000)), Ok(()));
        member(&mut d, "a");
        assert_eq!(
            d.check_join(&customer("a"), UnixMillis(2_000)),
            Err(JoinRefusal::AlreadyJoined)
        );
        member(&mut d, "b");
        assert!(d.is_full());
        assert_eq!(d.check_join(&customer("c"), UnixMillis(2_000)), Err(JoinRefusal::Full));
    }

    #[test]
    fn the_member_that_fills_the_group_completes_the_deal() {
        let ids = crate::OrderIdGenerator::new();
        let mut d = deal(2);
        let at = UnixMillis(2_000);
        assert_eq!(d.admit(&customer("a"), ids.next(at), at), Ok(Admission::Waiting));
        assert_eq!(d.status, DealStatus::Open);
        assert_eq!(d.admit(&customer("a"), ids.next(at), at), Err(JoinRefusal::AlreadyJoined));
        assert_eq!(d.members.len(), 1, "a refusal admits nobody");
        assert_eq!(d.admit(&customer("b"), ids.next(at), at), Ok(Admission::Completed));
        assert_eq!(d.status, DealStatus::Completed);
        assert!(!d.expire(UnixMillis(20_000)), "a completed deal never expires");
    }

    #[test]
    fn members_move_on_once_the_deal_closes_and_only_once() {
        let now = UnixMillis(2_000);
        let line = crate::OrderLine::priced(
            Sku::parse("s").unwrap(),
            crate::Quantity::parse(1).unwrap(),
            Money::parse("deal_price", "9.90").unwrap(),
        )
        .unwrap();
        let mut order = Order {
            id: crate::OrderIdGenerator::new().next(now),
            customer_id: customer("a"),
            total: line.line_total,
            lines: vec![line],
            status: crate::OrderStatus::AwaitingGroup,
            created_at: now,
            idempotency_key: None,
            history: Vec::new(),
            awaited_payment: None,
        };
        let mut d = deal(3);
        let waiting = Lifecycle::awaiting_group();
        assert!(d.settle_member(&mut order, waiting, Uuid::now_v7(), now).is_none());
        assert!(!d.expire(UnixMillis(9_999)));
        assert!(d.expire(UnixMillis(10_000)));
        assert!(!d.expire(UnixMillis(10_000)), "expiring twice does nothing");
        let settled = d.settle_member(&mut order, waiting, Uuid::now_v7(), now).unwrap();
        assert_eq!(order.status, crate::OrderStatus::Cancelled);
        assert_eq!(order.history.len(), 1);
        assert_eq!(settled.emitted.len(), 1);
        assert_eq!(settled.emitted[0].routing_key, crate::RoutingKey::DealExpired);
        assert!(d.settle_member(&mut order, settled.next, Uuid::now_v7(), now).is_none());
    }

    #[test]
    fn the_deadline_closes_the_deal_to_everyone() {
        let d = deal(3);
        assert_eq!(d.millis_left(UnixMillis(9_000)), 1_000);
        assert!(!d.is_due(UnixMillis(9_999)));
        assert!(d.is_due(UnixMillis(10_000)));
        assert_eq!(d.check_join(&customer("a"), UnixMillis(10_000)), Err(JoinRefusal::Expired));
        assert_eq!(d.millis_left(UnixMillis(11_000)), 0);
    }

    #[test]
    fn group_sizes_and_deadlines_are_bounded() {
        assert!(GroupSize::parse(1).is_err());
        assert!(GroupSize::parse(1_001).is_err());
        assert_eq!(GroupSize::parse(3).unwrap().get(), 3);
        assert_eq!(GroupSize::parse(-1).unwrap_err().code(), "invalid_group_size");
        let now = UnixMillis(1_000_000);
        assert!(check_deadline(UnixMillis(now.0 + 500), now).is_err());
        assert!(check_deadline(UnixMillis(now.0 + 60_000), now).is_ok());
        assert_eq!(
            check_deadline(UnixMillis(now.0 + MAX_DEAL_MILLIS + 1), now).unwrap_err().code(),
            "invalid_expiry"
        );
        for status in [DealStatus::Open, DealStatus::Completed, DealStatus::Expired] {
            assert_eq!(DealStatus::parse(status.as_str()), Some(status));
        }
    }
}
