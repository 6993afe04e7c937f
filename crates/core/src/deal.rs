//! Group buying (团购): a deal sells one SKU at a special price and completes only when
//! `group_size` buyers join before its deadline; otherwise it expires and every member's
//! order is cancelled. The rules are here; the store applies them inside one transaction.

use std::fmt;

use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::clock::UnixMillis;
use crate::customer::CustomerId;
use crate::error::ValidationError;
use crate::money::Money;
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
