-- The index of a store (index.db).  Derived data: everything here can be
-- rebuilt from the log, and is, when index.db is missing or behind.
--
-- One row per batch (one append call), not per event: a stream read is one
-- range lookup on batches_by_stream, and the append path writes one row per
-- append instead of one per event.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Every stream with its last version (versions are dense from 1, so this is
-- also its event count).
CREATE TABLE IF NOT EXISTS streams (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    last_version INTEGER NOT NULL,
    created_us   INTEGER NOT NULL
);

-- Batch at global `position` holds versions first_version .. first_version +
-- count - 1 of its stream, at `offset` in the segment whose first position
-- is `segment`, `length` bytes long.
CREATE TABLE IF NOT EXISTS batches (
    position      INTEGER PRIMARY KEY,
    stream_id     INTEGER NOT NULL,
    first_version INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    segment       INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    length        INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_stream ON batches (stream_id, first_version);

-- Event ids, for idempotent appends across restarts.
CREATE TABLE IF NOT EXISTS event_ids (
    id       BLOB PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

-- indexed_to: every position up to it is in batches (set in the same
-- transaction as the rows).
INSERT OR IGNORE INTO meta (key, value) VALUES ('format', 1), ('indexed_to', 0);
