//! Group commit: one task per node drains whatever orders are pending and makes them durable
//! in ONE store transaction, so the cost of an fsync is shared by every order waiting for it.
//!
//! Once an order is handed over here the committer owns its reservation: on a failed commit
//! it gives the units back to the hot-stock cache before answering, so nothing half-done
//! remains whether or not the client is still waiting.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ordermill_core::Sku;
use ordermill_core::ports::{AcceptedOrder, Epoch, EventBus, OrderStore, StockCache, StoreError};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::publisher::Publisher;
use crate::services::epoch_check;
use crate::services::lease::Lease;
use crate::services::unclear::{read_back, recount_held_units};
use crate::telemetry::CommitMetrics;

/// The orders of `requests` (ranges of `batch`) as a batch of their own, with their ranges in
/// it: what is released or committed for them touches no other request's orders.
fn regroup(
    batch: &[AcceptedOrder],
    requests: Vec<Answering>,
) -> (Arc<Vec<AcceptedOrder>>, Vec<Answering>) {
    let mut orders = Vec::with_capacity(requests.iter().map(|(_, range)| range.len()).sum());
    let replies = requests
        .into_iter()
        .map(|(reply, range)| {
            let start = orders.len();
            orders.extend_from_slice(&batch[range]);
            (reply, start..orders.len())
        })
        .collect();
    (Arc::new(orders), replies)
}

/// Where one request's outcome is sent.
pub type Reply = oneshot::Sender<Result<Committed, CommitFailed>>;

/// A request's reply and its orders' place in the batch being committed.
type Answering = (Reply, Range<usize>);

/// Orders from one intake call, and where to answer.
pub struct CommitRequest {
    /// Orders whose stock is already reserved.
    pub orders: Vec<AcceptedOrder>,
    /// Receives the outcome once the transaction is durable (or failed).
    pub reply: Reply,
    /// When the request reached the node: one that waited longer than `max_queue_wait` by
    /// the time its batch forms is shed, not written.
    pub arrived: Instant,
    /// The oldest epoch of the counts its orders' units were reserved from: none is written
    /// once this node has seen newer counts (see [`Lease`]).
    pub reserved_under: Epoch,
}

/// A request in the committer's queue, and when it was put there.
struct Queued {
    request: CommitRequest,
    at: Instant,
}

/// A durable batch and the slice of it that belongs to one request.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The whole transaction's orders.
    pub batch: Arc<Vec<AcceptedOrder>>,
    /// This request's orders within it, in the order they were sent.
    pub range: Range<usize>,
}

/// The orders were not written and their reservations were released.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the order store did not commit: {message}")]
pub struct CommitFailed {
    /// What happened.
    pub message: String,
    /// Why.
    pub kind: FailKind,
}

/// Why a request's orders were not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailKind {
    /// The store failed.
    Store,
    /// The request's own orders collided with stored ones (an idempotency key the same
    /// customer sent to another node at the same moment): a retry finds the winner.
    Conflict,
    /// The store refused to hold its units: the hot-stock count had granted more than the
    /// store has (a cache that counted wrong). It is sold out.
    Oversold {
        /// The first of its SKUs the store named short.
        short: Sku,
    },
    /// The store refused it: the customer's orders of `sku` through every node already reach
    /// its per-customer limit.
    LimitExceeded {
        /// The limited SKU.
        sku: Sku,
    },
    /// It waited longer than `max_queue_wait` (shed).
    Shed {
        /// How long it had waited.
        waited: Duration,
        /// What held it up.
        cause: ShedCause,
    },
    /// This node's lease on the shared counts lapsed after its units were reserved, or the
    /// counts were set anew from the store since: its units may be back on sale, so it is not
    /// written (see [`Lease`]).
    Fenced,
}

/// What held up an order that was shed: the operator's answer differs (more nodes, or a
/// store whose flushes stall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedCause {
    /// The node is behind: the order reached the committer's queue already late (slow to
    /// reserve its stock, or the queue was full), or more was queued than one commit takes.
    Backlog,
    /// It was queued in time and only the commit before it, running long, held it up: the
    /// store was slow to finish a commit (on a shared disk, a flush that stalls).
    SlowCommit,
}

/// Handle used by intake to queue orders.
#[derive(Clone)]
pub struct CommitterHandle {
    sender: mpsc::Sender<Queued>,
    approaching: Arc<Approaching>,
}

/// How many requests are on their way to the committer (admitted, their stock still being
/// reserved), so a lingering batch knows whether anyone is coming to share its commit.
#[derive(Default)]
struct Approaching {
    count: AtomicUsize,
    none_left: Notify,
}

/// One request on its way to the committer; it arrived (or gave up) when dropped.
pub struct Approach(Arc<Approaching>);

impl Drop for Approach {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_one();
        }
    }
}

impl CommitterHandle {
    /// Counts a request as on its way here until the returned guard is dropped: take it when
    /// the request starts preparing, drop it once the request is queued (or has failed).
    pub fn approach(&self) -> Approach {
        self.approaching.count.fetch_add(1, Ordering::AcqRel);
        Approach(self.approaching.clone())
    }

    /// Queues a request, waiting at most `within` for a slot when the queue is full.
    ///
    /// # Errors
    /// Gives the request back with [`Refused::Stopped`] when the committer has stopped
    /// (shutdown), [`Refused::Full`] when no slot freed in time.
    pub async fn submit(
        &self,
        request: CommitRequest,
        within: Duration,
    ) -> Result<(), (CommitRequest, Refused)> {
        match tokio::time::timeout(within, self.sender.reserve()).await {
            Ok(Ok(slot)) => {
                slot.send(Queued { request, at: Instant::now() });
                Ok(())
            }
            Ok(Err(_)) => Err((request, Refused::Stopped)),
            Err(_) => Err((request, Refused::Full)),
        }
    }
}

/// The first SKU of `batch` among those the store `named` short (`"a, b"`).
fn short_sku(batch: &[AcceptedOrder], named: &str) -> Option<Sku> {
    let named: Vec<&str> = named.split(", ").collect();
    let mut skus = batch.iter().flat_map(|a| a.order.lines.iter().map(|l| &l.sku));
    let first = skus.clone().next().cloned();
    skus.find(|s| named.contains(&s.as_str())).cloned().or(first)
}

/// Answers `requests` as fenced ([`FailKind::Fenced`]), keeping their units held.
fn answer_fenced(requests: Vec<CommitRequest>, why: &str) {
    for request in requests {
        let failed = CommitFailed { message: why.to_owned(), kind: FailKind::Fenced };
        let _ = request.reply.send(Err(failed));
    }
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The committer stopped.
    Stopped,
    /// The queue stayed full.
    Full,
}

/// How the committer forms its transactions.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// The most orders in one transaction.
    pub max_orders: usize,
    /// Requests that may queue for the committer.
    pub capacity: usize,
    /// Under load (other requests queued behind a batch's first, or the batch before it held
    /// more than one), how long a batch waits for more before it commits (zero: never). A lone
    /// request after a lone one never waits.
    pub linger: Duration,
    /// Under load, how long a committed batch's events may wait to be published together with
    /// the batches committed after it (see [`Publisher`]; zero: each as it comes).
    pub publish_linger: Duration,
}

/// The committer task's inputs.
pub struct Committer {
    receiver: mpsc::Receiver<Queued>,
    store: Arc<dyn OrderStore>,
    cache: Arc<dyn StockCache>,
    publisher: Publisher,
    max_batch: usize,
    linger: Duration,
    /// The previous batch held more than one request.
    last_shared: bool,
    max_queue_wait: Duration,
    lease: Arc<Lease>,
    metrics: CommitMetrics,
    approaching: Arc<Approaching>,
}

impl Committer {
    /// A committer and the handle to feed it, batching as `batching` says; a request that
    /// waited longer than `max_queue_wait` is shed, and none reserved before `lease` last
    /// lapsed is written.
    pub fn new(
        store: Arc<dyn OrderStore>,
        cache: Arc<dyn StockCache>,
        bus: Arc<dyn EventBus>,
        batching: Batching,
        (max_queue_wait, lease): (Duration, Arc<Lease>),
    ) -> (Committer, CommitterHandle) {
        let (sender, receiver) = mpsc::channel(batching.capacity.max(1));
        let approaching = Arc::new(Approaching::default());
        let metrics = CommitMetrics::new();
        let publisher =
            Publisher::start(bus, batching.publish_linger, metrics.stage_publish.clone());
        let committer = Committer {
            approaching: approaching.clone(),
            receiver,
            store,
            cache,
            publisher,
            max_batch: batching.max_orders.max(1),
            linger: batching.linger,
            last_shared: false,
            max_queue_wait,
            lease,
            metrics,
        };
        (committer, CommitterHandle { sender, approaching })
    }

    /// Commits batches until `stop` fires; then refuses new requests, commits every request
    /// already queued, and returns.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                biased;
                next = self.receiver.recv() => next,
                () = stop.cancelled() => {
                    self.receiver.close();
                    self.receiver.recv().await
                }
            };
            let Some(first) = first else { break };
            self.commit_pending(first).await;
        }
        self.publisher.close().await;
        tracing::info!("Committer stopped after flushing every queued order.");
    }

    async fn commit_pending(&mut self, first: Queued) {
        let mut count = first.request.orders.len();
        let mut requests = vec![first];
        while count < self.max_batch {
            match self.receiver.try_recv() {
                Ok(next) => {
                    count += next.request.orders.len();
                    requests.push(next);
                }
                Err(_) => break,
            }
        }
        // Others queued behind the first, or the last batch shared its commit: the node is
        // under load. Waiting a moment for the requests on their way here (still reserving
        // their stock) makes fewer, fuller transactions and broker messages, and each costs the
        // database and the broker per round, not per order. The wait ends as soon as none is
        // left on its way: everyone who could share this commit is in it, and waiting longer
        // would only delay them (in a closed loop, every client of the batch).
        if (requests.len() > 1 || self.last_shared) && !self.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + self.linger;
            while count < self.max_batch && self.approaching.count.load(Ordering::Acquire) > 0 {
                tokio::select! {
                    biased;
                    next = self.receiver.recv() => match next {
                        Some(next) => {
                            count += next.request.orders.len();
                            requests.push(next);
                        }
                        None => break,
                    },
                    // The last one on its way was queued (then `recv` has it) or gave up.
                    () = self.approaching.none_left.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            // Queued while the last check ran.
            while count < self.max_batch {
                match self.receiver.try_recv() {
                    Ok(next) => {
                        count += next.request.orders.len();
                        requests.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        self.last_shared = requests.len() > 1;
        // Shed what waited too long: answered at once, so the orders that are written stay
        // fast and the rest know to come back (the durable queue is the buffer, not memory).
        let backlogged = count >= self.max_batch;
        let mut late = Vec::new();
        let requests: Vec<CommitRequest> = requests
            .into_iter()
            .filter_map(|queued| {
                if queued.request.arrived.elapsed() <= self.max_queue_wait {
                    return Some(queued.request);
                }
                late.push((self.shed_cause(&queued, backlogged), queued.request));
                None
            })
            .collect();
        for (cause, request) in late {
            let waited = request.arrived.elapsed();
            let counter = match cause {
                ShedCause::Backlog => &self.metrics.shed_backlog,
                ShedCause::SlowCommit => &self.metrics.shed_slow_commit,
            };
            counter.increment(request.orders.len() as u64);
            let replies = vec![(request.reply, 0..request.orders.len())];
            let failed = CommitFailed {
                message: format!("waited {waited:?} for the committer"),
                kind: FailKind::Shed { waited, cause },
            };
            self.release(&request.orders, replies, failed).await;
        }
        let requests = self.fence(requests).await;
        if requests.is_empty() {
            return;
        }
        let since = requests.iter().map(|r| r.arrived).min();
        let reserved_under = requests.iter().map(|r| r.reserved_under).min();
        let mut batch = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            let start = batch.len();
            batch.extend(request.orders);
            replies.push((request.reply, start..batch.len()));
        }
        let batch = Arc::new(batch);
        let started = Instant::now();
        let outcome = self.store.commit_orders(batch.clone()).await;
        self.metrics.duration.record(started.elapsed().as_secs_f64());
        self.metrics.stage_commit.record(started.elapsed().as_secs_f64());
        self.metrics.batch_orders.record(batch.len() as f64);
        match outcome {
            Ok(()) => self.committed(batch, replies),
            // One request's orders must not fail its batch-mates'.
            Err(error @ StoreError::Conflict(_)) if replies.len() > 1 => {
                self.commit_around_stored_keys(&batch, replies, error).await;
            }
            Err(error @ (StoreError::Oversold(_) | StoreError::LimitExceeded(_)))
                if replies.len() > 1 =>
            {
                self.commit_one_by_one(&batch, replies, &error).await;
            }
            // The connection may have failed after the COMMIT reached the database: the
            // orders may be durable. Read back before releasing anything.
            Err(error @ StoreError::Unavailable(_)) => self.resolve(batch, replies, error).await,
            Err(error) => self.fail(&batch, replies, error).await,
        }
        // Whatever the outcome: some of these orders may be written.
        self.recheck_lease(since).await;
        if let Some(reserved_under) = reserved_under {
            epoch_check::recount_if_superseded(&self.cache, &self.lease, reserved_under);
        }
    }

    /// A group commit refused for an idempotency key the store already holds: a retry that
    /// missed this node's memory (another node took it, or this node restarted since), or one
    /// key sent to two nodes at once. The requests carrying a stored key, found in one read,
    /// are refused (each then reads its stored order: a replay or 422) and the others commit
    /// together again — two commits and a read, where one commit per request had made a storm
    /// of retries after a restart cost a commit each. When the read finds none, one by one.
    async fn commit_around_stored_keys(
        &self,
        batch: &[AcceptedOrder],
        replies: Vec<(Reply, Range<usize>)>,
        error: StoreError,
    ) {
        let keys: Vec<_> = batch
            .iter()
            .filter_map(|a| Some((a.order.customer_id.clone(), a.order.idempotency_key.clone()?)))
            .collect();
        let stored: HashSet<_> = match self.store.find_by_idempotency_keys(&keys).await {
            Ok(found) => found
                .into_iter()
                .filter_map(|order| Some((order.customer_id, order.idempotency_key?)))
                .collect(),
            Err(read) => {
                tracing::warn!(error = %read, "Could not read which idempotency keys of a refused group commit are stored.");
                HashSet::new()
            }
        };
        let (taken, free): (Vec<_>, Vec<_>) = replies.into_iter().partition(|(_, range)| {
            batch[range.clone()].iter().any(|a| {
                let order = &a.order;
                order
                    .idempotency_key
                    .as_ref()
                    .is_some_and(|key| stored.contains(&(order.customer_id.clone(), key.clone())))
            })
        });
        if taken.is_empty() {
            return self.commit_one_by_one(batch, free, &error).await;
        }
        tracing::warn!(
            requests = taken.len(),
            committed_together = free.len(),
            "A group commit was refused for idempotency keys the store already holds; answering those requests from the stored orders and committing the others together."
        );
        let (refused, taken) = regroup(batch, taken);
        self.fail(&refused, taken, error).await;
        if free.is_empty() {
            return;
        }
        let (rest, replies) = regroup(batch, free);
        match self.store.commit_orders(rest.clone()).await {
            Ok(()) => self.committed(rest, replies),
            Err(error @ StoreError::Unavailable(_)) => self.resolve(rest, replies, error).await,
            Err(
                error @ (StoreError::Conflict(_)
                | StoreError::Oversold(_)
                | StoreError::LimitExceeded(_)),
            ) if replies.len() > 1 => {
                self.commit_one_by_one(&rest, replies, &error).await;
            }
            Err(error) => self.fail(&rest, replies, error).await,
        }
    }

    /// Commits each request of a refused group commit on its own, so only the refused one
    /// fails: holds beyond stock or a per-customer limit name SKUs, not requests.
    async fn commit_one_by_one(
        &self,
        batch: &[AcceptedOrder],
        replies: Vec<(Reply, Range<usize>)>,
        error: &StoreError,
    ) {
        tracing::warn!(requests = replies.len(), error = %error, "A group commit was refused for some of its orders; committing its requests one by one.");
        for request in replies {
            let (own, replies) = regroup(batch, vec![request]);
            match self.store.commit_orders(own.clone()).await {
                Ok(()) => self.committed(own, replies),
                Err(error @ StoreError::Unavailable(_)) => {
                    self.resolve(own, replies, error).await;
                }
                Err(error) => self.fail(&own, replies, error).await,
            }
        }
    }

    /// What held up `queued`, shed for waiting past `max_queue_wait`. Shedding it either way
    /// keeps the accepted orders' tail short under overload (a build that wrote the ones a slow
    /// commit held up raised it: docs/BENCHMARKS.md, "503s without overload").
    fn shed_cause(&self, queued: &Queued, backlogged: bool) -> ShedCause {
        let before_queue = queued.at.saturating_duration_since(queued.request.arrived);
        if backlogged || before_queue > self.max_queue_wait {
            ShedCause::Backlog
        } else {
            ShedCause::SlowCommit
        }
    }

    /// Refuses, answered 503 with their units NOT given back (see [`Lease`]), the requests
    /// - reserved under counts older than ones this node has seen: the newer counts were read
    ///   from a store that never saw these orders, so they hold the units already;
    /// - reserved before this node's lease last lapsed: the counts are marked lost, so they are
    ///   recounted from the store, which never saw these orders.
    async fn fence(&mut self, requests: Vec<CommitRequest>) -> Vec<CommitRequest> {
        let (current, superseded): (Vec<_>, Vec<_>) =
            requests.into_iter().partition(|r| self.lease.admits_epoch(r.reserved_under));
        if !superseded.is_empty() {
            let orders: usize = superseded.iter().map(|r| r.orders.len()).sum();
            self.metrics.fenced_epoch.increment(orders as u64);
            // The counts set anew hold these units already: nothing to give back or recount.
            tracing::warn!(
                orders,
                "The hot-stock counts were set anew from the store after these orders reserved their units, which are on sale again; not writing them (503)."
            );
            answer_fenced(
                superseded,
                "the stock counts were set anew after its units were reserved",
            );
        }
        let now = Instant::now();
        let (admitted, fenced): (Vec<_>, Vec<_>) =
            current.into_iter().partition(|r| self.lease.admits_commit(r.arrived, now));
        if fenced.is_empty() {
            return admitted;
        }
        let orders: usize = fenced.iter().map(|r| r.orders.len()).sum();
        self.metrics.fenced_lease.increment(orders as u64);
        tracing::warn!(
            orders,
            "This api node's lease on the shared hot stock lapsed after these orders reserved their units; not writing them (503), and marking the counts for a rebuild from the store."
        );
        if let Err(error) = self.cache.mark_lost().await {
            tracing::error!(error = %error, "Could not mark the hot-stock counts for a rebuild after refusing fenced orders; their units stay off sale until the next rebuild.");
        }
        answer_fenced(fenced, "this node's lease on the shared stock counts lapsed");
        admitted
    }

    /// After a commit: the fence ran before it, and a node frozen between the two (a VM stall,
    /// SIGSTOP) commits orders whose units another node may have put back on sale by
    /// rebuilding the counts from the store meanwhile. The orders are durable and stand; the
    /// counts, now offering those units twice, are marked for a rebuild from the store, which
    /// has them. (`api_paused.rs` failed once with Redis offering 6 units more than the store: the
    /// likely cause, a window this closes.)
    async fn recheck_lease(&self, since: Option<Instant>) {
        let Some(since) = since else { return };
        if self.lease.admits_commit(since, Instant::now()) {
            return;
        }
        self.metrics.late_lease.increment(1);
        tracing::warn!(
            "This api node's lease on the shared hot stock lapsed while it committed orders; they are written, and the counts are marked for a rebuild from the store."
        );
        if let Err(error) = self.cache.mark_lost().await {
            tracing::error!(error = %error, "Could not mark the hot-stock counts for a rebuild after a commit outlived this node's lease.");
        }
    }

    /// Settles a commit whose outcome is unclear by reading it back
    /// ([`OrderStore::batch_stored`], which waits out a commit still running). Found:
    /// the orders are durable and answered as such. Absent: failed, released as usual. The
    /// store still unreachable after [`read_back`]'s patience: answered 503 WITHOUT giving the
    /// units back (they might be sold) and the counts are marked for a rebuild from the
    /// store, which counts them exactly — never an oversell, at worst units off sale until
    /// the rebuild.
    async fn resolve(
        &self,
        batch: Arc<Vec<AcceptedOrder>>,
        replies: Vec<(Reply, Range<usize>)>,
        error: StoreError,
    ) {
        if batch.is_empty() {
            return;
        }
        match read_back(|| self.store.batch_stored(&batch)).await {
            Ok(true) => {
                tracing::warn!(orders = batch.len(), error = %error, "A group commit reported a failure but its orders are stored; answering them as accepted.");
                self.committed(batch, replies);
            }
            Ok(false) => self.fail(&batch, replies, error).await,
            Err(read) => {
                self.metrics.failures.increment(1);
                tracing::error!(orders = batch.len(), error = %error, read_error = %read, "A group commit's outcome is unknown (the store stayed unreachable); answering 503 and keeping the units held until the counts are rebuilt from the store.");
                recount_held_units(&*self.cache).await;
                let failed = CommitFailed {
                    message: format!("outcome unknown: {error}"),
                    kind: FailKind::Store,
                };
                for (reply, _) in replies {
                    let _ = reply.send(Err(failed.clone()));
                }
            }
        }
    }

    fn committed(&self, batch: Arc<Vec<AcceptedOrder>>, replies: Vec<(Reply, Range<usize>)>) {
        for (reply, range) in replies {
            // The client may have gone; its order is durable regardless.
            let _ = reply.send(Ok(Committed { batch: batch.clone(), range }));
        }
        // Off the commit loop: the next batch need not wait for event bodies to be built.
        self.publisher.publish(batch);
    }

    async fn fail(
        &self,
        batch: &[AcceptedOrder],
        replies: Vec<(Reply, Range<usize>)>,
        error: StoreError,
    ) {
        self.metrics.failures.increment(1);
        let kind = match &error {
            StoreError::Conflict(_) => FailKind::Conflict,
            StoreError::Oversold(named) => match short_sku(batch, named) {
                Some(short) => FailKind::Oversold { short },
                None => FailKind::Store,
            },
            StoreError::LimitExceeded(named) => match short_sku(batch, named) {
                Some(sku) => FailKind::LimitExceeded { sku },
                None => FailKind::Store,
            },
            _ => FailKind::Store,
        };
        if matches!(kind, FailKind::Oversold { .. }) {
            tracing::error!(orders = batch.len(), error = %error, "The store refused to hold units the hot-stock cache had granted (a count was too high); answering out_of_stock and rebuilding the counts from the store.");
            if let Err(mark) = self.cache.mark_lost().await {
                tracing::error!(error = %mark, "Could not mark the hot-stock counts for a rebuild.");
            }
        } else if matches!(kind, FailKind::LimitExceeded { .. }) {
            tracing::info!(orders = batch.len(), error = %error, "The store refused an order past a per-customer limit (the customer's orders through other nodes count too); answering limit_exceeded.");
        } else if kind == FailKind::Conflict {
            tracing::info!(orders = batch.len(), error = %error, "A request's orders collided with stored ones; releasing its reservations, its retry finds the stored order.");
        } else {
            tracing::error!(orders = batch.len(), error = %error, cause = std::error::Error::source(&error).map(tracing::field::display), "Group commit failed; releasing reservations and answering 503.");
        }
        let failed = CommitFailed { message: error.to_string(), kind };
        self.release(batch, replies, failed).await;
    }

    /// Gives the orders' units back, then answers every request with `failed`.
    async fn release(
        &self,
        batch: &[AcceptedOrder],
        replies: Vec<(Reply, Range<usize>)>,
        failed: CommitFailed,
    ) {
        for accepted in batch {
            if let Err(release) = self.cache.release(&accepted.order.lines).await {
                tracing::error!(order_id = %accepted.order.id, error = %release, "Could not release hot stock of orders not written; the counts will be rebuilt from the store once the cache answers.");
            }
        }
        for (reply, _) in replies {
            let _ = reply.send(Err(failed.clone()));
        }
    }
}
