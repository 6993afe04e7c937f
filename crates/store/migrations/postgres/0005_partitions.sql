-- 0005: orders and processed_events partitioned by time, so they stay fast as they grow and
-- old consumer bookkeeping is dropped a day at a time instead of deleted row by row.
-- Append only: never edit a migration that has shipped; add 0006_... instead.
--
-- Both are partitioned by RANGE on their UUIDv7 key (an order's id, an event's id): the first
-- 48 bits are the creation time in ms, so a range of ids is a range of time, and every unique
-- key can include it (a requirement of partitioned tables). One partition per UTC day,
-- `<table>_pYYYYMMDD`, created `ordermill_ensure_partitions(days)` days ahead by `ordermill
-- migrate`, `ordermill maintain` and every api node's maintenance timer (hourly). What was
-- there before this migration becomes one partition, `<table>_until_YYYYMMDD`, covering
-- everything older than the first daily one; a DEFAULT partition catches any id no daily
-- partition covers (a node's clock far ahead, an id from another tool), so an insert never
-- fails for want of a partition.
--
-- The outbox is not partitioned: published rows are deleted at once, so it only ever holds
-- events in flight (a few thousand rows under load), and its hot claim and delete would pay
-- per-partition planning for nothing.
--
-- Idempotency keys move to a table of their own: a unique index on orders would have to
-- include the id, and then it would no longer say "one order per (customer, key)". The
-- column on orders stays, for reading an order back whole.
--
-- Queries and the index behind each (new or changed):
--   the order of (customer, idempotency key) ......... idempotency_keys_pkey, then orders_pkey
--   forget an expired key ............................ idempotency_keys_pkey
--   processed_events by (consumer, event_id) ......... processed_events_pkey of one partition
--   orders by id / a customer's orders ............... orders_pkey / orders_by_customer, per
--       partition; by id the planner prunes to one partition when the id is a parameter

-- The smallest UUIDv7 of the millisecond `at`: the lower bound of ids created from then on.
CREATE FUNCTION ordermill_uuid_at(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- The creation time a UUIDv7 carries.
CREATE FUNCTION ordermill_uuid_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT to_timestamp((('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint) / 1000.0)
$$;

-- Creates the daily partitions of orders and processed_events from today (UTC) through
-- `days` ahead that do not exist yet; returns their names. A day already covered (by the
-- partition of what predates 0005) is skipped, and so is a day the DEFAULT partition already
-- holds rows of (maintenance that lagged): those rows stay where they are, still found,
-- merely not in a daily partition.
CREATE FUNCTION ordermill_ensure_partitions(days integer) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    d date;
    parent text;
    part_name text;
    created text[] := '{}';
BEGIN
    FOREACH parent IN ARRAY ARRAY['orders', 'processed_events'] LOOP
        FOR offset_days IN 0..days LOOP
            d := today + offset_days;
            part_name := parent || '_p' || to_char(d, 'YYYYMMDD');
            CONTINUE WHEN to_regclass(part_name) IS NOT NULL;
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)%s',
                    part_name, parent,
                    ordermill_uuid_at(d::timestamp AT TIME ZONE 'UTC'),
                    ordermill_uuid_at((d + 1)::timestamp AT TIME ZONE 'UTC'),
                    -- Orders are updated by consumers two or three times: room for HOT updates.
                    CASE WHEN parent = 'orders' THEN ' WITH (fillfactor = 80)' ELSE '' END);
                created := created || part_name;
            EXCEPTION
                -- 42P17: overlaps the partition of what predates 0005; 23514: the default
                -- partition holds rows of that day; 42P07: another node made it just now.
                WHEN invalid_object_definition OR check_violation OR duplicate_table THEN NULL;
            END;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- Drops the partitions of processed_events that hold only events created before `cutoff`;
-- returns their names. Never the DEFAULT partition, never orders (the record is kept; an
-- operator detaches and archives old order partitions by hand, see docs/OPERATIONS.md).
CREATE FUNCTION ordermill_drop_processed_before(cutoff timestamptz) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    upper_bound uuid;
    dropped text[] := '{}';
BEGIN
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'processed_events'::regclass
    LOOP
        upper_bound := substring(part.bound FROM 'TO \(''([0-9a-f-]+)''\)')::uuid;
        CONTINUE WHEN upper_bound IS NULL OR upper_bound > ordermill_uuid_at(cutoff);
        EXECUTE format('DROP TABLE IF EXISTS %I', part.relname);
        dropped := dropped || part.relname::text;
    END LOOP;
    RETURN dropped;
END
$$;

CREATE TABLE idempotency_keys (
    customer_id      text NOT NULL,
    idempotency_key  text NOT NULL,
    order_id         uuid NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
);
INSERT INTO idempotency_keys (customer_id, idempotency_key, order_id)
    SELECT customer_id, idempotency_key, id FROM orders WHERE idempotency_key IS NOT NULL;
DROP INDEX orders_idempotency_key;

-- What is there now becomes the first partition of each table, up to the first daily one:
-- tomorrow (UTC), or the day after the newest id stored if that is later.
DO $$
DECLARE
    newest_order uuid := (SELECT id FROM orders ORDER BY id DESC LIMIT 1);
    newest_event uuid := (SELECT event_id FROM processed_events ORDER BY event_id DESC LIMIT 1);
    newest timestamptz := greatest(ordermill_uuid_time(newest_order),
                                   ordermill_uuid_time(newest_event));
    first_day date;
    bound uuid;
    suffix text;
BEGIN
    IF newest > now() + interval '1 year' THEN
        RAISE EXCEPTION 'orders or processed_events holds an id dated %, which no ordermill node '
            'made (its ids are UUIDv7 from the time of creation); find it with '
            '"SELECT id FROM orders ORDER BY id DESC LIMIT 5" and remove it before migrating',
            newest;
    END IF;
    first_day := greatest((now() AT TIME ZONE 'UTC')::date + 1,
                          coalesce((newest AT TIME ZONE 'UTC')::date + 1, '-infinity'));
    bound := ordermill_uuid_at(first_day::timestamp AT TIME ZONE 'UTC');
    suffix := to_char(first_day, 'YYYYMMDD');
    EXECUTE format('ALTER TABLE orders RENAME TO %I', 'orders_until_' || suffix);
    EXECUTE format('ALTER INDEX orders_pkey RENAME TO %I', 'orders_until_' || suffix || '_pkey');
    EXECUTE format('ALTER INDEX orders_by_customer RENAME TO %I',
                   'orders_until_' || suffix || '_by_customer');
    CREATE TABLE orders (
        id               uuid NOT NULL,
        customer_id      text NOT NULL,
        status           text NOT NULL,
        -- Named as in 0001, so the table of before matches it when attached.
        total_minor      bigint NOT NULL CONSTRAINT orders_total_minor_check
                             CHECK (total_minor >= 0),
        items            json NOT NULL,
        created_at       bigint NOT NULL,
        idempotency_key  text,
        stock_state      text NOT NULL DEFAULT 'held',
        payment_state    text NOT NULL DEFAULT 'pending',
        history          json,
        PRIMARY KEY (id)
    ) PARTITION BY RANGE (id);
    CREATE INDEX orders_by_customer ON orders (customer_id, id);
    EXECUTE format('ALTER TABLE orders ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                   'orders_until_' || suffix, bound);
    CREATE TABLE orders_default PARTITION OF orders DEFAULT WITH (fillfactor = 80);

    EXECUTE format('ALTER TABLE processed_events RENAME TO %I',
                   'processed_events_until_' || suffix);
    EXECUTE format('ALTER INDEX processed_events_pkey RENAME TO %I',
                   'processed_events_until_' || suffix || '_pkey');
    CREATE TABLE processed_events (
        consumer  text NOT NULL,
        event_id  uuid NOT NULL,
        PRIMARY KEY (consumer, event_id)
    ) PARTITION BY RANGE (event_id);
    EXECUTE format(
        'ALTER TABLE processed_events ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
        'processed_events_until_' || suffix, bound);
    CREATE TABLE processed_events_default PARTITION OF processed_events DEFAULT;
END
$$;

SELECT ordermill_ensure_partitions(7);
