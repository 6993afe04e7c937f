-- 0003: a customer's own orders, newest first (GET /api/customers/me/orders), and
-- idempotency keys per customer, so one customer's key never answers another's request.
-- Append only: never edit a migration that has shipped; add 0004_... instead.
--
-- Queries and the index behind each:
--   orders of a customer, id < $before ORDER BY id DESC LIMIT n ..... orders_by_customer
--   the order of (customer, idempotency key) ........................ orders_idempotency_key
--   forget an expired key (UPDATE ... WHERE id = $1) ................. orders_pkey
-- orders_by_customer is one more index entry per order in the group commit: the price of
-- answering "my orders" without a scan.

CREATE INDEX orders_by_customer ON orders (customer_id, id);
DROP INDEX orders_idempotency_key;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (customer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
