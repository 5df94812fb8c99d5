-- probed schema, version 1.
-- Times are unix milliseconds (wall clock, for display); durations are microseconds measured
-- on the monotonic clock.

-- One row per probe ever configured: its current state, so a restart resumes it.
CREATE TABLE probes (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    kind                  TEXT NOT NULL,
    state                 TEXT NOT NULL DEFAULT 'pending',
    state_since           INTEGER,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    last_checked_at       INTEGER,
    last_ok               INTEGER,
    last_duration_us      INTEGER,
    last_error            TEXT
) STRICT;

-- Raw results, one per run, kept for the retention period. Clustered by (probe, time) so a
-- probe's history and the retention delete both walk one B-tree range.
CREATE TABLE results (
    probe_id    INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    phases      TEXT,
    ip          TEXT,
    cert_expiry INTEGER,
    size        INTEGER,
    PRIMARY KEY (probe_id, at)
) STRICT, WITHOUT ROWID;

-- Hourly rollups: uptime and latency over long windows without scanning raw results.
CREATE TABLE rollups_hourly (
    probe_id        INTEGER NOT NULL,
    hour            INTEGER NOT NULL, -- unix ms at the start of the hour
    runs            INTEGER NOT NULL,
    ok              INTEGER NOT NULL,
    sum_duration_us INTEGER NOT NULL,
    max_duration_us INTEGER NOT NULL,
    PRIMARY KEY (probe_id, hour)
) STRICT, WITHOUT ROWID;

-- State changes (pending/up/down). The seam for paging: an alert outbox row is written in
-- the same transaction as the change that causes it.
CREATE TABLE state_changes (
    id        INTEGER PRIMARY KEY,
    probe_id  INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    reason     TEXT
) STRICT;
CREATE INDEX state_changes_probe_at ON state_changes (probe_id, at);
