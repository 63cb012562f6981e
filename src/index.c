/*
 * index.c: the SQLite index (index.db): streams, one row per batch, event
 * ids and the "indexed to" mark.  Schema in schema/index.sql.
 *
 * Each evs__ix is one connection with its prepared statements, used by one
 * thread at a time: the writer's own, or one taken from the store's pool
 * by a reader.  WAL mode lets readers run beside the writer; the writer
 * uses synchronous=NORMAL because the index is rebuilt from the log after
 * a crash (DESIGN.md invariant 4), so losing its last transactions on
 * power loss costs a little recovery, never an event.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"

extern const char evs__index_sql[];

/* meta 'format' of the index this library reads and writes */
#define EVS__INDEX_FORMAT 2

enum {
	Q_BEGIN_R, Q_BEGIN_W, Q_COMMIT, Q_ROLLBACK,
	Q_GET_META, Q_PUT_META, Q_INS_STREAM, Q_INS_BATCH, Q_HEAD,
	Q_INS_ID, Q_FIND_ID, Q_LAST_BATCH, Q_BATCH_AT, Q_STREAM,
	Q_FWD_START, Q_FWD, Q_BWD, Q_EACH_STREAM, Q_LIST_STREAMS,
	Q_LIST_STREAMS_AFTER, Q_CATEGORIES, Q_COUNTS, Q_ENDS, Q_MAX_ID,
	Q_FIND_RANGE, Q_GET_SNAP, Q_PUT_SNAP, Q_REPLACE_SNAP, Q_CLEAR_SNAPS,
	Q__COUNT
};

/* A stream's last version: that of its last batch. */
#define LAST_VERSION \
	"(SELECT first_version + count - 1 FROM batches WHERE stream_id = streams.id " \
	"ORDER BY first_version DESC LIMIT 1)"

static const char *const sql[Q__COUNT] = {
	[Q_BEGIN_R] = "BEGIN",
	[Q_BEGIN_W] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
	[Q_GET_META] = "SELECT value FROM meta WHERE key = ?1",
	[Q_PUT_META] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
	[Q_INS_STREAM] = "INSERT INTO streams (id, name, created_us) VALUES (?1, ?2, ?3)",
	[Q_HEAD] = "SELECT position + count - 1 FROM batches ORDER BY position DESC LIMIT 1",
	[Q_INS_BATCH] = "INSERT INTO batches (position, stream_id, first_version, "
			"count, segment, offset, length, first_id, last_id) "
			"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[Q_INS_ID] = "INSERT INTO event_ids (id, position) VALUES (?1, ?2)",
	[Q_FIND_ID] = "SELECT position FROM event_ids WHERE id = ?1",
	[Q_LAST_BATCH] = "SELECT position, first_version, count, segment, offset, length, stream_id "
			 "FROM batches ORDER BY position DESC LIMIT 1",
	[Q_BATCH_AT] = "SELECT position, first_version, count, segment, offset, length, stream_id "
		       "FROM batches WHERE position <= ?1 ORDER BY position DESC LIMIT 1",
	[Q_STREAM] = "SELECT id, " LAST_VERSION ", created_us FROM streams WHERE name = ?1",
	[Q_FWD_START] = "SELECT max(first_version) FROM batches "
			"WHERE stream_id = ?1 AND first_version <= ?2",
	[Q_FWD] = "SELECT position, first_version, count, segment, offset, length, stream_id "
		  "FROM batches WHERE stream_id = ?1 AND first_version >= ?2 "
		  "ORDER BY first_version",
	[Q_BWD] = "SELECT position, first_version, count, segment, offset, length, stream_id "
		  "FROM batches WHERE stream_id = ?1 AND first_version <= ?2 "
		  "ORDER BY first_version DESC",
	[Q_EACH_STREAM] = "SELECT id, name, " LAST_VERSION " FROM streams",
	[Q_LIST_STREAMS] = "SELECT name, " LAST_VERSION " FROM streams ORDER BY name LIMIT ?1",
	[Q_LIST_STREAMS_AFTER] = "SELECT name, " LAST_VERSION " FROM streams WHERE name > ?2 "
				 "ORDER BY name LIMIT ?1",
	[Q_CATEGORIES] = "SELECT CASE WHEN instr(name, '-') > 0 "
			 "THEN substr(name, 1, instr(name, '-') - 1) ELSE name END AS c, "
			 "count(*) FROM streams GROUP BY c ORDER BY c",
	[Q_COUNTS] = "SELECT (SELECT count(*) FROM streams), count(*), "
		     "coalesce(sum(length), 0) FROM batches",
	[Q_MAX_ID] = "SELECT max(m) FROM (SELECT max(id) AS m FROM event_ids UNION ALL "
		     "SELECT * FROM (SELECT last_id FROM batches WHERE first_id IS NOT NULL "
		     "ORDER BY first_id DESC LIMIT 1))",
	/* the only batch in order whose ids could hold ?1 */
	[Q_FIND_RANGE] = "SELECT position, first_version, count, segment, offset, length, "
			 "stream_id, last_id FROM batches WHERE first_id <= ?1 "
			 "ORDER BY first_id DESC LIMIT 1",
	[Q_GET_SNAP] = "SELECT version, state_version, upcasters, state FROM snapshots "
		       "WHERE stream = ?1",
	/* a snapshot never replaces a later one made under the same rules
	 * (handlers of one stream may finish out of order) */
	[Q_PUT_SNAP] = "INSERT INTO snapshots (stream, version, state_version, upcasters, "
		       "state, created_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
		       "ON CONFLICT (stream) DO UPDATE SET version = excluded.version, "
		       "state_version = excluded.state_version, upcasters = excluded.upcasters, "
		       "state = excluded.state, created_us = excluded.created_us "
		       "WHERE excluded.version >= snapshots.version "
		       "OR excluded.state_version != snapshots.state_version "
		       "OR excluded.upcasters != snapshots.upcasters",
	[Q_REPLACE_SNAP] = "INSERT OR REPLACE INTO snapshots (stream, version, state_version, "
			   "upcasters, state, created_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_CLEAR_SNAPS] = "DELETE FROM snapshots",
	[Q_ENDS] = "SELECT (SELECT position FROM batches WHERE stream_id = ?1 "
		   "ORDER BY first_version LIMIT 1), (SELECT position + count - 1 "
		   "FROM batches WHERE stream_id = ?1 ORDER BY first_version DESC LIMIT 1)",
};

struct evs__ix {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *st[Q__COUNT];
	int prep_err;           /* why stmt() last returned NULL */
	bool unset;             /* an empty stand-in: the file is not set up yet */
};

static int ix_err(evs__ix *ix, int rc, const char *what)
{
	int err = rc == SQLITE_NOMEM ? EVS_ENOMEM :
		  rc == SQLITE_FULL ? EVS_ENOSPC :
		  rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? EVS_ECORRUPT :
		  rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? EVS_ETIMEOUT : EVS_EIO;

	return evs__err(err, "index %s: %s: %s", ix->path, what,
			ix->db ? sqlite3_errmsg(ix->db) : sqlite3_errstr(rc));
}

static sqlite3_stmt *stmt(evs__ix *ix, int q)
{
	if (!ix->st[q]) {
		int rc = sqlite3_prepare_v3(ix->db, sql[q], -1, SQLITE_PREPARE_PERSISTENT,
					    &ix->st[q], NULL);
		if (rc != SQLITE_OK) {
			ix->prep_err = ix_err(ix, rc, "prepare");
			return NULL;
		}
	}
	return ix->st[q];
}

/* Runs a statement that returns no rows. */
static int run(evs__ix *ix, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE)
		return ix_err(ix, rc, what);
	return 0;
}

/* Completes `ix` as an in-memory index with the schema and no batches. */
static int ix_open_unset(evs__ix *ix, evs__ix **out)
{
	int rc = sqlite3_open_v2(":memory:", &ix->db, SQLITE_OPEN_READWRITE |
				 SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(ix->db, evs__index_sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		rc = ix_err(ix, rc, "open");
		evs__ix_close(ix);
		return rc;
	}
	ix->unset = true;
	*out = ix;
	return 0;
}

bool evs__ix_unset(const evs__ix *ix)
{
	return ix->unset;
}

int evs__ix_open(evs__ix **out, const char *path, bool read_only)
{
	evs__ix *ix = evs__calloc(1, sizeof(*ix));
	int flags = read_only ? SQLITE_OPEN_READONLY :
		    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int rc;
	char *errmsg = NULL;

	if (!ix)
		return evs__err(EVS_ENOMEM, "out of memory opening the index");
	ix->path = evs__strdup(path);
	if (!ix->path) {
		evs__free(ix);
		return evs__err(EVS_ENOMEM, "out of memory opening the index");
	}
	/* A reader of a store whose first writer has not set the index up
	 * (still opening, or died doing it) reads an empty index, as it
	 * would once the writer had made it; the stand-in is never pooled,
	 * so the next read opens the file again. */
	if (read_only && access(path, F_OK) != 0 && errno == ENOENT)
		return ix_open_unset(ix, out);
	rc = sqlite3_open_v2(path, &ix->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = ix_err(ix, rc, "open");
		evs__ix_close(ix);
		return rc;
	}
	sqlite3_busy_timeout(ix->db, 5000);
	if (read_only) {
		sqlite3_stmt *st = NULL;
		rc = sqlite3_prepare_v2(ix->db, "SELECT 1 FROM sqlite_master "
					"WHERE type = 'table' AND name = 'meta'", -1, &st, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc == SQLITE_DONE) {
			sqlite3_close(ix->db);
			ix->db = NULL;
			return ix_open_unset(ix, out);
		}
		if (rc != SQLITE_ROW) {
			rc = ix_err(ix, rc, "open");
			evs__ix_close(ix);
			return rc;
		}
	}
	if (!read_only) {
		/* Checkpoints sync, and a sync competes with the log's
		 * fdatasync: fewer, larger ones (every 8192 pages) cost the
		 * append path less. */
		rc = sqlite3_exec(ix->db,
				  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
				  "PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-16384;",
				  NULL, NULL, &errmsg);
		/* in one transaction: a writer that dies setting the index up
		 * leaves all of it or none, never tables without the format */
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(ix->db, "BEGIN IMMEDIATE", NULL, NULL, &errmsg);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(ix->db, evs__index_sql, NULL, NULL, &errmsg);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(ix->db, "COMMIT", NULL, NULL, &errmsg);
		if (rc != SQLITE_OK) {
			int err = ix_err(ix, rc, "set up");
			sqlite3_free(errmsg);
			sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
			evs__ix_close(ix);
			return err;
		}
	}
	/* A store written by a later library must not be read as this one. */
	uint64_t format = 0;
	rc = evs__ix_get_meta(ix, "format", &format);
	if (rc == 0 && format != EVS__INDEX_FORMAT)
		rc = evs__err(EVS_ECORRUPT, "index %s has format %" PRIu64
			      ", this library reads format %d", path, format, EVS__INDEX_FORMAT);
	else if (rc == EVS_ENOTFOUND && read_only)
		rc = 0; /* the writer has not set it up yet */
	if (rc) {
		evs__ix_close(ix);
		return rc;
	}
	*out = ix;
	return 0;
}

void evs__ix_close(evs__ix *ix)
{
	if (!ix)
		return;
	for (int i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(ix->st[i]);
	sqlite3_close(ix->db);
	evs__free(ix->path);
	evs__free(ix);
}

static int exec_q(evs__ix *ix, int q, const char *what)
{
	sqlite3_stmt *st = stmt(ix, q);

	return st ? run(ix, st, what) : ix->prep_err;
}

int evs__ix_begin(evs__ix *ix, bool write)
{
	return exec_q(ix, write ? Q_BEGIN_W : Q_BEGIN_R, "begin");
}

int evs__ix_commit(evs__ix *ix)
{
	return exec_q(ix, Q_COMMIT, "commit");
}

bool evs__ix_rollback(evs__ix *ix)
{
	/* (without memory for the prepared statement, sqlite3_exec's own) */
	if (!sqlite3_get_autocommit(ix->db) && exec_q(ix, Q_ROLLBACK, "rollback") != 0)
		sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	return sqlite3_get_autocommit(ix->db) != 0;
}

int evs__ix_get_meta(evs__ix *ix, const char *key, uint64_t *out)
{
	sqlite3_stmt *st = stmt(ix, Q_GET_META);
	int rc;

	if (!st)
		return ix->prep_err;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return EVS_ENOTFOUND;
	return ix_err(ix, rc, "read meta");
}

int evs__ix_put_meta(evs__ix *ix, const char *key, uint64_t value)
{
	sqlite3_stmt *st = stmt(ix, Q_PUT_META);

	if (!st)
		return ix->prep_err;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)value);
	return run(ix, st, "write meta");
}

int evs__ix_put_stream(evs__ix *ix, int64_t id, const char *name, size_t len,
		       int64_t created_us)
{
	sqlite3_stmt *st = stmt(ix, Q_INS_STREAM);

	if (!st)
		return ix->prep_err;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, name, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, created_us);
	return run(ix, st, "write stream");
}

int evs__ix_head(evs__ix *ix, uint64_t *out)
{
	sqlite3_stmt *st = stmt(ix, Q_HEAD);
	int rc;

	if (!st)
		return ix->prep_err;
	*out = 0;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : ix_err(ix, rc, "read head");
}

/*
 * Indexes batch b.  If all its ids sort above every id indexed before
 * (max_id), it is kept as the range of its smallest and largest id, which
 * overlaps no other range; else each id gets an event_ids row.  Version 7
 * ids, time-ordered, pass even when random within a millisecond.
 */
int evs__ix_put_batch(evs__ix *ix, int64_t stream_id, const evs__batch_ref *b,
		      const uint8_t *ids, uint8_t max_id[16])
{
	sqlite3_stmt *st = stmt(ix, Q_INS_BATCH);
	const uint8_t *lo = ids, *hi = ids;
	bool ranged;
	int rc;

	if (!st)
		return ix->prep_err;
	for (uint32_t i = 1; i < b->count; i++) {
		const uint8_t *id = ids + 16 * i;
		if (memcmp(id, lo, 16) < 0)
			lo = id;
		if (memcmp(id, hi, 16) > 0)
			hi = id;
	}
	ranged = memcmp(lo, max_id, 16) > 0;
	sqlite3_bind_int64(st, 1, (int64_t)b->position);
	sqlite3_bind_int64(st, 2, stream_id);
	sqlite3_bind_int64(st, 3, (int64_t)b->first_version);
	sqlite3_bind_int64(st, 4, b->count);
	sqlite3_bind_int64(st, 5, (int64_t)b->segment);
	sqlite3_bind_int64(st, 6, (int64_t)b->offset);
	sqlite3_bind_int64(st, 7, b->length);
	if (ranged) {
		sqlite3_bind_blob(st, 8, lo, 16, SQLITE_STATIC);
		sqlite3_bind_blob(st, 9, hi, 16, SQLITE_STATIC);
	}
	if ((rc = run(ix, st, "write batch")) != 0)
		return rc;
	for (uint32_t i = 0; !ranged && i < b->count && !rc; i++)
		rc = evs__ix_put_id(ix, ids + 16 * i, b->position + i);
	if (memcmp(hi, max_id, 16) > 0)
		memcpy(max_id, hi, 16);
	return rc;
}

int evs__ix_put_id(evs__ix *ix, const uint8_t id[16], uint64_t position)
{
	sqlite3_stmt *st = stmt(ix, Q_INS_ID);

	if (!st)
		return ix->prep_err;
	sqlite3_bind_blob(st, 1, id, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)position);
	return run(ix, st, "write event id");
}

static void row_to_ref(sqlite3_stmt *st, evs__batch_ref *b);

int evs__ix_find_id(evs__ix *ix, const uint8_t id[16], uint64_t *pos, evs__batch_ref *batch)
{
	sqlite3_stmt *st = stmt(ix, Q_FIND_ID);
	int rc;

	if (!st)
		return ix->prep_err;
	sqlite3_bind_blob(st, 1, id, 16, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*pos = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		return ix_err(ix, rc, "find event id");
	if (!(st = stmt(ix, Q_FIND_RANGE)))
		return ix->prep_err;
	sqlite3_bind_blob(st, 1, id, 16, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row_to_ref(st, batch);
		if (sqlite3_column_bytes(st, 7) != 16 ||
		    memcmp(id, sqlite3_column_blob(st, 7), 16) > 0)
			rc = SQLITE_DONE;
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return EVS_ENOTFOUND;
	return ix_err(ix, rc, "find event id");
}

static void row_to_ref(sqlite3_stmt *st, evs__batch_ref *b)
{
	b->position = (uint64_t)sqlite3_column_int64(st, 0);
	b->first_version = (uint64_t)sqlite3_column_int64(st, 1);
	b->count = (uint32_t)sqlite3_column_int64(st, 2);
	b->segment = (uint64_t)sqlite3_column_int64(st, 3);
	b->offset = (uint64_t)sqlite3_column_int64(st, 4);
	b->length = (uint32_t)sqlite3_column_int64(st, 5);
	b->stream_id = sqlite3_column_int64(st, 6);
}

static int one_batch(evs__ix *ix, int q, uint64_t arg, bool bind, evs__batch_ref *out)
{
	sqlite3_stmt *st = stmt(ix, q);
	int rc;

	if (!st)
		return ix->prep_err;
	if (bind)
		sqlite3_bind_int64(st, 1, (int64_t)arg);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		row_to_ref(st, out);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return EVS_ENOTFOUND;
	return ix_err(ix, rc, "find batch");
}

int evs__ix_last_batch(evs__ix *ix, evs__batch_ref *out)
{
	return one_batch(ix, Q_LAST_BATCH, 0, false, out);
}

int evs__ix_batch_at(evs__ix *ix, uint64_t position, evs__batch_ref *out)
{
	int rc = one_batch(ix, Q_BATCH_AT, position, true, out);

	if (rc == 0 && out->position + out->count <= position)
		return EVS_ENOTFOUND;
	return rc;
}

int evs__ix_truncate_after(evs__ix *ix, uint64_t position)
{
	char q[512];
	int rc;

	/* Rare (a log that lost what the index holds): event_ids has no
	 * position index, so this scans it. */
	snprintf(q, sizeof(q),
		 "DELETE FROM batches WHERE position > %llu;"
		 "DELETE FROM event_ids WHERE position > %llu;"
		 "DELETE FROM snapshots;"
		 "DELETE FROM streams WHERE NOT EXISTS "
		 "(SELECT 1 FROM batches WHERE stream_id = streams.id);",
		 (unsigned long long)position, (unsigned long long)position);
	rc = sqlite3_exec(ix->db, q, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return ix_err(ix, rc, "truncate");
	return 0;
}

int evs__ix_get_snapshot(evs__ix *ix, const char *stream, evs__snapshot *out)
{
	sqlite3_stmt *st = stmt(ix, Q_GET_SNAP);
	int rc;

	if (!st)
		return ix->prep_err;
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 3);
		out->version = (uint64_t)sqlite3_column_int64(st, 0);
		out->state_version = (uint32_t)sqlite3_column_int64(st, 1);
		out->upcasters = (uint64_t)sqlite3_column_int64(st, 2);
		out->state = evs__strdup(t ? t : "");
		if (!out->state) {
			sqlite3_reset(st);
			return evs__err(EVS_ENOMEM, "out of memory reading a snapshot");
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return EVS_ENOTFOUND;
	return ix_err(ix, rc, "read snapshot");
}

int evs__ix_put_snapshot(evs__ix *ix, const char *stream, const evs__snapshot *snap,
			 int64_t created_us)
{
	sqlite3_stmt *st = stmt(ix, snap->replace ? Q_REPLACE_SNAP : Q_PUT_SNAP);

	if (!st)
		return ix->prep_err;
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)snap->version);
	sqlite3_bind_int64(st, 3, (int64_t)snap->state_version);
	sqlite3_bind_int64(st, 4, (int64_t)snap->upcasters);
	sqlite3_bind_text(st, 5, snap->state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, created_us);
	return run(ix, st, "write snapshot");
}

int evs__ix_clear_snapshots(evs__ix *ix)
{
	sqlite3_stmt *st = stmt(ix, Q_CLEAR_SNAPS);

	if (!st)
		return ix->prep_err;
	return run(ix, st, "drop snapshots");
}

int evs__ix_each_stream(evs__ix *ix, evs__ix_stream_cb cb, void *ctx)
{
	sqlite3_stmt *st = stmt(ix, Q_EACH_STREAM);
	int rc, err = 0;

	if (!st)
		return ix->prep_err;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		err = cb(sqlite3_column_int64(st, 0),
			 (const char *)sqlite3_column_text(st, 1),
			 (size_t)sqlite3_column_bytes(st, 1),
			 (uint64_t)sqlite3_column_int64(st, 2), ctx);
		if (err)
			break;
	}
	sqlite3_reset(st);
	if (err)
		return err;
	if (rc != SQLITE_DONE)
		return ix_err(ix, rc, "read streams");
	return 0;
}

int evs__ix_stream(evs__ix *ix, const char *name, int64_t *id,
		   uint64_t *last_version, int64_t *created_us)
{
	sqlite3_stmt *st = stmt(ix, Q_STREAM);
	int rc;

	if (!st)
		return ix->prep_err;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		*last_version = (uint64_t)sqlite3_column_int64(st, 1);
		if (created_us)
			*created_us = sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return EVS_ENOTFOUND;
	return ix_err(ix, rc, "find stream");
}

static int each_batch(evs__ix *ix, sqlite3_stmt *st, evs__ix_batch_cb cb, void *ctx)
{
	evs__batch_ref b;
	int rc, err = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_to_ref(st, &b);
		err = cb(&b, ctx);
		if (err)
			break;
	}
	sqlite3_reset(st);
	if (err)
		return err;
	if (rc != SQLITE_DONE)
		return ix_err(ix, rc, "read batches");
	return 0;
}

int evs__ix_stream_batches(evs__ix *ix, int64_t stream_id, uint64_t from,
			   evs_direction dir, evs__ix_batch_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	uint64_t start = from;

	if (dir == EVS_FORWARD) {
		/* Start at the batch holding `from`, not the first one after. */
		st = stmt(ix, Q_FWD_START);
		if (!st)
			return ix->prep_err;
		sqlite3_bind_int64(st, 1, stream_id);
		sqlite3_bind_int64(st, 2, (int64_t)from);
		if (sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_type(st, 0) != SQLITE_NULL)
			start = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		st = stmt(ix, Q_FWD);
	} else {
		st = stmt(ix, Q_BWD);
	}
	if (!st)
		return ix->prep_err;
	sqlite3_bind_int64(st, 1, stream_id);
	sqlite3_bind_int64(st, 2, (int64_t)start);
	return each_batch(ix, st, cb, ctx);
}

static int each_name(evs__ix *ix, sqlite3_stmt *st, evs_name_cb cb, void *ctx)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb((const char *)sqlite3_column_text(st, 0),
		       (uint64_t)sqlite3_column_int64(st, 1), ctx)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE)
		return ix_err(ix, rc, "list");
	return 0;
}

int evs__ix_list_streams(evs__ix *ix, const char *after, uint64_t limit,
			 evs_name_cb cb, void *ctx)
{
	sqlite3_stmt *st = stmt(ix, after ? Q_LIST_STREAMS_AFTER : Q_LIST_STREAMS);

	if (!st)
		return ix->prep_err;
	sqlite3_bind_int64(st, 1, limit ? (int64_t)limit : -1);
	if (after)
		sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
	return each_name(ix, st, cb, ctx);
}

int evs__ix_list_categories(evs__ix *ix, evs_name_cb cb, void *ctx)
{
	sqlite3_stmt *st = stmt(ix, Q_CATEGORIES);

	return st ? each_name(ix, st, cb, ctx) : EVS_EIO;
}

int evs__ix_counts(evs__ix *ix, uint64_t *streams, uint64_t *batches,
		   uint64_t *log_bytes)
{
	sqlite3_stmt *st = stmt(ix, Q_COUNTS);
	int rc;

	if (!st)
		return ix->prep_err;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*streams = (uint64_t)sqlite3_column_int64(st, 0);
		*batches = (uint64_t)sqlite3_column_int64(st, 1);
		*log_bytes = (uint64_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : ix_err(ix, rc, "count");
}

int evs__ix_stream_ends(evs__ix *ix, int64_t stream_id, uint64_t *first, uint64_t *last)
{
	sqlite3_stmt *st = stmt(ix, Q_ENDS);
	int rc;

	if (!st)
		return ix->prep_err;
	sqlite3_bind_int64(st, 1, stream_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*first = (uint64_t)sqlite3_column_int64(st, 0);
		*last = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : ix_err(ix, rc, "stream ends");
}

int evs__ix_max_id(evs__ix *ix, uint8_t out[16])
{
	sqlite3_stmt *st = stmt(ix, Q_MAX_ID);
	int rc;

	if (!st)
		return ix->prep_err;
	memset(out, 0, 16);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 16)
		memcpy(out, sqlite3_column_blob(st, 0), 16);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : ix_err(ix, rc, "max id");
}

/*
 * Copies the index `ix` over the index file at `path` with SQLite's
 * backup: one write transaction there, so its readers, in any process,
 * see the old index or the new one, never a mix, and keep their
 * connections.  The new index has no snapshots: those of the old one were
 * folded from what it said, which is what is in doubt.  A `path` that is
 * no SQLite database is refused, naming it: deleting it is then the way,
 * since opening the store rebuilds it.
 */
int evs__ix_replace(evs__ix *ix, const char *path)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int rc = 0, r;

	if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		rc = evs__err(EVS_EIO, "index %s: %s", path, sqlite3_errmsg(dst));
		goto out;
	}
	sqlite3_busy_timeout(dst, 5000);
	if (!(b = sqlite3_backup_init(dst, "main", ix->db, "main"))) {
		r = sqlite3_errcode(dst);
		rc = evs__err(r == SQLITE_NOTADB || r == SQLITE_CORRUPT ? EVS_ECORRUPT : EVS_EIO,
			      "index %s: cannot replace it: %s%s", path, sqlite3_errmsg(dst),
			      r == SQLITE_NOTADB || r == SQLITE_CORRUPT ?
			      " (delete it: opening the store rebuilds it)" : "");
		goto out;
	}
	r = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (r != SQLITE_DONE)
		rc = evs__err(r == SQLITE_NOTADB || r == SQLITE_CORRUPT ? EVS_ECORRUPT : EVS_EIO,
			      "index %s: cannot replace it: %s%s", path, sqlite3_errstr(r),
			      r == SQLITE_NOTADB || r == SQLITE_CORRUPT ?
			      " (delete it: opening the store rebuilds it)" : "");
out:
	sqlite3_close(dst);
	return rc;
}
