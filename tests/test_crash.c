/*
 * test_crash.c: kill -9 in the middle of appends.
 *
 * A child process appends with 8 threads (single-event and 100-event
 * appends, streams shared between threads and streams of their own,
 * durability sync, tiny segments so rolls happen) and records every
 * acknowledged event in a side file.  The parent kills it with SIGKILL at a
 * random moment, reopens the store and checks: every acknowledged event is
 * there with its stream, version, position, id and bytes; positions and
 * versions are dense; no event id appears twice; evs_verify is clean;
 * appending works again.  Then the next iteration appends on top.
 *
 * After each kill, `evstore verify` (the tool named by $EVSTORE) checks the
 * store read-only, as an operator would, before it is reopened (unless the
 * store's first child died before acknowledging anything: it may have died
 * creating the store, and a read-only open needs a whole index).
 *
 * The second test does the same with a projection running in the child:
 * after every kill its read model must equal, row for row, what the log up
 * to the read model's checkpoint gives (so no event was applied twice or
 * skipped), and at the end it catches up to the head.
 *
 * EVS_CRASH_ITERATIONS sets the number of kills per test (default 50, the
 * CI run; the long run is 2000); EVS_CRASH_LOOPS=plain|projection runs one
 * of the two loops.  A store takes EVS_CRASH_EPOCH kills
 * (default 10) before the next one starts empty, so that the checks after
 * each kill, which read the whole log, stay bounded in a long run.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evstore/projection.h"
#include "store.h"
#include "testutil.h"

#define THREADS 8
#define BIG 100 /* events in a multi-event append */

/* One acknowledged event, as the child records it. */
typedef struct ack {
	uint64_t position;
	uint64_t version;
	char stream[24];
	uint8_t id[16];
	uint32_t thread, seq, k, round;
} ack;

static int side_fd;
static pthread_mutex_t side_mu = PTHREAD_MUTEX_INITIALIZER;
static evs_store *child_store;
static uint32_t round_no;

/* A projection of the Crashed events: per stream, how many, the last
 * version and position, and the sum of their "k". */
static const char count_sql[] =
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS per_stream (stream TEXT PRIMARY KEY, n INTEGER NOT NULL,\n"
	"  last_version INTEGER NOT NULL, last_position INTEGER NOT NULL,\n"
	"  ksum INTEGER NOT NULL);\n"
	"-- on: Crashed\n"
	"INSERT INTO per_stream VALUES (:stream, 1, :version, :position,\n"
	"  json_extract(:data, '$.k'))\n"
	"  ON CONFLICT (stream) DO UPDATE SET n = n + 1,\n"
	"  last_version = excluded.last_version, last_position = excluded.last_position,\n"
	"  ksum = ksum + excluded.ksum;\n"
	"-- query: all\n"
	"SELECT stream, n, last_version, last_position, ksum FROM per_stream\n"
	"  ORDER BY stream;\n";

static void event_data(char *buf, size_t n, uint32_t round, uint32_t t, uint32_t seq,
		       uint32_t k)
{
	snprintf(buf, n, "{\"round\":%u,\"thread\":%u,\"seq\":%u,\"k\":%u,"
		 "\"pad\":\"abcdefghijklmnopqrstuvwxyz\"}", round, t, seq, k);
}

static void *child_thread(void *arg)
{
	uint32_t t = (uint32_t)(uintptr_t)arg;
	uint64_t own_version = 0;
	char own[24];
	static __thread char data[BIG][128];
	static __thread evs_new_event ev[BIG];
	static __thread uint8_t ids[BIG][16];
	static __thread ack a[BIG];

	snprintf(own, sizeof(own), "own%u-r%u", t, round_no);
	for (uint32_t seq = 0;; seq++) {
		uint32_t n = seq % 3 == 0 ? BIG : 1;
		bool shared = seq % 2 == 0;
		char stream[24];
		evs_append_result r;

		if (shared)
			snprintf(stream, sizeof(stream), "shared-%u", seq % 5);
		else
			snprintf(stream, sizeof(stream), "%s", own);
		evs__uuid_v7_seq(&ids[0][0], n, evs__now_us());
		for (uint32_t k = 0; k < n; k++) {
			event_data(data[k], sizeof(data[k]), round_no, t, seq, k);
			ev[k] = (evs_new_event){ "Crashed", data[k], NULL, ids[k], 0 };
		}
		int rc = evs_append(child_store, stream,
				    shared ? EVS_EXPECT_ANY : (int64_t)own_version, ev, n, &r);
		if (rc != 0) {
			fprintf(stderr, "child append failed: %s\n", evs_errmsg());
			_exit(3);
		}
		if (!shared)
			own_version = r.last_version;
		for (uint32_t k = 0; k < n; k++) {
			memset(&a[k], 0, sizeof(a[k]));
			a[k].position = r.first_position + k;
			a[k].version = r.first_version + k;
			snprintf(a[k].stream, sizeof(a[k].stream), "%s", stream);
			memcpy(a[k].id, ids[k], 16);
			a[k].thread = t;
			a[k].seq = seq;
			a[k].k = k;
			a[k].round = round_no;
		}
		pthread_mutex_lock(&side_mu);
		if (write(side_fd, a, n * sizeof(ack)) != (ssize_t)(n * sizeof(ack)))
			_exit(4);
		pthread_mutex_unlock(&side_mu);
	}
	return NULL;
}

static void child_main(const char *dir, const char *side, const char *projection)
{
	evs_options o = EVS_OPTIONS_INIT;
	pthread_t th[THREADS];

	o.create = 1;
	o.segment_size = 64 * 1024;
	if (evs_open(&child_store, dir, &o) != 0) {
		fprintf(stderr, "child open failed: %s\n", evs_errmsg());
		_exit(2);
	}
	if (projection) {
		evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
		po.batch_size = 50;
		if (evs_projection_load(child_store, projection, &po, NULL) != 0 ||
		    evs_projections_start(child_store) != 0) {
			fprintf(stderr, "child projection failed: %s\n", evs_errmsg());
			_exit(2);
		}
	}
	side_fd = open(side, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (side_fd < 0)
		_exit(2);
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, child_thread, (void *)t);
	for (;;)
		pause();
}

/* What the log holds at each position, for checking acknowledgements in
 * constant time each. */
typedef struct slot {
	uint8_t id[16];
	uint64_t version;
	uint64_t stream_hash, data_hash;
} slot;

/* Per stream, the projection's row as the log up to a position gives it. */
typedef struct expect {
	char stream[24];
	uint64_t n, last_version, last_position, ksum;
} expect;

typedef struct seen {
	evs__map ids;      /* id (as 36 chars) -> position, in .version */
	uint64_t next_position;
	evs__map versions; /* stream -> last version */
	int dup;
	char err[512];
	slot *slots;       /* [position - 1] */
	size_t nslots, cap;
	uint64_t project_to; /* fill `rows` with the Crashed events up to it */
	expect *rows;
	size_t nrows;
} seen;

static int check_event(const evs_event *ev, void *ctx)
{
	seen *s = ctx;
	char hex[37];
	evs__head *h;

	if (ev->position != s->next_position && !s->err[0])
		snprintf(s->err, sizeof(s->err), "position %llu after %llu",
			 (unsigned long long)ev->position,
			 (unsigned long long)s->next_position - 1);
	s->next_position = ev->position + 1;
	h = evs__map_find(&s->versions, ev->stream, ev->stream_len, true);
	if (ev->version != h->version + 1 && !s->err[0])
		snprintf(s->err, sizeof(s->err), "stream %s version %llu after %llu", ev->stream,
			 (unsigned long long)ev->version, (unsigned long long)h->version);
	h->version = ev->version;
	evs_uuid_format(hex, ev->id);
	h = evs__map_find(&s->ids, hex, 36, true);
	if (h->version)
		s->dup++;
	h->version = ev->position;

	if (s->nslots == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->slots = realloc(s->slots, s->cap * sizeof(slot));
		ck_assert_ptr_nonnull(s->slots);
	}
	slot *sl = &s->slots[s->nslots++];
	memcpy(sl->id, ev->id, 16);
	sl->version = ev->version;
	sl->stream_hash = tu_fnv(ev->stream, ev->stream_len);
	/* a Crashed event has no metadata: an empty one hashes in too */
	sl->data_hash = strcmp(ev->type, "Crashed") == 0 && ev->metadata_len == 0
			? tu_fnv(ev->data, ev->data_len) : 0;

	if (ev->position <= s->project_to && strcmp(ev->type, "Crashed") == 0) {
		expect *e = NULL;
		for (size_t i = 0; i < s->nrows; i++)
			if (strcmp(s->rows[i].stream, ev->stream) == 0)
				e = &s->rows[i];
		if (!e) {
			s->rows = realloc(s->rows, (s->nrows + 1) * sizeof(expect));
			ck_assert_ptr_nonnull(s->rows);
			e = &s->rows[s->nrows++];
			memset(e, 0, sizeof(*e));
			snprintf(e->stream, sizeof(e->stream), "%s", ev->stream);
		}
		json_t *d = json_loads(ev->data, 0, NULL);
		e->n++;
		e->last_version = ev->version;
		e->last_position = ev->position;
		e->ksum += (uint64_t)json_integer_value(json_object_get(d, "k"));
		json_decref(d);
	}
	return 0;
}

static int by_stream(const void *a, const void *b)
{
	return strcmp(((const expect *)a)->stream, ((const expect *)b)->stream);
}

static uint64_t head_of(evs_store *s)
{
	evs_stats st;

	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	return st.head_position;
}

/* The read model's rows against the log's up to its checkpoint; with
 * at_head, after the projection has caught up.  Loads it unless loaded. */
static void check_read_model(evs_store *s, const char *projection, int it, bool load,
			     bool at_head)
{
	seen sn;
	json_t *rows;
	uint64_t at = 0;
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;

	ck_assert_msg(!load || evs_projection_load(s, projection, NULL, NULL) == 0,
		      "kill %d: load: %s", it, evs_errmsg());
	if (at_head) {
		ck_assert_int_eq(evs_projections_start(s), 0);
		qo.min_position = head_of(s);
		qo.timeout_ms = 60000;
	}
	ck_assert_msg(evs_query(s, "count", "all", NULL, &qo, &rows, &at) == 0,
		      "kill %d: query: %s", it, evs_errmsg());
	ck_assert_uint_le(at, head_of(s));
	memset(&sn, 0, sizeof(sn));
	sn.next_position = 1;
	sn.project_to = at;
	ck_assert_int_eq(evs_read_all(s, 1, at, NULL, check_event, &sn), 0);
	qsort(sn.rows, sn.nrows, sizeof(expect), by_stream);
	ck_assert_msg(json_array_size(rows) == sn.nrows,
		      "kill %d: %zu rows at position %llu, the log gives %zu", it,
		      json_array_size(rows), (unsigned long long)at, sn.nrows);
	for (size_t i = 0; i < sn.nrows; i++) {
		json_t *r = json_array_get(rows, i);
		const expect *e = &sn.rows[i];
		ck_assert_str_eq(json_string_value(json_object_get(r, "stream")), e->stream);
		ck_assert_msg((uint64_t)json_integer_value(json_object_get(r, "n")) == e->n &&
			      (uint64_t)json_integer_value(json_object_get(r, "last_version")) ==
				      e->last_version &&
			      (uint64_t)json_integer_value(json_object_get(r, "last_position")) ==
				      e->last_position &&
			      (uint64_t)json_integer_value(json_object_get(r, "ksum")) == e->ksum,
			      "kill %d: read model at %llu has %s n=%lld, the log gives %llu", it,
			      (unsigned long long)at, e->stream,
			      (long long)json_integer_value(json_object_get(r, "n")),
			      (unsigned long long)e->n);
	}
	json_decref(rows);
	free(sn.rows);
	free(sn.slots);
	evs__map_free(&sn.ids);
	evs__map_free(&sn.versions);
	if (at_head)
		ck_assert_int_eq(evs_projections_stop(s), 0);
}

/* `evstore verify`, read-only; 1 if it ran, 0 if it did not: a store's
 * first child may die before it laid the store out (its LOCK file is
 * made last), and then there is no store to check.  One that died
 * setting up the index is checked: its log alone. */
static int run_verify(const char *store, int it, bool created)
{
	const char *tool = getenv("EVSTORE");
	char cmd[16384], out[4200];

	if (!tool || !*tool || !created)
		return 0;
	snprintf(out, sizeof(out), "%s.verify", store);
	snprintf(cmd, sizeof(cmd), "'%s' verify --quiet '%s' >'%s' 2>&1", tool, store, out);
	int vs = system(cmd);
	if (!WIFEXITED(vs) || WEXITSTATUS(vs) != 0) {
		size_t n;
		char *said = tu_read_file(out, &n);
		ck_abort_msg("kill %d: evstore verify exited %d: %s", it, WEXITSTATUS(vs),
			     said ? said : "");
	}
	unlink(out);
	return 1;
}

static void kill_loop(bool with_projection)
{
	char *dir = tu_mkdtemp(), *store = NULL, *side = NULL, *projection;
	const char *env = getenv("EVS_CRASH_ITERATIONS");
	const char *env_epoch = getenv("EVS_CRASH_EPOCH");
	int iterations = env ? atoi(env) : 50;
	int epoch = env_epoch && atoi(env_epoch) > 0 ? atoi(env_epoch) : 10;
	uint64_t total_checked = 0, most = 0;
	int verified = 0, stores = 0;

	ck_assert_int_ge(asprintf(&projection, "%s/count.sql", dir), 0);
	ck_assert_int_eq(tu_write_file(projection, count_sql, strlen(count_sql)), 0);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	for (int it = 0; it < iterations; it++) {
		if (it % epoch == 0) {
			if (store)
				tu_rmdir(store);
			free(store);
			free(side);
			ck_assert_int_ge(asprintf(&store, "%s/store%d", dir, stores), 0);
			ck_assert_int_ge(asprintf(&side, "%s/acks%d", dir, stores), 0);
			unlink(side);
			stores++;
		}
		round_no = (uint32_t)it;
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			child_main(store, side, with_projection ? projection : NULL);
		/* let it run 30-250 ms, then kill it mid-flight */
		struct timespec ts = { 0, (30 + rand() % 220) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			      "child exited by itself (status %d)", status);
		/* A kill can cut the child's write of its acks short (the
		 * kernel stops a write to a file between pages for a fatal
		 * signal): drop a torn last record, or the next round's acks
		 * would be read out of step. */
		struct stat sst;
		if (stat(side, &sst) == 0 && sst.st_size % (off_t)sizeof(ack) != 0)
			ck_assert_int_eq(truncate(side, sst.st_size - sst.st_size % (off_t)sizeof(ack)),
					 0);

		/* The operator's check, before any writer has recovered the
		 * store: read-only, it must find the acknowledged log clean. */
		char lockfile[4200];
		snprintf(lockfile, sizeof(lockfile), "%s/LOCK", store);
		verified += run_verify(store, it, access(lockfile, F_OK) == 0);

		evs_options o = EVS_OPTIONS_INIT;
		evs_store *s = NULL;
		o.segment_size = 64 * 1024;
		/* a first child killed before it made the directory leaves none */
		o.create = it % epoch == 0;
		ck_assert_msg(evs_open(&s, store, &o) == 0, "reopen after kill %d: %s", it,
			      evs_errmsg());
		ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);

		/* dense positions and versions, no duplicate id */
		seen sn;
		memset(&sn, 0, sizeof(sn));
		sn.next_position = 1;
		ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, check_event, &sn), 0);
		ck_assert_msg(!sn.err[0], "after kill %d: %s", it, sn.err);
		ck_assert_int_eq(sn.dup, 0);

		/* every acknowledged event is there, as acknowledged */
		size_t size;
		char *acks = tu_read_file(side, &size);
		size_t n = acks ? size / sizeof(ack) : 0;
		for (size_t i = 0; i < n; i++) {
			const ack *a = (const ack *)acks + i;
			char data[128];
			event_data(data, sizeof(data), a->round, a->thread, a->seq, a->k);
			const slot *sl = a->position >= 1 && a->position <= sn.nslots
					 ? &sn.slots[a->position - 1] : NULL;
			ck_assert_msg(sl && memcmp(sl->id, a->id, 16) == 0 &&
				      sl->version == a->version &&
				      sl->stream_hash == tu_fnv(a->stream, strlen(a->stream)) &&
				      sl->data_hash == tu_fnv(data, strlen(data)),
				      "kill %d: acknowledged event %s@%llu (position %llu) lost",
				      it, a->stream, (unsigned long long)a->version,
				      (unsigned long long)a->position);
		}
		total_checked += n;
		if (sn.nslots > most)
			most = sn.nslots;
		free(acks);
		free(sn.slots);
		evs__map_free(&sn.ids);
		evs__map_free(&sn.versions);

		if (with_projection)
			check_read_model(s, projection, it, true, false);

		/* and appending works */
		evs_new_event ev = { "AfterCrash", "{}", NULL, NULL, 0 };
		evs_append_result r;
		ck_assert_int_eq(evs_append(s, "after-crash", EVS_EXPECT_ANY,
					    &ev, 1, &r), 0);
		ck_assert_uint_eq(r.first_position, sn.next_position);
		if (with_projection && (it + 1) % epoch == 0)
			check_read_model(s, projection, it, false, true);
		evs_close(s);
		/* the acks of the event appended here are not in the side file:
		 * the next child's positions simply follow */
	}
	if (with_projection && iterations % epoch != 0) {
		evs_store *s = tu_open(store, 64 * 1024, 0);
		check_read_model(s, projection, iterations - 1, true, true);
		evs_close(s);
	}
	ck_assert_uint_gt(total_checked, 0);
	printf("crash loop%s: %d kills over %d stores, %llu acknowledged events checked, "
	       "largest store %llu events, %d evstore verify runs\n",
	       with_projection ? " with a projection" : "", iterations, stores,
	       (unsigned long long)total_checked, (unsigned long long)most, verified);
	free(store);
	free(side);
	free(projection);
	tu_rmdir(dir);
	free(dir);
}

/* EVS_CRASH_LOOPS=plain or projection runs one loop alone (long runs). */
static bool loop_wanted(const char *which)
{
	const char *env = getenv("EVS_CRASH_LOOPS");

	return !env || !*env || strcmp(env, which) == 0;
}

START_TEST(test_kill9_loop)
{
	if (loop_wanted("plain"))
		kill_loop(false);
}
END_TEST

START_TEST(test_kill9_projection)
{
	if (loop_wanted("projection"))
		kill_loop(true);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *su = suite_create("crash");
	TCase *tc = tcase_create("kill9");

	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, test_kill9_loop);
	tcase_add_test(tc, test_kill9_projection);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tu_run(crash_suite());
}
