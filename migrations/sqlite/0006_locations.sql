-- probed schema, version 6: locations. Several daemons, each at a location, may share one
-- store (PostgreSQL); a lone daemon on SQLite is one location. Results and state changes say
-- where they were seen; each location keeps its own verdict on each probe, and `probes`
-- keeps the probe's state as the quorum of the locations sees it.

-- Where results come from. The first location to register gets id 0, which is what every
-- row written before this version says (below): an upgraded daemon keeps its history.
CREATE TABLE locations (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
) STRICT;

ALTER TABLE results ADD COLUMN loc INTEGER NOT NULL DEFAULT 0;
-- The location whose verdict changed; -1 for the probe's own state (the quorum's).
ALTER TABLE state_changes ADD COLUMN loc INTEGER NOT NULL DEFAULT 0;

-- Each location's verdict on each probe: its state machine (`alert.after`, `within`,
-- `recover_after`, judged on its own runs) and its latest result, so a restart resumes it
-- and the other locations can count it.
CREATE TABLE probe_locations (
    probe_id              INTEGER NOT NULL,
    loc                   INTEGER NOT NULL,
    state                 TEXT NOT NULL DEFAULT 'pending',
    state_since           INTEGER,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    recent                INTEGER NOT NULL DEFAULT 0,
    checked_at            INTEGER,
    ok                    INTEGER,
    duration_us           INTEGER,
    error                 TEXT,
    PRIMARY KEY (probe_id, loc)
) STRICT, WITHOUT ROWID;

-- The daemons writing to this store, as each last said it was alive.
-- Who saw the probe up again when it recovered (several locations), for the resolve notice.
ALTER TABLE incidents ADD COLUMN recovered_from TEXT;

-- A delivery is claimed by the daemon sending it, until the claim ends: several daemons
-- sharing the store send each message once; a claim left by a daemon that died expires and
-- another sends, under the same dedup key.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claim_until INTEGER;

CREATE TABLE daemons (
    instance   TEXT PRIMARY KEY,
    location   TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    -- Why it cannot see, while it is blind (its failures count toward no quorum).
    blind      TEXT,
    version    TEXT NOT NULL DEFAULT ''
) STRICT;
