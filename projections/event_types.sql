-- How many events of each type each category has (the category is the
-- stream's name before the first '-', the whole name without one).
--
-- Generic: it takes every event of any store ("-- on: *").
-- projection: event_types

-- setup
CREATE TABLE IF NOT EXISTS event_types (
    category TEXT NOT NULL,
    type TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (category, type)
) WITHOUT ROWID;

-- on: *
INSERT INTO event_types (category, type, events)
VALUES (CASE WHEN instr(:stream, '-') > 0 THEN substr(:stream, 1, instr(:stream, '-') - 1)
             ELSE :stream END,
        :type, 1)
ON CONFLICT (category, type) DO UPDATE SET events = events + 1;

-- query: all
SELECT category, type, events FROM event_types ORDER BY category, type;
