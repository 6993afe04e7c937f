//! Concurrent callers' script calls merged into one (request merging, 合并请求): callers queue
//! here, and one task sends everything queued as ONE `EVALSHA` whose script handles each
//! caller's item in queue order and answers each on its own. While a call is out, the next
//! callers queue, so calls grow with load as group commits do. Redis does per call the work it
//! did per caller before (parse, script lookup, reply), and the node encodes, sends and wakes for
//! one command instead of dozens.

use ordermill_core::ports::CacheError;
use redis::ScriptInvocation;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

/// Items per merged call, by `call` (`reservation`, `rate_limit`): near 1 when load is light,
/// growing with it.
pub const MERGED_CALL_ITEMS: &str = "ordermill_redis_merged_call_items";

/// Most items in one call: bounds the script's run (Redis serves nothing else meanwhile).
const MAX_ITEMS_PER_CALL: usize = 256;

/// One kind of merged call: how a batch of items becomes one script invocation, and how the
/// script's reply becomes each item's answer.
pub(super) trait MergedCall: Send + 'static {
    type Item: Send + 'static;
    type Answer: Send + 'static;
    /// What the calls do: the metric's `call` label, and named in the error a caller gets once
    /// the task is gone.
    const WHAT: &'static str;

    /// The one invocation carrying every item, in order.
    fn invocation(&self, items: &[Self::Item]) -> ScriptInvocation<'_>;

    /// Each item's answer from the script's reply (one entry per item, in order), or one error
    /// for them all.
    fn answers(
        &self,
        items: &[Self::Item],
        reply: Vec<i64>,
    ) -> Result<Vec<Result<Self::Answer, CacheError>>, CacheError>;
}

type Reply<C> = oneshot::Sender<Result<<C as MergedCall>::Answer, CacheError>>;

/// The handle callers use; cheap to clone. The task ends when every handle is gone.
pub(super) struct Merger<C: MergedCall> {
    queue: mpsc::UnboundedSender<(C::Item, Reply<C>)>,
}

impl<C: MergedCall> Clone for Merger<C> {
    fn clone(&self) -> Self {
        Merger { queue: self.queue.clone() }
    }
}

impl<C: MergedCall> Merger<C> {
    /// Starts the task that sends `call`'s merged invocations on `conn`.
    pub(super) fn start(conn: ConnectionManager, call: C) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, call, requests));
        Merger { queue }
    }

    /// Queues `item` for the next call and waits for its own answer.
    pub(super) async fn call(&self, item: C::Item) -> Result<C::Answer, CacheError> {
        let stopped = || CacheError::Unavailable(format!("the {} task stopped", C::WHAT));
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues every one of `items` at once, in order, so they go out together (as few calls
    /// as [`MAX_ITEMS_PER_CALL`] allows, handled in this order), and waits for each one's
    /// answer; one answer per item.
    pub(super) async fn call_each(
        &self,
        items: Vec<C::Item>,
    ) -> Vec<Result<C::Answer, CacheError>> {
        let stopped = || CacheError::Unavailable(format!("the {} task stopped", C::WHAT));
        let queued: Vec<_> = items
            .into_iter()
            .map(|item| {
                let (reply, answer) = oneshot::channel();
                self.queue.send((item, reply)).ok().map(|()| answer)
            })
            .collect();
        let mut answers = Vec::with_capacity(queued.len());
        for answer in queued {
            answers.push(match answer {
                Some(answer) => answer.await.unwrap_or_else(|_| Err(stopped())),
                None => Err(stopped()),
            });
        }
        answers
    }
}

async fn run<C: MergedCall>(
    mut conn: ConnectionManager,
    call: C,
    mut requests: mpsc::UnboundedReceiver<(C::Item, Reply<C>)>,
) {
    let items_per_call = metrics::histogram!(MERGED_CALL_ITEMS, "call" => C::WHAT);
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ITEMS_PER_CALL {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        items_per_call.record(items.len() as f64);
        let reply: Result<Vec<i64>, redis::RedisError> =
            call.invocation(&items).invoke_async(&mut conn).await;
        let answers = match reply {
            Ok(reply) => call.answers(&items, reply).and_then(|answers| {
                if answers.len() == items.len() {
                    Ok(answers)
                } else {
                    Err(CacheError::Unavailable(format!(
                        "the {} script answered {} of {} items",
                        C::WHAT,
                        answers.len(),
                        items.len()
                    )))
                }
            }),
            Err(error) => Err(super::unavailable(error)),
        };
        match answers {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // The caller may have gone (its task ended); nothing to tell then.
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(each(&error)));
                }
            }
        }
    }
}

/// A batch-wide error for each of its callers: the counts lost, or the call failed (the only
/// errors a whole call has; [`CacheError`] is not `Clone`, as a backend's error need not be).
fn each(error: &CacheError) -> CacheError {
    match error {
        CacheError::Lost => CacheError::Lost,
        CacheError::Unavailable(message) => CacheError::Unavailable(message.clone()),
        other => CacheError::Unavailable(other.to_string()),
    }
}
