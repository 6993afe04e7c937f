//! The one thread that writes. SQLite allows one writer at a time; giving it a thread of its
//! own keeps the async runtime free while a transaction fsyncs, and lets prepared statements
//! live as long as the connection.

use std::sync::Arc;

use ordermill_core::ports::{
    AcceptedOrder, Effect, EffectOutcome, ExpiredDeal, JoinOutcome, StoreError,
};
use ordermill_core::{Deal, DealId, OrderId, Product, RoutingKey, Sku, UnixMillis, units_by_sku};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::error::from_sqlite;
use super::{deals, effects, ledger, rows};
use crate::join::Join;

pub(crate) enum Command {
    ApplyEffects {
        effects: Vec<Effect>,
        reply: oneshot::Sender<Result<Vec<EffectOutcome>, StoreError>>,
    },
    RecordAcks {
        acks: Vec<(Arc<str>, Uuid)>,
        finished: Vec<Uuid>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RecordRetry {
        queue: String,
        event: Uuid,
        attempts: u32,
        not_before: UnixMillis,
        error: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RecordDead {
        queue: String,
        event: Uuid,
        attempts: u32,
        error: String,
        at: UnixMillis,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ClearDead {
        queue: String,
        events: Vec<Uuid>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ForgetKey {
        order: OrderId,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    CommitOrders {
        batch: Arc<Vec<AcceptedOrder>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    UpsertProduct {
        product: Product,
        reply: oneshot::Sender<Result<(Product, Option<Product>), StoreError>>,
    },
    CheckWritable {
        /// Commit a real write (one page appended to the WAL) instead of only taking the lock:
        /// after a disk-full failure, that is what shows space came back.
        probe: bool,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    CreateDeal {
        deal: Deal,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    JoinDeal {
        join: Join,
        reply: JoinReply,
    },
    ExpireDeal {
        deal_id: DealId,
        event_ids: Vec<Uuid>,
        at: UnixMillis,
        reply: oneshot::Sender<Result<Option<ExpiredDeal>, StoreError>>,
    },
    SetLimit {
        sku: Sku,
        limit: Option<u32>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Report {
        write: super::reports::Write,
        reply: oneshot::Sender<Result<super::reports::Written, StoreError>>,
    },
    PruneProcessed {
        before: Uuid,
        limit: u32,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// Effects written in one consumer transaction, at most (whole caller batches are never split,
/// so one larger batch goes alone). An intake commit that arrives while consumer work is queued
/// waits for one such transaction, not for all of it.
const EFFECTS_PER_TRANSACTION: usize = 256;

/// Runs until every sender is dropped, then returns (after finishing queued commands).
///
/// **Intake first.** Every turn takes what is queued, runs the commands that answer a client
/// (order commits, catalog and deal writes, the bus's retries and dead letters) before any
/// consumer work, then ONE bounded consumer transaction, and looks again. So an order's commit
/// waits for at most one consumer transaction, however much consumer work piles up.
///
/// **Consumer work costs no fsync of its own.** Effects and acks commit with
/// `synchronous = NORMAL`: their WAL frames reach the disk with the next intake commit's fsync
/// (an fsync covers the whole WAL file, and WAL frames are only valid in order) or the next
/// checkpoint. A kill -9 loses nothing (the frames are in the OS already); a power cut can
/// lose the last consumer transactions, whose events are then still in the outbox, delivered
/// again and done again exactly as after a crash between an effect and its ack (outside calls
/// carry their idempotency keys). Everything else commits with `synchronous = FULL`: a 201 is
/// on disk.
///
/// **Group commit for consumers.** Effect batches queued together, and every ack queued, go
/// into one transaction. The merge changes no outcome: effects are independent per event (each
/// carries its own "processed" record), acks are idempotent, and a caller whose merged
/// transaction fails is retried alone, so only the culprit sees the error.
pub(crate) fn run(conn: Connection, mut commands: tokio::sync::mpsc::Receiver<Command>) {
    let mut writer = Writer { conn, synchronous: Synchronous::Full };
    let mut consumers = ConsumerWork::default();
    let mut open = true;
    while open || !consumers.is_empty() {
        let mut first_priority = Vec::new();
        if open && consumers.is_empty() {
            match commands.blocking_recv() {
                Some(command) => consumers.sort(command, &mut first_priority),
                None => open = false,
            }
        }
        while open {
            match commands.try_recv() {
                Ok(command) => consumers.sort(command, &mut first_priority),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if !first_priority.is_empty() {
            match writer.set(Synchronous::Full) {
                Ok(()) => execute_in_order(&mut writer.conn, first_priority),
                // Never write what must be durable without its fsync.
                Err(error) => {
                    for command in first_priority {
                        command.fail(StoreError::Unavailable(format!(
                            "cannot make the commit durable: {error}"
                        )));
                    }
                }
            }
        }
        consumers.write_one(&mut writer);
    }
    tracing::debug!("SQLite writer thread stopped: every handle was dropped.");
}

/// When a commit returns: after its fsync (`Full`) or once the OS has its WAL frames (`Normal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    Full,
    Normal,
}

/// The writer's connection and the `synchronous` mode it is in.
struct Writer {
    conn: Connection,
    synchronous: Synchronous,
}

impl Writer {
    fn set(&mut self, wanted: Synchronous) -> rusqlite::Result<()> {
        if self.synchronous == wanted {
            return Ok(());
        }
        let value = if wanted == Synchronous::Full { "FULL" } else { "NORMAL" };
        if self.conn.pragma_update(None, "synchronous", value).is_err() {
            // A failed COMMIT can leave its transaction open, and the mode cannot change
            // inside one.
            let _ = self.conn.execute_batch("ROLLBACK;");
            self.conn.pragma_update(None, "synchronous", value)?;
        }
        self.synchronous = wanted;
        Ok(())
    }
}

/// Runs `commands` in the order they came, deal joins queued one after another together
/// ([`deals::join_each`]: one transaction, one fsync) and everything else on its own.
fn execute_in_order(conn: &mut Connection, commands: Vec<Command>) {
    let mut joins: Vec<(Join, JoinReply)> = Vec::new();
    for command in commands {
        match command {
            Command::JoinDeal { join, reply } => joins.push((join, reply)),
            other => {
                join_together(conn, &mut joins);
                execute(conn, other);
            }
        }
    }
    join_together(conn, &mut joins);
}

/// Writes the queued `joins` and answers each; empties the queue.
fn join_together(conn: &mut Connection, joins: &mut Vec<(Join, JoinReply)>) {
    if joins.len() <= 1 {
        if let Some((join, reply)) = joins.pop() {
            let _ = reply.send(deals::join(conn, &join));
        }
        return;
    }
    let (queued, replies): (Vec<_>, Vec<_>) = std::mem::take(joins).into_iter().unzip();
    for (reply, outcome) in replies.into_iter().zip(deals::join_each(conn, &queued)) {
        let _ = reply.send(outcome);
    }
}

type JoinReply = oneshot::Sender<Result<JoinOutcome, StoreError>>;
type EffectsReply = oneshot::Sender<Result<Vec<EffectOutcome>, StoreError>>;
type UnitReply = oneshot::Sender<Result<(), StoreError>>;
type EffectBatch = (Vec<Effect>, EffectsReply);
type AckBatch = (Vec<(Arc<str>, Uuid)>, Vec<Uuid>, UnitReply);

/// A chunk of the retention's deletes: records below `before`, at most `limit`.
type PruneJob = (Uuid, u32, oneshot::Sender<Result<u64, StoreError>>);

/// Consumer writes waiting for the writer, oldest first, and the retention's chunks.
#[derive(Default)]
struct ConsumerWork {
    effects: std::collections::VecDeque<EffectBatch>,
    acks: Vec<AckBatch>,
    prunes: std::collections::VecDeque<PruneJob>,
}

impl ConsumerWork {
    fn is_empty(&self) -> bool {
        self.effects.is_empty() && self.acks.is_empty() && self.prunes.is_empty()
    }

    /// Keeps consumer work and the retention's chunks; everything else goes to `first`.
    fn sort(&mut self, command: Command, first: &mut Vec<Command>) {
        match command {
            Command::ApplyEffects { effects, reply } => self.effects.push_back((effects, reply)),
            Command::RecordAcks { acks, finished, reply } => {
                self.acks.push((acks, finished, reply))
            }
            Command::PruneProcessed { before, limit, reply } => {
                self.prunes.push_back((before, limit, reply))
            }
            other => first.push(other),
        }
    }

    /// One consumer transaction (effects up to [`EFFECTS_PER_TRANSACTION`] and every ack
    /// waiting), then one retention chunk, both without an fsync of their own: a deletion a
    /// power cut undoes is done again at the next run. The chunk runs every turn even under
    /// steady consumer work, so retention is never starved, and intake waits for at most one
    /// of each.
    fn write_one(&mut self, writer: &mut Writer) {
        if self.is_empty() {
            return;
        }
        // Staying at FULL only costs an fsync; the work is the same.
        let _ = writer.set(Synchronous::Normal);
        self.write_consumer_transaction(&mut writer.conn);
        if let Some(job) = self.prunes.pop_front() {
            prune(&mut writer.conn, job);
        }
    }

    fn write_consumer_transaction(&mut self, conn: &mut Connection) {
        if self.effects.is_empty() && self.acks.is_empty() {
            return;
        }
        let mut effects = Vec::new();
        let mut size = 0;
        while let Some((batch, _)) = self.effects.front() {
            if !effects.is_empty() && size + batch.len() > EFFECTS_PER_TRANSACTION {
                break;
            }
            size += batch.len();
            effects.extend(self.effects.pop_front());
        }
        let acks = std::mem::take(&mut self.acks);
        if effects.is_empty() {
            record_acks_merged(conn, acks);
            return;
        }
        match apply_together(conn, &effects, &acks) {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (batch, reply) in effects {
                    // A reply whose receiver is gone (the caller was cancelled) is no error.
                    let _ = reply.send(Ok(outcomes.by_ref().take(batch.len()).collect()));
                }
                for (_, _, reply) in acks {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(_) => {
                for (batch, reply) in effects {
                    let _ = reply.send(effects::apply(conn, &batch));
                }
                record_acks_merged(conn, acks);
            }
        }
    }
}

/// Every effect and ack of the batches in one transaction, or nothing.
fn apply_together(
    conn: &mut Connection,
    effects: &[EffectBatch],
    acks: &[AckBatch],
) -> Result<Vec<EffectOutcome>, StoreError> {
    let all: Vec<Effect> = effects.iter().flat_map(|(b, _)| b.iter().cloned()).collect();
    let (acked, finished) = merged_acks(acks);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let outcomes = effects::apply_in(&tx, &all)?;
    ledger::record_acks_in(&tx, &acked, &finished).map_err(from_sqlite)?;
    tx.commit().map_err(from_sqlite)?;
    Ok(outcomes)
}

/// The acks and finished events of `batches`, as one list each.
fn merged_acks(batches: &[AckBatch]) -> (Vec<(Arc<str>, Uuid)>, Vec<Uuid>) {
    let acks = batches.iter().flat_map(|(a, _, _)| a.iter().cloned()).collect();
    let finished = batches.iter().flat_map(|(_, f, _)| f.iter().copied()).collect();
    (acks, finished)
}

fn record_acks_merged(conn: &mut Connection, batches: Vec<AckBatch>) {
    let (acks, finished) = merged_acks(&batches);
    let result = ledger::record_acks(conn, &acks, &finished).map_err(from_sqlite);
    for (_, _, reply) in batches {
        let _ = reply.send(match &result {
            Ok(()) => Ok(()),
            Err(error) => Err(StoreError::Unavailable(error.to_string())),
        });
    }
}

impl Command {
    /// Answers the command with `error` instead of running it.
    fn fail(self, error: StoreError) {
        // A reply whose receiver is gone is no error; each reply has its own success type.
        match self {
            Command::ApplyEffects { reply, .. } => drop(reply.send(Err(error))),
            Command::RecordAcks { reply, .. } => drop(reply.send(Err(error))),
            Command::RecordRetry { reply, .. } => drop(reply.send(Err(error))),
            Command::RecordDead { reply, .. } => drop(reply.send(Err(error))),
            Command::ClearDead { reply, .. } => drop(reply.send(Err(error))),
            Command::ForgetKey { reply, .. } => drop(reply.send(Err(error))),
            Command::CommitOrders { reply, .. } => drop(reply.send(Err(error))),
            Command::UpsertProduct { reply, .. } => drop(reply.send(Err(error))),
            Command::CheckWritable { reply, .. } => drop(reply.send(Err(error))),
            Command::CreateDeal { reply, .. } => drop(reply.send(Err(error))),
            Command::JoinDeal { reply, .. } => drop(reply.send(Err(error))),
            Command::ExpireDeal { reply, .. } => drop(reply.send(Err(error))),
            Command::SetLimit { reply, .. } => drop(reply.send(Err(error))),
            Command::Report { reply, .. } => drop(reply.send(Err(error))),
            Command::PruneProcessed { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

fn execute(conn: &mut Connection, command: Command) {
    match command {
        Command::ApplyEffects { effects, reply } => {
            let _ = reply.send(effects::apply(conn, &effects));
        }
        Command::RecordAcks { acks, finished, reply } => {
            let _ = reply.send(ledger::record_acks(conn, &acks, &finished).map_err(from_sqlite));
        }
        Command::RecordRetry { queue, event, attempts, not_before, error, reply } => {
            let result = ledger::record_retry(conn, &queue, event, attempts, not_before, &error);
            let _ = reply.send(result.map_err(from_sqlite));
        }
        Command::RecordDead { queue, event, attempts, error, at, reply } => {
            let result = ledger::record_dead(conn, &queue, event, attempts, &error, at);
            let _ = reply.send(result.map_err(from_sqlite));
        }
        Command::ClearDead { queue, events, reply } => {
            let _ = reply.send(ledger::clear_dead(conn, &queue, &events).map_err(from_sqlite));
        }
        Command::ForgetKey { order, reply } => {
            let result = conn
                .prepare_cached("UPDATE orders SET idempotency_key = NULL WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([order.as_uuid().as_bytes()]))
                .map(drop)
                .map_err(from_sqlite);
            let _ = reply.send(result);
        }
        Command::CommitOrders { batch, reply } => {
            let _ = reply.send(commit_orders(conn, &batch));
        }
        Command::UpsertProduct { product, reply } => {
            let _ = reply.send(upsert_product(conn, &product));
        }
        Command::CheckWritable { probe, reply } => {
            // The header's application id ("oml\0"): a one-page write that changes nothing
            // anyone reads.
            let sql = if probe {
                "BEGIN IMMEDIATE; PRAGMA application_id = 1869442048; COMMIT;"
            } else {
                "BEGIN IMMEDIATE; ROLLBACK;"
            };
            let result = conn.execute_batch(sql).map_err(from_sqlite);
            if result.is_err() {
                // A failed COMMIT can leave the transaction open; the next command needs none.
                let _ = conn.execute_batch("ROLLBACK;");
            }
            let _ = reply.send(result);
        }
        Command::CreateDeal { deal, reply } => {
            let _ = reply.send(deals::create(conn, &deal));
        }
        Command::JoinDeal { join, reply } => {
            let _ = reply.send(deals::join(conn, &join));
        }
        Command::ExpireDeal { deal_id, event_ids, at, reply } => {
            let _ = reply.send(deals::expire(conn, deal_id, &event_ids, at));
        }
        Command::SetLimit { sku, limit, reply } => {
            let _ = reply.send(deals::set_limit(conn, &sku, limit));
        }
        Command::Report { write, reply } => {
            let _ = reply.send(super::reports::apply(conn, write));
        }
        Command::PruneProcessed { before, limit, reply } => prune(conn, (before, limit, reply)),
    }
}

fn prune(conn: &mut Connection, (before, limit, reply): PruneJob) {
    let _ = reply.send(super::retention::prune_processed(conn, before, limit));
}

/// Writes `batch`, all of it or nothing. The holds only go where `reserved` stays within
/// `stock`: a short SKU fails the batch with [`StoreError::Oversold`], whatever the cache said.
fn commit_orders(conn: &mut Connection, batch: &[AcceptedOrder]) -> Result<(), StoreError> {
    match commit_orders_tx(conn, batch) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(refused)) => Err(refused),
        Err(error) => Err(from_sqlite(error)),
    }
}

fn commit_orders_tx(
    conn: &mut Connection,
    batch: &[AcceptedOrder],
) -> rusqlite::Result<Result<(), StoreError>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert_order = tx.prepare_cached(
            "INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, idempotency_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut insert_event = tx.prepare_cached(
            "INSERT INTO outbox (event_id, order_id, routing_key, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for AcceptedOrder { order, event_id } in batch {
            let id = order.id.as_uuid();
            let items = serde_json::to_string(&order.lines)
                .expect("serializing validated order lines cannot fail");
            insert_order.execute(params![
                id.as_bytes(),
                order.customer_id.as_str(),
                order.status.as_str(),
                order.total.minor(),
                items,
                order.created_at.0,
                order.idempotency_key.as_ref().map(|k| k.as_str()),
            ])?;
            insert_event.execute(params![
                event_id.as_bytes(),
                id.as_bytes(),
                RoutingKey::OrderCreated.as_str(),
                order.created_at.0,
            ])?;
        }
        // One update per distinct SKU, not per order: a flash sale's batch touches few rows.
        let mut hold = tx.prepare_cached(
            "UPDATE products SET reserved = reserved + ?1 WHERE sku = ?2 AND reserved + ?1 <= stock",
        )?;
        let mut known = tx.prepare_cached("SELECT 1 FROM products WHERE sku = ?1")?;
        for (sku, quantity) in units_by_sku(batch.iter().map(|a| &a.order)) {
            if hold.execute(params![quantity, sku])? != 1 {
                // Dropping `tx` rolls the whole batch back.
                if known.exists([sku])? {
                    return Ok(Err(StoreError::Oversold(sku.to_owned())));
                }
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
        }
    }
    tx.commit().map(Ok)
}

fn upsert_product(
    conn: &mut Connection,
    product: &Product,
) -> Result<(Product, Option<Product>), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let previous = tx
        .query_row(
            &format!("SELECT {} FROM products WHERE sku = ?1", rows::PRODUCT_COLUMNS),
            [product.sku.as_str()],
            rows::product,
        )
        .optional()
        .map_err(from_sqlite)?
        .transpose()?;
    if let Some(before) = &previous {
        before.check_restock(product.stock)?;
    }
    let stored = tx
        .query_row(
            &format!(
                "INSERT INTO products (sku, name, price_minor, stock) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sku) DO UPDATE SET
                     name = excluded.name, price_minor = excluded.price_minor, stock = excluded.stock
                 RETURNING {}",
                rows::PRODUCT_COLUMNS
            ),
            params![
                product.sku.as_str(),
                product.name.as_str(),
                product.price.minor(),
                product.stock.get()
            ],
            rows::product,
        )
        .map_err(from_sqlite)??;
    tx.commit().map_err(from_sqlite)?;
    Ok((stored, previous))
}
