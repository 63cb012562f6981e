/*
 * test_oom.c: the out-of-memory sweep.  One allocator (evs_set_allocator)
 * serves the library, SQLite and jansson; it fails the Nth allocation, for
 * N = 1, 2, ... through each step of a workload (open, append, read, a
 * command, a projection batch and a query), until the step runs without
 * reaching N.  Each failure must give EVS_ENOMEM (or, where a background
 * thread's allocation failed, the store's failure), no crash, no leak (the
 * allocator's own count of bytes returns to where it was), and a store
 * that reopens with exactly the acknowledged events.
 *
 * EVS_OOM_STRIDE=K tries every Kth N only: the plain build's test runs
 * every N (K = 1), an AddressSanitizer build every 5th (tests/meson.build).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- the allocator ---- */

#define HDR 16

static atomic_long n_allocs;    /* allocations since armed */
static atomic_long fail_at;     /* 0: never */
static atomic_long n_failed;
static atomic_long live_bytes;

static void *t_malloc(size_t n, void *ctx)
{
	long k = atomic_fetch_add(&n_allocs, 1) + 1;
	unsigned char *p;

	(void)ctx;
	if (atomic_load(&fail_at) == k) {
		atomic_fetch_add(&n_failed, 1);
		return NULL;
	}
	if (!(p = malloc(n + HDR)))
		return NULL;
	memcpy(p, &n, sizeof(n));
	atomic_fetch_add(&live_bytes, (long)n);
	return p + HDR;
}

static void t_free(void *p, void *ctx)
{
	size_t n;

	(void)ctx;
	if (!p)
		return;
	memcpy(&n, (unsigned char *)p - HDR, sizeof(n));
	atomic_fetch_sub(&live_bytes, (long)n);
	free((unsigned char *)p - HDR);
}

static void *t_realloc(void *p, size_t n, void *ctx)
{
	long k;
	size_t old = 0;
	unsigned char *q;

	if (!p)
		return t_malloc(n, ctx);
	k = atomic_fetch_add(&n_allocs, 1) + 1;
	if (atomic_load(&fail_at) == k) {
		atomic_fetch_add(&n_failed, 1);
		return NULL;
	}
	memcpy(&old, (unsigned char *)p - HDR, sizeof(old));
	if (!(q = realloc((unsigned char *)p - HDR, n + HDR)))
		return NULL;
	memcpy(q, &n, sizeof(n));
	atomic_fetch_add(&live_bytes, (long)n - (long)old);
	return q + HDR;
}

static void arm(long n)
{
	atomic_store(&n_allocs, 0);
	atomic_store(&n_failed, 0);
	atomic_store(&fail_at, n);
}

static void disarm(void)
{
	atomic_store(&fail_at, 0);
}

/* ---- the workload ---- */

static json_t *initial(void *ctx)
{
	(void)ctx;
	return json_pack("{s:i}", "n", 0);
}

static json_t *evolve(void *ctx, json_t *state, const evs_event *ev, const json_t *data)
{
	(void)ctx;
	(void)ev;
	(void)data;
	json_object_set_new(state, "n", json_integer(json_integer_value(json_object_get(state,
											"n")) + 1));
	return state;
}

static int decide(void *ctx, const json_t *state, const json_t *cmd, evs_decision *d)
{
	json_t *data = json_pack("{s:I}", "after",
				 (json_int_t)json_integer_value(json_object_get(state, "n")));

	(void)ctx;
	(void)cmd;
	if (!data)
		return EVS_ENOMEM;
	return evs_decision_emit(d, "Counted", 1, data);
}

static const char projection_sql[] =
	"-- projection: counts\n"
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL);\n"
	"-- on: *\n"
	"INSERT INTO counts VALUES (:stream, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1;\n"
	"-- query: one\n"
	"SELECT stream, n FROM counts WHERE stream = :stream;\n";

/* Small segments: a new store zero-fills its first one and a spare. */
#define SEGMENT (64u * 1024)

enum step { S_OPEN, S_APPEND, S_READ, S_HANDLE, S_PROJECT, S__N };
static const char *const step_name[] = { "open", "append", "read", "handle", "project" };

typedef struct run {
	char *dir, *pd, *proj_path;
	evs_store *s;
	uint64_t acked;         /* events acknowledged */
} run;

static int count_cb(const evs_event *ev, void *ctx)
{
	(void)ev;
	(*(uint64_t *)ctx)++;
	return 0;
}

/* Opens a store with 4 events in it (unarmed), for the steps after open. */
static void setup(run *r)
{
	evs_new_event ev[4];

	r->dir = tu_mkdtemp();
	for (int i = 0; i < 4; i++)
		ev[i] = (evs_new_event){ "Noted", "{\"i\":1}", NULL, NULL, 1 };
	r->s = tu_open(r->dir, SEGMENT, 0);
	ck_assert_int_eq(evs_append(r->s, "order-1", EVS_EXPECT_ANY, ev, 4, NULL), 0);
	r->acked = 4;
}

/* Runs `step` once (armed by the caller); the error, 0 when it worked. */
static int run_step(run *r, enum step step)
{
	evs_new_event ev[3];
	evs_options o = EVS_OPTIONS_INIT;
	evs_decider d = { EVS_DECIDER_VERSION, "order", 1, NULL, initial, evolve, decide, 0 };
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	json_t *cmd, *rows = NULL;
	uint64_t n = 0;
	int rc;

	switch (step) {
	case S_OPEN:
		o.create = 1;
		o.durability = EVS_DURABILITY_NONE;
		o.segment_size = SEGMENT;
		rc = evs_open(&r->s, r->dir, &o);
		if (rc)
			r->s = NULL;
		return rc;
	case S_APPEND:
		for (int i = 0; i < 3; i++)
			ev[i] = (evs_new_event){ "Noted", "{\"i\":2}", NULL, NULL, 1 };
		rc = evs_append(r->s, "order-2", EVS_EXPECT_NO_STREAM, ev, 3, NULL);
		if (!rc)
			r->acked += 3;
		return rc;
	case S_READ:
		rc = evs_read_stream(r->s, "order-1", 1, 0, EVS_FORWARD, count_cb, &n);
		if (!rc && n != 4)
			ck_abort_msg("read %llu events, not 4", (unsigned long long)n);
		if (!rc)
			rc = evs_read_all(r->s, 1, 0, NULL, count_cb, &n);
		return rc;
	case S_HANDLE:
		cmd = json_pack("{s:s}", "do", "count");
		if (!cmd)
			return EVS_ENOMEM;
		rc = evs_handle(r->s, &d, "order-1", cmd, NULL, NULL);
		json_decref(cmd);
		if (!rc)
			r->acked += 1;
		return rc;
	case S_PROJECT:
		rc = evs_projection_load(r->s, r->proj_path, NULL, NULL);
		if (!rc)
			rc = evs_projections_start(r->s);
		qo.min_position = 4;
		qo.timeout_ms = 2000;
		if (!rc) {
			json_t *p = json_pack("{s:s}", "stream", "order-1");
			rc = p ? evs_query(r->s, "counts", "one", p, &qo, &rows, NULL) : EVS_ENOMEM;
			json_decref(p);
		}
		if (rc == EVS_ETIMEOUT) {
			/* the worker stopped: stopping says why */
			int src = evs_projections_stop(r->s);
			if (src)
				rc = src;
		}
		if (!rc) {
			char *t = json_dumps(rows, JSON_COMPACT);
			int same = t && strcmp(t, "[{\"stream\":\"order-1\",\"n\":4}]") == 0;
			json_decref(rows);
			if (!t)
				return EVS_ENOMEM;
			if (!same)
				ck_abort_msg("query gave %s", t);
			json_free_t jfree;
			json_get_alloc_funcs(NULL, &jfree);
			jfree(t);
		}
		if (!rc)
			rc = evs_projections_stop(r->s);
		return rc;
	default:
		return 0;
	}
}

/* After a step (failed or not): close, reopen unarmed, check the events. */
static void check_after(run *r, enum step step, long at, int rc)
{
	uint64_t n = 0;

	evs_close(r->s);
	r->s = NULL;
	r->s = tu_open(r->dir, SEGMENT, 0);
	ck_assert_msg(evs_read_all(r->s, 1, 0, NULL, count_cb, &n) == 0, "%s N=%ld: reread: %s",
		      step_name[step], at, evs_errmsg());
	/* every acknowledged event, and none that was refused */
	ck_assert_msg(n == r->acked, "%s N=%ld: %llu events after reopening, %llu acknowledged "
		      "(the step returned %s)", step_name[step], at, (unsigned long long)n,
		      (unsigned long long)r->acked, rc ? evs_errname(rc) : "0");
	evs_close(r->s);
	r->s = NULL;
}

static void sweep(enum step step)
{
	long stride = getenv("EVS_OOM_STRIDE") ? atol(getenv("EVS_OOM_STRIDE")) : 1;
	long from = getenv("EVS_OOM_FROM") ? atol(getenv("EVS_OOM_FROM")) : 1;
	long failures = 0, at;
	char *pd = tu_mkdtemp();
	char path[4200];

	snprintf(path, sizeof(path), "%s/counts.sql", pd);
	ck_assert_int_eq(tu_write_file(path, projection_sql, strlen(projection_sql)), 0);
	{
		/* once unarmed, so what SQLite and jansson set up once for the
		 * process is not counted as a leak */
		run w = { NULL, pd, path, NULL, 0 };
		setup(&w);
		ck_assert_int_eq(run_step(&w, step == S_OPEN ? S_READ : step), 0);
		check_after(&w, S_READ, 0, 0);
		tu_rmdir(w.dir);
		free(w.dir);
	}
	for (at = from > 0 ? from : 1;; at += stride > 0 ? stride : 1) {
		run r = { NULL, pd, path, NULL, 0 };
		long before;
		int rc;

		before = atomic_load(&live_bytes);
		if (step == S_OPEN)
			r.dir = tu_mkdtemp();
		else
			setup(&r);
		arm(at);
		rc = run_step(&r, step);
		long reached = atomic_load(&n_allocs), failed = atomic_load(&n_failed);
		disarm();
		if (!failed) {
			/* the step ran through without reaching N: done */
			ck_assert_msg(rc == 0, "%s N=%ld: %s (no allocation failed)", step_name[step],
				      at, evs_errmsg());
			check_after(&r, step, at, rc);
			tu_rmdir(r.dir);
			free(r.dir);
			printf("oom %s: %ld allocations, %ld failures injected, each handled\n",
			       step_name[step], reached, failures);
			break;
		}
		failures++;
		/* the test's decider cannot build its state without memory
		 * either: a callback's NULL is EVS_EINVAL, as documented */
		if (rc == EVS_EINVAL && step == S_HANDLE && strstr(evs_errmsg(), "returned NULL"))
			rc = EVS_ENOMEM;
		ck_assert_msg(rc == 0 || rc == EVS_ENOMEM || rc == EVS_EFAILED || rc == EVS_EIO,
			      "%s N=%ld: error %s (%s)", step_name[step], at, evs_errname(rc),
			      evs_errmsg());
		if (rc == EVS_EIO)
			ck_assert_msg(strstr(evs_errmsg(), "out of memory"), "%s N=%ld: EIO: %s",
				      step_name[step], at, evs_errmsg());
		check_after(&r, step, at, rc);
		/* everything allocated since is back */
		ck_assert_msg(atomic_load(&live_bytes) == before, "%s N=%ld: %ld bytes leaked",
			      step_name[step], at, atomic_load(&live_bytes) - before);
		tu_rmdir(r.dir);
		free(r.dir);
	}
	tu_rmdir(pd);
	free(pd);
}

START_TEST(test_oom_open)
{
	sweep(S_OPEN);
}
END_TEST

START_TEST(test_oom_append)
{
	sweep(S_APPEND);
}
END_TEST

START_TEST(test_oom_read)
{
	sweep(S_READ);
}
END_TEST

START_TEST(test_oom_handle)
{
	sweep(S_HANDLE);
}
END_TEST

START_TEST(test_oom_project)
{
	sweep(S_PROJECT);
}
END_TEST

int main(void)
{
	evs_allocator a = { t_malloc, t_realloc, t_free, NULL };
	Suite *su = suite_create("oom");
	const struct { const char *name; const TTest *test; } cases[] = {
		{ "open", test_oom_open }, { "append", test_oom_append },
		{ "read", test_oom_read }, { "handle", test_oom_handle },
		{ "project", test_oom_project },
	};

	if (evs_set_allocator(&a) != 0) {
		fprintf(stderr, "evs_set_allocator: %s\n", evs_errmsg());
		return 1;
	}
	/* a case a step, so CK_RUN_CASE=handle runs one sweep */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_set_timeout(tc, 600);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(su, tc);
	}
	return tu_run(su);
}
