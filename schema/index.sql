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

-- Every stream, written once, when its first batch is indexed.  Its last
-- version is that of its last batch (batches_by_stream), so an append to an
-- existing stream writes no streams row.
CREATE TABLE IF NOT EXISTS streams (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_us INTEGER NOT NULL
);

-- Batch at global `position` holds versions first_version .. first_version +
-- count - 1 of its stream, at `offset` in the segment whose first position
-- is `segment`, `length` bytes long.
--
-- Event ids, for idempotent appends across restarts, cost one row per batch
-- when they come in order: a batch whose ids all sort above every id indexed
-- before it keeps its smallest and largest id here (the ranges of such
-- batches never overlap, so the one that could hold an id is the one with
-- the greatest first_id not above it, and the log has the rest).  The ids
-- of any other batch get a row each in event_ids.  Time-ordered (version 7)
-- ids, which the store generates and most clients send, come in order.
CREATE TABLE IF NOT EXISTS batches (
    position      INTEGER PRIMARY KEY,
    stream_id     INTEGER NOT NULL,
    first_version INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    segment       INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    length        INTEGER NOT NULL,
    first_id      BLOB,
    last_id       BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_stream ON batches (stream_id, first_version);
CREATE INDEX IF NOT EXISTS batches_by_first_id ON batches (first_id) WHERE first_id IS NOT NULL;

-- The ids of batches whose ids are not in order.
CREATE TABLE IF NOT EXISTS event_ids (
    id       BLOB PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

-- Decider states saved by evs_handle every N events of a stream: derived
-- data like everything here, used only when state_version and the hash of
-- the upcasters match, and dropped whole whenever the index is cut back.
CREATE TABLE IF NOT EXISTS snapshots (
    stream        TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    state_version INTEGER NOT NULL,
    upcasters     INTEGER NOT NULL,
    state         TEXT NOT NULL,
    created_us    INTEGER NOT NULL
) WITHOUT ROWID;

-- The "indexed to" mark is the last batch row itself: position + count - 1
-- of the highest position.  It is committed in the same transaction as the
-- rows it covers by construction, and costs no extra page write.
INSERT OR IGNORE INTO meta (key, value) VALUES ('format', 2);
