/*
 * test_projection.c: SQL projections: exact query results, exactly once
 * across restarts and kill -9 mid-batch, upcast events, min_position, a
 * changed file, and file errors reported with path and line.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testutil.h"

static const char totals_sql[] =
	"-- A projection of the test: per stream, how many Added and their sum.\n"
	"-- projection: totals\n"
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY,\n"
	"    n INTEGER NOT NULL, sum INTEGER NOT NULL, cur TEXT);\n"
	"\n"
	"-- on: Added\n"
	"INSERT INTO totals (stream, n, sum, cur)\n"
	"VALUES (:stream, 1, json_extract(:data, '$.k'), json_extract(:data, '$.cur'))\n"
	"ON CONFLICT (stream) DO UPDATE SET n = n + 1, sum = sum + excluded.sum,\n"
	"    cur = excluded.cur;\n"
	"\n"
	"-- query: one\n"
	"SELECT stream, n, sum FROM totals WHERE stream = :stream;\n"
	"-- query: all\n"
	"SELECT stream, n, sum, cur FROM totals ORDER BY stream;\n";

static char *write_file(const char *dir, const char *name, const char *text)
{
	char *path = malloc(4200);

	snprintf(path, 4200, "%s/%s", dir, name);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
	return path;
}

static void add(evs_store *s, const char *stream, const char *type, const char *data,
		uint32_t version)
{
	evs_new_event ev = { type, data, NULL, NULL, version };
	ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL), 0);
}

static uint64_t head_of(evs_store *s)
{
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	return st.head_position;
}

/* The rows of query `q` of projection `proj` once it reached the head, as
 * text (JSON flags `flags`). */
static char *query_at_head(evs_store *s, const char *proj, const char *q, const char *params,
			   size_t flags)
{
	evs_query_options o = EVS_QUERY_OPTIONS_INIT;
	json_t *p = params ? json_loads(params, 0, NULL) : NULL, *rows;
	uint64_t at;
	char *text;

	o.min_position = head_of(s);
	o.timeout_ms = 20000;
	ck_assert_msg(evs_query(s, proj, q, p, &o, &rows, &at) == 0, "%s", evs_errmsg());
	ck_assert_uint_ge(at, o.min_position);
	text = json_dumps(rows, flags);
	json_decref(rows);
	json_decref(p);
	return text;
}

/* The same of the test's projection "totals". */
static char *rows_at_head(evs_store *s, const char *q, const char *params)
{
	return query_at_head(s, "totals", q, params, JSON_COMPACT);
}

START_TEST(test_build_and_query)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *t;
	evs_store *s = tu_open(dir, 0, 0);
	const char *name;
	evs_projection_status st;

	path = write_file(pd, "totals.sql", totals_sql);
	add(s, "a-1", "Added", "{\"k\":2}", 1);
	add(s, "a-1", "Other", "{\"k\":100}", 1);
	add(s, "a-2", "Added", "{\"k\":5}", 1);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, &name), 0);
	ck_assert_str_eq(name, "totals");
	ck_assert_int_eq(evs_projections_start(s), 0);
	add(s, "a-1", "Added", "{\"k\":3}", 1);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":2,\"sum\":5,\"cur\":null},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":5,\"cur\":null}]");
	free(t);
	t = rows_at_head(s, "one", "{\"stream\":\"a-2\"}");
	ck_assert_str_eq(t, "[{\"stream\":\"a-2\",\"n\":1,\"sum\":5}]");
	free(t);
	ck_assert_int_eq(evs_projection_status_get(&st, s, "totals"), 0);
	ck_assert_uint_eq(st.checkpoint, 4);
	ck_assert_uint_eq(st.lag, 0);
	ck_assert_int_eq(st.running, 1);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);

	/* exactly once across a restart: new events only */
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), 0);
	add(s, "a-2", "Added", "{\"k\":1}", 1);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":2,\"sum\":5,\"cur\":null},"
			 "{\"stream\":\"a-2\",\"n\":2,\"sum\":6,\"cur\":null}]");
	free(t);

	/* waiting for a position that never comes */
	evs_query_options o = EVS_QUERY_OPTIONS_INIT;
	json_t *rows;
	o.min_position = 99;
	o.timeout_ms = 50;
	ck_assert_int_eq(evs_query(s, "totals", "all", NULL, &o, &rows, NULL), EVS_ETIMEOUT);
	ck_assert_str_eq(evs_errmsg(), "projection 'totals' is at position 5, not yet 99, "
			 "after 50 ms");
	ck_assert_int_eq(evs_query(s, "totals", "nope", NULL, NULL, &rows, NULL), EVS_ENOTFOUND);
	ck_assert_str_eq(evs_errmsg(), "projection 'totals' has no query 'nope'");
	ck_assert_int_eq(evs_query(s, "other", "all", NULL, NULL, &rows, NULL), EVS_ENOTFOUND);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), EVS_EINVAL);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
}
END_TEST

/* Handlers see upcast data; a changed file is noticed. */
START_TEST(test_upcast_and_change)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *sd = tu_mkdtemp(), *path, *t, *up;
	evs_options opts = EVS_OPTIONS_INIT;
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_store *s;

	up = write_file(sd, "Added.v1-v2.sql", "json_set(data, '$.cur', 'EUR')");
	path = write_file(pd, "totals.sql", totals_sql);
	opts.create = 1;
	opts.durability = EVS_DURABILITY_NONE;
	opts.schema_dir = sd;
	ck_assert_int_eq(evs_open(&s, dir, &opts), 0);
	add(s, "a-1", "Added", "{\"k\":2}", 1);
	add(s, "a-2", "Added", "{\"k\":3,\"cur\":\"USD\"}", 2);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":\"EUR\"},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":3,\"cur\":\"USD\"}]");
	free(t);
	evs_close(s);

	/* the file changes: the old read model is served, starting refuses */
	free(path);
	path = write_file(pd, "totals.sql", "-- projection: totals\n-- setup\n"
			  "CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY,\n"
			  "    n INTEGER NOT NULL, sum INTEGER NOT NULL, cur TEXT);\n"
			  "-- on: Added\n"
			  "INSERT INTO totals (stream, n, sum, cur) VALUES (:stream, 1,\n"
			  "  10 * json_extract(:data, '$.k'), NULL)\n"
			  "  ON CONFLICT (stream) DO UPDATE SET n = n + 1, sum = sum + excluded.sum;\n"
			  "-- query: all\nSELECT stream, n, sum, cur FROM totals ORDER BY stream;\n");
	ck_assert_int_eq(evs_open(&s, dir, &opts), 0);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), 0);
	evs_projection_status st;
	ck_assert_int_eq(evs_projection_status_get(&st, s, "totals"), 0);
	ck_assert_int_eq(st.out_of_date, 1);
	ck_assert_int_eq(evs_projections_start(s), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), "was built by another version of") != NULL, "%s",
		      evs_errmsg());
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":\"EUR\"},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":3,\"cur\":\"USD\"}]");
	free(t);
	evs_close(s);
	/* ... or rebuilds, when asked */
	ck_assert_int_eq(evs_open(&s, dir, &opts), 0);
	po.rebuild_if_changed = 1;
	ck_assert_int_eq(evs_projection_load(s, path, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":20,\"cur\":null},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":30,\"cur\":null}]");
	free(t);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	tu_rmdir(sd);
	free(dir);
	free(pd);
	free(sd);
	free(path);
	free(up);
}
END_TEST

/* "-- on: *" sees every event, after the type's own handler. */
START_TEST(test_every_type)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *t;
	evs_store *s = tu_open(dir, 0, 0);
	evs_query_options o = EVS_QUERY_OPTIONS_INIT;
	json_t *rows;

	path = write_file(pd, "types.sql", "-- setup\n"
			  "CREATE TABLE IF NOT EXISTS types (type TEXT PRIMARY KEY, n INTEGER,\n"
			  "  seen_added INTEGER DEFAULT 0);\n"
			  "-- on: *\n"
			  "INSERT INTO types (type, n) VALUES (:type, 1)\n"
			  "  ON CONFLICT (type) DO UPDATE SET n = n + 1;\n"
			  "-- on: Added\n"
			  "INSERT INTO types (type, n, seen_added) VALUES ('Added', 0, 1)\n"
			  "  ON CONFLICT (type) DO UPDATE SET seen_added = seen_added + 1;\n"
			  "-- query: all\nSELECT type, n, seen_added FROM types ORDER BY type;\n");
	for (int i = 0; i < 3; i++)
		add(s, "a-1", "Added", "{}", 1);
	add(s, "b-1", "Other", "{}", 1);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	o.min_position = 4;
	o.timeout_ms = 20000;
	ck_assert_int_eq(evs_query(s, "types", "all", NULL, &o, &rows, NULL), 0);
	t = json_dumps(rows, JSON_COMPACT);
	ck_assert_str_eq(t, "[{\"type\":\"Added\",\"n\":3,\"seen_added\":3},"
			 "{\"type\":\"Other\",\"n\":1,\"seen_added\":0}]");
	free(t);
	json_decref(rows);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
}
END_TEST

static void progress_count(uint64_t done, uint64_t total, void *ctx)
{
	(void)done;
	(void)total;
	(*(int *)ctx)++;
}

/* A rebuild from the log replaces a damaged read model whole; a failed one
 * leaves the live one untouched. */
START_TEST(test_rebuild)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *bad, *t, db[4200];
	evs_store *s = tu_open(dir, 0, 0);
	uint64_t at;
	int calls = 0;

	path = write_file(pd, "totals.sql", totals_sql);
	add(s, "a-1", "Added", "{\"k\":2}", 1);
	add(s, "a-2", "Added", "{\"k\":13}", 1);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	free(t);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	/* running in this process: refused */
	ck_assert_int_eq(evs_projections_start(s), 0);
	ck_assert_int_eq(evs_projection_rebuild(s, path, NULL, NULL, &at), EVS_EINVAL);
	ck_assert_int_eq(evs_projections_stop(s), 0);

	/* damage the live model, then rebuild */
	snprintf(db, sizeof(db), "%s/readmodels/totals.db", dir);
	sqlite3 *h;
	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(h, "UPDATE totals SET sum = 999", NULL, NULL, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(evs_projection_rebuild(s, path, progress_count, &calls, &at), 0);
	ck_assert_uint_eq(at, 2);
	ck_assert_int_ge(calls, 1);
	/* a connection opened before sees the new rows */
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(h, "SELECT group_concat(stream || '=' || sum, ',') "
					    "FROM (SELECT * FROM totals ORDER BY stream)", -1, &st,
					    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "a-1=2,a-2=13");
	sqlite3_finalize(st);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":null},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":13,\"cur\":null}]");
	free(t);

	/* a rebuild that fails half way changes nothing */
	ck_assert_int_eq(sqlite3_exec(h, "UPDATE totals SET sum = 7 WHERE stream = 'a-1'", NULL,
				      NULL, NULL), SQLITE_OK);
	bad = write_file(pd, "totals2.sql", "-- projection: totals\n-- setup\n"
			 "CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY,\n"
			 "  n INTEGER, sum INTEGER CHECK (sum < 10), cur TEXT);\n"
			 "-- on: Added\n"
			 "INSERT INTO totals VALUES (:stream, 1, json_extract(:data, '$.k'), NULL);\n"
			 "-- query: all\nSELECT stream, n, sum, cur FROM totals ORDER BY stream;\n");
	ck_assert_int_eq(evs_projection_rebuild(s, bad, NULL, NULL, &at), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), "CHECK constraint failed") != NULL, "%s",
		      evs_errmsg());
	ck_assert_int_eq(sqlite3_prepare_v2(h, "SELECT group_concat(stream || '=' || sum, ',') "
					    "FROM (SELECT * FROM totals ORDER BY stream)", -1, &st,
					    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "a-1=7,a-2=13");
	sqlite3_finalize(st);
	sqlite3_close(h);
	char tmpdb[4300];
	snprintf(tmpdb, sizeof(tmpdb), "%s/readmodels/totals.rebuild.db", dir);
	ck_assert_int_eq(access(tmpdb, F_OK), -1);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
	free(bad);
}
END_TEST

/* One value per event, as data member "a" (and "ab"), for @a against
 * json_extract: every kind of JSON value, escapes, big numbers, duplicate
 * keys, an escaped key, a missing member. */
static const char *const member_data[] = {
	"{\"a\":\"plain\"}",
	"{\"a\":\"x\\u0000y\"}",
	"{\"a\":\"\\ud83d\\ude00 \\u00e9\\u4e2d\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
	"{\"a\": [1, {\"b\" : \"c d\"} ], \"ab\": {\"x\":[ ]}}",
	"{\"a\":{ }}",
	"{\"a\":9223372036854775807}",
	"{\"a\":9223372036854775808}",
	"{\"a\":-9223372036854775808}",
	"{\"a\":-9223372036854775809}",
	"{\"a\":123456789012345678901234567890}",
	"{\"a\":-0}",
	"{\"a\":-0.0}",
	"{\"a\":0.1}",
	"{\"a\":1e3}",
	"{\"a\":1E+2}",
	"{\"a\":2.5e-3}",
	"{\"a\":1.7976931348623157e309}",
	"{\"a\":true}",
	"{\"a\":false}",
	"{\"a\":null}",
	"{\"a\":1,\"a\":2}",
	"{\"a\\u0062\":1,\"ab\":2}",
	"{\"b\":1}",
	"{ \"ab\" : \"s\" , \"a\" : 7 }",
	"{}",
};

static const char members_sql[] =
	"-- projection: members\n"
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS m (pos INTEGER PRIMARY KEY, a, ja, ab, jab, miss,\n"
	"    t TEXT, jt TEXT);\n"
	"CREATE TABLE IF NOT EXISTS names (n TEXT COLLATE NOCASE PRIMARY KEY, k INTEGER);\n"
	"INSERT OR IGNORE INTO names VALUES ('plain', 0);\n"
	"-- on: V, U\n"
	"INSERT INTO m VALUES (:position, @a, json_extract(:data, '$.a'), @ab,\n"
	"    json_extract(:data, '$.ab'), @missing, :time,\n"
	"    strftime('%Y-%m-%dT%H:%M:%S', :timestamp / 1000000, 'unixepoch')\n"
	"    || printf('.%06dZ', :timestamp % 1000000));\n"
	"-- LIKE on a parameter: SQLite compiles the statement again for each value\n"
	"UPDATE names SET k = k + 1 WHERE n LIKE @a;\n"
	"-- query: differ\n"
	"SELECT count(*) AS n FROM m WHERE a IS NOT ja OR typeof(a) != typeof(ja)\n"
	"    OR ab IS NOT jab OR typeof(ab) != typeof(jab) OR miss IS NOT NULL OR t != jt;\n"
	"-- query: rows\n"
	"SELECT count(*) AS n FROM m;\n"
	"-- query: plain\n"
	"SELECT k FROM names;\n"
	"-- query: at\n"
	"SELECT a, typeof(a) AS ta, ab FROM m WHERE pos = :pos;\n";

static char *members_query(evs_store *s, const char *q, const char *params)
{
	return query_at_head(s, "members", q, params, JSON_COMPACT | JSON_ENSURE_ASCII);
}

static void members_check(evs_store *s, size_t n)
{
	char *t = members_query(s, "differ", NULL);
	ck_assert_str_eq(t, "[{\"n\":0}]");
	free(t);
	t = members_query(s, "rows", NULL);
	char want[64];
	snprintf(want, sizeof(want), "[{\"n\":%zu}]", n);
	ck_assert_str_eq(t, want);
	free(t);
	/* one value was 'plain' */
	t = members_query(s, "plain", NULL);
	ck_assert_str_eq(t, "[{\"k\":1}]");
	free(t);
	/* and a few exactly */
	static const char *const exact[][2] = {
		{ "{\"pos\":2}", "[{\"a\":\"x\",\"ta\":\"text\",\"ab\":null}]" },
		{ "{\"pos\":3}", "[{\"a\":\"\\uD83D\\uDE00 \\u00E9\\u4E2D/\\b\\f\\n\\r\\t\\\"\\\\\","
				 "\"ta\":\"text\",\"ab\":null}]" },
		{ "{\"pos\":4}", "[{\"a\":\"[1,{\\\"b\\\":\\\"c d\\\"}]\",\"ta\":\"text\","
				 "\"ab\":\"{\\\"x\\\":[]}\"}]" },
		{ "{\"pos\":7}", "[{\"a\":9.2233720368547758e18,\"ta\":\"real\",\"ab\":null}]" },
		{ "{\"pos\":8}", "[{\"a\":-9223372036854775808,\"ta\":\"integer\",\"ab\":null}]" },
		{ "{\"pos\":18}", "[{\"a\":1,\"ta\":\"integer\",\"ab\":null}]" },
		{ "{\"pos\":21}", "[{\"a\":1,\"ta\":\"integer\",\"ab\":null}]" },
		{ "{\"pos\":22}", "[{\"a\":null,\"ta\":\"null\",\"ab\":2}]" },
		{ "{\"pos\":24}", "[{\"a\":7,\"ta\":\"integer\",\"ab\":\"s\"}]" },
		{ "{\"pos\":26}", "[{\"a\":\"up\",\"ta\":\"text\",\"ab\":null}]" },
	};
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		t = members_query(s, "at", exact[i][0]);
		ck_assert_msg(strcmp(t, exact[i][1]) == 0, "%s: %s", exact[i][0], t);
		free(t);
	}
}

/* @name binds what json_extract(:data, '$.name') gives, of the upcast data
 * too, and :time the timestamp as strftime writes it; in the worker and in
 * a rebuild. */
START_TEST(test_data_members)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *sd = tu_mkdtemp(), *path, *up;
	evs_options opts = EVS_OPTIONS_INIT;
	size_t n = sizeof(member_data) / sizeof(member_data[0]);
	evs_store *s;
	uint64_t at;

	up = write_file(sd, "U.v1-v2.sql", "json_set(data, '$.a', 'up')");
	path = write_file(pd, "members.sql", members_sql);
	opts.create = 1;
	opts.durability = EVS_DURABILITY_NONE;
	opts.schema_dir = sd;
	ck_assert_int_eq(evs_open(&s, dir, &opts), 0);
	for (size_t i = 0; i < n; i++)
		add(s, "m-1", "V", member_data[i], 1);
	add(s, "m-1", "U", "{\"a\":1}", 1);
	ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	members_check(s, n + 1);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	/* the schema changes under the prepared handlers: SQLite compiles
	 * them again, and frees the parameter names it gave before */
	char db[4200];
	sqlite3 *h;
	snprintf(db, sizeof(db), "%s/readmodels/members.db", dir);
	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(h, "CREATE TABLE extra (x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	add(s, "m-1", "V", "{\"a\":\"late\",\"ab\":3}", 1);
	ck_assert_int_eq(evs_projections_start(s), 0);
	members_check(s, n + 2);
	char *t = members_query(s, "at", "{\"pos\":27}");
	ck_assert_str_eq(t, "[{\"a\":\"late\",\"ta\":\"text\",\"ab\":3}]");
	free(t);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	ck_assert_int_eq(evs_projection_rebuild(s, path, NULL, NULL, &at), 0);
	ck_assert_uint_eq(at, n + 2);
	members_check(s, n + 2);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	tu_rmdir(sd);
	free(dir);
	free(pd);
	free(sd);
	free(path);
	free(up);
}
END_TEST

static const char two_step_sql[] =
	"-- projection: totals\n"
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS seen (stream TEXT PRIMARY KEY);\n"
	"CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY,\n"
	"    n INTEGER NOT NULL, sum INTEGER NOT NULL CHECK (sum != 13), cur TEXT);\n"
	"-- on: Added\n"
	"INSERT INTO seen VALUES (:stream);\n"
	"INSERT INTO totals (stream, n, sum) VALUES (:stream, 1, @k);\n"
	"-- query: all\n"
	"SELECT stream, n, sum, cur, (SELECT count(*) FROM seen) AS seen FROM totals\n"
	" ORDER BY stream;\n";

/* A rebuild runs without a savepoint per event until a handler fails; then
 * it starts over with them, so the failed event's first statement is
 * undone, the event parked, and every other event applied once. */
START_TEST(test_rebuild_redo)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *t;
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_store *s = tu_open(dir, 0, 0);
	uint64_t at;
	json_t *rows;
	int calls = 0;

	path = write_file(pd, "totals.sql", two_step_sql);
	add(s, "a-1", "Added", "{\"k\":2}", 1);
	add(s, "a-2", "Added", "{\"k\":13}", 1);
	add(s, "a-3", "Added", "{\"k\":4}", 1);
	/* stopping: the rebuild fails, naming the event */
	ck_assert_int_eq(evs_projection_rebuild(s, path, NULL, NULL, &at), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), "totals.sql:8: on Added at stream 'a-2' version 1 "
			     "(position 2): CHECK constraint failed") != NULL, "%s", evs_errmsg());
	/* parking */
	po.park = 1;
	po.max_retries = 1;
	ck_assert_int_eq(evs_projection_load(s, path, &po, NULL), 0);
	ck_assert_int_eq(evs_projection_rebuild_loaded(s, "totals", progress_count, &calls, &at),
			 0);
	ck_assert_uint_eq(at, 3);
	ck_assert_int_ge(calls, 1);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":null,\"seen\":2},"
			 "{\"stream\":\"a-3\",\"n\":1,\"sum\":4,\"cur\":null,\"seen\":2}]");
	free(t);
	ck_assert_int_eq(evs_projection_parked(s, "totals", &rows), 0);
	ck_assert_int_eq(json_array_size(rows), 1);
	json_t *r0 = json_array_get(rows, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r0, "position")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(r0, "attempts")), 2);
	json_decref(rows);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
}
END_TEST

static const char guarded_sql[] =
	"-- projection: totals\n"
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY,\n"
	"    n INTEGER NOT NULL, sum INTEGER NOT NULL, cur TEXT);\n"
	"CREATE TABLE IF NOT EXISTS config (broken INTEGER);\n"
	"INSERT INTO config SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM config);\n"
	"CREATE TRIGGER IF NOT EXISTS guard BEFORE INSERT ON totals\n"
	"  WHEN NEW.sum = 13 AND (SELECT broken FROM config) = 1\n"
	"  BEGIN SELECT RAISE(ABORT, 'thirteen'); END;\n"
	"-- on: Added\n"
	"INSERT INTO totals (stream, n, sum) VALUES (:stream, 1, json_extract(:data, '$.k'));\n"
	"-- query: all\n"
	"SELECT stream, n, sum, cur FROM totals ORDER BY stream;\n";

/* A failing handler: the worker stops (the default), or the event is
 * parked and the rest applied; replayed once the cause is fixed. */
START_TEST(test_failure_policy)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *t, db[4200];
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_projection_status st;
	evs_store *s = tu_open(dir, 0, 0);
	uint64_t done, left;
	json_t *rows;

	path = write_file(pd, "totals.sql", guarded_sql);
	add(s, "a-1", "Added", "{\"k\":2}", 1);
	add(s, "a-2", "Added", "{\"k\":13}", 1);
	add(s, "a-3", "Added", "{\"k\":4}", 1);
	/* one batch for the three, however slow the machine (valgrind): a
	 * batch of one would commit position 1 before the failure */
	po.max_latency_ms = 600000;
	ck_assert_int_eq(evs_projection_load(s, path, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	for (int i = 0; i < 5000; i++) {
		ck_assert_int_eq(evs_projection_status_get(&st, s, "totals"), 0);
		if (st.failed)
			break;
		struct timespec nap = { 0, 1000000 };
		nanosleep(&nap, NULL);
	}
	ck_assert_int_eq(st.failed, EVS_EINVAL);
	ck_assert_int_eq(st.running, 0);
	ck_assert_uint_eq(st.checkpoint, 0);
	ck_assert_int_eq(evs_projections_stop(s), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), "totals.sql:11: on Added at stream 'a-2' version 1 "
			     "(position 2): thirteen") != NULL, "%s", evs_errmsg());
	evs_close(s);

	s = tu_open(dir, 0, 0);
	po.park = 1;
	po.max_retries = 2;
	ck_assert_int_eq(evs_projection_load(s, path, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":null},"
			 "{\"stream\":\"a-3\",\"n\":1,\"sum\":4,\"cur\":null}]");
	free(t);
	ck_assert_int_eq(evs_projection_status_get(&st, s, "totals"), 0);
	ck_assert_uint_eq(st.parked, 1);
	ck_assert_int_eq(evs_projection_parked(s, "totals", &rows), 0);
	t = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	static const char parked_head[] = "[{\"position\":2,\"stream\":\"a-2\",\"version\":1,"
					  "\"type\":\"Added\",\"error\":\"";
	ck_assert_msg(strncmp(t, parked_head, strlen(parked_head)) == 0, "%s", t);
	ck_assert_msg(strstr(t, "thirteen\",\"attempts\":3}]") != NULL, "%s", t);
	free(t);
	/* still broken: stays parked; fixed: applied */
	ck_assert_int_eq(evs_projection_replay_parked(s, "totals", &done, &left), EVS_EINVAL);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	ck_assert_int_eq(evs_projection_replay_parked(s, "totals", &done, &left), 0);
	ck_assert_uint_eq(done, 0);
	ck_assert_uint_eq(left, 1);
	snprintf(db, sizeof(db), "%s/readmodels/totals.db", dir);
	sqlite3 *h;
	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(h, "UPDATE config SET broken = 0", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	ck_assert_int_eq(evs_projection_replay_parked(s, "totals", &done, &left), 0);
	ck_assert_uint_eq(done, 1);
	ck_assert_uint_eq(left, 0);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":null},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":13,\"cur\":null},"
			 "{\"stream\":\"a-3\",\"n\":1,\"sum\":4,\"cur\":null}]");
	free(t);
	ck_assert_int_eq(evs_projection_status_get(&st, s, "totals"), 0);
	ck_assert_uint_eq(st.parked, 0);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
}
END_TEST

/* A handler that never ends on one event (as one that crashes the process
 * would): after the process dies on it max_retries + 1 times, the event
 * is parked instead of stopping every restart. */
START_TEST(test_crash_loop)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *t;
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_store *s = tu_open(dir, 0, 0);
	json_t *rows;

	path = write_file(pd, "totals.sql",
			  "-- projection: totals\n-- setup\n"
			  "CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY,\n"
			  "    n INTEGER NOT NULL, sum INTEGER NOT NULL, cur TEXT);\n"
			  "-- on: Added\n"
			  "INSERT INTO totals (stream, n, sum)\n"
			  "SELECT :stream, 1, json_extract(:data, '$.k')\n"
			  " WHERE json_extract(:data, '$.k') != 13 OR (WITH RECURSIVE c(x) AS\n"
			  "   (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000000)\n"
			  "   SELECT count(*) FROM c) > 0;\n"
			  "-- query: all\nSELECT stream, n, sum, cur FROM totals ORDER BY stream;\n");
	add(s, "a-1", "Added", "{\"k\":2}", 1);
	add(s, "a-2", "Added", "{\"k\":13}", 1);
	add(s, "a-3", "Added", "{\"k\":4}", 1);
	evs_close(s);
	po.park = 1;
	po.max_retries = 1;
	for (int round = 0; round < 6; round++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			evs_store *cs = tu_open(dir, 0, 0);
			if (!cs || evs_projection_load(cs, path, &po, NULL) != 0 ||
			    evs_projections_start(cs) != 0)
				_exit(3);
			struct timespec nap = { 0, 300000000L };
			nanosleep(&nap, NULL);
			raise(SIGKILL);
			_exit(4);
		}
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status), "round %d: status %d", round, status);
	}
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_projection_load(s, path, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":2,\"cur\":null},"
			 "{\"stream\":\"a-3\",\"n\":1,\"sum\":4,\"cur\":null}]");
	free(t);
	ck_assert_int_eq(evs_projection_parked(s, "totals", &rows), 0);
	ck_assert_int_eq(json_array_size(rows), 1);
	json_t *r0 = json_array_get(rows, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r0, "position")), 2);
	ck_assert_msg(strstr(json_string_value(json_object_get(r0, "error")),
			     "the process stopped 2 times while applying the event at stream "
			     "'a-2' version 1 (position 2)") != NULL, "%s",
		      json_string_value(json_object_get(r0, "error")));
	json_decref(rows);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
}
END_TEST

START_TEST(test_file_errors)
{
	static const char *const bad[][2] = {
		{ "-- setup\nCREATE TABLE t (a);\n-- on: Added\n\nINSERT INTO t VALUES (:foo);\n",
		  "bad.sql:5: unknown parameter ':foo' (a handler has :stream, :version, "
		  ":position, :type, :schema_version, :event_id, :timestamp, :time, :data, "
		  ":metadata, and @name for the data's member name)" },
		{ "-- setup\nCREATE TABLE t (a);\n-- on: Added\nINSERT INTO t VALUES (@a(b));\n",
		  "bad.sql:4: parameter '@a(b)': a data member's name is letters, digits and _ "
		  "only; for others use json_extract(:data, ...)" },
		{ "-- setup\nCREATE TABLE t (a);\n-- on: Added\nINSERT INTO t VALUES (@a$b);\n",
		  "bad.sql:4: parameter '@a$b': a data member's name is letters, digits and _ "
		  "only; for others use json_extract(:data, ...)" },
		{ "-- setup\nCREATE TABLE t (a);\n-- on: Added\nINSERT INTO t VALUES (:data);\n"
		  "INSERT INTO nowhere VALUES (1);\n", "bad.sql:5: no such table: nowhere" },
		{ "-- setup\nCREATE TABLE t (a);\n-- on: Added\n-- nothing\n",
		  "bad.sql:3: the handler of 'Added' has no statement" },
		{ "-- setup\nCREATE TABLE t (a);\n-- query: q\nDELETE FROM t;\n",
		  "bad.sql:4: query 'q' writes; a query may only read" },
		{ "-- setup\nCREATE TABLE t (a);\n-- query: q\nSELECT 1;\nSELECT 2;\n",
		  "bad.sql:5: query 'q' has more than one statement" },
		{ "CREATE TABLE t (a);\n", "bad.sql:1: SQL before the first section" },
		{ "-- setup\nCREATE TABLE t (a;\n", "bad.sql:2: near \";\": syntax error" },
		{ "-- on:\nSELECT 1;\n", "bad.sql:1: '-- on:' names no event type" },
	};
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_file(pd, "bad.sql", bad[i][0]);
		char want[8192];
		ck_assert_int_eq(evs_projection_load(s, path, NULL, NULL), EVS_EINVAL);
		snprintf(want, sizeof(want), "%s/%s", pd, bad[i][1]);
		ck_assert_msg(strncmp(evs_errmsg(), want, strlen(want)) == 0, "case %zu: %s", i,
			      evs_errmsg());
		free(path);
		unlink(want);
		char db[4200];
		snprintf(db, sizeof(db), "%s/readmodels/bad.db", dir);
		unlink(db);
	}
	/* a NUL byte: refused, not read as the end of the file */
	char nulpath[4200];
	static const char with_nul[] = "-- setup\nCREATE TABLE IF NOT EXISTS t (a);\n\0DROP";
	snprintf(nulpath, sizeof(nulpath), "%s/nul.sql", pd);
	ck_assert_int_eq(tu_write_file(nulpath, with_nul, sizeof(with_nul) - 1), 0);
	ck_assert_int_eq(evs_projection_load(s, nulpath, NULL, NULL), EVS_EINVAL);
	char want[4300];
	snprintf(want, sizeof(want), "%s: a NUL byte at offset 43 (not a text file?)", nulpath);
	ck_assert_str_eq(evs_errmsg(), want);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
}
END_TEST

/* Killed at random moments while projecting in batches of 7, then run to
 * the end: every event counted exactly once. */
START_TEST(test_kill_mid_batch)
{
	char *dir = tu_mkdtemp(), *pd = tu_mkdtemp(), *path, *t, want[256];
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_store *s = tu_open(dir, 0, 0);
	evs_new_event ev[100];
	const int appends = 60;

	path = write_file(pd, "totals.sql", totals_sql);
	for (int i = 0; i < 100; i++)
		ev[i] = (evs_new_event){ "Added", "{\"k\":1}", NULL, NULL, 1 };
	for (int i = 0; i < appends; i++)
		ck_assert_int_eq(evs_append(s, "a-1", EVS_EXPECT_ANY, ev, 100, NULL), 0);
	evs_close(s);
	po.batch_size = 7;
	srand(7);
	for (int round = 0; round < 6; round++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			evs_store *cs = tu_open(dir, 0, 0);
			if (!cs || evs_projection_load(cs, path, &po, NULL) != 0 ||
			    evs_projections_start(cs) != 0)
				_exit(3);
			struct timespec nap = { 0, (long)(rand() % 40 + 1) * 1000000L };
			nanosleep(&nap, NULL);
			raise(SIGKILL);
			_exit(4);
		}
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d",
			      status);
	}
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_projection_load(s, path, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_at_head(s, "all", NULL);
	snprintf(want, sizeof(want), "[{\"stream\":\"a-1\",\"n\":%d,\"sum\":%d,\"cur\":null}]",
		 appends * 100, appends * 100);
	ck_assert_str_eq(t, want);
	free(t);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(pd);
	free(dir);
	free(pd);
	free(path);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("projection");
	TCase *tc = tcase_create("projection");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_build_and_query);
	tcase_add_test(tc, test_upcast_and_change);
	tcase_add_test(tc, test_every_type);
	tcase_add_test(tc, test_rebuild);
	tcase_add_test(tc, test_data_members);
	tcase_add_test(tc, test_rebuild_redo);
	tcase_add_test(tc, test_failure_policy);
	tcase_add_test(tc, test_crash_loop);
	tcase_add_test(tc, test_file_errors);
	tcase_add_test(tc, test_kill_mid_batch);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
