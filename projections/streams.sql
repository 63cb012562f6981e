-- The stream catalogue: per stream, its category (the name before the
-- first '-', the whole name without one, as evs_category says), its last
-- version and position, and when it last changed (the store timestamp,
-- UTC to the microsecond).
--
-- Generic: it takes every event of any store ("-- on: *").
-- projection: streams

-- setup
CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    last_position INTEGER NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS streams_category ON streams (category, stream);

-- on: *
INSERT INTO streams (stream, category, last_version, last_position, updated_at)
VALUES (:stream,
        CASE WHEN instr(:stream, '-') > 0 THEN substr(:stream, 1, instr(:stream, '-') - 1)
             ELSE :stream END,
        :version, :position,
        :time)
ON CONFLICT (stream) DO UPDATE SET last_version = excluded.last_version,
    last_position = excluded.last_position, updated_at = excluded.updated_at;

-- query: by_category
SELECT stream, category, last_version, last_position, updated_at
  FROM streams WHERE category = :category ORDER BY stream;

-- query: all
SELECT stream, category, last_version, last_position, updated_at
  FROM streams ORDER BY stream;
