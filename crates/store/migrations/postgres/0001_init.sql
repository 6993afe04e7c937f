-- 0001: the catalog, orders, the outbox and the consumers' bookkeeping.
-- Append only: never edit a migration that has shipped; add 0002_... instead.
--
-- Every query PostgresStore issues, and the index behind it:
--   products by sku (get, upsert FOR UPDATE, reserved/stock updates) .... products_pkey
--   products ORDER BY sku (load_products) .............................. products_pkey
--   orders by id (get_order, effects' SELECT ... FOR UPDATE, UPDATE) ... orders_pkey
--   orders by idempotency_key (replays; uniqueness) ..................... orders_idempotency_key
--   outbox claim (ORDER BY event_id LIMIT n FOR UPDATE SKIP LOCKED) .... outbox_pkey, walked in
--       order; the filters on written_at/claimed_until are checked on the few rows at its head
--       because published rows are deleted, so the outbox only holds what is in flight
--   outbox claim's order.created bodies (LEFT JOIN orders) ............. orders_pkey
--   outbox delete by event_id (mark_published) ......................... outbox_pkey
--   outbox count (outbox_len) ........................................... outbox_pkey (small
--       table for the same reason)
--   processed_events by (consumer, event_id) (apply_effects, processed)  processed_events_pkey
--   payments insert (one row per charged or declined order) ............ payments_pkey

-- Products are few and their rows are rewritten by every commit (reserved) and every stock
-- deduction: fillfactor 50 leaves room on each page so those updates stay HOT (no index
-- write, no page split).
CREATE TABLE products (
    sku          text PRIMARY KEY,
    name         text NOT NULL,
    price_minor  bigint NOT NULL CHECK (price_minor >= 0),
    stock        bigint NOT NULL CHECK (stock >= 0),
    reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0)
) WITH (fillfactor = 50);

-- One row per order, items as one JSON column (one row per order keeps the group commit to
-- one insert per order). `json`, not `jsonb`: only ordermill reads it, whole, and `json`
-- stores the text as sent instead of converting it on every insert. Money is integer minor
-- units. The id is the order's UUIDv7 as `uuid` (16 bytes, time-ordered: inserts append to
-- the right edge of the primary key). fillfactor 80: each order is updated two or three times
-- by consumers (status, states, history), none of them on an indexed column, so the room
-- keeps those updates HOT.
--
-- At larger scale orders would be partitioned by RANGE on the UUIDv7 id (equivalently on
-- created_at, which it encodes), one partition per day or week: inserts and consumers' updates
-- hit the newest partition, old ones are detached and archived whole instead of deleted row by
-- row. Hash partitioning by id would spread write load but make every idempotency-key lookup
-- visit every partition; a unique key must include the partition key, so the idempotency key
-- would then move to a table of its own (key PRIMARY KEY, order_id), written in the same
-- statement.
CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    customer_id      text NOT NULL,
    status           text NOT NULL,
    total_minor      bigint NOT NULL CHECK (total_minor >= 0),
    items            json NOT NULL,
    created_at       bigint NOT NULL,          -- ms since the epoch, from core::Clock
    idempotency_key  text,
    stock_state      text NOT NULL DEFAULT 'held',
    payment_state    text NOT NULL DEFAULT 'pending',
    -- [{"status", "at"}] of statuses after 'accepted'; NULL while there are none.
    history          json
) WITH (fillfactor = 80);
-- Partial: most orders carry no key, and an index entry per order would cost every commit.
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Events written in the transaction that caused them, until a relay has published them (then
-- the row is deleted). payload is NULL for order.created: the body is rebuilt from the order
-- when claimed, so a commit writes the order's data once. written_at and claimed_until are
-- the database's clock, not the nodes': min_age and leases compare against now() in one place,
-- so clock skew between api nodes cannot make two of them publish the same row.
CREATE TABLE outbox (
    event_id       uuid PRIMARY KEY,
    order_id       uuid NOT NULL,
    routing_key    text NOT NULL,
    payload        text,
    created_at     bigint NOT NULL,            -- ms, the event's time as consumers see it
    written_at     timestamptz NOT NULL DEFAULT now(),
    claimed_until  timestamptz                 -- NULL: never claimed
);

-- "consumer X processed event E", written in the transaction of X's effect.
CREATE TABLE processed_events (
    consumer  text NOT NULL,
    event_id  uuid NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- The payment ledger: one row per order the gateway charged or declined.
CREATE TABLE payments (
    order_id  uuid PRIMARY KEY,
    status    text NOT NULL,
    event_id  uuid NOT NULL,
    at        bigint NOT NULL
);

-- Raises `message` unless `ok`. Lets a single autocommit statement refuse itself (an order for
-- a SKU the catalog lacks) so commit_orders needs no BEGIN/COMMIT round trips. SQLSTATE
-- P0002 (no_data_found) is what the store maps to "unknown SKU".
CREATE FUNCTION ordermill_require(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = message;
    END IF;
    RETURN ok;
END
$$;
