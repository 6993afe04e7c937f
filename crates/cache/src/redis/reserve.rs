//! Reservations merged into one script call ([`super::merge`]): the script takes each order's
//! units all or none, in queue order, and answers each order on its own.

use ordermill_core::OrderLine;
use ordermill_core::ports::{CacheError, Epoch};
use redis::{Script, ScriptInvocation};

use super::merge::MergedCall;

/// KEYS[1] is the epoch, then every order's lines' counts one order after another; ARGV holds,
/// per order, its number of lines and then their units. Returns {-1} when the counts were
/// lost, else the epoch and then one entry per order: 0 (taken) or the 1-based index of its
/// first line short (a missing count under a live epoch is an unknown SKU: short). An order
/// sees the orders before it in the same call.
const RESERVE_MANY: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then return {-1} end
local out = {tonumber(epoch)}
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

/// The merged reservation call for the keys under one prefix.
pub(super) struct Reserve {
    script: Script,
    prefix: String,
    epoch_key: String,
}

impl Reserve {
    pub(super) fn new(prefix: &str) -> Self {
        Reserve {
            script: Script::new(RESERVE_MANY),
            prefix: prefix.to_owned(),
            epoch_key: super::epoch_key(prefix),
        }
    }
}

impl MergedCall for Reserve {
    type Item = Vec<OrderLine>;
    type Answer = Epoch;
    const WHAT: &'static str = "reservation";

    fn invocation(&self, orders: &[Vec<OrderLine>]) -> ScriptInvocation<'_> {
        let mut invocation = self.script.prepare_invoke();
        invocation.key(&self.epoch_key);
        for lines in orders {
            invocation.arg(lines.len());
            for line in lines {
                invocation.key(super::stock_key(&self.prefix, &line.sku)).arg(line.quantity.get());
            }
        }
        invocation
    }

    fn answers(
        &self,
        orders: &[Vec<OrderLine>],
        reply: Vec<i64>,
    ) -> Result<Vec<Result<Epoch, CacheError>>, CacheError> {
        let (epoch, outcomes) = match reply.split_first() {
            Some((-1, [])) => return Err(CacheError::Lost),
            Some((&epoch, outcomes)) if epoch > 0 && outcomes.len() == orders.len() => {
                (Epoch::new(epoch.unsigned_abs()), outcomes)
            }
            _ => {
                return Err(CacheError::Unavailable(format!(
                    "the reservation script answered {} values for {} orders and an epoch",
                    reply.len(),
                    orders.len()
                )));
            }
        };
        Ok(orders
            .iter()
            .zip(outcomes.iter().copied())
            .map(|(lines, outcome)| match outcome {
                0 => Ok(epoch),
                short => match usize::try_from(short - 1).ok().and_then(|j| lines.get(j)) {
                    Some(line) => Err(CacheError::OutOfStock { sku: line.sku.clone() }),
                    None => {
                        Err(CacheError::Unavailable(format!("reserve script answered {short}")))
                    }
                },
            })
            .collect())
    }
}
