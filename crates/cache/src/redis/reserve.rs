//! Reservations merged into one script call (request merging): concurrent orders queue here,
//! and one task sends everything queued as ONE `EVALSHA` whose script takes each order's units
//! all or none, in queue order, and answers each order on its own. While a call is out, the
//! next orders queue, so calls grow with load as group commits do. Redis does per call the
//! work it did per order before (parse, script lookup, reply), and the api node encodes,
//! sends and wakes for one command instead of dozens.

use ordermill_core::OrderLine;
use ordermill_core::ports::CacheError;
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

/// KEYS[1] is the epoch, then every order's lines' counts one order after another; ARGV holds,
/// per order, its number of lines and then their units. Returns {-1} when the counts were
/// lost, else one entry per order: 0 (taken) or the 1-based index of its first line short (a
/// missing count under a live epoch is an unknown SKU: short). An order sees the orders before
/// it in the same call.
const RESERVE_MANY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local out = {}
local k = 2
local a = 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local short = 0
  for i = 0, n - 1 do
    local have = redis.call('GET', KEYS[k + i])
    if not have or tonumber(have) < tonumber(ARGV[a + 1 + i]) then
      short = i + 1
      break
    end
  end
  if short == 0 then
    for i = 0, n - 1 do redis.call('DECRBY', KEYS[k + i], ARGV[a + 1 + i]) end
  end
  out[#out + 1] = short
  k = k + n
  a = a + 1 + n
end
return out
"#;

/// Most orders in one call: bounds the script's run (Redis serves nothing else meanwhile).
const MAX_ORDERS_PER_CALL: usize = 256;

type Reply = oneshot::Sender<Result<(), CacheError>>;

struct Request {
    lines: Vec<OrderLine>,
    reply: Reply,
}

/// The handle intake calls; cheap to clone.
#[derive(Clone)]
pub(super) struct Reserver {
    queue: mpsc::UnboundedSender<Request>,
}

impl Reserver {
    /// Starts the task that sends merged calls on `conn`, for the keys under `prefix`.
    pub(super) fn start(conn: ConnectionManager, prefix: String) -> Reserver {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, prefix, requests));
        Reserver { queue }
    }

    /// Takes every line's units or none, as one order.
    pub(super) async fn reserve(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { lines: lines.to_vec(), reply })
            .map_err(|_| CacheError::Unavailable("the reservation task stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| CacheError::Unavailable("the reservation task stopped".to_owned()))?
    }
}

/// Ends when every [`Reserver`] is gone.
async fn run(
    mut conn: ConnectionManager,
    prefix: String,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let script = Script::new(RESERVE_MANY);
    let epoch_key = super::epoch_key(&prefix);
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ORDERS_PER_CALL {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut invocation = script.prepare_invoke();
        invocation.key(&epoch_key);
        for request in &batch {
            invocation.arg(request.lines.len());
            for line in &request.lines {
                invocation.key(super::stock_key(&prefix, &line.sku)).arg(line.quantity.get());
            }
        }
        let answered: Result<Vec<i64>, redis::RedisError> =
            invocation.invoke_async(&mut conn).await;
        match answered {
            Ok(outcomes) => answer(batch, &outcomes),
            Err(error) => {
                let message = error.to_string();
                for request in batch {
                    // The caller may have gone (its task ended); nothing to tell then.
                    let _ = request.reply.send(Err(CacheError::Unavailable(message.clone())));
                }
            }
        }
    }
}

fn answer(batch: Vec<Request>, outcomes: &[i64]) {
    if outcomes == [-1] {
        for request in batch {
            let _ = request.reply.send(Err(CacheError::Lost));
        }
        return;
    }
    if outcomes.len() != batch.len() {
        let message = format!(
            "the reservation script answered {} outcomes for {} orders",
            outcomes.len(),
            batch.len()
        );
        for request in batch {
            let _ = request.reply.send(Err(CacheError::Unavailable(message.clone())));
        }
        return;
    }
    for (request, &outcome) in batch.into_iter().zip(outcomes) {
        let result = match outcome {
            0 => Ok(()),
            short => match usize::try_from(short - 1).ok().and_then(|j| request.lines.get(j)) {
                Some(line) => Err(CacheError::OutOfStock { sku: line.sku.clone() }),
                None => Err(CacheError::Unavailable(format!("reserve script answered {short}"))),
            },
        };
        let _ = request.reply.send(result);
    }
}
