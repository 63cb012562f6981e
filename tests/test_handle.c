/*
 * test_handle.c: command handling (evs_handle) with a small counter
 * decider: decide/evolve round trips, rejections, conflict retries (forced
 * and raced), idempotent commands, metadata stamping, schema checks and
 * every way a decider can fail.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "testutil.h"

/*
 * The counter: state {"count": n}; Added {"k": k} adds k.  A command
 * {"add": k} emits Added, rejected when k < 1 or the count would pass 10
 * (unless "no_limit").  Other command fields select misbehaviour.
 */
typedef struct counter {
	evs_store *store;
	int interfere;          /* this many decides append behind our back */
	int decides;
	int evolves;
} counter;

static json_t *c_initial(void *ctx)
{
	(void)ctx;
	return json_pack("{s:i}", "count", 0);
}

static json_t *c_evolve(void *ctx, json_t *state, const evs_event *ev, const json_t *data)
{
	counter *c = ctx;

	__atomic_add_fetch(&c->evolves, 1, __ATOMIC_SEQ_CST);
	if (ev->type_len == 6 && memcmp(ev->type, "Poison", 6) == 0) {
		json_decref(state);
		return NULL;
	}
	json_int_t n = json_integer_value(json_object_get(state, "count"));
	json_object_set_new(state, "count",
			    json_integer(n + json_integer_value(json_object_get(data, "k"))));
	return state;
}

static int c_decide(void *ctx, const json_t *state, const json_t *cmd, evs_decision *d)
{
	counter *c = ctx;
	json_int_t k = json_integer_value(json_object_get(cmd, "add"));
	json_int_t n = json_integer_value(json_object_get(state, "count"));

	__atomic_add_fetch(&c->decides, 1, __ATOMIC_SEQ_CST);
	if (c->interfere > 0) {
		evs_new_event ev = { "Added", "{\"k\":100}", NULL, NULL, 1 };
		c->interfere--;
		ck_assert_int_eq(evs_append(c->store, json_string_value(json_object_get(cmd,
				 "stream")), EVS_EXPECT_ANY, &ev, 1, NULL), 0);
	}
	if (json_object_get(cmd, "fail"))
		return EVS_ETIMEOUT;
	if (json_object_get(cmd, "noop"))
		return 0;
	if (json_object_get(cmd, "bad_emit")) {
		evs_decision_emit(d, "Added", 1, json_array());
		return 0;
	}
	if (json_object_get(cmd, "bad_data"))
		return evs_decision_emit(d, "Added", 1, json_pack("{s:s}", "k", "x"));
	if (json_object_get(cmd, "poison"))
		return evs_decision_emit(d, "Poison", 1, json_object());
	if (k < 1) {
		evs_decision_reject(d, "bad_amount", "cannot add %lld", (long long)k);
		return 0;
	}
	if (n + k > 10 && !json_object_get(cmd, "no_limit")) {
		evs_decision_reject(d, "over_limit", "%lld + %lld is over 10", (long long)n,
				    (long long)k);
		return 0;
	}
	for (json_int_t i = 0; i < (json_object_get(cmd, "twice") ? 2 : 1); i++)
		evs_decision_emit(d, "Added", 1, json_pack("{s:I}", "k", k));
	return 0;
}

static evs_decider decider(counter *c)
{
	evs_decider d = { EVS_DECIDER_VERSION, "counter", 1, c, c_initial, c_evolve, c_decide, 0 };
	return d;
}

/* The count as the stream's events say, summed here. */
static int sum_cb(const evs_event *ev, void *ctx)
{
	json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
	*(long long *)ctx += json_integer_value(json_object_get(data, "k"));
	json_decref(data);
	return 0;
}

static long long stream_sum(evs_store *s, const char *stream)
{
	long long sum = 0;
	ck_assert_int_eq(evs_read_stream(s, stream, 1, EVS_FORWARD, 0, sum_cb, &sum), 0);
	return sum;
}

static uint64_t version_of(evs_store *s, const char *stream)
{
	evs_stream_info info;
	ck_assert_int_eq(evs_stream_info_get(&info, s, stream), 0);
	return info.last_version;
}

static int handle(evs_store *s, counter *c, const char *stream, const char *cmd_text,
		  const evs_handle_options *o, evs_handle_result *r)
{
	evs_decider d = decider(c);
	json_t *cmd = json_loads(cmd_text, 0, NULL);
	int rc;

	ck_assert_ptr_nonnull(cmd);
	json_object_set_new(cmd, "stream", json_string(stream));
	rc = evs_handle(s, &d, stream, cmd, o, r);
	json_decref(cmd);
	return rc;
}

START_TEST(test_round_trip)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { s, 0, 0, 0 };
	evs_handle_result r;

	for (int k = 1; k <= 3; k++) {
		char cmd[32];
		snprintf(cmd, sizeof(cmd), "{\"add\":%d}", k);
		ck_assert_int_eq(handle(s, &c, "counter-1", cmd, NULL, &r), 0);
		ck_assert_int_eq(r.attempts, 1);
		ck_assert_int_eq(r.idempotent, 0);
		ck_assert_uint_eq(r.events, 1);
		ck_assert_uint_eq(r.first_version, (uint64_t)k);
		ck_assert_uint_eq(r.last_version, (uint64_t)k);
		ck_assert_uint_eq(r.first_position, (uint64_t)k);
		ck_assert_uint_eq(r.stream_version, (uint64_t)k);
	}
	/* two events in one command */
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":1,\"twice\":1}", NULL, &r), 0);
	ck_assert_uint_eq(r.events, 2);
	ck_assert_uint_eq(r.first_version, 4);
	ck_assert_uint_eq(r.last_version, 5);
	/* the state is the fold of the events: 1+2+3+1+1 = 8, and 8 + 3 > 10 */
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":3}", NULL, &r), EVS_EREJECTED);
	ck_assert_str_eq(r.code, "over_limit");
	ck_assert_str_eq(r.reason, "8 + 3 is over 10");
	ck_assert_uint_eq(r.stream_version, 5);
	ck_assert_uint_eq(r.events, 0);
	ck_assert_str_eq(evs_errmsg(), "stream 'counter-1': command rejected at version 5: "
			 "over_limit: 8 + 3 is over 10");
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":0}", NULL, &r), EVS_EREJECTED);
	ck_assert_str_eq(r.code, "bad_amount");
	ck_assert_str_eq(r.reason, "cannot add 0");
	ck_assert_uint_eq(version_of(s, "counter-1"), 5);
	ck_assert_int_eq(stream_sum(s, "counter-1"), 8);

	/* nothing to do: success, nothing appended, no stream made */
	ck_assert_int_eq(handle(s, &c, "counter-2", "{\"noop\":1}", NULL, &r), 0);
	ck_assert_uint_eq(r.events, 0);
	ck_assert_uint_eq(r.stream_version, 0);
	ck_assert_uint_eq(version_of(s, "counter-2"), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static int meta_cb(const evs_event *ev, void *ctx)
{
	*(json_t **)ctx = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
	return 1;
}

START_TEST(test_metadata)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { s, 0, 0, 0 };
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result r;
	json_t *m = NULL, *want;

	o.command_id = "cmd-1";
	o.correlation_id = "corr-1";
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":1}", &o, &r), 0);
	ck_assert_int_eq(evs_read_stream(s, "counter-1", 1, EVS_FORWARD, 0, meta_cb, &m), 0);
	want = json_pack("{s:s, s:s, s:s}", "correlation_id", "corr-1", "causation_id", "cmd-1",
			 "command_id", "cmd-1");
	ck_assert_msg(json_equal(m, want), "metadata %s", json_dumps(m, 0));
	json_decref(m);
	json_decref(want);

	/* no command id: a fresh correlation id, no causation */
	m = NULL;
	ck_assert_int_eq(handle(s, &c, "counter-2", "{\"add\":1}", NULL, &r), 0);
	ck_assert_int_eq(evs_read_stream(s, "counter-2", 1, EVS_FORWARD, 0, meta_cb, &m), 0);
	ck_assert_int_eq(json_object_size(m), 1);
	uint8_t id[16];
	ck_assert_int_eq(evs_uuid_parse(id, json_string_value(json_object_get(m,
					"correlation_id"))), 0);
	json_decref(m);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static int id_cb(const evs_event *ev, void *ctx)
{
	memcpy(ctx, ev->id, 16);
	return 1;
}

START_TEST(test_idempotent)
{
	char *dir = tu_mkdtemp(), *dir2 = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0), *s2 = tu_open(dir2, 0, 0);
	counter c = { s, 0, 0, 0 }, c2 = { s2, 0, 0, 0 };
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result r, r2;
	uint8_t id1[16], id2[16];

	o.command_id = "add-two";
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":2,\"twice\":1}", &o, &r), 0);
	ck_assert_uint_eq(r.events, 2);
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":1}", NULL, NULL), 0);
	/* the same command again: found, not decided again (2+2+1+2+2 would
	 * be fine, so a second decision would append) */
	c.decides = 0;
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":2,\"twice\":1}", &o, &r2), 0);
	ck_assert_int_eq(c.decides, 0);
	ck_assert_int_eq(r2.idempotent, 1);
	ck_assert_uint_eq(r2.events, 2);
	ck_assert_uint_eq(r2.first_version, 1);
	ck_assert_uint_eq(r2.last_version, 2);
	ck_assert_uint_eq(r2.first_position, r.first_position);
	ck_assert_uint_eq(r2.last_position, r.last_position);
	ck_assert_uint_eq(r2.stream_version, 3);
	ck_assert_uint_eq(version_of(s, "counter-1"), 3);
	ck_assert_int_eq(stream_sum(s, "counter-1"), 5);

	/* the ids depend on stream, command id and index only */
	ck_assert_int_eq(handle(s2, &c2, "counter-1", "{\"add\":7}", &o, &r), 0);
	ck_assert_int_eq(evs_read_stream(s, "counter-1", 1, EVS_FORWARD, 0, id_cb, id1), 0);
	ck_assert_int_eq(evs_read_stream(s2, "counter-1", 1, EVS_FORWARD, 0, id_cb, id2), 0);
	ck_assert_mem_eq(id1, id2, 16);
	ck_assert_int_eq(id1[6] >> 4, 8);
	/* another stream, the same command id: other ids */
	ck_assert_int_eq(handle(s2, &c2, "counter-2", "{\"add\":7}", &o, &r), 0);
	ck_assert_int_eq(r.idempotent, 0);
	ck_assert_int_eq(evs_read_stream(s2, "counter-2", 1, EVS_FORWARD, 0, id_cb, id2), 0);
	ck_assert_int_ne(memcmp(id1, id2, 16), 0);
	evs_close(s);
	evs_close(s2);
	tu_rmdir(dir);
	tu_rmdir(dir2);
	free(dir);
	free(dir2);
}
END_TEST

START_TEST(test_conflict_retry)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { s, 1, 0, 0 };
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result r;

	/* the first decision loses to an append made meanwhile; the retry
	 * decides on the state that includes it */
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":1,\"no_limit\":1}", NULL, &r), 0);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_int_eq(c.decides, 2);
	ck_assert_uint_eq(r.first_version, 2);
	ck_assert_int_eq(stream_sum(s, "counter-1"), 101);
	/* the retry saw the new state: 101 + 1 is over 10 */
	c.interfere = 1;
	ck_assert_int_eq(handle(s, &c, "counter-2", "{\"add\":1}", NULL, &r), EVS_EREJECTED);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_str_eq(r.reason, "100 + 1 is over 10");

	/* always losing: gives up after max_attempts */
	c.interfere = 100;
	o.max_attempts = 3;
	o.backoff_us = 1;
	ck_assert_int_eq(handle(s, &c, "counter-3", "{\"add\":1,\"no_limit\":1}", &o, &r),
			 EVS_ECONFLICT);
	ck_assert_int_eq(r.attempts, 3);
	ck_assert_str_eq(evs_errmsg(), "stream 'counter-3': still conflicting after 3 "
			 "attempts (the stream is at version 3)");
	ck_assert_uint_eq(version_of(s, "counter-3"), 3);
	ck_assert_int_eq(stream_sum(s, "counter-3"), 300);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

#define RACERS 4
#define RACE_COMMANDS 50

typedef struct racer {
	evs_store *s;
	counter *c;
	int attempts;
	uint64_t versions[RACE_COMMANDS];
	int rc;
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result res;

	o.max_attempts = 10000;
	o.backoff_us = 50;
	for (int i = 0; i < RACE_COMMANDS && !r->rc; i++) {
		r->rc = handle(r->s, r->c, "counter-race", "{\"add\":1,\"no_limit\":1}", &o, &res);
		r->attempts += res.attempts;
		r->versions[i] = res.first_version;
	}
	return NULL;
}

/* Racing handlers on one stream end as a serial run would: every command
 * applied once, versions dense. */
START_TEST(test_race)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { s, 0, 0, 0 };
	racer r[RACERS];
	pthread_t th[RACERS];
	uint8_t seen[RACERS * RACE_COMMANDS + 1] = { 0 };
	int attempts = 0;

	for (int i = 0; i < RACERS; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].s = s;
		r[i].c = &c;
		ck_assert_int_eq(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < RACERS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < RACERS; i++) {
		ck_assert_int_eq(r[i].rc, 0);
		attempts += r[i].attempts;
		for (int k = 0; k < RACE_COMMANDS; k++) {
			uint64_t v = r[i].versions[k];
			ck_assert(v >= 1 && v <= RACERS * RACE_COMMANDS);
			ck_assert_int_eq(seen[v], 0);
			seen[v] = 1;
		}
	}
	ck_assert_int_eq(c.decides, attempts);
	ck_assert_uint_eq(version_of(s, "counter-race"), RACERS * RACE_COMMANDS);
	ck_assert_int_eq(stream_sum(s, "counter-race"), RACERS * RACE_COMMANDS);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_errors)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { s, 0, 0, 0 };
	evs_decider d = decider(&c);
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result r;
	json_t *cmd = json_pack("{s:i}", "add", 1);
	evs_new_event poison = { "Poison", "{}", NULL, NULL, 1 };

	ck_assert_int_eq(evs_handle(s, &d, "order-1", cmd, NULL, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_handle: stream 'order-1' is not in category "
			 "'counter' of the decider (streams are 'counter-<id>')");
	ck_assert_int_eq(evs_handle(s, &d, "counter", cmd, NULL, &r), EVS_EINVAL);
	ck_assert_int_eq(evs_handle(s, &d, "counter-", cmd, NULL, &r), EVS_EINVAL);
	d.decide = NULL;
	ck_assert_int_eq(evs_handle(s, &d, "counter-1", cmd, NULL, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_handle: decider 'counter' is incomplete (version "
			 "1, expected 1, with category, initial, evolve and decide)");
	d = decider(&c);
	o.version = 2;
	ck_assert_int_eq(evs_handle(s, &d, "counter-1", cmd, &o, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_handle: options version 2, expected 1");
	o.version = EVS_HANDLE_OPTIONS_VERSION;
	o.command_id = "";
	ck_assert_int_eq(evs_handle(s, &d, "counter-1", cmd, &o, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_handle: empty command id");
	ck_assert_int_eq(evs_handle(s, &d, "counter-1", NULL, NULL, &r), EVS_EINVAL);

	/* decide's own error passes through; a bad emit fails the command */
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"fail\":1}", NULL, &r), EVS_ETIMEOUT);
	ck_assert_str_eq(evs_errmsg(), "decider 'counter': decide failed on stream "
			 "'counter-1' version 0 (-10)");
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"bad_emit\":1}", NULL, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_decision_emit: the data of event 1 ('Added') is "
			 "not a JSON object");
	ck_assert_uint_eq(version_of(s, "counter-1"), 0);

	/* evolve failing on a stored event */
	ck_assert_int_eq(evs_append(s, "counter-9", EVS_EXPECT_ANY, &poison, 1, NULL), 0);
	ck_assert_int_eq(handle(s, &c, "counter-9", "{\"add\":1}", NULL, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "decider 'counter': evolve returned NULL for stream "
			 "'counter-9' version 1 (Poison)");
	ck_assert_uint_eq(version_of(s, "counter-9"), 1);
	json_decref(cmd);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* The store's schemas check what a decider emits. */
START_TEST(test_schemas)
{
	char *dir = tu_mkdtemp(), *sd = tu_mkdtemp(), path[4200];
	const char *schema = "{\"type\":\"object\",\"required\":[\"k\"],"
			     "\"properties\":{\"k\":{\"type\":\"integer\"}}}";
	counter c = { NULL, 0, 0, 0 };
	evs_options opts = EVS_OPTIONS_INIT;
	evs_handle_result r;
	evs_store *s;

	snprintf(path, sizeof(path), "%s/Added.v1.json", sd);
	ck_assert_int_eq(tu_write_file(path, schema, strlen(schema)), 0);
	opts.create = 1;
	opts.durability = EVS_DURABILITY_NONE;
	opts.schema_dir = sd;
	ck_assert_int_eq(evs_open(&s, dir, &opts), 0);
	c.store = s;
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"add\":1}", NULL, &r), 0);
	ck_assert_int_eq(handle(s, &c, "counter-1", "{\"bad_data\":1}", NULL, &r), EVS_ESCHEMA);
	ck_assert_str_eq(evs_errmsg(), "stream 'counter-1', event 1 (Added v1): /k: type: "
			 "expected integer, got string");
	ck_assert_uint_eq(version_of(s, "counter-1"), 1);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(sd);
	free(dir);
	free(sd);
}
END_TEST

/* ---- snapshots ---- */

static void index_exec(const char *dir, const char *q)
{
	char path[4200];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/index.db", dir);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, q, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* "version state_version state" of the stream's snapshot, or "none". */
static void snapshot_row(const char *dir, const char *stream, char *out, size_t size)
{
	char path[4200];
	sqlite3 *db;
	sqlite3_stmt *st;

	snprintf(path, sizeof(path), "%s/index.db", dir);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT version, state_version, state FROM "
					    "snapshots WHERE stream = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, size, "%lld %lld %s", sqlite3_column_int64(st, 0),
			 sqlite3_column_int64(st, 1), (const char *)sqlite3_column_text(st, 2));
	else
		snprintf(out, size, "none");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static int handle_snap(evs_store *s, counter *c, uint32_t state_version, const char *cmd_text,
		       evs_handle_result *r)
{
	evs_decider d = decider(c);
	json_t *cmd = json_loads(cmd_text, 0, NULL);
	int rc;

	d.snapshot_every = 3;
	d.state_version = state_version;
	json_object_set_new(cmd, "stream", json_string("counter-1"));
	rc = evs_handle(s, &d, "counter-1", cmd, NULL, r);
	json_decref(cmd);
	return rc;
}

START_TEST(test_snapshots)
{
	char *dir = tu_mkdtemp(), row[512];
	evs_store *s = tu_open(dir, 0, 0);
	counter c = { s, 0, 0, 0 };
	evs_decider d = decider(&c);
	evs_handle_result r;
	uint64_t v;

	/* taken when the stream reaches a multiple of 3 */
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(handle_snap(s, &c, 1, "{\"add\":1}", &r), 0);
	evs_close(s);
	snapshot_row(dir, "counter-1", row, sizeof(row));
	ck_assert_str_eq(row, "none");
	s = tu_open(dir, 0, 0);
	c.store = s;
	ck_assert_int_eq(handle_snap(s, &c, 1, "{\"add\":1}", &r), 0);
	evs_close(s);
	snapshot_row(dir, "counter-1", row, sizeof(row));
	ck_assert_str_eq(row, "3 1 {\"count\":3}");

	/* used: no event is folded, and the state is the snapshot's */
	index_exec(dir, "UPDATE snapshots SET state = '{\"count\":5}'");
	s = tu_open(dir, 0, 0);
	c.store = s;
	c.evolves = 0;
	ck_assert_int_eq(handle_snap(s, &c, 1, "{\"add\":6}", &r), EVS_EREJECTED);
	ck_assert_str_eq(r.reason, "5 + 6 is over 10");
	ck_assert_int_eq(c.evolves, 0);
	/* one event after it: folded on top */
	ck_assert_int_eq(handle_snap(s, &c, 1, "{\"add\":1}", &r), 0);
	ck_assert_int_eq(handle_snap(s, &c, 1, "{\"add\":6}", &r), EVS_EREJECTED);
	ck_assert_str_eq(r.reason, "6 + 6 is over 10");
	ck_assert_int_eq(c.evolves, 1);
	evs_close(s);

	/* damaged, missing, of another state version or other upcasters:
	 * ignored, the truth is folded from the events, and a new snapshot
	 * is written */
	static const char *const breakers[] = {
		"UPDATE snapshots SET state = 'garbage{'",
		"DELETE FROM snapshots",
		"UPDATE snapshots SET version = 99",
		"UPDATE snapshots SET state_version = 7",
		"UPDATE snapshots SET upcasters = upcasters + 1",
	};
	for (size_t i = 0; i < sizeof(breakers) / sizeof(breakers[0]); i++) {
		index_exec(dir, "UPDATE snapshots SET state = '{\"count\":5}'");
		index_exec(dir, breakers[i]);
		s = tu_open(dir, 0, 0);
		c.store = s;
		c.evolves = 0;
		ck_assert_int_eq(handle_snap(s, &c, 1, "{\"add\":7}", &r), EVS_EREJECTED);
		ck_assert_msg(strcmp(r.reason, "4 + 7 is over 10") == 0, "%s: %s", breakers[i],
			      r.reason);
		ck_assert_int_eq(c.evolves, 4);
		evs_close(s);
		snapshot_row(dir, "counter-1", row, sizeof(row));
		ck_assert_msg(strcmp(row, "4 1 {\"count\":4}") == 0, "%s: %s", breakers[i], row);
	}

	/* a new state version: not used, replaced */
	s = tu_open(dir, 0, 0);
	c.store = s;
	c.evolves = 0;
	ck_assert_int_eq(handle_snap(s, &c, 2, "{\"add\":7}", &r), EVS_EREJECTED);
	ck_assert_int_eq(c.evolves, 4);
	evs_close(s);
	snapshot_row(dir, "counter-1", row, sizeof(row));
	ck_assert_str_eq(row, "4 2 {\"count\":4}");

	/* drop and take */
	index_exec(dir, "UPDATE snapshots SET state = '{\"count\":9}'");
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_snapshots_drop(s), 0);
	d.state_version = 3;
	ck_assert_int_eq(evs_snapshot_take(s, &d, "counter-1", &v), 0);
	ck_assert_uint_eq(v, 4);
	ck_assert_int_eq(evs_snapshot_take(s, &d, "counter-7", &v), EVS_ENOTFOUND);
	evs_close(s);
	snapshot_row(dir, "counter-1", row, sizeof(row));
	ck_assert_str_eq(row, "4 3 {\"count\":4}");
	s = tu_open(dir, 0, 0);
	ck_assert_int_eq(evs_snapshots_drop(s), 0);
	evs_close(s);
	snapshot_row(dir, "counter-1", row, sizeof(row));
	ck_assert_str_eq(row, "none");
	tu_rmdir(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("handle");
	TCase *tc = tcase_create("handle");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_metadata);
	tcase_add_test(tc, test_idempotent);
	tcase_add_test(tc, test_conflict_retry);
	tcase_add_test(tc, test_race);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_schemas);
	tcase_add_test(tc, test_snapshots);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
