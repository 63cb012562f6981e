/*
 * demo.c: `evstore demo`, the orders demo of issue 4: a web shop's
 * customers working through orders from several threads, every command
 * through evs_handle and the order decider (orders.c), every event checked
 * against the JSON Schemas of schema/events/.
 *
 * The workload, a pure function of the seed and the number of customers:
 * 1. Legacy orders: OrderPlaced events of the first schema version (no
 *    currency) appended directly with evs_append, as an older version of
 *    the shop would have written them.  Handling a command on such an
 *    order folds the v1 event through the upcaster OrderPlaced.v1-v2.sql.
 * 2. Customers (threads take every T-th customer) work through their
 *    legacy orders and 1 to 3 new ones each, by a script drawn per order:
 *    place, add items, sometimes remove one, pay, ship; sometimes cancel.
 *    Now and then a command breaks a rule on purpose (pays the wrong
 *    amount, ships unpaid, adds after payment, ...), and a successful
 *    command is sometimes sent again with the same command id, as a client
 *    retrying after a lost reply would.
 * 3. Hot orders (a shared office order): every thread adds items to the
 *    same few orders at the same time, so that appends conflict and
 *    evs_handle retries; and every thread sends the same commands (same
 *    command ids) at once, which must be applied once.  Then the hot orders
 *    are paid and shipped.
 *
 * Each order's script knows what each command must give (success, or the
 * rejection code) and what the order must look like at the end; anything
 * else is an error that names the order, stops the run and exits 1.  At the
 * end every order of the run is folded again from its events (upcast,
 * without snapshots) and compared with that expectation.
 *
 * Then the projections orders, customers and daily_revenue (projections/)
 * build their read models from the log, and are read with min_position
 * the workload's last position: every order's row in the orders read model
 * must say what its events fold to, and the summary shows the top
 * customers, the daily revenue and a few orders as the queries return them.
 *
 * A second run on the same store continues: its orders are numbered after
 * the highest order-<n> stream already there.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "demo.h"
#include "orders.h"

/* Where the event schemas are when --schemas is not given: the source
 * tree the tool was built from (meson sets it), else ./schema/events. */
#ifndef EVS_DEMO_SCHEMAS
#define EVS_DEMO_SCHEMAS "schema/events"
#endif
#define FALLBACK_SCHEMAS "schema/events"

/* The same for the projections. */
#ifndef EVS_DEMO_PROJECTIONS
#define EVS_DEMO_PROJECTIONS "projections"
#endif
#define FALLBACK_PROJECTIONS "projections"

/* The read models the demo builds and reads, each from <name>.sql. */
static const char *const demo_projections[] = { "orders", "customers", "daily_revenue" };
#define NPROJ ((int)(sizeof(demo_projections) / sizeof(demo_projections[0])))

/* How long a read model may go without moving before a query stops
 * waiting for it: catching up on a large store takes longer, and is fine
 * as long as the checkpoint moves. */
#define STALL_MS 30000

/* The summary's rows: top customers, (day, currency) rows of revenue. */
#define TOP_CUSTOMERS 5
#define REVENUE_ROWS 6

#define DEFAULT_DIR "evstore-demo"

enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2 };

/* Hot orders: each thread adds HOT_ADDS items to each of them, and sends
 * HOT_SHARED commands that every thread sends alike. */
#define HOT_ADDS 10
#define HOT_SHARED 5

/* Enough tries for T threads hammering one stream: a command gives up
 * (EVS_ECONFLICT, an error here) only after this many lost races. */
#define MAX_ATTEMPTS 100

/* The first command's time; each order's commands follow it (see at()). */
#define EPOCH 1772442000 /* 2026-03-02T09:00:00Z */

/* The shop's catalog: prices in cents, one of them free. */
static const struct item {
	const char *sku;
	int price;
} catalog[] = {
	{ "TEA-101", 450 }, { "TEA-102", 690 }, { "TEA-103", 1150 },
	{ "COF-201", 1290 }, { "COF-202", 1590 }, { "COF-203", 2490 },
	{ "MUG-301", 899 }, { "MUG-302", 1250 }, { "POT-401", 3490 },
	{ "POT-402", 5900 }, { "FILTER-51", 349 }, { "KETTLE-61", 7990 },
	{ "SPOON-71", 199 }, { "TIN-81", 590 }, { "BOOK-91", 2400 },
	{ "SAMPLE-1", 0 },
};
#define NCAT ((int)(sizeof(catalog) / sizeof(catalog[0])))

/* Every rejection code the decider has; the summary counts them in this
 * order. */
static const char *const codes[] = {
	"unknown_command", "cancelled", "already_placed", "no_order", "bad_order_id",
	"bad_customer", "bad_currency", "bad_sku", "bad_time", "bad_reason",
	"bad_quantity", "bad_price", "price_mismatch", "already_paid", "no_such_item",
	"empty_order", "wrong_amount", "not_paid", "already_shipped",
};
#define NCODES ((int)(sizeof(codes) / sizeof(codes[0])))

static const char *const statuses[] = { "none", "placed", "paid", "shipped", "cancelled" };
enum { ST_NONE, ST_PLACED, ST_PAID, ST_SHIPPED, ST_CANCELLED, NSTATUS };

enum kind { LEGACY, HOT, NEW };

/*
 * One order of the run and the model of what its events must fold to.
 * A legacy or new order is touched by its customer's thread only; a hot
 * order's model is written by the main thread alone, before and after
 * the threads run.
 */
typedef struct order {
	uint64_t number;         /* the stream is order-<number> */
	char stream[32];
	enum kind kind;
	uint32_t customer;       /* customer id c-<customer + 1> */
	int status;              /* ST_* */
	char currency[4];
	uint32_t qty[NCAT];
	int64_t total;
	uint32_t steps;          /* commands sent, for command ids and times */
} order;

typedef struct stats {
	uint64_t commands, events, conflicts, idempotent;
	uint64_t rejected[NCODES];
} stats;

typedef struct demo {
	evs_store *store;
	evs_decider dec;
	uint64_t seed;
	uint32_t customers, threads;
	order *orders;
	size_t norders, nlegacy, nhot;
	size_t *first_new;       /* per customer (and one past): its new orders */
	uint64_t head;           /* the workload's last position */
	atomic_int stop;
	pthread_mutex_t lock;    /* guards err */
	char err[2048];          /* the first error */
} demo;

typedef struct worker {
	demo *dm;
	uint32_t index;
	uint64_t rng;
	stats st;
	pthread_t th;
} worker;

/* ---- small things ---- */

/* splitmix64: the same sequence on every platform. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint32_t below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

/* 1 with `percent` percent probability. */
static int roll(uint64_t *s, uint32_t percent)
{
	return below(s, 100) < percent;
}

/* A generator of its own for each (seed, purpose, index), so that what an
 * order does does not depend on which thread runs it, or when. */
static uint64_t rng_for(uint64_t seed, uint64_t purpose, uint64_t index)
{
	uint64_t s = seed ^ (purpose * UINT64_C(0xd1b54a32d192ed03));

	s ^= rng_next(&s) + index;
	return rng_next(&s);
}

/* Frees text from json_dumps with jansson's own allocator (which a
 * program may have replaced). */
static void json_text_free(char *text)
{
	json_free_t jfree;

	json_get_alloc_funcs(NULL, &jfree);
	if (text)
		jfree(text);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The time of an order's step-th command: orders a minute and a half
 * apart, their commands 20 seconds apart. */
static void at(char out[32], uint64_t number, uint64_t step)
{
	time_t t = (time_t)(EPOCH + number * 90 + step * 20);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void demo_error(demo *dm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the run's first error and stops every thread. */
static void demo_error(demo *dm, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&dm->lock);
	if (!dm->err[0]) {
		va_start(ap, fmt);
		vsnprintf(dm->err, sizeof(dm->err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&dm->lock);
	atomic_store(&dm->stop, 1);
}

/* ---- the model ---- */

static void m_add(order *o, int item, uint32_t qty)
{
	o->qty[item] += qty;
	o->total += (int64_t)qty * catalog[item].price;
}

static void m_remove(order *o, int item)
{
	o->total -= (int64_t)o->qty[item] * catalog[item].price;
	o->qty[item] = 0;
}

static int m_items(const order *o)
{
	int n = 0;

	for (int i = 0; i < NCAT; i++)
		n += o->qty[i] > 0;
	return n;
}

/* An item in the order (want 1) or not in it (want 0), drawn at random;
 * -1 when there is none. */
static int m_pick(const order *o, uint64_t *rng, int want)
{
	int start = (int)below(rng, NCAT);

	for (int i = 0; i < NCAT; i++) {
		int k = (start + i) % NCAT;
		if ((o->qty[k] > 0) == want)
			return k;
	}
	return -1;
}

/* The state the order's events must fold to (a new reference). */
static json_t *m_state(const order *o)
{
	json_t *items = json_object();
	char customer[24];

	for (int i = 0; i < NCAT; i++)
		if (o->qty[i])
			json_object_set_new(items, catalog[i].sku,
					    json_pack("{s:i, s:i}", "qty", (int)o->qty[i],
						      "price", catalog[i].price));
	snprintf(customer, sizeof(customer), "c-%" PRIu32, o->customer + 1);
	return json_pack("{s:s, s:s?, s:s?, s:o, s:I}", "status", statuses[o->status],
			 "customer", o->status == ST_NONE ? NULL : customer,
			 "currency", o->status == ST_NONE ? NULL : o->currency,
			 "items", items, "total", (json_int_t)o->total);
}

/* ---- commands ---- */

static json_t *c_place(const order *o, const char *currency)
{
	char customer[24];

	snprintf(customer, sizeof(customer), "c-%" PRIu32, o->customer + 1);
	return json_pack("{s:s, s:s, s:s, s:s}", "type", "PlaceOrder", "order_id",
			 o->stream + strlen("order-"), "customer_id", customer, "currency",
			 currency);
}

static json_t *c_add(int item, int qty, int price)
{
	return json_pack("{s:s, s:s, s:i, s:i}", "type", "AddItem", "sku", catalog[item].sku,
			 "qty", qty, "price", price);
}

static json_t *c_remove(int item)
{
	return json_pack("{s:s, s:s}", "type", "RemoveItem", "sku", catalog[item].sku);
}

static json_t *c_pay(int64_t amount)
{
	return json_pack("{s:s, s:I}", "type", "Pay", "amount", (json_int_t)amount);
}

static json_t *c_ship(void)
{
	return json_pack("{s:s}", "type", "Ship");
}

static json_t *c_cancel(const char *reason)
{
	return json_pack("{s:s, s:s}", "type", "Cancel", "reason", reason);
}

static int code_index(const char *code)
{
	for (int i = 0; i < NCODES; i++)
		if (strcmp(codes[i], code) == 0)
			return i;
	return -1;
}

/* What evs_handle's outcome was, for error messages. */
static void outcome(char *out, size_t size, int rc, const evs_handle_result *r,
		    const char *errmsg)
{
	if (rc == 0)
		snprintf(out, size, "accepted%s", r->idempotent ? " (as a repeat)" : "");
	else if (rc == EVS_EREJECTED)
		snprintf(out, size, "rejected: %s: %s", r->code, r->reason);
	else
		snprintf(out, size, "an error: %s: %s", evs_strerror(rc), errmsg);
}

enum repeat { MAY_REPEAT, SHARED };

/*
 * Handles `cmd` (stolen) on order o with command id `id` and time `when`,
 * and checks the outcome: success when `expect` is NULL, else that
 * rejection.  With MAY_REPEAT a success is sometimes sent again, which
 * must be reported idempotent with the same versions; with SHARED other
 * threads send the same command at the same time, so it may be the
 * repeat.  0, or -1 with the error recorded.
 */
static int handle_as(worker *w, const order *o, json_t *cmd, const char *id, const char *when,
		     const char *expect, enum repeat repeat)
{
	demo *dm = w->dm;
	evs_handle_options opt = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result r, again;
	char what[600], errmsg[1024];
	const char *type;
	int rc, ci;

	if (!cmd) {
		demo_error(dm, "%s: out of memory", o->stream);
		return -1;
	}
	type = json_string_value(json_object_get(cmd, "type"));
	json_object_set_new(cmd, "at", json_string(when));
	opt.command_id = id;
	opt.max_attempts = MAX_ATTEMPTS;
	opt.backoff_us = 100;
	memset(&r, 0, sizeof(r));
	rc = evs_handle(dm->store, &dm->dec, o->stream, cmd, &opt, &r);
	snprintf(errmsg, sizeof(errmsg), "%s", evs_errmsg());
	w->st.commands++;
	if (rc == 0 || rc == EVS_EREJECTED)
		w->st.conflicts += (uint64_t)(r.attempts > 1 ? r.attempts - 1 : 0);
	if (rc == 0 && !expect && (!r.idempotent || repeat == SHARED)) {
		if (r.idempotent)
			w->st.idempotent++;
		else
			w->st.events += r.events;
		if (repeat == MAY_REPEAT && roll(&w->rng, 7)) {
			memset(&again, 0, sizeof(again));
			rc = evs_handle(dm->store, &dm->dec, o->stream, cmd, &opt, &again);
			snprintf(errmsg, sizeof(errmsg), "%s", evs_errmsg());
			w->st.commands++;
			if (rc != 0 || !again.idempotent || again.events != r.events ||
			    again.first_version != r.first_version) {
				outcome(what, sizeof(what), rc, &again, errmsg);
				demo_error(dm, "%s: %s (command %s) sent again: expected the "
					   "events of the first time (versions %" PRIu64 "-%"
					   PRIu64 "), but it was %s", o->stream, type, id,
					   r.first_version, r.last_version, what);
				json_decref(cmd);
				return -1;
			}
			w->st.idempotent++;
		}
		json_decref(cmd);
		return 0;
	}
	if (rc == EVS_EREJECTED && expect && strcmp(r.code, expect) == 0 &&
	    (ci = code_index(r.code)) >= 0) {
		w->st.rejected[ci]++;
		json_decref(cmd);
		return 0;
	}
	outcome(what, sizeof(what), rc, &r, errmsg);
	demo_error(dm, "%s: %s (command %s): expected %s%s%s, but it was %s", o->stream, type,
		   id, expect ? "the rejection '" : "success", expect ? expect : "",
		   expect ? "'" : "", what);
	json_decref(cmd);
	return -1;
}

/* The order's next command, from its owner's thread. */
static int send_next(worker *w, order *o, json_t *cmd, const char *expect)
{
	char id[64], when[32];

	o->steps++;
	snprintf(id, sizeof(id), "%s:%" PRIu32, o->stream, o->steps);
	at(when, o->number, o->steps);
	return handle_as(w, o, cmd, id, when, expect, MAY_REPEAT);
}

/* ---- the scripts ---- */

static const char *const currencies[] = { "USD", "GBP", "CHF" };

/* A legacy or new order, start to end, on its customer's thread. */
static int run_order(worker *w, order *o)
{
	uint64_t rng = rng_for(w->dm->seed, 1, o->number);
	const char *currency = "EUR";
	int item;

#define SEND(cmd, expect) do { if (send_next(w, o, (cmd), (expect)) != 0) return -1; } while (0)
	if (o->kind == LEGACY) {
		/* placed (as v1) before the threads started */
		if (roll(&rng, 20))
			SEND(c_place(o, "EUR"), "already_placed");
	} else {
		if (roll(&rng, 5))
			SEND(c_add((int)below(&rng, NCAT), 1, 100), "no_order");
		if (roll(&rng, 20))
			currency = currencies[below(&rng, 3)];
		SEND(c_place(o, currency), NULL);
		o->status = ST_PLACED;
		memcpy(o->currency, currency, 4);
		if (roll(&rng, 5))
			SEND(c_place(o, currency), "already_placed");
	}
	if (roll(&rng, 4))
		SEND(c_pay(0), "empty_order");
	for (uint32_t i = 0, n = 1 + below(&rng, 5); i < n; i++) {
		uint32_t qty = 1 + below(&rng, 3);
		item = (int)below(&rng, NCAT);
		SEND(c_add(item, (int)qty, catalog[item].price), NULL);
		m_add(o, item, qty);
	}
	/* the order has items now (m_pick finds one) until the removal below */
	if (roll(&rng, 4))
		SEND(c_add(m_pick(o, &rng, 1), 0, 100), "bad_quantity");
	if (roll(&rng, 3))
		SEND(c_add(m_pick(o, &rng, 1), 1, -5), "bad_price");
	if (roll(&rng, 3)) {
		item = m_pick(o, &rng, 1);
		SEND(c_add(item, 1, catalog[item].price + 100), "price_mismatch");
	}
	if (roll(&rng, 20)) {
		item = m_pick(o, &rng, 1);
		SEND(c_remove(item), NULL);
		m_remove(o, item);
	}
	if (roll(&rng, 5) && (item = m_pick(o, &rng, 0)) >= 0)
		SEND(c_remove(item), "no_such_item");
	if (roll(&rng, 4))
		return 0; /* an abandoned cart: placed, never paid */
	if (m_items(o) == 0) {
		/* the customer removed everything, tries to pay, adds again */
		SEND(c_pay(0), "empty_order");
		item = (int)below(&rng, NCAT);
		SEND(c_add(item, 1, catalog[item].price), NULL);
		m_add(o, item, 1);
	}
	if (roll(&rng, 10)) {
		SEND(c_cancel("changed my mind"), NULL);
		o->status = ST_CANCELLED;
		if (roll(&rng, 40))
			SEND(roll(&rng, 50) ? c_pay(o->total) : c_ship(), "cancelled");
		return 0;
	}
	if (roll(&rng, 8))
		SEND(c_ship(), "not_paid");
	if (roll(&rng, 10))
		SEND(c_pay(o->total + (roll(&rng, 50) ? 100 : -1)), "wrong_amount");
	SEND(c_pay(o->total), NULL);
	o->status = ST_PAID;
	if (roll(&rng, 6))
		SEND(c_pay(o->total), "already_paid");
	if (roll(&rng, 6)) {
		item = (int)below(&rng, NCAT);
		SEND(c_add(item, 1, catalog[item].price), "already_paid");
	}
	if (roll(&rng, 5))
		SEND(c_remove(m_pick(o, &rng, 1)), "already_paid");
	if (roll(&rng, 7)) {
		SEND(c_cancel("found it cheaper"), NULL);
		o->status = ST_CANCELLED;
		return 0;
	}
	if (roll(&rng, 10))
		return 0; /* paid, waiting for the warehouse */
	SEND(c_ship(), NULL);
	o->status = ST_SHIPPED;
	if (roll(&rng, 5))
		SEND(c_ship(), "already_shipped");
	if (roll(&rng, 5))
		SEND(c_cancel("too late"), "already_shipped");
#undef SEND
	return 0;
}

/* Phase 2: every T-th customer, from thread w->index. */
static void *customers_main(void *arg)
{
	worker *w = arg;
	demo *dm = w->dm;

	for (uint32_t c = w->index; c < dm->customers; c += dm->threads) {
		for (size_t i = c; i < dm->nlegacy; i += dm->customers)
			if (atomic_load(&dm->stop) || run_order(w, &dm->orders[i]) != 0)
				return NULL;
		for (size_t i = dm->first_new[c]; i < dm->first_new[c + 1]; i++)
			if (atomic_load(&dm->stop) || run_order(w, &dm->orders[i]) != 0)
				return NULL;
	}
	return NULL;
}

/* What thread t adds to hot order h in round k: a pure function, so the
 * main thread knows the result without being told. */
static void hot_add(uint32_t t, uint32_t k, uint32_t h, int *item, uint32_t *qty)
{
	*item = (int)((t * 5 + k * 3 + h) % NCAT);
	*qty = 1 + (t + k) % 3;
}

/* Phase 3: all threads at once on the hot orders. */
static void *hot_main(void *arg)
{
	worker *w = arg;
	demo *dm = w->dm;
	char id[96], when[32];

	/* the threads start together and go through the hot orders in the
	 * same order, so they meet on one stream at a time */
	for (size_t h = 0; h < dm->nhot; h++) {
		order *o = &dm->orders[dm->nlegacy + h];
		for (uint32_t k = 0; k < HOT_ADDS; k++) {
			uint32_t qty;
			int item;

			if (atomic_load(&dm->stop))
				return NULL;
			hot_add(w->index, k, (uint32_t)h, &item, &qty);
			snprintf(id, sizeof(id), "%s:t%" PRIu32 "-%" PRIu32, o->stream, w->index, k);
			at(when, o->number, 100 + k);
			if (handle_as(w, o, c_add(item, (int)qty, catalog[item].price), id, when,
				      NULL, MAY_REPEAT) != 0)
				return NULL;
			if (h == 0 && k < HOT_SHARED) {
				/* a client retrying while its first try still runs */
				item = (int)(k % NCAT);
				snprintf(id, sizeof(id), "%s:shared-%" PRIu32, o->stream, k);
				at(when, o->number, 300 + k);
				if (handle_as(w, o, c_add(item, 1, catalog[item].price), id, when,
					      NULL, SHARED) != 0)
					return NULL;
			}
		}
	}
	return NULL;
}

/* Runs fn on every worker's thread and waits for them. */
static int run_threads(demo *dm, worker *ws, void *(*fn)(void *))
{
	uint32_t started = 0;
	int rc = 0;

	for (; started < dm->threads; started++) {
		if (pthread_create(&ws[started].th, NULL, fn, &ws[started]) != 0) {
			demo_error(dm, "cannot start a thread: %s", strerror(errno));
			rc = -1;
			break;
		}
	}
	for (uint32_t i = 0; i < started; i++)
		pthread_join(ws[i].th, NULL);
	return rc;
}

/* ---- setting up ---- */

/* The highest n of the streams order-<n> in the store (0: none). */
static int max_order_cb(const char *name, uint64_t last_version, void *ctx)
{
	uint64_t *max = ctx, n = 0;
	const char *p;

	(void)last_version;
	if (strncmp(name, "order-", 6) != 0 || name[6] < '1' || name[6] > '9')
		return 0;
	for (p = name + 6; *p >= '0' && *p <= '9' && n < UINT64_C(1000000000000); p++)
		n = n * 10 + (uint64_t)(*p - '0');
	if (*p == '\0' && n > *max)
		*max = n;
	return 0;
}

/* Lays out the run's orders: legacy ones (customer i % C), the hot ones,
 * then each customer's new ones, numbered from base + 1. */
static int plan(demo *dm, uint64_t base)
{
	size_t n, i = 0;
	uint32_t c;

	dm->nlegacy = dm->customers + dm->customers / 2;
	dm->nhot = dm->customers / 50 < 1 ? 1 : dm->customers / 50 > 8 ? 8 : dm->customers / 50;
	dm->first_new = calloc((size_t)dm->customers + 1, sizeof(size_t));
	if (!dm->first_new)
		return -1;
	n = dm->nlegacy + dm->nhot;
	for (c = 0; c < dm->customers; c++) {
		uint64_t rng = rng_for(dm->seed, 2, c);
		dm->first_new[c] = n;
		n += 1 + below(&rng, 3);
	}
	dm->first_new[c] = n;
	dm->norders = n;
	dm->orders = calloc(n, sizeof(order));
	if (!dm->orders)
		return -1;
	for (i = 0; i < n; i++) {
		order *o = &dm->orders[i];
		o->number = base + 1 + i;
		snprintf(o->stream, sizeof(o->stream), "order-%" PRIu64, o->number);
		o->kind = i < dm->nlegacy ? LEGACY : i < dm->nlegacy + dm->nhot ? HOT : NEW;
		o->customer = (uint32_t)(i % dm->customers);
		o->status = ST_NONE;
	}
	for (c = 0; c < dm->customers; c++)
		for (i = dm->first_new[c]; i < dm->first_new[c + 1]; i++)
			dm->orders[i].customer = c;
	return 0;
}

/* Phase 1: the legacy orders' OrderPlaced v1, appended as they were. */
static int append_legacy(demo *dm)
{
	for (size_t i = 0; i < dm->nlegacy; i++) {
		order *o = &dm->orders[i];
		char when[32], customer[24], *data;
		evs_new_event ev = { "OrderPlaced", NULL, NULL, NULL, 1 };
		json_t *j;
		int rc;

		at(when, o->number, 0);
		snprintf(customer, sizeof(customer), "c-%" PRIu32, o->customer + 1);
		j = json_pack("{s:s, s:s, s:s}", "order_id", o->stream + strlen("order-"),
			      "customer_id", customer, "placed_at", when);
		data = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
		if (!data) {
			demo_error(dm, "%s: out of memory", o->stream);
			return -1;
		}
		ev.data = data;
		rc = evs_append(dm->store, o->stream, EVS_EXPECT_NO_STREAM, &ev, 1, NULL);
		json_text_free(data);
		if (rc != 0) {
			demo_error(dm, "%s: cannot append the legacy OrderPlaced v1: %s: %s",
				   o->stream, evs_strerror(rc), evs_errmsg());
			return -1;
		}
		o->status = ST_PLACED;
		memcpy(o->currency, "EUR", 4); /* what v1 orders were in */
	}
	return 0;
}

/* The hot orders, placed before the threads and paid and shipped after. */
static int hot_place(worker *w)
{
	demo *dm = w->dm;

	for (size_t h = 0; h < dm->nhot; h++) {
		order *o = &dm->orders[dm->nlegacy + h];
		if (send_next(w, o, c_place(o, "EUR"), NULL) != 0)
			return -1;
		o->status = ST_PLACED;
		memcpy(o->currency, "EUR", 4);
	}
	return 0;
}

static int hot_finish(worker *w)
{
	demo *dm = w->dm;

	for (size_t h = 0; h < dm->nhot; h++) {
		order *o = &dm->orders[dm->nlegacy + h];
		for (uint32_t t = 0; t < dm->threads; t++) {
			for (uint32_t k = 0; k < HOT_ADDS; k++) {
				uint32_t qty;
				int item;
				hot_add(t, k, (uint32_t)h, &item, &qty);
				m_add(o, item, qty);
			}
		}
		if (h == 0)
			for (uint32_t k = 0; k < HOT_SHARED; k++)
				m_add(o, (int)(k % NCAT), 1);
		if (send_next(w, o, c_pay(o->total), NULL) != 0)
			return -1;
		o->status = ST_PAID;
		if (send_next(w, o, c_ship(), NULL) != 0)
			return -1;
		o->status = ST_SHIPPED;
	}
	return 0;
}

const char *demo_find_schemas(const char *given)
{
	static const char *const tries[] = { EVS_DEMO_SCHEMAS, FALLBACK_SCHEMAS };
	struct stat st;

	if (given)
		return given;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++)
		if (stat(tries[i], &st) == 0 && S_ISDIR(st.st_mode))
			return tries[i];
	return NULL;
}

const char *demo_find_projections(const char *given)
{
	static const char *const tries[] = { EVS_DEMO_PROJECTIONS, FALLBACK_PROJECTIONS };
	struct stat st;

	if (given)
		return given;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++)
		if (stat(tries[i], &st) == 0 && S_ISDIR(st.st_mode))
			return tries[i];
	return NULL;
}

/* ---- the read models ---- */

/* Loads the demo's projections from directory `pdir`, before the
 * workload, so that a missing or broken file stops the run before it
 * starts; a read model built by another version of its file will be
 * rebuilt when started.  0, or -1 with the error set. */
static int projections_load(demo *dm, const char *pdir)
{
	evs_projection_options po = EVS_PROJECTION_OPTIONS_INIT;
	char path[4200];
	int rc;

	po.rebuild_if_changed = 1;
	for (int i = 0; i < NPROJ; i++) {
		snprintf(path, sizeof(path), "%s/%s.sql", pdir, demo_projections[i]);
		if ((rc = evs_projection_load(dm->store, path, &po, NULL)) != 0) {
			demo_error(dm, "cannot load projection %s: %s: %s", path, evs_strerror(rc),
				   evs_errmsg());
			return -1;
		}
	}
	return 0;
}

static int projections_start(demo *dm)
{
	int rc = evs_projections_start(dm->store);

	if (rc != 0) {
		demo_error(dm, "cannot start the projections: %s: %s", evs_strerror(rc),
			   evs_errmsg());
		return -1;
	}
	return 0;
}

/*
 * Runs query `query` of projection `proj` with `params` (stolen, may be
 * NULL) once the read model has applied the workload's last event; *out
 * is a new reference.  A worker that stopped on an error, or a read model
 * that did not move for STALL_MS, is an error.  0, or -1 with the error
 * set.
 */
static int query_rows(demo *dm, const char *proj, const char *query, json_t *params,
		      json_t **out)
{
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	evs_projection_status ps;
	uint64_t seen = 0;
	uint32_t still_ms = 0;
	int rc;

	*out = NULL;
	qo.min_position = dm->head;
	qo.timeout_ms = 1000;
	while ((rc = evs_query(dm->store, proj, query, params, &qo, out, NULL)) == EVS_ETIMEOUT) {
		if (evs_projection_status_get(&ps, dm->store, proj) != 0 || ps.failed) {
			/* the worker's own message comes with stopping it */
			rc = evs_projections_stop(dm->store);
			demo_error(dm, "projection '%s' failed: %s: %s", proj,
				   evs_strerror(rc ? rc : ps.failed), evs_errmsg());
			json_decref(params);
			return -1;
		}
		still_ms = ps.checkpoint > seen ? 0 : still_ms + qo.timeout_ms;
		seen = ps.checkpoint;
		if (still_ms >= STALL_MS)
			break;
	}
	json_decref(params);
	if (rc != 0) {
		demo_error(dm, "query %s %s: %s: %s", proj, query, evs_strerror(rc), evs_errmsg());
		return -1;
	}
	return 0;
}

/* The order's row in the orders read model against the state folded from
 * its events: status, customer, currency, total, item count and version.
 * 0, or -1 with the error set. */
static int check_read_model(demo *dm, const order *o, const orders_loaded *l)
{
	json_t *found, *row, *line;
	json_int_t items = 0;
	const char *sku;
	char *text;

	if (query_rows(dm, "orders", "by_id", json_pack("{s:s}", "id", o->stream), &found) != 0)
		return -1;
	json_object_foreach(json_object_get(l->state, "items"), sku, line)
		items += json_integer_value(json_object_get(line, "qty"));
	row = json_array_get(found, 0);
	if (json_array_size(found) == 1 &&
	    json_equal(json_object_get(row, "status"), json_object_get(l->state, "status")) &&
	    json_equal(json_object_get(row, "customer"), json_object_get(l->state, "customer")) &&
	    json_equal(json_object_get(row, "currency"), json_object_get(l->state, "currency")) &&
	    json_equal(json_object_get(row, "total"), json_object_get(l->state, "total")) &&
	    json_integer_value(json_object_get(row, "item_count")) == items &&
	    json_integer_value(json_object_get(row, "version")) == (json_int_t)l->version) {
		json_decref(found);
		return 0;
	}
	text = json_dumps(found, JSON_COMPACT);
	demo_error(dm, "%s: the orders read model has %s, but its events fold to status %s, "
		   "total %" JSON_INTEGER_FORMAT ", item_count %" JSON_INTEGER_FORMAT
		   " at version %" PRIu64, o->stream, text ? text : "?",
		   json_string_value(json_object_get(l->state, "status")),
		   json_integer_value(json_object_get(l->state, "total")), items, l->version);
	json_text_free(text);
	json_decref(found);
	return -1;
}

/* ---- the summary ---- */

typedef struct summary {
	stats st;
	uint64_t legacy_upcast;
	uint64_t by_status[NSTATUS];
	double seconds;
	const order *sample;
	json_t *sample_state;
	uint64_t sample_version;
	uint32_t sample_upcast;
	json_t *top, *revenue, *orders; /* the summary's query rows */
} summary;

/* Folds every order of the run from its events and compares it with its
 * model; fills the counts of the summary.  0, or -1 with the error set. */
static int check_orders(demo *dm, summary *sm)
{
	for (size_t i = 0; i < dm->norders; i++) {
		const order *o = &dm->orders[i];
		orders_loaded l;
		json_t *want;
		int rc = orders_load(&l, dm->store, o->stream);

		if (rc != 0) {
			demo_error(dm, "%s: cannot fold its events: %s", o->stream, l.error);
			return -1;
		}
		want = m_state(o);
		if (json_equal(want, l.state) && check_read_model(dm, o, &l) != 0) {
			json_decref(want);
			json_decref(l.state);
			return -1;
		}
		if (!json_equal(want, l.state)) {
			char *a = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
			char *b = json_dumps(l.state, JSON_COMPACT | JSON_SORT_KEYS);
			demo_error(dm, "%s: its events fold to %s, but the workload expected %s",
				   o->stream, b ? b : "?", a ? a : "?");
			json_text_free(a);
			json_text_free(b);
			json_decref(want);
			json_decref(l.state);
			return -1;
		}
		json_decref(want);
		if (o->kind == LEGACY)
			sm->legacy_upcast += l.upcast;
		sm->by_status[o->status]++;
		/* the sample: of the legacy orders that made it to shipping, the
		 * one with the longest history (the first of them on a tie) */
		if (o->kind == LEGACY && o->status == ST_SHIPPED &&
		    (!sm->sample_state || l.version > sm->sample_version)) {
			json_decref(sm->sample_state);
			sm->sample = o;
			sm->sample_state = l.state;
			sm->sample_version = l.version;
			sm->sample_upcast = l.upcast;
		} else {
			json_decref(l.state);
		}
	}
	return 0;
}

/* The summary's queries: the top customers, the first rows of daily
 * revenue, and the run's first, middle and last orders.  0, or -1 with
 * the error set. */
static int read_queries(demo *dm, summary *sm)
{
	const order *pick[] = { &dm->orders[0], &dm->orders[dm->norders / 2],
				&dm->orders[dm->norders - 1] };
	json_t *days, *rows;

	if (query_rows(dm, "customers", "top", json_pack("{s:i}", "limit", TOP_CUSTOMERS),
		       &sm->top) != 0 ||
	    query_rows(dm, "daily_revenue", "days", NULL, &days) != 0)
		return -1;
	sm->revenue = json_array();
	for (size_t i = 0; i < json_array_size(days) && i < REVENUE_ROWS; i++)
		json_array_append(sm->revenue, json_array_get(days, i));
	json_decref(days);
	sm->orders = json_array();
	for (size_t i = 0; i < sizeof(pick) / sizeof(pick[0]); i++) {
		if (query_rows(dm, "orders", "by_id", json_pack("{s:s}", "id", pick[i]->stream),
			       &rows) != 0)
			return -1;
		json_array_extend(sm->orders, rows);
		json_decref(rows);
	}
	return 0;
}

/* Integer cents as "1234.56". */
static void money(char out[32], json_int_t cents)
{
	snprintf(out, 32, "%s%" JSON_INTEGER_FORMAT ".%02d", cents < 0 ? "-" : "",
		 (cents < 0 ? -cents : cents) / 100, (int)((cents < 0 ? -cents : cents) % 100));
}

static int64_t int_of(const json_t *row, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(row, key));
}

static const char *str_of(const json_t *row, const char *key)
{
	const char *v = json_string_value(json_object_get(row, key));

	return v ? v : "-";
}

static void print_queries(const demo *dm, const char *pdir, const summary *sm)
{
	const json_t *row;
	char m[32];
	size_t i;

	printf("\nread models at position %" PRIu64 " (projections orders, customers, "
	       "daily_revenue in %s):\n", dm->head, pdir);
	printf("every order's row in the orders read model matches its events\n");
	printf("%-16s %12s %12s  %s\n", "top customers", "spend", "paid/placed", "last order");
	json_array_foreach(sm->top, i, row) {
		char n[48];
		money(m, int_of(row, "spend"));
		snprintf(n, sizeof(n), "%" PRId64 "/%" PRId64, int_of(row, "orders_paid"),
			 int_of(row, "orders_placed"));
		printf("  %-14s %12s %12s  %s, placed %s\n", str_of(row, "customer"), m, n,
		       str_of(row, "last_order"), str_of(row, "last_order_at"));
	}
	printf("%-16s %12s %12s\n", "revenue by day", "orders paid", "revenue");
	json_array_foreach(sm->revenue, i, row) {
		money(m, int_of(row, "revenue"));
		printf("  %-10s %-3s %12" PRId64 " %12s\n", str_of(row, "day"),
		       str_of(row, "currency"), int_of(row, "orders_paid"), m);
	}
	printf("%-16s %12s %12s  %s\n", "orders", "items", "total", "status");
	json_array_foreach(sm->orders, i, row) {
		money(m, int_of(row, "total"));
		printf("  %-14s %12" PRId64 " %12s  %s, %s, %s, version %" PRId64 "\n",
		       str_of(row, "id"), int_of(row, "item_count"), m, str_of(row, "status"),
		       str_of(row, "customer"), str_of(row, "currency"), int_of(row, "version"));
	}
}

static int print_summary(demo *dm, const char *dir, const char *schemas, const char *pdir,
			 summary *sm)
{
	const stats *st = &sm->st;
	uint64_t rejected = 0;
	double per_second = sm->seconds > 0 ? (double)st->commands / sm->seconds : 0;
	json_t *rej = json_object(), *by = json_object(), *line;
	char *state_text = NULL;
	int rc;

	for (int i = 0; i < NCODES; i++) {
		rejected += st->rejected[i];
		if (st->rejected[i])
			json_object_set_new(rej, codes[i], json_integer((json_int_t)st->rejected[i]));
	}
	for (int s = ST_PLACED; s < NSTATUS; s++)
		json_object_set_new(by, statuses[s], json_integer((json_int_t)sm->by_status[s]));

	printf("evstore demo: %" PRIu32 " customers on %" PRIu32 " threads, seed %" PRIu64 "\n",
	       dm->customers, dm->threads, dm->seed);
	printf("store %s, orders %s .. %s; schemas %s (strict, formats checked)\n\n", dir,
	       dm->orders[0].stream, dm->orders[dm->norders - 1].stream, schemas);
	printf("legacy v1 events    %8zu  OrderPlaced v1 (no currency), appended directly\n",
	       dm->nlegacy);
	printf("commands handled    %8" PRIu64 "  in %.2f s, %.0f commands/s\n", st->commands,
	       sm->seconds, per_second);
	printf("events appended     %8" PRIu64 "\n", st->events);
	printf("rejections          %8" PRIu64 "  business rules, each on purpose:\n", rejected);
	for (int i = 0; i < NCODES; i++)
		if (st->rejected[i])
			printf("  %-17s %8" PRIu64 "\n", codes[i], st->rejected[i]);
	printf("conflicts retried   %8" PRIu64 "  reloads after losing a race (%zu hot order%s)\n",
	       st->conflicts, dm->nhot, dm->nhot == 1 ? "" : "s");
	printf("idempotent repeats  %8" PRIu64 "  commands sent again with their command id, "
	       "applied once\n", st->idempotent);
	printf("legacy v1 upcast    %8" PRIu64 "  v1 events folded as v2 (currency EUR)\n",
	       sm->legacy_upcast);
	printf("orders              %8zu  ", dm->norders);
	for (int s = ST_PLACED; s < NSTATUS; s++)
		printf("%s %" PRIu64 "%s", statuses[s], sm->by_status[s],
		       s + 1 < NSTATUS ? ", " : "\n");
	printf("every order folded from its events matches the workload's expectation\n");
	if (sm->sample_state) {
		state_text = json_dumps(sm->sample_state, 0);
		printf("\nsample %s (legacy: OrderPlaced v1, %" PRIu32 " event%s upcast), state at "
		       "version %" PRIu64 ":\n  %s\n", sm->sample->stream, sm->sample_upcast,
		       sm->sample_upcast == 1 ? "" : "s", sm->sample_version,
		       state_text ? state_text : "?");
		json_text_free(state_text);
	}
	print_queries(dm, pdir, sm);
	printf("\n");

	line = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:I,"
			 " s:I, s:o, s:f, s:I, s:{s:s?, s:I, s:O?}}",
			 "dir", dir,
			 "seed", (json_int_t)dm->seed,
			 "customers", (json_int_t)dm->customers,
			 "threads", (json_int_t)dm->threads,
			 "first_order", dm->orders[0].stream,
			 "last_order", dm->orders[dm->norders - 1].stream,
			 "orders", (json_int_t)dm->norders,
			 "legacy_v1_events", (json_int_t)dm->nlegacy,
			 "commands", (json_int_t)st->commands,
			 "events", (json_int_t)st->events,
			 "rejections", rej,
			 "conflicts_retried", (json_int_t)st->conflicts,
			 "idempotent", (json_int_t)st->idempotent,
			 "legacy_v1_upcast", (json_int_t)sm->legacy_upcast,
			 "orders_by_status", by,
			 "seconds", sm->seconds,
			 "commands_per_second", (json_int_t)(per_second + 0.5),
			 "sample",
			 "stream", sm->sample ? sm->sample->stream : NULL,
			 "version", (json_int_t)sm->sample_version,
			 "state", sm->sample_state);
	if (line)
		json_object_set_new(line, "queries",
				    json_pack("{s:I, s:O, s:O, s:O}", "position", (json_int_t)dm->head,
					      "top_customers", sm->top, "daily_revenue", sm->revenue,
					      "orders", sm->orders));
	rc = line && json_dumpf(line, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6)) == 0 &&
	     putchar('\n') != EOF ? 0 : -1;
	json_decref(line);
	return rc;
}

/* ---- the command ---- */

const char usage_demo[] =
	"usage: evstore demo [DIR] [--customers N] [--threads T] [--seed X]\n"
	"                    [--schemas DIR] [--projections DIR]\n"
	"                    [--durability sync|none]\n"
	"\n"
	"Runs the orders demo in the store in DIR (default " DEFAULT_DIR ", created if\n"
	"missing): customers place, fill, pay, ship and cancel web-shop orders\n"
	"(streams order-<n>) from several threads, every command through\n"
	"evs_handle and the order decider, every event validated against the\n"
	"JSON Schemas of the schema directory (strict, formats checked).  The\n"
	"workload includes legacy OrderPlaced v1 events (upcast to v2 when\n"
	"read), commands that break a rule on purpose, hot orders that every\n"
	"thread changes at once (conflicts, retried), and commands sent twice\n"
	"(idempotent).  The same seed gives the same orders; a second run on\n"
	"the same store adds new orders after the existing ones.\n"
	"\n"
	"Options:\n"
	"  --customers N    customers (default 200): 1.5 legacy and 1-3 new\n"
	"                   orders each, plus N/50 hot orders (1 to 8)\n"
	"  --threads T      threads (default 4)\n"
	"  --seed X         seed of the workload (default 42)\n"
	"  --schemas DIR    the event schemas (default: the source tree's\n"
	"                   schema/events, else ./schema/events)\n"
	"  --projections DIR  the projections orders.sql, customers.sql and\n"
	"                   daily_revenue.sql (default: the source tree's\n"
	"                   projections, else ./projections)\n"
	"  --durability D   sync (default) or none\n"
	"\n"
	"Prints what happened: commands handled, events appended, rejections by\n"
	"code, conflicts retried, idempotent repeats, legacy events upcast,\n"
	"orders by final status, time and commands/s, and one order's state;\n"
	"then what the read models of the projections say (top customers,\n"
	"daily revenue, three orders), queried at the workload's last\n"
	"position; then the same as one JSON line.  Every order is checked\n"
	"against what its script expected and against its row in the orders\n"
	"read model; any difference is an error naming the order (exit\n"
	"status 1).\n";

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_err(const char *fmt, ...)
{
	va_list ap;

	fputs("evstore: demo: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'evstore demo --help'.\n", stderr);
	return RC_USAGE;
}

/* The value of option argv[*i] ("--name value" or "--name=value"). */
static const char *opt_value(int argc, char **argv, int *i, size_t name_len)
{
	const char *a = argv[*i];

	if (a[name_len] == '=')
		return a + name_len + 1;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int opt_u64(const char *name, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long n;
	char *end;

	if (!v)
		return usage_err("option '%s' needs a value", name);
	errno = 0;
	n = strtoull(v, &end, 10);
	if (*v < '0' || *v > '9' || errno != 0 || *end != '\0' || n < min || n > max)
		return usage_err("option '%s': '%s' is not a number from %" PRIu64 " to %"
				 PRIu64, name, v, min, max);
	*out = n;
	return 0;
}

int cmd_demo(const char *cmd, int argc, char **argv)
{
	static demo dmv;
	demo *dm = &dmv;
	const char *dir = NULL, *schemas_opt = NULL, *schemas, *pdir_opt = NULL, *pdir;
	uint64_t customers = 200, threads = 4, seed = 42, base = 0;
	evs_durability durability = EVS_DURABILITY_SYNC;
	evs_options opts = EVS_OPTIONS_INIT;
	worker *ws = NULL, mw;
	summary sm;
	double t0;
	int rc = RC_FAIL, opts_done = 0, err;

	(void)cmd;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		size_t len = strcspn(a, "=");

		if (opts_done || a[0] != '-' || a[1] == '\0') {
			if (dir)
				return usage_err("unexpected argument '%s'", a);
			dir = a;
			continue;
		}
#define IS(name) (len == sizeof(name) - 1 && strncmp(a, name, len) == 0)
		if (strcmp(a, "--") == 0) {
			opts_done = 1;
		} else if (IS("--customers")) {
			if (opt_u64("--customers", opt_value(argc, argv, &i, len), 1, 1000000,
				    &customers))
				return RC_USAGE;
		} else if (IS("--threads")) {
			if (opt_u64("--threads", opt_value(argc, argv, &i, len), 1, 64, &threads))
				return RC_USAGE;
		} else if (IS("--seed")) {
			if (opt_u64("--seed", opt_value(argc, argv, &i, len), 0, UINT64_MAX, &seed))
				return RC_USAGE;
		} else if (IS("--schemas")) {
			schemas_opt = opt_value(argc, argv, &i, len);
			if (!schemas_opt || !*schemas_opt)
				return usage_err("option '--schemas' needs a value");
		} else if (IS("--projections")) {
			pdir_opt = opt_value(argc, argv, &i, len);
			if (!pdir_opt || !*pdir_opt)
				return usage_err("option '--projections' needs a value");
		} else if (IS("--durability")) {
			const char *v = opt_value(argc, argv, &i, len);
			if (v && strcmp(v, "sync") == 0)
				durability = EVS_DURABILITY_SYNC;
			else if (v && strcmp(v, "none") == 0)
				durability = EVS_DURABILITY_NONE;
			else
				return usage_err("option '--durability': '%s' is not 'sync' or "
						 "'none'", v ? v : "");
		} else {
			return usage_err("unknown option '%.*s'", (int)len, a);
		}
#undef IS
	}
	if (!dir)
		dir = DEFAULT_DIR;
	if (!(schemas = demo_find_schemas(schemas_opt))) {
		fprintf(stderr, "evstore: demo: cannot find the event schemas (tried %s and "
			"./%s); give --schemas DIR\n", EVS_DEMO_SCHEMAS, FALLBACK_SCHEMAS);
		return RC_FAIL;
	}
	if (!(pdir = demo_find_projections(pdir_opt))) {
		fprintf(stderr, "evstore: demo: cannot find the projections (tried %s and "
			"./%s); give --projections DIR\n", EVS_DEMO_PROJECTIONS,
			FALLBACK_PROJECTIONS);
		return RC_FAIL;
	}

	memset(dm, 0, sizeof(*dm));
	memset(&sm, 0, sizeof(sm));
	memset(&mw, 0, sizeof(mw));
	pthread_mutex_init(&dm->lock, NULL);
	dm->seed = seed;
	dm->customers = (uint32_t)customers;
	dm->threads = (uint32_t)threads;
	orders_decider(&dm->dec);

	/* a projection file that cannot be read stops the run before the
	 * store is created or touched */
	for (int i = 0; i < NPROJ; i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s.sql", pdir, demo_projections[i]);
		if (access(path, R_OK) != 0) {
			fprintf(stderr, "evstore: demo: cannot load projection %s: %s\n", path,
				strerror(errno));
			goto out;
		}
	}
	opts.create = 1;
	opts.durability = durability;
	opts.schema_dir = schemas;
	opts.schema_strict = 1;
	opts.schema_formats = 1;
	if ((err = evs_open(&dm->store, dir, &opts)) != 0) {
		fprintf(stderr, "evstore: demo: cannot open store '%s': %s: %s\n", dir,
			evs_strerror(err), evs_errmsg());
		dm->store = NULL;
		goto out;
	}
	if ((err = evs_list_streams(dm->store, NULL, 0, max_order_cb, &base)) != 0) {
		fprintf(stderr, "evstore: demo: cannot list the streams of '%s': %s: %s\n", dir,
			evs_strerror(err), evs_errmsg());
		goto out;
	}
	if (plan(dm, base) != 0 || !(ws = calloc(dm->threads, sizeof(*ws)))) {
		fprintf(stderr, "evstore: demo: out of memory\n");
		goto out;
	}
	mw.dm = dm;
	mw.rng = rng_for(seed, 3, 0);
	for (uint32_t t = 0; t < dm->threads; t++) {
		ws[t].dm = dm;
		ws[t].index = t;
		ws[t].rng = rng_for(seed, 4, t);
	}

	if (projections_load(dm, pdir) == 0 && append_legacy(dm) == 0) {
		t0 = now_seconds();
		if (hot_place(&mw) == 0 && run_threads(dm, ws, customers_main) == 0 &&
		    !atomic_load(&dm->stop) && run_threads(dm, ws, hot_main) == 0 &&
		    !atomic_load(&dm->stop))
			hot_finish(&mw);
		sm.seconds = now_seconds() - t0;
	}
	/* the read models: built from the log (or caught up, on a second
	 * run), then read at the workload's last position */
	if (!atomic_load(&dm->stop)) {
		evs_stats es;
		memset(&es, 0, sizeof(es));
		if ((err = evs_stats_get(&es, dm->store)) != 0)
			demo_error(dm, "cannot read the store's head: %s: %s", evs_strerror(err),
				   evs_errmsg());
		dm->head = es.head_position;
	}
	if (!atomic_load(&dm->stop) && projections_start(dm) == 0 &&
	    check_orders(dm, &sm) == 0 && read_queries(dm, &sm) == 0 &&
	    (err = evs_projections_stop(dm->store)) != 0)
		demo_error(dm, "the projections stopped on an error: %s: %s", evs_strerror(err),
			   evs_errmsg());
	if (atomic_load(&dm->stop)) {
		fprintf(stderr, "evstore: demo: %s\n", dm->err);
		goto out;
	}

	sm.st = mw.st;
	for (uint32_t t = 0; t < dm->threads; t++) {
		sm.st.commands += ws[t].st.commands;
		sm.st.events += ws[t].st.events;
		sm.st.conflicts += ws[t].st.conflicts;
		sm.st.idempotent += ws[t].st.idempotent;
		for (int i = 0; i < NCODES; i++)
			sm.st.rejected[i] += ws[t].st.rejected[i];
	}
	if (print_summary(dm, dir, schemas, pdir, &sm) != 0) {
		fprintf(stderr, "evstore: demo: cannot write the summary\n");
		goto out;
	}
	rc = RC_OK;
out:
	json_decref(sm.sample_state);
	json_decref(sm.top);
	json_decref(sm.revenue);
	json_decref(sm.orders);
	if (dm->store)
		evs_projections_stop(dm->store);
	evs_close(dm->store);
	free(ws);
	free(dm->orders);
	free(dm->first_new);
	pthread_mutex_destroy(&dm->lock);
	return rc;
}
