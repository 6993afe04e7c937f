//! Placing orders: price from the catalog → idempotency → reserve hot stock → group commit.
//!
//! Each call runs as its own task, so a client that disconnects mid-request cannot leave
//! stock reserved for an order that was never handed to the committer.

pub mod committer;
mod error;
pub mod idempotency;
pub mod publisher;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use ordermill_core::order::total_of;
use ordermill_core::ports::{AcceptedOrder, Epoch, EventBus, StockCache};
use ordermill_core::{
    Clock, CustomerId, IdempotencyKey, Money, Order, OrderIdGenerator, OrderLine, OrderStatus,
    Quantity, Sku, ValidationError,
};
use tokio::sync::oneshot;

use self::committer::{
    Approach, CommitRequest, Committed, CommitterHandle, FailKind, Refused, ShedCause,
};
pub use self::error::IntakeError;
use self::idempotency::{Begin, Idempotency, KeyClaim, Lookup};
use crate::services::catalog::{Catalog, PriceError};
use crate::services::purchase_limits::{LimitHold, PurchaseLimits};
use crate::telemetry::IntakeMetrics;

/// An order request whose shape is valid: the items' SKUs and quantities parse, there are
/// 1..=100 of them and no SKU twice.
#[derive(Debug, Clone)]
pub struct OrderInput {
    /// Who orders.
    pub customer_id: CustomerId,
    /// What, in the client's order.
    pub items: Vec<(Sku, Quantity)>,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// An accepted order, fresh or replayed.
#[derive(Debug, Clone)]
pub enum Placed {
    /// Made durable by this call.
    Fresh {
        /// The transaction it was committed in.
        batch: Arc<Vec<AcceptedOrder>>,
        /// Its position there.
        index: usize,
    },
    /// An earlier request with the same idempotency key created it.
    Replayed(Arc<Order>),
}

impl Placed {
    /// The order.
    pub fn order(&self) -> &Order {
        match self {
            Self::Fresh { batch, index } => &batch[*index].order,
            Self::Replayed(order) => order,
        }
    }

    /// Whether this is a replay of an earlier request.
    pub fn is_replay(&self) -> bool {
        matches!(self, Self::Replayed(_))
    }
}

/// An order priced, its key claimed in memory; what it takes of limits and stock comes next.
struct Priced {
    input: OrderInput,
    lines: Vec<OrderLine>,
    total: Money,
    claim: Option<KeyClaim>,
}

// Made and moved once per order on the hot path: boxing the large variant would add an
// allocation per order to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Claimed {
    /// The node remembers the key's request: its answer.
    Replay(Arc<Order>),
    Priced(Priced),
}

/// The intake service.
pub struct Intake {
    catalog: Arc<Catalog>,
    cache: Arc<dyn StockCache>,
    committer: CommitterHandle,
    idempotency: Arc<Idempotency>,
    purchase_limits: Arc<PurchaseLimits>,
    clock: Arc<dyn Clock>,
    ids: OrderIdGenerator,
    metrics: IntakeMetrics,
    bus: Arc<dyn EventBus>,
    max_backlog: u64,
    max_queue_wait: Duration,
    /// Order requests between arrival and answer on this node now, and the most allowed.
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// A request's place among the order requests this node works on, held from before its body
/// is read until it is answered. Taken first ([`Intake::admit`]) so that a saturated node
/// refuses in microseconds: under overload most requests are refusals, and each one's
/// parsing, validation and task would take CPU from the orders being accepted.
pub struct Slot(Arc<Intake>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

impl Intake {
    /// Wires the service.
    #[allow(clippy::too_many_arguments)] // the parts intake is made of; built once, in app.rs
    pub fn new(
        catalog: Arc<Catalog>,
        cache: Arc<dyn StockCache>,
        committer: CommitterHandle,
        idempotency: Arc<Idempotency>,
        purchase_limits: Arc<PurchaseLimits>,
        clock: Arc<dyn Clock>,
        bus: Arc<dyn EventBus>,
        (max_backlog, max_queue_wait, max_in_flight): (u64, Duration, usize),
    ) -> Self {
        Intake {
            catalog,
            cache,
            committer,
            idempotency,
            purchase_limits,
            clock,
            ids: OrderIdGenerator::new(),
            metrics: IntakeMetrics::new(),
            bus,
            max_backlog,
            max_queue_wait,
            in_flight: AtomicUsize::new(0),
            max_in_flight,
        }
    }

    /// Counts an order refused before it reached intake (its request failed validation).
    pub fn count_rejected(&self, reason: &'static str) {
        self.metrics.rejected(reason);
    }

    /// Takes a place for an order request that reached the node at `arrived`, or refuses it
    /// at once, nothing reserved: when `http.max_in_flight` requests are already in progress
    /// (the ones in flight stay within their wait, and the refused client is told now instead
    /// of queueing behind them where no arrival stamp can see its wait), when it already
    /// waited past `http.max_queue_wait`, or when the bus is `max_backlog` messages behind.
    /// Requests, not orders, are counted: a batch of 1,000 is one client waiting, and must not
    /// be refused for its size alone.
    ///
    /// # Errors
    /// [`IntakeError::Full`], [`IntakeError::Shed`] or [`IntakeError::Overloaded`].
    pub fn admit(self: &Arc<Self>, arrived: Instant) -> Result<Slot, IntakeError> {
        let before = self.in_flight.fetch_add(1, AtomicOrdering::Relaxed);
        let slot = Slot(self.clone());
        if self.max_in_flight > 0 && before >= self.max_in_flight {
            return Err(IntakeError::Full { limit: self.max_in_flight });
        }
        let waited = arrived.elapsed();
        if waited > self.max_queue_wait {
            return Err(IntakeError::Shed { waited });
        }
        // Peak shaving: the bus absorbs bursts up to a bound; past it, refuse at once rather
        // than grow the backlog (and memory) without limit.
        let backlog = self.bus.backlog_hint();
        if backlog > self.max_backlog {
            return Err(IntakeError::Overloaded { backlog, limit: self.max_backlog });
        }
        Ok(slot)
    }

    /// `count` orders refused with `error`, each counted in the rejection metrics.
    pub fn refuse_all(
        &self,
        count: usize,
        error: &IntakeError,
    ) -> Vec<Result<Placed, IntakeError>> {
        (0..count)
            .map(|_| {
                self.metrics.rejected(error.code());
                Err(error.clone())
            })
            .collect()
    }

    /// Places one order admitted by [`Intake::admit`]; returns once it is durable (or
    /// refused).
    ///
    /// # Errors
    /// See [`IntakeError`]; on any error nothing is written and no stock stays reserved.
    pub async fn place(
        self: &Arc<Self>,
        input: OrderInput,
        slot: Slot,
        arrived: Instant,
    ) -> Result<Placed, IntakeError> {
        self.place_with(vec![Ok(input)], slot, arrived, Lookup::OnConflict)
            .await
            .pop()
            .unwrap_or_else(|| Err(IntakeError::Unavailable("no result for the order".into())))
    }

    /// Places many orders in one commit; one result per input, in input order. Inputs that
    /// already failed shape validation are passed through as errors. `arrived` is when the
    /// request reached the node: past `max_queue_wait` the orders are shed, not written.
    pub async fn place_many(
        self: &Arc<Self>,
        inputs: Vec<Result<OrderInput, ValidationError>>,
        slot: Slot,
        arrived: Instant,
    ) -> Vec<Result<Placed, IntakeError>> {
        self.place_with(inputs, slot, arrived, Lookup::First).await
    }

    async fn place_with(
        self: &Arc<Self>,
        inputs: Vec<Result<OrderInput, ValidationError>>,
        slot: Slot,
        arrived: Instant,
        lookup: Lookup,
    ) -> Vec<Result<Placed, IntakeError>> {
        let this = self.clone();
        let count = inputs.len();
        let approach = self.committer.approach();
        // Spawned so that a dropped request future cannot strand reservations (see module doc).
        let task = async move {
            let results = this.place_all(inputs, arrived, approach, lookup).await;
            drop(slot);
            results
        };
        match tokio::spawn(task).await {
            Ok(results) => results,
            Err(join) => {
                tracing::error!(error = %join, "Intake task failed.");
                (0..count)
                    .map(|_| Err(IntakeError::Unavailable("intake task failed".into())))
                    .collect()
            }
        }
    }

    async fn place_all(
        &self,
        inputs: Vec<Result<OrderInput, ValidationError>>,
        arrived: Instant,
        approach: Approach,
        lookup: Lookup,
    ) -> Vec<Result<Placed, IntakeError>> {
        let started = Instant::now();
        // Admitted, but the task may have waited for a worker thread since.
        let waited = arrived.elapsed();
        if waited > self.max_queue_wait {
            return self.refuse_all(inputs.len(), &IntakeError::Shed { waited });
        }
        let now = self.clock.now();
        let mut results: Vec<Option<Result<Placed, IntakeError>>> =
            Vec::with_capacity(inputs.len());
        let mut priced = Vec::new();
        for (slot, input) in inputs.into_iter().enumerate() {
            results.push(match input {
                Ok(input) => match self.price_and_claim(input).await {
                    Ok(Claimed::Replay(order)) => Some(Ok(Placed::Replayed(order))),
                    Ok(Claimed::Priced(order)) => {
                        priced.push((slot, order));
                        None
                    }
                    Err(error) => Some(Err(error)),
                },
                Err(invalid) => Some(Err(invalid.into())),
            });
        }
        if lookup == Lookup::First {
            priced = self.look_up_keys(priced, &mut results).await;
        }
        let held = self.hold_and_reserve_each(&priced).await;
        let mut orders = Vec::with_capacity(priced.len());
        let mut pending = Vec::with_capacity(priced.len());
        let mut reserved_under: Option<Epoch> = None;
        for ((slot, priced), held) in priced.into_iter().zip(held) {
            match held {
                Ok((hold, epoch)) => {
                    reserved_under = Some(reserved_under.map_or(epoch, |e| e.min(epoch)));
                    let Priced { input, lines, total, claim } = priced;
                    let order = Order {
                        id: self.ids.next(now),
                        customer_id: input.customer_id,
                        lines,
                        total,
                        status: OrderStatus::Accepted,
                        created_at: now,
                        idempotency_key: input.idempotency_key,
                        history: Vec::new(),
                        awaited_payment: None,
                    };
                    orders.push(AcceptedOrder { order, event_id: self.ids.next_uuid(now) });
                    pending.push((slot, claim, hold));
                }
                Err(error) => {
                    results[slot] = Some(match priced.claim {
                        Some(claim) if lookup == Lookup::OnConflict => {
                            self.refused_keyed(&claim, error).await.map(Placed::Replayed)
                        }
                        _ => Err(error),
                    });
                }
            }
        }
        if let Some(reserved_under) = reserved_under {
            match self.commit(orders, (arrived, reserved_under), approach).await {
                Ok(committed) => {
                    self.metrics.accepted.increment(pending.len() as u64);
                    for (offset, (slot, claim, hold)) in pending.into_iter().enumerate() {
                        hold.keep();
                        let index = committed.range.start + offset;
                        if let Some(claim) = claim {
                            let order = Arc::new(committed.batch[index].order.clone());
                            self.idempotency.complete(claim, order);
                        }
                        results[slot] =
                            Some(Ok(Placed::Fresh { batch: committed.batch.clone(), index }));
                    }
                }
                Err(error) => {
                    // Dropping each claim and hold frees the key and the counted units.
                    for (slot, claim, _hold) in pending {
                        results[slot] = Some(match claim {
                            Some(claim) if lookup == Lookup::OnConflict => self
                                .refused_keyed(&claim, error.clone())
                                .await
                                .map(Placed::Replayed),
                            _ => Err(error.clone()),
                        });
                    }
                }
            }
        }
        for result in results.iter().flatten() {
            if let Err(error) = result {
                self.metrics.rejected(error.code());
            }
        }
        self.metrics.latency.record(started.elapsed().as_secs_f64());
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(IntakeError::Unavailable("order was not decided".into())))
            })
            .collect()
    }

    /// The answer to a keyed order refused without its key looked up first
    /// ([`Lookup::OnConflict`]): the stored order's replay when the refusal came from a retry
    /// (its key taken at the commit, or its SKU sold out or its limit reached since the stored
    /// order took them), 422 for another request under a stored key, else the refusal itself
    /// (for a taken key nobody stored: 409, retry). A store that failed or shed the order is
    /// not asked: the client retries those anyway.
    async fn refused_keyed(
        &self,
        claim: &KeyClaim,
        error: IntakeError,
    ) -> Result<Arc<Order>, IntakeError> {
        if !matches!(
            error,
            IntakeError::IdempotencyInProgress
                | IntakeError::OutOfStock(_)
                | IntakeError::LimitExceeded { .. }
                | IntakeError::LimitReached { .. }
        ) {
            return Err(error);
        }
        match self.idempotency.stored(claim).await {
            Ok(Some(Begin::Replay(order))) => Ok(order),
            Ok(Some(Begin::Mismatch)) => Err(IntakeError::IdempotencyMismatch),
            Ok(_) => Err(error),
            Err(lookup) => {
                tracing::warn!(error = %lookup, "Could not look up a refused order's Idempotency-Key; answering the refusal.");
                Err(error)
            }
        }
    }

    /// `input` priced from the catalog, and its key (if any) claimed in this node's memory.
    async fn price_and_claim(&self, input: OrderInput) -> Result<Claimed, IntakeError> {
        let lines = self.catalog.price_or_learn(&input.items).await.map_err(|e| match e {
            PriceError::UnknownSku(sku) => IntakeError::UnknownSku(sku),
            PriceError::Invalid(invalid) => IntakeError::Invalid(invalid),
            PriceError::Lookup(error) => IntakeError::Unavailable(error.to_string()),
        })?;
        let total = total_of(&lines)?;
        let claim = match &input.idempotency_key {
            None => None,
            Some(key) => match self
                .idempotency
                .claim(key, &input.customer_id, &input.items)
                .await
                .map_err(|e| IntakeError::Unavailable(e.to_string()))?
            {
                Begin::Replay(order) => return Ok(Claimed::Replay(order)),
                Begin::Mismatch => return Err(IntakeError::IdempotencyMismatch),
                Begin::InProgress => return Err(IntakeError::IdempotencyInProgress),
                Begin::Proceed(claim) => Some(claim),
            },
        };
        Ok(Claimed::Priced(Priced { input, lines, total, claim }))
    }

    /// The keys of a batch's orders that this node's memory did not know, looked for in the
    /// store in one call ([`Lookup::First`]): an order whose key is stored is answered here
    /// (its replay, or 422 for another request under the key) and leaves the batch.
    async fn look_up_keys(
        &self,
        priced: Vec<(usize, Priced)>,
        results: &mut [Option<Result<Placed, IntakeError>>],
    ) -> Vec<(usize, Priced)> {
        let claims: Vec<&KeyClaim> = priced.iter().filter_map(|(_, p)| p.claim.as_ref()).collect();
        if claims.is_empty() {
            return priced;
        }
        let mut stored = match self.idempotency.stored_each(&claims).await {
            Ok(judged) => judged.into_iter(),
            Err(error) => {
                let error = IntakeError::Unavailable(error.to_string());
                return priced
                    .into_iter()
                    .filter(|(slot, p)| {
                        let keyed = p.claim.is_some();
                        if keyed {
                            results[*slot] = Some(Err(error.clone()));
                        }
                        !keyed
                    })
                    .collect();
            }
        };
        priced
            .into_iter()
            .filter(|(slot, p)| {
                if p.claim.is_none() {
                    return true;
                }
                let answer = match stored.next().flatten() {
                    None | Some(Begin::Proceed(_)) => return true,
                    Some(Begin::Replay(order)) => Ok(Placed::Replayed(order)),
                    Some(Begin::Mismatch) => Err(IntakeError::IdempotencyMismatch),
                    Some(Begin::InProgress) => Err(IntakeError::IdempotencyInProgress),
                };
                results[*slot] = Some(answer);
                false
            })
            .collect()
    }

    /// Each order's purchase-limit hold and hot-stock reservation, with the outcome of taking
    /// them one order after the other: a customer over a limit takes no stock, and an earlier
    /// order takes units first. Reservations of orders that hold no limit go to the cache
    /// together (a batch's orders in one Redis round trip, not one each); an order that does
    /// hold one is reserved after those before it and before the next hold is taken, since
    /// whether it keeps its hold depends on its reservation.
    async fn hold_and_reserve_each(
        &self,
        priced: &[(usize, Priced)],
    ) -> Vec<Result<(LimitHold, Epoch), IntakeError>> {
        let mut outcomes: Vec<Option<Result<(LimitHold, Epoch), IntakeError>>> =
            std::iter::repeat_with(|| None).take(priced.len()).collect();
        let mut together = Vec::new();
        for (at, (_, order)) in priced.iter().enumerate() {
            let held = match self.catalog.lease().ensure_held() {
                Ok(()) => self
                    .purchase_limits
                    .take(&order.input.customer_id, &order.lines)
                    .map_err(IntakeError::from),
                Err(lost) => Err(lost.into()),
            };
            match held {
                Err(error) => outcomes[at] = Some(Err(error)),
                Ok(hold) if hold.holds_nothing() => together.push((at, hold)),
                Ok(hold) => {
                    self.reserve_together(priced, &mut together, &mut outcomes).await;
                    together.push((at, hold));
                    self.reserve_together(priced, &mut together, &mut outcomes).await;
                }
            }
        }
        self.reserve_together(priced, &mut together, &mut outcomes).await;
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Err(IntakeError::Unavailable("no reservation".into())))
            })
            .collect()
    }

    /// Reserves the stock of the orders in `together` (indexes into `priced`, with their
    /// holds) in one call and empties it; a hold whose order got no stock is dropped, giving
    /// its units back.
    async fn reserve_together(
        &self,
        priced: &[(usize, Priced)],
        together: &mut Vec<(usize, LimitHold)>,
        outcomes: &mut [Option<Result<(LimitHold, Epoch), IntakeError>>],
    ) {
        if together.is_empty() {
            return;
        }
        let lines: Vec<&[OrderLine]> =
            together.iter().map(|(at, _)| priced[*at].1.lines.as_slice()).collect();
        let reserving = Instant::now();
        let answers = self.cache.reserve_each(&lines).await;
        self.metrics.reserve.record(reserving.elapsed().as_secs_f64());
        let lease = self.catalog.lease();
        for ((at, hold), answer) in together.drain(..).zip(answers) {
            if let Ok(epoch) = answer {
                lease.saw(epoch);
            }
            outcomes[at] = Some(answer.map(|epoch| (hold, epoch)).map_err(IntakeError::from));
        }
    }

    async fn commit(
        &self,
        orders: Vec<AcceptedOrder>,
        (arrived, reserved_under): (Instant, Epoch),
        approach: Approach,
    ) -> Result<Committed, IntakeError> {
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest { orders, reply, arrived, reserved_under };
        let budget = self.max_queue_wait.saturating_sub(arrived.elapsed());
        let submitted = self.committer.submit(request, budget).await;
        drop(approach);
        if let Err((refused, why)) = submitted {
            for accepted in &refused.orders {
                if let Err(error) = self.cache.release(&accepted.order.lines).await {
                    tracing::error!(order_id = %accepted.order.id, error = %error, "Could not release hot stock of a refused order; the counts will be rebuilt from the store once the cache answers.");
                }
            }
            return Err(match why {
                Refused::Stopped => IntakeError::ShuttingDown,
                Refused::Full => IntakeError::Shed { waited: arrived.elapsed() },
            });
        }
        // Once queued, the outcome is awaited whatever the time: the answer must say what the
        // store did, never "timed out" for an order that then commits.
        match answer.await {
            Ok(Ok(committed)) => Ok(committed),
            Ok(Err(failed)) => Err(match failed.kind {
                FailKind::Conflict => IntakeError::IdempotencyInProgress,
                FailKind::Oversold { short } => IntakeError::OutOfStock(short),
                FailKind::LimitExceeded { sku } => IntakeError::LimitReached { sku },
                FailKind::Shed { waited, cause: ShedCause::Backlog } => {
                    IntakeError::Shed { waited }
                }
                FailKind::Shed { waited, cause: ShedCause::SlowCommit } => {
                    IntakeError::SlowCommit { waited }
                }
                FailKind::Fenced => IntakeError::StockRecounting,
                FailKind::Store => IntakeError::Unavailable(failed.message),
            }),
            Err(_) => {
                Err(IntakeError::Unavailable("the committer stopped before answering".into()))
            }
        }
    }
}
