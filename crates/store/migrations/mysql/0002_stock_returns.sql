-- 0002: units given back in the store that the hot-stock cache does not have back yet (the
-- PostgreSQL store's 0010 says why). Every statement may run again (see migrations.rs).
-- Append only: never edit a migration that has shipped; add 0003_... instead.
CREATE TABLE IF NOT EXISTS stock_returns (
    order_id    BINARY(16) NOT NULL,
    written_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
