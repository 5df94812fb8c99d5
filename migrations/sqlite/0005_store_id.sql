-- probed schema, version 5: the store's own identity.
-- `store_id` is drawn once, when the schema is made, and never changes. It goes into every
-- dedup key (`probed-<instance>-<store_id>-<incident>`), so a database made afresh (deleted,
-- lost, restored from an old copy) never reuses the keys of the one before: incident ids
-- restart at 1, and a pager still holding an old incident would fold a new page into it.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('store_id', lower(hex(randomblob(6))));
