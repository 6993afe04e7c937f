//! Group commit: one task per node drains whatever orders are pending and makes them durable
//! in ONE store transaction, so the cost of an fsync is shared by every order waiting for it.
//!
//! Once an order is handed over here the committer owns its reservation: on a failed commit
//! it gives the units back to the hot-stock cache before answering, so nothing half-done
//! remains whether or not the client is still waiting.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use ordermill_core::OutboxEvent;
use ordermill_core::ports::{
    AcceptedOrder, Envelope, EventBus, OrderStore, StockCache, StoreError,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::telemetry::CommitMetrics;

/// Where one request's outcome is sent.
pub type Reply = oneshot::Sender<Result<Committed, CommitFailed>>;

/// Orders from one intake call, and where to answer.
pub struct CommitRequest {
    /// Orders whose stock is already reserved.
    pub orders: Vec<AcceptedOrder>,
    /// Receives the outcome once the transaction is durable (or failed).
    pub reply: Reply,
}

/// A durable batch and the slice of it that belongs to one request.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The whole transaction's orders.
    pub batch: Arc<Vec<AcceptedOrder>>,
    /// This request's orders within it, in the order they were sent.
    pub range: Range<usize>,
}

/// The transaction failed: nothing was written and the reservations were released.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the order store did not commit: {message}")]
pub struct CommitFailed {
    /// The store's error.
    pub message: String,
    /// The request's own orders collided with stored ones (an idempotency key the same
    /// customer sent to another node at the same moment): a retry finds the winner.
    pub conflict: bool,
}

/// Handle used by intake to queue orders.
#[derive(Clone)]
pub struct CommitterHandle {
    sender: mpsc::Sender<CommitRequest>,
}

impl CommitterHandle {
    /// Queues a request. Waits for a slot when the queue is full (backpressure).
    ///
    /// # Errors
    /// Gives the request back when the committer has stopped (shutdown).
    pub async fn submit(&self, request: CommitRequest) -> Result<(), CommitRequest> {
        self.sender.send(request).await.map_err(|e| e.0)
    }
}

/// The committer task's inputs.
pub struct Committer {
    receiver: mpsc::Receiver<CommitRequest>,
    store: Arc<dyn OrderStore>,
    cache: Arc<dyn StockCache>,
    bus: Arc<dyn EventBus>,
    max_batch: usize,
    metrics: CommitMetrics,
}

impl Committer {
    /// A committer and the handle to feed it; `capacity` bounds queued requests.
    pub fn new(
        store: Arc<dyn OrderStore>,
        cache: Arc<dyn StockCache>,
        bus: Arc<dyn EventBus>,
        max_batch: usize,
        capacity: usize,
    ) -> (Committer, CommitterHandle) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let committer = Committer {
            receiver,
            store,
            cache,
            bus,
            max_batch: max_batch.max(1),
            metrics: CommitMetrics::new(),
        };
        (committer, CommitterHandle { sender })
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
        tracing::info!("Committer stopped after flushing every queued order.");
    }

    async fn commit_pending(&mut self, first: CommitRequest) {
        let mut count = first.orders.len();
        let mut requests = vec![first];
        while count < self.max_batch {
            match self.receiver.try_recv() {
                Ok(next) => {
                    count += next.orders.len();
                    requests.push(next);
                }
                Err(_) => break,
            }
        }
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
        self.metrics.batch_orders.record(batch.len() as f64);
        match outcome {
            Ok(()) => self.committed(batch, replies),
            // One request's orders must not fail its batch-mates': commit each request on
            // its own, so only the colliding one fails.
            Err(StoreError::Conflict(_)) if replies.len() > 1 => {
                tracing::warn!(
                    requests = replies.len(),
                    "A group commit collided on an idempotency key; committing its requests one by one."
                );
                for (reply, range) in replies {
                    let own = Arc::new(batch[range.clone()].to_vec());
                    match self.store.commit_orders(own.clone()).await {
                        Ok(()) => self.committed(own, vec![(reply, 0..range.len())]),
                        Err(error) => self.fail(&own, vec![(reply, 0..range.len())], error).await,
                    }
                }
            }
            Err(error) => self.fail(&batch, replies, error).await,
        }
    }

    fn committed(&self, batch: Arc<Vec<AcceptedOrder>>, replies: Vec<(Reply, Range<usize>)>) {
        for (reply, range) in replies {
            // The client may have gone; its order is durable regardless.
            let _ = reply.send(Ok(Committed { batch: batch.clone(), range }));
        }
        // Off the commit loop: the next batch need not wait for event bodies to be built.
        // The events are durable in the outbox, so a failed publish only delays them to the
        // next start.
        let bus = self.bus.clone();
        tokio::spawn(async move {
            let events: Vec<Envelope> = batch
                .iter()
                .map(|a| Envelope::from(OutboxEvent::order_created(&a.order, a.event_id)))
                .collect();
            if let Err(error) = bus.publish(events).await {
                tracing::error!(error = %error, "Could not publish order.created events; they stay in the outbox.");
            }
        });
    }

    async fn fail(
        &self,
        batch: &[AcceptedOrder],
        replies: Vec<(Reply, Range<usize>)>,
        error: StoreError,
    ) {
        self.metrics.failures.increment(1);
        let conflict = matches!(error, StoreError::Conflict(_));
        if conflict {
            tracing::info!(orders = batch.len(), error = %error, "A request's orders collided with stored ones; releasing its reservations, its retry finds the stored order.");
        } else {
            tracing::error!(orders = batch.len(), error = %error, cause = ?std::error::Error::source(&error), "Group commit failed; releasing reservations and answering 503.");
        }
        for accepted in batch {
            if let Err(release) = self.cache.release(&accepted.order.lines).await {
                tracing::error!(order_id = %accepted.order.id, error = %release, "Could not release hot stock after a failed commit; restart to reconcile.");
            }
        }
        let failed = CommitFailed { message: error.to_string(), conflict };
        for (reply, _) in replies {
            let _ = reply.send(Err(failed.clone()));
        }
    }
}
