//! A deal join as a store queues it, and what the joins queued together come to. Joins queued
//! together are decided in one transaction (the SQLite writer's, or a shared-server store's
//! join queue, `join_queue.rs`), each as it would be alone.

use std::collections::HashMap;

use ordermill_core::ports::{AcceptedOrder, JoinOutcome, StoreError};
use ordermill_core::{Admission, Deal, DealId, Order, OutboxEvent, RoutingKey, UnixMillis};
use uuid::Uuid;

use crate::batch::Closing;

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

/// What one join came to before anything is written.
enum Decided {
    /// Refused or not found: it writes nothing.
    Out(JoinOutcome),
    /// Admitted: the deal as this join left it, its `deal.joined` event, and whether it filled
    /// the group.
    In { deal: Deal, joined: OutboxEvent, filled: bool },
}

/// Joins decided in queue order, in Rust, against their deals as read under lock
/// ([`Deal::admit`]): a later join sees an earlier one's membership, the join that fills a
/// group completes it, and one past it is refused. A shared-server store then writes what
/// [`Decisions::admitted`] and [`Decisions::filled`] name, and answers
/// [`Decisions::outcomes`] once that committed.
pub(crate) struct Decisions<'a> {
    joins: &'a [Join],
    decided: Vec<Decided>,
}

impl<'a> Decisions<'a> {
    /// `deals` holds the joins' deals found, locked and read with their members.
    pub(crate) fn new(joins: &'a [Join], mut deals: HashMap<DealId, Deal>) -> Self {
        let decided = joins.iter().map(|join| decide(&mut deals, join)).collect();
        Decisions { joins, decided }
    }

    /// The joins admitted, with their `deal.joined` events: what the transaction writes.
    pub(crate) fn admitted(&self) -> Vec<(&'a Join, &OutboxEvent)> {
        self.each()
            .filter_map(|(join, decided)| match decided {
                Decided::In { joined, .. } => Some((join, joined)),
                Decided::Out(_) => None,
            })
            .collect()
    }

    /// The deals these joins filled, each as the join that filled it left it: what the
    /// transaction closes and settles.
    pub(crate) fn filled(&self) -> Vec<Closing<'_>> {
        self.each()
            .filter_map(|(join, decided)| match decided {
                Decided::In { deal, filled: true, .. } => {
                    Some((deal, join.completion_ids.as_slice(), join.at))
                }
                _ => None,
            })
            .collect()
    }

    /// Each join's outcome once the transaction committed; `settled` holds, by deal, the
    /// orders a filled deal moved on and their events.
    pub(crate) fn outcomes(
        self,
        mut settled: HashMap<DealId, (Vec<Order>, Vec<OutboxEvent>)>,
    ) -> Vec<JoinOutcome> {
        self.joins
            .iter()
            .zip(self.decided)
            .map(|(join, decided)| match decided {
                Decided::Out(outcome) => outcome,
                Decided::In { deal, joined, filled } => {
                    let (completed, more) = if filled {
                        settled.remove(&join.deal_id).unwrap_or_default()
                    } else {
                        Default::default()
                    };
                    let emitted = std::iter::once(joined).chain(more).collect();
                    JoinOutcome::joined(deal, &join.order.order, emitted, completed)
                }
            })
            .collect()
    }

    fn each(&self) -> impl Iterator<Item = (&'a Join, &Decided)> {
        self.joins.iter().zip(&self.decided)
    }
}

/// `join` decided against its deal as the joins before it left it.
fn decide(deals: &mut HashMap<DealId, Deal>, join: &Join) -> Decided {
    let order = &join.order.order;
    let Some(deal) = deals.get_mut(&join.deal_id) else {
        return Decided::Out(JoinOutcome::NotFound);
    };
    match deal.admit(&order.customer_id, order.id, join.at) {
        Err(refusal) => Decided::Out(JoinOutcome::Refused(refusal)),
        Ok(admission) => Decided::In {
            deal: deal.clone(),
            joined: OutboxEvent::deal_order(
                order,
                RoutingKey::DealJoined,
                join.deal_id,
                join.order.event_id,
                join.at,
            ),
            filled: admission == Admission::Completed,
        },
    }
}
