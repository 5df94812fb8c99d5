-- probed schema on PostgreSQL, version 3: healthchecks.io-compatible pings (see
-- migrations/sqlite/0007).
ALTER TABLE pushes ADD COLUMN last_body TEXT;
ALTER TABLE pushes ADD COLUMN last_duration_ms BIGINT;

CREATE TABLE push_runs (
    probe_id   BIGINT NOT NULL,
    rid        TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (probe_id, rid)
);

CREATE TABLE push_pings (
    probe_id    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    exit_status BIGINT,
    rid         TEXT,
    duration_ms BIGINT,
    body        TEXT
);
CREATE INDEX push_pings_by_probe ON push_pings (probe_id, at);
