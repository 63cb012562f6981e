/*
 * test_store.c: the contract of include/evstore/store.h, through the public
 * API (internal.h is used only for the on-disk sizes behind an exact
 * evs_stats.log_bytes).
 *
 *  open        create, reopen, refusals (missing, not a store, a file, bad
 *              options), the writer lock, read-only handles beside a writer;
 *  roundtrip   every field of an event read back; stream reads forward and
 *              backward with from and limit; $all reads with filters;
 *  expected    every expected-version rule, with the conflict's
 *              current_version and message;
 *  idempotency same ids again (also across a reopen) and every way of
 *              reusing an id that must be refused;
 *  validation  each input rule, each checked to leave the store unchanged;
 *  segments    many small segments written, read back (also by a reader
 *              opened before the rolls), reopened, verified; a reopen with
 *              another segment_size keeps every event;
 *  threads     8 writers sharing a handle, durability none and sync, with a
 *              reader checking every $all read is dense; an expected-version
 *              race;
 *  info        listings, stream info, stats, categories, UUIDs, error names;
 *  rebuild     index.db deleted and rebuilt from the log.
 *
 * Each test gets a fresh store directory from a checked fixture.  Worker
 * threads never call ck_assert (check's failure path is not thread-safe):
 * they record what happened and the main thread asserts on it.
 */
#include <check.h>
#include <dirent.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The on-disk sizes (EVS__BATCH_HDR, evs__rec_size), for exact log_bytes. */
#include "internal.h"
#include "store.h"
#include "testutil.h"

/* Segments of 1 MiB rather than the default 64: each store writes its first
 * segment whole, and the suite makes many stores. */
#define TEST_SEG (1u << 20)

static char *g_dir;      /* this test's store directory */
static evs_store *g_s;   /* its handle, closed by the teardown */

/* ---- helpers ---- */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *path_in(const char *d, const char *name)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", d, name), 0);
	return p;
}

static int is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* A string of n copies of c (a new string to free). */
static char *repeat(char c, size_t n)
{
	char *p = malloc(n + 1);

	ck_assert_ptr_nonnull(p);
	memset(p, c, n);
	p[n] = '\0';
	return p;
}

/* A JSON object of exactly `len` bytes: {"p":"xxx..."} (len >= 8). */
static char *json_of_size(size_t len)
{
	char *p = malloc(len + 1);

	ck_assert_uint_ge(len, 8);
	ck_assert_ptr_nonnull(p);
	memcpy(p, "{\"p\":\"", 6);
	memset(p + 6, 'x', len - 8);
	memcpy(p + len - 2, "\"}", 3);
	ck_assert_uint_eq(strlen(p), len);
	return p;
}

static evs_store *open_with(const char *dir, uint64_t segment_size, uint32_t max_event)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	int rc;

	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	if (segment_size)
		o.segment_size = segment_size;
	if (max_event)
		o.max_event_size = max_event;
	rc = evs_open(&s, dir, &o);
	ck_assert_msg(rc == 0, "open %s: %s: %s", dir, evs_errname(rc), evs_errmsg());
	ck_assert_ptr_nonnull(s);
	return s;
}

static evs_store *open_read_only(const char *dir)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	int rc;

	o.read_only = 1;
	rc = evs_open(&s, dir, &o);
	ck_assert_msg(rc == 0, "open read-only %s: %s: %s", dir, evs_errname(rc),
		      evs_errmsg());
	return s;
}

static evs_new_event mkev(const char *type, const char *data)
{
	evs_new_event e = { type, data, NULL, NULL, 0 };

	return e;
}

/* Appends one event and insists on success. */
static evs_append_result add1(evs_store *s, const char *stream, const char *type,
			      const char *data)
{
	evs_new_event e = mkev(type, data);
	evs_append_result r;
	int rc = evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r);

	ck_assert_msg(rc == 0, "append to %s: %s: %s", stream, evs_errname(rc), evs_errmsg());
	return r;
}

/* Appends n events of one type with data {"n":i} and insists on success. */
static evs_append_result addn(evs_store *s, const char *stream, const char *type,
			      size_t n)
{
	evs_new_event e[16];
	char data[16][32];
	evs_append_result r;
	int rc;

	ck_assert_uint_le(n, 16);
	for (size_t i = 0; i < n; i++) {
		snprintf(data[i], sizeof(data[i]), "{\"n\":%zu}", i);
		e[i] = mkev(type, data[i]);
	}
	rc = evs_append(s, stream, EVS_EXPECT_ANY, e, n, &r);
	ck_assert_msg(rc == 0, "append to %s: %s: %s", stream, evs_errname(rc), evs_errmsg());
	return r;
}

#define ck_assert_errmsg_has(sub)                                            \
	ck_assert_msg(strstr(evs_errmsg(), (sub)) != NULL,                   \
		      "evs_errmsg() \"%s\" does not contain \"%s\"", evs_errmsg(), (sub))

#define ck_assert_errmsg_set()                                               \
	ck_assert_msg(evs_errmsg()[0] != '\0', "evs_errmsg() is empty")

/* ---- collecting what a read hands out ---- */

typedef struct got {
	uint64_t position, version;
	char *stream, *type, *metadata, *data;
	size_t metadata_len, data_len;
	uint8_t id[16];
	uint32_t schema_version;
	int64_t timestamp_us;
} got;

typedef struct coll {
	got *v;
	size_t n, cap;
	size_t stop_after;  /* the callback returns non-zero after this many */
} coll;

static void check_cstr(const char *p, size_t len, const char *what)
{
	ck_assert_msg(p != NULL, "%s is NULL", what);
	ck_assert_msg(p[len] == '\0', "%s is not NUL-terminated at its length %zu", what, len);
	ck_assert_msg(strlen(p) == len, "%s: strlen %zu, length field %zu", what, strlen(p),
		      len);
}

static char *dupn(const char *p, size_t n)
{
	char *d = malloc(n + 1);

	ck_assert_ptr_nonnull(d);
	if (n)
		memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

static int collect(const evs_event *ev, void *ctx)
{
	coll *c = ctx;
	got *g;

	ck_assert_ptr_nonnull(ev);
	check_cstr(ev->stream, ev->stream_len, "stream");
	check_cstr(ev->type, ev->type_len, "type");
	check_cstr(ev->data, ev->data_len, "data");
	if (ev->metadata_len)
		check_cstr(ev->metadata, ev->metadata_len, "metadata");
	else
		ck_assert(ev->metadata == NULL || ev->metadata[0] == '\0');
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		ck_assert_ptr_nonnull(c->v);
	}
	g = &c->v[c->n++];
	g->position = ev->position;
	g->version = ev->version;
	g->stream = dupn(ev->stream, ev->stream_len);
	g->type = dupn(ev->type, ev->type_len);
	g->metadata = dupn(ev->metadata_len ? ev->metadata : "", ev->metadata_len);
	g->metadata_len = ev->metadata_len;
	g->data = dupn(ev->data, ev->data_len);
	g->data_len = ev->data_len;
	memcpy(g->id, ev->id, 16);
	g->schema_version = ev->schema_version;
	g->timestamp_us = ev->timestamp_us;
	return c->stop_after && c->n >= c->stop_after;
}

static void coll_free(coll *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].stream);
		free(c->v[i].type);
		free(c->v[i].metadata);
		free(c->v[i].data);
	}
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static int rd_stream(coll *c, evs_store *s, const char *stream, uint64_t from,
		     evs_direction dir, uint64_t limit)
{
	size_t stop = c->stop_after;

	coll_free(c);
	c->stop_after = stop;
	return evs_read_stream(s, stream, from, dir, limit, collect, c);
}

static int rd_all(coll *c, evs_store *s, uint64_t from, uint64_t limit,
		  const evs_filter *f)
{
	size_t stop = c->stop_after;

	coll_free(c);
	c->stop_after = stop;
	return evs_read_all(s, from, limit, f, collect, c);
}

/* "1 2 3": the positions ('p') or versions ('v') collected, for one
 * readable comparison.  Static buffer: one use per expression. */
static const char *seq(const coll *c, char which)
{
	static char buf[16384];
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < c->n && o < sizeof(buf) - 32; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%llu", i ? " " : "",
				      (unsigned long long)(which == 'p' ? c->v[i].position
									: c->v[i].version));
	return buf;
}

/* ---- store snapshots: "nothing was written" ---- */

typedef struct snap {
	char *dump;
	evs_stats st;
} snap;

static void snap_take(snap *p, evs_store *s)
{
	p->dump = tu_dump(s);
	ck_assert_ptr_nonnull(p->dump);
	ck_assert_int_eq(evs_stats_get(&p->st, s), 0);
}

static void snap_same(const snap *a, evs_store *s)
{
	snap b;

	snap_take(&b, s);
	ck_assert_str_eq(b.dump, a->dump);
	ck_assert_uint_eq(b.st.head_position, a->st.head_position);
	ck_assert_uint_eq(b.st.streams, a->st.streams);
	ck_assert_uint_eq(b.st.batches, a->st.batches);
	ck_assert_uint_eq(b.st.segments, a->st.segments);
	ck_assert_uint_eq(b.st.log_bytes, a->st.log_bytes);
	free(b.dump);
}

static void snap_free(snap *p)
{
	free(p->dump);
	p->dump = NULL;
}

/* Bytes one append adds to the log (layout in src/internal.h). */
static uint64_t batch_bytes(const char *stream, const evs_new_event *ev, size_t n)
{
	uint64_t b = EVS__BATCH_HDR + strlen(stream) + 1;

	for (size_t i = 0; i < n; i++)
		b += evs__rec_size(strlen(ev[i].type),
				   ev[i].metadata ? strlen(ev[i].metadata) : 0,
				   strlen(ev[i].data));
	return b;
}

static void uuid_of(uint8_t id[16], unsigned seed)
{
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)(seed * 31u + (unsigned)i * 7u + 1u);
	id[6] = (uint8_t)(0x40 | (id[6] & 0x0f));
	id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

static void count_report(const char *problem, void *ctx)
{
	int *n = ctx;

	fprintf(stderr, "verify: %s\n", problem);
	(*n)++;
}

/* evs_verify's code, after asserting it reported no problem. */
static int verify_clean(evs_store *s)
{
	int reports = 0;
	int rc = evs_verify(s, count_report, NULL, &reports);

	ck_assert_int_eq(reports, 0);
	return rc;
}

/* ---- fixtures ---- */

static void setup_dir(void)
{
	g_dir = tu_mkdtemp();
	g_s = NULL;
}

static void setup_store(void)
{
	setup_dir();
	g_s = tu_open(g_dir, TEST_SEG, 0);
	ck_assert_ptr_nonnull(g_s);
}

static void teardown(void)
{
	evs_close(g_s);
	g_s = NULL;
	tu_rmdir(g_dir);
	free(g_dir);
	g_dir = NULL;
}

/* ================================================================ open */

START_TEST(test_open_create)
{
	char *sub = path_in(g_dir, "new-store"), *p;
	evs_options o = EVS_OPTIONS_INIT;
	evs_stats st;
	evs_store *s = NULL;

	/* An empty existing directory becomes a store. */
	o.create = 1;
	o.segment_size = TEST_SEG;
	ck_assert_int_eq(evs_open(&g_s, g_dir, &o), 0);
	ck_assert_ptr_nonnull(g_s);
	p = path_in(g_dir, "log");
	ck_assert(is_dir(p));
	free(p);
	p = path_in(g_dir, "LOCK");
	ck_assert(exists(p));
	free(p);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 0);
	ck_assert_uint_eq(st.streams, 0);
	ck_assert_uint_eq(st.batches, 0);
	ck_assert_uint_eq(st.log_bytes, 0);

	/* A missing directory whose parent exists is created. */
	ck_assert(!exists(sub));
	ck_assert_int_eq(evs_open(&s, sub, &o), 0);
	ck_assert_ptr_nonnull(s);
	ck_assert(is_dir(sub));
	add1(s, "a-1", "A", "{}");
	evs_close(s);
	s = NULL;

	/* opts NULL: the defaults (no create) open an existing store. */
	ck_assert_int_eq(evs_open(&s, sub, NULL), 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(st.head_position, 1);
	evs_close(s);
	tu_rmdir(sub);
	free(sub);
}
END_TEST

START_TEST(test_open_reopen)
{
	evs_new_event e[2] = { mkev("Opened", "{\"a\":1}"), mkev("Closed", "{\"b\":[true]}") };
	evs_options o = EVS_OPTIONS_INIT;
	evs_append_result r;
	evs_stats st;
	char *before;

	o.segment_size = TEST_SEG;
	g_s = tu_open(g_dir, TEST_SEG, 1);
	ck_assert_ptr_nonnull(g_s);
	ck_assert_int_eq(evs_append(g_s, "acct-1", EVS_EXPECT_NO_STREAM, e, 2, &r), 0);
	add1(g_s, "acct-2", "Opened", "{}");
	before = tu_dump(g_s);
	ck_assert_str_eq(before, "1 acct-1 1 Opened - {\"a\":1}\n"
				 "2 acct-1 2 Closed - {\"b\":[true]}\n"
				 "3 acct-2 1 Opened - {}\n");
	evs_close(g_s);
	g_s = NULL;

	/* Reopen without create: same events, clean (nothing recovered). */
	ck_assert_int_eq(evs_open(&g_s, g_dir, &o), 0);
	char *after = tu_dump(g_s);
	ck_assert_str_eq(after, before);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 3);
	ck_assert_uint_eq(st.streams, 2);
	ck_assert_uint_eq(st.batches, 2);
	ck_assert_uint_eq(st.recovered_batches, 0);
	ck_assert_uint_eq(st.truncated_bytes, 0);

	/* Appends go on from where the store was. */
	ck_assert_int_eq(evs_append(g_s, "acct-1", 2, e, 1, &r), 0);
	ck_assert_uint_eq(r.first_version, 3);
	ck_assert_uint_eq(r.first_position, 4);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_open_missing)
{
	char *missing = path_in(g_dir, "nope"), *deep = path_in(g_dir, "no/such/dir");
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;

	ck_assert_int_eq(evs_open(&s, missing, &o), EVS_ENOTFOUND);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_has(missing);
	ck_assert(!exists(missing));

	/* An empty directory is a store not made yet (create would make it
	 * there): without create, not found, and left empty. */
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_ENOTFOUND);
	ck_assert_ptr_null(s);
	{
		char *log = path_in(g_dir, "log");
		ck_assert(!exists(log));
		free(log);
	}

	o.read_only = 1;
	ck_assert_int_eq(evs_open(&s, missing, &o), EVS_ENOTFOUND);
	ck_assert_ptr_null(s);
	ck_assert(!exists(missing));

	/* create makes the directory only if its parent exists. */
	o.read_only = 0;
	o.create = 1;
	ck_assert_int_lt(evs_open(&s, deep, &o), 0);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_set();
	ck_assert(!exists(deep));
	free(missing);
	free(deep);
}
END_TEST

START_TEST(test_open_not_a_store)
{
	char *junk = path_in(g_dir, "notes.txt"), *log = path_in(g_dir, "log"), *buf;
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	size_t size;

	ck_assert_int_eq(tu_write_file(junk, "keep me", 7), 0);
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_has(g_dir);
	o.create = 1;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_has(g_dir);
	o.read_only = 1;
	o.create = 0;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);

	/* Refused means untouched. */
	ck_assert(!exists(log));
	buf = tu_read_file(junk, &size);
	ck_assert_uint_eq(size, 7);
	ck_assert_str_eq(buf, "keep me");
	free(buf);
	free(junk);
	free(log);
}
END_TEST

START_TEST(test_open_file_not_dir)
{
	char *file = path_in(g_dir, "plain"), *buf;
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	size_t size;

	ck_assert_int_eq(tu_write_file(file, "data", 4), 0);
	ck_assert_int_eq(evs_open(&s, file, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_has(file);
	o.create = 1;
	ck_assert_int_eq(evs_open(&s, file, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	buf = tu_read_file(file, &size);
	ck_assert_uint_eq(size, 4);
	ck_assert_str_eq(buf, "data");
	free(buf);
	free(file);
}
END_TEST

START_TEST(test_open_bad_options)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;

	o.create = 1;
	o.version = 0;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_set();
	o.version = EVS_OPTIONS_VERSION + 1;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	o.version = EVS_OPTIONS_VERSION;

	o.segment_size = EVS_MIN_SEGMENT_SIZE - 1;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_errmsg_set();
	o.segment_size = 0;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), EVS_EINVAL);
	ck_assert_ptr_null(s);

	/* The minimum itself is fine. */
	o.segment_size = EVS_MIN_SEGMENT_SIZE;
	ck_assert_int_eq(evs_open(&s, g_dir, &o), 0);
	ck_assert_ptr_nonnull(s);
	add1(s, "min-1", "A", "{}");
	ck_assert_uint_eq(tu_segment_count(g_dir), 1);
	evs_close(s);
}
END_TEST

START_TEST(test_open_locked)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *second = NULL, *ro;
	coll c = { 0 };

	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	o.segment_size = TEST_SEG;
	ck_assert_int_eq(evs_open(&g_s, g_dir, &o), 0);
	add1(g_s, "lock-1", "A", "{}");

	ck_assert_int_eq(evs_open(&second, g_dir, &o), EVS_ELOCKED);
	ck_assert_ptr_null(second);
	ck_assert_errmsg_set();
	o.create = 0;
	ck_assert_int_eq(evs_open(&second, g_dir, &o), EVS_ELOCKED);
	ck_assert_ptr_null(second);
	/* A refused open must not have released the first writer's lock. */
	ck_assert_int_eq(evs_open(&second, g_dir, &o), EVS_ELOCKED);

	/* Readers are welcome beside the writer. */
	ro = open_read_only(g_dir);
	ck_assert_int_eq(rd_all(&c, ro, 0, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1");
	evs_close(ro);

	evs_close(g_s);
	g_s = NULL;
	ck_assert_int_eq(evs_open(&second, g_dir, &o), 0);
	ck_assert_ptr_nonnull(second);
	g_s = second;
	add1(g_s, "lock-1", "B", "{}");
	ck_assert_int_eq(rd_stream(&c, g_s, "lock-1", 0, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1 2");
	coll_free(&c);
}
END_TEST

START_TEST(test_open_read_only)
{
	evs_new_event e = mkev("Seen", "{\"x\":1}");
	evs_append_result r;
	evs_stream_info info;
	evs_stats st;
	evs_store *ro;
	coll c = { 0 };
	snap before;

	add1(g_s, "ro-1", "First", "{}");
	ro = open_read_only(g_dir);

	ck_assert_int_eq(rd_all(&c, ro, 0, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1");

	/* The reader sees what the writer appends after it opened. */
	addn(g_s, "ro-1", "More", 3);
	add1(g_s, "ro-2", "Other", "{\"y\":2}");
	ck_assert_int_eq(rd_all(&c, ro, 0, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3 4 5");
	ck_assert_str_eq(c.v[4].stream, "ro-2");
	ck_assert_str_eq(c.v[4].data, "{\"y\":2}");
	ck_assert_int_eq(rd_stream(&c, ro, "ro-1", 0, EVS_BACKWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "4 3 2 1");
	ck_assert_int_eq(evs_stream_info_get(&info, ro, "ro-1"), 0);
	ck_assert_int_eq(info.exists, 1);
	ck_assert_uint_eq(info.last_version, 4);
	ck_assert_int_eq(evs_stats_get(&st, ro), 0);
	ck_assert_uint_eq(st.head_position, 5);
	ck_assert_uint_eq(st.streams, 2);

	/* A read-only handle cannot append, and nothing is written. */
	snap_take(&before, g_s);
	memset(&r, 0xab, sizeof(r));
	ck_assert_int_eq(evs_append(ro, "ro-1", EVS_EXPECT_ANY, &e, 1, &r), EVS_EREADONLY);
	ck_assert_errmsg_set();
	ck_assert_int_eq(evs_append(ro, "ro-3", EVS_EXPECT_NO_STREAM, &e, 1, NULL),
			 EVS_EREADONLY);
	snap_same(&before, g_s);
	snap_same(&before, ro);

	ck_assert_int_eq(verify_clean(ro), 0);
	evs_close(ro);
	snap_free(&before);
	coll_free(&c);
}
END_TEST

/* A store whose first writer died before it set the index up (log/ and
 * LOCK made, index.db missing, or there without its tables) reads as an
 * empty store, verifies clean and is left as it was; once a writer has
 * opened it, the same reader sees the writer's events. */
START_TEST(test_open_read_only_index_not_set_up)
{
	char *dir = path_in(g_dir, "half");

	for (int with_file = 0; with_file < 2; with_file++) {
		char *logdir = path_in(dir, "log"), *lock = path_in(dir, "LOCK");
		char *ix = path_in(dir, "index.db");
		evs_store *ro, *w;
		evs_stats st;
		coll c = { 0 };

		ck_assert_int_eq(mkdir(dir, 0700), 0);
		ck_assert_int_eq(mkdir(logdir, 0755), 0);
		ck_assert_int_eq(tu_write_file(lock, "", 0), 0);
		if (with_file) {
			sqlite3 *db;
			ck_assert_int_eq(sqlite3_open(ix, &db), SQLITE_OK);
			ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL",
						      NULL, NULL, NULL), SQLITE_OK);
			sqlite3_close(db);
		}
		ro = open_read_only(dir);
		ck_assert_int_eq(rd_all(&c, ro, 0, 0, NULL), 0);
		ck_assert_uint_eq(c.n, 0);
		ck_assert_int_eq(evs_stats_get(&st, ro), 0);
		ck_assert_uint_eq(st.head_position, 0);
		ck_assert_uint_eq(st.streams, 0);
		ck_assert_int_eq(verify_clean(ro), 0);
		ck_assert_int_eq(exists(ix), with_file);

		w = tu_open(dir, TEST_SEG, 0);
		ck_assert_ptr_nonnull(w);
		add1(w, "late-1", "First", "{}");
		addn(w, "late-1", "More", 2);
		ck_assert_int_eq(rd_all(&c, ro, 0, 0, NULL), 0);
		ck_assert_str_eq(seq(&c, 'p'), "1 2 3");
		ck_assert_int_eq(evs_stats_get(&st, ro), 0);
		ck_assert_uint_eq(st.head_position, 3);
		ck_assert_int_eq(verify_clean(ro), 0);
		evs_close(w);
		evs_close(ro);

		/* The index deleted after a writer published its head: a new
		 * reader rebuilds it from the log, as the next writer would. */
		for (const char *const *x = (const char *const[]){ "", "-wal", "-shm", NULL };
		     *x; x++) {
			char f[4200];
			snprintf(f, sizeof(f), "%s%s", ix, *x);
			unlink(f);
		}
		ro = open_read_only(dir);
		ck_assert_int_eq(rd_all(&c, ro, 0, 0, NULL), 0);
		ck_assert_str_eq(seq(&c, 'p'), "1 2 3");
		ck_assert_int_eq(verify_clean(ro), 0);
		evs_close(ro);
		coll_free(&c);
		tu_rmdir(dir);
		free(logdir);
		free(lock);
		free(ix);
	}
	free(dir);
}
END_TEST

START_TEST(test_close_null)
{
	evs_close(NULL);
	evs_free(NULL);
	/* A closed handle's lock is released: a new writer gets in. */
	g_s = tu_open(g_dir, TEST_SEG, 0);
	ck_assert_ptr_nonnull(g_s);
	evs_close(g_s);
	g_s = tu_open(g_dir, TEST_SEG, 0);
	ck_assert_ptr_nonnull(g_s);
}
END_TEST

/* =========================================================== roundtrip */

START_TEST(test_every_field)
{
	uint8_t id[16];
	evs_new_event e = { "OrderPlaced", "{\"sku\":\"A-1\",\"qty\":2,\"note\":\"caf\xc3\xa9\"}",
			    "{\"user\":\"u1\",\"corr\":\"c-9\"}", id, 3 };
	evs_append_result r;
	coll c = { 0 };
	int64_t before, after;

	uuid_of(id, 1);
	add1(g_s, "other-1", "Noise", "{}");
	before = now_us();
	ck_assert_int_eq(evs_append(g_s, "order-42", EVS_EXPECT_NO_STREAM, &e, 1, &r), 0);
	after = now_us();
	ck_assert_uint_eq(r.first_version, 1);
	ck_assert_uint_eq(r.last_version, 1);
	ck_assert_uint_eq(r.first_position, 2);
	ck_assert_uint_eq(r.last_position, 2);
	ck_assert_uint_eq(r.current_version, 1);
	ck_assert_int_eq(r.idempotent, 0);

	ck_assert_int_eq(rd_stream(&c, g_s, "order-42", 0, EVS_FORWARD, 0), 0);
	ck_assert_uint_eq(c.n, 1);
	ck_assert_uint_eq(c.v[0].position, 2);
	ck_assert_uint_eq(c.v[0].version, 1);
	ck_assert_str_eq(c.v[0].stream, "order-42");
	ck_assert_str_eq(c.v[0].type, "OrderPlaced");
	ck_assert_str_eq(c.v[0].data, e.data);
	ck_assert_uint_eq(c.v[0].data_len, strlen(e.data));
	ck_assert_str_eq(c.v[0].metadata, e.metadata);
	ck_assert_uint_eq(c.v[0].metadata_len, strlen(e.metadata));
	ck_assert_mem_eq(c.v[0].id, id, 16);
	ck_assert_uint_eq(c.v[0].schema_version, 3);
	ck_assert_int_ge(c.v[0].timestamp_us, before);
	ck_assert_int_le(c.v[0].timestamp_us, after);

	/* $all hands out the same event. */
	ck_assert_int_eq(rd_all(&c, g_s, 2, 0, NULL), 0);
	ck_assert_uint_eq(c.n, 1);
	ck_assert_str_eq(c.v[0].stream, "order-42");
	ck_assert_mem_eq(c.v[0].id, id, 16);
	ck_assert_str_eq(c.v[0].metadata, e.metadata);
	ck_assert_uint_eq(c.v[0].schema_version, 3);
	coll_free(&c);
}
END_TEST

START_TEST(test_defaults)
{
	evs_new_event e[3] = {
		{ "NoMeta", "{\"a\":1}", NULL, NULL, 0 },
		{ "EmptyMeta", "{\"b\":2}", "", NULL, 0 },
		{ "Explicit", "{}", "{}", NULL, 1 },
	};
	evs_append_result r;
	coll c = { 0 };
	int64_t before, after;

	before = now_us();
	ck_assert_int_eq(evs_append(g_s, "dflt-1", EVS_EXPECT_ANY, e, 3, &r), 0);
	after = now_us();
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
	ck_assert_uint_eq(c.n, 3);
	ck_assert_uint_eq(c.v[0].metadata_len, 0);
	ck_assert_uint_eq(c.v[1].metadata_len, 0);
	ck_assert_uint_eq(c.v[2].metadata_len, 2);
	ck_assert_str_eq(c.v[2].metadata, "{}");
	for (size_t i = 0; i < 3; i++) {
		const uint8_t *id = c.v[i].id;
		uint64_t ms = 0;

		ck_assert_uint_eq(c.v[i].schema_version, 1);
		ck_assert_int_ge(c.v[i].timestamp_us, before);
		ck_assert_int_le(c.v[i].timestamp_us, after);
		/* Generated ids are UUIDv7: version 7, variant 10, and the
		 * first 48 bits are the creation time in milliseconds. */
		ck_assert_uint_eq(id[6] >> 4, 7);
		ck_assert_uint_eq(id[8] >> 6, 2);
		for (int k = 0; k < 6; k++)
			ms = ms << 8 | id[k];
		ck_assert_uint_ge(ms, (uint64_t)before / 1000);
		ck_assert_uint_le(ms, (uint64_t)after / 1000);
	}
	ck_assert(memcmp(c.v[0].id, c.v[1].id, 16) != 0);
	ck_assert(memcmp(c.v[1].id, c.v[2].id, 16) != 0);
	ck_assert(memcmp(c.v[0].id, c.v[2].id, 16) != 0);
	coll_free(&c);
}
END_TEST

START_TEST(test_multi_event_append)
{
	evs_new_event e[5];
	char data[5][32];
	evs_append_result r;
	coll c = { 0 };

	for (int i = 0; i < 5; i++) {
		snprintf(data[i], sizeof(data[i]), "{\"i\":%d}", i);
		e[i] = mkev(i % 2 ? "Odd" : "Even", data[i]);
	}
	r = add1(g_s, "multi-1", "Start", "{}");
	ck_assert_uint_eq(r.first_position, 1);
	ck_assert_int_eq(evs_append(g_s, "multi-1", 1, e, 5, &r), 0);
	ck_assert_uint_eq(r.first_version, 2);
	ck_assert_uint_eq(r.last_version, 6);
	ck_assert_uint_eq(r.first_position, 2);
	ck_assert_uint_eq(r.last_position, 6);
	ck_assert_uint_eq(r.current_version, 6);
	ck_assert_int_eq(r.idempotent, 0);
	r = add1(g_s, "multi-2", "Start", "{}");
	ck_assert_uint_eq(r.first_version, 1);
	ck_assert_uint_eq(r.first_position, 7);

	ck_assert_int_eq(rd_stream(&c, g_s, "multi-1", 0, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1 2 3 4 5 6");
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3 4 5 6");
	for (int i = 0; i < 5; i++) {
		ck_assert_str_eq(c.v[i + 1].data, data[i]);
		ck_assert_str_eq(c.v[i + 1].type, i % 2 ? "Odd" : "Even");
	}
	/* One append, one timestamp. */
	for (int i = 2; i < 6; i++)
		ck_assert_int_eq(c.v[i].timestamp_us, c.v[1].timestamp_us);
	coll_free(&c);
}
END_TEST

/*
 * stream "s-1" gets versions in batches of 1, 3, 1, 4 with other streams'
 * events between them:
 *   pos 1 s-1 v1 | 2 x-1 | 3-5 s-1 v2-4 | 6 x-1 | 7 s-1 v5 | 8-11 s-1 v6-9
 */
static void build_s1(evs_store *s)
{
	add1(s, "s-1", "A", "{\"v\":1}");
	add1(s, "x-1", "X", "{}");
	addn(s, "s-1", "B", 3);
	add1(s, "x-1", "X", "{}");
	add1(s, "s-1", "C", "{\"v\":5}");
	addn(s, "s-1", "D", 4);
}

START_TEST(test_read_stream)
{
	coll c = { 0 };

	build_s1(g_s);
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 0, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1 2 3 4 5 6 7 8 9");
	ck_assert_str_eq(seq(&c, 'p'), "1 3 4 5 7 8 9 10 11");
	ck_assert_str_eq(c.v[4].data, "{\"v\":5}");
	ck_assert_str_eq(c.v[3].data, "{\"n\":2}");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 1, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1 2 3 4 5 6 7 8 9");
	/* from inside a batch */
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 3, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "3 4 5 6 7 8 9");
	ck_assert_str_eq(seq(&c, 'p'), "4 5 7 8 9 10 11");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 3, EVS_FORWARD, 2), 0);
	ck_assert_str_eq(seq(&c, 'v'), "3 4");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 4, EVS_FORWARD, 3), 0);
	ck_assert_str_eq(seq(&c, 'v'), "4 5 6");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 0, EVS_FORWARD, 1), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 9, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "9");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 10, EVS_FORWARD, 0), 0);
	ck_assert_uint_eq(c.n, 0);

	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 0, EVS_BACKWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "9 8 7 6 5 4 3 2 1");
	ck_assert_str_eq(seq(&c, 'p'), "11 10 9 8 7 5 4 3 1");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 9, EVS_BACKWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "9 8 7 6 5 4 3 2 1");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 7, EVS_BACKWARD, 3), 0);
	ck_assert_str_eq(seq(&c, 'v'), "7 6 5");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 3, EVS_BACKWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "3 2 1");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 0, EVS_BACKWARD, 2), 0);
	ck_assert_str_eq(seq(&c, 'v'), "9 8");
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 1, EVS_BACKWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1");

	ck_assert_int_eq(rd_stream(&c, g_s, "x-1", 0, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'p'), "2 6");
	ck_assert_str_eq(seq(&c, 'v'), "1 2");
	coll_free(&c);
}
END_TEST

START_TEST(test_read_stream_missing)
{
	coll c = { 0 };

	ck_assert_int_eq(rd_stream(&c, g_s, "ghost-1", 0, EVS_FORWARD, 0), EVS_ENOTFOUND);
	ck_assert_errmsg_has("ghost-1");
	build_s1(g_s);
	ck_assert_int_eq(rd_stream(&c, g_s, "ghost-1", 0, EVS_FORWARD, 0), EVS_ENOTFOUND);
	ck_assert_errmsg_has("ghost-1");
	ck_assert_int_eq(rd_stream(&c, g_s, "ghost-1", 0, EVS_BACKWARD, 0), EVS_ENOTFOUND);
	/* A prefix of an existing name is another stream. */
	ck_assert_int_eq(rd_stream(&c, g_s, "s", 0, EVS_FORWARD, 0), EVS_ENOTFOUND);
	ck_assert_uint_eq(c.n, 0);
	coll_free(&c);
}
END_TEST

START_TEST(test_read_callback_stops)
{
	coll c = { 0 };

	build_s1(g_s);
	c.stop_after = 2;
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 0, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1 2");
	c.stop_after = 4;
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 0, EVS_BACKWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "9 8 7 6");
	c.stop_after = 1;
	ck_assert_int_eq(rd_stream(&c, g_s, "s-1", 3, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "3");
	c.stop_after = 3;
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3");
	c.stop_after = 5;
	ck_assert_int_eq(rd_all(&c, g_s, 4, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "4 5 6 7 8");
	coll_free(&c);
}
END_TEST

/*
 *   1 order-1  OrderPlaced       5 order    OrderNote
 *   2 user-1   UserCreated       6 orders-1 OrderPlaced
 *   3 order-2  OrderPlaced       7 user-1   UserRenamed
 *   4 order-2  OrderPaid         8 order-1  OrderShipped
 *                                9 order-1  OrderPaid
 */
static void build_mixed(evs_store *s)
{
	evs_new_event two[2] = { mkev("OrderPlaced", "{\"o\":2}"), mkev("OrderPaid", "{\"o\":2}") };
	evs_new_event last[2] = { mkev("OrderShipped", "{\"o\":1}"), mkev("OrderPaid", "{\"o\":1}") };

	add1(s, "order-1", "OrderPlaced", "{\"o\":1}");
	add1(s, "user-1", "UserCreated", "{\"u\":1}");
	ck_assert_int_eq(evs_append(s, "order-2", EVS_EXPECT_NO_STREAM, two, 2, NULL), 0);
	add1(s, "order", "OrderNote", "{}");
	add1(s, "orders-1", "OrderPlaced", "{\"o\":\"s\"}");
	add1(s, "user-1", "UserRenamed", "{\"u\":1}");
	ck_assert_int_eq(evs_append(s, "order-1", 1, last, 2, NULL), 0);
}

START_TEST(test_read_all)
{
	const char *paid[] = { "OrderPaid" };
	const char *placed_created[] = { "UserCreated", "OrderPlaced" };
	const char *none[] = { "NoSuchType" };
	evs_filter f;
	coll c = { 0 };

	build_mixed(g_s);
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3 4 5 6 7 8 9");
	ck_assert_str_eq(seq(&c, 'v'), "1 1 1 2 1 1 2 2 3");
	ck_assert_str_eq(c.v[6].type, "UserRenamed");
	ck_assert_str_eq(c.v[6].stream, "user-1");
	ck_assert_int_eq(rd_all(&c, g_s, 1, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3 4 5 6 7 8 9");
	ck_assert_int_eq(rd_all(&c, g_s, 4, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "4 5 6 7 8 9");
	ck_assert_int_eq(rd_all(&c, g_s, 9, 0, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "9");
	ck_assert_int_eq(rd_all(&c, g_s, 10, 0, NULL), 0);
	ck_assert_uint_eq(c.n, 0);
	ck_assert_int_eq(rd_all(&c, g_s, 0, 3, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3");
	ck_assert_int_eq(rd_all(&c, g_s, 3, 2, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "3 4");
	ck_assert_int_eq(rd_all(&c, g_s, 9, 5, NULL), 0);
	ck_assert_str_eq(seq(&c, 'p'), "9");

	memset(&f, 0, sizeof(f));
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3 4 5 6 7 8 9");

	f.category = "order";
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 3 4 5 8 9");
	ck_assert_int_eq(rd_all(&c, g_s, 5, 2, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "5 8");
	ck_assert_int_eq(rd_all(&c, g_s, 4, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "4 5 8 9");
	f.category = "user";
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "2 7");
	f.category = "orders";
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "6");
	f.category = "ord";
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_uint_eq(c.n, 0);

	f.category = NULL;
	f.types = paid;
	f.ntypes = 1;
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "4 9");
	f.types = placed_created;
	f.ntypes = 2;
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 2 3 6");
	ck_assert_int_eq(rd_all(&c, g_s, 2, 2, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "2 3");
	f.types = none;
	f.ntypes = 1;
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_uint_eq(c.n, 0);

	f.category = "order";
	f.types = placed_created;
	f.ntypes = 2;
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "1 3");
	f.types = paid;
	f.ntypes = 1;
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "4 9");
	ck_assert_int_eq(rd_all(&c, g_s, 0, 1, &f), 0);
	ck_assert_str_eq(seq(&c, 'p'), "4");
	f.category = "user";
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, &f), 0);
	ck_assert_uint_eq(c.n, 0);
	coll_free(&c);
}
END_TEST

START_TEST(test_read_all_empty)
{
	coll c = { 0 };

	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
	ck_assert_uint_eq(c.n, 0);
	ck_assert_int_eq(rd_all(&c, g_s, 5, 3, NULL), 0);
	ck_assert_uint_eq(c.n, 0);
	coll_free(&c);
}
END_TEST

START_TEST(test_strings_and_lengths)
{
	static const size_t sizes[] = { 2, 8, 9, 63, 64, 65, 1000, 4095, 4096, 70000 };
	const size_t n = sizeof(sizes) / sizeof(sizes[0]);
	char *data[sizeof(sizes) / sizeof(sizes[0])];
	coll c = { 0 };

	for (size_t i = 0; i < n; i++) {
		data[i] = sizes[i] == 2 ? strdup("{}") : json_of_size(sizes[i]);
		add1(g_s, "len-1", "Sized", data[i]);
	}
	{
		/* Escapes, multibyte UTF-8 and an embedded \u0000 escape. */
		evs_new_event e = { "Esc", "{\"s\":\"a\\\"b\\\\c\\n\\u0000\xe2\x82\xac\xf0\x9f\x98\x80\"}",
				    "{\"m\":\"\xc3\xa9\"}", NULL, 0 };
		ck_assert_int_eq(evs_append(g_s, "len-1", EVS_EXPECT_ANY, &e, 1, NULL), 0);
		ck_assert_int_eq(rd_stream(&c, g_s, "len-1", n + 1, EVS_FORWARD, 0), 0);
		ck_assert_uint_eq(c.n, 1);
		ck_assert_str_eq(c.v[0].data, e.data);
		ck_assert_uint_eq(c.v[0].data_len, strlen(e.data));
		ck_assert_str_eq(c.v[0].metadata, e.metadata);
	}
	ck_assert_int_eq(rd_stream(&c, g_s, "len-1", 0, EVS_FORWARD, n), 0);
	ck_assert_uint_eq(c.n, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(c.v[i].data_len, sizes[i]);
		ck_assert_str_eq(c.v[i].data, data[i]);
		ck_assert_uint_eq(c.v[i].metadata_len, 0);
	}
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
	ck_assert_uint_eq(c.n, n + 1);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(c.v[i].data_len, sizes[i]);
		ck_assert_str_eq(c.v[i].data, data[i]);
		free(data[i]);
	}
	coll_free(&c);
}
END_TEST

/* ============================================================ expected */

static const struct expect_case {
	uint64_t prior;        /* events in acct-7 before the append */
	int64_t expected;
	int rc;
	uint64_t current;      /* out->current_version */
} expect_cases[] = {
	{ 0, EVS_EXPECT_ANY, 0, 2 },
	{ 3, EVS_EXPECT_ANY, 0, 5 },
	{ 0, EVS_EXPECT_NO_STREAM, 0, 2 },
	{ 3, EVS_EXPECT_NO_STREAM, EVS_ECONFLICT, 3 },
	{ 0, EVS_EXPECT_EXISTS, EVS_ECONFLICT, 0 },
	{ 3, EVS_EXPECT_EXISTS, 0, 5 },
	{ 0, 0, 0, 2 },
	{ 3, 0, EVS_ECONFLICT, 3 },
	{ 3, 3, 0, 5 },
	{ 3, 2, EVS_ECONFLICT, 3 },
	{ 3, 4, EVS_ECONFLICT, 3 },
	{ 0, 1, EVS_ECONFLICT, 0 },
	{ 3, 1000000, EVS_ECONFLICT, 3 },
};

START_TEST(test_expected_version)
{
	const struct expect_case *k = &expect_cases[_i];
	evs_new_event e[2] = { mkev("Deposited", "{\"amount\":5}"), mkev("Withdrawn", "{\"amount\":2}") };
	evs_append_result r;
	coll c = { 0 };
	snap before;
	char want[64];
	int rc;

	/* Positions differ from versions: another stream goes first. */
	add1(g_s, "bank-0", "Opened", "{}");
	if (k->prior)
		addn(g_s, "acct-7", "Seed", (size_t)k->prior);
	add1(g_s, "bank-0", "Audited", "{}");
	snap_take(&before, g_s);

	memset(&r, 0xab, sizeof(r));
	rc = evs_append(g_s, "acct-7", k->expected, e, 2, &r);
	ck_assert_msg(rc == k->rc, "case %d: expected %s, got %s (%s)", _i, evs_errname(k->rc),
		      evs_errname(rc), evs_errmsg());
	ck_assert_uint_eq(r.current_version, k->current);
	if (rc == 0) {
		uint64_t pos = before.st.head_position + 1;
		ck_assert_uint_eq(r.first_version, k->prior + 1);
		ck_assert_uint_eq(r.last_version, k->prior + 2);
		ck_assert_uint_eq(r.first_position, pos);
		ck_assert_uint_eq(r.last_position, pos + 1);
		ck_assert_int_eq(r.idempotent, 0);
		ck_assert_int_eq(rd_stream(&c, g_s, "acct-7", k->prior + 1, EVS_FORWARD, 0), 0);
		ck_assert_uint_eq(c.n, 2);
		ck_assert_str_eq(c.v[0].type, "Deposited");
		ck_assert_uint_eq(c.v[0].position, pos);
		ck_assert_str_eq(c.v[1].type, "Withdrawn");
	} else {
		/* "stream 'order-7': expected version 3, actual 5" */
		ck_assert_int_eq(r.idempotent, 0);
		ck_assert_errmsg_has("'acct-7'");
		snprintf(want, sizeof(want), "actual %llu", (unsigned long long)k->prior);
		ck_assert_errmsg_has(want);
		snap_same(&before, g_s);
	}
	snap_free(&before);
	coll_free(&c);
}
END_TEST

START_TEST(test_expected_version_sequence)
{
	evs_new_event e = mkev("Tick", "{}");
	evs_append_result r;

	/* A writer that tracks its version appends without conflicts... */
	for (int64_t v = 0; v < 20; v++) {
		ck_assert_int_eq(evs_append(g_s, "clock-1", v, &e, 1, &r), 0);
		ck_assert_uint_eq(r.first_version, (uint64_t)v + 1);
		ck_assert_uint_eq(r.current_version, (uint64_t)v + 1);
	}
	/* ...and a stale one is told the truth each time. */
	for (int64_t v = 0; v < 20; v++) {
		ck_assert_int_eq(evs_append(g_s, "clock-1", v, &e, 1, &r), EVS_ECONFLICT);
		ck_assert_uint_eq(r.current_version, 20);
		ck_assert_errmsg_has("'clock-1'");
		ck_assert_errmsg_has("actual 20");
	}
	ck_assert_int_eq(evs_append(g_s, "clock-1", EVS_EXPECT_NO_STREAM, &e, 1, NULL),
			 EVS_ECONFLICT);
	ck_assert_errmsg_has("actual 20");
	ck_assert_int_eq(evs_append(g_s, "clock-2", EVS_EXPECT_EXISTS, &e, 1, NULL),
			 EVS_ECONFLICT);
	ck_assert_errmsg_has("'clock-2'");
	ck_assert_errmsg_has("actual 0");
}
END_TEST

/* ========================================================= idempotency */

static uint8_t idA[16], idB[16], idC[16];

static void setup_ids(void)
{
	setup_store();
	uuid_of(idA, 10);
	uuid_of(idB, 11);
	uuid_of(idC, 12);
}

/* inv-1 v1-2 = [A, B] at positions 2-3 (pos 1 is another stream). */
static void store_ab(evs_store *s, evs_append_result *r)
{
	evs_new_event e[2] = {
		{ "ItemAdded", "{\"sku\":\"x\"}", "{\"by\":\"u1\"}", idA, 2 },
		{ "ItemRemoved", "{\"sku\":\"x\"}", NULL, idB, 0 },
	};

	add1(s, "inv-0", "Opened", "{}");
	ck_assert_int_eq(evs_append(s, "inv-1", EVS_EXPECT_NO_STREAM, e, 2, r), 0);
	ck_assert_uint_eq(r->first_position, 2);
	ck_assert_int_eq(r->idempotent, 0);
}

START_TEST(test_idem_same_ids)
{
	evs_new_event e[2] = {
		{ "ItemAdded", "{\"sku\":\"x\"}", "{\"by\":\"u1\"}", idA, 2 },
		{ "ItemRemoved", "{\"sku\":\"x\"}", NULL, idB, 0 },
	};
	static const int64_t exps[] = { EVS_EXPECT_NO_STREAM, EVS_EXPECT_ANY, EVS_EXPECT_EXISTS,
					 0, 2, 7 };
	evs_append_result r, orig;
	snap before;

	store_ab(g_s, &orig);
	snap_take(&before, g_s);
	for (size_t i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
		memset(&r, 0xab, sizeof(r));
		ck_assert_msg(evs_append(g_s, "inv-1", exps[i], e, 2, &r) == 0,
			      "expected %lld: %s", (long long)exps[i], evs_errmsg());
		ck_assert_int_eq(r.idempotent, 1);
		ck_assert_uint_eq(r.first_version, 1);
		ck_assert_uint_eq(r.last_version, 2);
		ck_assert_uint_eq(r.first_position, 2);
		ck_assert_uint_eq(r.last_position, 3);
		ck_assert_uint_eq(r.current_version, 2);
		snap_same(&before, g_s);
	}

	/* Each event alone is stored too, consecutively, in this stream. */
	ck_assert_int_eq(evs_append(g_s, "inv-1", EVS_EXPECT_NO_STREAM, &e[0], 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_version, 1);
	ck_assert_uint_eq(r.last_version, 1);
	ck_assert_uint_eq(r.first_position, 2);
	ck_assert_uint_eq(r.last_position, 2);
	ck_assert_int_eq(evs_append(g_s, "inv-1", 0, &e[1], 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_version, 2);
	ck_assert_uint_eq(r.last_version, 2);
	ck_assert_uint_eq(r.first_position, 3);
	ck_assert_uint_eq(r.last_position, 3);
	snap_same(&before, g_s);

	/* Later events in the stream do not change the originals. */
	add1(g_s, "inv-1", "More", "{}");
	ck_assert_int_eq(evs_append(g_s, "inv-1", 0, e, 2, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_version, 1);
	ck_assert_uint_eq(r.last_version, 2);
	ck_assert_uint_eq(r.first_position, 2);
	ck_assert_uint_eq(r.last_position, 3);
	snap_free(&before);
}
END_TEST

START_TEST(test_idem_across_reopen)
{
	evs_new_event e[2] = {
		{ "ItemAdded", "{\"sku\":\"x\"}", "{\"by\":\"u1\"}", idA, 2 },
		{ "ItemRemoved", "{\"sku\":\"x\"}", NULL, idB, 0 },
	};
	evs_new_event one = { "Single", "{\"k\":1}", NULL, idC, 0 };
	evs_append_result r, orig;
	snap before;

	store_ab(g_s, &orig);
	ck_assert_int_eq(evs_append(g_s, "inv-2", EVS_EXPECT_ANY, &one, 1, &r), 0);
	ck_assert_uint_eq(r.first_position, 4);
	snap_take(&before, g_s);
	evs_close(g_s);
	g_s = tu_open(g_dir, TEST_SEG, 0);
	ck_assert_ptr_nonnull(g_s);
	snap_same(&before, g_s);

	ck_assert_int_eq(evs_append(g_s, "inv-1", EVS_EXPECT_NO_STREAM, e, 2, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_version, 1);
	ck_assert_uint_eq(r.last_version, 2);
	ck_assert_uint_eq(r.first_position, 2);
	ck_assert_uint_eq(r.last_position, 3);
	ck_assert_int_eq(evs_append(g_s, "inv-2", 0, &one, 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_version, 1);
	ck_assert_uint_eq(r.first_position, 4);
	snap_same(&before, g_s);
	snap_free(&before);
}
END_TEST

/* (rows of event_ids, batches kept as id ranges) of the store's index */
static void id_rows(const char *dir, long long *event_ids, long long *ranges)
{
	char path[4200];
	sqlite3 *db;
	sqlite3_stmt *st;

	snprintf(path, sizeof(path), "%s/index.db", dir);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM event_ids), "
					    "(SELECT count(*) FROM batches WHERE first_id IS NOT NULL)",
					    -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	*event_ids = sqlite3_column_int64(st, 0);
	*ranges = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void count_problem(const char *problem, void *ctx)
{
	(void)problem;
	(*(int *)ctx)++;
}

/* Ids in order are indexed as one range per batch, found through the log;
 * the others one row each; both serve idempotency after a reopen. */
START_TEST(test_idem_ranges)
{
	/* six increasing ids; the batch takes 2, 0 and 4 (not sorted: a range
	 * is the batch's smallest and largest), so 1 lies inside its range
	 * without being stored */
	uint8_t ids[6 * 16];
	evs_new_event e[3] = {
		{ "A", "{\"n\":0}", NULL, ids + 32, 0 },
		{ "A", "{\"n\":1}", NULL, ids, 0 },
		{ "A", "{\"n\":2}", NULL, ids + 64, 0 },
	};
	evs_new_event f = { "A", "{\"n\":3}", NULL, ids + 80, 0 };
	evs_new_event gap = { "A", "{\"n\":5}", NULL, ids + 16, 0 };
	evs_new_event other = { "A", "{\"n\":9}", NULL, ids + 64, 0 };
	evs_new_event gen[2] = { { "G", "{}", NULL, NULL, 0 }, { "G", "{}", NULL, NULL, 0 } };
	evs_append_result r;
	long long rows, ranges;
	int problems = 0;

	evs__uuid_v7_seq(ids, 6, evs__now_us());
	ck_assert_int_eq(evs_append(g_s, "r-1", EVS_EXPECT_ANY, e, 3, &r), 0);
	ck_assert_int_eq(evs_append(g_s, "r-2", EVS_EXPECT_ANY, &f, 1, &r), 0);
	ck_assert_int_eq(evs_append(g_s, "r-3", EVS_EXPECT_ANY, gen, 2, &r), 0);
	evs_close(g_s);
	id_rows(g_dir, &rows, &ranges);
	ck_assert_int_eq(rows, 0);
	ck_assert_int_eq(ranges, 3);

	g_s = tu_open(g_dir, TEST_SEG, 0);
	/* a retry of the second event alone: found in its batch's range */
	ck_assert_int_eq(evs_append(g_s, "r-1", EVS_EXPECT_ANY, &e[1], 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_position, 2);
	ck_assert_uint_eq(r.first_version, 2);
	/* the same id with other data, elsewhere: refused, naming the place */
	ck_assert_int_eq(evs_append(g_s, "r-9", EVS_EXPECT_ANY, &other, 1, &r), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), "position 3") != NULL, "%s", evs_errmsg());
	/* an id inside a range but not in its batch is new; out of order, it
	 * gets an event_ids row */
	ck_assert_int_eq(evs_append(g_s, "r-4", EVS_EXPECT_ANY, &gap, 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 0);
	ck_assert_uint_eq(r.first_position, 7);
	evs_close(g_s);
	id_rows(g_dir, &rows, &ranges);
	ck_assert_int_eq(rows, 1);
	ck_assert_int_eq(ranges, 3);
	g_s = tu_open(g_dir, TEST_SEG, 0);
	ck_assert_int_eq(evs_append(g_s, "r-4", EVS_EXPECT_ANY, &gap, 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_position, 7);
	ck_assert_int_eq(evs_verify(g_s, count_problem, NULL, &problems), 0);
	ck_assert_int_eq(problems, 0);
}
END_TEST

/* Ways to reuse stored ids (A, B in inv-1) that must be refused. */
enum { REUSE_CASES = 14 };

START_TEST(test_idem_refused)
{
	evs_new_event base[2] = {
		{ "ItemAdded", "{\"sku\":\"x\"}", "{\"by\":\"u1\"}", idA, 2 },
		{ "ItemRemoved", "{\"sku\":\"x\"}", NULL, idB, 0 },
	};
	evs_new_event newC = { "Fresh", "{\"c\":1}", NULL, idC, 0 };
	evs_new_event e[3];
	const char *stream = "inv-1";
	int64_t exp = EVS_EXPECT_ANY;
	size_t n = 1;
	evs_append_result r;
	snap before;
	coll c = { 0 };

	store_ab(g_s, &r);
	snap_take(&before, g_s);
	e[0] = base[0];
	e[1] = base[1];
	switch (_i) {
	case 0: /* same id, other data */
		e[0].data = "{\"sku\":\"y\"}";
		break;
	case 1: /* same id, other metadata */
		e[0].metadata = "{\"by\":\"u2\"}";
		break;
	case 2: /* same id, metadata dropped */
		e[0].metadata = NULL;
		break;
	case 3: /* same id, other type */
		e[0].type = "ItemAddedV2";
		break;
	case 4: /* same id, other schema version */
		e[0].schema_version = 3;
		break;
	case 5: /* same ids, another stream */
		stream = "inv-2";
		n = 2;
		break;
	case 6: /* same id, another (existing) stream */
		stream = "inv-0";
		break;
	case 7: /* one id twice in one append (both new) */
		e[0] = newC;
		e[1] = newC;
		n = 2;
		break;
	case 8: /* partial overlap: first new, second stored */
		e[0] = newC;
		e[1] = base[1];
		n = 2;
		break;
	case 9: /* partial overlap: first stored, second new */
		e[1] = newC;
		n = 2;
		break;
	case 10: /* stored, but in the other order */
		e[0] = base[1];
		e[1] = base[0];
		n = 2;
		break;
	case 11: /* the stored pair plus a new one */
		e[2] = newC;
		n = 3;
		break;
	case 12: /* a stored id with an event without id */
		e[1] = mkev("NoId", "{}");
		n = 2;
		break;
	case 13: /* one id twice in one append (stored one), expected NO_STREAM */
		e[1] = base[0];
		n = 2;
		exp = EVS_EXPECT_NO_STREAM;
		stream = "inv-3";
		break;
	default:
		ck_abort();
	}
	memset(&r, 0xab, sizeof(r));
	ck_assert_int_eq(evs_append(g_s, stream, exp, e, n, &r), EVS_EINVAL);
	ck_assert_errmsg_set();
	snap_same(&before, g_s);

	/* C was not recorded: it appends as new, at the next position. */
	ck_assert_int_eq(evs_append(g_s, "inv-9", EVS_EXPECT_NO_STREAM, &newC, 1, &r), 0);
	ck_assert_int_eq(r.idempotent, 0);
	ck_assert_uint_eq(r.first_position, before.st.head_position + 1);
	ck_assert_int_eq(rd_stream(&c, g_s, "inv-1", 0, EVS_FORWARD, 0), 0);
	ck_assert_str_eq(seq(&c, 'v'), "1 2");
	ck_assert_int_eq(rd_stream(&c, g_s, "inv-2", 0, EVS_FORWARD, 0), EVS_ENOTFOUND);
	snap_free(&before);
	coll_free(&c);
}
END_TEST

/* A long append (the sorted duplicate check) with one id at 30 and 77. */
START_TEST(test_idem_duplicate_in_long_append)
{
	evs_new_event e[100];
	uint8_t ids[100][16];
	snap before;
	char msg[256];

	snap_take(&before, g_s);
	for (int i = 0; i < 100; i++) {
		memset(ids[i], 0, 16);
		ids[i][0] = 0x42;
		ids[i][14] = (uint8_t)(i >> 8);
		ids[i][15] = (uint8_t)i;
		e[i] = mkev("Many", "{}");
		e[i].id = ids[i];
	}
	memcpy(ids[76], ids[29], 16);
	ck_assert_int_eq(evs_append(g_s, "long-1", EVS_EXPECT_ANY, e, 100, NULL), EVS_EINVAL);
	snprintf(msg, sizeof(msg), "stream 'long-1': events 30 and 77 have the same id");
	ck_assert_msg(strstr(evs_errmsg(), msg), "message: %s", evs_errmsg());
	snap_same(&before, g_s);
	/* and without the duplicate it goes in whole */
	ids[76][15] = 0xee;
	ids[76][14] = 0xee;
	ck_assert_int_eq(evs_append(g_s, "long-1", EVS_EXPECT_ANY, e, 100, NULL), 0);
	snap_free(&before);
}
END_TEST

/*
 * The leader's table of given ids hashes them: ids that differ in one
 * byte only, anywhere (a counter inside a version 7 timestamp), must
 * still spread over the table, or every look-up walks one long chain.
 */
START_TEST(test_id_hash_spreads)
{
	for (int byte = 0; byte < 16; byte++) {
		uint8_t seen[4096 / 8];
		int distinct = 0;

		memset(seen, 0, sizeof(seen));
		for (int v = 0; v < 256; v++) {
			uint8_t id[16];
			memset(id, 0x11, 16);
			id[byte] = (uint8_t)v;
			size_t slot = evs__id_hash(id) & 4095;
			if (!(seen[slot / 8] & (1u << (slot % 8)))) {
				seen[slot / 8] |= (uint8_t)(1u << (slot % 8));
				distinct++;
			}
		}
		/* 256 random slots of 4096 would leave about 248 distinct */
		ck_assert_msg(distinct >= 230, "byte %d: only %d distinct slots of 256 ids",
			      byte, distinct);
	}
}
END_TEST

/* ========================================================== validation */

#define VAL_SEGMENT 16384u
#define VAL_MAX_EVENT 2048u

static void setup_val(void)
{
	setup_dir();
	g_s = open_with(g_dir, VAL_SEGMENT, VAL_MAX_EVENT);
	add1(g_s, "val-1", "Seed", "{\"a\":1}");
	add1(g_s, "val-2", "Seed", "{\"b\":2}");
}

static const char invalid_utf8_1[] = "caf\xc3";            /* truncated */
static const char invalid_utf8_2[] = "x-\xff";              /* never valid */
static const char invalid_utf8_3[] = "x-\xc0\xaf";          /* overlong '/' */
static const char invalid_utf8_4[] = "x-\xed\xa0\x80";      /* surrogate */
static const char invalid_utf8_5[] = "x-\xf4\x90\x80\x80";  /* > U+10FFFF */

enum { BIG_NAME = 1, BIG_TYPE, BIG_EVENT, BIG_EVENT_META, BIG_BATCH };

static const struct bad_case {
	const char *what;
	const char *stream;
	int64_t expected;
	size_t n;
	int null_events;
	int big;                 /* BIG_*: built at run time */
	evs_new_event ev[3];
	int rc;
} bad_cases[] = {
#define OKEV { "Good", "{}", NULL, NULL, 0 }
	{ "n == 0", "val-1", EVS_EXPECT_ANY, 0, 0, 0, { OKEV }, EVS_EINVAL },
	{ "NULL events", "val-1", EVS_EXPECT_ANY, 1, 1, 0, { OKEV }, EVS_EINVAL },
	{ "empty stream", "", EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "NULL stream", NULL, EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "256-byte stream", NULL, EVS_EXPECT_ANY, 1, 0, BIG_NAME, { OKEV }, EVS_EINVAL },
	{ "tab in stream", "val\t1", EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "newline in stream", "val-1\n", EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "0x01 in stream", "\x01", EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "DEL in stream", "val-\x7f", EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "C1 control U+0085 in stream", "val-\xc2\x85", EVS_EXPECT_ANY, 1, 0, 0, { OKEV },
	  EVS_EINVAL },
	{ "truncated UTF-8 in stream", invalid_utf8_1, EVS_EXPECT_ANY, 1, 0, 0, { OKEV },
	  EVS_EINVAL },
	{ "0xff in stream", invalid_utf8_2, EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "overlong UTF-8 in stream", invalid_utf8_3, EVS_EXPECT_ANY, 1, 0, 0, { OKEV },
	  EVS_EINVAL },
	{ "surrogate in stream", invalid_utf8_4, EVS_EXPECT_ANY, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "beyond U+10FFFF in stream", invalid_utf8_5, EVS_EXPECT_ANY, 1, 0, 0, { OKEV },
	  EVS_EINVAL },
	{ "empty type", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "", "{}", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "NULL type", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { NULL, "{}", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "space in type", "val-1", EVS_EXPECT_ANY, 1, 0, 0,
	  { { "Order Placed", "{}", NULL, NULL, 0 } }, EVS_EINVAL },
	{ "slash in type", "val-1", EVS_EXPECT_ANY, 1, 0, 0,
	  { { "Order/Placed", "{}", NULL, NULL, 0 } }, EVS_EINVAL },
	{ "non-ASCII type", "val-1", EVS_EXPECT_ANY, 1, 0, 0,
	  { { "Ord\xc3\xa9r", "{}", NULL, NULL, 0 } }, EVS_EINVAL },
	{ "256-byte type", "val-1", EVS_EXPECT_ANY, 1, 0, BIG_TYPE, { OKEV }, EVS_EINVAL },
	{ "data []", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "[]", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data 1", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "1", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data string", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "\"x\"", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data null", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "null", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data {", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data {} x", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{} x", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data {}{}", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{}{}", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data empty", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "", NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data NULL", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", NULL, NULL, NULL, 0 } },
	  EVS_EINVAL },
	{ "data with a bad key", "val-1", EVS_EXPECT_ANY, 1, 0, 0,
	  { { "T", "{a:1}", NULL, NULL, 0 } }, EVS_EINVAL },
	{ "metadata []", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{}", "[]", NULL, 0 } },
	  EVS_EINVAL },
	{ "metadata 1", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{}", "1", NULL, 0 } },
	  EVS_EINVAL },
	{ "metadata {", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{}", "{", NULL, 0 } },
	  EVS_EINVAL },
	{ "metadata text", "val-1", EVS_EXPECT_ANY, 1, 0, 0, { { "T", "{}", "x", NULL, 0 } },
	  EVS_EINVAL },
	{ "third event's data bad", "val-1", EVS_EXPECT_ANY, 3, 0, 0,
	  { OKEV, OKEV, { "T", "[1]", NULL, NULL, 0 } }, EVS_EINVAL },
	{ "second event's type bad", "val-3", EVS_EXPECT_NO_STREAM, 3, 0, 0,
	  { OKEV, { "a b", "{}", NULL, NULL, 0 }, OKEV }, EVS_EINVAL },
	{ "event over max_event_size", "val-1", EVS_EXPECT_ANY, 1, 0, BIG_EVENT, { OKEV },
	  EVS_ETOOLARGE },
	{ "metadata pushes event over max", "val-1", EVS_EXPECT_ANY, 1, 0, BIG_EVENT_META,
	  { OKEV }, EVS_ETOOLARGE },
	{ "batch larger than a segment", "val-1", EVS_EXPECT_ANY, 0, 0, BIG_BATCH, { OKEV },
	  EVS_ETOOLARGE },
	{ "expected version -4", "val-1", -4, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "expected version INT64_MIN", "val-1", INT64_MIN, 1, 0, 0, { OKEV }, EVS_EINVAL },
	{ "expected version -4 on a new stream", "val-9", -4, 1, 0, 0, { OKEV }, EVS_EINVAL },
#undef OKEV
};

START_TEST(test_bad_input)
{
	const struct bad_case *k = &bad_cases[_i];
	evs_new_event ev[12];
	const char *stream = k->stream;
	size_t n = k->n;
	char *name = NULL, *type = NULL, *data = NULL, *meta = NULL;
	evs_append_result r;
	snap before;
	int rc;

	memcpy(ev, k->ev, sizeof(k->ev));
	switch (k->big) {
	case BIG_NAME:
		name = repeat('n', 256);
		stream = name;
		break;
	case BIG_TYPE:
		type = repeat('T', 256);
		ev[0].type = type;
		break;
	case BIG_EVENT: /* type "Good" (4) + data: one byte over */
		data = json_of_size(VAL_MAX_EVENT - 4 + 1);
		ev[0].data = data;
		break;
	case BIG_EVENT_META: /* type 4 + data 2 + metadata: one over */
		meta = json_of_size(VAL_MAX_EVENT - 4 - 2 + 1);
		ev[0].metadata = meta;
		break;
	case BIG_BATCH: /* 10 events each well under the limit, 19 KB in all */
		data = json_of_size(1900);
		for (size_t i = 0; i < 10; i++)
			ev[i] = mkev("Chunk", data);
		n = 10;
		break;
	default:
		break;
	}
	snap_take(&before, g_s);
	memset(&r, 0xab, sizeof(r));
	rc = evs_append(g_s, stream, k->expected, k->null_events ? NULL : ev, n, &r);
	ck_assert_msg(rc == k->rc, "%s: expected %s, got %s (%s)", k->what, evs_errname(k->rc),
		      evs_errname(rc), evs_errmsg());
	ck_assert_errmsg_set();
	snap_same(&before, g_s);

	/* No position or version was used up. */
	r = add1(g_s, "val-1", "After", "{}");
	ck_assert_uint_eq(r.first_position, 3);
	ck_assert_uint_eq(r.first_version, 2);
	snap_free(&before);
	free(name);
	free(type);
	free(data);
	free(meta);
}
END_TEST

START_TEST(test_limits_accepted)
{
	char *name = repeat('n', 255), *type = repeat('T', 255);
	char *full = json_of_size(VAL_MAX_EVENT - 4), *half = json_of_size(1000);
	char *chunk = json_of_size(1900), *meta = json_of_size(VAL_MAX_EVENT - 4 - 2);
	evs_new_event e[8];
	evs_append_result r;
	evs_stats st;
	coll c = { 0 };
	char cat[300];

	/* 255 bytes of name and of type are fine. */
	e[0] = mkev(type, "{}");
	ck_assert_int_eq(evs_append(g_s, name, EVS_EXPECT_NO_STREAM, e, 1, &r), 0);
	ck_assert_int_eq(rd_stream(&c, g_s, name, 0, EVS_FORWARD, 0), 0);
	ck_assert_uint_eq(c.n, 1);
	ck_assert_str_eq(c.v[0].stream, name);
	ck_assert_str_eq(c.v[0].type, type);

	/* Exactly max_event_size: type + data, then type + metadata + data. */
	e[0] = mkev("Good", full);
	ck_assert_int_eq(evs_append(g_s, "big-1", EVS_EXPECT_ANY, e, 1, &r), 0);
	e[0].data = "{}";
	e[0].metadata = meta;
	ck_assert_int_eq(evs_append(g_s, "big-1", EVS_EXPECT_ANY, e, 1, &r), 0);
	ck_assert_uint_eq(r.last_version, 2);

	/* Multibyte UTF-8 names, and a category of them. */
	add1(g_s, "caf\xc3\xa9-1", "Brewed", "{}");
	ck_assert_uint_eq(evs_category(cat, sizeof(cat), "caf\xc3\xa9-1"), 5);
	ck_assert_str_eq(cat, "caf\xc3\xa9");
	add1(g_s, "\xe6\x97\xa5\xe6\x9c\xac-\xf0\x9f\x98\x80", "Unicode", "{}");

	/* Several events that together fill most of a segment. */
	for (int i = 0; i < 7; i++)
		e[i] = mkev("Chunk", i < 6 ? chunk : half);
	ck_assert_int_eq(evs_append(g_s, "big-2", EVS_EXPECT_ANY, e, 7, &r), 0);
	ck_assert_uint_eq(r.last_version, 7);
	ck_assert_int_eq(rd_stream(&c, g_s, "big-2", 0, EVS_FORWARD, 0), 0);
	ck_assert_uint_eq(c.n, 7);
	ck_assert_str_eq(c.v[6].data, half);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 2 + 1 + 2 + 2 + 7);
	ck_assert_int_eq(verify_clean(g_s), 0);
	free(name);
	free(type);
	free(full);
	free(half);
	free(chunk);
	free(meta);
	coll_free(&c);
}
END_TEST

/* ============================================================ segments */

typedef struct expect_ev {
	int stream;
	uint64_t version;
	char data[160];
} expect_ev;

static void check_against(evs_store *s, const expect_ev *want, size_t total, int nstreams)
{
	coll c = { 0 };
	char name[32];

	ck_assert_int_eq(rd_all(&c, s, 0, 0, NULL), 0);
	ck_assert_uint_eq(c.n, total);
	for (size_t i = 0; i < total; i++) {
		snprintf(name, sizeof(name), "roll-%d", want[i].stream);
		ck_assert_uint_eq(c.v[i].position, i + 1);
		ck_assert_str_eq(c.v[i].stream, name);
		ck_assert_uint_eq(c.v[i].version, want[i].version);
		ck_assert_str_eq(c.v[i].data, want[i].data);
	}
	for (int k = 0; k < nstreams; k++) {
		uint64_t v = 0;

		snprintf(name, sizeof(name), "roll-%d", k);
		ck_assert_int_eq(rd_stream(&c, s, name, 0, EVS_FORWARD, 0), 0);
		for (size_t i = 0, j = 0; i < total; i++) {
			if (want[i].stream != k)
				continue;
			ck_assert_uint_lt(j, c.n);
			ck_assert_uint_eq(c.v[j].position, i + 1);
			ck_assert_uint_eq(c.v[j].version, ++v);
			ck_assert_str_eq(c.v[j].data, want[i].data);
			j++;
		}
		ck_assert_uint_eq(c.n, v);
		ck_assert_int_eq(rd_stream(&c, s, name, 0, EVS_BACKWARD, 0), 0);
		ck_assert_uint_eq(c.n, v);
		ck_assert_uint_eq(c.v[0].version, v);
	}
	coll_free(&c);
}

START_TEST(test_segment_roll)
{
	enum { NSTREAMS = 5, TOTAL = 400 };
	expect_ev *want = calloc(TOTAL, sizeof(*want));
	uint64_t versions[NSTREAMS] = { 0 };
	size_t total = 0;
	evs_stats st;
	evs_store *ro;
	int call = 0;

	ck_assert_ptr_nonnull(want);
	g_s = open_with(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	add1(g_s, "roll-0", "Rolled", "{\"first\":true}");
	versions[0] = 1;
	strcpy(want[0].data, "{\"first\":true}");
	want[0].version = 1;
	total = 1;
	/* A reader opened now must follow the writer into new segments. */
	ro = open_read_only(g_dir);
	while (total < TOTAL) {
		int k = call % NSTREAMS;
		size_t n = call % 4 == 3 ? 3 : 1;
		evs_new_event e[3];
		evs_append_result r;
		char name[32];

		if (total + n > TOTAL)
			n = TOTAL - total;
		snprintf(name, sizeof(name), "roll-%d", k);
		for (size_t i = 0; i < n; i++) {
			expect_ev *w = &want[total + i];
			w->stream = k;
			w->version = versions[k] + 1 + i;
			snprintf(w->data, sizeof(w->data),
				 "{\"call\":%d,\"i\":%zu,\"pad\":\"%.*s\"}", call, i,
				 (int)(call % 90), "................................................"
				 "..........................................");
			e[i] = mkev("Rolled", w->data);
		}
		ck_assert_int_eq(evs_append(g_s, name, (int64_t)versions[k], e, n, &r), 0);
		ck_assert_uint_eq(r.first_position, total + 1);
		ck_assert_uint_eq(r.last_position, total + n);
		ck_assert_uint_eq(r.first_version, versions[k] + 1);
		versions[k] += n;
		total += n;
		call++;
	}
	ck_assert_uint_gt(tu_segment_count(g_dir), 3);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.segments, tu_segment_count(g_dir));
	ck_assert_uint_eq(st.head_position, TOTAL);
	ck_assert_uint_eq(st.batches, (uint64_t)call + 1);
	check_against(g_s, want, total, NSTREAMS);
	ck_assert_int_eq(verify_clean(g_s), 0);
	check_against(ro, want, total, NSTREAMS);
	evs_close(ro);

	evs_close(g_s);
	g_s = open_with(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.recovered_batches, 0);
	ck_assert_uint_eq(st.truncated_bytes, 0);
	ck_assert_uint_eq(st.head_position, TOTAL);
	check_against(g_s, want, total, NSTREAMS);
	ck_assert_int_eq(verify_clean(g_s), 0);

	/* Reads from the middle of the log start in the right segment. */
	{
		coll c = { 0 };
		ck_assert_int_eq(rd_all(&c, g_s, 237, 3, NULL), 0);
		ck_assert_str_eq(seq(&c, 'p'), "237 238 239");
		ck_assert_str_eq(c.v[0].data, want[236].data);
		coll_free(&c);
	}
	free(want);
}
END_TEST

/*
 * Reopening with another segment_size: the open segment keeps the size its
 * header records (or the open is refused as invalid).  Either way every
 * acknowledged event must be in the log where a rebuild finds it.
 */
START_TEST(test_reopen_other_segment_size)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_stats st;
	char *dump0, *dump1, *p;
	int rc;

	g_s = open_with(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	for (int i = 0; i < 5; i++)
		add1(g_s, "resize-1", "Small", "{\"seg\":4096}");
	evs_close(g_s);
	g_s = NULL;

	o.durability = EVS_DURABILITY_NONE;
	o.segment_size = TEST_SEG;
	rc = evs_open(&g_s, g_dir, &o);
	ck_assert_msg(rc == 0 || rc == EVS_EINVAL, "open: %s: %s", evs_errname(rc),
		      evs_errmsg());
	if (rc == EVS_EINVAL)
		return;
	for (int i = 0; i < 100; i++) {
		char data[160];
		snprintf(data, sizeof(data), "{\"i\":%d,\"pad\":\"%0100d\"}", i, i);
		add1(g_s, "resize-1", "Big", data);
	}
	ck_assert_int_eq(verify_clean(g_s), 0);
	dump0 = tu_dump(g_s);
	ck_assert_ptr_nonnull(dump0);
	evs_close(g_s);
	g_s = NULL;

	static const char *const files[] = { "index.db", "index.db-wal", "index.db-shm" };
	for (size_t i = 0; i < 3; i++) {
		p = path_in(g_dir, files[i]);
		unlink(p);
		free(p);
	}
	ck_assert_int_eq(evs_open(&g_s, g_dir, &o), 0);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 105);
	dump1 = tu_dump(g_s);
	ck_assert_str_eq(dump1, dump0);
	ck_assert_int_eq(verify_clean(g_s), 0);
	free(dump0);
	free(dump1);
}
END_TEST

/* ============================================================= threads */

#define T_THREADS 8
#define T_APPENDS 500
#define T_SHARED 4
#define T_STREAMS (T_SHARED + T_THREADS)

typedef struct tapp {
	int stream;              /* < T_SHARED: shared-<n>, else own-<n - T_SHARED> */
	uint32_t count;
	int rc;
	uint64_t want_first;     /* own streams: the version it must get */
	evs_append_result res;
} tapp;

typedef struct tctx {
	evs_store *s;
	int t;
	pthread_barrier_t *start;
	tapp app[T_APPENDS];
	char errmsg[256];        /* the first failure */
} tctx;

static void t_stream_name(char *buf, size_t size, int idx)
{
	if (idx < T_SHARED)
		snprintf(buf, size, "shared-%d", idx);
	else
		snprintf(buf, size, "own-%d", idx - T_SHARED);
}

static void *t_writer(void *arg)
{
	tctx *c = arg;
	uint64_t own = 0;

	pthread_barrier_wait(c->start);
	for (int i = 0; i < T_APPENDS; i++) {
		tapp *a = &c->app[i];
		int shared = i % 2 == 0;
		evs_new_event ev[5];
		char data[5][64], name[32];

		a->count = i % 3 == 0 ? 5 : 1;
		a->stream = shared ? (c->t + i / 2) % T_SHARED : T_SHARED + c->t;
		t_stream_name(name, sizeof(name), a->stream);
		for (uint32_t k = 0; k < a->count; k++) {
			snprintf(data[k], sizeof(data[k]), "{\"t\":%d,\"i\":%d,\"k\":%u}", c->t, i, k);
			ev[k] = mkev(a->count == 5 ? "Five" : "One", data[k]);
		}
		a->want_first = shared ? 0 : own + 1;
		a->rc = evs_append(c->s, name, shared ? EVS_EXPECT_ANY : (int64_t)own, ev,
				   a->count, &a->res);
		if (a->rc == 0 && !shared)
			own += a->count;
		if (a->rc && !c->errmsg[0])
			snprintf(c->errmsg, sizeof(c->errmsg), "thread %d append %d: %s: %s",
				 c->t, i, evs_errname(a->rc), evs_errmsg());
	}
	return NULL;
}

typedef struct tread {
	int stream, t, i;
	uint32_t k;
	uint64_t version;
	uint8_t id[16];
} tread;

typedef struct tscan {
	tread *ev;               /* by position */
	size_t cap;
	uint64_t next;           /* the position the next event must have */
	uint64_t last_version[T_STREAMS];
} tscan;

static int t_scan(const evs_event *ev, void *ctx)
{
	tscan *sc = ctx;
	tread *r;
	int idx, n = 0;

	ck_assert_uint_eq(ev->position, sc->next);
	ck_assert_uint_lt(ev->position, sc->cap);
	r = &sc->ev[ev->position];
	if (sscanf(ev->stream, "shared-%d%n", &idx, &n) == 1 && ev->stream[n] == '\0')
		r->stream = idx;
	else if (sscanf(ev->stream, "own-%d%n", &idx, &n) == 1 && ev->stream[n] == '\0')
		r->stream = T_SHARED + idx;
	else
		ck_abort_msg("unexpected stream %s", ev->stream);
	ck_assert_int_lt(r->stream, T_STREAMS);
	ck_assert_int_eq(sscanf(ev->data, "{\"t\":%d,\"i\":%d,\"k\":%u}", &r->t, &r->i, &r->k), 3);
	r->version = ev->version;
	memcpy(r->id, ev->id, 16);
	/* Every stream's versions are dense from 1. */
	ck_assert_uint_eq(ev->version, sc->last_version[r->stream] + 1);
	sc->last_version[r->stream] = ev->version;
	sc->next++;
	return 0;
}

/* A reader beside the writers: every $all read it makes must be dense from
 * position 1, with each stream's versions dense (DESIGN.md invariant 3). */
typedef struct treader {
	evs_store *s;
	atomic_int *stop;
	uint64_t reads, max_head;
	char err[256];
} treader;

typedef struct tdense {
	treader *r;
	uint64_t next;
	uint64_t last_version[T_STREAMS];
} tdense;

static int t_dense(const evs_event *ev, void *ctx)
{
	tdense *d = ctx;
	int idx, n = 0, k = -1;

	if (sscanf(ev->stream, "shared-%d%n", &idx, &n) == 1 && ev->stream[n] == '\0')
		k = idx;
	else if (sscanf(ev->stream, "own-%d%n", &idx, &n) == 1 && ev->stream[n] == '\0')
		k = T_SHARED + idx;
	if (ev->position != d->next || k < 0 || k >= T_STREAMS ||
	    ev->version != d->last_version[k] + 1) {
		snprintf(d->r->err, sizeof(d->r->err),
			 "read %llu: position %llu (expected %llu), stream %s version %llu",
			 (unsigned long long)d->r->reads, (unsigned long long)ev->position,
			 (unsigned long long)d->next, ev->stream,
			 (unsigned long long)ev->version);
		return 1;
	}
	d->last_version[k] = ev->version;
	d->next++;
	return 0;
}

static void *t_reader(void *arg)
{
	treader *r = arg;

	while (!atomic_load(r->stop) && !r->err[0]) {
		tdense d;
		int rc;

		memset(&d, 0, sizeof(d));
		d.r = r;
		d.next = 1;
		rc = evs_read_all(r->s, 0, 0, NULL, t_dense, &d);
		if (rc && !r->err[0])
			snprintf(r->err, sizeof(r->err), "read_all: %s: %s", evs_errname(rc),
				 evs_errmsg());
		if (d.next - 1 > r->max_head)
			r->max_head = d.next - 1;
		r->reads++;
	}
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static void run_threads(int sync)
{
	tctx *ctx = calloc(T_THREADS, sizeof(*ctx));
	pthread_t th[T_THREADS], rth;
	pthread_barrier_t start;
	atomic_int stop = 0;
	treader reader;
	uint64_t total = 0;
	tscan sc;
	evs_stats st;
	uint8_t *ids;
	coll c = { 0 };

	ck_assert_ptr_nonnull(ctx);
	g_s = tu_open(g_dir, TEST_SEG, sync);
	ck_assert_ptr_nonnull(g_s);
	memset(&reader, 0, sizeof(reader));
	reader.s = g_s;
	reader.stop = &stop;
	ck_assert_int_eq(pthread_create(&rth, NULL, t_reader, &reader), 0);
	pthread_barrier_init(&start, NULL, T_THREADS);
	for (int t = 0; t < T_THREADS; t++) {
		ctx[t].s = g_s;
		ctx[t].t = t;
		ctx[t].start = &start;
		ck_assert_int_eq(pthread_create(&th[t], NULL, t_writer, &ctx[t]), 0);
	}
	for (int t = 0; t < T_THREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&stop, 1);
	pthread_join(rth, NULL);
	pthread_barrier_destroy(&start);
	ck_assert_msg(reader.err[0] == '\0', "concurrent reader: %s", reader.err);
	ck_assert_uint_gt(reader.reads, 0);

	for (int t = 0; t < T_THREADS; t++) {
		ck_assert_msg(ctx[t].errmsg[0] == '\0', "%s", ctx[t].errmsg);
		for (int i = 0; i < T_APPENDS; i++) {
			const tapp *a = &ctx[t].app[i];
			ck_assert_int_eq(a->rc, 0);
			ck_assert_uint_eq(a->res.last_version, a->res.first_version + a->count - 1);
			ck_assert_uint_eq(a->res.last_position, a->res.first_position + a->count - 1);
			ck_assert_uint_eq(a->res.current_version, a->res.last_version);
			ck_assert_int_eq(a->res.idempotent, 0);
			if (a->stream >= T_SHARED)
				ck_assert_uint_eq(a->res.first_version, a->want_first);
			total += a->count;
		}
	}

	/* $all: positions dense 1..total, each stream's versions dense. */
	memset(&sc, 0, sizeof(sc));
	sc.cap = total + 1;
	sc.ev = calloc(sc.cap, sizeof(*sc.ev));
	sc.next = 1;
	ck_assert_ptr_nonnull(sc.ev);
	ck_assert_int_eq(evs_read_all(g_s, 0, 0, NULL, t_scan, &sc), 0);
	ck_assert_uint_eq(sc.next, total + 1);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, total);
	ck_assert_uint_eq(st.streams, T_STREAMS);
	ck_assert_uint_eq(st.batches, (uint64_t)T_THREADS * T_APPENDS);

	/* No event id twice. */
	ids = malloc(16 * total);
	ck_assert_ptr_nonnull(ids);
	for (uint64_t p = 1; p <= total; p++)
		memcpy(ids + 16 * (p - 1), sc.ev[p].id, 16);
	qsort(ids, total, 16, cmp_id);
	for (uint64_t p = 1; p < total; p++)
		ck_assert_msg(memcmp(ids + 16 * (p - 1), ids + 16 * p, 16) != 0,
			      "event id repeated");
	free(ids);

	/* What each thread was told is what the log holds. */
	for (int t = 0; t < T_THREADS; t++) {
		for (int i = 0; i < T_APPENDS; i++) {
			const tapp *a = &ctx[t].app[i];
			for (uint32_t k = 0; k < a->count; k++) {
				const tread *r = &sc.ev[a->res.first_position + k];
				ck_assert_int_eq(r->stream, a->stream);
				ck_assert_uint_eq(r->version, a->res.first_version + k);
				ck_assert_int_eq(r->t, t);
				ck_assert_int_eq(r->i, i);
				ck_assert_uint_eq(r->k, k);
			}
		}
	}

	/* Stream reads and info agree with $all. */
	for (int k = 0; k < T_STREAMS; k++) {
		evs_stream_info info;
		char name[32];

		t_stream_name(name, sizeof(name), k);
		ck_assert_int_eq(evs_stream_info_get(&info, g_s, name), 0);
		ck_assert_int_eq(info.exists, 1);
		ck_assert_uint_eq(info.last_version, sc.last_version[k]);
		ck_assert_uint_eq(info.event_count, sc.last_version[k]);
		ck_assert_int_eq(rd_stream(&c, g_s, name, 0, EVS_FORWARD, 0), 0);
		ck_assert_uint_eq(c.n, sc.last_version[k]);
		for (size_t j = 0; j < c.n; j++) {
			ck_assert_uint_eq(c.v[j].version, j + 1);
			ck_assert_int_eq(sc.ev[c.v[j].position].stream, k);
			ck_assert_uint_eq(sc.ev[c.v[j].position].version, j + 1);
		}
		ck_assert_uint_eq(info.first_position, c.v[0].position);
		ck_assert_uint_eq(info.last_position, c.v[c.n - 1].position);
	}
	ck_assert_int_eq(verify_clean(g_s), 0);
	coll_free(&c);
	free(sc.ev);
	free(ctx);
}

START_TEST(test_threads_durability_none)
{
	run_threads(0);
}
END_TEST

START_TEST(test_threads_durability_sync)
{
	run_threads(1);
}
END_TEST

#define RACE_ROUNDS 20

typedef struct rctx {
	evs_store *s;
	int t;
	pthread_barrier_t *go;
	int rc[RACE_ROUNDS];
	evs_append_result res[RACE_ROUNDS];
	char msg[RACE_ROUNDS][200];
} rctx;

static void *t_racer(void *arg)
{
	rctx *c = arg;

	for (int round = 0; round < RACE_ROUNDS; round++) {
		char name[32], data[32];
		evs_new_event e;

		snprintf(name, sizeof(name), "race-%d", round);
		snprintf(data, sizeof(data), "{\"t\":%d}", c->t);
		e = mkev("Claimed", data);
		pthread_barrier_wait(c->go);
		c->rc[round] = evs_append(c->s, name, 0, &e, 1, &c->res[round]);
		snprintf(c->msg[round], sizeof(c->msg[round]), "%s", evs_errmsg());
	}
	return NULL;
}

/*
 * Many new streams at once from 16 threads: the stream table grows while a
 * group is being written, with requests of that group holding entries of it
 * (a use-after-free once; AddressSanitizer and MALLOC_PERTURB_ show it).
 */
static int count_names(const char *name, uint64_t last_version, void *ctx)
{
	(void)name;
	(void)last_version;
	(*(uint64_t *)ctx)++;
	return 0;
}

typedef struct nctx {
	evs_store *s;
	int t;
	int rc;
} nctx;

static void *t_new_streams(void *arg)
{
	nctx *c = arg;

	for (int i = 0; i < 200 && c->rc == 0; i++) {
		char name[32], data[32];
		evs_new_event e;

		snprintf(name, sizeof(name), "new%d-%d", c->t, i);
		snprintf(data, sizeof(data), "{\"i\":%d}", i);
		e = mkev("Born", data);
		c->rc = evs_append(c->s, name, EVS_EXPECT_NO_STREAM, &e, 1, NULL);
	}
	return NULL;
}

START_TEST(test_new_streams_while_table_grows)
{
	nctx ctx[16];
	pthread_t th[16];
	uint64_t n = 0;

	for (int t = 0; t < 16; t++) {
		ctx[t] = (nctx){ g_s, t, 0 };
		ck_assert_int_eq(pthread_create(&th[t], NULL, t_new_streams, &ctx[t]), 0);
	}
	for (int t = 0; t < 16; t++) {
		pthread_join(th[t], NULL);
		ck_assert_msg(ctx[t].rc == 0, "thread %d: %s", t, evs_errname(ctx[t].rc));
	}
	for (int t = 0; t < 16; t++)
		for (int i = 0; i < 200; i += 37) {
			char name[32];
			evs_stream_info info;
			snprintf(name, sizeof(name), "new%d-%d", t, i);
			ck_assert_int_eq(evs_stream_info_get(&info, g_s, name), 0);
			ck_assert_int_eq(info.exists, 1);
			ck_assert_uint_eq(info.last_version, 1);
		}
	ck_assert_int_eq(evs_list_streams(g_s, NULL, 0, count_names, &n), 0);
	ck_assert_uint_eq(n, 16 * 200);
	ck_assert_int_eq(evs_verify(g_s, NULL, NULL, NULL), 0);
}
END_TEST

START_TEST(test_conflict_race)
{
	rctx *ctx = calloc(T_THREADS, sizeof(*ctx));
	pthread_t th[T_THREADS];
	pthread_barrier_t go;
	coll c = { 0 };

	ck_assert_ptr_nonnull(ctx);
	pthread_barrier_init(&go, NULL, T_THREADS);
	for (int t = 0; t < T_THREADS; t++) {
		ctx[t].s = g_s;
		ctx[t].t = t;
		ctx[t].go = &go;
		ck_assert_int_eq(pthread_create(&th[t], NULL, t_racer, &ctx[t]), 0);
	}
	for (int t = 0; t < T_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&go);

	for (int round = 0; round < RACE_ROUNDS; round++) {
		char name[32], want[64];
		int winner = -1, losers = 0;

		snprintf(name, sizeof(name), "race-%d", round);
		snprintf(want, sizeof(want), "'%s'", name);
		for (int t = 0; t < T_THREADS; t++) {
			const evs_append_result *r = &ctx[t].res[round];
			if (ctx[t].rc[round] == 0) {
				ck_assert_msg(winner < 0, "round %d: threads %d and %d both won",
					      round, winner, t);
				winner = t;
				ck_assert_uint_eq(r->first_version, 1);
				ck_assert_uint_eq(r->last_version, 1);
				ck_assert_uint_eq(r->current_version, 1);
				continue;
			}
			ck_assert_msg(ctx[t].rc[round] == EVS_ECONFLICT, "round %d thread %d: %s: %s",
				      round, t, evs_errname(ctx[t].rc[round]), ctx[t].msg[round]);
			ck_assert_uint_eq(r->current_version, 1);
			ck_assert_msg(strstr(ctx[t].msg[round], want) != NULL, "message: %s",
				      ctx[t].msg[round]);
			ck_assert_msg(strstr(ctx[t].msg[round], "actual 1") != NULL, "message: %s",
				      ctx[t].msg[round]);
			losers++;
		}
		ck_assert_int_ge(winner, 0);
		ck_assert_int_eq(losers, T_THREADS - 1);
		ck_assert_int_eq(rd_stream(&c, g_s, name, 0, EVS_FORWARD, 0), 0);
		ck_assert_uint_eq(c.n, 1);
		ck_assert_uint_eq(c.v[0].position, ctx[winner].res[round].first_position);
		snprintf(want, sizeof(want), "{\"t\":%d}", winner);
		ck_assert_str_eq(c.v[0].data, want);
	}
	ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
	ck_assert_uint_eq(c.n, RACE_ROUNDS);
	ck_assert_uint_eq(c.v[RACE_ROUNDS - 1].position, RACE_ROUNDS);
	coll_free(&c);
	free(ctx);
}
END_TEST

/* ================================================================ info */

typedef struct names {
	char buf[4096];
	size_t len;
	int stop_after;
	int calls;
} names;

static int collect_name(const char *name, uint64_t last_version, void *ctx)
{
	names *n = ctx;

	n->len += (size_t)snprintf(n->buf + n->len, sizeof(n->buf) - n->len, "%s%s:%llu",
				   n->len ? " " : "", name, (unsigned long long)last_version);
	ck_assert_uint_lt(n->len, sizeof(n->buf));
	n->calls++;
	return n->stop_after && n->calls >= n->stop_after;
}

static const char *list_streams(evs_store *s, const char *after, uint64_t limit, int stop)
{
	static names n;

	memset(&n, 0, sizeof(n));
	n.stop_after = stop;
	ck_assert_int_eq(evs_list_streams(s, after, limit, collect_name, &n), 0);
	return n.buf;
}

static const char *list_categories(evs_store *s)
{
	static names n;

	memset(&n, 0, sizeof(n));
	ck_assert_int_eq(evs_list_categories(s, collect_name, &n), 0);
	return n.buf;
}

static void build_listing(evs_store *s)
{
	add1(s, "b-2", "X", "{}");
	addn(s, "a-1", "X", 3);
	add1(s, "c", "X", "{}");
	addn(s, "a-10", "X", 2);
	add1(s, "a-2", "X", "{}");
	add1(s, "a", "X", "{}");
	add1(s, "c-x", "X", "{}");
	add1(s, "a-1", "X", "{}");
}

START_TEST(test_list_streams)
{
	ck_assert_str_eq(list_streams(g_s, NULL, 0, 0), "");
	build_listing(g_s);
	ck_assert_str_eq(list_streams(g_s, NULL, 0, 0), "a:1 a-1:4 a-10:2 a-2:1 b-2:1 c:1 c-x:1");
	ck_assert_str_eq(list_streams(g_s, NULL, 2, 0), "a:1 a-1:4");
	ck_assert_str_eq(list_streams(g_s, "a-10", 0, 0), "a-2:1 b-2:1 c:1 c-x:1");
	ck_assert_str_eq(list_streams(g_s, "a-10", 2, 0), "a-2:1 b-2:1");
	ck_assert_str_eq(list_streams(g_s, "a-2", 1, 0), "b-2:1");
	ck_assert_str_eq(list_streams(g_s, "a-", 0, 0), "a-1:4 a-10:2 a-2:1 b-2:1 c:1 c-x:1");
	ck_assert_str_eq(list_streams(g_s, "b", 0, 0), "b-2:1 c:1 c-x:1");
	ck_assert_str_eq(list_streams(g_s, "c-x", 0, 0), "");
	ck_assert_str_eq(list_streams(g_s, "zzz", 5, 0), "");
	ck_assert_str_eq(list_streams(g_s, NULL, 100, 0), "a:1 a-1:4 a-10:2 a-2:1 b-2:1 c:1 c-x:1");
	/* The callback stops the listing. */
	ck_assert_str_eq(list_streams(g_s, NULL, 0, 3), "a:1 a-1:4 a-10:2");
	ck_assert_str_eq(list_streams(g_s, "a-1", 0, 1), "a-10:2");
}
END_TEST

START_TEST(test_list_categories)
{
	ck_assert_str_eq(list_categories(g_s), "");
	build_listing(g_s);
	ck_assert_str_eq(list_categories(g_s), "a:4 b:1 c:2");
	add1(g_s, "b-7", "X", "{}");
	add1(g_s, "b-7", "X", "{}");
	add1(g_s, "order-1-line-2", "X", "{}");
	ck_assert_str_eq(list_categories(g_s), "a:4 b:2 c:2 order:1");
}
END_TEST

START_TEST(test_stream_info)
{
	evs_stream_info info;
	coll c = { 0 };

	memset(&info, 0xab, sizeof(info));
	ck_assert_int_eq(evs_stream_info_get(&info, g_s, "order-1"), 0);
	ck_assert_int_eq(info.exists, 0);
	ck_assert_uint_eq(info.last_version, 0);
	ck_assert_uint_eq(info.event_count, 0);

	build_mixed(g_s);
	ck_assert_int_eq(evs_stream_info_get(&info, g_s, "order-1"), 0);
	ck_assert_int_eq(info.exists, 1);
	ck_assert_uint_eq(info.last_version, 3);
	ck_assert_uint_eq(info.event_count, 3);
	ck_assert_uint_eq(info.first_position, 1);
	ck_assert_uint_eq(info.last_position, 9);
	ck_assert_int_eq(rd_stream(&c, g_s, "order-1", 1, EVS_FORWARD, 1), 0);
	ck_assert_int_eq(info.created_us, c.v[0].timestamp_us);

	ck_assert_int_eq(evs_stream_info_get(&info, g_s, "order-2"), 0);
	ck_assert_int_eq(info.exists, 1);
	ck_assert_uint_eq(info.last_version, 2);
	ck_assert_uint_eq(info.event_count, 2);
	ck_assert_uint_eq(info.first_position, 3);
	ck_assert_uint_eq(info.last_position, 4);
	ck_assert_int_eq(rd_stream(&c, g_s, "order-2", 1, EVS_FORWARD, 1), 0);
	ck_assert_int_eq(info.created_us, c.v[0].timestamp_us);

	ck_assert_int_eq(evs_stream_info_get(&info, g_s, "user-1"), 0);
	ck_assert_uint_eq(info.last_version, 2);
	ck_assert_uint_eq(info.first_position, 2);
	ck_assert_uint_eq(info.last_position, 7);
	ck_assert_int_eq(rd_stream(&c, g_s, "user-1", 1, EVS_FORWARD, 1), 0);
	ck_assert_int_eq(info.created_us, c.v[0].timestamp_us);

	ck_assert_int_eq(evs_stream_info_get(&info, g_s, "order"), 0);
	ck_assert_uint_eq(info.last_version, 1);
	ck_assert_uint_eq(info.first_position, 5);
	ck_assert_uint_eq(info.last_position, 5);

	/* A name that is a prefix of others is not them. */
	memset(&info, 0xab, sizeof(info));
	ck_assert_int_eq(evs_stream_info_get(&info, g_s, "order-"), 0);
	ck_assert_int_eq(info.exists, 0);
	ck_assert_uint_eq(info.last_version, 0);
	ck_assert_uint_eq(info.event_count, 0);
	coll_free(&c);
}
END_TEST

/* evs_metrics counts each append by its outcome, and each group's size,
 * bytes and fdatasync; a read-only handle counts nothing. */
START_TEST(test_metrics)
{
	static const uint8_t id[16] = { 0x01, 0x93, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 7 };
	evs_new_event e1[1] = { mkev("Opened", "{\"a\":1}") };
	evs_new_event e3[3] = { mkev("A", "{}"), mkev("B", "{}"), mkev("C", "{}") };
	evs_new_event withid = { "Once", "{}", NULL, id, 0 };
	evs_store *s, *ro;
	evs_metrics m;
	evs_stats st;
	uint64_t sum;

	evs_close(g_s);
	tu_rmdir(g_dir);
	ck_assert_int_eq(mkdir(g_dir, 0700), 0);
	g_s = s = tu_open(g_dir, TEST_SEG, 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(evs_metrics_get(&m, s), 0);
	ck_assert_uint_eq(m.appends_ok + m.groups + m.syncs + m.bytes_written, 0);

	ck_assert_int_eq(evs_append(s, "met-1", EVS_EXPECT_NO_STREAM, e1, 1, NULL), 0);
	ck_assert_int_eq(evs_append(s, "met-2", EVS_EXPECT_ANY, e3, 3, NULL), 0);
	ck_assert_int_eq(evs_append(s, "met-3", EVS_EXPECT_ANY, &withid, 1, NULL), 0);
	/* the same id again: idempotent, nothing written */
	ck_assert_int_eq(evs_append(s, "met-3", EVS_EXPECT_ANY, &withid, 1, NULL), 0);
	ck_assert_int_eq(evs_append(s, "met-1", EVS_EXPECT_NO_STREAM, e1, 1, NULL),
			 EVS_ECONFLICT);
	ck_assert_int_eq(evs_append(s, "met-1", EVS_EXPECT_ANY, e1, 0, NULL), EVS_EINVAL);
	ck_assert_int_eq(evs_append(s, "", EVS_EXPECT_ANY, e1, 1, NULL), EVS_EINVAL);
	ck_assert_int_eq(evs_append(s, "met-1", EVS_EXPECT_ANY, &(evs_new_event){ "T", "[]",
			 NULL, NULL, 0 }, 1, NULL), EVS_EINVAL);

	ck_assert_int_eq(evs_metrics_get(&m, s), 0);
	ck_assert_uint_eq(m.appends_ok, 3);
	ck_assert_uint_eq(m.appends_idempotent, 1);
	ck_assert_uint_eq(m.appends_conflict, 1);
	ck_assert_uint_eq(m.appends_invalid, 3);
	ck_assert_uint_eq(m.appends_failed, 0);
	ck_assert_uint_eq(m.events_appended, 5);
	ck_assert_uint_eq(m.events_idempotent, 1);
	ck_assert_uint_eq(m.events_conflict, 1);
	ck_assert_uint_eq(m.events_invalid, 2); /* the empty append counts none */
	ck_assert_uint_eq(m.events_failed, 0);
	/* one thread: each written append was a group of its own */
	ck_assert_uint_eq(m.groups, 3);
	ck_assert_uint_eq(m.group_appends, 3);
	ck_assert_uint_eq(m.group_buckets[0], 3);
	sum = 0;
	for (int i = 0; i < EVS_METRICS_GROUP_BUCKETS; i++)
		sum += m.group_buckets[i];
	ck_assert_uint_eq(sum, 3);
	ck_assert_uint_eq(m.syncs, 3);
	sum = 0;
	for (int i = 0; i < EVS_METRICS_SYNC_BUCKETS; i++)
		sum += m.sync_buckets[i];
	ck_assert_uint_eq(sum, 3);
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(m.bytes_written, st.log_bytes);
	ck_assert_int_eq(m.failed, 0);

	ro = open_read_only(g_dir);
	ck_assert_int_eq(evs_metrics_get(&m, ro), 0);
	ck_assert_uint_eq(m.appends_ok + m.events_appended + m.groups + m.syncs, 0);
	evs_close(ro);
	ck_assert_int_eq(evs_metrics_get(NULL, s), EVS_EINVAL);
	ck_assert_int_eq(evs_metrics_get(&m, NULL), EVS_EINVAL);
}
END_TEST

START_TEST(test_stats)
{
	evs_new_event e1[1] = { mkev("Opened", "{\"a\":1}") };
	evs_new_event e3[3] = { { "A", "{}", "{\"m\":1}", NULL, 0 }, mkev("BB", "{\"b\":[1,2]}"),
				mkev("CCC", "{\"c\":\"x\"}") };
	uint64_t bytes = 0;
	evs_stats st;

	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 0);
	ck_assert_uint_eq(st.streams, 0);
	ck_assert_uint_eq(st.batches, 0);
	ck_assert_uint_eq(st.log_bytes, 0);
	ck_assert_uint_eq(st.recovered_batches, 0);
	ck_assert_uint_eq(st.truncated_bytes, 0);

	ck_assert_int_eq(evs_append(g_s, "stat-1", EVS_EXPECT_ANY, e1, 1, NULL), 0);
	bytes += batch_bytes("stat-1", e1, 1);
	ck_assert_int_eq(evs_append(g_s, "stat-22", EVS_EXPECT_ANY, e3, 3, NULL), 0);
	bytes += batch_bytes("stat-22", e3, 3);
	ck_assert_int_eq(evs_append(g_s, "stat-1", EVS_EXPECT_ANY, e3, 2, NULL), 0);
	bytes += batch_bytes("stat-1", e3, 2);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 6);
	ck_assert_uint_eq(st.streams, 2);
	ck_assert_uint_eq(st.batches, 3);
	ck_assert_uint_eq(st.segments, 1);
	ck_assert_uint_eq(st.segments, tu_segment_count(g_dir));
	ck_assert_uint_eq(st.log_bytes, bytes);
	ck_assert_uint_eq(st.recovered_batches, 0);

	/* A failed append changes nothing. */
	ck_assert_int_eq(evs_append(g_s, "stat-1", EVS_EXPECT_NO_STREAM, e1, 1, NULL),
			 EVS_ECONFLICT);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 6);
	ck_assert_uint_eq(st.batches, 3);
	ck_assert_uint_eq(st.log_bytes, bytes);

	/* A clean reopen recovers nothing and reports the same. */
	evs_close(g_s);
	g_s = tu_open(g_dir, TEST_SEG, 0);
	ck_assert_ptr_nonnull(g_s);
	ck_assert_int_eq(evs_stats_get(&st, g_s), 0);
	ck_assert_uint_eq(st.head_position, 6);
	ck_assert_uint_eq(st.streams, 2);
	ck_assert_uint_eq(st.batches, 3);
	ck_assert_uint_eq(st.segments, 1);
	ck_assert_uint_eq(st.log_bytes, bytes);
	ck_assert_uint_eq(st.recovered_batches, 0);
	ck_assert_uint_eq(st.truncated_bytes, 0);
}
END_TEST

START_TEST(test_category)
{
	char out[16];

	ck_assert_uint_eq(evs_category(out, sizeof(out), "order-42"), 5);
	ck_assert_str_eq(out, "order");
	ck_assert_uint_eq(evs_category(out, sizeof(out), "order-42-line-1"), 5);
	ck_assert_str_eq(out, "order");
	ck_assert_uint_eq(evs_category(out, sizeof(out), "order"), 5);
	ck_assert_str_eq(out, "order");
	ck_assert_uint_eq(evs_category(out, sizeof(out), "-x"), 0);
	ck_assert_str_eq(out, "");
	ck_assert_uint_eq(evs_category(out, sizeof(out), "a-"), 1);
	ck_assert_str_eq(out, "a");
	/* Truncated to fit, NUL included; the full length is returned. */
	ck_assert_uint_eq(evs_category(out, 4, "customer-1"), 8);
	ck_assert_str_eq(out, "cus");
	ck_assert_uint_eq(evs_category(out, 9, "customer-1"), 8);
	ck_assert_str_eq(out, "customer");
	ck_assert_uint_eq(evs_category(out, 8, "customer-1"), 8);
	ck_assert_str_eq(out, "custome");
	ck_assert_uint_eq(evs_category(out, 1, "customer-1"), 8);
	ck_assert_str_eq(out, "");
	memcpy(out, "untouched", 10);
	ck_assert_uint_eq(evs_category(out, 0, "customer-1"), 8);
	ck_assert_str_eq(out, "untouched");
	ck_assert_uint_eq(evs_category(NULL, 0, "abcdefghijklmnopqrstuvwxyz-1"), 26);
}
END_TEST

START_TEST(test_uuid)
{
	static const uint8_t known[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
					   0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
	static const char *const bad[] = {
		"",
		"00112233-4455-6677-8899-aabbccddeef",     /* 35 */
		"00112233-4455-6677-8899-aabbccddeeff0",   /* 37 */
		"00112233x4455-6677-8899-aabbccddeeff",    /* no dash at 8 */
		"00112233-4455-6677-8899+aabbccddeeff",    /* no dash at 23 */
		"001122334-455-6677-8899-aabbccddeeff",    /* dash moved */
		"0011223g-4455-6677-8899-aabbccddeeff",    /* not hex */
		"00112233-4455-6677-8899-aabbccddeef ",    /* space */
		"{0112233-4455-6677-8899-aabbccddeef}",
		"00112233445566778899aabbccddeeff",        /* no dashes */
	};
	char text[37];
	uint8_t id[16], back[16];

	evs_uuid_format(text, known);
	ck_assert_str_eq(text, "00112233-4455-6677-8899-aabbccddeeff");
	ck_assert_int_eq(evs_uuid_parse(back, text), 0);
	ck_assert_mem_eq(back, known, 16);

	for (unsigned seed = 0; seed < 64; seed++) {
		for (int i = 0; i < 16; i++)
			id[i] = (uint8_t)(seed * 97u + (unsigned)i * 151u + (seed >> 3));
		evs_uuid_format(text, id);
		ck_assert_uint_eq(strlen(text), 36);
		for (int i = 0; i < 36; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23)
				ck_assert_int_eq(text[i], '-');
			else
				ck_assert_msg((text[i] >= '0' && text[i] <= '9') ||
					      (text[i] >= 'a' && text[i] <= 'f'),
					      "not lowercase hex: %s", text);
		}
		memset(back, 0, sizeof(back));
		ck_assert_int_eq(evs_uuid_parse(back, text), 0);
		ck_assert_mem_eq(back, id, 16);
	}

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(evs_uuid_parse(back, bad[i]) == EVS_EINVAL, "accepted \"%s\"", bad[i]);
		ck_assert_errmsg_set();
	}
	ck_assert_int_eq(evs_uuid_parse(back, NULL), EVS_EINVAL);

	/* A formatted generated id parses back to itself. */
	{
		evs_append_result r;
		coll c = { 0 };
		r = add1(g_s, "uuid-1", "X", "{}");
		ck_assert_uint_eq(r.first_position, 1);
		ck_assert_int_eq(rd_all(&c, g_s, 0, 0, NULL), 0);
		evs_uuid_format(text, c.v[0].id);
		ck_assert_int_eq(text[14], '7');
		ck_assert_int_eq(evs_uuid_parse(back, text), 0);
		ck_assert_mem_eq(back, c.v[0].id, 16);
		coll_free(&c);
	}
}
END_TEST

START_TEST(test_error_names)
{
	/* Written out by hand, so the X-macro list is checked, not echoed. */
	static const struct {
		int code;
		int value;
		const char *name;
		const char *text;
	} codes[] = {
		{ EVS_ECONFLICT, -1, "ECONFLICT", "wrong expected version" },
		{ EVS_ENOTFOUND, -2, "ENOTFOUND", "not found" },
		{ EVS_EINVAL, -3, "EINVAL", "invalid input" },
		{ EVS_ESCHEMA, -4, "ESCHEMA", "schema violation" },
		{ EVS_ETOOLARGE, -5, "ETOOLARGE", "too large" },
		{ EVS_ELOCKED, -6, "ELOCKED", "store is locked by another writer" },
		{ EVS_ECORRUPT, -7, "ECORRUPT", "corrupt data" },
		{ EVS_EIO, -8, "EIO", "I/O error" },
		{ EVS_EFAILED, -9, "EFAILED", "store failed after an I/O error; reopen it" },
		{ EVS_ETIMEOUT, -10, "ETIMEOUT", "timed out" },
		{ EVS_ENOMEM, -11, "ENOMEM", "out of memory" },
		{ EVS_ENOSPC, -12, "ENOSPC", "no space left on device" },
		{ EVS_EREADONLY, -13, "EREADONLY", "store is open read-only" },
		{ EVS_EREJECTED, -14, "EREJECTED", "command rejected" },
	};
	const size_t n = sizeof(codes) / sizeof(codes[0]);
	size_t listed = 0;

	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(codes[i].code, codes[i].value);
		ck_assert_str_eq(evs_errname(codes[i].code), codes[i].name);
		ck_assert_str_eq(evs_strerror(codes[i].code), codes[i].text);
	}
	/* Every code of the list is above, and the list ends at EVS__ERRMIN. */
#define COUNT_CODE(name, value, text) listed++;
	EVS_ERRORS(COUNT_CODE)
#undef COUNT_CODE
	ck_assert_uint_eq(listed, n);
	ck_assert_int_eq(EVS__ERRMIN, -(int)n);
	ck_assert_int_eq(EVS_OK, 0);
	ck_assert_str_eq(evs_errname(0), "OK");
	ck_assert_ptr_nonnull(evs_strerror(0));
	ck_assert_ptr_nonnull(evs_strerror(-999));
	ck_assert_ptr_nonnull(evs_errname(-999));
	ck_assert_ptr_nonnull(evs_errmsg());

	/* evs_version: "MAJOR.MINOR.PATCH". */
	{
		unsigned a, b, c;
		int used = 0;
		ck_assert_int_eq(sscanf(evs_version(), "%u.%u.%u%n", &a, &b, &c, &used), 3);
		ck_assert_uint_eq((size_t)used, strlen(evs_version()));
	}
}
END_TEST

START_TEST(test_verify)
{
	int reports = 0;

	ck_assert_int_eq(evs_verify(g_s, count_report, NULL, &reports), 0);
	ck_assert_int_eq(reports, 0);
	build_mixed(g_s);
	build_s1(g_s);
	ck_assert_int_eq(evs_verify(g_s, count_report, NULL, &reports), 0);
	ck_assert_int_eq(reports, 0);
	ck_assert_int_eq(evs_verify(g_s, NULL, NULL, NULL), 0);
}
END_TEST

/* ============================================================= rebuild */

typedef struct info_row {
	const char *name;
	evs_stream_info info;
} info_row;

START_TEST(test_index_rebuild)
{
	static const char *const streams[] = { "order-1", "order-2", "user-1", "order",
					       "orders-1", "s-1", "x-1", "idem-1", "roll-0",
					       "roll-1", "roll-2" };
	const size_t ns = sizeof(streams) / sizeof(streams[0]);
	info_row before_info[sizeof(streams) / sizeof(streams[0])];
	uint8_t ids[3][16];
	evs_new_event idem[3];
	evs_append_result orig, r;
	evs_stats st0, st1;
	char *dump0, *dump1, *lists0, *cats0, *p;
	int reports = 0;

	g_s = open_with(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	build_mixed(g_s);
	for (int i = 0; i < 3; i++) {
		uuid_of(ids[i], 100 + (unsigned)i);
		idem[i] = (evs_new_event){ "Idem", i == 1 ? "{\"second\":true}" : "{}",
					   i == 2 ? "{\"m\":1}" : NULL, ids[i], (uint32_t)i };
	}
	ck_assert_int_eq(evs_append(g_s, "idem-1", EVS_EXPECT_NO_STREAM, idem, 3, &orig), 0);
	build_s1(g_s);
	for (int i = 0; i < 60; i++) {
		char name[16], data[128];
		snprintf(name, sizeof(name), "roll-%d", i % 3);
		snprintf(data, sizeof(data), "{\"i\":%d,\"pad\":\"%040d\"}", i, i);
		add1(g_s, name, "Filler", data);
	}
	ck_assert_uint_gt(tu_segment_count(g_dir), 1);

	dump0 = tu_dump(g_s);
	ck_assert_ptr_nonnull(dump0);
	lists0 = strdup(list_streams(g_s, NULL, 0, 0));
	cats0 = strdup(list_categories(g_s));
	ck_assert_int_eq(evs_stats_get(&st0, g_s), 0);
	for (size_t i = 0; i < ns; i++) {
		before_info[i].name = streams[i];
		ck_assert_int_eq(evs_stream_info_get(&before_info[i].info, g_s, streams[i]), 0);
		ck_assert_int_eq(before_info[i].info.exists, 1);
	}
	evs_close(g_s);
	g_s = NULL;

	static const char *const files[] = { "index.db", "index.db-wal", "index.db-shm" };
	for (size_t i = 0; i < 3; i++) {
		p = path_in(g_dir, files[i]);
		unlink(p);
		ck_assert(!exists(p));
		free(p);
	}

	g_s = open_with(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	dump1 = tu_dump(g_s);
	ck_assert_ptr_nonnull(dump1);
	ck_assert_str_eq(dump1, dump0);
	ck_assert_str_eq(list_streams(g_s, NULL, 0, 0), lists0);
	ck_assert_str_eq(list_categories(g_s), cats0);
	ck_assert_int_eq(evs_stats_get(&st1, g_s), 0);
	ck_assert_uint_eq(st1.head_position, st0.head_position);
	ck_assert_uint_eq(st1.streams, st0.streams);
	ck_assert_uint_eq(st1.batches, st0.batches);
	ck_assert_uint_eq(st1.segments, st0.segments);
	ck_assert_uint_eq(st1.log_bytes, st0.log_bytes);
	ck_assert_uint_eq(st1.recovered_batches, st0.batches);
	ck_assert_uint_eq(st1.truncated_bytes, 0);
	for (size_t i = 0; i < ns; i++) {
		evs_stream_info info;
		const evs_stream_info *b = &before_info[i].info;
		ck_assert_int_eq(evs_stream_info_get(&info, g_s, streams[i]), 0);
		ck_assert_int_eq(info.exists, b->exists);
		ck_assert_uint_eq(info.last_version, b->last_version);
		ck_assert_uint_eq(info.event_count, b->event_count);
		ck_assert_uint_eq(info.first_position, b->first_position);
		ck_assert_uint_eq(info.last_position, b->last_position);
		ck_assert_int_eq(info.created_us, b->created_us);
	}
	ck_assert_int_eq(evs_verify(g_s, count_report, NULL, &reports), 0);
	ck_assert_int_eq(reports, 0);

	/* The ids are back: the same append is idempotent... */
	ck_assert_int_eq(evs_append(g_s, "idem-1", EVS_EXPECT_NO_STREAM, idem, 3, &r), 0);
	ck_assert_int_eq(r.idempotent, 1);
	ck_assert_uint_eq(r.first_version, orig.first_version);
	ck_assert_uint_eq(r.last_version, orig.last_version);
	ck_assert_uint_eq(r.first_position, orig.first_position);
	ck_assert_uint_eq(r.last_position, orig.last_position);
	/* ...and reusing one elsewhere is refused. */
	ck_assert_int_eq(evs_append(g_s, "idem-2", EVS_EXPECT_ANY, &idem[1], 1, &r), EVS_EINVAL);
	p = tu_dump(g_s);
	ck_assert_str_eq(p, dump0);
	free(p);

	/* The stream heads are back: exact versions go on where they were. */
	ck_assert_int_eq(evs_append(g_s, "s-1", 9, idem, 0, &r), EVS_EINVAL);
	{
		evs_new_event e = mkev("Next", "{}");
		ck_assert_int_eq(evs_append(g_s, "s-1", 8, &e, 1, &r), EVS_ECONFLICT);
		ck_assert_uint_eq(r.current_version, 9);
		ck_assert_int_eq(evs_append(g_s, "s-1", 9, &e, 1, &r), 0);
		ck_assert_uint_eq(r.first_version, 10);
		ck_assert_uint_eq(r.first_position, st0.head_position + 1);
	}
	free(dump0);
	free(dump1);
	free(lists0);
	free(cats0);
}
END_TEST

/* ================================================================ suite */

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	while (d && (e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* A store of many segments does not keep a descriptor open for each one
 * ever read: at most EVS__SEG_FDS_KEPT stay open between reads (the soak
 * found the count growing with the store). */
START_TEST(test_segment_fds_bounded)
{
	evs_store *s = tu_open(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	char data[1024];
	int n = 0;

	memset(data, 0, sizeof(data));
	snprintf(data, sizeof(data), "{\"pad\":\"%0900d\"}", 7);
	for (int i = 0; i < 300; i++) {
		evs_new_event ev = { "Padded", data, NULL, NULL, 1 };
		char stream[32];
		snprintf(stream, sizeof(stream), "pad-%d", i % 10);
		ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL), 0);
	}
	evs_close(s);
	ck_assert_uint_gt(tu_segment_count(g_dir), 3 * EVS__SEG_FDS_KEPT);
	s = tu_open(g_dir, EVS_MIN_SEGMENT_SIZE, 0);
	long before = open_fds();
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, tu_count_cb, &n), 0);
	ck_assert_int_eq(n, 300);
	for (int i = 0; i < 10; i++) {
		char stream[32];
		snprintf(stream, sizeof(stream), "pad-%d", i);
		ck_assert_int_eq(evs_read_stream(s, stream, 0, EVS_BACKWARD, 0, tu_count_cb, &n), 0);
	}
	ck_assert_int_eq(n, 600);
	ck_assert_uint_le(s->nseg_open, EVS__SEG_FDS_KEPT);
	for (size_t i = 0; i < s->nsegs; i++)
		ck_assert_uint_eq(s->segs[i].users, 0);
	/* the index's read connections may add a few */
	ck_assert_int_le(open_fds() - before, EVS__SEG_FDS_KEPT + 8);
	evs_close(s);
}
END_TEST


static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc;

	tc = tcase_create("open");
	tcase_add_checked_fixture(tc, setup_dir, teardown);
	tcase_add_test(tc, test_open_create);
	tcase_add_test(tc, test_open_reopen);
	tcase_add_test(tc, test_open_missing);
	tcase_add_test(tc, test_open_not_a_store);
	tcase_add_test(tc, test_open_file_not_dir);
	tcase_add_test(tc, test_open_bad_options);
	tcase_add_test(tc, test_open_locked);
	tcase_add_test(tc, test_close_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("read_only");
	tcase_add_checked_fixture(tc, setup_store, teardown);
	tcase_add_test(tc, test_open_read_only);
	tcase_add_test(tc, test_open_read_only_index_not_set_up);
	suite_add_tcase(s, tc);

	tc = tcase_create("roundtrip");
	tcase_add_checked_fixture(tc, setup_store, teardown);
	tcase_add_test(tc, test_every_field);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_multi_event_append);
	tcase_add_test(tc, test_read_stream);
	tcase_add_test(tc, test_read_stream_missing);
	tcase_add_test(tc, test_read_callback_stops);
	tcase_add_test(tc, test_read_all);
	tcase_add_test(tc, test_read_all_empty);
	tcase_add_test(tc, test_strings_and_lengths);
	suite_add_tcase(s, tc);

	tc = tcase_create("expected");
	tcase_add_checked_fixture(tc, setup_store, teardown);
	tcase_add_loop_test(tc, test_expected_version, 0,
			    (int)(sizeof(expect_cases) / sizeof(expect_cases[0])));
	tcase_add_test(tc, test_expected_version_sequence);
	suite_add_tcase(s, tc);

	tc = tcase_create("idempotency");
	tcase_add_checked_fixture(tc, setup_ids, teardown);
	tcase_add_test(tc, test_idem_same_ids);
	tcase_add_test(tc, test_idem_across_reopen);
	tcase_add_loop_test(tc, test_idem_refused, 0, REUSE_CASES);
	tcase_add_test(tc, test_idem_duplicate_in_long_append);
	tcase_add_test(tc, test_idem_ranges);
	tcase_add_test(tc, test_id_hash_spreads);
	suite_add_tcase(s, tc);

	tc = tcase_create("validation");
	tcase_add_checked_fixture(tc, setup_val, teardown);
	tcase_add_loop_test(tc, test_bad_input, 0,
			    (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, test_limits_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("segments");
	tcase_add_checked_fixture(tc, setup_dir, teardown);
	tcase_add_test(tc, test_segment_roll);
	tcase_add_test(tc, test_reopen_other_segment_size);
	tcase_add_test(tc, test_segment_fds_bounded);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup_dir, teardown);
	tcase_add_test(tc, test_threads_durability_none);
	tcase_add_test(tc, test_threads_durability_sync);
	suite_add_tcase(s, tc);

	tc = tcase_create("race");
	tcase_add_checked_fixture(tc, setup_store, teardown);
	tcase_add_test(tc, test_conflict_race);
	tcase_add_test(tc, test_new_streams_while_table_grows);
	suite_add_tcase(s, tc);

	tc = tcase_create("info");
	tcase_add_checked_fixture(tc, setup_store, teardown);
	tcase_add_test(tc, test_list_streams);
	tcase_add_test(tc, test_list_categories);
	tcase_add_test(tc, test_stream_info);
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_metrics);
	tcase_add_test(tc, test_category);
	tcase_add_test(tc, test_uuid);
	tcase_add_test(tc, test_error_names);
	tcase_add_test(tc, test_verify);
	suite_add_tcase(s, tc);

	tc = tcase_create("rebuild");
	tcase_add_checked_fixture(tc, setup_dir, teardown);
	tcase_add_test(tc, test_index_rebuild);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return tu_run(store_suite());
}
