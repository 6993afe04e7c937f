//! The one thread that writes. SQLite allows one writer at a time; giving it a thread of its
//! own keeps the async runtime free while a transaction fsyncs, and lets prepared statements
//! live as long as the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;

use ordermill_core::ports::{AcceptedOrder, Effect, EffectOutcome, StoreError};
use ordermill_core::{Product, RoutingKey, UnixMillis};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::error::from_sqlite;
use super::{effects, ledger, rows};

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
    CommitOrders {
        batch: Arc<Vec<AcceptedOrder>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    UpsertProduct {
        product: Product,
        reply: oneshot::Sender<Result<(Product, Option<Product>), StoreError>>,
    },
    CheckWritable {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Runs until every sender is dropped, then returns (after finishing queued commands).
pub(crate) fn run(mut conn: Connection, commands: mpsc::Receiver<Command>) {
    while let Ok(command) = commands.recv() {
        // A reply whose receiver is gone (the caller was cancelled) is not an error: the
        // work is done and durable either way.
        match command {
            Command::ApplyEffects { effects, reply } => {
                let _ = reply.send(effects::apply(&mut conn, &effects));
            }
            Command::RecordAcks { acks, finished, reply } => {
                let _ = reply
                    .send(ledger::record_acks(&mut conn, &acks, &finished).map_err(from_sqlite));
            }
            Command::RecordRetry { queue, event, attempts, not_before, error, reply } => {
                let result =
                    ledger::record_retry(&conn, &queue, event, attempts, not_before, &error);
                let _ = reply.send(result.map_err(from_sqlite));
            }
            Command::RecordDead { queue, event, attempts, error, at, reply } => {
                let result = ledger::record_dead(&mut conn, &queue, event, attempts, &error, at);
                let _ = reply.send(result.map_err(from_sqlite));
            }
            Command::ClearDead { queue, events, reply } => {
                let _ =
                    reply.send(ledger::clear_dead(&mut conn, &queue, &events).map_err(from_sqlite));
            }
            Command::CommitOrders { batch, reply } => {
                let _ = reply.send(commit_orders(&mut conn, &batch).map_err(from_sqlite));
            }
            Command::UpsertProduct { product, reply } => {
                let _ = reply.send(upsert_product(&mut conn, &product));
            }
            Command::CheckWritable { reply } => {
                let result = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").map_err(from_sqlite);
                let _ = reply.send(result);
            }
        }
    }
    tracing::debug!("SQLite writer thread stopped: every handle was dropped.");
}

fn commit_orders(conn: &mut Connection, batch: &[AcceptedOrder]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut held: HashMap<&str, i64> = HashMap::new();
    {
        let mut insert_order = tx.prepare_cached(
            "INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, idempotency_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut insert_event = tx.prepare_cached(
            "INSERT INTO outbox (event_id, order_id, routing_key, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut id = String::with_capacity(36);
        for AcceptedOrder { order, event_id } in batch {
            id.clear();
            use std::fmt::Write;
            let _ = write!(id, "{}", order.id);
            let items = serde_json::to_string(&order.lines)
                .expect("serializing validated order lines cannot fail");
            insert_order.execute(params![
                id,
                order.customer_id.as_str(),
                order.status.as_str(),
                order.total.minor(),
                items,
                order.created_at.0,
                order.idempotency_key.as_ref().map(|k| k.as_str()),
            ])?;
            insert_event.execute(params![
                event_id.hyphenated().to_string(),
                id,
                RoutingKey::OrderCreated.as_str(),
                order.created_at.0,
            ])?;
            for line in &order.lines {
                *held.entry(line.sku.as_str()).or_default() += i64::from(line.quantity.get());
            }
        }
        // One update per distinct SKU, not per order: a flash sale's batch touches few rows.
        let mut hold =
            tx.prepare_cached("UPDATE products SET reserved = reserved + ?1 WHERE sku = ?2")?;
        for (sku, quantity) in held {
            if hold.execute(params![quantity, sku])? != 1 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
        }
    }
    tx.commit()
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
    if let Some(before) = &previous
        && product.stock.get() < before.reserved
    {
        return Err(StoreError::Conflict(format!(
            "stock {} is below the {} units held by accepted orders",
            product.stock.get(),
            before.reserved
        )));
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
