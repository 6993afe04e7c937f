-- 0007: pay-later orders (payment.mode = "await_callback").
-- Append only: never edit a migration that has shipped; add 0008_... instead.
--
-- An awaiting order's payment URL and deadline live on its row, read with it (nullable
-- columns: adding them rewrites nothing, and orders of the `charge` mode leave them NULL).
-- The deadlines still to watch live in payment_deadlines, one row only while an order awaits
-- payment, written in the transaction that moves the order in or out of awaiting_payment. The
-- scheduler's query then reads a few rows of a small table, not a partial index on orders: an
-- index whose predicate names `status` would make every consumer's status update a non-HOT
-- update, in every mode.
--
-- Queries and the index behind each:
--   deadlines due by now, oldest first (the scheduler) ..... payment_deadlines_by_time
--   add / drop an order's deadline (effects) ................ payment_deadlines_pkey
--   the ledger row of an order, replaced by its latest outcome (a late payment after an
--       expiry or a decline) ................................ payments_pkey

ALTER TABLE orders ADD COLUMN pay_by bigint, ADD COLUMN payment_url text;

CREATE TABLE payment_deadlines (
    order_id  uuid PRIMARY KEY,
    pay_by    bigint NOT NULL          -- ms since the epoch, from core::Clock
);
CREATE INDEX payment_deadlines_by_time ON payment_deadlines (pay_by);
