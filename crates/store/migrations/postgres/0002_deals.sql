-- 0002: group-buy deals and their members; per-customer purchase limits. The same tables as
-- the SQLite store's migration 2, in PostgreSQL's types.
-- Append only: never edit a migration that has shipped; add 0003_... instead.
--
-- Every query the deal and limit code (postgres/deals.rs, postgres/limits.rs) issues, and
-- the index behind it:
--   deals by id (get_deal, the join's and the expiry's FOR UPDATE, close) ... deals_pkey
--   open deals by deadline (due_deals) ................................ deals_open_by_deadline
--   deal_members by deal_id (a deal's members, ORDER BY joined_at in
--       memory: at most group_size <= 1000 rows) ....................... deal_members_pkey prefix
--   deal_members insert (the "joins at most once" rule) ................. deal_members_pkey
--   member orders by id (FOR UPDATE, UPDATE) ............................ orders_pkey
--   products by sku (create_deal's check, the join's reserved += q) ..... products_pkey
--   purchase_limits by sku (upsert, delete) and ORDER BY sku (load) ..... purchase_limits_pkey
--   units_by_customer: NO index, a scan of `orders` by design. It runs when a limit is loaded
--       or set, not per order; indexing the SKUs inside `items` would take a GIN index on a
--       jsonb copy of every order's lines, written by every group commit (the hot path 0001
--       keeps to one index entry per order).

CREATE TABLE deals (
    id                uuid PRIMARY KEY,          -- UUIDv7, time-ordered like order ids
    sku               text NOT NULL,
    deal_price_minor  bigint NOT NULL CHECK (deal_price_minor >= 0),
    group_size        integer NOT NULL CHECK (group_size >= 2),
    created_at        bigint NOT NULL,           -- ms since the epoch, from core::Clock
    expires_at        bigint NOT NULL,
    status            text NOT NULL,             -- open | completed | expired
    closed_at         bigint                     -- ms; NULL while open
);
-- The expiry scheduler's query: open deals by deadline. Partial, so closed deals (nearly all
-- of them, over time) cost nothing here.
CREATE INDEX deals_open_by_deadline ON deals (expires_at) WHERE status = 'open';

-- The primary key is the "a customer joins a deal at most once" rule, and its deal_id prefix
-- answers "a deal's members".
CREATE TABLE deal_members (
    deal_id      uuid NOT NULL,
    customer_id  text NOT NULL,
    order_id     uuid NOT NULL,
    joined_at    bigint NOT NULL,
    PRIMARY KEY (deal_id, customer_id)
);

-- bigint: the port takes a u32, which does not fit PostgreSQL's integer.
CREATE TABLE purchase_limits (
    sku                 text PRIMARY KEY,
    per_customer_limit  bigint NOT NULL CHECK (per_customer_limit >= 1)
);
