/*
 * test_upcast.c: upcaster chains (an .sql file, then a C callback) on
 * reads and in command handlers, stored bytes untouched, and every way an
 * upcaster can be wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "store.h"

/* Price v1 {"amount": n} -> v2 adds "currency" (the .sql file) -> v3
 * renames amount to "cents" (this callback). */
static json_t *v2_to_v3(void *ctx, const char *type, uint32_t from, json_t *data)
{
	int *calls = ctx;

	(*calls)++;
	ck_assert_str_eq(type, "PriceSet");
	ck_assert_uint_eq(from, 2);
	if (json_object_get(data, "explode")) {
		json_decref(data);
		return NULL;
	}
	json_object_set(data, "cents", json_object_get(data, "amount"));
	json_object_del(data, "amount");
	return data;
}

static char *schema_dir_with(const char *name, const char *text)
{
	char *dir = tu_mkdtemp(), path[4200];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
	return dir;
}

static int open_with(evs_store **s, const char *dir, const char *schemas)
{
	evs_options o = EVS_OPTIONS_INIT;

	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	o.schema_dir = schemas;
	return evs_open(s, dir, &o);
}

typedef struct seen {
	json_t *data[8];
	uint32_t version[8];
	char stored[8][64];
	int n;
	evs_store *s;
} seen;

static int upcast_cb(const evs_event *ev, void *ctx)
{
	seen *w = ctx;

	ck_assert_int_eq(evs_upcast(w->s, ev, &w->data[w->n], &w->version[w->n]), 0);
	snprintf(w->stored[w->n], sizeof(w->stored[0]), "%.*s", (int)ev->data_len, ev->data);
	w->n++;
	return 0;
}

static void expect_json(json_t *got, const char *want_text)
{
	json_t *want = json_loads(want_text, 0, NULL);
	char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);

	ck_assert_ptr_nonnull(want);
	ck_assert_msg(json_equal(got, want), "got %s, want %s", g, want_text);
	free(g);
	json_decref(want);
}

START_TEST(test_chain)
{
	char *sd = schema_dir_with("PriceSet.v1-v2.sql",
				   "json_set(data, '$.currency', 'EUR');\n");
	char *dir = tu_mkdtemp();
	evs_new_event ev[3] = {
		{ "PriceSet", "{\"amount\":1}", NULL, NULL, 1 },
		{ "PriceSet", "{\"amount\":2,\"currency\":\"USD\"}", NULL, NULL, 2 },
		{ "PriceSet", "{\"cents\":3,\"currency\":\"GBP\"}", NULL, NULL, 3 },
	};
	evs_new_event other = { "Other", "{\"x\":1}", NULL, NULL, 1 };
	seen w;
	int calls = 0;
	evs_store *s;

	ck_assert_int_eq(open_with(&s, dir, sd), 0);
	ck_assert_int_eq(evs_upcaster_add(s, "PriceSet", 2, v2_to_v3, &calls), 0);
	ck_assert_int_eq(evs_append(s, "price-1", EVS_EXPECT_ANY, ev, 3, NULL), 0);
	ck_assert_int_eq(evs_append(s, "price-1", EVS_EXPECT_ANY, &other, 1, NULL), 0);

	memset(&w, 0, sizeof(w));
	w.s = s;
	ck_assert_int_eq(evs_read_stream(s, "price-1", 1, EVS_FORWARD, 0, upcast_cb, &w), 0);
	ck_assert_int_eq(w.n, 4);
	expect_json(w.data[0], "{\"cents\":1,\"currency\":\"EUR\"}");
	expect_json(w.data[1], "{\"cents\":2,\"currency\":\"USD\"}");
	expect_json(w.data[2], "{\"cents\":3,\"currency\":\"GBP\"}");
	expect_json(w.data[3], "{\"x\":1}");
	ck_assert_uint_eq(w.version[0], 3);
	ck_assert_uint_eq(w.version[1], 3);
	ck_assert_uint_eq(w.version[2], 3);
	ck_assert_uint_eq(w.version[3], 1);
	ck_assert_int_eq(calls, 2);
	/* the stored bytes are as appended */
	ck_assert_str_eq(w.stored[0], "{\"amount\":1}");
	ck_assert_str_eq(w.stored[1], "{\"amount\":2,\"currency\":\"USD\"}");
	for (int i = 0; i < w.n; i++)
		json_decref(w.data[i]);

	/* the set of upcasters has a hash, which a new one changes */
	uint64_t h = evs__upcasters_hash(s->upcasters);
	ck_assert_uint_eq(h, evs__upcasters_hash(s->upcasters));
	ck_assert_int_eq(evs_upcaster_add(s, "Other", 1, v2_to_v3, &calls), 0);
	ck_assert_uint_ne(h, evs__upcasters_hash(s->upcasters));

	/* one per (type, version) */
	ck_assert_int_eq(evs_upcaster_add(s, "PriceSet", 1, v2_to_v3, &calls), EVS_EINVAL);
	char want[8192];
	snprintf(want, sizeof(want), "an upcaster of 'PriceSet' from version 1 exists "
		 "already: %s/PriceSet.v1-v2.sql", sd);
	ck_assert_str_eq(evs_errmsg(), want);
	ck_assert_int_eq(evs_upcaster_add(s, "PriceSet", 0, v2_to_v3, &calls), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_upcaster_add: 'PriceSet': versions start at 1");
	ck_assert_int_eq(evs_upcaster_add(s, "Bad Type", 1, v2_to_v3, &calls), EVS_EINVAL);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(sd);
	free(dir);
	free(sd);
}
END_TEST

typedef struct one {
	evs_store *s;
	int rc;
	json_t *data;
	char msg[1024];
} one;

static int one_cb(const evs_event *ev, void *ctx)
{
	one *o = ctx;

	o->rc = evs_upcast(o->s, ev, &o->data, NULL);
	snprintf(o->msg, sizeof(o->msg), "%s", evs_errmsg());
	return 1;
}

START_TEST(test_failures)
{
	char *sd = schema_dir_with("PriceSet.v1-v2.sql", "json_extract(data, '$.amount')");
	char *dir = tu_mkdtemp(), want[8192];
	evs_new_event v1 = { "PriceSet", "{\"amount\":1}", NULL, NULL, 1 };
	evs_new_event v2 = { "PriceSet", "{\"amount\":1,\"explode\":1}", NULL, NULL, 2 };
	one o;
	int calls = 0;
	evs_store *s;

	ck_assert_int_eq(open_with(&s, dir, sd), 0);
	ck_assert_int_eq(evs_upcaster_add(s, "PriceSet", 2, v2_to_v3, &calls), 0);
	ck_assert_int_eq(evs_append(s, "price-1", EVS_EXPECT_ANY, &v1, 1, NULL), 0);
	ck_assert_int_eq(evs_append(s, "price-1", EVS_EXPECT_ANY, &v2, 1, NULL), 0);

	/* an expression that gives no object */
	memset(&o, 0, sizeof(o));
	o.s = s;
	ck_assert_int_eq(evs_read_stream(s, "price-1", 1, EVS_FORWARD, 0, one_cb, &o), 0);
	ck_assert_int_eq(o.rc, EVS_EINVAL);
	ck_assert_ptr_null(o.data);
	snprintf(want, sizeof(want), "upcaster %s/PriceSet.v1-v2.sql did not give a JSON "
		 "object for stream 'price-1' position 1", sd);
	ck_assert_str_eq(o.msg, want);

	/* a callback that fails */
	memset(&o, 0, sizeof(o));
	o.s = s;
	ck_assert_int_eq(evs_read_stream(s, "price-1", 2, EVS_FORWARD, 0, one_cb, &o), 0);
	ck_assert_int_eq(o.rc, EVS_EINVAL);
	ck_assert_str_eq(o.msg, "the upcaster of 'PriceSet' from version 2 failed on stream "
			 "'price-1' position 2");
	ck_assert_int_eq(calls, 1);
	evs_close(s);
	tu_rmdir(sd);
	free(sd);

	/* files that fail the open, named */
	static const char *const bad[][3] = {
		{ "PriceSet.v1-v2.sql", "json_set(data,", "PriceSet.v1-v2.sql: " },
		{ "PriceSet.v1-v2.sql", "data; DROP TABLE x", "PriceSet.v1-v2.sql: near \";\": "
		  "syntax error" },
		{ "PriceSet.v1-v2.sql", "data) FROM (SELECT ?1 AS data); SELECT (1",
		  "PriceSet.v1-v2.sql: must hold one SQL expression over `data`, not statements" },
		{ "PriceSet.v1-v2.sql", "  \n", "PriceSet.v1-v2.sql: must hold one SQL expression" },
		{ "PriceSet.v1-v3.sql", "data", "PriceSet.v1-v3.sql: the name must be "
		  "<type>.v<k>-v<k+1>.sql (e.g. OrderPlaced.v1-v2.sql)" },
		{ "PriceSet.v0-v1.sql", "data", "PriceSet.v0-v1.sql: the name must be" },
		{ "PriceSet-v2.sql", "data", "PriceSet-v2.sql: the name must be" },
		{ "Price Set.v1-v2.sql", "data", "upcaster " },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *d2 = tu_mkdtemp();
		sd = schema_dir_with(bad[i][0], bad[i][1]);
		ck_assert_int_eq(open_with(&s, d2, sd), EVS_EINVAL);
		ck_assert_msg(strstr(evs_errmsg(), bad[i][2]) != NULL, "case %zu: %s", i,
			      evs_errmsg());
		ck_assert_msg(strncmp(evs_errmsg(), "upcaster ", 9) == 0, "case %zu: %s", i,
			      evs_errmsg());
		tu_rmdir(sd);
		tu_rmdir(d2);
		free(sd);
		free(d2);
	}

	/* the store itself was never touched */
	ck_assert_int_eq(open_with(&s, dir, NULL), 0);
	ck_assert_int_eq(evs_read_stream(s, "price-1", 1, EVS_FORWARD, 0, tu_count_cb,
					 &(int){ 0 }), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A decider that keeps the last event's upcast data and version, and
 * shows its state as a rejection. */
static json_t *show_initial(void *ctx)
{
	(void)ctx;
	return json_object();
}

static json_t *show_evolve(void *ctx, json_t *state, const evs_event *ev, const json_t *data)
{
	(void)ctx;
	json_object_set(state, "data", (json_t *)data);
	json_object_set_new(state, "v", json_integer(ev->schema_version));
	return state;
}

static int show_decide(void *ctx, const json_t *state, const json_t *cmd, evs_decision *d)
{
	char *text = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);

	(void)ctx;
	(void)cmd;
	evs_decision_reject(d, "state", "%s", text);
	free(text);
	return 0;
}

START_TEST(test_handler_sees_upcast)
{
	char *sd = schema_dir_with("PriceSet.v1-v2.sql", "json_set(data, '$.currency', 'EUR')");
	char *dir = tu_mkdtemp();
	evs_new_event v1 = { "PriceSet", "{\"amount\":5}", NULL, NULL, 1 };
	evs_decider d = { EVS_DECIDER_VERSION, "price", 1, NULL, show_initial, show_evolve,
			  show_decide, 0 };
	evs_handle_result r;
	int calls = 0;
	evs_store *s;
	json_t *cmd = json_object();

	ck_assert_int_eq(open_with(&s, dir, sd), 0);
	ck_assert_int_eq(evs_upcaster_add(s, "PriceSet", 2, v2_to_v3, &calls), 0);
	ck_assert_int_eq(evs_append(s, "price-1", EVS_EXPECT_ANY, &v1, 1, NULL), 0);
	ck_assert_int_eq(evs_handle(s, &d, "price-1", cmd, NULL, &r), EVS_EREJECTED);
	ck_assert_str_eq(r.reason, "{\"data\":{\"cents\":5,\"currency\":\"EUR\"},\"v\":3}");
	json_decref(cmd);
	evs_close(s);
	tu_rmdir(dir);
	tu_rmdir(sd);
	free(dir);
	free(sd);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("upcast");
	TCase *tc = tcase_create("upcast");

	tcase_add_test(tc, test_chain);
	tcase_add_test(tc, test_failures);
	tcase_add_test(tc, test_handler_sees_upcast);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
