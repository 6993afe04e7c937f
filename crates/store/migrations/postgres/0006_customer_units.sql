-- 0006: per-customer purchase limits enforced by the store of record, so every api node
-- enforces one count. Each node still checks its own in-memory count first (most refusals
-- never reach the database); the store is the last line, as 0004 is for stock.
-- Append only: never edit a migration that has shipped; add 0007_... instead.
--
-- customer_units holds, for each SKU that has a limit, the units each customer holds in
-- orders that are not cancelled. The group commit and a deal join add to it (and refuse the
-- order when that would pass the limit); an order becoming cancelled takes its units off; a
-- limit set or removed recomputes the SKU's rows from the orders. SKUs without a limit have no
-- rows, and their orders touch nothing here.
--
-- Queries and the index behind each:
--   add units of (sku, customer) in a commit or join ....... customer_units_pkey
--   take units off when an order is cancelled ............... customer_units_pkey
--   the limits of a batch's SKUs ............................ purchase_limits_pkey
--   recompute a SKU's rows when its limit changes ........... a scan of orders (rare: an
--       operator sets a limit), as units_by_customer already does

CREATE TABLE customer_units (
    sku          text NOT NULL,
    customer_id  text NOT NULL,
    units        bigint NOT NULL,
    PRIMARY KEY (sku, customer_id)
);

INSERT INTO customer_units (sku, customer_id, units)
    SELECT line ->> 'sku', o.customer_id, sum((line ->> 'quantity')::bigint)
    FROM orders o CROSS JOIN LATERAL json_array_elements(o.items) AS line
    WHERE o.status <> 'cancelled'
      AND line ->> 'sku' IN (SELECT sku FROM purchase_limits)
    GROUP BY 1, 2;

-- Raises `message` unless `ok`, with SQLSTATE OMLIM, which the store reports as
-- `LimitExceeded` (409 limit_exceeded for the order that went over, alone).
CREATE FUNCTION ordermill_require_limit(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'OMLIM', MESSAGE = message;
    END IF;
    RETURN ok;
END
$$;
