/*
 * test_jsonschema.c: the JSON Schema validator.
 *
 * Conformance: every file of the official JSON-Schema-Test-Suite for draft
 * 2020-12 is run, from $EVS_JSONSCHEMA_SUITE or else the checkout next to
 * the source tree that meson names in $EVS_JSONSCHEMA_SUITE_DEFAULT; when
 * neither exists the test says it was skipped and passes.  A schema that
 * compiles must give the expected answer for every case.  A schema that is
 * refused counts as refused, never as passed, and only two reasons are
 * acceptable: a keyword the validator does not implement, or a reference
 * to another document (remote $ref, custom metaschema).  The optional
 * format files for date-time, uuid and email run with format assertion and
 * must all pass; optional/ecmascript-regex.json is run for information.
 * The table printed per file is "keyword  passed/total  refused".
 *
 * Units: exact messages (pointers, escaping, keyword wording) on an
 * order-like schema, exact compile errors for bad schemas, the numeric
 * corners (1 == 1.0, big integers, decimal multipleOf), regex dialect,
 * hard errors that must not be inverted by 'not', and concurrent use of
 * one schema from several threads.
 */
#include "jsonschema.h"

#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "evstore.h"
#include "testutil.h"

/* ---- helpers ---- */

/* JSON written with ' for " (keeps the C literals readable); a new
 * reference. */
static json_t *J(const char *text)
{
	char *copy = strdup(text);
	json_error_t err;
	json_t *v;

	ck_assert_ptr_nonnull(copy);
	for (char *p = copy; *p; p++)
		if (*p == '\'')
			*p = '"';
	v = json_loads(copy, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!v)
		ck_abort_msg("bad test JSON %s: %s", copy, err.text);
	free(copy);
	return v;
}

static evs__schema *compile_ok(const char *text, unsigned flags)
{
	json_t *doc = J(text);
	evs__schema *s = NULL;
	int rc = evs__schema_compile(&s, doc, "test.json", flags);

	if (rc != 0)
		ck_abort_msg("compile failed (%d): %s", rc, evs_errmsg());
	json_decref(doc);
	return s;
}

/* Compiling must fail with err and exactly msg. */
static void compile_fails(const char *text, const char *name, unsigned flags,
			  int err, const char *msg)
{
	json_t *doc = J(text);
	evs__schema *s = (evs__schema *)&s;	/* must be reset to NULL */
	int rc = evs__schema_compile(&s, doc, name, flags);

	json_decref(doc);
	ck_assert_ptr_null(s);
	ck_assert_msg(rc == err, "rc %d, expected %d (%s)", rc, err, evs_errmsg());
	ck_assert_str_eq(evs_errmsg(), msg);
}

static int validate_text(const evs__schema *s, const char *text)
{
	json_t *v = J(text);
	int rc = evs__schema_validate(s, v);

	json_decref(v);
	return rc;
}

static void valid(const evs__schema *s, const char *text)
{
	int rc = validate_text(s, text);

	if (rc != 0)
		ck_abort_msg("expected %s to be valid: %d %s", text, rc, evs_errmsg());
}

static void invalid(const evs__schema *s, const char *text, const char *msg)
{
	int rc = validate_text(s, text);

	if (rc != EVS_ESCHEMA)
		ck_abort_msg("expected %s to be invalid, got %d", text, rc);
	ck_assert_str_eq(evs_errmsg(), msg);
}

/* ---- conformance ---- */

struct tally {
	char name[64];
	size_t passed, total, refused;
	size_t bad;		/* wrong answers and unacceptable refusals */
};

static const char *suite_dir(void)
{
	static const char *const vars[] = { "EVS_JSONSCHEMA_SUITE",
					    "EVS_JSONSCHEMA_SUITE_DEFAULT" };
	struct stat st;

	for (size_t i = 0; i < 2; i++) {
		const char *d = getenv(vars[i]);
		if (d && *d && stat(d, &st) == 0 && S_ISDIR(st.st_mode))
			return d;
	}
	return NULL;
}

/* The refusals we accept: a keyword we list as unsupported, or another
 * document (remote $ref, a metaschema other than 2020-12's). */
static int acceptable_refusal(const char *msg)
{
	return strstr(msg, ": unsupported keyword '") != NULL ||
	       strstr(msg, " refers to another document") != NULL ||
	       strstr(msg, ": unsupported $schema '") != NULL;
}

/*
 * Runs one suite file.  strict: wrong answers and unacceptable refusals
 * count in t->bad; otherwise they are printed as information.
 */
static void run_file(const char *dir, const char *rel, unsigned flags, int strict,
		     struct tally *t)
{
	char path[4096];
	json_error_t jerr;
	json_t *groups;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	groups = json_load_file(path, JSON_ALLOW_NUL, &jerr);
	if (!groups && json_error_code(&jerr) == json_error_numeric_overflow) {
		/* integers beyond 64 bits: jansson can only hold them as reals */
		printf("  note: %s has integers beyond 64 bits, read as reals\n", rel);
		groups = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
	}
	if (!groups)
		ck_abort_msg("%s: %s at line %d", path, jerr.text, jerr.line);
	snprintf(t->name, sizeof(t->name), "%.*s", (int)(strlen(rel) - 5), rel);
	for (size_t g = 0; g < json_array_size(groups); g++) {
		const json_t *group = json_array_get(groups, g);
		const json_t *tests = json_object_get(group, "tests");
		const char *gdesc = json_string_value(json_object_get(group, "description"));
		size_t n = json_array_size(tests);
		char name[128];
		evs__schema *s;
		int rc;

		snprintf(name, sizeof(name), "%s#%zu", rel, g);
		t->total += n;
		rc = evs__schema_compile(&s, json_object_get(group, "schema"), name, flags);
		if (rc != 0) {
			int ok = rc == EVS_EINVAL && acceptable_refusal(evs_errmsg());
			t->refused += n;
			if (!ok && strict)
				t->bad += n;
			if (ok)	/* the message starts with the name */
				printf("  refused %s\n", evs_errmsg());
			else
				printf("  %s (%s): %s\n", strict ? "FAIL refused" : "info: refused",
				       gdesc, evs_errmsg());
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			const json_t *tc = json_array_get(tests, i);
			int expect = json_is_true(json_object_get(tc, "valid"));
			rc = evs__schema_validate(s, json_object_get(tc, "data"));
			if ((rc == 0) == expect && (rc == 0 || rc == EVS_ESCHEMA)) {
				t->passed++;
				continue;
			}
			if (strict)
				t->bad++;
			printf("  %s %s (%s) / %s: expected %s, got %s %s\n",
			       strict ? "FAIL" : "info:", name, gdesc,
			       json_string_value(json_object_get(tc, "description")),
			       expect ? "valid" : "invalid", evs_errname(rc),
			       rc ? evs_errmsg() : "");
		}
		evs__schema_free(s);
	}
	json_decref(groups);
}

static void print_row(const struct tally *t, const char *note)
{
	printf("%-32s %4zu/%-4zu %7zu%s%s\n", t->name, t->passed, t->total, t->refused,
	       *note ? "  " : "", note);
}

static int json_file(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

START_TEST(test_conformance)
{
	const char *dir = suite_dir();
	struct dirent **list;
	struct tally sum = { "total", 0, 0, 0, 0 }, t;
	size_t bad = 0;
	int n;

	if (!dir) {
		printf("jsonschema conformance: skipped: no test suite directory "
		       "(set EVS_JSONSCHEMA_SUITE to JSON-Schema-Test-Suite/tests/draft2020-12)\n");
		return;
	}
	printf("jsonschema conformance: %s\n", dir);
	n = scandir(dir, &list, json_file, alphasort);
	ck_assert_int_gt(n, 0);
	struct tally *rows = calloc((size_t)n, sizeof(*rows));
	ck_assert_ptr_nonnull(rows);
	for (int i = 0; i < n; i++) {
		run_file(dir, list[i]->d_name, 0, 1, &rows[i]);
		free(list[i]);
	}
	free(list);

	printf("\n%-32s %9s %7s\n", "keyword", "passed", "refused");
	for (int i = 0; i < n; i++) {
		const struct tally *r = &rows[i];
		print_row(r, r->refused == r->total ? "(all refused)" : "");
		sum.passed += r->passed;
		sum.total += r->total;
		sum.refused += r->refused;
		bad += r->bad;
	}
	print_row(&sum, "");

	/* Formats as assertions: all of these must pass, nothing refused. */
	static const char *const formats[] = {
		"optional/format/date-time.json", "optional/format/uuid.json",
		"optional/format/email.json",
	};
	printf("\nwith EVS__SCHEMA_FORMAT_ASSERT:\n");
	for (size_t i = 0; i < 3; i++) {
		memset(&t, 0, sizeof(t));
		run_file(dir, formats[i], EVS__SCHEMA_FORMAT_ASSERT, 1, &t);
		print_row(&t, "");
		bad += t.bad + t.refused;
		ck_assert_int_eq(t.passed, t.total);
	}

	/* For information: how close the regex dialect is to ECMA-262. */
	memset(&t, 0, sizeof(t));
	run_file(dir, "optional/ecmascript-regex.json", 0, 0, &t);
	printf("\nfor information (not asserted):\n");
	print_row(&t, "");
	fflush(stdout);

	/* Each keyword the product spec requires is implemented: its file
	 * has cases that compile and pass.  (defs.json is not here: its one
	 * group validates against the 2020-12 metaschema, another document.) */
	static const char *const required[] = {
		"type", "properties", "required", "additionalProperties", "items",
		"prefixItems", "enum", "const", "minimum", "maximum",
		"exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
		"maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
		"minProperties", "maxProperties", "allOf", "anyOf", "oneOf", "not",
		"ref", "boolean_schema", "anchor", "format",
		"patternProperties", "propertyNames", "dependentRequired",
		"dependentSchemas", "if-then-else", "contains", "minContains",
		"maxContains", "infinite-loop-detection",
	};
	for (size_t k = 0; k < sizeof(required) / sizeof(required[0]); k++) {
		int found = 0;
		for (int i = 0; i < n; i++)
			if (strcmp(rows[i].name, required[k]) == 0) {
				found = 1;
				ck_assert_msg(rows[i].passed > 0, "%s: nothing passed", required[k]);
			}
		ck_assert_msg(found, "no %s.json in the suite", required[k]);
	}
	free(rows);
	ck_assert_msg(bad == 0, "%zu conformance cases failed (see the output)", bad);
}
END_TEST

/* ---- messages on an order-like schema ---- */

static const char order_schema[] =
	"{'$schema': 'https://json-schema.org/draft/2020-12/schema',"
	" 'type': 'object',"
	" 'required': ['orderId', 'customer', 'items', 'status'],"
	" 'additionalProperties': false,"
	" 'properties': {"
	"  'orderId': {'type': 'string', 'format': 'uuid'},"
	"  'customer': {'type': 'string', 'minLength': 1, 'maxLength': 8},"
	"  'status': {'enum': ['placed', 'paid', 'shipped']},"
	"  'placedAt': {'type': 'string', 'format': 'date-time'},"
	"  'email': {'type': 'string', 'format': 'email'},"
	"  'items': {'type': 'array', 'minItems': 1, 'items': {'$ref': '#/$defs/line'}},"
	"  'total': {'type': 'number', 'minimum': 0, 'multipleOf': 0.01},"
	"  'payment': {'oneOf': [{'$ref': '#/$defs/card'}, {'$ref': '#/$defs/invoice'}]},"
	"  'tags': {'type': 'array', 'uniqueItems': true, 'items': {'type': 'string'}},"
	"  'meta': {'type': 'object', 'properties': {"
	"   'a/b': {'type': 'integer'}, 'c~d': {'type': 'integer'}}}},"
	" '$defs': {"
	"  'line': {'type': 'object', 'required': ['sku', 'quantity'],"
	"   'additionalProperties': false, 'properties': {"
	"    'sku': {'type': 'string', 'pattern': '^[A-Z]{3}-\\\\d{4}$'},"
	"    'quantity': {'type': 'integer', 'minimum': 1},"
	"    'price': {'type': 'number', 'exclusiveMinimum': 0}}},"
	"  'card': {'type': 'object', 'required': ['card']},"
	"  'invoice': {'type': 'object', 'required': ['invoice']}}}";

#define ORDER_HEAD "{'orderId': '6f1c2a1e-8d3b-4c55-9b1a-3e2f4d5c6b7a', 'status': 'placed', "
#define ORDER_LINES "'items': [{'sku': 'ABC-1234', 'quantity': 2, 'price': 9.99}]"

START_TEST(test_order_messages)
{
	evs__schema *s = compile_ok(order_schema, 0);

	valid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'total': 19.98,"
	      " 'placedAt': '2024-05-01T12:00:00Z', 'email': 'ann@example.com',"
	      " 'payment': {'card': 'visa'}, 'tags': ['a', 'b'], 'meta': {'a/b': 1}}");
	/* a nested array item's field */
	invalid(s, ORDER_HEAD "'customer': 'c-7', 'items': [{'sku': 'ABC-1234', 'quantity': 2},"
		" {'sku': 'XYZ-0001', 'quantity': 0}]}",
		"/items/1/quantity: minimum: 0 is less than 1");
	invalid(s, ORDER_HEAD ORDER_LINES "}", "/: required: property 'customer' is missing");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'coupon': 'X'}",
		"/: additionalProperties: property 'coupon' is not allowed");
	invalid(s, ORDER_HEAD "'customer': 'c-7', 'items': [{'sku': 'ABC-1234', 'quantity': 1,"
		" 'note': 'x'}]}", "/items/0: additionalProperties: property 'note' is not allowed");
	/* pointers escape '/' as ~1 and '~' as ~0 */
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'meta': {'a/b': 'x'}}",
		"/meta/a~1b: type: expected integer, got string");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'meta': {'c~d': 1.5}}",
		"/meta/c~0d: type: expected integer, got number");
	invalid(s, "{'orderId': 'x', 'customer': 'c', 'status': 'bogus', " ORDER_LINES "}",
		"/status: enum: \"bogus\" is not one of the allowed values");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'payment': {}}",
		"/payment: oneOf: matched 0 of 2 subschemas");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'payment': {'card': 'v',"
		" 'invoice': 'i'}}", "/payment: oneOf: matched subschemas 0 and 1, expected exactly one");
	invalid(s, ORDER_HEAD "'customer': 'c-7', 'items': [{'sku': 'abc', 'quantity': 1}]}",
		"/items/0/sku: pattern: \"abc\" does not match '^[A-Z]{3}-\\d{4}$'");
	invalid(s, ORDER_HEAD "'customer': 'c-7', 'items': [{'sku': 'ABC-1234', 'quantity': 1,"
		" 'price': 0}]}", "/items/0/price: exclusiveMinimum: 0 is not greater than 0");
	invalid(s, ORDER_HEAD "'customer': 'c-7', 'items': []}",
		"/items: minItems: 0 items, fewer than 1");
	invalid(s, ORDER_HEAD "'customer': 'c-7', 'items': {}}",
		"/items: type: expected array, got object");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'total': 20.485}",
		"/total: multipleOf: 20.485 is not a multiple of 0.01");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'total': -1}",
		"/total: minimum: -1 is less than 0");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'tags': ['a', 'b', 'a']}",
		"/tags: uniqueItems: items 0 and 2 are equal");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'tags': ['a', 7]}",
		"/tags/1: type: expected string, got integer");
	invalid(s, ORDER_HEAD "'customer': '', " ORDER_LINES "}",
		"/customer: minLength: 0 characters, fewer than 1");
	/* lengths count code points: eight 2-byte characters fit, nine do not */
	valid(s, ORDER_HEAD "'customer': '\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	      "\xc3\xa9\xc3\xa9', " ORDER_LINES "}");
	invalid(s, ORDER_HEAD "'customer': '\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		"\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80', " ORDER_LINES "}",
		"/customer: maxLength: 9 characters, more than 8");
	invalid(s, "[]", "/: type: expected object, got array");
	/* formats are annotations without the flag */
	valid(s, "{'orderId': 'nope', 'status': 'paid', 'customer': 'c', " ORDER_LINES ","
	      " 'placedAt': 'yesterday', 'email': 'nobody'}");
	evs__schema_free(s);
}
END_TEST

START_TEST(test_format_assertion)
{
	evs__schema *s = compile_ok(order_schema, EVS__SCHEMA_FORMAT_ASSERT);

	valid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'placedAt':"
	      " '1998-12-31T15:59:60.5-08:00', 'email': '\\\"joe bloggs\\\"@[IPv6:::1]'}");
	invalid(s, "{'orderId': '6f1c2a1e-8d3b-4c55-9b1a-3e2f4d5c6b7', 'status': 'paid',"
		" 'customer': 'c', " ORDER_LINES "}",
		"/orderId: format: \"6f1c2a1e-8d3b-4c55-9b1a-3e2f4d5c6b7\" is not a valid uuid");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'placedAt': '2023-02-29T10:00:00Z'}",
		"/placedAt: format: \"2023-02-29T10:00:00Z\" is not a valid date-time");
	valid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'placedAt': '2024-02-29T10:00:00Z'}");
	invalid(s, ORDER_HEAD "'customer': 'c-7', " ORDER_LINES ", 'email': 'a..b@example.com'}",
		"/email: format: \"a..b@example.com\" is not a valid email");
	evs__schema_free(s);

	/* a format that cannot be asserted is refused rather than skipped */
	compile_fails("{'properties': {'host': {'format': 'hostname'}}}", "x.json",
		      EVS__SCHEMA_FORMAT_ASSERT, EVS_EINVAL,
		      "x.json: unsupported format 'hostname' at /properties/host: only "
		      "date-time, uuid and email can be asserted");
	s = compile_ok("{'format': 'hostname'}", 0);
	valid(s, "'-not a host-'");
	evs__schema_free(s);
	compile_fails("{'format': 7}", "x.json", 0, EVS_EINVAL,
		      "x.json: invalid 'format' at /: must be a string");
}
END_TEST

/* ---- bad schemas ---- */

START_TEST(test_bad_schemas)
{
	const char *n = "OrderPlaced.v2.json";

	compile_fails("{'properties': {'qty': {'minimum': '1'}}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'minimum' at /properties/qty: must be a number");
	compile_fails("{'properties': {'qty': {'minLength': -1}}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'minLength' at /properties/qty: must be a "
		      "non-negative integer");
	compile_fails("{'required': 'id'}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'required' at /: must be an array of strings");
	compile_fails("{'type': 'text'}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'type' at /: unknown type 'text'");
	compile_fails("{'items': [{'type': 'string'}]}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'items' at /: must be a schema (an object "
		      "or a boolean)");
	compile_fails("{'multipleOf': 0}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'multipleOf' at /: must be a number greater than 0");
	compile_fails("{'properties': {'sku': {'pattern': '^(abc'}}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'pattern' at /properties/sku: regex '^(abc': "
		      "missing closing parenthesis at offset 5");
	compile_fails("{'patternProperties': {'a[': true}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid 'patternProperties' at /: regex 'a[': "
		      "missing terminating ] for character class at offset 2");
	compile_fails("{'properties': {'items': {'type': 'object', 'unevaluatedProperties': false}}}",
		      n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: unsupported keyword 'unevaluatedProperties' at "
		      "/properties/items");
	/* an unused definition is checked too */
	compile_fails("{'$defs': {'x~y': {'$dynamicRef': '#meta'}}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: unsupported keyword '$dynamicRef' at /$defs/x~0y");
	compile_fails("{'dependencies': {'a': ['b']}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: unsupported keyword 'dependencies' at /");
	compile_fails("{'$ref': '#/$defs/missing'}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: unresolvable $ref '#/$defs/missing' at /: nothing at "
		      "that pointer");
	compile_fails("{'properties': {'a': {'$ref': '#nope'}}}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: unresolvable $ref '#nope' at /properties/a: no $anchor "
		      "'nope'");
	compile_fails("{'$ref': 'https://example.com/money.json#/$defs/amount'}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: $ref 'https://example.com/money.json#/$defs/amount' at / "
		      "refers to another document, which is not supported: references must stay "
		      "within the schema");
	compile_fails("{'$schema': 'http://json-schema.org/draft-07/schema#'}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: unsupported $schema "
		      "'http://json-schema.org/draft-07/schema#' at /: only "
		      "https://json-schema.org/draft/2020-12/schema is supported (another dialect "
		      "or metaschema is another document)");
	compile_fails("{'$id': 'http://x.test/a.json#frag'}", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: invalid '$id' at /: 'http://x.test/a.json#frag' has a "
		      "fragment; use $anchor");
	compile_fails("[]", n, 0, EVS_EINVAL,
		      "OrderPlaced.v2.json: the schema at / must be an object or a boolean");
	compile_fails("{'type': 7}", NULL, 0, EVS_EINVAL,
		      "schema: invalid 'type' at /: must be a string or an array of strings");
	evs__schema_free(NULL);
}
END_TEST

START_TEST(test_unknown_keywords_ignored)
{
	evs__schema *s = compile_ok("{'x-owner': 'billing', 'foo': {'$ref': 'nowhere'},"
				    " 'title': 't', 'description': 'd', 'default': 1,"
				    " 'examples': [1], '$comment': 'c', 'deprecated': true,"
				    " 'readOnly': true, 'writeOnly': false,"
				    " 'contentMediaType': 'application/json',"
				    " 'contentSchema': {'unevaluatedItems': false},"
				    " 'type': 'integer'}", 0);

	valid(s, "3");
	invalid(s, "'3'", "/: type: expected integer, got string");
	evs__schema_free(s);
}
END_TEST

/* ---- $ref ---- */

START_TEST(test_ref_cycles)
{
	/* must be refused, not loop */
	compile_fails("{'$defs': {'a': {'$ref': '#/$defs/a'}}, '$ref': '#/$defs/a'}", "c.json", 0,
		      EVS_EINVAL, "c.json: $ref cycle at /$defs/a: the schema refers back to "
		      "itself without descending into the value");
	compile_fails("{'$defs': {'a': {'allOf': [{'$ref': '#/$defs/b'}]},"
		      " 'b': {'anyOf': [{'type': 'string'}, {'$ref': '#/$defs/a'}]}}}", "c.json", 0,
		      EVS_EINVAL, "c.json: $ref cycle at /$defs/a: the schema refers back to "
		      "itself without descending into the value");
	compile_fails("{'not': {'$ref': '#'}}", "c.json", 0, EVS_EINVAL,
		      "c.json: $ref cycle at /: the schema refers back to itself without "
		      "descending into the value");

	/* recursion through the value is fine */
	evs__schema *s = compile_ok("{'type': 'object', 'required': ['v'], 'properties': {"
				    " 'v': {'type': 'integer'},"
				    " 'children': {'type': 'array', 'items': {'$ref': '#'}}}}", 0);
	valid(s, "{'v': 1, 'children': [{'v': 2}, {'v': 3, 'children': [{'v': 4}]}]}");
	invalid(s, "{'v': 1, 'children': [{'v': 2}, {'v': 3, 'children': [{'v': 4}, 5]}]}",
		"/children/1/children/1: type: expected object, got integer");
	invalid(s, "{'v': 1, 'children': [{'v': 2}, {'children': []}]}",
		"/children/1: required: property 'v' is missing");
	evs__schema_free(s);
}
END_TEST

START_TEST(test_ref_forms)
{
	evs__schema *s = compile_ok(
		"{'$id': 'https://shop.test/schemas/order.json',"
		" 'properties': {"
		"  'a': {'$ref': '#/$defs/tilde~0and~1slash'},"
		"  'b': {'$ref': '#/$defs/pct%25'},"
		"  'c': {'$ref': '#money'},"
		"  'd': {'$ref': 'https://shop.test/schemas/common/id.json'},"
		"  'e': {'$ref': 'common/id.json'},"
		"  'f': {'$ref': 'order.json#/$defs/pct%25'},"
		"  'g': {'$ref': '#/x-extra/0'}},"
		" 'x-extra': [{'type': 'null'}],"
		" '$defs': {"
		"  'tilde~and/slash': {'type': 'string'},"
		"  'pct%': {'type': 'boolean'},"
		"  'm': {'$anchor': 'money', 'type': 'integer'},"
		"  'id': {'$id': 'common/id.json', 'type': 'string', 'minLength': 2}}}", 0);

	valid(s, "{'a': 'x', 'b': true, 'c': 1, 'd': 'ab', 'e': 'cd', 'f': false, 'g': null}");
	invalid(s, "{'a': 1}", "/a: type: expected string, got integer");
	invalid(s, "{'b': 1}", "/b: type: expected boolean, got integer");
	invalid(s, "{'c': 1.5}", "/c: type: expected integer, got number");
	invalid(s, "{'e': 'x'}", "/e: minLength: 1 characters, fewer than 2");
	invalid(s, "{'f': 'x'}", "/f: type: expected boolean, got string");
	invalid(s, "{'g': 0}", "/g: type: expected null, got integer");
	evs__schema_free(s);
}
END_TEST

/* ---- values ---- */

START_TEST(test_value_equality)
{
	evs__schema *s = compile_ok("{'enum': [1, 'a', [1, {'x': 2}], null]}", 0);

	valid(s, "1.0");
	valid(s, "[1.0, {'x': 2.0}]");
	invalid(s, "true", "/: enum: true is not one of the allowed values");
	invalid(s, "[1, {'x': 2, 'y': 0}]",
		"/: enum: [1,{\"x\":2,\"y\":0}] is not one of the allowed values");
	evs__schema_free(s);

	s = compile_ok("{'const': {'a': [0, 2.5]}}", 0);
	valid(s, "{'a': [0.0, 2.5]}");
	invalid(s, "{'a': [false, 2.5]}", "/: const: {\"a\":[false,2.5]} is not {\"a\":[0,2.5]}");
	evs__schema_free(s);

	s = compile_ok("{'uniqueItems': true}", 0);
	invalid(s, "[1, 1.0]", "/: uniqueItems: items 0 and 1 are equal");
	valid(s, "[1, true, '1', [1], {'1': 1}, null, 0, false]");
	invalid(s, "[{'a': 1, 'b': 2}, {'b': 2.0, 'a': 1}]", "/: uniqueItems: items 0 and 1 are equal");
	evs__schema_free(s);

	/* the hashed path for longer arrays gives the same first duplicate */
	json_t *arr = json_array();
	for (int i = 0; i < 200; i++)
		json_array_append_new(arr, i % 2 ? json_integer(i) : json_real(i + 0.5));
	s = compile_ok("{'uniqueItems': true}", 0);
	ck_assert_int_eq(evs__schema_validate(s, arr), 0);
	json_array_set_new(arr, 150, json_real(37.0));
	json_array_set_new(arr, 120, json_integer(37));
	ck_assert_int_eq(evs__schema_validate(s, arr), EVS_ESCHEMA);
	ck_assert_str_eq(evs_errmsg(), "/: uniqueItems: items 37 and 120 are equal");
	json_decref(arr);
	evs__schema_free(s);

	/* long values are cut on a character boundary */
	s = compile_ok("{'enum': ['a']}", 0);
	char text[256], msg[256];
	strcpy(text, "'");
	for (int i = 0; i < 60; i++)
		strcat(text, "\xc3\xa9");
	strcat(text, "'");
	strcpy(msg, "/: enum: \"");
	for (int i = 0; i < 45; i++)
		strcat(msg, "\xc3\xa9");
	strcat(msg, "... is not one of the allowed values");
	invalid(s, text, msg);
	evs__schema_free(s);

	/* strings with NUL compare by length */
	s = compile_ok("{'const': 'a\\u0000b'}", 0);
	valid(s, "'a\\u0000b'");
	invalid(s, "'a\\u0000c'", "/: const: \"a\\u0000c\" is not \"a\\u0000b\"");
	invalid(s, "'a'", "/: const: \"a\" is not \"a\\u0000b\"");
	evs__schema_free(s);
}
END_TEST

START_TEST(test_numbers)
{
	evs__schema *s = compile_ok("{'maximum': 9007199254740992}", 0);

	/* beyond 2^53 a double comparison would call these equal */
	valid(s, "9007199254740992");
	invalid(s, "9007199254740993",
		"/: maximum: 9007199254740993 is greater than 9007199254740992");
	valid(s, "9007199254740992.0");
	evs__schema_free(s);

	s = compile_ok("{'exclusiveMinimum': 9007199254740992.0}", 0);
	valid(s, "9007199254740993");
	invalid(s, "9007199254740992", "/: exclusiveMinimum: 9007199254740992 is not greater "
		"than 9007199254740992");
	evs__schema_free(s);

	s = compile_ok("{'type': 'integer'}", 0);
	valid(s, "1.0");
	valid(s, "-0.0");
	valid(s, "1e300");
	invalid(s, "1.5", "/: type: expected integer, got number");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 0.01}", 0);
	valid(s, "19.99");
	valid(s, "0.3");
	valid(s, "-1234567.89");
	valid(s, "5");
	invalid(s, "0.001", "/: multipleOf: 0.001 is not a multiple of 0.01");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 0.1}", 0);
	valid(s, "0.3");	/* 0.3 / 0.1 is 2.9999999999999996 in doubles */
	valid(s, "1e20");
	invalid(s, "0.35", "/: multipleOf: 0.35 is not a multiple of 0.1");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 0.0001}", 0);
	valid(s, "0.0075");
	invalid(s, "0.00751", "/: multipleOf: 0.00751 is not a multiple of 0.0001");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 0.123456789}", 0);
	invalid(s, "1e308", "/: multipleOf: 1e+308 is not a multiple of 0.123456789");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 1e-8}", 0);
	valid(s, "12391239123");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 2.5}", 0);
	valid(s, "10");
	valid(s, "-7.5");
	invalid(s, "7", "/: multipleOf: 7 is not a multiple of 2.5");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 7}", 0);
	valid(s, "-9223372036854775807");	/* -(2^63 - 1) = -7 * 1317624576693539401 */
	invalid(s, "-9223372036854775808", "/: multipleOf: -9223372036854775808 is not a "
		"multiple of 7");
	evs__schema_free(s);

	s = compile_ok("{'multipleOf': 1e300}", 0);
	valid(s, "3e300");
	invalid(s, "12", "/: multipleOf: 12 is not a multiple of 1e+300");
	valid(s, "0");
	evs__schema_free(s);
}
END_TEST

START_TEST(test_regex_dialect)
{
	evs__schema *s = compile_ok("{'pattern': '^\\\\d+$'}", 0);

	valid(s, "'42'");
	/* ECMA-262: \d is ASCII only; '$' does not match before a final newline */
	invalid(s, "'\xe0\xa7\xaa\xe0\xa7\xa8'", "/: pattern: \"\xe0\xa7\xaa\xe0\xa7\xa8\" "
		"does not match '^\\d+$'");
	invalid(s, "'42\\n'", "/: pattern: \"42\\n\" does not match '^\\d+$'");
	evs__schema_free(s);

	s = compile_ok("{'pattern': '^\\\\p{Letter}+\\\\s\\\\u00e9.$'}", 0);
	valid(s, "'\xcf\x80\xce\xb1\xe3\x80\x80\xc3\xa9!'");	/* U+3000 is a space */
	invalid(s, "'ab \xc3\xa9\\n'", "/: pattern: \"ab \xc3\xa9\\n\" does not match "
		"'^\\p{Letter}+\\s\\u00e9.$'");
	evs__schema_free(s);

	/* not anchored: a match anywhere */
	s = compile_ok("{'pattern': 'b+'}", 0);
	valid(s, "'aabba'");
	valid(s, "7");		/* applies to strings only */
	evs__schema_free(s);

	s = compile_ok("{'propertyNames': {'pattern': '^[a-z_]+$'},"
		       " 'patternProperties': {'^x_': {'type': 'string'}, '^tmp_': false}}", 0);
	valid(s, "{'a': 1, 'x_y': 'z'}");
	invalid(s, "{'a': 1, 'B': 2}", "/: propertyNames: property name 'B' is not allowed");
	invalid(s, "{'x_y': 1}", "/x_y: type: expected string, got integer");
	invalid(s, "{'tmp_y': 1}", "/: patternProperties: property 'tmp_y' is not allowed "
		"(it matches '^tmp_')");
	evs__schema_free(s);
}
END_TEST

START_TEST(test_applicators)
{
	evs__schema *s = compile_ok(
		"{'if': {'properties': {'kind': {'const': 'refund'}}, 'required': ['kind']},"
		" 'then': {'required': ['reason']},"
		" 'else': {'properties': {'amount': {'minimum': 0}}},"
		" 'dependentRequired': {'coupon': ['discount']},"
		" 'dependentSchemas': {'gift': {'required': ['to']}},"
		" 'properties': {'lines': {'prefixItems': [{'type': 'string'}], 'items': false,"
		"   'contains': {'const': 'x'}, 'maxContains': 1},"
		"  'n': {'not': {'type': 'null'}},"
		"  'p': {'anyOf': [{'type': 'string'}, {'type': 'integer'}]},"
		"  'q': {'anyOf': [{'type': 'string', 'maxLength': 2}]}},"
		" 'minProperties': 1, 'maxProperties': 4}", 0);

	valid(s, "{'kind': 'refund', 'reason': 'broken'}");
	invalid(s, "{'kind': 'refund'}", "/: required: property 'reason' is missing");
	invalid(s, "{'amount': -1}", "/amount: minimum: -1 is less than 0");
	invalid(s, "{'coupon': 'A'}", "/: dependentRequired: property 'discount' is required "
		"when 'coupon' is present");
	invalid(s, "{'gift': true}", "/: required: property 'to' is missing");
	valid(s, "{'lines': ['x']}");
	invalid(s, "{'lines': ['x', 'y']}", "/lines: items: 2 items, at most 1 allowed");
	invalid(s, "{'lines': ['y']}", "/lines: contains: no item matches");
	invalid(s, "{'n': null}", "/n: not: the value matches the 'not' subschema");
	invalid(s, "{'p': 1.5}", "/p: anyOf: matched 0 of 2 subschemas");
	/* one branch: its own reason is the useful one */
	invalid(s, "{'q': 'abc'}", "/q: maxLength: 3 characters, more than 2");
	invalid(s, "{}", "/: minProperties: 0 properties, fewer than 1");
	invalid(s, "{'a': 1, 'b': 2, 'c': 3, 'd': 4, 'e': 5}",
		"/: maxProperties: 5 properties, more than 4");
	evs__schema_free(s);

	s = compile_ok("{'contains': {'type': 'integer'}, 'minContains': 2, 'maxContains': 3}", 0);
	valid(s, "[1, 'a', 2]");
	invalid(s, "[1, 'a']", "/: minContains: 1 items match 'contains', fewer than 2");
	invalid(s, "[1, 2, 3, 4]", "/: maxContains: more than 3 items match 'contains'");
	evs__schema_free(s);

	s = compile_ok("false", 0);
	invalid(s, "{}", "/: false schema: no value is allowed here");
	evs__schema_free(s);
	s = compile_ok("{'properties': {'gone': false}}", 0);
	invalid(s, "{'gone': 1}", "/: properties: property 'gone' is not allowed");
	evs__schema_free(s);
}
END_TEST

/* ---- hard errors ---- */

START_TEST(test_hard_errors)
{
	/* 'not' must not turn "cannot validate" into "valid" */
	evs__schema *s = compile_ok("{'$defs': {'d': {'type': 'array',"
				    "  'items': {'$ref': '#/$defs/d'}}},"
				    " 'not': {'$ref': '#/$defs/d'}}", 0);
	json_t *deep = json_array(), *cur = deep;
	for (int i = 0; i < 10000; i++) {
		json_t *next = json_array();
		json_array_append_new(cur, next);
		cur = next;
	}
	ck_assert_int_eq(evs__schema_validate(s, deep), EVS_ESCHEMA);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), ": the value is nested too deeply to validate"));
	valid(s, "1");
	valid(s, "[[1]]");
	invalid(s, "[[], [[]]]", "/: not: the value matches the 'not' subschema");
	json_decref(deep);
	evs__schema_free(s);

	/* a runaway regex fails the value instead of stalling */
	s = compile_ok("{'not': {'pattern': '^(a|aa)+$'}}", 0);
	char text[80];
	memset(text, 'a', 60);
	strcpy(text + 60, "!");
	json_t *v = json_string(text);
	ck_assert_int_eq(evs__schema_validate(s, v), EVS_ESCHEMA);
	ck_assert_str_eq(evs_errmsg(), "/: pattern: the regex gave up on this value: "
			 "match limit exceeded");
	json_decref(v);
	evs__schema_free(s);
}
END_TEST

/* ---- threads ---- */

struct worker {
	const evs__schema *s;
	int wrong;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	json_t *good = J(ORDER_HEAD "'customer': 'c-7', " ORDER_LINES "}");
	json_t *bad = J(ORDER_HEAD "'customer': 'c-7', 'items': [{'sku': 'abc', 'quantity': 1}]}");

	for (int i = 0; i < 5000; i++) {
		if (evs__schema_validate(w->s, good) != 0)
			w->wrong++;
		if (evs__schema_validate(w->s, bad) != EVS_ESCHEMA ||
		    strcmp(evs_errmsg(), "/items/0/sku: pattern: \"abc\" does not match "
			   "'^[A-Z]{3}-\\d{4}$'") != 0)
			w->wrong++;
	}
	json_decref(good);
	json_decref(bad);
	return NULL;
}

START_TEST(test_threads)
{
	evs__schema *s = compile_ok(order_schema, EVS__SCHEMA_FORMAT_ASSERT);
	pthread_t th[8];
	struct worker w[8];

	for (int i = 0; i < 8; i++) {
		w[i].s = s;
		w[i].wrong = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].wrong, 0);
	}
	evs__schema_free(s);
}
END_TEST

static Suite *jsonschema_suite(void)
{
	Suite *s = suite_create("jsonschema");
	TCase *tc;

	tc = tcase_create("conformance");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_conformance);
	suite_add_tcase(s, tc);

	tc = tcase_create("messages");
	tcase_add_test(tc, test_order_messages);
	tcase_add_test(tc, test_format_assertion);
	tcase_add_test(tc, test_applicators);
	suite_add_tcase(s, tc);

	tc = tcase_create("compile");
	tcase_add_test(tc, test_bad_schemas);
	tcase_add_test(tc, test_unknown_keywords_ignored);
	tcase_add_test(tc, test_ref_cycles);
	tcase_add_test(tc, test_ref_forms);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_test(tc, test_value_equality);
	tcase_add_test(tc, test_numbers);
	tcase_add_test(tc, test_regex_dialect);
	tcase_add_test(tc, test_hard_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return tu_run(jsonschema_suite());
}
