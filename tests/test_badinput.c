/*
 * test_badinput.c: bad input at every public entry point changes nothing.
 *
 * A store with two streams and a loaded projection is closed, and the bytes
 * of every file under it are taken.  Then each case opens it, makes one
 * call with bad input (NULL and empty arguments, oversized names and
 * payloads, invalid UTF-8, JSON that is not an object or nests too deep,
 * expected versions that make no sense, unknown projections and queries,
 * parameters of the wrong type, options of an unknown version), checks the
 * documented error and that the message names what was wrong, closes the
 * store, and compares every file's bytes with the ones taken first.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evstore/handle.h"
#include "evstore/projection.h"
#include "evstore/subscribe.h"
#include "evstore/upcast.h"
#include "testutil.h"

static char *dir, *proj_path;

static const char projection_sql[] =
	"-- projection: totals\n"
	"-- setup\n"
	"CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY, n INTEGER NOT NULL);\n"
	"-- on: Added\n"
	"INSERT INTO totals VALUES (:stream, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1;\n"
	"-- query: one\n"
	"SELECT stream, n FROM totals WHERE stream = :stream;\n";

/* ---- the store's bytes ---- */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		ck_assert_ptr_nonnull(b->p);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file under path, in name order: its name, its size and an FNV-1a
 * hash of its bytes, one line each. */
static void take(buf *b, const char *path, const char *rel)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		ck_assert_ptr_nonnull(names);
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		char full[8192], line[9000];
		struct stat st;
		snprintf(full, sizeof(full), "%s/%s", path, names[i]);
		ck_assert_int_eq(lstat(full, &st), 0);
		if (S_ISDIR(st.st_mode)) {
			char sub[8192];
			snprintf(sub, sizeof(sub), "%s%s/", rel, names[i]);
			take(b, full, sub);
		} else {
			size_t size = 0;
			char *bytes = tu_read_file(full, &size);
			uint64_t h = tu_fnv(bytes, bytes ? size : 0);
			free(bytes);
			int len = snprintf(line, sizeof(line), "%s%s %zu %016llx\n", rel, names[i],
					   size, (unsigned long long)h);
			put(b, line, (size_t)len);
		}
		free(names[i]);
	}
	free(names);
}

static char *bytes_of_store(void)
{
	buf b = { NULL, 0, 0 };

	take(&b, dir, "");
	return b.p;
}

/* ---- the store ---- */

static evs_store *open_store(void)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;

	o.segment_size = 64 * 1024;
	ck_assert_msg(evs_open(&s, dir, &o) == 0, "open: %s", evs_errmsg());
	ck_assert_msg(evs_projection_load(s, proj_path, NULL, NULL) == 0, "load: %s",
		      evs_errmsg());
	return s;
}

static void setup(void)
{
	evs_new_event ev[2] = { { "Added", "{\"k\":1}", NULL, NULL, 1 },
				{ "Added", "{\"k\":2}", "{\"by\":\"me\"}", NULL, 1 } };
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	char pd[4200];

	dir = tu_mkdtemp();
	snprintf(pd, sizeof(pd), "%s.sql", dir);
	proj_path = strdup(pd);
	ck_assert_int_eq(tu_write_file(proj_path, projection_sql, strlen(projection_sql)), 0);
	o.create = 1;
	o.segment_size = 64 * 1024;
	ck_assert_int_eq(evs_open(&s, dir, &o), 0);
	ck_assert_int_eq(evs_append(s, "order-1", EVS_EXPECT_NO_STREAM, ev, 2, NULL), 0);
	ck_assert_int_eq(evs_append(s, "order-2", EVS_EXPECT_NO_STREAM, ev, 1, NULL), 0);
	ck_assert_int_eq(evs_projection_load(s, proj_path, NULL, NULL), 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	json_t *rows;
	qo.min_position = 3;
	ck_assert_int_eq(evs_query(s, "totals", "one", NULL, &qo, &rows, NULL), 0);
	json_decref(rows);
	evs_close(s);
	/* once more, so what a first open writes is not blamed on a case */
	evs_close(open_store());
}

static void teardown(void)
{
	tu_rmdir(dir);
	unlink(proj_path);
	free(dir);
	free(proj_path);
}

/* ---- the cases ---- */

static int count_cb(const evs_event *ev, void *ctx)
{
	(void)ev;
	(*(int *)ctx)++;
	return 0;
}

static int name_cb(const char *name, uint64_t last_version, void *ctx)
{
	(void)name;
	(void)last_version;
	(void)ctx;
	return 0;
}

static json_t *d_initial(void *ctx)
{
	(void)ctx;
	return json_object();
}

static json_t *d_evolve(void *ctx, json_t *state, const evs_event *ev, const json_t *data)
{
	(void)ctx;
	(void)ev;
	(void)data;
	return state;
}

static int d_decide(void *ctx, const json_t *state, const json_t *cmd, evs_decision *d)
{
	(void)ctx;
	(void)state;
	(void)cmd;
	return evs_decision_emit(d, "Added", 1, json_pack("{s:i}", "k", 9));
}

static evs_decider decider(void)
{
	evs_decider d = { EVS_DECIDER_VERSION, "order", 1, NULL, d_initial, d_evolve, d_decide,
			  0 };
	return d;
}

static char long_name[300], big_data[(1u << 20) + 64], deep_data[4096];
static uint8_t same_id[16] = { 0x01, 0x8f, 0, 0, 0, 0, 0x70, 0, 0x80 };

static void fill_inputs(void)
{
	memset(long_name, 'a', 256);
	long_name[256] = '\0';
	/* {"x":"aaaa...."}: over the default max_event_size of 1 MiB */
	memcpy(big_data, "{\"x\":\"", 6);
	memset(big_data + 6, 'a', sizeof(big_data) - 9);
	memcpy(big_data + sizeof(big_data) - 3, "\"}", 3);
	/* 513 objects deep: over the checker's limit of 512 */
	size_t k = 0;
	for (int i = 0; i < 513; i++)
		k += (size_t)snprintf(deep_data + k, sizeof(deep_data) - k, "{\"a\":");
	k += (size_t)snprintf(deep_data + k, sizeof(deep_data) - k, "1");
	for (int i = 0; i < 513; i++)
		deep_data[k++] = '}';
	deep_data[k] = '\0';
}

static int append1(evs_store *s, const char *stream, int64_t expected, const char *type,
		   const char *data, const char *metadata)
{
	evs_new_event ev = { type, data, metadata, NULL, 1 };

	return evs_append(s, stream, expected, &ev, 1, NULL);
}

static int c_append_null_store(evs_store *s)
{
	(void)s;
	return append1(NULL, "order-1", EVS_EXPECT_ANY, "Added", "{}", NULL);
}
static int c_append_null_stream(evs_store *s)
{
	return append1(s, NULL, EVS_EXPECT_ANY, "Added", "{}", NULL);
}
static int c_append_empty_stream(evs_store *s)
{
	return append1(s, "", EVS_EXPECT_ANY, "Added", "{}", NULL);
}
static int c_append_long_stream(evs_store *s)
{
	return append1(s, long_name, EVS_EXPECT_ANY, "Added", "{}", NULL);
}
static int c_append_utf8_stream(evs_store *s)
{
	return append1(s, "order-\xc3\x28", EVS_EXPECT_ANY, "Added", "{}", NULL);
}
static int c_append_control_stream(evs_store *s)
{
	return append1(s, "order-\t1", EVS_EXPECT_ANY, "Added", "{}", NULL);
}
static int c_append_null_events(evs_store *s)
{
	return evs_append(s, "order-1", EVS_EXPECT_ANY, NULL, 1, NULL);
}
static int c_append_no_events(evs_store *s)
{
	evs_new_event ev = { "Added", "{}", NULL, NULL, 1 };

	return evs_append(s, "order-1", EVS_EXPECT_ANY, &ev, 0, NULL);
}
static int c_append_null_type(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, NULL, "{}", NULL);
}
static int c_append_empty_type(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "", "{}", NULL);
}
static int c_append_bad_type(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Order Added!", "{}", NULL);
}
static int c_append_long_type(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, long_name, "{}", NULL);
}
static int c_append_null_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", NULL, NULL);
}
static int c_append_array_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", "[1,2]", NULL);
}
static int c_append_number_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", "12", NULL);
}
static int c_append_broken_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", "{\"a\":", NULL);
}
static int c_append_utf8_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", "{\"a\":\"\xc3\x28\"}", NULL);
}
static int c_append_deep_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", deep_data, NULL);
}
static int c_append_big_data(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", big_data, NULL);
}
static int c_append_array_metadata(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_ANY, "Added", "{}", "[]");
}
static int c_append_nonsense_expected(evs_store *s)
{
	return append1(s, "order-1", -99, "Added", "{}", NULL);
}
static int c_append_future_expected(evs_store *s)
{
	return append1(s, "order-1", 1000, "Added", "{}", NULL);
}
static int c_append_no_stream_exists(evs_store *s)
{
	return append1(s, "order-1", EVS_EXPECT_NO_STREAM, "Added", "{}", NULL);
}
static int c_append_exists_missing(evs_store *s)
{
	return append1(s, "order-9", EVS_EXPECT_EXISTS, "Added", "{}", NULL);
}
static int c_append_same_id_twice(evs_store *s)
{
	evs_new_event ev[2] = { { "Added", "{}", NULL, same_id, 1 },
				{ "Added", "{}", NULL, same_id, 1 } };

	return evs_append(s, "order-1", EVS_EXPECT_ANY, ev, 2, NULL);
}
static int c_read_null_stream(evs_store *s)
{
	int n = 0;

	return evs_read_stream(s, NULL, 0, EVS_FORWARD, 0, count_cb, &n);
}
static int c_read_unknown_stream(evs_store *s)
{
	int n = 0;

	return evs_read_stream(s, "order-404", 0, EVS_FORWARD, 0, count_cb, &n);
}
static int c_read_null_cb(evs_store *s)
{
	return evs_read_stream(s, "order-1", 0, EVS_FORWARD, 0, NULL, NULL);
}
static int c_read_bad_direction(evs_store *s)
{
	int n = 0;

	return evs_read_stream(s, "order-1", 0, (evs_direction)7, 0, count_cb, &n);
}
static int c_read_all_null_cb(evs_store *s)
{
	return evs_read_all(s, 1, 0, NULL, NULL, NULL);
}
static int c_read_all_types_missing(evs_store *s)
{
	evs_filter f = { NULL, NULL, 3 };
	int n = 0;

	return evs_read_all(s, 1, 0, &f, count_cb, &n);
}
static int c_info_null_out(evs_store *s)
{
	return evs_stream_info_get(NULL, s, "order-1");
}
static int c_info_null_stream(evs_store *s)
{
	evs_stream_info info;

	return evs_stream_info_get(&info, s, NULL);
}
static int c_list_null_cb(evs_store *s)
{
	return evs_list_streams(s, NULL, 0, NULL, NULL);
}
static int c_categories_null_store(evs_store *s)
{
	(void)s;
	return evs_list_categories(NULL, name_cb, NULL);
}
static int c_handle_null_decider(evs_store *s)
{
	json_t *cmd = json_object();
	int rc = evs_handle(s, NULL, "order-1", cmd, NULL, NULL);

	json_decref(cmd);
	return rc;
}
static int c_handle_bad_version(evs_store *s)
{
	evs_decider d = decider();
	json_t *cmd = json_object();
	int rc;

	d.version = 99;
	rc = evs_handle(s, &d, "order-1", cmd, NULL, NULL);
	json_decref(cmd);
	return rc;
}
static int c_handle_other_category(evs_store *s)
{
	evs_decider d = decider();
	json_t *cmd = json_object();
	int rc = evs_handle(s, &d, "customer-1", cmd, NULL, NULL);

	json_decref(cmd);
	return rc;
}
static int c_handle_null_command(evs_store *s)
{
	evs_decider d = decider();

	return evs_handle(s, &d, "order-1", NULL, NULL, NULL);
}
static int c_load_null_path(evs_store *s)
{
	return evs_projection_load(s, NULL, NULL, NULL);
}
static int c_load_missing_file(evs_store *s)
{
	return evs_projection_load(s, "/nonexistent/evstore/p.sql", NULL, NULL);
}
static int c_load_bad_options(evs_store *s)
{
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;

	po.version = 99;
	return evs_projection_load(s, proj_path, &po, NULL);
}
static int c_query_unknown_projection(evs_store *s)
{
	json_t *rows = NULL;

	return evs_query(s, "nope", "one", NULL, NULL, &rows, NULL);
}
static int c_query_unknown_query(evs_store *s)
{
	json_t *rows = NULL;

	return evs_query(s, "totals", "nope", NULL, NULL, &rows, NULL);
}
static int c_query_array_params(evs_store *s)
{
	json_t *rows = NULL, *p = json_pack("[s]", "order-1");
	int rc = evs_query(s, "totals", "one", p, NULL, &rows, NULL);

	json_decref(p);
	json_decref(rows);
	return rc;
}
static int c_query_string_params(evs_store *s)
{
	json_t *rows = NULL, *p = json_string("order-1");
	int rc = evs_query(s, "totals", "one", p, NULL, &rows, NULL);

	json_decref(p);
	json_decref(rows);
	return rc;
}
static int c_query_null_rows(evs_store *s)
{
	return evs_query(s, "totals", "one", NULL, NULL, NULL, NULL);
}
static int c_query_bad_options(evs_store *s)
{
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	json_t *rows = NULL;

	qo.version = 99;
	return evs_query(s, "totals", "one", NULL, &qo, &rows, NULL);
}
static int c_query_min_position_unreached(evs_store *s)
{
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	json_t *rows = NULL;

	qo.min_position = 1000000;
	qo.timeout_ms = 20;
	return evs_query(s, "totals", "one", NULL, &qo, &rows, NULL);
}
static int c_query_sql_write(evs_store *s)
{
	json_t *rows = NULL;

	return evs_query_sql(s, "totals", "DELETE FROM totals", NULL, NULL, &rows, NULL);
}
static int c_query_sql_null(evs_store *s)
{
	json_t *rows = NULL;

	return evs_query_sql(s, "totals", NULL, NULL, NULL, &rows, NULL);
}
static int c_status_unknown(evs_store *s)
{
	evs_projection_status st;

	return evs_projection_status_get(&st, s, "nope");
}
static int c_parked_unknown(evs_store *s)
{
	json_t *rows = NULL;

	return evs_projection_parked(s, "nope", &rows);
}
static int c_rebuild_unknown(evs_store *s)
{
	return evs_projection_rebuild_loaded(s, "nope", NULL, NULL, NULL);
}
static int c_subscribe_null_cb(evs_store *s)
{
	evs_subscription *sub = NULL;

	return evs_subscribe(&sub, s, NULL, NULL, NULL);
}
static int c_subscribe_bad_options(evs_store *s)
{
	evs_subscription *sub = NULL;
	evs_subscribe_options so = EVS_SUBSCRIBE_OPTIONS_INIT;
	int n = 0;

	so.version = 99;
	return evs_subscribe(&sub, s, &so, count_cb, &n);
}
static int c_upcaster_null_fn(evs_store *s)
{
	return evs_upcaster_add(s, "Added", 1, NULL, NULL);
}
static json_t *up(void *ctx, const char *type, uint32_t from_version, json_t *data)
{
	(void)ctx;
	(void)type;
	(void)from_version;
	return data;
}
static int c_upcaster_bad_type(evs_store *s)
{
	return evs_upcaster_add(s, "", 1, up, NULL);
}
static int c_upcaster_version_0(evs_store *s)
{
	return evs_upcaster_add(s, "Added", 0, up, NULL);
}
static int c_open_null_out(evs_store *s)
{
	evs_options o = EVS_OPTIONS_INIT;

	(void)s;
	return evs_open(NULL, dir, &o);
}
static int c_open_second_writer(evs_store *s)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *t = NULL;

	(void)s;
	return evs_open(&t, dir, &o);
}
static int c_open_bad_version(evs_store *s)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *t = NULL;

	(void)s;
	o.version = 99;
	return evs_open(&t, "/nonexistent/evstore", &o);
}
static int c_open_small_segments(evs_store *s)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *t = NULL;
	char other[4200];

	(void)s;
	snprintf(other, sizeof(other), "%s/../never-made", dir);
	o.create = 1;
	o.segment_size = 100;
	return evs_open(&t, other, &o);
}

typedef struct bad {
	const char *name;
	int (*call)(evs_store *s);
	int want;
	const char *says; /* in evs_errmsg() */
} bad;

static const bad cases[] = {
	{ "append: NULL store", c_append_null_store, EVS_EINVAL, "no store" },
	{ "append: NULL stream", c_append_null_stream, EVS_EINVAL, "stream" },
	{ "append: empty stream", c_append_empty_stream, EVS_EINVAL, "stream" },
	{ "append: 256-byte stream", c_append_long_stream, EVS_EINVAL, "stream" },
	{ "append: invalid UTF-8 stream", c_append_utf8_stream, EVS_EINVAL, "UTF-8" },
	{ "append: control character in stream", c_append_control_stream, EVS_EINVAL,
	  "stream" },
	{ "append: NULL events", c_append_null_events, EVS_EINVAL, "order-1" },
	{ "append: no events", c_append_no_events, EVS_EINVAL, "order-1" },
	{ "append: NULL type", c_append_null_type, EVS_EINVAL, "type" },
	{ "append: empty type", c_append_empty_type, EVS_EINVAL, "type" },
	{ "append: bad type", c_append_bad_type, EVS_EINVAL, "type" },
	{ "append: 256-byte type", c_append_long_type, EVS_EINVAL, "type" },
	{ "append: NULL data", c_append_null_data, EVS_EINVAL, "data" },
	{ "append: array data", c_append_array_data, EVS_EINVAL, "data" },
	{ "append: number data", c_append_number_data, EVS_EINVAL, "data" },
	{ "append: broken data", c_append_broken_data, EVS_EINVAL, "data" },
	{ "append: invalid UTF-8 data", c_append_utf8_data, EVS_EINVAL, "data" },
	{ "append: data 513 deep", c_append_deep_data, EVS_EINVAL, "deep" },
	{ "append: data over 1 MiB", c_append_big_data, EVS_ETOOLARGE, "order-1" },
	{ "append: array metadata", c_append_array_metadata, EVS_EINVAL, "metadata" },
	{ "append: expected version -99", c_append_nonsense_expected, EVS_EINVAL, "-99" },
	{ "append: expected version 1000", c_append_future_expected, EVS_ECONFLICT, "order-1" },
	{ "append: no_stream on a stream", c_append_no_stream_exists, EVS_ECONFLICT, "order-1" },
	{ "append: exists on no stream", c_append_exists_missing, EVS_ECONFLICT, "order-9" },
	{ "append: one id twice", c_append_same_id_twice, EVS_EINVAL, "id" },
	{ "read: NULL stream", c_read_null_stream, EVS_EINVAL, "stream" },
	{ "read: unknown stream", c_read_unknown_stream, EVS_ENOTFOUND, "order-404" },
	{ "read: NULL callback", c_read_null_cb, EVS_EINVAL, "cb is NULL" },
	{ "read: direction 7", c_read_bad_direction, EVS_EINVAL, "direction" },
	{ "read all: NULL callback", c_read_all_null_cb, EVS_EINVAL, "cb is NULL" },
	{ "read all: 3 types, none given", c_read_all_types_missing, EVS_EINVAL, "types" },
	{ "stream info: NULL out", c_info_null_out, EVS_EINVAL, "NULL" },
	{ "stream info: NULL stream", c_info_null_stream, EVS_EINVAL, "stream name: NULL" },
	{ "list streams: NULL callback", c_list_null_cb, EVS_EINVAL, "cb is NULL" },
	{ "categories: NULL store", c_categories_null_store, EVS_EINVAL, "NULL" },
	{ "handle: NULL decider", c_handle_null_decider, EVS_EINVAL, "d is NULL" },
	{ "handle: decider version 99", c_handle_bad_version, EVS_EINVAL, "version" },
	{ "handle: stream of another category", c_handle_other_category, EVS_EINVAL,
	  "customer-1" },
	{ "handle: NULL command", c_handle_null_command, EVS_EINVAL, "command is NULL" },
	{ "projection load: NULL path", c_load_null_path, EVS_EINVAL, "NULL" },
	{ "projection load: missing file", c_load_missing_file, EVS_EINVAL,
	  "/nonexistent/evstore/p.sql" },
	{ "projection load: options version 99", c_load_bad_options, EVS_EINVAL, "version" },
	{ "query: unknown projection", c_query_unknown_projection, EVS_ENOTFOUND, "nope" },
	{ "query: unknown query", c_query_unknown_query, EVS_ENOTFOUND, "nope" },
	{ "query: params an array", c_query_array_params, EVS_EINVAL, "object" },
	{ "query: params a string", c_query_string_params, EVS_EINVAL, "object" },
	{ "query: NULL rows", c_query_null_rows, EVS_EINVAL, "NULL" },
	{ "query: options version 99", c_query_bad_options, EVS_EINVAL, "version" },
	{ "query: min_position never reached", c_query_min_position_unreached, EVS_ETIMEOUT,
	  "1000000" },
	{ "query sql: a write", c_query_sql_write, EVS_EINVAL, "not authorized" },
	{ "query sql: NULL", c_query_sql_null, EVS_EINVAL, "NULL" },
	{ "projection status: unknown", c_status_unknown, EVS_ENOTFOUND, "nope" },
	{ "parked: unknown projection", c_parked_unknown, EVS_ENOTFOUND, "nope" },
	{ "rebuild: unknown projection", c_rebuild_unknown, EVS_ENOTFOUND, "nope" },
	{ "subscribe: NULL callback", c_subscribe_null_cb, EVS_EINVAL, "cb is NULL" },
	{ "subscribe: options version 99", c_subscribe_bad_options, EVS_EINVAL, "version" },
	{ "upcaster: NULL function", c_upcaster_null_fn, EVS_EINVAL, "fn is NULL" },
	{ "upcaster: empty type", c_upcaster_bad_type, EVS_EINVAL, "type" },
	{ "upcaster: from version 0", c_upcaster_version_0, EVS_EINVAL, "versions start at 1" },
	{ "open: NULL out", c_open_null_out, EVS_EINVAL, "out is NULL" },
	{ "open: a second writer", c_open_second_writer, EVS_ELOCKED, "locked" },
	{ "open: options version 99", c_open_bad_version, EVS_EINVAL, "version" },
	{ "open: 100-byte segments", c_open_small_segments, EVS_EINVAL, "segment" },
};

START_TEST(test_bad_input)
{
	const bad *c = &cases[_i];
	char *before = bytes_of_store(), *after;
	evs_store *s = open_store();
	int rc = c->call(s);

	ck_assert_msg(rc == c->want, "%s: %s (%s), wanted %s", c->name, evs_errname(rc),
		      evs_errmsg(), evs_errname(c->want));
	ck_assert_msg(strstr(evs_errmsg(), c->says) != NULL, "%s: the message \"%s\" does not "
		      "say \"%s\"", c->name, evs_errmsg(), c->says);
	evs_close(s);
	after = bytes_of_store();
	ck_assert_msg(strcmp(before, after) == 0, "%s changed the store:\nbefore:\n%s\nafter:\n%s",
		      c->name, before, after);
	free(before);
	free(after);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("badinput");
	TCase *tc = tcase_create("badinput");

	fill_inputs();
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_bad_input, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	suite_add_tcase(su, tc);
	return tu_run(su);
}
