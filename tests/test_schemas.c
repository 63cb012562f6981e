/*
 * test_schemas.c: a store opened with a schema directory validates every
 * append against the schema of each event's type and version; bad schema
 * directories fail the open with the file named.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static const char placed_v1[] =
	"{\"type\":\"object\",\"required\":[\"order\",\"customer\"],"
	"\"properties\":{\"order\":{\"type\":\"string\",\"minLength\":1},"
	"\"customer\":{\"type\":\"string\"}},\"additionalProperties\":false}";

static const char placed_v2[] =
	"{\"type\":\"object\",\"required\":[\"order\",\"items\"],"
	"\"properties\":{\"order\":{\"type\":\"string\"},"
	"\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
	"\"items\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"$ref\":\"#/$defs/item\"}}},"
	"\"$defs\":{\"item\":{\"type\":\"object\",\"required\":[\"sku\",\"qty\"],"
	"\"properties\":{\"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d+$\"},"
	"\"qty\":{\"type\":\"integer\",\"minimum\":1}}}}}";

/* A directory of schema files: name, text, name, text, ..., NULL. */
static char *schema_dir(const char *first, ...)
{
	char *dir = tu_mkdtemp(), path[4200];
	va_list ap;

	va_start(ap, first);
	for (const char *name = first; name; name = va_arg(ap, const char *)) {
		const char *text = va_arg(ap, const char *);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
	}
	va_end(ap);
	return dir;
}

static int open_with(evs_store **s, const char *dir, const char *schemas, int strict,
		     int formats)
{
	evs_options o = EVS_OPTIONS_INIT;

	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	o.schema_dir = schemas;
	o.schema_strict = strict;
	o.schema_formats = formats;
	return evs_open(s, dir, &o);
}

static int append1(evs_store *s, const char *stream, const char *type, uint32_t version,
		   const char *data)
{
	evs_new_event ev = { type, data, NULL, NULL, version };
	return evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL);
}

static uint64_t events_in(evs_store *s)
{
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	return st.head_position;
}

START_TEST(test_validates_appends)
{
	char *sd = schema_dir("OrderPlaced.v1.json", placed_v1, "OrderPlaced.v2.json", placed_v2,
			      "notes.txt", "not a schema", NULL);
	char *dir = tu_mkdtemp();
	evs_store *s;
	char want[8192];

	ck_assert_int_eq(open_with(&s, dir, sd, 0, 0), 0);
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 1,
				 "{\"order\":\"1\",\"customer\":\"c\"}"), 0);
	/* schema_version 0 means 1 */
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 0,
				 "{\"order\":\"1\",\"customer\":\"c\"}"), 0);
	ck_assert_int_eq(append1(s, "order-2", "OrderPlaced", 2,
				 "{\"order\":\"2\",\"items\":[{\"sku\":\"ABC-1\",\"qty\":2}]}"), 0);
	ck_assert_uint_eq(events_in(s), 3);

	ck_assert_int_eq(append1(s, "order-2", "OrderPlaced", 2,
				 "{\"order\":\"2\",\"items\":[{\"sku\":\"ABC-1\",\"qty\":2},"
				 "{\"sku\":\"ABC-2\",\"qty\":0}]}"), EVS_ESCHEMA);
	ck_assert_str_eq(evs_errmsg(), "stream 'order-2', event 1 (OrderPlaced v2): "
			 "/items/1/qty: minimum: 0 is less than 1");
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 1,
				 "{\"order\":\"1\",\"customer\":\"c\",\"coupon\":\"X\"}"),
			 EVS_ESCHEMA);
	ck_assert_str_eq(evs_errmsg(), "stream 'order-1', event 1 (OrderPlaced v1): "
			 "/: additionalProperties: property 'coupon' is not allowed");
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 3, "{\"order\":\"1\"}"),
			 EVS_ESCHEMA);
	snprintf(want, sizeof(want), "stream 'order-1', event 1: type 'OrderPlaced' has no "
		 "schema version 3 in %s", sd);
	ck_assert_str_eq(evs_errmsg(), want);

	/* one bad event rejects the whole append */
	evs_new_event two[2] = {
		{ "OrderPlaced", "{\"order\":\"3\",\"customer\":\"c\"}", NULL, NULL, 1 },
		{ "OrderPlaced", "{\"customer\":\"c\"}", NULL, NULL, 1 },
	};
	ck_assert_int_eq(evs_append(s, "order-3", EVS_EXPECT_ANY, two, 2, NULL), EVS_ESCHEMA);
	ck_assert_str_eq(evs_errmsg(), "stream 'order-3', event 2 (OrderPlaced v1): "
			 "/: required: property 'order' is missing");

	/* not strict: a type without schemas passes */
	ck_assert_int_eq(append1(s, "order-1", "NoteAdded", 1, "{\"anything\":true}"), 0);
	ck_assert_uint_eq(events_in(s), 4);
	evs_close(s);

	/* strict: it does not; nothing was written */
	ck_assert_int_eq(open_with(&s, dir, sd, 1, 0), 0);
	ck_assert_int_eq(append1(s, "order-1", "NoteAdded", 1, "{\"anything\":true}"),
			 EVS_ESCHEMA);
	snprintf(want, sizeof(want), "stream 'order-1', event 1: type 'NoteAdded' has no "
		 "schema in %s (the store is strict)", sd);
	ck_assert_str_eq(evs_errmsg(), want);
	ck_assert_uint_eq(events_in(s), 4);
	evs_close(s);

	/* without schemas, anything that is a JSON object goes in */
	ck_assert_int_eq(open_with(&s, dir, NULL, 1, 0), 0);
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 1, "{}"), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
	tu_rmdir(sd);
	free(sd);
}
END_TEST

START_TEST(test_formats)
{
	char *sd = schema_dir("OrderPlaced.v2.json", placed_v2, NULL);
	char *dir = tu_mkdtemp();
	const char *bad = "{\"order\":\"2\",\"id\":\"not-a-uuid\",\"items\":[{\"sku\":\"ABC-1\","
			  "\"qty\":2}]}";
	evs_store *s;

	/* format is an annotation unless asked for */
	ck_assert_int_eq(open_with(&s, dir, sd, 0, 0), 0);
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 2, bad), 0);
	evs_close(s);
	ck_assert_int_eq(open_with(&s, dir, sd, 0, 1), 0);
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 2, bad), EVS_ESCHEMA);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "/id: format:"));
	ck_assert_int_eq(append1(s, "order-1", "OrderPlaced", 2,
				 "{\"order\":\"2\",\"id\":\"0190a3c2-7b1e-7c3d-8f00-123456789abc\","
				 "\"items\":[{\"sku\":\"ABC-1\",\"qty\":2}]}"), 0);
	ck_assert_uint_eq(events_in(s), 2);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
	tu_rmdir(sd);
	free(sd);
}
END_TEST

/* Each bad directory fails the open with the file named; no store is
 * created by the failed open. */
START_TEST(test_bad_directories)
{
	char *dir = tu_mkdtemp(), store[4200], want[8192];
	evs_store *s = NULL;
	char *sd;

	snprintf(store, sizeof(store), "%s/store", dir);

	sd = schema_dir("OrderPlaced.json", placed_v1, NULL);
	ck_assert_int_eq(open_with(&s, store, sd, 0, 0), EVS_EINVAL);
	snprintf(want, sizeof(want), "schema %s/OrderPlaced.json: the name must be "
		 "<type>.v<version>.json, with a version from 1 (e.g. OrderPlaced.v2.json)", sd);
	ck_assert_str_eq(evs_errmsg(), want);
	ck_assert_ptr_null(s);
	tu_rmdir(sd);
	free(sd);

	sd = schema_dir("OrderPlaced.v0.json", placed_v1, NULL);
	ck_assert_int_eq(open_with(&s, store, sd, 0, 0), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "OrderPlaced.v0.json: the name must be"));
	tu_rmdir(sd);
	free(sd);

	sd = schema_dir("Order Placed.v1.json", placed_v1, NULL);
	ck_assert_int_eq(open_with(&s, store, sd, 0, 0), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "Order Placed.v1.json: "));
	tu_rmdir(sd);
	free(sd);

	sd = schema_dir("OrderPlaced.v1.json", "{\"type\":\"object\",}", NULL);
	ck_assert_int_eq(open_with(&s, store, sd, 0, 0), EVS_EINVAL);
	snprintf(want, sizeof(want), "schema %s/OrderPlaced.v1.json: line 1, column ", sd);
	ck_assert_msg(strncmp(evs_errmsg(), want, strlen(want)) == 0, "%s", evs_errmsg());
	tu_rmdir(sd);
	free(sd);

	sd = schema_dir("OrderPlaced.v1.json",
			"{\"properties\":{\"a\":{\"unevaluatedProperties\":false}}}", NULL);
	ck_assert_int_eq(open_with(&s, store, sd, 0, 0), EVS_EINVAL);
	snprintf(want, sizeof(want), "%s/OrderPlaced.v1.json: unsupported keyword "
		 "'unevaluatedProperties' at /properties/a", sd);
	ck_assert_msg(strstr(evs_errmsg(), want) != NULL, "%s", evs_errmsg());
	tu_rmdir(sd);
	free(sd);

	sd = schema_dir("OrderPlaced.v1.json", "{\"minimum\":\"ten\"}", NULL);
	ck_assert_int_eq(open_with(&s, store, sd, 0, 0), EVS_EINVAL);
	ck_assert_msg(strstr(evs_errmsg(), "OrderPlaced.v1.json") != NULL, "%s", evs_errmsg());
	tu_rmdir(sd);
	free(sd);

	snprintf(want, sizeof(want), "%s/no-such-dir", dir);
	ck_assert_int_eq(open_with(&s, store, want, 0, 0), EVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), "no-such-dir"));

	ck_assert_int_eq(access(store, F_OK), -1);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A caller built against the version 1 options (no schema fields) still
 * opens its store. */
START_TEST(test_options_v1)
{
	char *dir = tu_mkdtemp();
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s;

	o.version = 1;
	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	o.schema_dir = "/nonexistent"; /* past the end of a version 1 struct */
	ck_assert_int_eq(evs_open(&s, dir, &o), 0);
	ck_assert_int_eq(append1(s, "a-1", "A", 1, "{}"), 0);
	evs_close(s);
	o.version = 3;
	ck_assert_int_eq(evs_open(&s, dir, &o), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_open: options version 3, expected 1 to 2");
	tu_rmdir(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("schemas");
	TCase *tc = tcase_create("schemas");

	tcase_add_test(tc, test_validates_appends);
	tcase_add_test(tc, test_formats);
	tcase_add_test(tc, test_bad_directories);
	tcase_add_test(tc, test_options_v1);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
