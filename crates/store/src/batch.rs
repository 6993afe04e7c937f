//! What a batch of consumers' effects, or a deal closing, decides — computed once in Rust for
//! the two shared-server backends (PostgreSQL, MySQL), which differ only in how they write the
//! result. Each backend reads and locks the rows, hands them here, and writes [`Writes`] and
//! the changed orders with its own statements in its own transaction.
//!
//! Same outcomes as the SQLite store (`sqlite/effects.rs`): effects are applied in batch order,
//! each seeing the ones before it (two facts about one order in one batch chain), an effect
//! whose `(consumer, event)` is recorded already is `AlreadyProcessed`, an unknown order is
//! recorded and reported `OrderNotFound`.

use std::collections::{BTreeMap, HashMap, HashSet};

use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{
    DeadlineChange, Deal, DealId, Lifecycle, Order, OrderStatus, OutboxEvent, PaymentRecord,
    PaymentState, StockDelta, UnixMillis,
};
use uuid::Uuid;

/// An order loaded for the batch, as the effects so far left it.
pub(crate) struct Loaded {
    pub order: Order,
    pub state: Lifecycle,
    pub dirty: bool,
    /// The status it was loaded with: whether its payment deadline starts or stops.
    pub was: OrderStatus,
}

impl Loaded {
    pub(crate) fn new(order: Order, state: Lifecycle) -> Loaded {
        let was = state.status;
        Loaded { order, state, dirty: false, was }
    }
}

/// Everything a batch writes besides the orders' new states.
#[derive(Default)]
pub(crate) struct Writes {
    pub payment_orders: Vec<Uuid>,
    pub payment_statuses: Vec<&'static str>,
    pub payment_events: Vec<Uuid>,
    pub payment_at: Vec<i64>,
    /// Whether the order has no payment row yet (its payment was pending when the batch
    /// reached it): such a row is inserted plainly, the others replace the row there.
    pub payment_new: Vec<bool>,
    pub event_ids: Vec<Uuid>,
    pub event_orders: Vec<Uuid>,
    pub event_keys: Vec<&'static str>,
    pub event_payloads: Vec<String>,
    pub event_at: Vec<i64>,
    /// How each product row moves, by SKU (sorted: rows are locked in SKU order).
    pub stock: BTreeMap<String, StockDelta>,
    /// Units of orders cancelled in this batch, per line: `(sku, customer, units)`.
    pub uncounted: Vec<(String, String, i64)>,
    /// Orders that started awaiting payment, with their deadline.
    pub deadlines_set: Vec<(Uuid, i64)>,
    /// Orders that stopped awaiting payment.
    pub deadlines_done: Vec<Uuid>,
    /// Orders whose units this batch gives back, owed to the hot-stock cache until the node
    /// gives them back there too (noted by the shared stores: `OrderStore::stock_returned`).
    pub returns: Vec<Uuid>,
}

impl Writes {
    /// Records `record` as `order_id`'s latest payment outcome. `new_row`: its payment was
    /// pending, so no row exists (a payment state never returns to pending, and the row and
    /// the state are written together). A second outcome for one order in one batch replaces
    /// the first here, so each order has one row in the batch's writes.
    pub(crate) fn payment(
        &mut self,
        order_id: Uuid,
        record: PaymentRecord,
        effect: &Effect,
        new_row: bool,
    ) {
        // Only an order whose payment moved earlier in this batch can be listed already.
        let listed =
            if new_row { None } else { self.payment_orders.iter().position(|id| *id == order_id) };
        match listed {
            Some(i) => {
                self.payment_statuses[i] = record.as_str();
                self.payment_events[i] = effect.event_id;
                self.payment_at[i] = effect.at.0;
            }
            None => {
                self.payment_orders.push(order_id);
                self.payment_statuses.push(record.as_str());
                self.payment_events.push(effect.event_id);
                self.payment_at.push(effect.at.0);
                self.payment_new.push(new_row);
            }
        }
    }

    /// Adds an outbox row for `event` about order `order_id`, its body stored.
    pub(crate) fn event(&mut self, order_id: Uuid, event: &OutboxEvent) {
        self.event_ids.push(event.event_id);
        self.event_orders.push(order_id);
        self.event_keys.push(event.routing_key.as_str());
        self.event_payloads.push(event.payload.clone());
        self.event_at.push(event.created_at.0);
    }

    /// Takes `order`'s units off its customer's per-customer counts: it was just cancelled.
    pub(crate) fn cancelled(&mut self, order: &Order) {
        for line in &order.lines {
            self.uncounted.push((
                line.sku.as_str().to_owned(),
                order.customer_id.as_str().to_owned(),
                i64::from(line.quantity.get()),
            ));
        }
    }

    /// Starts or stops watching `order`'s payment deadline, as its status moved from `was`.
    pub(crate) fn deadline(&mut self, order: &Order, was: OrderStatus) {
        match order.deadline_change(was) {
            Some(DeadlineChange::Watch(pay_by)) => {
                self.deadlines_set.push((order.id.as_uuid(), pay_by.0));
            }
            Some(DeadlineChange::Forget) => self.deadlines_done.push(order.id.as_uuid()),
            None => {}
        }
    }

    /// The product moves that change something, by SKU: `(skus, stock deltas, reserved deltas)`.
    pub(crate) fn stock_columns(&mut self) -> (Vec<String>, Vec<i64>, Vec<i64>) {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for (sku, d) in std::mem::take(&mut self.stock).into_iter().filter(|(_, d)| !d.is_zero()) {
            columns.0.push(sku);
            columns.1.push(d.stock);
            columns.2.push(d.reserved);
        }
        columns
    }

    /// The cancelled units, sorted (rows are locked in key order): `(skus, customers, units)`.
    pub(crate) fn uncounted_columns(&mut self) -> (Vec<String>, Vec<String>, Vec<i64>) {
        let mut uncounted = std::mem::take(&mut self.uncounted);
        uncounted.sort_unstable();
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for (sku, customer, units) in uncounted {
            columns.0.push(sku);
            columns.1.push(customer);
            columns.2.push(units);
        }
        columns
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.payment_orders.is_empty()
            && self.event_ids.is_empty()
            && self.stock.is_empty()
            && self.uncounted.is_empty()
            && self.deadlines_set.is_empty()
            && self.deadlines_done.is_empty()
            && self.returns.is_empty()
    }
}

/// The `(consumer, event)` pairs of a batch, deduplicated and sorted (so two batches sharing
/// pairs lock them in the same order), and for each effect whether it is the first occurrence
/// of its pair in the batch (later ones are redeliveries within the batch).
pub(crate) fn pairs(effects: &[Effect]) -> (Vec<(&str, Uuid)>, Vec<bool>) {
    let mut seen = HashSet::with_capacity(effects.len());
    let first: Vec<bool> =
        effects.iter().map(|e| seen.insert((&*e.consumer, e.event_id))).collect();
    let mut pairs: Vec<(&str, Uuid)> = seen.into_iter().collect();
    pairs.sort_unstable();
    (pairs, first)
}

/// Whether a batch's `(consumer, event)` records are checked against those recorded before as
/// they go in. A batch of first deliveries is not: its records go in with a plain `INSERT`,
/// which a repeat nobody foresaw (a relay that published a row again after a crash) fails on
/// the key, and the batch is then done again checked ([`unforeseen_repeat`]). A batch holding
/// an effect that may repeat (`Effect::may_repeat`) is checked at once.
pub(crate) fn checked(effects: &[Effect]) -> bool {
    effects.iter().any(|e| e.may_repeat)
}

/// Says that a batch recorded unchecked repeated an event and is being done again checked.
pub(crate) fn unforeseen_repeat(effects: &[Effect]) {
    tracing::info!(
        consumer = effects.first().map_or("", |e| &*e.consumer),
        effects = effects.len(),
        "An effect batch repeats an event recorded before; doing it again checking each record."
    );
}

/// Which effects apply: first in the batch and not recorded before (`fresh`).
pub(crate) fn applies(
    effects: &[Effect],
    first: &[bool],
    fresh: &HashSet<(String, Uuid)>,
) -> Vec<bool> {
    effects
        .iter()
        .zip(first)
        .map(|(e, first)| *first && fresh.contains(&(e.consumer.to_string(), e.event_id)))
        .collect()
}

/// The orders the applying effects touch, sorted by id (the order they are locked in).
pub(crate) fn orders_to_lock(effects: &[Effect], applies: &[bool]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = effects
        .iter()
        .zip(applies)
        .filter(|(e, applies)| **applies && !e.records_only())
        .map(|(e, _)| e.order_id.as_uuid())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Runs the batch against the loaded orders: each effect's outcome, and the writes. Orders
/// left changed are marked `dirty`; their deadlines are in `writes`.
pub(crate) fn run(
    effects: &[Effect],
    applies: &[bool],
    orders: &mut HashMap<Uuid, Loaded>,
    writes: &mut Writes,
) -> Vec<EffectOutcome> {
    let mut outcomes = Vec::with_capacity(effects.len());
    for (effect, applies) in effects.iter().zip(applies) {
        outcomes.push(match applies {
            true if effect.records_only() => EffectOutcome::Recorded,
            true => apply_one(effect, orders, writes),
            false => EffectOutcome::AlreadyProcessed,
        });
    }
    for loaded in orders.values().filter(|l| l.dirty) {
        writes.deadline(&loaded.order, loaded.was);
    }
    outcomes
}

/// Applies one first-time effect against the batch's view of its order (the rules are
/// [`Effect::apply_to`]'s) and adds what it decided to the batch's writes.
fn apply_one(
    effect: &Effect,
    orders: &mut HashMap<Uuid, Loaded>,
    writes: &mut Writes,
) -> EffectOutcome {
    let Some(loaded) = orders.get_mut(&effect.order_id.as_uuid()) else {
        return EffectOutcome::OrderNotFound;
    };
    let payment_was_pending = loaded.state.payment == PaymentState::Pending;
    let applied = effect.apply_to(&mut loaded.order, loaded.state);
    if applied.status_changed && loaded.order.status == OrderStatus::Cancelled {
        writes.cancelled(&loaded.order);
    }
    // Written only when something changed: a fact that no longer applies leaves the row alone.
    loaded.dirty |= applied.changed;
    loaded.state = applied.next;
    let order_id = loaded.order.id.as_uuid();
    for (sku, delta) in &applied.stock {
        *writes.stock.entry(sku.as_str().to_owned()).or_default() += *delta;
    }
    if let Some(record) = applied.payment {
        writes.payment(order_id, record, effect, payment_was_pending);
    }
    for event in &applied.emitted {
        writes.event(order_id, event);
    }
    if !applied.released.is_empty() {
        writes.returns.push(order_id);
    }
    applied.into_outcome(&loaded.order)
}

/// Moves every member's order on now that `deal` is closed ([`Deal::settle_member`]), given
/// the member orders as loaded (and locked) by the caller; ids for the `deal.*` events come
/// from `event_ids` in member order. Returns the orders that changed with their new states;
/// their events go to `emitted` and `writes`.
pub(crate) fn settle(
    deal: &Deal,
    mut loaded: HashMap<Uuid, (Order, Lifecycle)>,
    event_ids: &[Uuid],
    at: UnixMillis,
    emitted: &mut Vec<OutboxEvent>,
    writes: &mut Writes,
) -> Result<Vec<(Order, Lifecycle)>, StoreError> {
    let settlements =
        deal.members_with_event_ids(event_ids).map_err(|e| StoreError::Backend(e.into()))?;
    let mut changed = Vec::with_capacity(deal.members.len());
    for (member, event_id) in settlements {
        let Some((mut order, state)) = loaded.remove(&member.order_id.as_uuid()) else {
            return Err(StoreError::Corrupt(format!(
                "deal {} lists order {}, which is missing",
                deal.id, member.order_id
            )));
        };
        let Some(settled) = deal.settle_member(&mut order, state, event_id, at) else {
            continue;
        };
        if settled.next.status == OrderStatus::Cancelled && state.status != OrderStatus::Cancelled {
            writes.cancelled(&order);
        }
        for event in settled.emitted {
            writes.event(order.id.as_uuid(), &event);
            emitted.push(event);
        }
        changed.push((order, settled.next));
    }
    Ok(changed)
}

/// A deal that closed in this transaction (the caller holds its lock), the ids for its
/// members' `deal.*` events (in member order), and when it closed.
pub(crate) type Closing<'a> = (&'a Deal, &'a [Uuid], UnixMillis);

/// What closing some deals did to their members' orders: by deal, the orders that moved on
/// (with their new states) and their `deal.*` events.
pub(crate) struct Settled(Vec<DealSettled>);

/// One deal's part of [`Settled`].
struct DealSettled {
    deal: DealId,
    moved: Vec<(Order, Lifecycle)>,
    emitted: Vec<OutboxEvent>,
}

impl Settled {
    /// [`settle`] for each closing deal, given every member order loaded (and locked) at once
    /// by the caller; their writes go to `writes`.
    pub(crate) fn of(
        closing: &[Closing<'_>],
        mut loaded: HashMap<Uuid, (Order, Lifecycle)>,
        writes: &mut Writes,
    ) -> Result<Settled, StoreError> {
        let mut settled = Vec::with_capacity(closing.len());
        for (deal, event_ids, at) in closing {
            let members = deal
                .members
                .iter()
                .filter_map(|m| loaded.remove_entry(&m.order_id.as_uuid()))
                .collect();
            let mut emitted = Vec::new();
            let moved = settle(deal, members, event_ids, *at, &mut emitted, writes)?;
            settled.push(DealSettled { deal: deal.id, moved, emitted });
        }
        Ok(Settled(settled))
    }

    /// The orders to write, with their new states.
    pub(crate) fn states(&self) -> Vec<(&Order, Lifecycle)> {
        self.0.iter().flat_map(|d| d.moved.iter().map(|(o, s)| (o, *s))).collect()
    }

    pub(crate) fn by_deal(self) -> HashMap<DealId, (Vec<Order>, Vec<OutboxEvent>)> {
        self.0
            .into_iter()
            .map(|DealSettled { deal, moved, emitted }| {
                (deal, (moved.into_iter().map(|(order, _)| order).collect(), emitted))
            })
            .collect()
    }
}
