-- probed schema, version 2: incidents, the durable alert outbox, delivery attempts, silences.

-- The last 64 verdicts of a probe as a bitmask (bit 0 the newest, 1 = failure), for
-- "N failures out of the last M runs".
ALTER TABLE probes ADD COLUMN recent INTEGER NOT NULL DEFAULT 0;

-- A probe going down opens an incident; recovery (held for resolve_hold) resolves it.
CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY,
    probe_id        INTEGER NOT NULL,
    probe           TEXT NOT NULL,
    severity        TEXT NOT NULL,
    opened_at       INTEGER NOT NULL,
    reason          TEXT,
    -- The Alert template (JSON) every message of this incident is built from.
    alert           TEXT NOT NULL,
    -- Whether the first page went out (0 while muted by a silence or maintenance).
    paged           INTEGER NOT NULL DEFAULT 0,
    muted           TEXT,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    -- Set when the probe came back up; cleared if it fails again before the hold ends.
    recovered_at    INTEGER,
    resolve_due_at  INTEGER,
    resolved_at     INTEGER,
    -- Times the probe went down again while recovering (flapping: one incident, one page).
    flaps           INTEGER NOT NULL DEFAULT 0,
    escalation_step INTEGER NOT NULL DEFAULT 0,
    last_reminder_at INTEGER,
    send_resolve    INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE UNIQUE INDEX incidents_one_open_per_probe ON incidents (probe_id) WHERE resolved_at IS NULL;
CREATE INDEX incidents_opened ON incidents (opened_at);

-- Every message to send, written in the same transaction as the change that caused it.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL,
    event        TEXT NOT NULL,
    notifier     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- pending | delivered | failed | cancelled
    status       TEXT NOT NULL DEFAULT 'pending',
    alert        TEXT NOT NULL,
    -- Notifiers still to try, in order, when this one keeps failing (JSON list).
    fallback     TEXT NOT NULL DEFAULT '[]',
    last_error   TEXT,
    delivered_at INTEGER
) STRICT;
CREATE INDEX outbox_pending ON outbox (due_at) WHERE status = 'pending';
CREATE INDEX outbox_incident ON outbox (incident_id);

-- Each try, for the record (`probectl incidents`, /api/v1/incidents).
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    outbox_id   INTEGER NOT NULL,
    notifier    TEXT NOT NULL,
    at          INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    detail      TEXT,
    duration_us INTEGER NOT NULL
) STRICT;
CREATE INDEX attempts_outbox ON attempts (outbox_id);

-- `probectl silence`: pages for matching probes are muted until `until`.
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    probe      TEXT NOT NULL,
    until      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT,
    reason     TEXT
) STRICT;
