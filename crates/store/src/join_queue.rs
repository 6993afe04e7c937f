//! Deal joins queued on this node and decided in shared transactions (each shared-server
//! store's `join_group.rs`): while one group's transaction runs, the joins that arrive queue
//! for the next, so groups grow with load as group commits do, and a single join waits for no
//! one.
//!
//! A group that fails as a whole on one join's account (an idempotency key stored meanwhile,
//! a customer past a purchase limit through another node) is decided again one join per
//! transaction, so only that join is refused.

use std::time::Instant;

use ordermill_core::ports::{JoinOutcome, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::join::{Join, again};

/// Joins decided per transaction (PostgreSQL and MySQL api nodes): near 1 under light load,
/// growing as joins arrive while a transaction runs.
pub const JOIN_TRANSACTION_JOINS: &str = "ordermill_deal_join_transaction_joins";

/// How long each joins' transaction took, queue to answer (PostgreSQL and MySQL api nodes).
pub const JOIN_TRANSACTION_SECONDS: &str = "ordermill_deal_join_transaction_seconds";

/// Most joins in one transaction: bounds how long it holds its deals and the SKU's row.
const MAX_JOINS_PER_TRANSACTION: usize = 256;

type Reply = oneshot::Sender<Result<JoinOutcome, StoreError>>;

/// A store's transaction for joins queued together: one outcome per join, in order, or one
/// error for them all with nothing written. Implemented on what the task needs of the store
/// (its connections), not the store itself: the store holds the queue's handle, and the task
/// would keep it alive.
pub(crate) trait JoinsTogether: Send + Sync + 'static {
    fn together(
        &self,
        joins: &[Join],
    ) -> impl Future<Output = Result<Vec<JoinOutcome>, StoreError>> + Send;
}

/// The handle joins are queued through; the task ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct JoinQueue {
    queue: mpsc::UnboundedSender<(Join, Reply)>,
}

impl JoinQueue {
    /// Starts the task that decides the queued joins with `joiner`.
    pub(crate) fn start(joiner: impl JoinsTogether) -> Self {
        let (queue, joins) = mpsc::unbounded_channel();
        tokio::spawn(run(joiner, joins));
        JoinQueue { queue }
    }

    /// Queues `join` for the next transaction and waits for its outcome.
    pub(crate) async fn join(&self, join: Join) -> Result<JoinOutcome, StoreError> {
        let stopped = || StoreError::Unavailable("the deal join task stopped".into());
        let (reply, outcome) = oneshot::channel();
        self.queue.send((join, reply)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// One transaction at a time: two at once were slower (docs/BENCHMARKS.md, "Group-buying joins
/// scaled out"), as their joins end on the same product row.
async fn run(joiner: impl JoinsTogether, mut queue: mpsc::UnboundedReceiver<(Join, Reply)>) {
    let joins_per_transaction = metrics::histogram!(JOIN_TRANSACTION_JOINS);
    let seconds = metrics::histogram!(JOIN_TRANSACTION_SECONDS);
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_JOINS_PER_TRANSACTION {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (joins, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        joins_per_transaction.record(joins.len() as f64);
        let started = Instant::now();
        let outcomes = decide(&joiner, &joins).await;
        seconds.record(started.elapsed().as_secs_f64());
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have gone (its task ended); nothing to tell then.
            let _ = reply.send(outcome);
        }
    }
}

/// One outcome per join, in order.
async fn decide(
    joiner: &impl JoinsTogether,
    joins: &[Join],
) -> Vec<Result<JoinOutcome, StoreError>> {
    match joiner.together(joins).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(StoreError::Conflict(_) | StoreError::LimitExceeded(_)) if joins.len() > 1 => {
            let mut outcomes = Vec::with_capacity(joins.len());
            for join in joins {
                outcomes.push(
                    joiner
                        .together(std::slice::from_ref(join))
                        .await
                        .and_then(|mut one| one.pop().ok_or_else(no_outcome)),
                );
            }
            outcomes
        }
        Err(error) if joins.len() == 1 => vec![Err(error)],
        Err(error) => joins.iter().map(|_| Err(again(&error))).collect(),
    }
}

/// A transaction of one join that answered no outcome: a bug in the store's `together`.
fn no_outcome() -> StoreError {
    StoreError::Unavailable("a deal join's transaction gave no outcome".into())
}
