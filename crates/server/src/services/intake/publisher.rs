//! Publishing committed batches' `order.created` events, with a linger through one task per
//! api node, so that batches committed close together share broker messages.
//!
//! Scaled out, RabbitMQ's work is per message much more than per event (docs/BENCHMARKS.md,
//! eighteenth session): publishing each group commit on its own made ~250 messages a second at
//! 10k orders/s, and RabbitMQ spent as much CPU per order as the api node. Under load this task
//! lets a publish wait up to `rabbitmq.publish_linger` from the first batch's commit for the
//! batches committed after it, and sends them as one publish (one message per
//! `rabbitmq.events_per_message` events). A lone batch after a lone one goes out at once, so an
//! idle shop's orders are confirmed no later than before.
//!
//! The events are durable in the outbox before they reach this task, so a publish that fails,
//! or a node that dies with batches queued here, only delays them to the relay's next sweep.

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::OutboxEvent;
use ordermill_core::ports::{AcceptedOrder, Envelope, EventBus};
use tokio::sync::mpsc;
use tokio::time::Instant; // tokio's clock, so tests can run the linger on paused time
use tokio_util::task::TaskTracker;

/// One committed batch and when it was committed.
type Committed = (Instant, Arc<Vec<AcceptedOrder>>);

/// The handle the committer hands batches to.
pub struct Publisher {
    /// To the lingering task; none without a linger (each batch is published as it comes).
    sender: Option<mpsc::UnboundedSender<Committed>>,
    /// The lingering task and every publish, so closing can wait for them.
    tasks: TaskTracker,
    bus: Arc<dyn EventBus>,
    stage: metrics::Histogram,
}

impl Publisher {
    /// Publishes on `bus`, timing each publish (publish → confirm) in `stage`.
    pub fn start(bus: Arc<dyn EventBus>, linger: Duration, stage: metrics::Histogram) -> Self {
        let tasks = TaskTracker::new();
        let sender = (!linger.is_zero()).then(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tasks.spawn(run(receiver, bus.clone(), linger, stage.clone(), tasks.clone()));
            sender
        });
        Publisher { sender, tasks, bus, stage }
    }

    /// Publishes a committed batch's events, or queues them for the lingering task.
    pub fn publish(&self, batch: Arc<Vec<AcceptedOrder>>) {
        let committed = (Instant::now(), batch);
        match &self.sender {
            None => {
                self.tasks.spawn(publish(self.bus.clone(), vec![committed], self.stage.clone()));
            }
            Some(sender) => {
                if sender.send(committed).is_err() {
                    // Only after the task ended, which it does only once this handle is closed.
                    tracing::warn!(
                        "The publisher has stopped; these order.created events stay in the outbox for the relay."
                    );
                }
            }
        }
    }

    /// Publishes what is queued (without lingering further) and waits for every publish.
    pub async fn close(self) {
        drop(self.sender);
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Takes everything already queued into `batches`; false once the channel is closed and empty.
fn drain(receiver: &mut mpsc::UnboundedReceiver<Committed>, batches: &mut Vec<Committed>) -> bool {
    loop {
        match receiver.try_recv() {
            Ok(next) => batches.push(next),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

/// The lingering task: each publish runs on its own (in `tasks`), so a slow confirm holds up
/// no batch behind it: every batch's publish starts within the linger of its commit, and gives
/// up within `rabbitmq.confirm_timeout` after that, before the relay would take its events for
/// abandoned (it waits that long and 2 s more).
async fn run(
    mut receiver: mpsc::UnboundedReceiver<Committed>,
    bus: Arc<dyn EventBus>,
    linger: Duration,
    stage: metrics::Histogram,
    tasks: TaskTracker,
) {
    // The last publish carried more than one batch: the node is under load.
    let mut last_shared = false;
    while let Some(first) = receiver.recv().await {
        let since = first.0;
        let mut batches = vec![first];
        let open = drain(&mut receiver, &mut batches);
        if open && (batches.len() > 1 || last_shared) {
            // From the first batch's commit, not from now.
            let deadline = since + linger;
            loop {
                tokio::select! {
                    biased;
                    next = receiver.recv() => match next {
                        Some(next) => batches.push(next),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        last_shared = batches.len() > 1;
        tasks.spawn(publish(bus.clone(), batches, stage.clone()));
    }
}

async fn publish(bus: Arc<dyn EventBus>, batches: Vec<Committed>, stage: metrics::Histogram) {
    let events: Vec<Envelope> = batches
        .iter()
        .flat_map(|(_, batch)| batch.iter())
        .map(|a| Envelope::from(OutboxEvent::order_created(&a.order, a.event_id)))
        .collect();
    let started = Instant::now();
    let published = bus.publish(events).await;
    stage.record(started.elapsed().as_secs_f64());
    if let Err(error) = published {
        tracing::error!(error = %error, "Could not publish order.created events; they stay in the outbox.");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use ordermill_core::ports::{
        BusError, DeadLetter, DeadLetterPage, DeadLetterSelection, Delivery, QueueDepth,
    };
    use ordermill_core::test_support::accepted_order;
    use ordermill_core::{OrderIdGenerator, UnixMillis};

    use super::*;

    fn accepted(ids: &OrderIdGenerator) -> AcceptedOrder {
        let now = UnixMillis(1_790_000_000_000);
        AcceptedOrder { order: accepted_order(ids, now, 1, "9.99"), event_id: ids.next_uuid(now) }
    }

    /// Records the event ids of each publish; nothing else of the bus is used here.
    #[derive(Default)]
    struct Recording(Mutex<Vec<Vec<uuid::Uuid>>>);

    impl Recording {
        fn publishes(&self) -> Vec<Vec<uuid::Uuid>> {
            self.0.lock().expect("not poisoned: the test holds it briefly").clone()
        }
    }

    #[async_trait]
    impl EventBus for Recording {
        fn queues(&self) -> Vec<String> {
            Vec::new()
        }
        async fn publish(&self, events: Vec<Envelope>) -> Result<(), BusError> {
            let ids = events.iter().map(|e| e.event_id).collect();
            self.0.lock().expect("not poisoned: the test holds it briefly").push(ids);
            Ok(())
        }
        async fn receive(&self, _: &str, _: usize, _: Duration) -> Result<Vec<Delivery>, BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn ack(&self, _: &[Delivery]) -> Result<(), BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn retry(&self, _: &Delivery, _: Duration, _: &str) -> Result<(), BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn dead_letter(&self, _: &Delivery, _: &str) -> Result<(), BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn dead_letters(
            &self,
            _: &str,
            _: DeadLetterPage,
        ) -> Result<Vec<DeadLetter>, BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn replay_dead_letters(
            &self,
            _: &str,
            _: DeadLetterSelection,
        ) -> Result<usize, BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn purge_dead_letters(
            &self,
            _: &str,
            _: DeadLetterSelection,
        ) -> Result<usize, BusError> {
            unreachable!("the publisher only publishes")
        }
        async fn depths(&self) -> Result<Vec<(String, QueueDepth)>, BusError> {
            unreachable!("the publisher only publishes")
        }
        fn backlog_hint(&self) -> u64 {
            unreachable!("the publisher only publishes")
        }
    }

    fn batch(n: usize) -> Arc<Vec<AcceptedOrder>> {
        let ids = OrderIdGenerator::new();
        Arc::new((0..n).map(|_| accepted(&ids)).collect())
    }

    fn ids(batches: &[&Arc<Vec<AcceptedOrder>>]) -> Vec<uuid::Uuid> {
        batches.iter().flat_map(|b| b.iter().map(|a| a.event_id)).collect()
    }

    const LINGER: Duration = Duration::from_millis(200);

    /// Waits (on the paused clock) until `bus` has seen a publish; fails after an hour.
    async fn first_publish(bus: &Recording) {
        tokio::time::timeout(Duration::from_secs(3600), async {
            while bus.publishes().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("nothing was published");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_batch_goes_out_at_once() {
        let bus = Arc::new(Recording::default());
        let publisher = Publisher::start(bus.clone(), LINGER, metrics::Histogram::noop());
        let lone = batch(2);
        let started = Instant::now();
        publisher.publish(lone.clone());
        first_publish(&bus).await;
        assert!(started.elapsed() < LINGER, "a lone batch waited {:?}", started.elapsed());
        assert_eq!(bus.publishes(), vec![ids(&[&lone])]);
        publisher.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn batches_committed_within_the_linger_share_one_publish() {
        let bus = Arc::new(Recording::default());
        let publisher = Publisher::start(bus.clone(), LINGER, metrics::Histogram::noop());
        // Queued together before the task runs: the node is busy, so it lingers for more.
        let (a, b, c) = (batch(3), batch(1), batch(2));
        publisher.publish(a.clone());
        publisher.publish(b.clone());
        tokio::time::sleep(LINGER / 5).await;
        publisher.publish(c.clone());
        tokio::time::sleep(LINGER * 3).await;
        assert_eq!(bus.publishes(), vec![ids(&[&a, &b, &c])], "one publish for all three");
        // The last publish was shared, so the next batch lingers too, and one committed
        // meanwhile joins it.
        let (d, e) = (batch(1), batch(1));
        publisher.publish(d.clone());
        tokio::time::sleep(LINGER / 5).await;
        publisher.publish(e.clone());
        publisher.close().await;
        assert_eq!(bus.publishes()[1..], [ids(&[&d, &e])]);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_publishes_what_is_queued() {
        let bus = Arc::new(Recording::default());
        let publisher =
            Publisher::start(bus.clone(), Duration::from_secs(3600), metrics::Histogram::noop());
        let (a, b) = (batch(1), batch(1));
        publisher.publish(a.clone());
        publisher.publish(b.clone());
        let started = Instant::now();
        publisher.close().await;
        assert!(started.elapsed() < Duration::from_secs(5), "closing waited out the linger");
        assert_eq!(bus.publishes().concat(), ids(&[&a, &b]), "every queued event published");
    }

    #[tokio::test(start_paused = true)]
    async fn no_linger_publishes_each_batch_as_it_comes() {
        let bus = Arc::new(Recording::default());
        let publisher = Publisher::start(bus.clone(), Duration::ZERO, metrics::Histogram::noop());
        let a = batch(1);
        publisher.publish(a.clone());
        first_publish(&bus).await;
        let b = batch(1);
        publisher.publish(b.clone());
        publisher.close().await;
        assert_eq!(bus.publishes(), vec![ids(&[&a]), ids(&[&b])]);
    }
}
