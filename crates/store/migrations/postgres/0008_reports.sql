-- 0008: reports (报表).
-- Append only: never edit a migration that has shipped; add 0009_... instead.
--
-- One row per report, not partitioned: a handful a day, each removed when its file expires.
-- run_token names the run that holds a report, so a run presumed dead and replaced can no
-- longer finish it (every progress, finish and failure is conditional on it).
--
-- Queries and the index behind each:
--   one report (status page, download, claim) ................ reports_pkey
--   reports waiting for a run: queued or stalled (the sweeper) reports_waiting
--   files past their expiry (the expiry scheduler) ........... reports_expiring

CREATE TABLE reports (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    format          text NOT NULL,
    range_from      bigint NOT NULL,          -- ms since the epoch, from core::Clock
    range_to        bigint NOT NULL,
    status_filter   text,
    sku_filter      text,
    status          text NOT NULL,
    rows_done       bigint NOT NULL DEFAULT 0,
    rows_estimated  bigint,
    error           text,
    created_at      bigint NOT NULL,
    touched_at      bigint NOT NULL,          -- the last claim or progress: a run's heartbeat
    finished_at     bigint,
    expires_at      bigint,
    size_bytes      bigint,
    run_token       uuid
);
CREATE INDEX reports_waiting ON reports (touched_at) WHERE status IN ('queued', 'running');
CREATE INDEX reports_expiring ON reports (expires_at) WHERE expires_at IS NOT NULL;

-- Finished files, in 1 MiB chunks: whichever api node nginx picks streams the download, with
-- no shared file system; the database's backups hold them; expiry is one DELETE. A put
-- replaces a report's chunks in one transaction, so a reader never sees two files mixed.
CREATE TABLE report_files (
    report_id  uuid NOT NULL,
    seq        integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (report_id, seq)
);
