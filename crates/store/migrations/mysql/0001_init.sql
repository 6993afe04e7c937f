-- 0001 (MySQL 8 / MariaDB 10.6+): the whole schema of the PostgreSQL store's 0001-0008, in
-- InnoDB's terms. Append only: never edit a migration that has shipped; add 0002_... instead.
--
-- MySQL commits DDL as it goes (no transactional DDL), so every statement here can run again
-- (IF NOT EXISTS): a migration interrupted half way is finished by the next `ordermill
-- migrate`, which records it only once every statement has run.
--
-- Types: money and counts are BIGINT minor units; ids are BINARY(16), the UUIDv7's bytes,
-- which sort by creation time (inserts append to the right edge of each primary key); text is
-- utf8mb4 (Chinese names round-trip) with the binary collation, so ids, SKUs and keys compare
-- exactly as ordermill compares them (case and accents matter); JSON columns hold what only
-- ordermill reads, whole.
--
-- Every query MysqlStore issues, and the index behind it:
--   products by sku (get, upsert, the commit's and effects' FOR UPDATE) .. PRIMARY
--   orders by id (get, effects' FOR UPDATE, UPDATE ... JOIN) ............ PRIMARY (one partition)
--   a customer's orders, id < ? ORDER BY id DESC ........................ orders_by_customer
--   the operator's listing: id range ORDER BY id DESC ................... PRIMARY, range
--   (customer, idempotency key) ......................................... idempotency_keys PRIMARY
--   outbox claim (ORDER BY event_id LIMIT n FOR UPDATE SKIP LOCKED) ..... outbox PRIMARY, walked
--       in order; published rows are deleted, so it only holds what is in flight
--   processed_events by (consumer, event_id) ............................ PRIMARY (one partition)
--   payments / payment_deadlines by order ............................... PRIMARY
--   payment deadlines due, by time ...................................... payment_deadlines_by_time
--   open deals by deadline .............................................. deals_open_by_deadline
--   a deal's members .................................................... deal_members PRIMARY prefix
--   customer_units by (sku, customer) ................................... PRIMARY
--   reports waiting / expiring .......................................... reports_waiting / _expiring
--   units_by_customer: a scan of orders by design (runs when a limit is set, not per order)

CREATE TABLE IF NOT EXISTS products (
    sku          VARCHAR(64) NOT NULL,
    name         VARCHAR(200) NOT NULL,
    price_minor  BIGINT NOT NULL,
    stock        BIGINT NOT NULL,
    reserved     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (sku),
    CONSTRAINT products_price_minor_check CHECK (price_minor >= 0),
    CONSTRAINT products_stock_check CHECK (stock >= 0),
    CONSTRAINT products_reserved_check CHECK (reserved >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Partitioned by day on the id (RANGE COLUMNS over the UUIDv7's bytes: a range of ids is a
-- range of time), like PostgreSQL's 0005. Until maintenance runs, everything is in p_future;
-- `ordermill migrate`, `ordermill maintain` and the api nodes' timer split daily partitions
-- off it ahead of time (mysql/partitions.rs). The idempotency key lives in a table of its own:
-- a unique key on a partitioned table must include the partition column.
CREATE TABLE IF NOT EXISTS orders (
    id               BINARY(16) NOT NULL,
    customer_id      VARCHAR(64) NOT NULL,
    status           VARCHAR(32) NOT NULL,
    total_minor      BIGINT NOT NULL,
    items            JSON NOT NULL,
    created_at       BIGINT NOT NULL,
    idempotency_key  VARCHAR(255) NULL,
    stock_state      VARCHAR(32) NOT NULL DEFAULT 'held',
    payment_state    VARCHAR(32) NOT NULL DEFAULT 'pending',
    history          JSON NULL,
    pay_by           BIGINT NULL,
    payment_url      TEXT NULL,
    PRIMARY KEY (id),
    KEY orders_by_customer (customer_id, id),
    CONSTRAINT orders_total_minor_check CHECK (total_minor >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
  PARTITION BY RANGE COLUMNS (id) (PARTITION p_future VALUES LESS THAN (MAXVALUE));

CREATE TABLE IF NOT EXISTS idempotency_keys (
    customer_id      VARCHAR(64) NOT NULL,
    idempotency_key  VARCHAR(255) NOT NULL,
    order_id         BINARY(16) NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- written_at and claimed_until are the database's clock, so clock skew between api nodes
-- cannot make two of them publish the same row. payload is NULL for order.created: the body
-- is rebuilt from the order when claimed, so a commit writes the order's data once.
CREATE TABLE IF NOT EXISTS outbox (
    event_id       BINARY(16) NOT NULL,
    order_id       BINARY(16) NOT NULL,
    routing_key    VARCHAR(64) NOT NULL,
    payload        LONGTEXT NULL,
    created_at     BIGINT NOT NULL,
    written_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    claimed_until  DATETIME(3) NULL,
    PRIMARY KEY (event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS processed_events (
    consumer  VARCHAR(190) NOT NULL,
    event_id  BINARY(16) NOT NULL,
    PRIMARY KEY (consumer, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
  PARTITION BY RANGE COLUMNS (event_id) (PARTITION p_future VALUES LESS THAN (MAXVALUE));

CREATE TABLE IF NOT EXISTS payments (
    order_id  BINARY(16) NOT NULL,
    status    VARCHAR(32) NOT NULL,
    event_id  BINARY(16) NOT NULL,
    `at`      BIGINT NOT NULL,
    PRIMARY KEY (order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row only while an order awaits payment (pay-later orders).
CREATE TABLE IF NOT EXISTS payment_deadlines (
    order_id  BINARY(16) NOT NULL,
    pay_by    BIGINT NOT NULL,
    PRIMARY KEY (order_id),
    KEY payment_deadlines_by_time (pay_by)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- MySQL has no partial index: (status, expires_at) answers "open deals due by now, soonest
-- first" with a range on its prefix.
CREATE TABLE IF NOT EXISTS deals (
    id                BINARY(16) NOT NULL,
    sku               VARCHAR(64) NOT NULL,
    deal_price_minor  BIGINT NOT NULL,
    group_size        INT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    status            VARCHAR(16) NOT NULL,
    closed_at         BIGINT NULL,
    PRIMARY KEY (id),
    KEY deals_open_by_deadline (status, expires_at),
    CONSTRAINT deals_price_check CHECK (deal_price_minor >= 0),
    CONSTRAINT deals_group_size_check CHECK (group_size >= 2)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The primary key is the "a customer joins a deal at most once" rule.
CREATE TABLE IF NOT EXISTS deal_members (
    deal_id      BINARY(16) NOT NULL,
    customer_id  VARCHAR(64) NOT NULL,
    order_id     BINARY(16) NOT NULL,
    joined_at    BIGINT NOT NULL,
    PRIMARY KEY (deal_id, customer_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS purchase_limits (
    sku                 VARCHAR(64) NOT NULL,
    per_customer_limit  BIGINT NOT NULL,
    PRIMARY KEY (sku),
    CONSTRAINT purchase_limits_check CHECK (per_customer_limit >= 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- For each SKU with a limit, the units each customer holds in orders not cancelled (the
-- PostgreSQL store's 0006): the commit and a deal join add to it and refuse what would pass
-- the limit; a cancellation takes units off.
CREATE TABLE IF NOT EXISTS customer_units (
    sku          VARCHAR(64) NOT NULL,
    customer_id  VARCHAR(64) NOT NULL,
    units        BIGINT NOT NULL,
    PRIMARY KEY (sku, customer_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS reports (
    id              BINARY(16) NOT NULL,
    kind            VARCHAR(32) NOT NULL,
    format          VARCHAR(16) NOT NULL,
    range_from      BIGINT NOT NULL,
    range_to        BIGINT NOT NULL,
    status_filter   VARCHAR(32) NULL,
    sku_filter      VARCHAR(64) NULL,
    status          VARCHAR(16) NOT NULL,
    rows_done       BIGINT NOT NULL DEFAULT 0,
    rows_estimated  BIGINT NULL,
    error           TEXT NULL,
    created_at      BIGINT NOT NULL,
    touched_at      BIGINT NOT NULL,
    finished_at     BIGINT NULL,
    expires_at      BIGINT NULL,
    size_bytes      BIGINT NULL,
    run_token       BINARY(16) NULL,
    PRIMARY KEY (id),
    KEY reports_waiting (status, touched_at),
    KEY reports_expiring (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Finished report files in 1 MiB chunks (below max_allowed_packet's 16 MiB default), so any
-- api node streams any download with no shared file system.
CREATE TABLE IF NOT EXISTS report_files (
    report_id  BINARY(16) NOT NULL,
    seq        INT NOT NULL,
    data       LONGBLOB NOT NULL,
    PRIMARY KEY (report_id, seq)
) ENGINE = InnoDB;
