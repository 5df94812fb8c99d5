-- probed schema, version 4: daily rollups, so long windows (the status page's 90-day bars,
-- 7- and 30-day uptime) read one row per probe and day instead of 24.
CREATE TABLE rollups_daily (
    probe_id        INTEGER NOT NULL,
    day             INTEGER NOT NULL, -- unix ms at the start of the UTC day
    runs            INTEGER NOT NULL,
    ok              INTEGER NOT NULL,
    sum_duration_us INTEGER NOT NULL,
    max_duration_us INTEGER NOT NULL,
    PRIMARY KEY (probe_id, day)
) STRICT, WITHOUT ROWID;

INSERT INTO rollups_daily (probe_id, day, runs, ok, sum_duration_us, max_duration_us)
SELECT probe_id, hour - hour % 86400000, sum(runs), sum(ok), sum(sum_duration_us), max(max_duration_us)
FROM rollups_hourly GROUP BY probe_id, hour - hour % 86400000;
