-- 0009: more room on orders' pages, so consumers' updates stay HOT.
-- Append only: never edit a migration that has shipped; add 0010_... instead.
--
-- Every order is updated twice soon after it is written (inventory's and payment's effects),
-- each time a new row version with a longer history. With fillfactor 80, 40% of those
-- updates found no room on the page and were non-HOT: a new entry in each of orders' three
-- indexes (measured under `scripts/bench/scaled.sh`, pg_stat_user_tables: 45.8k HOT of 75.8k
-- updates). At 50 a page keeps room for a second version of each of its rows.
--
-- New daily partitions are made with it (the function below replaces 0005's, identical but
-- for the fillfactor); existing ones take it for the pages they fill from now on.

DO $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'orders'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %I SET (fillfactor = 50)', part.relname);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ordermill_ensure_partitions(days integer) RETURNS text[]
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
                    CASE WHEN parent = 'orders' THEN ' WITH (fillfactor = 50)' ELSE '' END);
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

