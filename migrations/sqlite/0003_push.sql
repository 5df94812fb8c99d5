-- probed schema, version 3: heartbeats pushed in by jobs (`kind: push`).
-- Kept in SQLite so a restart does not reset the clock: a 25-hour heartbeat silent for 30
-- hours is down even if the daemon restarted in between.
CREATE TABLE pushes (
    probe_id        INTEGER PRIMARY KEY,
    -- When the daemon first knew this probe: the clock starts here until a first ping.
    first_seen_at   INTEGER NOT NULL,
    last_ping_at    INTEGER,
    -- ok | fail | start
    last_kind       TEXT,
    exit_status     INTEGER,
    last_success_at INTEGER,
    started_at      INTEGER,
    pings           INTEGER NOT NULL DEFAULT 0
) STRICT;
