-- 0004: the store of record refuses to hold more than it has. The group commit's
-- `reserved += q` (postgres/orders.rs) only raises `reserved` where it stays within `stock`;
-- a SKU it could not raise fails the statement with this function's SQLSTATE (OMOVR), which
-- the store reports as `Oversold` and the committer answers per request (409 out_of_stock),
-- whatever the hot-stock cache said.
-- Append only: never edit a migration that has shipped; add 0005_... instead.

CREATE FUNCTION ordermill_require_stock(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'OMOVR', MESSAGE = message;
    END IF;
    RETURN ok;
END
$$;
