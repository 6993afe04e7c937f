-- 0011: one outbox row per transaction's events, not one per event.
-- Append only: never edit a migration that has shipped; add 0012_... instead.
--
-- A group commit wrote an order.created row per order, and a consumer's effect transaction a
-- row per event it emitted; each was inserted with its index entry and deleted once the broker
-- confirmed it: three WAL records and a dead tuple per event, about a quarter of PostgreSQL's
-- records per order under issue 10's load. Those events are published together (the node that
-- committed them publishes them at once, a relay claims whole rows), so they are now written as
-- ONE row holding them all, in arrays of the same length:
--   event_ids     the events' ids (the row's key, event_id, is the first of them)
--   order_ids     each event's order
--   routing_keys  each event's routing key
--   payloads      each event's body, or NULL for order.created (rebuilt from the order when
--                 claimed, as for a single row); NULL as a whole when every body is rebuilt.
-- A row without event_ids is a single event, as before: rows written by an older node and the
-- ones still written one per event (deal joins) are read as they always were.
-- A batch row's routing_key is its first event's; its order_id and payload are NULL. That is
-- what keeps a rolling upgrade safe: a node of an older release, still running beside new ones,
-- whose relay claims a batch row finds no body and no order for it, fails that claim ("has no
-- body and its order is missing") and publishes and deletes nothing of it; its lease lapses
-- and a new node relays the row whole. (With an order_id there, the old relay would publish the
-- first order's event alone and delete the whole row: the others would be lost.)
--
-- Marking part of a row's events published (nothing does it today: every publisher marks what
-- it published together) takes those events out of the arrays, so an event is never published
-- again once marked and never lost while not.
ALTER TABLE outbox
    ALTER COLUMN order_id DROP NOT NULL,
    ADD COLUMN event_ids    uuid[],
    ADD COLUMN order_ids    uuid[],
    ADD COLUMN routing_keys text[],
    ADD COLUMN payloads     text[];

-- A consumer batch's bodies (~250 bytes each) make a row of several KB, which PostgreSQL
-- compresses before storing it out of line: with the default pglz that was 2% of its CPU under
-- issue 10's load. lz4 does it for a fraction of that. A server built without lz4 (or older
-- than 14) keeps pglz: the same data, compressed more slowly.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN payloads SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available here; outbox bodies stay compressed with pglz';
END
$$;
