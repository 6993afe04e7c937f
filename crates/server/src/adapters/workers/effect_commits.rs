//! Consumers' effect batches committed together on a shared store: every queue of a worker
//! receives the same `order.created` batch at about the same moment, and inventory's and
//! payment's effects then lock the same order rows. Batches that arrive while a commit runs
//! are applied in the next one, as one store transaction (the store chains several effects on
//! one order, in order); each consumer gets its own outcomes back.
//!
//! A merged transaction that fails for any reason but the store being unavailable is applied
//! again batch by batch, so a batch that cannot commit fails alone, never its neighbours.

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::ports::{Effect, EffectOutcome, OrderStore, StoreError};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Vec<EffectOutcome>, StoreError>>;

/// What commits a batch of effects: the store ([`OrderStore::apply_effects`]).
#[async_trait]
pub trait ApplyEffects: Send + Sync + 'static {
    /// As [`OrderStore::apply_effects`].
    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError>;
}

struct Store(Arc<dyn OrderStore>);

#[async_trait]
impl ApplyEffects for Store {
    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError> {
        self.0.apply_effects(effects).await
    }
}

/// Where consumers send their effect batches.
#[derive(Clone)]
pub enum EffectCommits {
    /// Each batch in a transaction of its own (the embedded store's writer merges them
    /// itself).
    Alone(Arc<dyn OrderStore>),
    /// Batches merged by one committer task.
    Merged(mpsc::UnboundedSender<(Vec<Effect>, Reply)>),
}

impl EffectCommits {
    /// `merge`: start the committer task (on a store shared by several processes).
    pub fn new(store: Arc<dyn OrderStore>, merge: bool) -> EffectCommits {
        if merge {
            EffectCommits::merged(Arc::new(Store(store)))
        } else {
            EffectCommits::Alone(store)
        }
    }

    /// Batches merged by a committer task of their own, committed by `sink`.
    pub fn merged(sink: Arc<dyn ApplyEffects>) -> EffectCommits {
        let (send, receive) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(sink, receive));
        EffectCommits::Merged(send)
    }

    /// Applies `effects` (one consumer's batch) in a store transaction, maybe with other
    /// consumers' batches; their outcomes, in order.
    ///
    /// # Errors
    /// As [`OrderStore::apply_effects`]: nothing of this batch was written.
    pub async fn apply(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError> {
        match self {
            EffectCommits::Alone(store) => store.apply_effects(effects).await,
            EffectCommits::Merged(send) => {
                let (reply, answer) = oneshot::channel();
                send.send((effects, reply))
                    .map_err(|_| StoreError::Unavailable("the effect committer stopped".into()))?;
                answer.await.unwrap_or_else(|_| {
                    Err(StoreError::Unavailable("the effect committer stopped".into()))
                })
            }
        }
    }
}

/// Commits what waits, one transaction at a time, until every sender is gone.
async fn commit_loop(
    store: Arc<dyn ApplyEffects>,
    mut receive: mpsc::UnboundedReceiver<(Vec<Effect>, Reply)>,
) {
    while let Some(first) = receive.recv().await {
        let mut jobs = vec![first];
        while let Ok(next) = receive.try_recv() {
            jobs.push(next);
        }
        // A task of its own per commit would let two run at once; this one waits instead,
        // and the batches arriving meanwhile make the next commit.
        commit(&*store, jobs).await;
    }
}

async fn commit(store: &dyn ApplyEffects, mut jobs: Vec<(Vec<Effect>, Reply)>) {
    if jobs.len() == 1 {
        let (effects, reply) = jobs.remove(0);
        let _ = reply.send(store.apply_effects(effects).await);
        return;
    }
    let sizes: Vec<usize> = jobs.iter().map(|(effects, _)| effects.len()).collect();
    let all: Vec<Effect> = jobs.iter().flat_map(|(effects, _)| effects.iter().cloned()).collect();
    let total = all.len();
    match store.apply_effects(all).await {
        Ok(mut outcomes) if outcomes.len() == total => {
            for ((_, reply), size) in jobs.into_iter().zip(sizes) {
                let rest = outcomes.split_off(size);
                let _ = reply.send(Ok(std::mem::replace(&mut outcomes, rest)));
            }
        }
        Ok(outcomes) => {
            let why =
                format!("the store answered for {} effects of {total} (a bug)", outcomes.len());
            for (_, reply) in jobs {
                let _ = reply.send(Err(StoreError::Corrupt(why.clone())));
            }
        }
        Err(StoreError::Unavailable(why)) => {
            for (_, reply) in jobs {
                let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
            }
        }
        // Something in one batch failed the whole: each batch alone, so only its own fails.
        Err(_) => {
            for (effects, reply) in jobs {
                let _ = reply.send(store.apply_effects(effects).await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::sync::Mutex;

    use ordermill_core::{Fact, OrderId, RoutingKeys, UnixMillis};
    use tokio::sync::Semaphore;
    use uuid::Uuid;

    use super::*;

    /// Records each call's reasons; the first call waits for a permit. A batch holding the
    /// reason "poison" fails whole; `down` makes every call unavailable. Each effect's
    /// outcome tells whether it had a fact (`OrderNotFound`) or not (`Recorded`).
    #[derive(Default)]
    struct Sink {
        calls: Mutex<Vec<Vec<String>>>,
        gate: Option<Semaphore>,
        down: bool,
    }

    #[async_trait]
    impl ApplyEffects for Sink {
        async fn apply_effects(
            &self,
            effects: Vec<Effect>,
        ) -> Result<Vec<EffectOutcome>, StoreError> {
            let first = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(effects.iter().map(|e| e.reason.clone().unwrap_or_default()).collect());
                calls.len() == 1
            };
            if let (true, Some(gate)) = (first, &self.gate) {
                drop(gate.acquire().await.unwrap());
            }
            if self.down {
                return Err(StoreError::Unavailable("down".into()));
            }
            if effects.iter().any(|e| e.reason.as_deref() == Some("poison")) {
                return Err(StoreError::Backend("poisoned".into()));
            }
            Ok(effects
                .iter()
                .map(|e| match e.fact {
                    Some(_) => EffectOutcome::OrderNotFound,
                    None => EffectOutcome::Recorded,
                })
                .collect())
        }
    }

    fn effect(reason: &str, fact: Option<Fact>) -> Effect {
        Effect {
            consumer: "inventory".into(),
            event_id: Uuid::now_v7(),
            order_id: OrderId::from_uuid(Uuid::now_v7()),
            fact,
            reason: Some(reason.to_owned()),
            new_event_ids: [Uuid::now_v7(), Uuid::now_v7()],
            at: UnixMillis(0),
            unrouted: RoutingKeys::NONE,
            awaited_payment: None,
        }
    }

    fn kinds(outcomes: &[EffectOutcome]) -> Vec<&'static str> {
        outcomes
            .iter()
            .map(|o| match o {
                EffectOutcome::Recorded => "recorded",
                EffectOutcome::OrderNotFound => "fact",
                _ => "other",
            })
            .collect()
    }

    /// Three batches: the first commits alone and is held there until `release`; the other
    /// two arrive meanwhile. Returns each batch's answer.
    async fn three_batches(
        sink: Arc<Sink>,
        second: Vec<Effect>,
        third: Vec<Effect>,
    ) -> [Result<Vec<EffectOutcome>, StoreError>; 3] {
        let commits = EffectCommits::merged(sink.clone());
        let first = tokio::spawn({
            let commits = commits.clone();
            async move { commits.apply(vec![effect("a1", None)]).await }
        });
        while sink.calls.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let (c2, c3) = (commits.clone(), commits.clone());
        let second = tokio::spawn(async move { c2.apply(second).await });
        let third = tokio::spawn(async move { c3.apply(third).await });
        // Both are queued before the first commit ends.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sink.gate.as_ref().unwrap().add_permits(1);
        [first.await.unwrap(), second.await.unwrap(), third.await.unwrap()]
    }

    fn gated() -> Sink {
        Sink { gate: Some(Semaphore::new(0)), ..Sink::default() }
    }

    #[tokio::test]
    async fn batches_that_wait_for_a_commit_share_the_next_and_get_their_own_outcomes() {
        let sink = Arc::new(gated());
        let [first, second, third] = three_batches(
            sink.clone(),
            vec![effect("b1", None), effect("b2", Some(Fact::StockDeducted))],
            vec![effect("c1", Some(Fact::StockDeducted))],
        )
        .await;
        let calls = sink.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0], ["a1"]);
        let mut merged = calls[1].clone();
        merged.sort();
        assert_eq!(merged, ["b1", "b2", "c1"]);
        assert_eq!(kinds(&first.unwrap()), ["recorded"]);
        assert_eq!(kinds(&second.unwrap()), ["recorded", "fact"]);
        assert_eq!(kinds(&third.unwrap()), ["fact"]);
    }

    #[tokio::test]
    async fn a_batch_that_fails_a_merged_commit_fails_alone() {
        let sink = Arc::new(gated());
        let [first, second, third] = three_batches(
            sink.clone(),
            vec![effect("b1", None), effect("poison", None)],
            vec![effect("c1", Some(Fact::StockDeducted))],
        )
        .await;
        assert!(first.is_ok());
        assert!(matches!(second, Err(StoreError::Backend(_))), "{second:?}");
        assert_eq!(kinds(&third.unwrap()), ["fact"]);
        // The merged try, then each batch alone.
        assert_eq!(sink.calls.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn an_unavailable_store_fails_a_merged_commit_once_for_all() {
        let sink = Arc::new(Sink { down: true, ..gated() });
        let answers =
            three_batches(sink.clone(), vec![effect("b1", None)], vec![effect("c1", None)]).await;
        for answer in answers {
            assert!(matches!(answer, Err(StoreError::Unavailable(_))), "{answer:?}");
        }
        assert_eq!(sink.calls.lock().unwrap().len(), 2, "no batch-by-batch retry while down");
    }
}
