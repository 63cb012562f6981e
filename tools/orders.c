/*
 * orders.c: the order decider (see orders.h for the domain and its rules).
 *
 * decide() checks the order's state first (cancelled, placed or not, paid,
 * shipped), then the command's fields, and emits at most one event.  The
 * fields it checks are the ones the event schemas in schema/events/ check
 * again on append, with the same limits: a command the decider accepts
 * never fails validation, and a rejection names the business rule instead
 * of a JSON pointer.  Timestamps are the one exception: "at" is only
 * required to be a string here, and its date-time format is the schemas'
 * to check (with evs_options.schema_formats).
 *
 * evolve() folds facts and trusts them: it does not re-check the rules,
 * because the events were accepted by an earlier decide.  It refuses
 * (returns NULL, which fails the command) only what it cannot fold: an
 * unknown type, a schema version it was not written for, or data without
 * the fields it needs.  It reads OrderPlaced at version 2 only: stored v1
 * events reach it through the upcaster OrderPlaced.v1-v2.sql, never raw.
 *
 * Invariant of the state: "total" is the sum of qty * price over "items",
 * kept as a running sum so that folding stays linear in the events.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "orders.h"

static const char *const command_names[ORDER_COMMANDS] = {
	"PlaceOrder", "AddItem", "RemoveItem", "Pay", "Ship", "Cancel",
};

int orders_command_parse(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < ORDER_COMMANDS; i++)
		if (strcmp(name, command_names[i]) == 0)
			return i;
	return -1;
}

const char *orders_command_name(int c)
{
	return c >= 0 && c < ORDER_COMMANDS ? command_names[c] : NULL;
}

/* ---- field checks (the schemas' patterns, written out) ---- */

static int is_alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ */
static int is_id(const char *s)
{
	size_t n;

	if (!s || !is_alnum(s[0]))
		return 0;
	for (n = 1; s[n]; n++)
		if (!is_alnum(s[n]) && s[n] != '_' && s[n] != '-')
			return 0;
	return n <= 64;
}

/* ^[A-Z]{2,8}-[0-9]{1,6}$ */
static int is_sku(const char *s)
{
	size_t i = 0, j;

	if (!s)
		return 0;
	while (s[i] >= 'A' && s[i] <= 'Z')
		i++;
	if (i < 2 || i > 8 || s[i] != '-')
		return 0;
	for (j = i + 1; s[j] >= '0' && s[j] <= '9'; j++)
		;
	return s[j] == '\0' && j - i - 1 >= 1 && j - i - 1 <= 6;
}

/* ^[A-Z]{3}$ */
static int is_currency(const char *s)
{
	return s && strlen(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' &&
	       s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z';
}

/* 1 when j is a JSON integer (not a real, even 1.0) in [min, max]. */
static int int_in(const json_t *j, json_int_t min, json_int_t max, json_int_t *out)
{
	if (!json_is_integer(j) || json_integer_value(j) < min || json_integer_value(j) > max)
		return 0;
	*out = json_integer_value(j);
	return 1;
}

static const char *str_field(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/*
 * The event's timestamp: the command's "at", or now (UTC, milliseconds).
 * -1 when "at" is there but is not a plausible string; whether it is a
 * valid date-time is the schema's call.
 */
static int timestamp(const json_t *cmd, char out[96])
{
	const json_t *at = json_object_get(cmd, "at");
	struct timespec ts;
	struct tm tm;

	if (at) {
		const char *s = json_string_value(at);
		if (!s || !*s || strlen(s) > 64)
			return -1;
		snprintf(out, 96, "%s", s);
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ts.tv_nsec / 1000000));
	return 0;
}

/* ---- the decider ---- */

static json_t *o_initial(void *ctx)
{
	(void)ctx;
	return json_pack("{s:s, s:n, s:n, s:o, s:i}", "status", "none", "customer",
			 "currency", "items", json_object(), "total", 0);
}

static int type_is(const evs_event *ev, const char *name)
{
	return ev->type_len == strlen(name) && memcmp(ev->type, name, ev->type_len) == 0;
}

static json_t *o_evolve(void *ctx, json_t *state, const evs_event *ev, const json_t *data)
{
	json_t *items = json_object_get(state, "items"), *line;
	json_int_t total = json_integer_value(json_object_get(state, "total"));
	json_int_t qty, price;
	const char *sku;

	(void)ctx;
	if (type_is(ev, "OrderPlaced")) {
		const char *customer = str_field(data, "customer_id");
		const char *currency = str_field(data, "currency");
		/* version 2 only: a v1 event here means it was not upcast */
		if (ev->schema_version != 2 || !customer || !currency)
			goto refuse;
		json_object_set_new(state, "status", json_string("placed"));
		json_object_set_new(state, "customer", json_string(customer));
		json_object_set_new(state, "currency", json_string(currency));
		return state;
	}
	if (ev->schema_version != 1)
		goto refuse;
	if (type_is(ev, "ItemAdded")) {
		sku = str_field(data, "sku");
		if (!sku || !json_is_object(items) ||
		    !int_in(json_object_get(data, "qty"), 1, ORDERS_MAX_QTY, &qty) ||
		    !int_in(json_object_get(data, "price"), 0, ORDERS_MAX_PRICE, &price))
			goto refuse;
		line = json_object_get(items, sku);
		/* decide keeps one price per sku, so a line's price never changes */
		json_object_set_new(items, sku, json_pack("{s:I, s:I}", "qty", qty +
				    (line ? json_integer_value(json_object_get(line, "qty")) : 0),
				    "price", price));
		json_object_set_new(state, "total", json_integer(total + qty * price));
		return state;
	}
	if (type_is(ev, "ItemRemoved")) {
		sku = str_field(data, "sku");
		line = sku && json_is_object(items) ? json_object_get(items, sku) : NULL;
		if (!line)
			goto refuse;
		total -= json_integer_value(json_object_get(line, "qty")) *
			 json_integer_value(json_object_get(line, "price"));
		json_object_del(items, sku);
		json_object_set_new(state, "total", json_integer(total));
		return state;
	}
	if (type_is(ev, "OrderPaid")) {
		json_object_set_new(state, "status", json_string("paid"));
		return state;
	}
	if (type_is(ev, "OrderShipped")) {
		json_object_set_new(state, "status", json_string("shipped"));
		return state;
	}
	if (type_is(ev, "OrderCancelled")) {
		json_object_set_new(state, "status", json_string("cancelled"));
		return state;
	}
refuse:
	json_decref(state);
	return NULL;
}

static int decide_place(const json_t *cmd, const char *at, evs_decision *d)
{
	const char *order_id = str_field(cmd, "order_id");
	const char *customer = str_field(cmd, "customer_id");
	const json_t *cur = json_object_get(cmd, "currency");
	const char *currency = cur ? json_string_value(cur) : "EUR";

	if (!is_id(order_id)) {
		evs_decision_reject(d, "bad_order_id", "order_id must be 1 to 64 letters, "
				    "digits, '_' or '-', starting with a letter or digit");
		return 0;
	}
	if (!is_id(customer)) {
		evs_decision_reject(d, "bad_customer", "customer_id must be 1 to 64 letters, "
				    "digits, '_' or '-', starting with a letter or digit");
		return 0;
	}
	if (!is_currency(currency)) {
		evs_decision_reject(d, "bad_currency", "currency must be three capital "
				    "letters, like EUR");
		return 0;
	}
	return evs_decision_emit(d, "OrderPlaced", 2,
				 json_pack("{s:s, s:s, s:s, s:s}", "order_id", order_id,
					   "customer_id", customer, "currency", currency,
					   "placed_at", at));
}

static int decide_add(const json_t *state, const json_t *cmd, evs_decision *d)
{
	const char *sku = str_field(cmd, "sku");
	const json_t *line;
	json_int_t qty, price;

	if (!is_sku(sku)) {
		evs_decision_reject(d, "bad_sku", "sku must be 2 to 8 capital letters, '-' "
				    "and 1 to 6 digits, like TEA-101");
		return 0;
	}
	if (!int_in(json_object_get(cmd, "qty"), 1, ORDERS_MAX_QTY, &qty)) {
		evs_decision_reject(d, "bad_quantity", "qty must be an integer from 1 to %d",
				    ORDERS_MAX_QTY);
		return 0;
	}
	if (!int_in(json_object_get(cmd, "price"), 0, ORDERS_MAX_PRICE, &price)) {
		evs_decision_reject(d, "bad_price", "price must be an integer number of cents "
				    "from 0 to %d", ORDERS_MAX_PRICE);
		return 0;
	}
	line = json_object_get(json_object_get(state, "items"), sku);
	if (line && json_integer_value(json_object_get(line, "price")) != price) {
		evs_decision_reject(d, "price_mismatch", "%s is in the order at %" JSON_INTEGER_FORMAT
				    ", not %" JSON_INTEGER_FORMAT, sku,
				    json_integer_value(json_object_get(line, "price")), price);
		return 0;
	}
	return evs_decision_emit(d, "ItemAdded", 1, json_pack("{s:s, s:I, s:I}", "sku", sku,
							      "qty", qty, "price", price));
}

static int decide_remove(const json_t *state, const json_t *cmd, evs_decision *d)
{
	const char *sku = str_field(cmd, "sku");
	const json_t *line;

	if (!is_sku(sku)) {
		evs_decision_reject(d, "bad_sku", "sku must be 2 to 8 capital letters, '-' "
				    "and 1 to 6 digits, like TEA-101");
		return 0;
	}
	line = json_object_get(json_object_get(state, "items"), sku);
	if (!line) {
		evs_decision_reject(d, "no_such_item", "%s is not in the order", sku);
		return 0;
	}
	return evs_decision_emit(d, "ItemRemoved", 1, json_pack("{s:s, s:I}", "sku", sku, "qty",
				 json_integer_value(json_object_get(line, "qty"))));
}

static int decide_pay(const json_t *state, const json_t *cmd, const char *at,
		      evs_decision *d)
{
	json_int_t total = json_integer_value(json_object_get(state, "total"));
	const json_t *amount = json_object_get(cmd, "amount");

	if (json_object_size(json_object_get(state, "items")) == 0) {
		evs_decision_reject(d, "empty_order", "order has no items");
		return 0;
	}
	if (!json_is_integer(amount)) {
		evs_decision_reject(d, "wrong_amount", "amount must be the order's total in "
				    "integer cents, %" JSON_INTEGER_FORMAT, total);
		return 0;
	}
	if (json_integer_value(amount) != total) {
		evs_decision_reject(d, "wrong_amount", "amount %" JSON_INTEGER_FORMAT " is not "
				    "the order's total %" JSON_INTEGER_FORMAT,
				    json_integer_value(amount), total);
		return 0;
	}
	return evs_decision_emit(d, "OrderPaid", 1, json_pack("{s:I, s:s, s:s}", "amount", total,
				 "currency", str_field(state, "currency"), "paid_at", at));
}

static int decide_cancel(const json_t *cmd, const char *at, evs_decision *d)
{
	const json_t *r = json_object_get(cmd, "reason");
	const char *reason = r ? json_string_value(r) : "customer request";

	if (!reason || !*reason || strlen(reason) > 200) {
		evs_decision_reject(d, "bad_reason", "reason must be a string of 1 to 200 bytes");
		return 0;
	}
	return evs_decision_emit(d, "OrderCancelled", 1, json_pack("{s:s, s:s}", "reason", reason,
				 "cancelled_at", at));
}

static int o_decide(void *ctx, const json_t *state, const json_t *cmd, evs_decision *d)
{
	const char *type = str_field(cmd, "type");
	const char *status = str_field(state, "status");
	int c = orders_command_parse(type);
	int paid, shipped;
	char at[96];

	(void)ctx;
	if (c < 0) {
		if (type)
			evs_decision_reject(d, "unknown_command", "unknown command type '%.64s'",
					    type);
		else
			evs_decision_reject(d, "unknown_command", "the command has no type");
		return 0;
	}
	if (!status)
		return EVS_EINVAL;
	if (strcmp(status, "cancelled") == 0) {
		evs_decision_reject(d, "cancelled", "order is cancelled");
		return 0;
	}
	if (c == ORDER_PLACE && strcmp(status, "none") != 0) {
		evs_decision_reject(d, "already_placed", "order is already placed");
		return 0;
	}
	if (c != ORDER_PLACE && strcmp(status, "none") == 0) {
		evs_decision_reject(d, "no_order", "order is not placed");
		return 0;
	}
	shipped = strcmp(status, "shipped") == 0;
	paid = shipped || strcmp(status, "paid") == 0;
	if (paid && (c == ORDER_ADD_ITEM || c == ORDER_REMOVE_ITEM || c == ORDER_PAY)) {
		evs_decision_reject(d, "already_paid", "order is already paid");
		return 0;
	}
	if (shipped && (c == ORDER_SHIP || c == ORDER_CANCEL)) {
		evs_decision_reject(d, "already_shipped", "order is already shipped");
		return 0;
	}
	if (c == ORDER_SHIP && !paid) {
		evs_decision_reject(d, "not_paid", "order is not paid");
		return 0;
	}
	if (timestamp(cmd, at) != 0) {
		evs_decision_reject(d, "bad_time", "at must be an RFC 3339 date-time string");
		return 0;
	}
	switch (c) {
	case ORDER_PLACE:
		return decide_place(cmd, at, d);
	case ORDER_ADD_ITEM:
		return decide_add(state, cmd, d);
	case ORDER_REMOVE_ITEM:
		return decide_remove(state, cmd, d);
	case ORDER_PAY:
		return decide_pay(state, cmd, at, d);
	case ORDER_SHIP:
		return evs_decision_emit(d, "OrderShipped", 1, json_pack("{s:s}", "shipped_at", at));
	default:
		return decide_cancel(cmd, at, d);
	}
}

void orders_decider(evs_decider *out)
{
	memset(out, 0, sizeof(*out));
	out->version = EVS_DECIDER_VERSION;
	out->category = "order";
	out->state_version = 1;
	out->initial = o_initial;
	out->evolve = o_evolve;
	out->decide = o_decide;
	out->snapshot_every = 16;
}

/* ---- folding a stream without evs_handle ---- */

typedef struct fold {
	evs_store *s;
	const char *stream;
	orders_loaded *out;
	int rc;
} fold;

static int fold_event(const evs_event *ev, void *ctx)
{
	fold *f = ctx;
	evs_event up = *ev;
	json_t *data;
	int rc;

	if ((rc = evs_upcast(f->s, ev, &data, &up.schema_version)) != 0) {
		snprintf(f->out->error, sizeof(f->out->error), "stream '%s' version %" PRIu64
			 " (%.*s v%" PRIu32 "): cannot upcast: %s: %s", f->stream, ev->version,
			 (int)ev->type_len, ev->type, ev->schema_version, evs_strerror(rc),
			 evs_errmsg());
		f->rc = rc;
		return 1;
	}
	if (up.schema_version != ev->schema_version)
		f->out->upcast++;
	f->out->state = o_evolve(NULL, f->out->state, &up, data);
	json_decref(data);
	if (!f->out->state) {
		snprintf(f->out->error, sizeof(f->out->error), "stream '%s' version %" PRIu64
			 ": the order decider cannot fold %.*s v%" PRIu32, f->stream,
			 ev->version, (int)ev->type_len, ev->type, up.schema_version);
		f->rc = EVS_EINVAL;
		return 1;
	}
	f->out->version = ev->version;
	return 0;
}

int orders_load(orders_loaded *out, evs_store *store, const char *stream)
{
	fold f = { store, stream, out, 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	if (!(out->state = o_initial(NULL))) {
		snprintf(out->error, sizeof(out->error), "out of memory");
		return EVS_ENOMEM;
	}
	rc = evs_read_stream(store, stream, 1, EVS_FORWARD, 0, fold_event, &f);
	if (f.rc == 0 && rc != 0) {
		snprintf(out->error, sizeof(out->error), "cannot read stream '%s': %s: %s",
			 stream, evs_strerror(rc), evs_errmsg());
		f.rc = rc;
	}
	if (f.rc != 0) {
		json_decref(out->state);
		out->state = NULL;
	}
	return f.rc;
}
