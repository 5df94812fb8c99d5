-- probed schema on PostgreSQL, version 2: locations (see migrations/sqlite/0006).

CREATE TABLE locations (
    id   BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

ALTER TABLE results ADD COLUMN loc BIGINT NOT NULL DEFAULT 0;
ALTER TABLE results DROP CONSTRAINT results_pkey;
ALTER TABLE results ADD PRIMARY KEY (probe_id, at, loc);
ALTER TABLE state_changes ADD COLUMN loc BIGINT NOT NULL DEFAULT 0;

CREATE TABLE probe_locations (
    probe_id              BIGINT NOT NULL,
    loc                   BIGINT NOT NULL,
    state                 TEXT NOT NULL DEFAULT 'pending',
    state_since           BIGINT,
    consecutive_failures  BIGINT NOT NULL DEFAULT 0,
    consecutive_successes BIGINT NOT NULL DEFAULT 0,
    recent                BIGINT NOT NULL DEFAULT 0,
    checked_at            BIGINT,
    ok                    BIGINT,
    duration_us           BIGINT,
    error                 TEXT,
    PRIMARY KEY (probe_id, loc)
);
-- What the others read of each location: its newest verdicts.
CREATE INDEX probe_locations_checked ON probe_locations (checked_at);

-- Who saw the probe up again when it recovered (several locations), for the resolve notice.
ALTER TABLE incidents ADD COLUMN recovered_from TEXT;

-- A delivery is claimed by the daemon sending it, until the claim ends: several daemons
-- sharing the store send each message once; a claim left by a daemon that died expires and
-- another sends, under the same dedup key.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claim_until BIGINT;

CREATE TABLE daemons (
    instance   TEXT PRIMARY KEY,
    location   TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL,
    blind      TEXT,
    version    TEXT NOT NULL DEFAULT ''
);
