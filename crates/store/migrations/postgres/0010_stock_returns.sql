-- 0010: units given back in the store that the hot-stock cache does not have back yet.
-- Append only: never edit a migration that has shipped; add 0011_... instead.
--
-- A consumer's effect that releases an order's units (a cancellation) writes a row here in its
-- own transaction; the node deletes it once Redis took the units back. A node killed between
-- the two leaves the row, and api nodes that find one older than `redis.return_grace` mark the
-- hot-stock counts lost, so they are rebuilt from this store (which has the units) instead of
-- staying short until someone forces a rebuild. Rows are few: only cancellations write one,
-- and each lives for a round trip to Redis.
CREATE TABLE stock_returns (
    order_id    uuid PRIMARY KEY,
    written_at  timestamptz NOT NULL DEFAULT now()
);
