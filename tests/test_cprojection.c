/*
 * test_cprojection.c: C projections, the worker limit, queries row by row,
 * ad-hoc read-only SQL, and rebuilds: swapped in while queries run, and
 * followed by a start that goes on from the rebuilt checkpoint.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "testutil.h"

/* The C projection of these tests: per stream, how many events and the
 * sum of data.k, tagged with the generation that wrote the row. */
typedef struct counter {
	atomic_int gen;
	atomic_int fail_k;      /* apply fails on data.k == this (0: never) */
	atomic_int calls;
	atomic_int *active, *max_active;
	atomic_int rollback_k;  /* apply rolls the transaction back on it */
	atomic_int rollback_rc; /* and then returns this */
} counter;

static const char counts_sql[] =
	"-- query: one\n"
	"SELECT stream, n, sum FROM counts WHERE stream = :stream;\n"
	"-- query: all\n"
	"SELECT stream, n, sum FROM counts ORDER BY stream;\n"
	"-- query: gens\n"
	"SELECT count(*) AS n, min(gen) AS lo, max(gen) AS hi, sum(n) AS events FROM counts;\n";

static int counts_setup(struct sqlite3 *db, void *ctx)
{
	(void)ctx;
	return sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, "
			    "n INTEGER NOT NULL, sum INTEGER NOT NULL, gen INTEGER NOT NULL)",
			    NULL, NULL, NULL);
}

static int counts_apply(struct sqlite3 *db, const evs_event *ev, void *ctx)
{
	counter *c = ctx;
	sqlite3_stmt *st;
	json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
	int k = (int)json_integer_value(json_object_get(d, "k")), rc;

	json_decref(d);
	atomic_fetch_add(&c->calls, 1);
	if (c->active) {
		int now = atomic_fetch_add(c->active, 1) + 1, seen = atomic_load(c->max_active);
		while (now > seen && !atomic_compare_exchange_weak(c->max_active, &seen, now))
			;
		struct timespec nap = { 0, 200000 };
		nanosleep(&nap, NULL);
		atomic_fetch_sub(c->active, 1);
	}
	if (k && k == atomic_load(&c->fail_k))
		return 7;
	if (k && k == atomic_load(&c->rollback_k)) {
		/* as SQLite itself may do on out of memory or a full disk */
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return atomic_load(&c->rollback_rc);
	}
	if (sqlite3_prepare_v2(db, "INSERT INTO counts (stream, n, sum, gen) VALUES (?1, 1, ?2, ?3) "
			       "ON CONFLICT (stream) DO UPDATE SET n = n + 1, "
			       "sum = sum + excluded.sum, gen = excluded.gen", -1, &st, NULL) !=
	    SQLITE_OK)
		return 1;
	sqlite3_bind_text(st, 1, ev->stream, (int)ev->stream_len, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, k);
	sqlite3_bind_int(st, 3, atomic_load(&c->gen));
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : 2;
	sqlite3_finalize(st);
	return rc;
}

static const char *const added_only[] = { "Added" };

static evs_projection_def counts_def(const char *name, counter *c)
{
	evs_projection_def d = { EVS_PROJECTION_DEF_VERSION, name, added_only, 1, counts_sql, 1,
				 counts_setup, counts_apply, c };
	return d;
}

static void add(evs_store *s, const char *stream, const char *type, int k)
{
	char data[64];
	evs_new_event ev = { type, data, NULL, NULL, 1 };

	snprintf(data, sizeof(data), "{\"k\":%d}", k);
	ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL), 0);
}

static uint64_t head_of(evs_store *s)
{
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	return st.head_position;
}

static char *rows_text(evs_store *s, const char *proj, const char *q, const char *params,
		       uint64_t min)
{
	evs_query_options o = EVS_QUERY_OPTIONS_INIT;
	json_t *p = params ? json_loads(params, 0, NULL) : NULL, *rows;
	uint64_t at;
	char *text;

	o.min_position = min;
	o.timeout_ms = 20000;
	ck_assert_msg(evs_query(s, proj, q, p, &o, &rows, &at) == 0, "%s", evs_errmsg());
	ck_assert_uint_ge(at, min);
	text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	json_decref(p);
	return text;
}

START_TEST(test_c_projection)
{
	char *dir = tu_mkdtemp(), *t;
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { 1, 0, 0, NULL, NULL, 0, 0 };
	evs_projection_def d = counts_def("counts", &c);
	evs_projection_status st;
	const char *name;

	add(s, "a-1", "Added", 2);
	add(s, "a-1", "Other", 100);
	add(s, "a-2", "Added", 5);
	ck_assert_msg(evs_projection_register(s, &d, NULL, &name) == 0, "%s", evs_errmsg());
	ck_assert_str_eq(name, "counts");
	ck_assert_int_eq(evs_projections_start(s), 0);
	add(s, "a-1", "Added", 3);
	t = rows_text(s, "counts", "all", NULL, head_of(s));
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":2,\"sum\":5},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":5}]");
	free(t);
	/* only the types it takes */
	ck_assert_int_eq(atomic_load(&c.calls), 3);
	ck_assert_int_eq(evs_projection_status_get(&st, s, "counts"), 0);
	ck_assert_uint_eq(st.checkpoint, 4);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	/* stopped: no rate */
	ck_assert_int_eq(evs_projection_status_get(&st, s, "counts"), 0);
	ck_assert_int_eq(st.running, 0);
	ck_assert(st.rate == 0);
	evs_close(s);

	/* exactly once across a restart */
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), 0);
	add(s, "a-2", "Added", 1);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_text(s, "counts", "one", "{\"stream\":\"a-2\"}", head_of(s));
	ck_assert_str_eq(t, "[{\"stream\":\"a-2\",\"n\":2,\"sum\":6}]");
	free(t);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);

	/* another definition_version: the read model is out of date */
	s = tu_open(dir, 0, 0);
	d.definition_version = 2;
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), 0);
	ck_assert_int_eq(evs_projection_status_get(&st, s, "counts"), 0);
	ck_assert_int_eq(st.out_of_date, 1);
	ck_assert_int_eq(evs_projections_start(s), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "built by another version"));
	evs_close(s);

	/* rebuild_if_changed: rebuilt from the log when started */
	s = tu_open(dir, 0, 0);
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	po.rebuild_if_changed = 1;
	c.gen = 2;
	ck_assert_int_eq(evs_projection_register(s, &d, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_text(s, "counts", "gens", NULL, head_of(s));
	ck_assert_str_eq(t, "[{\"n\":2,\"lo\":2,\"hi\":2,\"events\":4}]");
	free(t);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_c_projection_errors)
{
	char *dir = tu_mkdtemp(), *t;
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { 1, 0, 0, NULL, NULL, 0, 0 };
	evs_projection_def d = counts_def("counts", &c);
	static const char *const bad_types[] = { "Added", "no spaces" };
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	json_t *rows;

	/* bad definitions change nothing */
	d.version = 99;
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "definition version 99"));
	d = counts_def("counts", &c);
	d.apply = NULL;
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), EVS_EINVAL);
	d = counts_def("no/slash", &c);
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "must be letters"));
	d = counts_def("counts", &c);
	d.types = bad_types;
	d.ntypes = 2;
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "bad event type 'no spaces' in types[1]"));
	d = counts_def("counts", &c);
	d.sql = "-- query: q\nSELECT nope FROM nowhere;\n";
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "C projection counts:2:"));
	d = counts_def("counts", &c);
	d.sql = "-- projection: other\n-- query: q\nSELECT 1;\n";
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "names the projection 'other'"));
	ck_assert_int_eq(evs_query(s, "counts", "all", NULL, NULL, &rows, NULL), EVS_ENOTFOUND);

	/* a failing apply: retried, then parked, its changes undone */
	d = counts_def("counts", &c);
	po.park = 1;
	po.max_retries = 2;
	c.fail_k = 13;
	ck_assert_int_eq(evs_projection_register(s, &d, &po, NULL), 0);
	add(s, "a-1", "Added", 1);
	add(s, "a-1", "Added", 13);
	add(s, "a-2", "Added", 4);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_text(s, "counts", "all", NULL, head_of(s));
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":1},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":4}]");
	free(t);
	ck_assert_int_eq(atomic_load(&c.calls), 5);
	ck_assert_int_eq(evs_projection_parked(s, "counts", &rows), 0);
	t = json_dumps(rows, JSON_COMPACT);
	ck_assert_str_eq(t, "[{\"position\":2,\"stream\":\"a-1\",\"version\":2,\"type\":\"Added\","
			 "\"error\":\"projection 'counts': apply returned 7 on Added at stream "
			 "'a-1' version 2 (position 2)\",\"attempts\":3}]");
	json_decref(rows);
	ck_assert_int_eq(evs_projections_stop(s), 0);

	/* rebuilt with its own options: parked again, not failed */
	uint64_t pos;
	ck_assert_msg(evs_projection_rebuild_loaded(s, "counts", NULL, NULL, &pos) == 0, "%s",
		      evs_errmsg());
	ck_assert_uint_eq(pos, 3);
	ck_assert_int_eq(evs_projection_parked(s, "counts", &rows), 0);
	char *t2 = json_dumps(rows, JSON_COMPACT);
	ck_assert_str_eq(t2, t);
	free(t2);
	free(t);
	json_decref(rows);

	/* fixed: replayed */
	uint64_t done, still;
	c.fail_k = 0;
	ck_assert_int_eq(evs_projection_replay_parked(s, "counts", &done, &still), 0);
	ck_assert_uint_eq(done, 1);
	ck_assert_uint_eq(still, 0);
	t = rows_text(s, "counts", "one", "{\"stream\":\"a-1\"}", 0);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":2,\"sum\":14}]");
	free(t);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* At most max_workers projections apply at once. */
START_TEST(test_worker_limit)
{
	char *dir = tu_mkdtemp(), *t;
	evs_store *s = tu_open(dir, 0, 0);
	atomic_int active = 0, max_active = 0;
	counter c[4];
	char names[4][16];
	uint64_t head;

	for (int i = 0; i < 200; i++) {
		char stream[32];
		snprintf(stream, sizeof(stream), "a-%d", i % 10);
		add(s, stream, "Added", 1);
	}
	ck_assert_int_eq(evs_projections_set_workers(s, 1), 0);
	for (int i = 0; i < 4; i++) {
		evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
		c[i] = (counter){ 1, 0, 0, &active, &max_active, 0, 0 };
		snprintf(names[i], sizeof(names[i]), "counts%d", i);
		evs_projection_def d = counts_def(names[i], &c[i]);
		po.batch_size = 7;
		ck_assert_int_eq(evs_projection_register(s, &d, &po, NULL), 0);
	}
	ck_assert_int_eq(evs_projections_start(s), 0);
	for (int i = 0; i < 50; i++)
		add(s, "b-1", "Added", 1);
	head = head_of(s);
	for (int i = 0; i < 4; i++) {
		t = rows_text(s, names[i], "gens", NULL, head);
		ck_assert_str_eq(t, "[{\"n\":11,\"lo\":1,\"hi\":1,\"events\":250}]");
		free(t);
		ck_assert_int_eq(atomic_load(&c[i].calls), 250);
	}
	ck_assert_int_eq(atomic_load(&max_active), 1);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	ck_assert_int_eq(evs_projections_set_workers(NULL, 1), EVS_EINVAL);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static int take_two(const json_t *row, void *ctx)
{
	json_t *seen = ctx;

	json_array_append(seen, (json_t *)row);
	return json_array_size(seen) == 2;
}

START_TEST(test_query_each_and_sql)
{
	char *dir = tu_mkdtemp(), *t;
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { 1, 0, 0, NULL, NULL, 0, 0 };
	evs_projection_def d = counts_def("counts", &c);
	json_t *seen = json_array(), *rows, *params;
	uint64_t at;

	for (int i = 1; i <= 5; i++) {
		char stream[32];
		snprintf(stream, sizeof(stream), "a-%d", i);
		add(s, stream, "Added", i * 10);
	}
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	free(rows_text(s, "counts", "all", NULL, 5));

	/* row by row, stopped after two: no error, the position read */
	ck_assert_int_eq(evs_query_each(s, "counts", "all", NULL, NULL, take_two, seen, &at), 0);
	ck_assert_uint_eq(at, 5);
	t = json_dumps(seen, JSON_COMPACT);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":1,\"sum\":10},"
			 "{\"stream\":\"a-2\",\"n\":1,\"sum\":20}]");
	free(t);
	json_decref(seen);
	ck_assert_int_eq(evs_query_each(s, "counts", "nope", NULL, NULL, take_two, NULL, NULL),
			 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_query_each(s, "counts", "all", NULL, NULL, NULL, NULL, NULL),
			 EVS_EINVAL);

	/* ad-hoc SQL that reads, with parameters */
	params = json_pack("{s:i}", "min", 30);
	ck_assert_msg(evs_query_sql(s, "counts", "WITH big AS (SELECT * FROM counts WHERE sum >= "
				    ":min) SELECT stream, sum FROM big ORDER BY sum DESC; -- top",
				    params, NULL, &rows, &at) == 0, "%s", evs_errmsg());
	ck_assert_uint_eq(at, 5);
	t = json_dumps(rows, JSON_COMPACT);
	ck_assert_str_eq(t, "[{\"stream\":\"a-5\",\"sum\":50},{\"stream\":\"a-4\",\"sum\":40},"
			 "{\"stream\":\"a-3\",\"sum\":30}]");
	free(t);
	json_decref(rows);
	json_decref(params);

	/* and everything else refused, changing nothing */
	static const struct { const char *sql, *msg; } bad[] = {
		{ "INSERT INTO counts VALUES ('x', 1, 1, 1)", "not authorized" },
		{ "UPDATE counts SET n = 0", "not authorized" },
		{ "DELETE FROM counts", "not authorized" },
		{ "DROP TABLE counts", "not authorized" },
		{ "CREATE TABLE x (a)", "not authorized" },
		{ "CREATE TEMP VIEW v AS SELECT 1", "not authorized" },
		{ "ATTACH DATABASE ':memory:' AS other", "not authorized" },
		{ "PRAGMA query_only = 0", "not authorized" },
		{ "PRAGMA journal_mode", "not authorized" },
		{ "BEGIN", "not authorized" },
		{ "SELECT 1; DELETE FROM counts", "one statement only" },
		{ "SELECT fts3_tokenizer('simple')", "not authorized" },
		{ "SELECT load_extension('x')", "not authorized" },
		{ "", "no statement" },
		{ "-- nothing", "no statement" },
		{ "SELEC 1", "syntax error" },
		{ "SELECT * FROM nowhere", "no such table" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rows = NULL;
		ck_assert_msg(evs_query_sql(s, "counts", bad[i].sql, NULL, NULL, &rows, NULL) ==
			      EVS_EINVAL, "%s: accepted", bad[i].sql);
		ck_assert_msg(strstr(evs_errmsg(), bad[i].msg), "%s: %s", bad[i].sql, evs_errmsg());
		ck_assert_ptr_null(rows);
	}
	ck_assert_int_eq(evs_query_sql(s, "nope", "SELECT 1", NULL, NULL, &rows, NULL),
			 EVS_ENOTFOUND);
	/* a query that would never end is stopped at timeout_ms */
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	qo.timeout_ms = 100;
	ck_assert_int_eq(evs_query_sql(s, "counts", "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL "
				       "SELECT i + 1 FROM r) SELECT count(*) FROM r", NULL, &qo,
				       &rows, NULL), EVS_ETIMEOUT);
	ck_assert_str_eq(evs_errmsg(), "projection 'counts' ad-hoc query: stopped after 100 ms "
			 "(timeout_ms)");
	/* the JSON table functions read */
	ck_assert_msg(evs_query_sql(s, "counts", "SELECT value FROM json_each('[1,2]')", NULL,
				    NULL, &rows, NULL) == 0, "%s", evs_errmsg());
	t = json_dumps(rows, JSON_COMPACT);
	ck_assert_str_eq(t, "[{\"value\":1},{\"value\":2}]");
	free(t);
	json_decref(rows);
	ck_assert_int_eq(evs_query_sql(s, "counts", NULL, NULL, NULL, &rows, NULL), EVS_EINVAL);
	/* a blob comes as hex; text that is not UTF-8 is an error, not a row
	 * without that column */
	ck_assert_int_eq(evs_query_sql(s, "counts", "SELECT x'00ff10' AS b, x'' AS e", NULL, NULL,
				       &rows, NULL), 0);
	t = json_dumps(rows, JSON_COMPACT);
	ck_assert_str_eq(t, "[{\"b\":\"00ff10\",\"e\":\"\"}]");
	free(t);
	json_decref(rows);
	ck_assert_int_eq(evs_query_sql(s, "counts", "SELECT 1 AS a, CAST(x'c328' AS TEXT) AS t",
				       NULL, NULL, &rows, NULL), EVS_EINVAL);
	ck_assert_ptr_null(rows);
	ck_assert_str_eq(evs_errmsg(), "projection 'counts' ad-hoc query: column 't' holds text "
			 "that is not valid UTF-8");
	t = rows_text(s, "counts", "gens", NULL, 5);
	ck_assert_str_eq(t, "[{\"n\":5,\"lo\":1,\"hi\":1,\"events\":5}]");
	free(t);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* The latency test's apply: the second event takes 60 ms, the third
 * waits (up to 10 s) until the test has seen the checkpoint reach 2. */
typedef struct slow {
	atomic_int calls, seen;
} slow;

static int slow_apply(struct sqlite3 *db, const evs_event *ev, void *ctx)
{
	slow *sl = ctx;
	int n = atomic_fetch_add(&sl->calls, 1) + 1;

	(void)db;
	(void)ev;
	if (n == 2) {
		struct timespec nap = { 0, 60000000L };
		nanosleep(&nap, NULL);
	} else if (n == 3) {
		for (int i = 0; i < 10000 && !atomic_load(&sl->seen); i++) {
			struct timespec nap = { 0, 1000000L };
			nanosleep(&nap, NULL);
		}
	}
	return 0;
}

/* A batch commits once its transaction is max_latency_ms old, before
 * batch_size events and before the worker caught up. */
START_TEST(test_max_latency)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	slow sl = { 0, 0 };
	evs_projection_def d = { EVS_PROJECTION_DEF_VERSION, "slow", NULL, 0, NULL, 1, NULL,
				 slow_apply, &sl };
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_projection_status st;
	uint64_t seen_at = 0;
	int calls_then = 0;

	for (int i = 0; i < 5; i++)
		add(s, "a-1", "Added", 1);
	po.batch_size = 1000;
	po.max_latency_ms = 50;
	ck_assert_int_eq(evs_projection_register(s, &d, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	for (int i = 0; i < 10000 && !seen_at; i++) {
		ck_assert_int_eq(evs_projection_status_get(&st, s, "slow"), 0);
		if (st.checkpoint > 0) {
			seen_at = st.checkpoint;
			calls_then = atomic_load(&sl.calls);
			atomic_store(&sl.seen, 1);
		}
		struct timespec nap = { 0, 1000000L };
		nanosleep(&nap, NULL);
	}
	/* committed after the second event, before the third was done
	 * (it waits for this), so long before the worker caught up */
	ck_assert_uint_eq(seen_at, 2);
	ck_assert_int_le(calls_then, 3);
	while (atomic_load(&sl.calls) < 5) {
		struct timespec nap = { 0, 1000000L };
		nanosleep(&nap, NULL);
	}
	ck_assert_int_eq(evs_projections_stop(s), 0);
	ck_assert_int_eq(evs_projection_status_get(&st, s, "slow"), 0);
	ck_assert_uint_eq(st.checkpoint, 5);
	evs_close(s);

	/* a version 1 options struct is still taken (it has no latency) */
	struct { int version; uint32_t batch_size; int rebuild; uint32_t retries; int park; } v1 =
		{ 1, 10, 0, 0, 0 };
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_projection_register(s, &d, (const evs_projection_options *)&v1,
						 NULL), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static void wait_failed(evs_store *s, const char *name, evs_projection_status *st)
{
	for (int spin = 0; spin < 20000; spin++) {
		ck_assert_int_eq(evs_projection_status_get(st, s, name), 0);
		if (st->failed)
			return;
		struct timespec nap = { 0, 1000000L };
		nanosleep(&nap, NULL);
	}
	ck_abort_msg("projection %s did not fail", name);
}

/*
 * SQLite may roll a whole transaction back on an error (out of memory, a
 * full disk), undoing the batch's events before the failing one.  The
 * worker must stop then: a retry or a parking in a new transaction went on
 * without them (found by the out-of-memory sweep).  Restarted, it applies
 * every event exactly once.  _i: the apply fails after the rollback (0) or
 * claims success (1), which is refused too.
 */
START_TEST(test_batch_rolled_back)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { 1, 0, 0, NULL, NULL, 0, 0 };
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	evs_projection_status st;
	json_t *rows = NULL;

	for (int k = 1; k <= 20; k++)
		add(s, "a-1", "Added", k);
	atomic_store(&c.rollback_k, 12);
	atomic_store(&c.rollback_rc, _i ? 0 : 9);
	po.batch_size = 100;
	po.park = 1;
	po.max_retries = 2;
	evs_projection_def d = counts_def("counts", &c);
	ck_assert_int_eq(evs_projection_register(s, &d, &po, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	wait_failed(s, "counts", &st);
	ck_assert_int_eq(st.failed, EVS_EINVAL);
	ck_assert_uint_eq(st.parked, 0);
	ck_assert_int_eq(evs_projections_stop(s), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), _i ? "the handler of 'Added' ended the batch's "
			     "transaction at stream 'a-1' version 12" : "apply returned 9"),
		      "%s", evs_errmsg());
	atomic_store(&c.rollback_k, 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	char *t = rows_text(s, "counts", "all", NULL, 20);
	ck_assert_str_eq(t, "[{\"stream\":\"a-1\",\"n\":20,\"sum\":210}]");
	free(t);
	ck_assert_int_eq(evs_projection_parked(s, "counts", &rows), 0);
	ck_assert_int_eq(json_array_size(rows), 0);
	json_decref(rows);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A read error under the workers (a damaged batch of an older segment,
 * which open does not re-read): each fails with it and gives its slot
 * back, and stopping returns it instead of hanging. */
START_TEST(test_worker_read_error)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 16384, 0);
	counter c[2];
	evs_projection_status st;
	char names[2][16];

	for (int i = 0; i < 600; i++)
		add(s, "a-1", "Added", 1);
	evs_close(s);
	ck_assert_uint_gt(tu_segment_count(dir), 2);
	/* a byte in the middle of the second segment's batches */
	tu_damage_segment(dir, 1, 4000);
	s = tu_open(dir, 16384, 0);
	ck_assert_int_eq(evs_projections_set_workers(s, 1), 0);
	for (int i = 0; i < 2; i++) {
		c[i] = (counter){ 1, 0, 0, NULL, NULL, 0, 0 };
		snprintf(names[i], sizeof(names[i]), "counts%d", i);
		evs_projection_def d = counts_def(names[i], &c[i]);
		ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), 0);
	}
	ck_assert_int_eq(evs_projections_start(s), 0);
	for (int i = 0; i < 2; i++) {
		for (int spin = 0; spin < 20000; spin++) {
			ck_assert_int_eq(evs_projection_status_get(&st, s, names[i]), 0);
			if (st.failed)
				break;
			struct timespec nap = { 0, 1000000L };
			nanosleep(&nap, NULL);
		}
		ck_assert_int_eq(st.failed, EVS_ECORRUPT);
		ck_assert_int_eq(st.running, 0);
	}
	/* a query waiting for a position the stopped worker will never
	 * reach gets its error at once, not a timeout a minute later */
	{
		evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
		json_t *rows = NULL;
		qo.min_position = 600;
		qo.timeout_ms = 60000;
		ck_assert_int_eq(evs_query(s, "counts0", "all", NULL, &qo, &rows, NULL),
				 EVS_ECORRUPT);
		ck_assert_ptr_null(rows);
		ck_assert_msg(strstr(evs_errmsg(), "projection 'counts0' is at position ") ==
			      evs_errmsg() && strstr(evs_errmsg(), ", not yet 600, and its worker "
						    "stopped: projection 'counts0': "), "%s",
			      evs_errmsg());
	}
	ck_assert_int_eq(evs_projections_stop(s), EVS_ECORRUPT);
	ck_assert_msg(strstr(evs_errmsg(), "projection 'counts0': ") == evs_errmsg() &&
		      strstr(evs_errmsg(), ".seg offset "), "%s", evs_errmsg());
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

typedef struct querier {
	evs_store *s;
	atomic_int *stop;
	int queries, old, bad;
	atomic_int fresh;
	char bad_text[256];
} querier;

/* Queries the read model again and again: every answer must be all of
 * one generation, with every event. */
static void *query_loop(void *arg)
{
	querier *q = arg;

	while (!atomic_load(q->stop)) {
		json_t *rows;
		if (evs_query(q->s, "counts", "gens", NULL, NULL, &rows, NULL) != 0) {
			snprintf(q->bad_text, sizeof(q->bad_text), "%s", evs_errmsg());
			q->bad++;
			break;
		}
		json_t *r = json_array_get(rows, 0);
		json_int_t lo = json_integer_value(json_object_get(r, "lo"));
		json_int_t hi = json_integer_value(json_object_get(r, "hi"));
		json_int_t ev = json_integer_value(json_object_get(r, "events"));
		json_int_t n = json_integer_value(json_object_get(r, "n"));
		if (lo != hi || ev != 3070 || n != 100) {
			char *t = json_dumps(rows, JSON_COMPACT);
			snprintf(q->bad_text, sizeof(q->bad_text), "%s", t);
			free(t);
			q->bad++;
		} else if (lo == 1) {
			q->old++;
		} else {
			atomic_fetch_add(&q->fresh, 1);
		}
		q->queries++;
		json_decref(rows);
	}
	return NULL;
}

START_TEST(test_rebuild_swap_while_querying)
{
	char *dir = tu_mkdtemp(), *t;
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { 1, 0, 0, NULL, NULL, 0, 0 };
	evs_projection_def d = counts_def("counts", &c);
	evs_new_event evs[100];
	atomic_int stop = 0;
	querier q[2];
	pthread_t th[2];
	uint64_t pos;

	for (int i = 0; i < 100; i++)
		evs[i] = (evs_new_event){ "Added", "{\"k\":1}", NULL, NULL, 1 };
	for (int i = 0; i < 3000; i += 100) {
		char stream[32];
		snprintf(stream, sizeof(stream), "a-%d", (i / 100) % 100);
		ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, evs, 100, NULL), 0);
	}
	for (int i = 0; i < 70; i++) {
		char stream[32];
		snprintf(stream, sizeof(stream), "a-%d", 30 + i);
		ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, evs, 1, NULL), 0);
	}
	ck_assert_int_eq(evs_projection_register(s, &d, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	free(rows_text(s, "counts", "gens", NULL, head_of(s)));
	ck_assert_int_eq(evs_projections_stop(s), 0);

	for (int i = 0; i < 2; i++) {
		q[i] = (querier){ s, &stop, 0, 0, 0, 0, "" };
		ck_assert_int_eq(pthread_create(&th[i], NULL, query_loop, &q[i]), 0);
	}
	c.gen = 2;
	ck_assert_msg(evs_projection_rebuild_loaded(s, "counts", NULL, NULL, &pos) == 0, "%s",
		      evs_errmsg());
	ck_assert_uint_eq(pos, 3070);
	/* let the queriers see the new one too */
	for (int spin = 0; spin < 2000 && (!atomic_load(&q[0].fresh) || !atomic_load(&q[1].fresh));
	     spin++) {
		struct timespec nap = { 0, 1000000 };
		nanosleep(&nap, NULL);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(q[i].bad == 0, "querier %d: %d bad answers: %s", i, q[i].bad,
			      q[i].bad_text);
		ck_assert_int_gt(atomic_load(&q[i].fresh), 0);
		ck_assert_int_eq(q[i].queries, q[i].old + atomic_load(&q[i].fresh));
	}
	t = rows_text(s, "counts", "gens", NULL, 0);
	ck_assert_str_eq(t, "[{\"n\":100,\"lo\":2,\"hi\":2,\"events\":3070}]");
	free(t);

	/* started after the rebuild, the worker goes on from its checkpoint:
	 * nothing applied twice */
	add(s, "a-1", "Added", 1);
	ck_assert_int_eq(evs_projections_start(s), 0);
	t = rows_text(s, "counts", "gens", NULL, head_of(s));
	ck_assert_str_eq(t, "[{\"n\":100,\"lo\":2,\"hi\":2,\"events\":3071}]");
	free(t);
	/* and a running projection cannot be rebuilt */
	ck_assert_int_eq(evs_projection_rebuild_loaded(s, "counts", NULL, NULL, &pos), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "is running in this process"));
	ck_assert_int_eq(evs_projection_rebuild_loaded(s, "nope", NULL, NULL, &pos),
			 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("cprojection");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_c_projection);
	tcase_add_test(tc, test_c_projection_errors);
	tcase_add_test(tc, test_worker_limit);
	tcase_add_test(tc, test_query_each_and_sql);
	tcase_add_test(tc, test_max_latency);
	tcase_add_test(tc, test_worker_read_error);
	tcase_add_loop_test(tc, test_batch_rolled_back, 0, 2);
	tcase_add_test(tc, test_rebuild_swap_while_querying);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
