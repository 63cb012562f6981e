/*
 * test_orders_projections.c: the projections shipped in projections/
 * (orders, customers, daily_revenue, streams, event_types) over orders
 * handled by the order decider (tools/orders.c) on a store with the
 * demo's schemas and upcaster: every query's exact rows, read models
 * built live equal to read models rebuilt from the log (byte for byte),
 * the orders read model equal to the state folded from each order's
 * events over a pseudo-random workload, and daily revenue's fallback to
 * the store timestamp.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orders.h"
#include "testutil.h"

#ifndef EVS_TEST_SCHEMAS
#error "EVS_TEST_SCHEMAS must name the schema/events directory"
#endif
#ifndef EVS_TEST_PROJECTIONS
#error "EVS_TEST_PROJECTIONS must name the projections directory"
#endif

static const char *const projections[] = {
	"orders", "customers", "daily_revenue", "streams", "event_types",
};
#define NPROJ (sizeof(projections) / sizeof(projections[0]))

static char *dir;
static evs_store *store;

/* A store with the demo's schemas (strict, formats checked) and the five
 * projections loaded, not started. */
static evs_store *open_store(const char *path, int with_schemas)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;

	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	if (with_schemas) {
		o.schema_dir = EVS_TEST_SCHEMAS;
		o.schema_strict = 1;
		o.schema_formats = 1;
	}
	ck_assert_msg(evs_open(&s, path, &o) == 0, "open: %s", evs_errmsg());
	for (size_t i = 0; i < NPROJ; i++) {
		char file[4200];
		const char *name = NULL;

		snprintf(file, sizeof(file), "%s/%s.sql", EVS_TEST_PROJECTIONS, projections[i]);
		ck_assert_msg(evs_projection_load(s, file, NULL, &name) == 0, "load %s: %s", file,
			      evs_errmsg());
		ck_assert_str_eq(name, projections[i]);
	}
	return s;
}

static void setup(void)
{
	dir = tu_mkdtemp();
	store = open_store(dir, 1);
}

static void teardown(void)
{
	evs_close(store);
	tu_rmdir(dir);
	free(dir);
}

static uint64_t head_of(evs_store *s)
{
	evs_stats st;

	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	return st.head_position;
}

/* The rows of a query once its projection reached the head, as compact
 * JSON text (a new string). */
static char *rows(evs_store *s, const char *proj, const char *query, const char *params)
{
	evs_query_options o = EVS_QUERY_OPTIONS_INIT;
	json_t *p = params ? json_loads(params, 0, NULL) : NULL, *r;
	uint64_t at;
	char *text;

	ck_assert(!params || p);
	o.min_position = head_of(s);
	o.timeout_ms = 20000;
	ck_assert_msg(evs_query(s, proj, query, p, &o, &r, &at) == 0, "%s %s: %s", proj, query,
		      evs_errmsg());
	ck_assert_uint_eq(at, o.min_position);
	text = json_dumps(r, JSON_COMPACT);
	ck_assert_ptr_nonnull(text);
	json_decref(r);
	json_decref(p);
	return text;
}

#define rows_are(s, proj, query, params, want) do {                               \
	char *got_ = rows((s), (proj), (query), (params));                        \
	ck_assert_str_eq(got_, (want));                                           \
	free(got_);                                                               \
} while (0)

/* The store timestamp of a stream's last event, as the projections
 * write it: UTC, microseconds, "2026-03-02T09:00:00.123456Z". */
static int last_ts_cb(const evs_event *ev, void *ctx)
{
	*(int64_t *)ctx = ev->timestamp_us;
	return 1;
}

static void ts_text(char out[64], int64_t us)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	char day[32];

	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 64, "%s.%06dZ", day, (int)(us % 1000000));
}

static void updated_at(char out[64], evs_store *s, const char *stream)
{
	int64_t us = -1;

	evs_read_stream(s, stream, UINT64_MAX, EVS_BACKWARD, 1, last_ts_cb, &us);
	ck_assert_int_gt(us, 0);
	ts_text(out, us);
}

/* Handles a command on `stream` ("at" added unless it has one); it must
 * succeed, or be rejected with `reject` when that is not NULL. */
static void cmd(evs_store *s, const char *stream, const char *text, const char *at,
		const char *reject)
{
	evs_decider d;
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result r;
	json_t *c = json_loads(text, 0, NULL);
	int rc;

	ck_assert_msg(c != NULL, "bad command %s", text);
	if (!json_object_get(c, "at"))
		json_object_set_new(c, "at", json_string(at));
	orders_decider(&d);
	memset(&r, 0, sizeof(r));
	rc = evs_handle(s, &d, stream, c, &o, &r);
	json_decref(c);
	if (reject) {
		ck_assert_int_eq(rc, EVS_EREJECTED);
		ck_assert_str_eq(r.code, reject);
	} else {
		ck_assert_msg(rc == 0, "%s %s: %s %s %s", stream, text, evs_errmsg(), r.code,
			      r.reason);
		ck_assert_uint_eq(r.events, 1);
	}
}

#define PLACE(id, customer, currency) "{\"type\":\"PlaceOrder\",\"order_id\":\"" id \
	"\",\"customer_id\":\"" customer "\",\"currency\":\"" currency "\"}"
#define ADD(sku, qty, price) "{\"type\":\"AddItem\",\"sku\":\"" sku "\",\"qty\":" #qty \
	",\"price\":" #price "}"
#define REMOVE(sku) "{\"type\":\"RemoveItem\",\"sku\":\"" sku "\"}"
#define PAY(amount) "{\"type\":\"Pay\",\"amount\":" #amount "}"
#define SHIP "{\"type\":\"Ship\"}"
#define CANCEL "{\"type\":\"Cancel\"}"

/*
 * Six orders, 25 events (positions in brackets):
 *   order-1 [1-6]   c-1, legacy OrderPlaced v1 (EUR by the upcaster);
 *                   TEA-101 2 + 1 at 450, MUG-301 at 899; paid 2249 on
 *                   2026-03-01 at 23:59:59Z; shipped
 *   order-2 [7-12]  c-2, USD; COF-201 2 at 1290 (removed), POT-401 at
 *                   3490; paid 3490 at 01:30+02:00 on 2026-03-02, which
 *                   is 2026-03-01 in UTC; cancelled
 *   order-3 [13-16] c-1; KETTLE-61 at 7990, SPOON-71 4 at 199; paid 8786
 *   order-4 [17-18] c-3; SAMPLE-1 at 0; never paid
 *   order-5 [19-21] c-2; TEA-102 at 690; cancelled unpaid
 *   order-6 [22-25] c-4; BOOK-91 2 at 2400; paid 4800 on 2026-03-02;
 *                   shipped
 * plus rejected commands, which append nothing.
 */
static void workload(evs_store *s)
{
	evs_new_event v1 = { "OrderPlaced", "{\"order_id\":\"1\",\"customer_id\":\"c-1\","
			     "\"placed_at\":\"2026-03-01T23:50:00Z\"}", NULL, NULL, 1 };
	const char *t = "2026-03-02T10:00:00Z";

	ck_assert_int_eq(evs_append(s, "order-1", EVS_EXPECT_NO_STREAM, &v1, 1, NULL), 0);
	cmd(s, "order-1", ADD("TEA-101", 2, 450), t, NULL);
	cmd(s, "order-1", ADD("MUG-301", 1, 899), t, NULL);
	cmd(s, "order-1", ADD("TEA-101", 1, 450), t, NULL);
	cmd(s, "order-1", PAY(2000), t, "wrong_amount");
	cmd(s, "order-1", PAY(2249), "2026-03-01T23:59:59Z", NULL);
	cmd(s, "order-1", SHIP, t, NULL);

	cmd(s, "order-2", PLACE("2", "c-2", "USD"), "2026-03-02T08:00:00Z", NULL);
	cmd(s, "order-2", ADD("COF-201", 2, 1290), t, NULL);
	cmd(s, "order-2", ADD("POT-401", 1, 3490), t, NULL);
	cmd(s, "order-2", REMOVE("COF-201"), t, NULL);
	cmd(s, "order-2", REMOVE("COF-201"), t, "no_such_item");
	cmd(s, "order-2", PAY(3490), "2026-03-02T01:30:00+02:00", NULL);
	cmd(s, "order-2", CANCEL, t, NULL);

	cmd(s, "order-3", PLACE("3", "c-1", "EUR"), "2026-03-02T09:00:00Z", NULL);
	cmd(s, "order-3", ADD("KETTLE-61", 1, 7990), t, NULL);
	cmd(s, "order-3", ADD("SPOON-71", 4, 199), t, NULL);
	cmd(s, "order-3", PAY(8786), "2026-03-02T09:10:00Z", NULL);

	cmd(s, "order-4", PLACE("4", "c-3", "EUR"), "2026-03-02T09:30:00Z", NULL);
	cmd(s, "order-4", ADD("SAMPLE-1", 1, 0), t, NULL);

	cmd(s, "order-5", PLACE("5", "c-2", "EUR"), "2026-03-02T11:00:00Z", NULL);
	cmd(s, "order-5", ADD("TEA-102", 1, 690), t, NULL);
	cmd(s, "order-5", CANCEL, t, NULL);
	cmd(s, "order-5", PAY(690), t, "cancelled");

	cmd(s, "order-6", PLACE("6", "c-4", "EUR"), "2026-03-02T12:00:00Z", NULL);
	cmd(s, "order-6", ADD("BOOK-91", 2, 2400), t, NULL);
	cmd(s, "order-6", PAY(4800), "2026-03-02T23:59:59.999Z", NULL);
	cmd(s, "order-6", SHIP, t, NULL);
	ck_assert_uint_eq(head_of(s), 25);
}

/* An orders row as the queries return it. */
static void order_row(char *out, size_t size, evs_store *s, const char *id,
		      const char *customer, const char *currency, const char *status,
		      int items, int total, const char *placed_at, int version)
{
	char ts[64];

	updated_at(ts, s, id);
	snprintf(out, size, "{\"id\":\"%s\",\"customer\":\"%s\",\"currency\":\"%s\","
		 "\"status\":\"%s\",\"item_count\":%d,\"total\":%d,\"placed_at\":\"%s\","
		 "\"updated_at\":\"%s\",\"version\":%d}", id, customer, currency, status, items,
		 total, placed_at, ts, version);
}

static char o_row[6][512];

static void order_rows(evs_store *s)
{
	order_row(o_row[0], 512, s, "order-1", "c-1", "EUR", "shipped", 4, 2249,
		  "2026-03-01T23:50:00Z", 6);
	order_row(o_row[1], 512, s, "order-2", "c-2", "USD", "cancelled", 1, 3490,
		  "2026-03-02T08:00:00Z", 6);
	order_row(o_row[2], 512, s, "order-3", "c-1", "EUR", "paid", 5, 8786,
		  "2026-03-02T09:00:00Z", 4);
	order_row(o_row[3], 512, s, "order-4", "c-3", "EUR", "placed", 1, 0,
		  "2026-03-02T09:30:00Z", 2);
	order_row(o_row[4], 512, s, "order-5", "c-2", "EUR", "cancelled", 1, 690,
		  "2026-03-02T11:00:00Z", 3);
	order_row(o_row[5], 512, s, "order-6", "c-4", "EUR", "shipped", 2, 4800,
		  "2026-03-02T12:00:00Z", 4);
}

/* "[" a "," b ... "]" of the rows numbered in `which` (1-based). */
static char *list(const char *which)
{
	static char buf[4096];
	size_t n = 0;

	buf[n++] = '[';
	for (const char *w = which; *w; w++) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", w == which ? "" : ",",
				      o_row[*w - '1']);
	}
	snprintf(buf + n, sizeof(buf) - n, "]");
	return buf;
}

START_TEST(test_orders_queries)
{
	char one[1024];

	ck_assert_int_eq(evs_projections_start(store), 0);
	workload(store);
	order_rows(store);
	for (int i = 0; i < 6; i++) {
		char p[64];
		snprintf(p, sizeof(p), "{\"id\":\"order-%d\"}", i + 1);
		snprintf(one, sizeof(one), "[%.1000s]", o_row[i]);
		rows_are(store, "orders", "by_id", p, one);
	}
	rows_are(store, "orders", "by_id", "{\"id\":\"order-7\"}", "[]");
	rows_are(store, "orders", "by_customer", "{\"customer\":\"c-1\"}", list("13"));
	rows_are(store, "orders", "by_customer", "{\"customer\":\"c-2\"}", list("25"));
	rows_are(store, "orders", "by_customer", "{\"customer\":\"c-9\"}", "[]");
	rows_are(store, "orders", "by_status", "{\"status\":\"shipped\"}", list("16"));
	rows_are(store, "orders", "by_status", "{\"status\":\"cancelled\"}", list("25"));
	rows_are(store, "orders", "by_status", "{\"status\":\"paid\"}", list("3"));
	rows_are(store, "orders", "by_status", "{\"status\":\"placed\"}", list("4"));
	rows_are(store, "orders", "recent", "{\"limit\":3}", list("654"));
	rows_are(store, "orders", "recent", "{\"limit\":10}", list("654321"));
}
END_TEST

START_TEST(test_customers_and_revenue)
{
	ck_assert_int_eq(evs_projections_start(store), 0);
	workload(store);
	rows_are(store, "customers", "top", "{\"limit\":10}",
		 "[{\"customer\":\"c-1\",\"orders_placed\":2,\"orders_paid\":2,\"spend\":11035,"
		 "\"last_order\":\"order-3\",\"last_order_at\":\"2026-03-02T09:00:00Z\"},"
		 "{\"customer\":\"c-4\",\"orders_placed\":1,\"orders_paid\":1,\"spend\":4800,"
		 "\"last_order\":\"order-6\",\"last_order_at\":\"2026-03-02T12:00:00Z\"},"
		 "{\"customer\":\"c-2\",\"orders_placed\":2,\"orders_paid\":1,\"spend\":3490,"
		 "\"last_order\":\"order-5\",\"last_order_at\":\"2026-03-02T11:00:00Z\"},"
		 "{\"customer\":\"c-3\",\"orders_placed\":1,\"orders_paid\":0,\"spend\":0,"
		 "\"last_order\":\"order-4\",\"last_order_at\":\"2026-03-02T09:30:00Z\"}]");
	rows_are(store, "customers", "top", "{\"limit\":1}",
		 "[{\"customer\":\"c-1\",\"orders_placed\":2,\"orders_paid\":2,\"spend\":11035,"
		 "\"last_order\":\"order-3\",\"last_order_at\":\"2026-03-02T09:00:00Z\"}]");
	rows_are(store, "customers", "by_id", "{\"customer\":\"c-2\"}",
		 "[{\"customer\":\"c-2\",\"orders_placed\":2,\"orders_paid\":1,\"spend\":3490,"
		 "\"last_order\":\"order-5\",\"last_order_at\":\"2026-03-02T11:00:00Z\"}]");
	rows_are(store, "customers", "by_id", "{\"customer\":\"c-9\"}", "[]");

	rows_are(store, "daily_revenue", "days", NULL,
		 "[{\"day\":\"2026-03-01\",\"currency\":\"EUR\",\"orders_paid\":1,\"revenue\":2249},"
		 "{\"day\":\"2026-03-01\",\"currency\":\"USD\",\"orders_paid\":1,\"revenue\":3490},"
		 "{\"day\":\"2026-03-02\",\"currency\":\"EUR\",\"orders_paid\":2,"
		 "\"revenue\":13586}]");
	rows_are(store, "daily_revenue", "day", "{\"day\":\"2026-03-01\"}",
		 "[{\"day\":\"2026-03-01\",\"currency\":\"EUR\",\"orders_paid\":1,\"revenue\":2249},"
		 "{\"day\":\"2026-03-01\",\"currency\":\"USD\",\"orders_paid\":1,\"revenue\":3490}]");
	rows_are(store, "daily_revenue", "day", "{\"day\":\"2026-03-03\"}", "[]");
}
END_TEST

START_TEST(test_streams_and_types)
{
	static const int last[6][2] = { { 6, 6 }, { 6, 12 }, { 4, 16 }, { 2, 18 }, { 3, 21 },
					{ 4, 25 } };
	char want[4096], ts[64], stream[16];
	size_t n = 0;

	ck_assert_int_eq(evs_projections_start(store), 0);
	workload(store);
	n += (size_t)snprintf(want + n, sizeof(want) - n, "[");
	for (int i = 0; i < 6; i++) {
		snprintf(stream, sizeof(stream), "order-%d", i + 1);
		updated_at(ts, store, stream);
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s{\"stream\":\"%s\","
				      "\"category\":\"order\",\"last_version\":%d,"
				      "\"last_position\":%d,\"updated_at\":\"%s\"}", i ? "," : "",
				      stream, last[i][0], last[i][1], ts);
	}
	snprintf(want + n, sizeof(want) - n, "]");
	rows_are(store, "streams", "all", NULL, want);
	rows_are(store, "streams", "by_category", "{\"category\":\"order\"}", want);
	rows_are(store, "streams", "by_category", "{\"category\":\"order-1\"}", "[]");

	rows_are(store, "event_types", "all", NULL,
		 "[{\"category\":\"order\",\"type\":\"ItemAdded\",\"events\":10},"
		 "{\"category\":\"order\",\"type\":\"ItemRemoved\",\"events\":1},"
		 "{\"category\":\"order\",\"type\":\"OrderCancelled\",\"events\":2},"
		 "{\"category\":\"order\",\"type\":\"OrderPaid\",\"events\":4},"
		 "{\"category\":\"order\",\"type\":\"OrderPlaced\",\"events\":6},"
		 "{\"category\":\"order\",\"type\":\"OrderShipped\",\"events\":2}]");
}
END_TEST

/* Every query of the five projections, with parameters that reach every
 * row, as one text. */
static char *all_queries(evs_store *s)
{
	static const char *const q[][3] = {
		{ "orders", "by_id", "{\"id\":\"order-1\"}" },
		{ "orders", "by_id", "{\"id\":\"order-2\"}" },
		{ "orders", "by_id", "{\"id\":\"order-3\"}" },
		{ "orders", "by_id", "{\"id\":\"order-4\"}" },
		{ "orders", "by_id", "{\"id\":\"order-5\"}" },
		{ "orders", "by_id", "{\"id\":\"order-6\"}" },
		{ "orders", "by_customer", "{\"customer\":\"c-1\"}" },
		{ "orders", "by_customer", "{\"customer\":\"c-2\"}" },
		{ "orders", "by_customer", "{\"customer\":\"c-3\"}" },
		{ "orders", "by_customer", "{\"customer\":\"c-4\"}" },
		{ "orders", "by_status", "{\"status\":\"placed\"}" },
		{ "orders", "by_status", "{\"status\":\"paid\"}" },
		{ "orders", "by_status", "{\"status\":\"shipped\"}" },
		{ "orders", "by_status", "{\"status\":\"cancelled\"}" },
		{ "orders", "recent", "{\"limit\":100}" },
		{ "customers", "top", "{\"limit\":100}" },
		{ "customers", "by_id", "{\"customer\":\"c-1\"}" },
		{ "customers", "by_id", "{\"customer\":\"c-2\"}" },
		{ "daily_revenue", "days", NULL },
		{ "daily_revenue", "day", "{\"day\":\"2026-03-01\"}" },
		{ "daily_revenue", "day", "{\"day\":\"2026-03-02\"}" },
		{ "streams", "all", NULL },
		{ "streams", "by_category", "{\"category\":\"order\"}" },
		{ "event_types", "all", NULL },
	};
	size_t cap = 1 << 16, n = 0;
	char *out = malloc(cap);

	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		char *r = rows(s, q[i][0], q[i][1], q[i][2]);
		size_t need = strlen(q[i][0]) + strlen(q[i][1]) + strlen(r) + 8;
		while (n + need >= cap) {
			cap *= 2;
			out = realloc(out, cap);
			ck_assert_ptr_nonnull(out);
		}
		n += (size_t)snprintf(out + n, cap - n, "%s %s: %s\n", q[i][0], q[i][1], r);
		free(r);
	}
	return out;
}

START_TEST(test_rebuild_equals_live)
{
	char models[4200], *live, *rebuilt;
	evs_projection_status st;

	/* live: started before the first event, applying as they come */
	ck_assert_int_eq(evs_projections_start(store), 0);
	workload(store);
	live = all_queries(store);
	order_rows(store);
	ck_assert_ptr_nonnull(strstr(live, o_row[1]));
	ck_assert_int_eq(evs_projections_stop(store), 0);
	evs_close(store);

	/* rebuilt: the read models deleted, built again from the log */
	snprintf(models, sizeof(models), "%s/readmodels", dir);
	tu_rmdir(models);
	store = open_store(dir, 1);
	for (size_t i = 0; i < NPROJ; i++) {
		ck_assert_int_eq(evs_projection_status_get(&st, store, projections[i]), 0);
		ck_assert_uint_eq(st.checkpoint, 0);
		ck_assert_uint_eq(st.lag, 25);
	}
	ck_assert_int_eq(evs_projections_start(store), 0);
	rebuilt = all_queries(store);
	ck_assert_str_eq(rebuilt, live);
	for (size_t i = 0; i < NPROJ; i++) {
		ck_assert_int_eq(evs_projection_status_get(&st, store, projections[i]), 0);
		ck_assert_uint_eq(st.checkpoint, 25);
		ck_assert_int_eq(st.failed, 0);
	}
	free(live);
	free(rebuilt);
}
END_TEST

/* splitmix64 */
static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Any command, valid or not, on 40 orders; whatever the decider accepts
 * is appended.  Then each order's row must say what its events fold to. */
START_TEST(test_matches_fold)
{
	static const char *const skus[] = { "TEA-101", "MUG-301", "COF-201", "POT-401" };
	static const char *const statuses[] = { "none", "placed", "paid", "shipped", "cancelled" };
	uint64_t rng = 7;
	evs_decider d;
	int by_status[5] = { 0 }; /* by statuses[] */
	char counts[128];

	orders_decider(&d);
	ck_assert_int_eq(evs_projections_start(store), 0);
	for (int i = 0; i < 600; i++) {
		char stream[16], text[256];
		int o = (int)(next(&rng) % 40) + 1, k = (int)(next(&rng) % 10);
		const char *sku = skus[next(&rng) % 4];
		orders_loaded l;
		json_t *c;
		evs_handle_options ho = EVS_HANDLE_OPTIONS_INIT;
		evs_handle_result r;
		long long total = 0;
		int rc;

		snprintf(stream, sizeof(stream), "order-%d", o);
		if (orders_load(&l, store, stream) == 0) {
			total = json_integer_value(json_object_get(l.state, "total"));
			json_decref(l.state);
		}
		if (k == 0)
			snprintf(text, sizeof(text), "{\"type\":\"PlaceOrder\",\"order_id\":\"%d\","
				 "\"customer_id\":\"c-%d\",\"currency\":\"%s\"}", o, o % 7,
				 o % 3 ? "EUR" : "GBP");
		else if (k <= 4)
			snprintf(text, sizeof(text), "{\"type\":\"AddItem\",\"sku\":\"%s\","
				 "\"qty\":%d,\"price\":%d}", sku, (int)(next(&rng) % 5) + 1,
				 100 * (int)(sku[0] - 'A') + 5);
		else if (k == 5)
			snprintf(text, sizeof(text), "{\"type\":\"RemoveItem\",\"sku\":\"%s\"}", sku);
		else if (k == 6)
			snprintf(text, sizeof(text), "{\"type\":\"Pay\",\"amount\":%lld}", total);
		else if (k == 7)
			snprintf(text, sizeof(text), "{\"type\":\"Ship\"}");
		else if (k == 8 && next(&rng) % 4 == 0)
			snprintf(text, sizeof(text), "{\"type\":\"Cancel\"}");
		else
			snprintf(text, sizeof(text), "{\"type\":\"PlaceOrder\",\"order_id\":\"%d\","
				 "\"customer_id\":\"c-%d\"}", o, o % 7);
		c = json_loads(text, 0, NULL);
		ck_assert_ptr_nonnull(c);
		json_object_set_new(c, "at", json_string("2026-03-02T10:00:00Z"));
		rc = evs_handle(store, &d, stream, c, &ho, &r);
		ck_assert_msg(rc == 0 || rc == EVS_EREJECTED, "%s %s: %s", stream, text,
			      evs_errmsg());
		json_decref(c);
	}
	ck_assert_uint_eq(head_of(store), 201);
	for (int o = 1; o <= 40; o++) {
		char stream[16], p[64], *got, want[512], have[512];
		orders_loaded l;
		json_int_t items = 0;
		const char *k;
		json_t *line, *got_rows, *row;

		snprintf(stream, sizeof(stream), "order-%d", o);
		snprintf(p, sizeof(p), "{\"id\":\"%s\"}", stream);
		if (orders_load(&l, store, stream) != 0) {
			rows_are(store, "orders", "by_id", p, "[]");
			by_status[0]++;
			continue;
		}
		for (int i = 1; i < 5; i++)
			by_status[i] += strcmp(json_string_value(json_object_get(l.state, "status")),
					       statuses[i]) == 0;
		json_object_foreach(json_object_get(l.state, "items"), k, line)
			items += json_integer_value(json_object_get(line, "qty"));
		got = rows(store, "orders", "by_id", p);
		got_rows = json_loads(got, 0, NULL);
		ck_assert_uint_eq(json_array_size(got_rows), 1);
		row = json_array_get(got_rows, 0);
		snprintf(want, sizeof(want), "%s %s %s %lld %lld %llu",
			 json_string_value(json_object_get(l.state, "status")),
			 json_string_value(json_object_get(l.state, "customer")),
			 json_string_value(json_object_get(l.state, "currency")), (long long)items,
			 (long long)json_integer_value(json_object_get(l.state, "total")),
			 (unsigned long long)l.version);
		snprintf(have, sizeof(have), "%s %s %s %lld %lld %lld",
			 json_string_value(json_object_get(row, "status")),
			 json_string_value(json_object_get(row, "customer")),
			 json_string_value(json_object_get(row, "currency")),
			 (long long)json_integer_value(json_object_get(row, "item_count")),
			 (long long)json_integer_value(json_object_get(row, "total")),
			 (long long)json_integer_value(json_object_get(row, "version")));
		ck_assert_msg(strcmp(have, want) == 0, "%s: read model %s, events fold to %s",
			      stream, have, want);
		json_decref(got_rows);
		free(got);
		json_decref(l.state);
	}
	/* the workload reaches every status, and removes lines */
	snprintf(counts, sizeof(counts), "%d %d %d %d %d", by_status[0], by_status[1],
		 by_status[2], by_status[3], by_status[4]);
	ck_assert_str_eq(counts, "0 14 10 8 8");
	rows_are(store, "event_types", "all", NULL,
		 "[{\"category\":\"order\",\"type\":\"ItemAdded\",\"events\":118},"
		 "{\"category\":\"order\",\"type\":\"ItemRemoved\",\"events\":8},"
		 "{\"category\":\"order\",\"type\":\"OrderCancelled\",\"events\":8},"
		 "{\"category\":\"order\",\"type\":\"OrderPaid\",\"events\":19},"
		 "{\"category\":\"order\",\"type\":\"OrderPlaced\",\"events\":40},"
		 "{\"category\":\"order\",\"type\":\"OrderShipped\",\"events\":8}]");
}
END_TEST

/* Without schemas: an OrderPaid without paid_at counts on the day of its
 * store timestamp; a stream without '-' is its own category; an OrderPaid
 * of an order nobody placed changes no customer. */
START_TEST(test_fallbacks)
{
	evs_store *s;
	char *d2 = tu_mkdtemp(), want[512], day[16], ts[64];
	evs_new_event ev = { "OrderPaid", "{\"amount\":500,\"currency\":\"EUR\"}", NULL, NULL, 1 };
	int64_t us = -1;

	s = open_store(d2, 0);
	ck_assert_int_eq(evs_projections_start(s), 0);
	ck_assert_int_eq(evs_append(s, "audit", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
	evs_read_stream(s, "audit", UINT64_MAX, EVS_BACKWARD, 1, last_ts_cb, &us);
	ck_assert_int_gt(us, 0);
	ts_text(ts, us);
	memcpy(day, ts, 10);
	day[10] = '\0';
	snprintf(want, sizeof(want), "[{\"day\":\"%s\",\"currency\":\"EUR\",\"orders_paid\":1,"
		 "\"revenue\":500}]", day);
	rows_are(s, "daily_revenue", "days", NULL, want);
	snprintf(want, sizeof(want), "[{\"stream\":\"audit\",\"category\":\"audit\","
		 "\"last_version\":1,\"last_position\":1,\"updated_at\":\"%s\"}]", ts);
	rows_are(s, "streams", "all", NULL, want);
	rows_are(s, "event_types", "all", NULL,
		 "[{\"category\":\"audit\",\"type\":\"OrderPaid\",\"events\":1}]");
	rows_are(s, "customers", "top", "{\"limit\":5}", "[]");
	rows_are(s, "orders", "recent", "{\"limit\":5}", "[]");
	ck_assert_int_eq(evs_projections_stop(s), 0);
	evs_close(s);
	tu_rmdir(d2);
	free(d2);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("orders_projections");
	TCase *tc = tcase_create("queries");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_orders_queries);
	tcase_add_test(tc, test_customers_and_revenue);
	tcase_add_test(tc, test_streams_and_types);
	tcase_add_test(tc, test_fallbacks);
	suite_add_tcase(su, tc);

	tc = tcase_create("rebuild");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_rebuild_equals_live);
	tcase_add_test(tc, test_matches_fold);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
