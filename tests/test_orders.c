/*
 * test_orders.c: the order domain of the demo (tools/orders.c) through
 * evs_handle, on a store opened with the schemas of schema/events/ (strict,
 * formats checked), as the demo opens it: every business rule with its
 * exact rejection code and reason (and nothing appended), a full order
 * with its exact events and final state, OrderPlaced v1 folded as v2
 * through the OrderPlaced.v1-v2.sql upcaster, bad events refused by the
 * schemas with exact messages, idempotent commands, and AddItem from four
 * threads on one order ending as a serial run does.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"
#include "testutil.h"

#ifndef EVS_TEST_SCHEMAS
#error "EVS_TEST_SCHEMAS must name the schema/events directory"
#endif

#define AT "2026-03-02T10:00:00Z"

static char *dir;
static evs_store *store;

/* A store with the demo's schemas: strict, formats checked. */
static evs_store *open_with_schemas(const char *path, const char *schemas)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;

	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	o.schema_dir = schemas;
	o.schema_strict = 1;
	o.schema_formats = 1;
	ck_assert_msg(evs_open(&s, path, &o) == 0, "open: %s", evs_errmsg());
	return s;
}

static void setup(void)
{
	dir = tu_mkdtemp();
	store = open_with_schemas(dir, EVS_TEST_SCHEMAS);
}

static void teardown(void)
{
	evs_close(store);
	tu_rmdir(dir);
	free(dir);
}

/* Handles the command text on `stream` (with "at": AT unless it says);
 * the command id, when not NULL, makes it idempotent. */
static int handle_id(evs_store *s, const char *stream, const char *text, const char *id,
		     evs_handle_result *r)
{
	evs_decider d;
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	json_error_t jerr;
	json_t *cmd = json_loads(text, 0, &jerr);
	int rc;

	ck_assert_msg(cmd != NULL, "bad command text %s: %s", text, jerr.text);
	if (json_is_object(cmd) && !json_object_get(cmd, "at"))
		json_object_set_new(cmd, "at", json_string(AT));
	orders_decider(&d);
	o.command_id = id;
	o.max_attempts = 10000;
	o.backoff_us = 50;
	memset(r, 0, sizeof(*r));
	rc = evs_handle(s, &d, stream, cmd, &o, r);
	json_decref(cmd);
	return rc;
}

static int handle(const char *stream, const char *text, evs_handle_result *r)
{
	return handle_id(store, stream, text, NULL, r);
}

static uint64_t version_of(evs_store *s, const char *stream)
{
	evs_stream_info info;

	ck_assert_int_eq(evs_stream_info_get(&info, s, stream), 0);
	return info.last_version;
}

/* The command succeeds, appending one event at version `version`. */
#define accepts(stream, text, version) do {                                      \
	evs_handle_result r_;                                                     \
	int rc_ = handle((stream), (text), &r_);                                  \
	ck_assert_msg(rc_ == 0, "%s: %s: %s %s", (text), evs_errmsg(), r_.code,  \
		      r_.reason);                                                 \
	ck_assert_uint_eq(r_.events, 1);                                          \
	ck_assert_uint_eq(r_.first_version, (version));                           \
	ck_assert_uint_eq(r_.stream_version, (version));                          \
} while (0)

/* The command is rejected with exactly this code and reason, and nothing
 * is appended. */
#define rejects(stream, text, want_code, want_reason) do {                       \
	evs_handle_result r_;                                                     \
	uint64_t v_ = version_of(store, (stream));                                \
	ck_assert_int_eq(handle((stream), (text), &r_), EVS_EREJECTED);           \
	ck_assert_str_eq(r_.code, (want_code));                                   \
	ck_assert_str_eq(r_.reason, (want_reason));                               \
	ck_assert_uint_eq(r_.events, 0);                                          \
	ck_assert_uint_eq(r_.stream_version, v_);                                 \
	ck_assert_uint_eq(version_of(store, (stream)), v_);                       \
} while (0)

/* The order's state folded from its events equals the JSON text. */
static void state_is(evs_store *s, const char *stream, const char *want_text)
{
	orders_loaded l;
	json_t *want = json_loads(want_text, 0, NULL);
	char *got;

	ck_assert_ptr_nonnull(want);
	ck_assert_msg(orders_load(&l, s, stream) == 0, "load: %s", l.error);
	got = json_dumps(l.state, JSON_COMPACT | JSON_SORT_KEYS);
	ck_assert_msg(json_equal(want, l.state), "%s: state %s, expected %s", stream, got,
		      want_text);
	free(got);
	json_decref(want);
	json_decref(l.state);
}

#define PLACE "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c-7\"}"
#define ADD(sku, qty, price) "{\"type\":\"AddItem\",\"sku\":\"" sku "\",\"qty\":" #qty \
	",\"price\":" #price "}"
#define REMOVE(sku) "{\"type\":\"RemoveItem\",\"sku\":\"" sku "\"}"
#define PAY(amount) "{\"type\":\"Pay\",\"amount\":" #amount "}"
#define SHIP "{\"type\":\"Ship\"}"
#define CANCEL "{\"type\":\"Cancel\"}"

START_TEST(test_command_names)
{
	static const char *const names[] = { "PlaceOrder", "AddItem", "RemoveItem", "Pay",
					     "Ship", "Cancel" };

	ck_assert_int_eq(ORDER_COMMANDS, 6);
	for (int i = 0; i < ORDER_COMMANDS; i++) {
		ck_assert_int_eq(orders_command_parse(names[i]), i);
		ck_assert_str_eq(orders_command_name(i), names[i]);
	}
	ck_assert_int_eq(orders_command_parse("pay"), -1);
	ck_assert_int_eq(orders_command_parse("Refund"), -1);
	ck_assert_int_eq(orders_command_parse(""), -1);
	ck_assert_int_eq(orders_command_parse(NULL), -1);
	ck_assert_ptr_null(orders_command_name(-1));
	ck_assert_ptr_null(orders_command_name(ORDER_COMMANDS));
}
END_TEST

/* "version type vN data" for each event of the stream. */
static int line_cb(const evs_event *ev, void *ctx)
{
	char **out = ctx, *line;

	ck_assert_int_ge(asprintf(&line, "%s%llu %s v%u %s\n", *out, (unsigned long long)ev->version,
				  ev->type, ev->schema_version, ev->data), 0);
	free(*out);
	*out = line;
	return 0;
}

static char *events_of(evs_store *s, const char *stream)
{
	char *out = strdup("");

	ck_assert_int_eq(evs_read_stream(s, stream, 1, EVS_FORWARD, 0, line_cb, &out), 0);
	return out;
}

START_TEST(test_happy_path)
{
	char *events;

	orders_loaded l;
	evs_decider d;
	json_t *initial, *want;

	/* a new order: no stream to fold, the decider's initial state */
	ck_assert_int_eq(orders_load(&l, store, "order-1"), EVS_ENOTFOUND);
	ck_assert_ptr_null(l.state);
	ck_assert_str_eq(l.error, "cannot read stream 'order-1': not found: stream 'order-1' "
			 "not found");
	orders_decider(&d);
	initial = d.initial(d.ctx);
	want = json_loads("{\"status\":\"none\",\"customer\":null,\"currency\":null,"
			  "\"items\":{},\"total\":0}", 0, NULL);
	ck_assert(json_equal(initial, want));
	json_decref(initial);
	json_decref(want);
	ck_assert_str_eq(d.category, "order");
	ck_assert_uint_eq(d.state_version, 1);

	accepts("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c-7\","
		"\"currency\":\"CHF\"}", 1);
	state_is(store, "order-1", "{\"status\":\"placed\",\"customer\":\"c-7\",\"currency\":"
		 "\"CHF\",\"items\":{},\"total\":0}");
	accepts("order-1", ADD("TEA-101", 2, 450), 2);
	accepts("order-1", ADD("MUG-301", 1, 899), 3);
	accepts("order-1", ADD("TEA-101", 1, 450), 4);
	accepts("order-1", ADD("SAMPLE-1", 1, 0), 5);
	accepts("order-1", REMOVE("MUG-301"), 6);
	accepts("order-1", ADD("COF-201", 2, 1290), 7);
	state_is(store, "order-1", "{\"status\":\"placed\",\"customer\":\"c-7\",\"currency\":"
		 "\"CHF\",\"items\":{\"TEA-101\":{\"qty\":3,\"price\":450},\"SAMPLE-1\":"
		 "{\"qty\":1,\"price\":0},\"COF-201\":{\"qty\":2,\"price\":1290}},"
		 "\"total\":3930}");
	accepts("order-1", "{\"type\":\"Pay\",\"amount\":3930,\"at\":\"2026-03-02T10:05:00Z\"}", 8);
	accepts("order-1", "{\"type\":\"Ship\",\"at\":\"2026-03-03T08:00:00.250Z\"}", 9);
	state_is(store, "order-1", "{\"status\":\"shipped\",\"customer\":\"c-7\",\"currency\":"
		 "\"CHF\",\"items\":{\"TEA-101\":{\"qty\":3,\"price\":450},\"SAMPLE-1\":"
		 "{\"qty\":1,\"price\":0},\"COF-201\":{\"qty\":2,\"price\":1290}},"
		 "\"total\":3930}");
	events = events_of(store, "order-1");
	ck_assert_str_eq(events,
		"1 OrderPlaced v2 {\"order_id\":\"1\",\"customer_id\":\"c-7\",\"currency\":\"CHF\","
		"\"placed_at\":\"2026-03-02T10:00:00Z\"}\n"
		"2 ItemAdded v1 {\"sku\":\"TEA-101\",\"qty\":2,\"price\":450}\n"
		"3 ItemAdded v1 {\"sku\":\"MUG-301\",\"qty\":1,\"price\":899}\n"
		"4 ItemAdded v1 {\"sku\":\"TEA-101\",\"qty\":1,\"price\":450}\n"
		"5 ItemAdded v1 {\"sku\":\"SAMPLE-1\",\"qty\":1,\"price\":0}\n"
		"6 ItemRemoved v1 {\"sku\":\"MUG-301\",\"qty\":1}\n"
		"7 ItemAdded v1 {\"sku\":\"COF-201\",\"qty\":2,\"price\":1290}\n"
		"8 OrderPaid v1 {\"amount\":3930,\"currency\":\"CHF\",\"paid_at\":"
		"\"2026-03-02T10:05:00Z\"}\n"
		"9 OrderShipped v1 {\"shipped_at\":\"2026-03-03T08:00:00.250Z\"}\n");
	free(events);

	/* a cancelled order, with the default currency and reason */
	accepts("order-2", "{\"type\":\"PlaceOrder\",\"order_id\":\"2\",\"customer_id\":\"c-8\"}", 1);
	accepts("order-2", ADD("POT-401", 1, 3490), 2);
	accepts("order-2", CANCEL, 3);
	events = events_of(store, "order-2");
	ck_assert_str_eq(events,
		"1 OrderPlaced v2 {\"order_id\":\"2\",\"customer_id\":\"c-8\",\"currency\":\"EUR\","
		"\"placed_at\":\"2026-03-02T10:00:00Z\"}\n"
		"2 ItemAdded v1 {\"sku\":\"POT-401\",\"qty\":1,\"price\":3490}\n"
		"3 OrderCancelled v1 {\"reason\":\"customer request\",\"cancelled_at\":"
		"\"2026-03-02T10:00:00Z\"}\n");
	free(events);
	state_is(store, "order-2", "{\"status\":\"cancelled\",\"customer\":\"c-8\",\"currency\":"
		 "\"EUR\",\"items\":{\"POT-401\":{\"qty\":1,\"price\":3490}},\"total\":3490}");
}
END_TEST

static int data_cb(const evs_event *ev, void *ctx)
{
	*(json_t **)ctx = json_loadb(ev->data, ev->data_len, 0, NULL);
	return 1;
}

/* Without "at", the event gets the current time, in milliseconds, UTC,
 * which the schema's date-time format accepts. */
START_TEST(test_current_time)
{
	evs_decider d;
	evs_handle_result r;
	json_t *cmd = json_loads(PLACE, 0, NULL), *data = NULL;
	const char *t;

	orders_decider(&d);
	ck_assert_int_eq(evs_handle(store, &d, "order-1", cmd, NULL, &r), 0);
	json_decref(cmd);
	ck_assert_int_eq(evs_read_stream(store, "order-1", 1, EVS_FORWARD, 0, data_cb, &data), 0);
	t = json_string_value(json_object_get(data, "placed_at"));
	ck_assert_ptr_nonnull(t);
	/* 2026-03-02T10:00:00.123Z */
	ck_assert_uint_eq(strlen(t), 24);
	ck_assert(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
	json_decref(data);
}
END_TEST

START_TEST(test_rules_placing)
{
	char digits[63], cmd[256];

	memset(digits, '7', 62);
	digits[62] = '\0';
	rejects("order-1", "{\"type\":\"Refund\"}", "unknown_command",
		"unknown command type 'Refund'");
	rejects("order-1", "{\"sku\":\"TEA-101\"}", "unknown_command", "the command has no type");
	rejects("order-1", "{\"type\":7}", "unknown_command", "the command has no type");
	rejects("order-1", "[1]", "unknown_command", "the command has no type");
	rejects("order-1", ADD("TEA-101", 1, 450), "no_order", "order is not placed");
	rejects("order-1", REMOVE("TEA-101"), "no_order", "order is not placed");
	rejects("order-1", PAY(0), "no_order", "order is not placed");
	rejects("order-1", SHIP, "no_order", "order is not placed");
	rejects("order-1", CANCEL, "no_order", "order is not placed");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"customer_id\":\"c-7\"}", "bad_order_id",
		"order_id must be 1 to 64 letters, digits, '_' or '-', starting with a letter "
		"or digit");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"-1\",\"customer_id\":\"c-7\"}",
		"bad_order_id", "order_id must be 1 to 64 letters, digits, '_' or '-', starting "
		"with a letter or digit");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c 7\"}",
		"bad_customer", "customer_id must be 1 to 64 letters, digits, '_' or '-', "
		"starting with a letter or digit");
	/* 65 characters */
	snprintf(cmd, sizeof(cmd), "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":"
		 "\"c-%s0\"}", digits);
	rejects("order-1", cmd, "bad_customer", "customer_id must be 1 to 64 letters, digits, "
		"'_' or '-', starting with a letter or digit");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c-7\","
		"\"currency\":\"eur\"}", "bad_currency", "currency must be three capital letters, "
		"like EUR");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c-7\","
		"\"currency\":\"EURO\"}", "bad_currency", "currency must be three capital letters, "
		"like EUR");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c-7\","
		"\"currency\":null}", "bad_currency", "currency must be three capital letters, "
		"like EUR");
	rejects("order-1", "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":\"c-7\","
		"\"at\":5}", "bad_time", "at must be an RFC 3339 date-time string");
	ck_assert_uint_eq(version_of(store, "order-1"), 0);

	/* the longest ids pass (64 characters) */
	snprintf(cmd, sizeof(cmd), "{\"type\":\"PlaceOrder\",\"order_id\":\"1\",\"customer_id\":"
		 "\"c-%s\"}", digits);
	accepts("order-1", cmd, 1);
	rejects("order-1", PLACE, "already_placed", "order is already placed");
}
END_TEST

START_TEST(test_rules_items)
{
	accepts("order-1", PLACE, 1);
	rejects("order-1", "{\"type\":\"AddItem\",\"qty\":1,\"price\":1}", "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	rejects("order-1", ADD("tea-101", 1, 1), "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	rejects("order-1", ADD("T-101", 1, 1), "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	rejects("order-1", ADD("TEAPOTSXL-1", 1, 1), "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	rejects("order-1", ADD("TEA-1234567", 1, 1), "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	rejects("order-1", ADD("TEA-", 1, 1), "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	rejects("order-1", ADD("TEA-101", 0, 1), "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", ADD("TEA-101", -2, 1), "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", ADD("TEA-101", 1.5, 1), "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", ADD("TEA-101", 1.0, 1), "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", ADD("TEA-101", "2", 1), "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", ADD("TEA-101", 10001, 1), "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", "{\"type\":\"AddItem\",\"sku\":\"TEA-101\",\"price\":1}", "bad_quantity",
		"qty must be an integer from 1 to 10000");
	rejects("order-1", ADD("TEA-101", 1, -1), "bad_price",
		"price must be an integer number of cents from 0 to 10000000");
	rejects("order-1", ADD("TEA-101", 1, 4.5), "bad_price",
		"price must be an integer number of cents from 0 to 10000000");
	rejects("order-1", ADD("TEA-101", 1, 10000001), "bad_price",
		"price must be an integer number of cents from 0 to 10000000");
	rejects("order-1", "{\"type\":\"AddItem\",\"sku\":\"TEA-101\",\"qty\":1}", "bad_price",
		"price must be an integer number of cents from 0 to 10000000");
	ck_assert_uint_eq(version_of(store, "order-1"), 1);

	/* the limits themselves pass */
	accepts("order-1", ADD("KETTLE-999999", 10000, 10000000), 2);
	accepts("order-1", ADD("TEA-101", 1, 450), 3);
	rejects("order-1", ADD("TEA-101", 1, 460), "price_mismatch",
		"TEA-101 is in the order at 450, not 460");
	rejects("order-1", REMOVE("MUG-301"), "no_such_item", "MUG-301 is not in the order");
	rejects("order-1", REMOVE("mug"), "bad_sku",
		"sku must be 2 to 8 capital letters, '-' and 1 to 6 digits, like TEA-101");
	accepts("order-1", REMOVE("TEA-101"), 4);
	rejects("order-1", REMOVE("TEA-101"), "no_such_item", "TEA-101 is not in the order");
	/* once removed, the sku may come back at another price */
	accepts("order-1", ADD("TEA-101", 2, 460), 5);
	state_is(store, "order-1", "{\"status\":\"placed\",\"customer\":\"c-7\",\"currency\":"
		 "\"EUR\",\"items\":{\"KETTLE-999999\":{\"qty\":10000,\"price\":10000000},"
		 "\"TEA-101\":{\"qty\":2,\"price\":460}},\"total\":100000000920}");
}
END_TEST

START_TEST(test_rules_paying)
{
	accepts("order-1", PLACE, 1);
	rejects("order-1", PAY(0), "empty_order", "order has no items");
	rejects("order-1", SHIP, "not_paid", "order is not paid");
	accepts("order-1", ADD("TEA-101", 2, 450), 2);
	accepts("order-1", REMOVE("TEA-101"), 3);
	rejects("order-1", PAY(0), "empty_order", "order has no items");
	accepts("order-1", ADD("COF-201", 3, 1290), 4);
	rejects("order-1", PAY(3869), "wrong_amount", "amount 3869 is not the order's total 3870");
	rejects("order-1", PAY(3871), "wrong_amount", "amount 3871 is not the order's total 3870");
	rejects("order-1", PAY(-3870), "wrong_amount",
		"amount -3870 is not the order's total 3870");
	rejects("order-1", PAY("3870"), "wrong_amount",
		"amount must be the order's total in integer cents, 3870");
	rejects("order-1", PAY(38.70), "wrong_amount",
		"amount must be the order's total in integer cents, 3870");
	rejects("order-1", "{\"type\":\"Pay\"}", "wrong_amount",
		"amount must be the order's total in integer cents, 3870");
	rejects("order-1", SHIP, "not_paid", "order is not paid");
	accepts("order-1", PAY(3870), 5);
	rejects("order-1", PAY(3870), "already_paid", "order is already paid");
	rejects("order-1", ADD("TEA-101", 1, 450), "already_paid", "order is already paid");
	rejects("order-1", REMOVE("COF-201"), "already_paid", "order is already paid");
	rejects("order-1", PLACE, "already_placed", "order is already placed");
	accepts("order-1", SHIP, 6);
	rejects("order-1", SHIP, "already_shipped", "order is already shipped");
	rejects("order-1", CANCEL, "already_shipped", "order is already shipped");
	rejects("order-1", PAY(3870), "already_paid", "order is already paid");
	rejects("order-1", ADD("TEA-101", 1, 450), "already_paid", "order is already paid");
	rejects("order-1", REMOVE("COF-201"), "already_paid", "order is already paid");
	state_is(store, "order-1", "{\"status\":\"shipped\",\"customer\":\"c-7\",\"currency\":"
		 "\"EUR\",\"items\":{\"COF-201\":{\"qty\":3,\"price\":1290}},\"total\":3870}");

	/* free items: a total of 0 is paid with 0 */
	accepts("order-2", PLACE, 1);
	accepts("order-2", ADD("SAMPLE-1", 4, 0), 2);
	rejects("order-2", PAY(1), "wrong_amount", "amount 1 is not the order's total 0");
	accepts("order-2", PAY(0), 3);
}
END_TEST

START_TEST(test_rules_cancelling)
{
	static const char *const after[] = { PLACE, ADD("TEA-101", 1, 450), REMOVE("TEA-101"),
					     PAY(450), SHIP, CANCEL, "{\"type\":\"Refund\"}" };
	char reason[202], cmd[512];

	accepts("order-1", PLACE, 1);
	accepts("order-1", ADD("TEA-101", 1, 450), 2);
	rejects("order-1", "{\"type\":\"Cancel\",\"reason\":\"\"}", "bad_reason",
		"reason must be a string of 1 to 200 bytes");
	rejects("order-1", "{\"type\":\"Cancel\",\"reason\":7}", "bad_reason",
		"reason must be a string of 1 to 200 bytes");
	memset(reason, 'r', 201);
	reason[201] = '\0';
	snprintf(cmd, sizeof(cmd), "{\"type\":\"Cancel\",\"reason\":\"%s\"}", reason);
	rejects("order-1", cmd, "bad_reason", "reason must be a string of 1 to 200 bytes");
	/* 200 bytes pass (as 100 two-byte characters: the schema counts 100) */
	ck_assert_int_eq(handle("order-3", PLACE, &(evs_handle_result){ 0 }), 0);
	memset(reason, 0, sizeof(reason));
	for (int i = 0; i < 100; i++)
		memcpy(reason + 2 * i, "\xc3\xa9", 2);
	snprintf(cmd, sizeof(cmd), "{\"type\":\"Cancel\",\"reason\":\"%s\"}", reason);
	accepts("order-3", cmd, 2);
	accepts("order-1", "{\"type\":\"Cancel\",\"reason\":\"changed my mind\"}", 3);
	/* nothing after cancellation; an unknown type is still unknown */
	for (size_t i = 0; i + 1 < sizeof(after) / sizeof(after[0]); i++)
		rejects("order-1", after[i], "cancelled", "order is cancelled");
	rejects("order-1", after[6], "unknown_command", "unknown command type 'Refund'");
	state_is(store, "order-1", "{\"status\":\"cancelled\",\"customer\":\"c-7\",\"currency\":"
		 "\"EUR\",\"items\":{\"TEA-101\":{\"qty\":1,\"price\":450}},\"total\":450}");

	/* a paid order may be cancelled (and refunded) until it ships */
	accepts("order-2", PLACE, 1);
	accepts("order-2", ADD("TEA-101", 1, 450), 2);
	accepts("order-2", PAY(450), 3);
	accepts("order-2", CANCEL, 4);
	rejects("order-2", SHIP, "cancelled", "order is cancelled");
}
END_TEST

/* A legacy OrderPlaced v1 (no currency) is folded as v2 with currency EUR,
 * through schema/events/OrderPlaced.v1-v2.sql; the stored bytes stay v1. */
START_TEST(test_upcast)
{
	evs_new_event v1 = { "OrderPlaced", "{\"order_id\":\"5\",\"customer_id\":\"c-9\","
			     "\"placed_at\":\"2019-06-01T12:00:00Z\"}", NULL, NULL, 1 };
	orders_loaded l;
	char *events;

	ck_assert_int_eq(evs_append(store, "order-5", EVS_EXPECT_NO_STREAM, &v1, 1, NULL), 0);
	accepts("order-5", ADD("TEA-101", 2, 450), 2);
	rejects("order-5", PLACE, "already_placed", "order is already placed");
	ck_assert_int_eq(orders_load(&l, store, "order-5"), 0);
	ck_assert_uint_eq(l.upcast, 1);
	ck_assert_uint_eq(l.version, 2);
	json_decref(l.state);
	state_is(store, "order-5", "{\"status\":\"placed\",\"customer\":\"c-9\",\"currency\":"
		 "\"EUR\",\"items\":{\"TEA-101\":{\"qty\":2,\"price\":450}},\"total\":900}");
	/* Pay says the currency the upcast gave */
	accepts("order-5", PAY(900), 3);
	events = events_of(store, "order-5");
	ck_assert_str_eq(events,
		"1 OrderPlaced v1 {\"order_id\":\"5\",\"customer_id\":\"c-9\",\"placed_at\":"
		"\"2019-06-01T12:00:00Z\"}\n"
		"2 ItemAdded v1 {\"sku\":\"TEA-101\",\"qty\":2,\"price\":450}\n"
		"3 OrderPaid v1 {\"amount\":900,\"currency\":\"EUR\",\"paid_at\":"
		"\"2026-03-02T10:00:00Z\"}\n");
	free(events);
}
END_TEST

/* Without the upcaster (a store without the schema directory), evolve
 * refuses the v1 event instead of folding it without a currency. */
START_TEST(test_v1_without_upcaster)
{
	char *plain = tu_mkdtemp();
	evs_store *s = tu_open(plain, 0, 0);
	evs_new_event v1 = { "OrderPlaced", "{\"order_id\":\"5\",\"customer_id\":\"c-9\","
			     "\"placed_at\":\"2019-06-01T12:00:00Z\"}", NULL, NULL, 1 };
	evs_new_event odd = { "OrderLost", "{}", NULL, NULL, 1 };
	evs_handle_result r;
	orders_loaded l;

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(evs_append(s, "order-5", EVS_EXPECT_NO_STREAM, &v1, 1, NULL), 0);
	ck_assert_int_eq(handle_id(s, "order-5", ADD("TEA-101", 2, 450), NULL, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "decider 'order': evolve returned NULL for stream "
			 "'order-5' version 1 (OrderPlaced)");
	ck_assert_int_eq(orders_load(&l, s, "order-5"), EVS_EINVAL);
	ck_assert_ptr_null(l.state);
	ck_assert_str_eq(l.error, "stream 'order-5' version 1: the order decider cannot fold "
			 "OrderPlaced v1");
	ck_assert_int_eq(orders_load(&l, s, "order-6"), EVS_ENOTFOUND);
	ck_assert_ptr_null(l.state);

	/* an event type the order domain does not know */
	ck_assert_int_eq(handle_id(s, "order-7", PLACE, NULL, &r), 0);
	ck_assert_int_eq(evs_append(s, "order-7", 1, &odd, 1, NULL), 0);
	ck_assert_int_eq(handle_id(s, "order-7", ADD("TEA-101", 2, 450), NULL, &r), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "decider 'order': evolve returned NULL for stream "
			 "'order-7' version 2 (OrderLost)");
	evs_close(s);
	tu_rmdir(plain);
	free(plain);
}
END_TEST

/* The schemas refuse malformed events appended directly, naming the
 * pointer and the rule; nothing of such an append is written. */
START_TEST(test_schemas)
{
	static const struct {
		const char *type;
		uint32_t version;
		const char *data;
		const char *msg; /* NULL: valid */
	} cases[] = {
		{ "OrderPlaced", 2, "{\"order_id\":\"1\",\"customer_id\":\"c-1\",\"currency\":"
		  "\"EUR\",\"placed_at\":\"2026-03-02T10:00:00Z\"}", NULL },
		{ "OrderPlaced", 1, "{\"order_id\":\"1\",\"customer_id\":\"c-1\",\"placed_at\":"
		  "\"2026-03-02T10:00:00Z\"}", NULL },
		{ "ItemAdded", 1, "{\"sku\":\"TEA-101\",\"qty\":1,\"price\":0}", NULL },
		{ "ItemRemoved", 1, "{\"sku\":\"TEA-101\",\"qty\":20000}", NULL },
		{ "OrderPaid", 1, "{\"amount\":0,\"currency\":\"EUR\",\"paid_at\":"
		  "\"2026-03-02T10:00:00+01:00\"}", NULL },
		{ "OrderShipped", 1, "{\"shipped_at\":\"2026-03-02T10:00:00.5Z\"}", NULL },
		{ "OrderCancelled", 1, "{\"reason\":\"x\",\"cancelled_at\":"
		  "\"2026-03-02T10:00:00Z\"}", NULL },

		{ "OrderPlaced", 2, "{\"order_id\":\"1\",\"customer_id\":\"c-1\",\"placed_at\":"
		  "\"2026-03-02T10:00:00Z\"}",
		  "(OrderPlaced v2): /: required: property 'currency' is missing" },
		{ "OrderPlaced", 2, "{\"order_id\":\"1\",\"customer_id\":\"c-1\",\"currency\":"
		  "\"eur\",\"placed_at\":\"2026-03-02T10:00:00Z\"}",
		  "(OrderPlaced v2): /currency: pattern: \"eur\" does not match '^[A-Z]{3}$'" },
		{ "OrderPlaced", 1, "{\"order_id\":\"1\",\"customer_id\":\"c-1\",\"currency\":"
		  "\"EUR\",\"placed_at\":\"2026-03-02T10:00:00Z\"}",
		  "(OrderPlaced v1): /: additionalProperties: property 'currency' is not "
		  "allowed" },
		{ "OrderPlaced", 2, "{\"order_id\":\"a b\",\"customer_id\":\"c-1\",\"currency\":"
		  "\"EUR\",\"placed_at\":\"2026-03-02T10:00:00Z\"}",
		  "(OrderPlaced v2): /order_id: pattern: \"a b\" does not match "
		  "'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'" },
		{ "OrderPlaced", 2, "{\"order_id\":\"1\",\"customer_id\":\"c-1\",\"currency\":"
		  "\"EUR\",\"placed_at\":\"yesterday\"}",
		  "(OrderPlaced v2): /placed_at: format: \"yesterday\" is not a valid date-time" },
		{ "ItemAdded", 1, "{\"sku\":\"TEA-101\",\"qty\":0,\"price\":450}",
		  "(ItemAdded v1): /qty: minimum: 0 is less than 1" },
		{ "ItemAdded", 1, "{\"sku\":\"TEA-101\",\"qty\":1,\"price\":-1}",
		  "(ItemAdded v1): /price: minimum: -1 is less than 0" },
		{ "ItemAdded", 1, "{\"sku\":\"TEA-101\",\"qty\":1,\"price\":4.5}",
		  "(ItemAdded v1): /price: type: expected integer, got number" },
		{ "ItemAdded", 1, "{\"sku\":\"tea\",\"qty\":1,\"price\":1}",
		  "(ItemAdded v1): /sku: pattern: \"tea\" does not match '^[A-Z]{2,8}-[0-9]{1,6}$'" },
		{ "ItemRemoved", 1, "{\"sku\":\"TEA-101\"}",
		  "(ItemRemoved v1): /: required: property 'qty' is missing" },
		{ "OrderPaid", 1, "{\"amount\":\"12\",\"currency\":\"EUR\",\"paid_at\":"
		  "\"2026-03-02T10:00:00Z\"}",
		  "(OrderPaid v1): /amount: type: expected integer, got string" },
		{ "OrderShipped", 1, "{\"shipped_at\":\"2026-03-02T10:00:00Z\",\"by\":\"x\"}",
		  "(OrderShipped v1): /: additionalProperties: property 'by' is not allowed" },
		{ "OrderCancelled", 1, "{\"reason\":\"\",\"cancelled_at\":\"2026-03-02T10:00:00Z\"}",
		  "(OrderCancelled v1): /reason: minLength: 0 characters, fewer than 1" },
		{ "OrderPlaced", 3, "{}", "type 'OrderPlaced' has no schema version 3 in " EVS_TEST_SCHEMAS },
		{ "OrderLost", 1, "{}", "type 'OrderLost' has no schema in " EVS_TEST_SCHEMAS
		  " (the store is strict)" },
	};
	char stream[32], want[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		evs_new_event ev = { cases[i].type, cases[i].data, NULL, NULL, cases[i].version };
		int rc;

		snprintf(stream, sizeof(stream), "order-%zu", i + 1);
		rc = evs_append(store, stream, EVS_EXPECT_ANY, &ev, 1, NULL);
		if (!cases[i].msg) {
			ck_assert_msg(rc == 0, "case %zu: %s", i, evs_errmsg());
			continue;
		}
		ck_assert_msg(rc == EVS_ESCHEMA, "case %zu: %d", i, rc);
		snprintf(want, sizeof(want), "stream '%s', event 1%s%s", stream,
			 cases[i].msg[0] == '(' ? " " : ": ", cases[i].msg);
		ck_assert_str_eq(evs_errmsg(), want);
		ck_assert_uint_eq(version_of(store, stream), 0);
	}
}
END_TEST

START_TEST(test_idempotent)
{
	evs_handle_result r, again;
	uint64_t pos;

	ck_assert_int_eq(handle_id(store, "order-1", PLACE, "order-1:1", &r), 0);
	ck_assert_int_eq(handle_id(store, "order-1", ADD("TEA-101", 2, 450), "order-1:2", &r), 0);
	ck_assert_int_eq(r.idempotent, 0);
	pos = r.first_position;
	/* the same command again: found, not added twice */
	ck_assert_int_eq(handle_id(store, "order-1", ADD("TEA-101", 2, 450), "order-1:2", &again),
			 0);
	ck_assert_int_eq(again.idempotent, 1);
	ck_assert_uint_eq(again.events, 1);
	ck_assert_uint_eq(again.first_version, 2);
	ck_assert_uint_eq(again.first_position, pos);
	ck_assert_int_eq(handle_id(store, "order-1", PAY(900), "order-1:3", &r), 0);
	ck_assert_int_eq(handle_id(store, "order-1", SHIP, "order-1:4", &r), 0);
	/* a payment retried after the order shipped is the same payment, not
	 * "already_paid" */
	ck_assert_int_eq(handle_id(store, "order-1", PAY(900), "order-1:3", &again), 0);
	ck_assert_int_eq(again.idempotent, 1);
	ck_assert_uint_eq(again.first_version, 3);
	ck_assert_uint_eq(again.stream_version, 4);
	/* a new command id is a new command */
	ck_assert_int_eq(handle_id(store, "order-1", PAY(900), "order-1:5", &r), EVS_EREJECTED);
	ck_assert_str_eq(r.code, "already_paid");
	ck_assert_uint_eq(version_of(store, "order-1"), 4);
	state_is(store, "order-1", "{\"status\":\"shipped\",\"customer\":\"c-7\",\"currency\":"
		 "\"EUR\",\"items\":{\"TEA-101\":{\"qty\":2,\"price\":450}},\"total\":900}");
}
END_TEST

#define THREADS 4
#define ADDS 25

typedef struct adder {
	evs_store *s;
	int t;
	int attempts;
	int rc;
} adder;

/* Thread t's k-th command: some skus shared by every thread (at one
 * price), some its own. */
static void nth_add(int t, int k, char *cmd, size_t size, char *id, size_t idsize)
{
	if (k % 2)
		snprintf(cmd, size, ADD("TEA-%d", %d, %d), k % 5, 1 + t, 100 + k % 5);
	else
		snprintf(cmd, size, ADD("MUG-%d%02d", %d, %d), t, k, 1 + k % 3, 250 * t + k);
	snprintf(id, idsize, "order-1:t%d-%d", t, k);
}

static void *add_items(void *arg)
{
	adder *a = arg;
	char cmd[256], id[64];
	evs_handle_result r;

	for (int k = 0; k < ADDS && !a->rc; k++) {
		nth_add(a->t, k, cmd, sizeof(cmd), id, sizeof(id));
		a->rc = handle_id(a->s, "order-1", cmd, id, &r);
		a->attempts += r.attempts;
	}
	return NULL;
}

/* Four threads adding to one order at once end where the same commands
 * one after another end. */
START_TEST(test_concurrent_adds)
{
	char *serial_dir = tu_mkdtemp(), cmd[256], id[64];
	evs_store *serial = open_with_schemas(serial_dir, EVS_TEST_SCHEMAS);
	orders_loaded a, b;
	evs_handle_result r;
	adder ad[THREADS];
	pthread_t th[THREADS];
	int attempts = 0;

	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(handle_id(i ? serial : store, "order-1", PLACE, "order-1:1", &r), 0);
	for (int t = 0; t < THREADS; t++) {
		ad[t] = (adder){ store, t, 0, 0 };
		ck_assert_int_eq(pthread_create(&th[t], NULL, add_items, &ad[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < THREADS; t++) {
		ck_assert_msg(ad[t].rc == 0, "thread %d: %d", t, ad[t].rc);
		attempts += ad[t].attempts;
	}
	ck_assert_int_ge(attempts, THREADS * ADDS);
	for (int t = 0; t < THREADS; t++) {
		for (int k = 0; k < ADDS; k++) {
			nth_add(t, k, cmd, sizeof(cmd), id, sizeof(id));
			ck_assert_int_eq(handle_id(serial, "order-1", cmd, id, &r), 0);
		}
	}
	ck_assert_uint_eq(version_of(store, "order-1"), 1 + THREADS * ADDS);
	ck_assert_uint_eq(version_of(serial, "order-1"), 1 + THREADS * ADDS);
	ck_assert_int_eq(orders_load(&a, store, "order-1"), 0);
	ck_assert_int_eq(orders_load(&b, serial, "order-1"), 0);
	ck_assert(json_equal(a.state, b.state));
	/* five shared lines and 13 of each thread's own; TEA-1 got 1 + t
	 * units three times from each thread t */
	ck_assert_int_eq(json_object_size(json_object_get(a.state, "items")), 5 + THREADS * 13);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(
			 a.state, "items"), "TEA-1"), "qty")), (1 + 2 + 3 + 4) * 3);
	json_decref(a.state);
	json_decref(b.state);
	evs_close(serial);
	tu_rmdir(serial_dir);
	free(serial_dir);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("orders");
	TCase *rules = tcase_create("rules"), *store_tc = tcase_create("store");

	tcase_add_checked_fixture(rules, setup, teardown);
	tcase_add_test(rules, test_command_names);
	tcase_add_test(rules, test_happy_path);
	tcase_add_test(rules, test_current_time);
	tcase_add_test(rules, test_rules_placing);
	tcase_add_test(rules, test_rules_items);
	tcase_add_test(rules, test_rules_paying);
	tcase_add_test(rules, test_rules_cancelling);
	suite_add_tcase(su, rules);

	tcase_add_checked_fixture(store_tc, setup, teardown);
	tcase_set_timeout(store_tc, 120);
	tcase_add_test(store_tc, test_upcast);
	tcase_add_test(store_tc, test_v1_without_upcaster);
	tcase_add_test(store_tc, test_schemas);
	tcase_add_test(store_tc, test_idempotent);
	tcase_add_test(store_tc, test_concurrent_adds);
	suite_add_tcase(su, store_tc);
	return tu_run(su);
}
