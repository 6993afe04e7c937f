//! The broker objects of a bus and their declarations, run on start and after every
//! reconnect. Every declaration is idempotent: the same arguments each time, so a running
//! broker accepts it and a restarted one gets back what it lost.
//!
//! Retries wait in *retry queues by delay tier*: `<queue>.retry.<ms>` has `x-message-ttl =
//! ms` and dead-letters back to the work queue through the default exchange. A per-message
//! `expiration` on one shared delay queue would not work: RabbitMQ only expires messages at
//! the head of a queue, so a 30 s retry would hold up every 200 ms retry queued behind it.
//! Within a tier every message has the same TTL, so the head always expires first.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use ordermill_core::Topology;

use super::settings::RabbitSettings;

/// The broker names of one logical queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueNames {
    /// The queue as the workers name it (`inventory`).
    pub(crate) logical: String,
    /// `<prefix><queue>`: where its events wait.
    pub(crate) work: String,
    /// `<prefix><queue>.dead`, bound to the dead-letter exchange with key `work`.
    pub(crate) dead: String,
    /// `(ttl ms, <prefix><queue>.retry.<ms>)`, ascending.
    pub(crate) retries: Vec<(u64, String)>,
}

impl QueueNames {
    /// The retry queue for a delay: the smallest tier at least `ms`, else the largest.
    pub(crate) fn retry_queue_for(&self, ms: u64) -> &str {
        self.retries
            .iter()
            .find(|(tier, _)| *tier >= ms)
            .or(self.retries.last())
            .map_or(self.work.as_str(), |(_, name)| name.as_str())
    }
}

/// Every broker name of a bus.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) exchange: String,
    pub(crate) dead_letter_exchange: String,
    pub(crate) queues: Vec<QueueNames>,
}

impl Names {
    pub(crate) fn new(settings: &RabbitSettings, topology: &Topology) -> Names {
        let tiers = settings.tiers();
        let queues = topology
            .queues()
            .into_iter()
            .map(|logical| {
                let work = format!("{}{logical}", settings.queue_prefix);
                QueueNames {
                    dead: format!("{work}.dead"),
                    retries: tiers.iter().map(|ms| (*ms, format!("{work}.retry.{ms}"))).collect(),
                    work,
                    logical,
                }
            })
            .collect();
        Names {
            exchange: settings.exchange.clone(),
            dead_letter_exchange: settings.dead_letter_exchange.clone(),
            queues,
        }
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn queue_args(quorum: bool) -> FieldTable {
    let mut args = FieldTable::default();
    if quorum {
        args.insert("x-queue-type".into(), string("quorum"));
    }
    args
}

/// Declares the exchanges, the queues and their bindings.
pub(crate) async fn declare(
    channel: &Channel,
    settings: &RabbitSettings,
    topology: &Topology,
    names: &Names,
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            names.dead_letter_exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    for (binding, queue) in topology.0.iter().zip(&names.queues) {
        // A message the broker drops from the work queue (a reject without requeue, a
        // length limit an operator sets) still lands in the dead queue, never nowhere.
        let mut work_args = queue_args(settings.quorum_queues);
        work_args.insert("x-dead-letter-exchange".into(), string(&names.dead_letter_exchange));
        work_args.insert("x-dead-letter-routing-key".into(), string(&queue.work));
        declare_queue(channel, &queue.work, work_args).await?;
        for key in &binding.keys {
            channel
                .queue_bind(
                    queue.work.as_str().into(),
                    names.exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }

        declare_queue(channel, &queue.dead, queue_args(settings.quorum_queues)).await?;
        channel
            .queue_bind(
                queue.dead.as_str().into(),
                names.dead_letter_exchange.as_str().into(),
                queue.work.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        for (ms, name) in &queue.retries {
            let mut args = queue_args(settings.quorum_queues);
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(*ms).unwrap_or(i64::MAX)),
            );
            // Back to the work queue only (default exchange, key = queue name), not through
            // the topic exchange to every queue bound to the event's key.
            args.insert("x-dead-letter-exchange".into(), string(""));
            args.insert("x-dead-letter-routing-key".into(), string(&queue.work));
            if settings.quorum_queues {
                // Quorum queues dead-letter at most once by default: a crash in between would
                // lose the retry. At-least-once needs reject-publish overflow.
                args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
                args.insert("x-overflow".into(), string("reject-publish"));
            }
            declare_queue(channel, name, args).await?;
        }
    }
    Ok(())
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    channel.queue_declare(ShortString::from(name), QueueDeclareOptions::durable(), args).await?;
    Ok(())
}

/// Deletes every queue and both exchanges.
pub(crate) async fn delete(channel: &Channel, names: &Names) -> lapin::Result<()> {
    for queue in &names.queues {
        let all = std::iter::once(&queue.work)
            .chain(std::iter::once(&queue.dead))
            .chain(queue.retries.iter().map(|(_, name)| name));
        for name in all {
            channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await?;
        }
    }
    for exchange in [&names.exchange, &names.dead_letter_exchange] {
        channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await?;
    }
    Ok(())
}
