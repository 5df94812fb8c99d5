-- probed schema, version 7: healthchecks.io-compatible pings (issue 16).
-- The body a job POSTs with its ping (its output: the last 10 KiB), the duration of the
-- last finished run, the open runs by `?rid=`, and a short log of recent pings.
ALTER TABLE pushes ADD COLUMN last_body TEXT;
ALTER TABLE pushes ADD COLUMN last_duration_ms INTEGER;

-- A `/start?rid=<uuid>` not yet finished: the finish with the same rid is timed from it.
CREATE TABLE push_runs (
    probe_id   INTEGER NOT NULL,
    rid        TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (probe_id, rid)
) STRICT;

-- Every ping (`/log` ones too), the last 100 per probe.
CREATE TABLE push_pings (
    probe_id    INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    -- ok | fail | start | log
    kind        TEXT NOT NULL,
    exit_status INTEGER,
    rid         TEXT,
    duration_ms INTEGER,
    body        TEXT
) STRICT;
CREATE INDEX push_pings_by_probe ON push_pings (probe_id, at);
