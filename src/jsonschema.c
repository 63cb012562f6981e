/*
 * jsonschema.c: JSON Schema draft 2020-12 over jansson values.
 *
 * Compiling a document takes two passes over a private deep copy of it.
 * The first (index_schema) walks every subschema reachable through the
 * applicator keywords and records, for each schema value, its base URI and
 * its JSON pointer, and registers each $id and $anchor.  The second
 * (compile) turns each schema value into a node: keyword values checked
 * and converted (sizes to size_t, regexes compiled by PCRE2, properties
 * sorted for binary search) and every $ref resolved to the node of its
 * target.  Nodes are memoised by the address of their JSON value, so a
 * schema that refers to itself compiles to a graph with a cycle, not to an
 * endless recursion.  A last pass refuses graphs in which a schema can reach
 * itself without descending into the instance ($ref, allOf, not, ... all
 * apply to the same value): validating with one would never end.
 *
 * Invariants:
 * - After evs__schema_compile returns, nothing in the schema is written.
 *   Validation state (the instance path, the depth, the "quiet" count) is
 *   in a struct on the caller's stack; the one thing PCRE2 needs to write,
 *   its match data, is per thread (see thread_md).
 * - Every json_t a node points at lives in s->doc, which the schema owns.
 * - Validation returns 0, EVS_ESCHEMA, or a hard error (out of memory, a
 *   regex over its match limit, nesting too deep).  A hard error sets
 *   c->hard and must pass through not/anyOf/oneOf/if/contains unchanged: it
 *   says nothing about whether the value is valid.
 * - Inside anyOf, oneOf, not, if, contains and propertyNames a failure is an
 *   expected outcome, so while c->quiet is non-zero failures are returned
 *   without formatting a message.
 *
 * Semantics worth knowing:
 * - Numbers compare by value across jansson's integer and real kinds (1
 *   equals 1.0 in enum, const and uniqueItems; 1.0 is an integer), exactly,
 *   also for integers beyond 2^53.
 * - multipleOf is decided in decimal: each double is taken as its shortest
 *   decimal representation (what the author wrote), so 19.99 is a multiple
 *   of 0.01, which dividing doubles gets wrong.
 * - Patterns are ECMA-262 regexes.  They are rewritten into PCRE2 syntax
 *   where the two differ: \s and '.' get ECMA's definitions (Unicode
 *   spaces; every line terminator), \v is a vertical tab, long Unicode
 *   property names (\p{Letter}) become PCRE2's short ones, and surrogate
 *   pairs written as two \u escapes become one code point.  \d, \w and \b
 *   stay ASCII, as in ECMA-262.  \S inside a character class keeps PCRE2's
 *   ASCII meaning (a class cannot hold a negated class).
 */
#include "jsonschema.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "internal.h"

/* Validation recursion (schema nodes entered at once) is cut off here, so
 * a hostile, deeply nested value cannot exhaust the stack: event bodies
 * are at most 512 containers deep, and a level rarely costs more than a
 * few nodes. */
#define MAX_DEPTH 4096

/* Backtracking steps one pattern match may take: a pathological regex on a
 * long string fails the event instead of stalling the writer. */
#define REGEX_MATCH_LIMIT 1000000u

/* The base URI of a document without $id.  Only used to tell references
 * within the document from references to other documents. */
static const char default_base[] = "evstore:/schema";

/* ---- keywords ---- */

enum kw {
	KW_UNKNOWN,		/* not a 2020-12 keyword: ignored */
	KW_ANNOTATION,		/* accepted, no effect on validation */
	KW_UNSUPPORTED,
	KW_SCHEMA, KW_ID, KW_ANCHOR, KW_DEFS, KW_LEGACY_DEFS, KW_REF,
	KW_TYPE, KW_ENUM, KW_CONST,
	KW_MULTIPLE_OF, KW_MAXIMUM, KW_EXCL_MAXIMUM, KW_MINIMUM, KW_EXCL_MINIMUM,
	KW_MAX_LENGTH, KW_MIN_LENGTH, KW_PATTERN, KW_FORMAT,
	KW_MAX_ITEMS, KW_MIN_ITEMS, KW_UNIQUE_ITEMS, KW_MAX_CONTAINS,
	KW_MIN_CONTAINS, KW_PREFIX_ITEMS, KW_ITEMS, KW_CONTAINS,
	KW_MAX_PROPERTIES, KW_MIN_PROPERTIES, KW_REQUIRED, KW_DEP_REQUIRED,
	KW_PROPERTIES, KW_PATTERN_PROPERTIES, KW_ADDITIONAL_PROPERTIES,
	KW_PROPERTY_NAMES, KW_DEP_SCHEMAS,
	KW_ALL_OF, KW_ANY_OF, KW_ONE_OF, KW_NOT, KW_IF, KW_THEN, KW_ELSE,
};

/* Where a keyword's subschemas are, for the index pass. */
enum shape { SHAPE_NONE, SHAPE_ONE, SHAPE_MAP, SHAPE_ARRAY };

static const struct keyword {
	const char *name;
	enum kw kw;
	enum shape shape;
} keywords[] = {
	{ "$schema", KW_SCHEMA, SHAPE_NONE },
	{ "$id", KW_ID, SHAPE_NONE },
	{ "$anchor", KW_ANCHOR, SHAPE_NONE },
	{ "$ref", KW_REF, SHAPE_NONE },
	{ "$defs", KW_DEFS, SHAPE_MAP },
	/* Not a 2020-12 keyword, but the usual home of shared schemas in
	 * older documents; its entries are compiled like $defs so they are
	 * checked, and refs into it resolve like any pointer. */
	{ "definitions", KW_LEGACY_DEFS, SHAPE_MAP },
	{ "$comment", KW_ANNOTATION, SHAPE_NONE },
	{ "title", KW_ANNOTATION, SHAPE_NONE },
	{ "description", KW_ANNOTATION, SHAPE_NONE },
	{ "default", KW_ANNOTATION, SHAPE_NONE },
	{ "examples", KW_ANNOTATION, SHAPE_NONE },
	{ "deprecated", KW_ANNOTATION, SHAPE_NONE },
	{ "readOnly", KW_ANNOTATION, SHAPE_NONE },
	{ "writeOnly", KW_ANNOTATION, SHAPE_NONE },
	{ "contentMediaType", KW_ANNOTATION, SHAPE_NONE },
	{ "contentEncoding", KW_ANNOTATION, SHAPE_NONE },
	{ "contentSchema", KW_ANNOTATION, SHAPE_NONE },
	{ "type", KW_TYPE, SHAPE_NONE },
	{ "enum", KW_ENUM, SHAPE_NONE },
	{ "const", KW_CONST, SHAPE_NONE },
	{ "multipleOf", KW_MULTIPLE_OF, SHAPE_NONE },
	{ "maximum", KW_MAXIMUM, SHAPE_NONE },
	{ "exclusiveMaximum", KW_EXCL_MAXIMUM, SHAPE_NONE },
	{ "minimum", KW_MINIMUM, SHAPE_NONE },
	{ "exclusiveMinimum", KW_EXCL_MINIMUM, SHAPE_NONE },
	{ "maxLength", KW_MAX_LENGTH, SHAPE_NONE },
	{ "minLength", KW_MIN_LENGTH, SHAPE_NONE },
	{ "pattern", KW_PATTERN, SHAPE_NONE },
	{ "format", KW_FORMAT, SHAPE_NONE },
	{ "maxItems", KW_MAX_ITEMS, SHAPE_NONE },
	{ "minItems", KW_MIN_ITEMS, SHAPE_NONE },
	{ "uniqueItems", KW_UNIQUE_ITEMS, SHAPE_NONE },
	{ "maxContains", KW_MAX_CONTAINS, SHAPE_NONE },
	{ "minContains", KW_MIN_CONTAINS, SHAPE_NONE },
	{ "prefixItems", KW_PREFIX_ITEMS, SHAPE_ARRAY },
	{ "items", KW_ITEMS, SHAPE_ONE },
	{ "contains", KW_CONTAINS, SHAPE_ONE },
	{ "maxProperties", KW_MAX_PROPERTIES, SHAPE_NONE },
	{ "minProperties", KW_MIN_PROPERTIES, SHAPE_NONE },
	{ "required", KW_REQUIRED, SHAPE_NONE },
	{ "dependentRequired", KW_DEP_REQUIRED, SHAPE_NONE },
	{ "properties", KW_PROPERTIES, SHAPE_MAP },
	{ "patternProperties", KW_PATTERN_PROPERTIES, SHAPE_MAP },
	{ "additionalProperties", KW_ADDITIONAL_PROPERTIES, SHAPE_ONE },
	{ "propertyNames", KW_PROPERTY_NAMES, SHAPE_ONE },
	{ "dependentSchemas", KW_DEP_SCHEMAS, SHAPE_MAP },
	{ "allOf", KW_ALL_OF, SHAPE_ARRAY },
	{ "anyOf", KW_ANY_OF, SHAPE_ARRAY },
	{ "oneOf", KW_ONE_OF, SHAPE_ARRAY },
	{ "not", KW_NOT, SHAPE_ONE },
	{ "if", KW_IF, SHAPE_ONE },
	{ "then", KW_THEN, SHAPE_ONE },
	{ "else", KW_ELSE, SHAPE_ONE },
	/* Standard keywords this validator does not implement, and the
	 * keywords of earlier drafts whose meaning a 2020-12 validator would
	 * silently drop. */
	{ "unevaluatedItems", KW_UNSUPPORTED, SHAPE_NONE },
	{ "unevaluatedProperties", KW_UNSUPPORTED, SHAPE_NONE },
	{ "$dynamicRef", KW_UNSUPPORTED, SHAPE_NONE },
	{ "$dynamicAnchor", KW_UNSUPPORTED, SHAPE_NONE },
	{ "$recursiveRef", KW_UNSUPPORTED, SHAPE_NONE },
	{ "$recursiveAnchor", KW_UNSUPPORTED, SHAPE_NONE },
	{ "$vocabulary", KW_UNSUPPORTED, SHAPE_NONE },
	{ "dependencies", KW_UNSUPPORTED, SHAPE_NONE },
	{ "additionalItems", KW_UNSUPPORTED, SHAPE_NONE },
};

static const struct keyword *kw_lookup(const char *name)
{
	static const struct keyword unknown = { NULL, KW_UNKNOWN, SHAPE_NONE };

	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (strcmp(keywords[i].name, name) == 0)
			return &keywords[i];
	return &unknown;
}

/* ---- the compiled form ---- */

enum { T_NULL = 1, T_BOOLEAN = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16,
       T_STRING = 32, T_INTEGER = 64 };

static const char *const type_names[] = {
	"null", "boolean", "object", "array", "number", "string", "integer",
};

enum { FMT_NONE, FMT_DATE_TIME, FMT_UUID, FMT_EMAIL };

static const char *const format_names[] = { "", "date-time", "uuid", "email" };

/* A non-negative number as m * 10^e. */
struct dec {
	uint64_t m;
	int e;
};

typedef struct node node;

struct named {
	const char *key;
	node *n;
	bool required;		/* properties: also in 'required' */
};

struct patprop {
	pcre2_code *re;
	const char *src;
	node *n;
};

struct depreq {
	const char *key;
	const json_t *names;	/* array of strings */
};

struct node {
	signed char boolean;	/* 1: true, 0: false, -1: an object schema */
	unsigned char format;
	bool unique;
	unsigned types;		/* T_* bits; 0: any */
	const json_t *enum_vals, *const_val;
	const json_t *minimum, *maximum, *excl_min, *excl_max, *multiple_of;
	struct dec multiple_dec;
	size_t min_len, max_len, min_items, max_items, min_props, max_props;
	size_t min_contains, max_contains;
	pcre2_code *pattern;
	const char *pattern_src;
	struct named *props;	/* sorted by key */
	size_t nprops;
	struct patprop *pats;
	size_t npats;
	node *additional, *prop_names;
	/*
	 * 'required', in order, for messages.  When the property pass runs,
	 * the names that are also in 'properties' (nreq_props of them, marked
	 * in props[]) are counted there instead of being looked up; only the
	 * others (req_other) are looked up.
	 */
	const json_t *required;
	size_t nreq_props;
	const char **req_other;
	size_t nreq_other;
	struct depreq *depreq;
	size_t ndepreq;
	struct named *depsch;
	size_t ndepsch;
	node **prefix;
	size_t nprefix;
	node *items, *contains;
	node **all, **any, **one;
	size_t nall, nany, none;
	node *not_, *if_, *then_, *else_, *ref;
	/* compile time only */
	const char *path;
	int mark;
};

struct evs__schema {
	json_t *doc;
	node *root;
	node **nodes;		/* every node, for freeing */
	size_t nnodes;
	pcre2_general_context *gctx;
	pcre2_match_context *mctx;
};

/* ---- numbers ---- */

/*
 * Rounding helpers without libm.  Every double of magnitude 2^63 or more is
 * an integer; below that the conversion to long long is exact after
 * truncation.
 */
static bool dbl_integral(double d)
{
	if (d >= 9223372036854775808.0 || d <= -9223372036854775808.0)
		return true;
	return d == (double)(long long)d;
}

/* floor(d) for |d| < 2^63. */
static long long dbl_floor(double d)
{
	long long t = (long long)d;

	return (double)t > d ? t - 1 : t;
}

/* -1, 0, 1 as integer i is below, equal to or above real r, exactly. */
static int cmp_int_real(json_int_t i, double r)
{
	long long f;

	if (r >= 9223372036854775808.0)
		return -1;
	if (r < -9223372036854775808.0)
		return 1;
	f = dbl_floor(r);
	if (i < f)
		return -1;
	if (i > f)
		return 1;
	return r > (double)f ? -1 : 0;
}

/* Both must be numbers. */
static int num_cmp(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t x = json_integer_value(a), y = json_integer_value(b);
		return (x > y) - (x < y);
	}
	if (json_is_integer(a))
		return cmp_int_real(json_integer_value(a), json_real_value(b));
	if (json_is_integer(b))
		return -cmp_int_real(json_integer_value(b), json_real_value(a));
	double x = json_real_value(a), y = json_real_value(b);
	return (x > y) - (x < y);
}

static bool is_integral(const json_t *v)
{
	if (json_is_integer(v))
		return true;
	if (json_is_real(v)) {
		return dbl_integral(json_real_value(v));
	}
	return false;
}

static void dec_strip(struct dec *d)
{
	if (d->m == 0) {
		d->e = 0;
		return;
	}
	while (d->m % 10 == 0) {
		d->m /= 10;
		d->e++;
	}
}

static const double pow10_exact[] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * |v| as the shortest decimal that reads back as the same double.  The
 * fast path finds the fewest fractional digits k with round(r * 10^k) /
 * 10^k == r (both operations exact or correctly rounded for these sizes);
 * the rest go through printf, which is slow but only meets huge, tiny or
 * long-mantissa values.
 */
static void dec_of(const json_t *v, struct dec *d)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		d->m = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
		d->e = 0;
		dec_strip(d);
		return;
	}
	double r = json_real_value(v);

	if (r < 0)
		r = -r;
	if (r == 0) {
		d->m = 0;
		d->e = 0;
		return;
	}
	if (r < 9007199254740992.0 && dbl_integral(r)) {
		d->m = (uint64_t)r;
		d->e = 0;
		dec_strip(d);
		return;
	}
	for (int k = 1; k <= 22; k++) {
		double y = r * pow10_exact[k];
		if (y >= 4503599627370496.0)	/* 2^52: rounding still exact */
			break;
		uint64_t m = (uint64_t)(y + 0.5);
		if ((double)m / pow10_exact[k] == r) {
			d->m = m;
			d->e = -k;
			dec_strip(d);
			return;
		}
	}
	char buf[64];
	int prec;
	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, r);
		if (strtod(buf, NULL) == r)
			break;
	}
	snprintf(buf, sizeof(buf), "%.*e", prec - 1, r);
	/* Digits up to the exponent, whatever the locale's decimal point. */
	const char *p = buf;
	uint64_t m = 0;
	for (; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			m = m * 10 + (uint64_t)(*p - '0');
	d->m = m;
	d->e = (*p == 'e' ? atoi(p + 1) : 0) - (prec - 1);
	dec_strip(d);
}

static uint64_t addmod(uint64_t a, uint64_t b, uint64_t n)
{
	return a >= n - b ? a - (n - b) : a + b;
}

/* Whether x is an integer multiple of m (m->m > 0), exactly in decimal. */
static bool dec_multiple(const struct dec *x, const struct dec *m)
{
	if (x->m == 0)
		return true;
	if (x->e >= m->e) {
		/* x->m * 10^(x->e - m->e) mod m->m, without overflow */
		uint64_t r = x->m % m->m;
		for (int a = x->e - m->e; a > 0 && r != 0; a--) {
			uint64_t r2 = addmod(r, r, m->m);
			uint64_t r4 = addmod(r2, r2, m->m);
			uint64_t r8 = addmod(r4, r4, m->m);
			r = addmod(r8, r2, m->m);
		}
		return r == 0;
	}
	uint64_t div = m->m;
	for (int b = m->e - x->e; b > 0; b--) {
		if (div > UINT64_MAX / 10)
			return false;	/* the divisor exceeds x */
		div *= 10;
	}
	return x->m % div == 0;
}

/* ---- equality and hashing by JSON value ---- */

static bool json_same(const json_t *a, const json_t *b)
{
	if (a == b)
		return true;
	if (json_is_number(a) && json_is_number(b))
		return num_cmp(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b),
			      json_string_length(a)) == 0;
	case JSON_ARRAY: {
		size_t n = json_array_size(a);
		if (n != json_array_size(b))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!json_same(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	case JSON_OBJECT: {
		const char *key;
		json_t *va;
		if (json_object_size(a) != json_object_size(b))
			return false;
		/* jansson's iterators are not const-qualified; nothing is written */
		json_object_foreach((json_t *)a, key, va) {
			const json_t *vb = json_object_get(b, key);
			if (!vb || !json_same(va, vb))
				return false;
		}
		return true;
	}
	default:
		return true;	/* true, false, null */
	}
}

static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h;
}

/* Equal by json_same() implies equal hashes: numbers hash by value (an
 * integral real as the integer), objects independently of key order. */
static uint64_t json_hash(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_INTEGER:
		return mix64((uint64_t)json_integer_value(v) ^ 0x1234);
	case JSON_REAL: {
		double d = json_real_value(v);
		if (dbl_integral(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
			return mix64((uint64_t)(long long)d ^ 0x1234);
		uint64_t bits;
		memcpy(&bits, &d, sizeof(bits));
		return mix64(bits);
	}
	case JSON_STRING:
		return mix64(hash_bytes(json_string_value(v), json_string_length(v)) + 1);
	case JSON_ARRAY: {
		uint64_t h = 0xa5;
		for (size_t i = 0; i < json_array_size(v); i++)
			h = mix64(h * 31 + json_hash(json_array_get(v, i)));
		return h;
	}
	case JSON_OBJECT: {
		uint64_t h = 0x0b;
		const char *key;
		json_t *val;
		json_object_foreach((json_t *)v, key, val)
			h += mix64(hash_bytes(key, strlen(key)) ^ json_hash(val));
		return mix64(h);
	}
	case JSON_TRUE:
		return 2;
	case JSON_FALSE:
		return 3;
	default:
		return 1;
	}
}

/* ---- strings and formats ---- */

static size_t utf8_chars(const char *s, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Two ASCII digits, or -1. */
static int d2(const char *s)
{
	if (!is_digit(s[0]) || !is_digit(s[1]))
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		return 29;
	return days[m - 1];
}

/*
 * RFC 3339 date-time: full-date "T" full-time, "T" and "Z" in either
 * case.  A leap second (:60) is accepted only where it can occur, at
 * 23:59 UTC once the offset is applied.
 */
static bool check_date_time(const char *s, size_t n)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	size_t i;

	if (n < 20)
		return false;
	if (d2(s) < 0 || d2(s + 2) < 0 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
		return false;
	y = d2(s) * 100 + d2(s + 2);
	mo = d2(s + 5);
	d = d2(s + 8);
	h = d2(s + 11);
	mi = d2(s + 14);
	sec = d2(s + 17);
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 ||
	    h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
		return false;
	i = 19;
	if (s[i] == '.') {
		i++;
		if (i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
		sign = 0;
	} else if (i < n && (s[i] == '+' || s[i] == '-') && i + 6 == n) {
		sign = s[i] == '+' ? 1 : -1;
		oh = d2(s + i + 1);
		om = d2(s + i + 4);
		if (s[i + 3] != ':' || oh < 0 || oh > 23 || om < 0 || om > 59)
			return false;
	} else {
		return false;
	}
	if (sec == 60) {
		int utc = ((h * 60 + mi - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;
		if (utc != 23 * 60 + 59)
			return false;
	}
	return true;
}

static bool check_uuid(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!is_hex(s[i])) {
			return false;
		}
	}
	return true;
}

static bool is_atext(char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* A host name: dot-separated labels of letters, digits and inner hyphens. */
static bool check_hostname(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alpha(s[i]) && !is_digit(s[i]) && !(s[i] == '-' && label > 0))
			return false;
		label++;
	}
	return true;
}

/*
 * An RFC 5321 Mailbox: a dot-string or quoted-string local part, '@', and
 * a host name or an IPv4 or IPv6 address literal.  General address
 * literals ("[tag:...]") are refused: no tag but IPv6 is registered.
 */
static bool check_email(const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n && s[i] != '"'; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '\\') {
				if (i + 1 >= n || (unsigned char)s[i + 1] < 32 ||
				    (unsigned char)s[i + 1] > 126)
					return false;
				i++;
			} else if (c < 32 || c > 126) {
				return false;
			}
		}
		if (i >= n)
			return false;
		i++;
	} else {
		bool atom = false;
		for (; i < n && s[i] != '@'; i++) {
			if (s[i] == '.') {
				if (!atom)
					return false;
				atom = false;
			} else if (is_atext(s[i])) {
				atom = true;
			} else {
				return false;
			}
		}
		if (!atom)
			return false;
	}
	if (i > 64 || i >= n || s[i] != '@')
		return false;
	const char *dom = s + i + 1;
	size_t dn = n - i - 1;
	if (dn >= 2 && dom[0] == '[' && dom[dn - 1] == ']') {
		char lit[64];
		unsigned char addr[16];
		if (dn - 2 >= sizeof(lit))
			return false;
		memcpy(lit, dom + 1, dn - 2);
		lit[dn - 2] = '\0';
		if (strncmp(lit, "IPv6:", 5) == 0)
			return inet_pton(AF_INET6, lit + 5, addr) == 1;
		return inet_pton(AF_INET, lit, addr) == 1;
	}
	return check_hostname(dom, dn);
}

static bool check_format(int format, const char *s, size_t n)
{
	switch (format) {
	case FMT_DATE_TIME:
		return check_date_time(s, n);
	case FMT_UUID:
		return check_uuid(s, n);
	case FMT_EMAIL:
		return check_email(s, n);
	default:
		return true;
	}
}

/* ---- ECMA-262 patterns to PCRE2 ---- */

/* A growing output buffer that remembers, for each output byte, the
 * pattern offset it came from, so PCRE2's error offsets can be reported
 * against what the author wrote. */
struct rbuf {
	char *s;
	size_t *from;
	size_t len, cap;
	bool oom;
};

static void rb_put(struct rbuf *b, const char *s, size_t n, size_t from)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *ns = evs__realloc(b->s, cap);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		size_t *nf = evs__realloc(b->from, cap * sizeof(size_t));
		if (!nf) {
			b->oom = true;
			return;
		}
		b->from = nf;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	for (size_t i = 0; i < n; i++)
		b->from[b->len + i] = from;
	b->len += n;
	b->s[b->len] = '\0';
	b->from[b->len] = from;
}

static void rb_puts(struct rbuf *b, const char *s, size_t from)
{
	rb_put(b, s, strlen(s), from);
}

/* ECMA-262 WhiteSpace and LineTerminator, as class contents. */
#define ECMA_SPACE "\\t\\n\\x0b\\f\\r\\p{Zs}\\ufeff\\u2028\\u2029"

/* ECMA-262's long General_Category names and aliases; PCRE2 10.42 knows
 * only the short ones.  Script names pass through unchanged. */
static const char *const gc_names[][2] = {
	{ "Letter", "L" }, { "Cased_Letter", "L&" }, { "LC", "L&" },
	{ "Uppercase_Letter", "Lu" }, { "Lowercase_Letter", "Ll" },
	{ "Titlecase_Letter", "Lt" }, { "Modifier_Letter", "Lm" },
	{ "Other_Letter", "Lo" }, { "Mark", "M" }, { "Combining_Mark", "M" },
	{ "Nonspacing_Mark", "Mn" }, { "Spacing_Mark", "Mc" },
	{ "Enclosing_Mark", "Me" }, { "Number", "N" },
	{ "Decimal_Number", "Nd" }, { "digit", "Nd" }, { "Letter_Number", "Nl" },
	{ "Other_Number", "No" }, { "Punctuation", "P" }, { "punct", "P" },
	{ "Connector_Punctuation", "Pc" }, { "Dash_Punctuation", "Pd" },
	{ "Open_Punctuation", "Ps" }, { "Close_Punctuation", "Pe" },
	{ "Initial_Punctuation", "Pi" }, { "Final_Punctuation", "Pf" },
	{ "Other_Punctuation", "Po" }, { "Symbol", "S" }, { "Math_Symbol", "Sm" },
	{ "Currency_Symbol", "Sc" }, { "Modifier_Symbol", "Sk" },
	{ "Other_Symbol", "So" }, { "Separator", "Z" },
	{ "Space_Separator", "Zs" }, { "Line_Separator", "Zl" },
	{ "Paragraph_Separator", "Zp" }, { "Other", "C" }, { "Control", "Cc" },
	{ "cntrl", "Cc" }, { "Format", "Cf" }, { "Surrogate", "Cs" },
	{ "Private_Use", "Co" }, { "Unassigned", "Cn" },
};

/* Rewrites src into b (see the top of the file for what changes). */
static void ecma_to_pcre2(struct rbuf *b, const char *src, size_t n)
{
	bool in_class = false;
	size_t i = 0;

	while (i < n) {
		char ch = src[i];
		if (ch == '\\' && i + 1 < n) {
			char e = src[i + 1];
			if (e == 's') {
				rb_puts(b, in_class ? ECMA_SPACE : "[" ECMA_SPACE "]", i);
				i += 2;
			} else if (e == 'S' && !in_class) {
				rb_puts(b, "[^" ECMA_SPACE "]", i);
				i += 2;
			} else if (e == 'v') {
				rb_puts(b, "\\x0b", i);
				i += 2;
			} else if ((e == 'p' || e == 'P') && i + 2 < n && src[i + 2] == '{') {
				const char *name = src + i + 3;
				const char *end = memchr(name, '}', n - (i + 3));
				if (!end) {
					rb_put(b, src + i, 2, i);
					i += 2;
					continue;
				}
				size_t len = (size_t)(end - name);
				const char *eq = memchr(name, '=', len);
				rb_put(b, src + i, 3, i);	/* \p{ */
				if (eq && (((size_t)(eq - name) == 16 &&
					    memcmp(name, "General_Category", 16) == 0) ||
					   ((size_t)(eq - name) == 2 && memcmp(name, "gc", 2) == 0))) {
					len -= (size_t)(eq + 1 - name);
					name = eq + 1;
				} else if (eq && (size_t)(eq - name) == 6 &&
					   memcmp(name, "Script", 6) == 0) {
					rb_puts(b, "sc=", i);
					len -= 7;
					name += 7;
				} else if (eq && (size_t)(eq - name) == 17 &&
					   memcmp(name, "Script_Extensions", 17) == 0) {
					rb_puts(b, "scx=", i);
					len -= 18;
					name += 18;
				}
				const char *mapped = NULL;
				for (size_t k = 0; k < sizeof(gc_names) / sizeof(gc_names[0]); k++)
					if (strlen(gc_names[k][0]) == len &&
					    memcmp(gc_names[k][0], name, len) == 0)
						mapped = gc_names[k][1];
				if (mapped)
					rb_puts(b, mapped, i);
				else
					rb_put(b, name, len, (size_t)(name - src));
				rb_puts(b, "}", (size_t)(end - src));
				i = (size_t)(end - src) + 1;
			} else if (e == 'u' && evs__hex4(src + i + 2, n - i - 2) >= 0xd800 &&
				   evs__hex4(src + i + 2, n - i - 2) <= 0xdbff && i + 12 <= n &&
				   src[i + 6] == '\\' && src[i + 7] == 'u' &&
				   evs__hex4(src + i + 8, n - i - 8) >= 0xdc00 &&
				   evs__hex4(src + i + 8, n - i - 8) <= 0xdfff) {
				/* a surrogate pair: one code point for PCRE2 */
				int hi = evs__hex4(src + i + 2, 4), lo = evs__hex4(src + i + 8, 4);
				long cp = 0x10000 + ((long)(hi - 0xd800) << 10) + (lo - 0xdc00);
				char out[16];
				snprintf(out, sizeof(out), "\\u{%lx}", cp);
				rb_puts(b, out, i);
				i += 12;
			} else {
				rb_put(b, src + i, 2, i);
				i += 2;
			}
			continue;
		}
		if (ch == '[' && !in_class) {
			size_t j = i + 1;
			if (j < n && src[j] == '^')
				j++;
			if (j < n && src[j] == ']') {
				/* [] and [^]: ECMA's empty and any-character classes */
				rb_put(b, src + i, j + 1 - i, i);
				i = j + 1;
				continue;
			}
			in_class = true;
			rb_put(b, src + i, j - i, i);
			i = j;
			continue;
		}
		if (ch == ']' && in_class)
			in_class = false;
		if (ch == '.' && !in_class) {
			rb_puts(b, "[^\\n\\r\\u2028\\u2029]", i);
			i++;
			continue;
		}
		rb_put(b, src + i, 1, i);
		i++;
	}
}

/* ---- URIs (RFC 3986) ---- */

struct uri {
	const char *scheme, *auth, *path, *query, *frag;
	size_t scheme_n, auth_n, path_n, query_n, frag_n;
	bool has_scheme, has_auth, has_query, has_frag;
};

static void uri_parse(const char *s, struct uri *u)
{
	const char *p = s;

	memset(u, 0, sizeof(*u));
	size_t k = strcspn(p, ":/?#");
	if (k > 0 && p[k] == ':') {
		u->has_scheme = true;
		u->scheme = p;
		u->scheme_n = k;
		p += k + 1;
	}
	if (p[0] == '/' && p[1] == '/') {
		u->has_auth = true;
		u->auth = p + 2;
		u->auth_n = strcspn(p + 2, "/?#");
		p = u->auth + u->auth_n;
	}
	u->path = p;
	u->path_n = strcspn(p, "?#");
	p += u->path_n;
	if (*p == '?') {
		u->has_query = true;
		u->query = p + 1;
		u->query_n = strcspn(p + 1, "#");
		p = u->query + u->query_n;
	}
	if (*p == '#') {
		u->has_frag = true;
		u->frag = p + 1;
		u->frag_n = strlen(p + 1);
	}
}

/*
 * RFC 3986 5.2.4, in place on a NUL-terminated path.  The output never
 * overtakes the input, and the terminator is written only at the end (the
 * output may still reach the byte the input is at).
 */
static void remove_dot_segments(char *in)
{
	char *out = in, *r = in;

	while (*r) {
		if (strncmp(r, "../", 3) == 0) {
			r += 3;
		} else if (strncmp(r, "./", 2) == 0 || strncmp(r, "/./", 3) == 0) {
			r += 2;
		} else if (strcmp(r, "/.") == 0) {
			r[1] = '\0';	/* the input becomes "/" */
		} else if (strncmp(r, "/../", 4) == 0 || strcmp(r, "/..") == 0) {
			if (r[3] == '/')
				r += 3;
			else
				r[1] = '\0';
			while (out > in && *--out != '/')
				;
		} else if (strcmp(r, ".") == 0 || strcmp(r, "..") == 0) {
			r += strlen(r);
		} else {
			char *start = r;
			if (*r == '/')
				r++;
			while (*r && *r != '/')
				r++;
			memmove(out, start, (size_t)(r - start));
			out += r - start;
		}
	}
	*out = '\0';
}

/*
 * ref resolved against the absolute URI base (RFC 3986 5.2.2), without
 * its fragment: a new string.  *frag, when frag is not NULL, is set to a
 * new copy of the fragment, or NULL if ref has none.
 */
static char *uri_resolve(const char *base, const char *ref, char **frag)
{
	struct uri b, r;
	const char *scheme, *auth = NULL, *query = NULL;
	size_t scheme_n, auth_n = 0, query_n = 0;
	bool has_auth, has_query;
	char *path, *out;

	uri_parse(base, &b);
	uri_parse(ref, &r);
	size_t cap = strlen(base) + strlen(ref) + 8;
	path = evs__malloc(cap);
	out = evs__malloc(cap + 8);
	if (!path || !out) {
		evs__free(path);
		evs__free(out);
		return NULL;
	}
	if (r.has_scheme) {
		scheme = r.scheme, scheme_n = r.scheme_n;
		has_auth = r.has_auth, auth = r.auth, auth_n = r.auth_n;
		memcpy(path, r.path, r.path_n), path[r.path_n] = '\0';
		has_query = r.has_query, query = r.query, query_n = r.query_n;
	} else {
		scheme = b.scheme, scheme_n = b.scheme_n;
		if (r.has_auth) {
			has_auth = true, auth = r.auth, auth_n = r.auth_n;
			memcpy(path, r.path, r.path_n), path[r.path_n] = '\0';
			has_query = r.has_query, query = r.query, query_n = r.query_n;
		} else {
			has_auth = b.has_auth, auth = b.auth, auth_n = b.auth_n;
			if (r.path_n == 0) {
				memcpy(path, b.path, b.path_n), path[b.path_n] = '\0';
				if (r.has_query)
					has_query = true, query = r.query, query_n = r.query_n;
				else
					has_query = b.has_query, query = b.query, query_n = b.query_n;
			} else {
				if (r.path[0] == '/') {
					memcpy(path, r.path, r.path_n), path[r.path_n] = '\0';
				} else {
					size_t keep = 0;
					if (b.has_auth && b.path_n == 0) {
						path[0] = '/';
						keep = 1;
					} else {
						for (size_t i = b.path_n; i > 0; i--)
							if (b.path[i - 1] == '/') {
								keep = i;
								break;
							}
						memcpy(path, b.path, keep);
					}
					memcpy(path + keep, r.path, r.path_n);
					path[keep + r.path_n] = '\0';
				}
				has_query = r.has_query, query = r.query, query_n = r.query_n;
			}
		}
	}
	remove_dot_segments(path);
	snprintf(out, cap + 8, "%.*s:%s%.*s%s%s%.*s", (int)scheme_n, scheme,
		 has_auth ? "//" : "", (int)auth_n, has_auth ? auth : "", path,
		 has_query ? "?" : "", (int)query_n, has_query ? query : "");
	evs__free(path);
	if (frag) {
		*frag = NULL;
		if (r.has_frag) {
			*frag = evs__malloc(r.frag_n + 1);
			if (!*frag) {
				evs__free(out);
				return NULL;
			}
			memcpy(*frag, r.frag, r.frag_n + 1);
		}
	}
	return out;
}

/* Percent-decoding in place; false on a malformed escape. */
static bool percent_decode(char *s)
{
	char *w = s;

	for (const char *r = s; *r; r++) {
		if (*r == '%') {
			if (!is_hex(r[1]) || !is_hex(r[2]))
				return false;
			int hi = is_digit(r[1]) ? r[1] - '0' : (r[1] | 0x20) - 'a' + 10;
			int lo = is_digit(r[2]) ? r[2] - '0' : (r[2] | 0x20) - 'a' + 10;
			*w++ = (char)(hi * 16 + lo);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return true;
}

/* ---- compile context ---- */

/* What the index pass learnt about one schema value. */
struct loc {
	const json_t *j;
	char *base;
	char *path;
	node *n;
};

/* An $id ("uri") or an $anchor ("uri#name") and the schema it names. */
struct ident {
	char *uri;
	const json_t *j;
};

struct cctx {
	evs__schema *s;
	const char *name;
	unsigned flags;
	struct loc *locs;
	size_t loc_cap, loc_count;
	struct ident *ids;
	size_t nids, ids_cap;
	size_t nodes_cap;
	pcre2_compile_context *ccx;
};

static int cerr(struct cctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int cerr(struct cctx *c, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return evs__err(EVS_EINVAL, "%s: %s", c->name, msg);
}

static int oom(void)
{
	return evs__err(EVS_ENOMEM, "out of memory");
}

/* A schema location for messages: the root is "/". */
static const char *show(const char *path)
{
	return *path ? path : "/";
}

static size_t ptr_slot(const struct cctx *c, const json_t *j)
{
	uint64_t x = (uint64_t)(uintptr_t)j * 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 32) & (c->loc_cap - 1);
}

static struct loc *loc_find(struct cctx *c, const json_t *j)
{
	if (c->loc_cap == 0)
		return NULL;
	for (size_t i = ptr_slot(c, j);; i = (i + 1) & (c->loc_cap - 1)) {
		if (c->locs[i].j == j)
			return &c->locs[i];
		if (c->locs[i].j == NULL)
			return NULL;
	}
}

/* Takes ownership of path (also on failure).  The returned pointer is
 * valid until the next loc_add. */
static struct loc *loc_add(struct cctx *c, const json_t *j, const char *base, char *path)
{
	if ((c->loc_count + 1) * 2 > c->loc_cap) {
		size_t ncap = c->loc_cap ? c->loc_cap * 2 : 64;
		struct loc *old = c->locs;
		size_t ocap = c->loc_cap;
		c->locs = evs__calloc(ncap, sizeof(*c->locs));
		if (!c->locs) {
			c->locs = old;
			evs__free(path);
			return NULL;
		}
		c->loc_cap = ncap;
		for (size_t i = 0; i < ocap; i++) {
			if (!old[i].j)
				continue;
			size_t k = ptr_slot(c, old[i].j);
			while (c->locs[k].j)
				k = (k + 1) & (ncap - 1);
			c->locs[k] = old[i];
		}
		evs__free(old);
	}
	size_t k = ptr_slot(c, j);
	while (c->locs[k].j)
		k = (k + 1) & (c->loc_cap - 1);
	char *b = evs__strdup(base);
	if (!b) {
		evs__free(path);
		return NULL;
	}
	c->locs[k].j = j;
	c->locs[k].base = b;
	c->locs[k].path = path;
	c->locs[k].n = NULL;
	c->loc_count++;
	return &c->locs[k];
}

/* path + "/" + seg (escaped per RFC 6901): a new string, or NULL. */
static char *path_join(const char *path, const char *seg)
{
	size_t n = strlen(path), extra = 0;

	for (const char *p = seg; *p; p++)
		extra += (*p == '~' || *p == '/');
	char *out = evs__malloc(n + strlen(seg) + extra + 2);
	if (!out)
		return NULL;
	memcpy(out, path, n);
	char *w = out + n;
	*w++ = '/';
	for (const char *p = seg; *p; p++) {
		if (*p == '~' || *p == '/') {
			*w++ = '~';
			*w++ = *p == '~' ? '0' : '1';
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return out;
}

static char *path_join_index(const char *path, size_t i)
{
	char seg[24];

	snprintf(seg, sizeof(seg), "%zu", i);
	return path_join(path, seg);
}

static const json_t *ident_find(struct cctx *c, const char *uri)
{
	for (size_t i = 0; i < c->nids; i++)
		if (strcmp(c->ids[i].uri, uri) == 0)
			return c->ids[i].j;
	return NULL;
}

/* Takes ownership of uri. */
static int ident_add(struct cctx *c, char *uri, const json_t *j, const char *what,
		     const char *path)
{
	const json_t *old = ident_find(c, uri);

	if (old) {
		int same = old == j;
		if (!same)
			cerr(c, "duplicate %s '%s' at %s", what, uri, show(path));
		evs__free(uri);
		return same ? 0 : EVS_EINVAL;
	}
	if (c->nids == c->ids_cap) {
		size_t ncap = c->ids_cap ? c->ids_cap * 2 : 8;
		struct ident *n = evs__realloc(c->ids, ncap * sizeof(*n));
		if (!n) {
			evs__free(uri);
			return oom();
		}
		c->ids = n;
		c->ids_cap = ncap;
	}
	c->ids[c->nids].uri = uri;
	c->ids[c->nids].j = j;
	c->nids++;
	return 0;
}

static bool valid_anchor(const char *a)
{
	if (!is_alpha(*a) && *a != '_')
		return false;
	for (a++; *a; a++)
		if (!is_alpha(*a) && !is_digit(*a) && !strchr("-_.", *a))
			return false;
	return true;
}

/*
 * The index pass: records j's base URI and pointer, registers its $id and
 * $anchor, and recurses into its subschemas.  Takes ownership of path.
 * Values of the wrong kind are left for compile() to report.
 */
static int index_schema(struct cctx *c, const json_t *j, const char *base, char *path)
{
	char *newbase = NULL;
	const json_t *id, *anchor;
	const char *key;
	json_t *val;
	int rc = 0;

	if (!path)
		return oom();
	if (loc_find(c, j)) {
		evs__free(path);
		return 0;
	}
	if (!json_is_object(j))
		return loc_add(c, j, base, path) ? 0 : oom();
	id = json_object_get(j, "$id");
	if (json_is_string(id)) {
		char *frag;
		newbase = uri_resolve(base, json_string_value(id), &frag);
		if (!newbase) {
			evs__free(path);
			return oom();
		}
		if (frag && *frag) {
			rc = cerr(c, "invalid '$id' at %s: '%s' has a fragment; use $anchor",
				  show(path), json_string_value(id));
			evs__free(frag);
			goto out;
		}
		evs__free(frag);
		char *copy = evs__strdup(newbase);
		if (!copy) {
			rc = oom();
			goto out;
		}
		if ((rc = ident_add(c, copy, j, "$id", path)) != 0)
			goto out;
		base = newbase;
	}
	anchor = json_object_get(j, "$anchor");
	if (json_is_string(anchor)) {
		const char *a = json_string_value(anchor);
		if (!valid_anchor(a)) {
			rc = cerr(c, "invalid '$anchor' at %s: '%s' is not a plain name",
				  show(path), a);
			goto out;
		}
		char *uri = evs__malloc(strlen(base) + strlen(a) + 2);
		if (!uri) {
			rc = oom();
			goto out;
		}
		sprintf(uri, "%s#%s", base, a);
		if ((rc = ident_add(c, uri, j, "$anchor", path)) != 0)
			goto out;
	}
	if (!loc_add(c, j, base, path)) {
		path = NULL;
		rc = oom();
		goto out;
	}
	/* path is owned by the table now; the table may move, the string not */
	json_object_foreach((json_t *)j, key, val) {
		const struct keyword *k = kw_lookup(key);
		char *kp;
		/* Refused here rather than in compile(), so that the message
		 * names the keyword and not a $ref it left dangling (an
		 * "$anchor" written as "$dynamicAnchor"). */
		if (k->kw == KW_UNSUPPORTED) {
			rc = cerr(c, "unsupported keyword '%s' at %s", key, show(path));
			break;
		}
		if (k->shape == SHAPE_NONE)
			continue;
		kp = path_join(path, key);
		if (!kp)
			rc = oom();
		else if (k->shape == SHAPE_ONE) {
			rc = index_schema(c, val, base, kp);
			kp = NULL;
		} else if (k->shape == SHAPE_MAP && json_is_object(val)) {
			const char *k2;
			json_t *v2;
			json_object_foreach(val, k2, v2)
				if ((rc = index_schema(c, v2, base, path_join(kp, k2))) != 0)
					break;
		} else if (k->shape == SHAPE_ARRAY && json_is_array(val)) {
			for (size_t i = 0; i < json_array_size(val) && rc == 0; i++)
				rc = index_schema(c, json_array_get(val, i), base,
						  path_join_index(kp, i));
		}
		evs__free(kp);
		if (rc)
			break;
	}
	path = NULL;
out:
	evs__free(path);
	evs__free(newbase);
	return rc;
}

/* ---- compile ---- */

static int compile(struct cctx *c, const json_t *j, node **out);

/* The entry for key in n's (sorted) properties, or NULL. */
static struct named *find_named(const node *n, const char *key)
{
	size_t lo = 0, hi = n->nprops;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(key, n->props[mid].key);
		if (cmp == 0)
			return &n->props[mid];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool is_schema_value(const json_t *v)
{
	return json_is_object(v) || json_is_boolean(v);
}

/* A subschema under keyword kw of the schema at path. */
static int compile_sub(struct cctx *c, const char *path, const char *kw,
		       const json_t *v, node **out)
{
	if (!is_schema_value(v))
		return cerr(c, "invalid '%s' at %s: must be a schema (an object or a boolean)",
			    kw, show(path));
	return compile(c, v, out);
}

static int compile_array(struct cctx *c, const char *path, const char *kw,
			 const json_t *v, node ***out, size_t *count)
{
	size_t n = json_array_size(v);

	if (!json_is_array(v) || n == 0)
		return cerr(c, "invalid '%s' at %s: must be a non-empty array of schemas",
			    kw, show(path));
	*out = evs__calloc(n, sizeof(node *));
	if (!*out)
		return oom();
	*count = n;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(v, i);
		if (!is_schema_value(e))
			return cerr(c, "invalid '%s' at %s: item %zu must be a schema "
				    "(an object or a boolean)", kw, show(path), i);
		int rc = compile(c, e, &(*out)[i]);
		if (rc)
			return rc;
	}
	return 0;
}

static int get_size(struct cctx *c, const char *path, const char *kw,
		    const json_t *v, size_t *out)
{
	if (!is_integral(v) || json_number_value(v) < 0)
		return cerr(c, "invalid '%s' at %s: must be a non-negative integer",
			    kw, show(path));
	double d = json_number_value(v);
	if (json_is_integer(v))
		*out = (size_t)json_integer_value(v);
	else
		*out = d >= 18446744073709551615.0 ? SIZE_MAX : (size_t)d;
	return 0;
}

static int get_number(struct cctx *c, const char *path, const char *kw,
		      const json_t *v, const json_t **out)
{
	if (!json_is_number(v))
		return cerr(c, "invalid '%s' at %s: must be a number", kw, show(path));
	*out = v;
	return 0;
}

static int compile_regex(struct cctx *c, const char *path, const char *kw,
			 const json_t *v, pcre2_code **out)
{
	struct rbuf b = { NULL, NULL, 0, 0, false };
	int err;
	PCRE2_SIZE off;

	if (!json_is_string(v))
		return cerr(c, "invalid '%s' at %s: must be a string", kw, show(path));
	ecma_to_pcre2(&b, json_string_value(v), json_string_length(v));
	rb_put(&b, "", 0, json_string_length(v));	/* an empty pattern */
	if (b.oom) {
		evs__free(b.s);
		evs__free(b.from);
		return oom();
	}
	*out = pcre2_compile((PCRE2_SPTR)b.s, b.len,
			     PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_ALLOW_EMPTY_CLASS |
			     PCRE2_ALT_BSUX | PCRE2_MATCH_UNSET_BACKREF |
			     PCRE2_NEVER_BACKSLASH_C, &err, &off, c->ccx);
	if (!*out) {
		PCRE2_UCHAR msg[256];
		size_t at = off <= b.len ? b.from[off] : 0;
		pcre2_get_error_message(err, msg, sizeof(msg));
		evs__free(b.s);
		evs__free(b.from);
		if (err == PCRE2_ERROR_NOMEMORY)
			return oom();
		return cerr(c, "invalid '%s' at %s: regex '%.200s': %s at offset %zu",
			    kw, show(path), json_string_value(v), (const char *)msg, at);
	}
	evs__free(b.s);
	evs__free(b.from);
	/* No JIT: it would save some 60 ns a match on event-sized strings,
	 * but its vector scans read past the end of the subject and memcheck
	 * reports every match, which would fail the valgrind test setup. */
	return 0;
}

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->key, ((const struct named *)b)->key);
}

static int compile_map(struct cctx *c, const char *path, const char *kw,
		       const json_t *v, struct named **out, size_t *count)
{
	const char *key;
	json_t *val;
	size_t i = 0;

	if (!json_is_object(v))
		return cerr(c, "invalid '%s' at %s: must be an object of schemas", kw, show(path));
	*out = evs__calloc(json_object_size(v), sizeof(struct named));
	if (!*out)
		return oom();
	json_object_foreach((json_t *)v, key, val) {
		if (!is_schema_value(val))
			return cerr(c, "invalid '%s' at %s: '%s' must be a schema "
				    "(an object or a boolean)", kw, show(path), key);
		(*out)[i].key = key;
		int rc = compile(c, val, &(*out)[i].n);
		if (rc)
			return rc;
		*count = ++i;
	}
	qsort(*out, *count, sizeof(struct named), cmp_named);
	return 0;
}

static int check_string_array(struct cctx *c, const char *path, const char *kw,
			      const json_t *v)
{
	if (!json_is_array(v))
		return cerr(c, "invalid '%s' at %s: must be an array of strings", kw, show(path));
	for (size_t i = 0; i < json_array_size(v); i++)
		if (!json_is_string(json_array_get(v, i)))
			return cerr(c, "invalid '%s' at %s: item %zu must be a string",
				    kw, show(path), i);
	return 0;
}

/* Follows a JSON pointer (already percent-decoded) from a resource root,
 * tracking the base URI ($id) and the location on the way. */
static int walk_pointer(struct cctx *c, const char *ref, const char *from_path,
			const json_t *root, const char *ptr, const json_t **out)
{
	const struct loc *rl = loc_find(c, root);
	char *base = evs__strdup(rl->base);
	char *path = evs__strdup(rl->path);
	const json_t *j = root;
	const char *p = ptr;
	int rc = 0;

	if (!base || !path) {
		rc = oom();
		goto out;
	}
	while (*p) {
		/* p is at a '/' */
		const char *end = strchr(p + 1, '/');
		size_t n = end ? (size_t)(end - p - 1) : strlen(p + 1);
		char *tok = evs__malloc(n + 1), *w = tok;
		if (!tok) {
			rc = oom();
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			char ch = p[1 + i];
			if (ch == '~') {
				char e = i + 1 < n ? p[2 + i] : '\0';
				if (e != '0' && e != '1') {
					evs__free(tok);
					rc = cerr(c, "invalid $ref '%s' at %s: bad '~' escape in "
						  "the JSON pointer", ref, show(from_path));
					goto out;
				}
				*w++ = e == '0' ? '~' : '/';
				i++;
			} else {
				*w++ = ch;
			}
		}
		*w = '\0';
		const json_t *next = NULL;
		if (json_is_object(j)) {
			next = json_object_get(j, tok);
		} else if (json_is_array(j)) {
			char *e;
			unsigned long long idx = strtoull(tok, &e, 10);
			if (*tok && is_digit(*tok) && !*e && (tok[0] != '0' || !tok[1]))
				next = json_array_get(j, (size_t)idx);
		}
		char *np = next ? path_join(path, tok) : NULL;
		evs__free(tok);
		if (!next) {
			rc = cerr(c, "unresolvable $ref '%s' at %s: nothing at that pointer",
				  ref, show(from_path));
			goto out;
		}
		if (!np) {
			rc = oom();
			goto out;
		}
		evs__free(path);
		path = np;
		j = next;
		if (json_is_object(j) && json_is_string(json_object_get(j, "$id"))) {
			char *nb = uri_resolve(base, json_string_value(json_object_get(j, "$id")), NULL);
			if (!nb) {
				rc = oom();
				goto out;
			}
			evs__free(base);
			base = nb;
		}
		p += 1 + n;
	}
	if (!loc_find(c, j)) {
		/* somewhere the index pass did not go (inside an unknown
		 * keyword): index it now, from where the pointer says it is */
		rc = index_schema(c, j, base, path);
		path = NULL;
		if (rc)
			goto out;
	}
	*out = j;
out:
	evs__free(base);
	evs__free(path);
	return rc;
}

static int resolve_ref(struct cctx *c, const char *base, const char *path,
		       const char *ref, const json_t **out)
{
	char *frag = NULL;
	char *abs = uri_resolve(base, ref, &frag);
	const json_t *doc;
	int rc = 0;

	if (!abs)
		return oom();
	doc = ident_find(c, abs);
	if (!doc) {
		rc = cerr(c, "$ref '%s' at %s refers to another document, which is not "
			  "supported: references must stay within the schema", ref, show(path));
		goto out;
	}
	if (!frag || !*frag) {
		*out = doc;
		goto out;
	}
	if (!percent_decode(frag)) {
		rc = cerr(c, "invalid $ref '%s' at %s: bad percent-encoding", ref, show(path));
		goto out;
	}
	if (frag[0] == '/') {
		rc = walk_pointer(c, ref, path, doc, frag, out);
		goto out;
	}
	char *uri = evs__malloc(strlen(abs) + strlen(frag) + 2);
	if (!uri) {
		rc = oom();
		goto out;
	}
	sprintf(uri, "%s#%s", abs, frag);
	*out = ident_find(c, uri);
	evs__free(uri);
	if (!*out)
		rc = cerr(c, "unresolvable $ref '%s' at %s: no $anchor '%s'", ref, show(path), frag);
out:
	evs__free(abs);
	evs__free(frag);
	return rc;
}

static int compile_type(struct cctx *c, node *n, const char *path, const json_t *v)
{
	size_t count = json_is_array(v) ? json_array_size(v) : 1;

	if (!json_is_string(v) && !json_is_array(v))
		return cerr(c, "invalid 'type' at %s: must be a string or an array of strings",
			    show(path));
	for (size_t i = 0; i < count; i++) {
		const json_t *t = json_is_array(v) ? json_array_get(v, i) : v;
		const char *name = json_string_value(t);
		size_t k;
		if (!name)
			return cerr(c, "invalid 'type' at %s: item %zu must be a string",
				    show(path), i);
		for (k = 0; k < 7; k++)
			if (strcmp(name, type_names[k]) == 0)
				break;
		if (k == 7)
			return cerr(c, "invalid 'type' at %s: unknown type '%s'", show(path), name);
		n->types |= 1u << k;
	}
	if (count == 0)
		return cerr(c, "invalid 'type' at %s: the array is empty", show(path));
	return 0;
}

static bool is_draft_2020_12(const char *uri)
{
	return strcmp(uri, "https://json-schema.org/draft/2020-12/schema") == 0 ||
	       strcmp(uri, "https://json-schema.org/draft/2020-12/schema#") == 0;
}

/* One keyword of the schema object n at path. */
static int compile_keyword(struct cctx *c, node *n, const char *path, const char *base,
			   const char *key, const json_t *v)
{
	const struct keyword *k = kw_lookup(key);

	switch (k->kw) {
	case KW_UNKNOWN:
	case KW_ANNOTATION:
		return 0;
	case KW_UNSUPPORTED:
		return cerr(c, "unsupported keyword '%s' at %s", key, show(path));
	case KW_SCHEMA:
		if (!json_is_string(v))
			return cerr(c, "invalid '$schema' at %s: must be a string", show(path));
		if (!is_draft_2020_12(json_string_value(v)))
			return cerr(c, "unsupported $schema '%s' at %s: only "
				    "https://json-schema.org/draft/2020-12/schema is supported "
				    "(another dialect or metaschema is another document)",
				    json_string_value(v), show(path));
		return 0;
	case KW_ID:
	case KW_ANCHOR:
		if (!json_is_string(v))
			return cerr(c, "invalid '%s' at %s: must be a string", key, show(path));
		return 0;
	case KW_DEFS:
	case KW_LEGACY_DEFS: {
		const char *k2;
		json_t *v2;
		if (!json_is_object(v)) {
			if (k->kw == KW_LEGACY_DEFS)
				return 0;	/* not ours: an unknown keyword */
			return cerr(c, "invalid '$defs' at %s: must be an object of schemas",
				    show(path));
		}
		json_object_foreach((json_t *)v, k2, v2) {
			node *unused;
			if (!is_schema_value(v2))
				return cerr(c, "invalid '%s' at %s: '%s' must be a schema "
					    "(an object or a boolean)", key, show(path), k2);
			int rc = compile(c, v2, &unused);
			if (rc)
				return rc;
		}
		return 0;
	}
	case KW_REF: {
		const json_t *target = NULL;
		if (!json_is_string(v))
			return cerr(c, "invalid '$ref' at %s: must be a string", show(path));
		int rc = resolve_ref(c, base, path, json_string_value(v), &target);
		if (rc)
			return rc;
		if (!is_schema_value(target))
			return cerr(c, "invalid $ref '%s' at %s: the target is not a schema",
				    json_string_value(v), show(path));
		return compile(c, target, &n->ref);
	}
	case KW_TYPE:
		return compile_type(c, n, path, v);
	case KW_ENUM:
		if (!json_is_array(v))
			return cerr(c, "invalid 'enum' at %s: must be an array", show(path));
		n->enum_vals = v;
		return 0;
	case KW_CONST:
		n->const_val = v;
		return 0;
	case KW_MULTIPLE_OF:
		if (!json_is_number(v) || json_number_value(v) <= 0)
			return cerr(c, "invalid 'multipleOf' at %s: must be a number greater than 0",
				    show(path));
		n->multiple_of = v;
		dec_of(v, &n->multiple_dec);
		return 0;
	case KW_MAXIMUM:
		return get_number(c, path, key, v, &n->maximum);
	case KW_EXCL_MAXIMUM:
		return get_number(c, path, key, v, &n->excl_max);
	case KW_MINIMUM:
		return get_number(c, path, key, v, &n->minimum);
	case KW_EXCL_MINIMUM:
		return get_number(c, path, key, v, &n->excl_min);
	case KW_MAX_LENGTH:
		return get_size(c, path, key, v, &n->max_len);
	case KW_MIN_LENGTH:
		return get_size(c, path, key, v, &n->min_len);
	case KW_PATTERN:
		n->pattern_src = json_string_value(v);
		return compile_regex(c, path, key, v, &n->pattern);
	case KW_FORMAT: {
		if (!json_is_string(v))
			return cerr(c, "invalid 'format' at %s: must be a string", show(path));
		if (!(c->flags & EVS__SCHEMA_FORMAT_ASSERT))
			return 0;
		const char *f = json_string_value(v);
		for (int i = 1; i < 4; i++)
			if (strcmp(f, format_names[i]) == 0)
				n->format = (unsigned char)i;
		if (!n->format)
			return cerr(c, "unsupported format '%s' at %s: only date-time, uuid and "
				    "email can be asserted", f, show(path));
		return 0;
	}
	case KW_MAX_ITEMS:
		return get_size(c, path, key, v, &n->max_items);
	case KW_MIN_ITEMS:
		return get_size(c, path, key, v, &n->min_items);
	case KW_UNIQUE_ITEMS:
		if (!json_is_boolean(v))
			return cerr(c, "invalid 'uniqueItems' at %s: must be a boolean", show(path));
		n->unique = json_is_true(v);
		return 0;
	case KW_MAX_CONTAINS:
		return get_size(c, path, key, v, &n->max_contains);
	case KW_MIN_CONTAINS:
		return get_size(c, path, key, v, &n->min_contains);
	case KW_PREFIX_ITEMS:
		return compile_array(c, path, key, v, &n->prefix, &n->nprefix);
	case KW_ITEMS:
		return compile_sub(c, path, key, v, &n->items);
	case KW_CONTAINS:
		return compile_sub(c, path, key, v, &n->contains);
	case KW_MAX_PROPERTIES:
		return get_size(c, path, key, v, &n->max_props);
	case KW_MIN_PROPERTIES:
		return get_size(c, path, key, v, &n->min_props);
	case KW_REQUIRED: {
		int rc = check_string_array(c, path, key, v);
		if (rc == 0 && json_array_size(v))
			n->required = v;
		return rc;
	}
	case KW_DEP_REQUIRED: {
		const char *k2;
		json_t *v2;
		size_t i = 0;
		if (!json_is_object(v))
			return cerr(c, "invalid 'dependentRequired' at %s: must be an object of "
				    "arrays of strings", show(path));
		n->depreq = evs__calloc(json_object_size(v), sizeof(*n->depreq));
		if (!n->depreq)
			return oom();
		json_object_foreach((json_t *)v, k2, v2) {
			int rc = check_string_array(c, path, key, v2);
			if (rc)
				return rc;
			n->depreq[i].key = k2;
			n->depreq[i].names = v2;
			n->ndepreq = ++i;
		}
		return 0;
	}
	case KW_PROPERTIES:
		return compile_map(c, path, key, v, &n->props, &n->nprops);
	case KW_PATTERN_PROPERTIES: {
		const char *k2;
		json_t *v2;
		size_t i = 0;
		if (!json_is_object(v))
			return cerr(c, "invalid 'patternProperties' at %s: must be an object of "
				    "schemas", show(path));
		n->pats = evs__calloc(json_object_size(v), sizeof(*n->pats));
		if (!n->pats)
			return oom();
		json_object_foreach((json_t *)v, k2, v2) {
			int rc;
			json_t *src = json_stringn(k2, strlen(k2));
			if (!src)
				return oom();
			rc = compile_regex(c, path, key, src, &n->pats[i].re);
			json_decref(src);
			if (rc)
				return rc;
			n->pats[i].src = k2;
			n->npats = ++i;
			if (!is_schema_value(v2))
				return cerr(c, "invalid 'patternProperties' at %s: '%s' must be a "
					    "schema (an object or a boolean)", show(path), k2);
			if ((rc = compile(c, v2, &n->pats[i - 1].n)) != 0)
				return rc;
		}
		return 0;
	}
	case KW_ADDITIONAL_PROPERTIES:
		return compile_sub(c, path, key, v, &n->additional);
	case KW_PROPERTY_NAMES:
		return compile_sub(c, path, key, v, &n->prop_names);
	case KW_DEP_SCHEMAS:
		return compile_map(c, path, key, v, &n->depsch, &n->ndepsch);
	case KW_ALL_OF:
		return compile_array(c, path, key, v, &n->all, &n->nall);
	case KW_ANY_OF:
		return compile_array(c, path, key, v, &n->any, &n->nany);
	case KW_ONE_OF:
		return compile_array(c, path, key, v, &n->one, &n->none);
	case KW_NOT:
		return compile_sub(c, path, key, v, &n->not_);
	case KW_IF:
		return compile_sub(c, path, key, v, &n->if_);
	case KW_THEN:
		return compile_sub(c, path, key, v, &n->then_);
	case KW_ELSE:
		return compile_sub(c, path, key, v, &n->else_);
	}
	return 0;
}

static struct named *find_named(const node *n, const char *key);

/* Sorts n's 'required' names into those 'properties' has and the rest
 * (see struct node). */
static int split_required(node *n)
{
	size_t count = json_array_size(n->required);

	if (!count)
		return 0;
	n->req_other = evs__calloc(count, sizeof(char *));
	if (!n->req_other)
		return oom();
	for (size_t i = 0; i < count; i++) {
		const char *name = json_string_value(json_array_get(n->required, i));
		struct named *p = find_named(n, name);
		if (!p)
			n->req_other[n->nreq_other++] = name;
		else if (!p->required)
			p->required = true, n->nreq_props++;
	}
	return 0;
}

static int compile(struct cctx *c, const json_t *j, node **out)
{
	struct loc *l = loc_find(c, j);
	const char *key;
	json_t *val;
	node *n;

	/* Every schema value was indexed: by the index pass, or by
	 * walk_pointer() for a $ref target the pass did not reach. */
	if (!l)
		return cerr(c, "internal error: a subschema was not indexed");
	if (l->n) {
		*out = l->n;
		return 0;
	}
	if (c->s->nnodes == c->nodes_cap) {
		size_t ncap = c->nodes_cap ? c->nodes_cap * 2 : 16;
		node **nn = evs__realloc(c->s->nodes, ncap * sizeof(node *));
		if (!nn)
			return oom();
		c->s->nodes = nn;
		c->nodes_cap = ncap;
	}
	n = evs__calloc(1, sizeof(*n));
	if (!n)
		return oom();
	c->s->nodes[c->s->nnodes++] = n;
	n->path = l->path;
	n->max_len = n->max_items = n->max_props = n->max_contains = SIZE_MAX;
	n->min_contains = 1;
	l->n = n;
	*out = n;
	if (json_is_boolean(j)) {
		n->boolean = json_is_true(j);
		return 0;
	}
	n->boolean = -1;
	if (!json_is_object(j))
		return cerr(c, "the schema at %s must be an object or a boolean", show(l->path));
	/* l may move as refs index more of the document; the strings stay */
	const char *path = l->path, *base = l->base;
	json_object_foreach((json_t *)j, key, val) {
		int rc = compile_keyword(c, n, path, base, key, val);
		if (rc)
			return rc;
	}
	return split_required(n);
}

/*
 * A schema that reaches itself through keywords that apply to the same
 * value ($ref, allOf, anyOf, oneOf, not, if/then/else, dependentSchemas)
 * would recurse for ever on some value; keywords that apply to a part of
 * the value (properties, items, ...) end when the value does.
 */
static int check_cycles(struct cctx *c, node *n)
{
	node *one[5];
	int rc;

	if (n->mark == 2)
		return 0;
	if (n->mark == 1)
		return cerr(c, "$ref cycle at %s: the schema refers back to itself without "
			    "descending into the value", show(n->path));
	n->mark = 1;
	one[0] = n->ref;
	one[1] = n->not_;
	one[2] = n->if_;
	one[3] = n->then_;
	one[4] = n->else_;
	for (int i = 0; i < 5; i++)
		if (one[i] && (rc = check_cycles(c, one[i])) != 0)
			return rc;
	for (size_t i = 0; i < n->nall; i++)
		if ((rc = check_cycles(c, n->all[i])) != 0)
			return rc;
	for (size_t i = 0; i < n->nany; i++)
		if ((rc = check_cycles(c, n->any[i])) != 0)
			return rc;
	for (size_t i = 0; i < n->none; i++)
		if ((rc = check_cycles(c, n->one[i])) != 0)
			return rc;
	for (size_t i = 0; i < n->ndepsch; i++)
		if ((rc = check_cycles(c, n->depsch[i].n)) != 0)
			return rc;
	n->mark = 2;
	return 0;
}

static void *pcre2_alloc(PCRE2_SIZE n, void *ctx)
{
	(void)ctx;
	return evs__malloc(n);
}

static void pcre2_dealloc(void *p, void *ctx)
{
	(void)ctx;
	evs__free(p);
}

static void node_free(node *n)
{
	if (n->pattern)
		pcre2_code_free(n->pattern);
	for (size_t i = 0; i < n->npats; i++)
		if (n->pats[i].re)
			pcre2_code_free(n->pats[i].re);
	evs__free(n->pats);
	evs__free(n->props);
	evs__free(n->req_other);
	evs__free(n->depreq);
	evs__free(n->depsch);
	evs__free(n->prefix);
	evs__free(n->all);
	evs__free(n->any);
	evs__free(n->one);
	evs__free(n);
}

void evs__schema_free(evs__schema *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nnodes; i++)
		node_free(s->nodes[i]);
	evs__free(s->nodes);
	if (s->mctx)
		pcre2_match_context_free(s->mctx);
	if (s->gctx)
		pcre2_general_context_free(s->gctx);
	json_decref(s->doc);
	evs__free(s);
}

int evs__schema_compile(evs__schema **out, const json_t *doc, const char *name,
			unsigned flags)
{
	struct cctx c;
	evs__schema *s;
	int rc;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	c.name = name ? name : "schema";
	c.flags = flags;
	if (!doc || !is_schema_value(doc))
		return cerr(&c, "the schema at / must be an object or a boolean");
	s = evs__calloc(1, sizeof(*s));
	if (!s)
		return oom();
	c.s = s;
	s->doc = json_deep_copy(doc);
	s->gctx = pcre2_general_context_create(pcre2_alloc, pcre2_dealloc, NULL);
	s->mctx = s->gctx ? pcre2_match_context_create(s->gctx) : NULL;
	c.ccx = s->gctx ? pcre2_compile_context_create(s->gctx) : NULL;
	if (!s->doc || !s->mctx || !c.ccx) {
		rc = oom();
		goto out;
	}
	pcre2_set_match_limit(s->mctx, REGEX_MATCH_LIMIT);
	pcre2_set_compile_extra_options(c.ccx, PCRE2_EXTRA_ALT_BSUX);

	char *root_path = evs__strdup("");
	char *root_id = evs__strdup(default_base);
	if (!root_id) {
		evs__free(root_path);
		rc = oom();
		goto out;
	}
	/* The document is a resource under the default base even when it has
	 * an $id, so that "#/..." resolves in a document without one. */
	if ((rc = ident_add(&c, root_id, s->doc, "$id", "")) != 0) {
		evs__free(root_path);
		goto out;
	}
	if ((rc = index_schema(&c, s->doc, default_base, root_path)) != 0)
		goto out;
	if ((rc = compile(&c, s->doc, &s->root)) != 0)
		goto out;
	for (size_t i = 0; i < s->nnodes; i++)
		if ((rc = check_cycles(&c, s->nodes[i])) != 0)
			goto out;
out:
	for (size_t i = 0; i < s->nnodes; i++)
		s->nodes[i]->path = NULL;	/* owned by the loc table */
	for (size_t i = 0; i < c.loc_cap; i++) {
		evs__free(c.locs[i].base);
		evs__free(c.locs[i].path);
	}
	evs__free(c.locs);
	for (size_t i = 0; i < c.nids; i++)
		evs__free(c.ids[i].uri);
	evs__free(c.ids);
	if (c.ccx)
		pcre2_compile_context_free(c.ccx);
	if (rc) {
		evs__schema_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* ---- validation ---- */

/* The instance location, as a chain of frames on the C stack. */
struct ipath {
	const struct ipath *up;
	const char *key;	/* NULL: an array index */
	size_t index;
};

struct vctx {
	const evs__schema *s;
	pcre2_match_data *md;
	unsigned quiet;
	unsigned depth;
	int hard;
};

struct sbuf {
	char *s;
	size_t size, len;
};

static void sb_putc(struct sbuf *b, char ch)
{
	if (b->len + 1 < b->size)
		b->s[b->len++] = ch;
	b->s[b->len < b->size ? b->len : b->size - 1] = '\0';
}

static void put_pointer(struct sbuf *b, const struct ipath *p)
{
	char num[24];

	if (!p)
		return;
	put_pointer(b, p->up);
	sb_putc(b, '/');
	if (!p->key) {
		snprintf(num, sizeof(num), "%zu", p->index);
		for (const char *q = num; *q; q++)
			sb_putc(b, *q);
		return;
	}
	for (const char *q = p->key; *q; q++) {
		if (*q == '~' || *q == '/') {
			sb_putc(b, '~');
			sb_putc(b, *q == '~' ? '0' : '1');
		} else {
			sb_putc(b, *q);
		}
	}
}

static int fail(struct vctx *c, const struct ipath *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets the message "<pointer>: <detail>" and returns EVS_ESCHEMA. */
static int fail(struct vctx *c, const struct ipath *p, const char *fmt, ...)
{
	char ptr[384], msg[640];
	struct sbuf b = { ptr, sizeof(ptr), 0 };
	va_list ap;

	(void)c;
	ptr[0] = '\0';
	put_pointer(&b, p);
	if (b.len + 1 >= b.size)
		memcpy(ptr + sizeof(ptr) - 4, "...", 4);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return evs__err(EVS_ESCHEMA, "%s: %s", ptr[0] ? ptr : "/", msg);
}

/* A hard error: passes through every combinator. */
static int hard_fail(struct vctx *c, int err, const struct ipath *p, const char *what)
{
	if (err == EVS_ESCHEMA)
		fail(c, p, "%s", what);
	else
		evs__err(err, "%s", what);
	c->hard = err;
	return err;
}

/* A number as the shortest text that reads back as the same double. */
static void fmt_number(char *buf, size_t size, const json_t *v)
{
	if (json_is_integer(v)) {
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return;
	}
	double d = json_real_value(v);
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

struct cutbuf {
	char *s;
	size_t room, len;
	bool cut;
};

static int cut_append(const char *chunk, size_t n, void *data)
{
	struct cutbuf *b = data;
	size_t take = n < b->room - b->len ? n : b->room - b->len;

	memcpy(b->s + b->len, chunk, take);
	b->len += take;
	b->cut |= take < n;
	return 0;
}

/*
 * A value as compact JSON for a message, cut to fit (size >= 8) on a
 * character boundary and marked "...".  (json_dumpb leaves the buffer
 * undefined when the text does not fit, so it cannot be used to cut.)
 */
static void fmt_value(char *buf, size_t size, const json_t *v)
{
	struct cutbuf b = { buf, size - 4, 0, false };

	if (json_is_number(v)) {
		fmt_number(buf, size, v);
		return;
	}
	json_dump_callback(v, cut_append, &b,
			   JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
	if (b.cut) {
		size_t k = b.len;
		while (k > 0 && ((unsigned char)buf[k - 1] & 0xc0) == 0x80)
			k--;
		if (k > 0 && (unsigned char)buf[k - 1] >= 0xc0) {
			unsigned char lead = (unsigned char)buf[k - 1];
			size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (b.len - (k - 1) < need)
				b.len = k - 1;
		}
		memcpy(buf + b.len, "...", 3);
		b.len += 3;
	}
	buf[b.len] = '\0';
}

static const char *type_of(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

static bool type_ok(unsigned types, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return types & T_OBJECT;
	case JSON_ARRAY:
		return types & T_ARRAY;
	case JSON_STRING:
		return types & T_STRING;
	case JSON_INTEGER:
		return types & (T_NUMBER | T_INTEGER);
	case JSON_REAL:
		return (types & T_NUMBER) || ((types & T_INTEGER) && is_integral(v));
	case JSON_TRUE:
	case JSON_FALSE:
		return types & T_BOOLEAN;
	default:
		return types & T_NULL;
	}
}

static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static int md_key_ok;

static void md_destroy(void *md)
{
	pcre2_match_data_free(md);
}

static void md_init(void)
{
	md_key_ok = pthread_key_create(&md_key, md_destroy) == 0;
}

/*
 * The calling thread's match data.  One ovector pair serves every
 * pattern: only "matched or not" is wanted, and PCRE2 reports a match
 * whose groups do not fit as a match.  It is kept per thread because
 * PCRE2 writes into it (and caches its backtracking frames there).
 */
static pcre2_match_data *thread_md(const evs__schema *s)
{
	pcre2_match_data *md;

	pthread_once(&md_once, md_init);
	if (!md_key_ok)
		return NULL;
	md = pthread_getspecific(md_key);
	if (!md) {
		md = pcre2_match_data_create(1, s->gctx);
		if (md && pthread_setspecific(md_key, md) != 0) {
			pcre2_match_data_free(md);
			md = NULL;
		}
	}
	return md;
}

/* 1 if re matches somewhere in s[0..n), 0 if not, or a hard error. */
static int re_search(struct vctx *c, const pcre2_code *re, const char *s, size_t n,
		     const struct ipath *p, const char *kw)
{
	int rc;

	if (!c->md && !(c->md = thread_md(c->s)))
		return hard_fail(c, EVS_ENOMEM, p, "out of memory");
	rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, c->md, c->s->mctx);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT)
		return hard_fail(c, EVS_ENOMEM, p, "out of memory matching a pattern");
	char why[160], msg[256];
	pcre2_get_error_message(rc, (PCRE2_UCHAR *)why, sizeof(why));
	snprintf(msg, sizeof(msg), "%s: the regex gave up on this value: %s", kw, why);
	return hard_fail(c, EVS_ESCHEMA, p, msg);
}

static int vnode(struct vctx *c, const node *n, const json_t *v, const struct ipath *p);

/* Runs n on v with failures expected: 0, EVS_ESCHEMA, or (c->hard set) a
 * hard error. */
static int vquiet(struct vctx *c, const node *n, const json_t *v, const struct ipath *p)
{
	int rc;

	c->quiet++;
	rc = vnode(c, n, v, p);
	c->quiet--;
	return rc;
}

#define QUIET_FAIL(c)                          \
	do {                                   \
		if ((c)->quiet)                \
			return EVS_ESCHEMA;    \
	} while (0)

static int v_number(struct vctx *c, const node *n, const json_t *v, const struct ipath *p)
{
	char a[40], b[40];

	if (n->minimum && num_cmp(v, n->minimum) < 0) {
		QUIET_FAIL(c);
		fmt_number(a, sizeof(a), v), fmt_number(b, sizeof(b), n->minimum);
		return fail(c, p, "minimum: %s is less than %s", a, b);
	}
	if (n->excl_min && num_cmp(v, n->excl_min) <= 0) {
		QUIET_FAIL(c);
		fmt_number(a, sizeof(a), v), fmt_number(b, sizeof(b), n->excl_min);
		return fail(c, p, "exclusiveMinimum: %s is not greater than %s", a, b);
	}
	if (n->maximum && num_cmp(v, n->maximum) > 0) {
		QUIET_FAIL(c);
		fmt_number(a, sizeof(a), v), fmt_number(b, sizeof(b), n->maximum);
		return fail(c, p, "maximum: %s is greater than %s", a, b);
	}
	if (n->excl_max && num_cmp(v, n->excl_max) >= 0) {
		QUIET_FAIL(c);
		fmt_number(a, sizeof(a), v), fmt_number(b, sizeof(b), n->excl_max);
		return fail(c, p, "exclusiveMaximum: %s is not less than %s", a, b);
	}
	if (n->multiple_of) {
		bool ok;
		if (json_is_integer(v) && json_is_integer(n->multiple_of)) {
			json_int_t x = json_integer_value(v), m = json_integer_value(n->multiple_of);
			ok = x % m == 0;	/* m > 0: checked at compile */
		} else {
			struct dec d;
			dec_of(v, &d);
			ok = dec_multiple(&d, &n->multiple_dec);
		}
		if (!ok) {
			QUIET_FAIL(c);
			fmt_number(a, sizeof(a), v), fmt_number(b, sizeof(b), n->multiple_of);
			return fail(c, p, "multipleOf: %s is not a multiple of %s", a, b);
		}
	}
	return 0;
}

static int v_string(struct vctx *c, const node *n, const json_t *v, const struct ipath *p)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	char a[96];

	if (n->min_len || n->max_len != SIZE_MAX) {
		size_t chars = utf8_chars(s, len);
		if (chars < n->min_len) {
			QUIET_FAIL(c);
			return fail(c, p, "minLength: %zu characters, fewer than %zu",
				    chars, n->min_len);
		}
		if (chars > n->max_len) {
			QUIET_FAIL(c);
			return fail(c, p, "maxLength: %zu characters, more than %zu",
				    chars, n->max_len);
		}
	}
	if (n->pattern) {
		int rc = re_search(c, n->pattern, s, len, p, "pattern");
		if (rc < 0)
			return rc;
		if (rc == 0) {
			QUIET_FAIL(c);
			fmt_value(a, sizeof(a), v);
			return fail(c, p, "pattern: %s does not match '%.200s'", a, n->pattern_src);
		}
	}
	if (n->format && !check_format(n->format, s, len)) {
		QUIET_FAIL(c);
		fmt_value(a, sizeof(a), v);
		return fail(c, p, "format: %s is not a valid %s", a, format_names[n->format]);
	}
	return 0;
}

struct hashed {
	uint64_t h;
	size_t i;
};

static int cmp_hashed(const void *a, const void *b)
{
	const struct hashed *x = a, *y = b;

	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

/*
 * Finds the duplicate pair (i, j), i < j, with the smallest j; false if
 * all items differ.  Small arrays compare every pair; larger ones sort by
 * hash and compare within runs of equal hashes.  -1 when out of memory.
 */
static int find_duplicate(const json_t *v, size_t *di, size_t *dj)
{
	size_t n = json_array_size(v);
	struct hashed *h;
	bool found = false;

	if (n <= 16) {
		for (size_t j = 1; j < n; j++)
			for (size_t i = 0; i < j; i++)
				if (json_same(json_array_get(v, i), json_array_get(v, j))) {
					*di = i, *dj = j;
					return 1;
				}
		return 0;
	}
	h = evs__malloc(n * sizeof(*h));
	if (!h)
		return -1;
	for (size_t i = 0; i < n; i++) {
		h[i].h = json_hash(json_array_get(v, i));
		h[i].i = i;
	}
	qsort(h, n, sizeof(*h), cmp_hashed);
	for (size_t a = 0; a < n;) {
		size_t b = a + 1;
		while (b < n && h[b].h == h[a].h)
			b++;
		/* within a run, indices ascend */
		for (size_t y = a + 1; y < b; y++) {
			if (found && h[y].i >= *dj)
				break;
			for (size_t x = a; x < y; x++)
				if (json_same(json_array_get(v, h[x].i),
					      json_array_get(v, h[y].i))) {
					*di = h[x].i, *dj = h[y].i;
					found = true;
					break;
				}
		}
		a = b;
	}
	evs__free(h);
	return found;
}

static int v_array(struct vctx *c, const node *n, const json_t *v, const struct ipath *p)
{
	size_t size = json_array_size(v);
	int rc;

	if (size < n->min_items) {
		QUIET_FAIL(c);
		return fail(c, p, "minItems: %zu items, fewer than %zu", size, n->min_items);
	}
	if (size > n->max_items) {
		QUIET_FAIL(c);
		return fail(c, p, "maxItems: %zu items, more than %zu", size, n->max_items);
	}
	for (size_t i = 0; i < size; i++) {
		struct ipath cp = { p, NULL, i };
		const node *sub = i < n->nprefix ? n->prefix[i] : n->items;
		if (!sub)
			break;
		if (i >= n->nprefix && sub->boolean == 0) {
			QUIET_FAIL(c);
			return fail(c, p, "items: %zu items, at most %zu allowed", size, n->nprefix);
		}
		if ((rc = vnode(c, sub, json_array_get(v, i), &cp)) != 0)
			return rc;
	}
	if (n->contains) {
		size_t count = 0;
		for (size_t i = 0; i < size; i++) {
			struct ipath cp = { p, NULL, i };
			rc = vquiet(c, n->contains, json_array_get(v, i), &cp);
			if (c->hard)
				return c->hard;
			if (rc == 0 && ++count > n->max_contains)
				break;
			if (count >= n->min_contains && n->max_contains == SIZE_MAX)
				break;
		}
		if (count < n->min_contains) {
			QUIET_FAIL(c);
			if (count == 0)
				return fail(c, p, "contains: no item matches");
			return fail(c, p, "minContains: %zu items match 'contains', fewer than %zu",
				    count, n->min_contains);
		}
		if (count > n->max_contains) {
			QUIET_FAIL(c);
			return fail(c, p, "maxContains: more than %zu items match 'contains'",
				    n->max_contains);
		}
	}
	if (n->unique && size > 1) {
		size_t i, j;
		rc = find_duplicate(v, &i, &j);
		if (rc < 0)
			return hard_fail(c, EVS_ENOMEM, p, "out of memory");
		if (rc) {
			QUIET_FAIL(c);
			return fail(c, p, "uniqueItems: items %zu and %zu are equal", i, j);
		}
	}
	return 0;
}


/* If a required property of v is missing, reports the first (in the
 * order of 'required') and returns true. */
static bool missing_required(struct vctx *c, const node *n, const json_t *v,
			     const struct ipath *p)
{
	for (size_t i = 0; i < json_array_size(n->required); i++) {
		const char *name = json_string_value(json_array_get(n->required, i));
		if (!json_object_get(v, name)) {
			if (!c->quiet)
				fail(c, p, "required: property '%.200s' is missing", name);
			return true;
		}
	}
	return false;
}

static int v_object(struct vctx *c, const node *n, const json_t *v, const struct ipath *p)
{
	size_t size = json_object_size(v);
	const char *key;
	json_t *val;
	int rc;

	if (size < n->min_props) {
		QUIET_FAIL(c);
		return fail(c, p, "minProperties: %zu properties, fewer than %zu",
			    size, n->min_props);
	}
	if (size > n->max_props) {
		QUIET_FAIL(c);
		return fail(c, p, "maxProperties: %zu properties, more than %zu",
			    size, n->max_props);
	}
	bool walk = n->nprops || n->npats || n->additional || n->prop_names;
	size_t seen = 0;	/* required properties met on the walk */
	if (n->required && !walk && missing_required(c, n, v, p))
		return EVS_ESCHEMA;
	for (size_t i = 0; walk && i < n->nreq_other; i++) {
		if (!json_object_get(v, n->req_other[i])) {
			missing_required(c, n, v, p);
			return EVS_ESCHEMA;
		}
	}
	for (size_t d = 0; d < n->ndepreq; d++) {
		if (!json_object_get(v, n->depreq[d].key))
			continue;
		for (size_t i = 0; i < json_array_size(n->depreq[d].names); i++) {
			const char *name = json_string_value(json_array_get(n->depreq[d].names, i));
			if (!json_object_get(v, name)) {
				QUIET_FAIL(c);
				return fail(c, p, "dependentRequired: property '%.200s' is required "
					    "when '%.200s' is present", name, n->depreq[d].key);
			}
		}
	}
	if (walk) {
		/* instance order: the first failing property is reported */
		json_object_foreach((json_t *)v, key, val) {
			struct ipath cp = { p, key, 0 };
			bool matched = false;
			const struct named *prop;
			if (n->prop_names) {
				json_t *name = json_stringn(key, strlen(key));
				if (!name)
					return hard_fail(c, EVS_ENOMEM, p, "out of memory");
				rc = vquiet(c, n->prop_names, name, p);
				json_decref(name);
				if (c->hard)
					return c->hard;
				if (rc) {
					QUIET_FAIL(c);
					return fail(c, p, "propertyNames: property name '%.200s' "
						    "is not allowed", key);
				}
			}
			if (n->nprops && (prop = find_named(n, key)) != NULL) {
				matched = true;
				seen += prop->required;
				if (prop->n->boolean == 0) {
					QUIET_FAIL(c);
					return fail(c, p, "properties: property '%.200s' is not "
						    "allowed", key);
				}
				if ((rc = vnode(c, prop->n, val, &cp)) != 0)
					return rc;
			}
			for (size_t i = 0; i < n->npats; i++) {
				rc = re_search(c, n->pats[i].re, key, strlen(key), p,
					       "patternProperties");
				if (rc < 0)
					return rc;
				if (rc == 0)
					continue;
				matched = true;
				if (n->pats[i].n->boolean == 0) {
					QUIET_FAIL(c);
					return fail(c, p, "patternProperties: property '%.200s' is "
						    "not allowed (it matches '%.200s')", key,
						    n->pats[i].src);
				}
				if ((rc = vnode(c, n->pats[i].n, val, &cp)) != 0)
					return rc;
			}
			if (!matched && n->additional) {
				if (n->additional->boolean == 0) {
					QUIET_FAIL(c);
					return fail(c, p, "additionalProperties: property '%.200s' "
						    "is not allowed", key);
				}
				if ((rc = vnode(c, n->additional, val, &cp)) != 0)
					return rc;
			}
		}
		if (seen < n->nreq_props) {
			missing_required(c, n, v, p);
			return EVS_ESCHEMA;
		}
	}
	for (size_t d = 0; d < n->ndepsch; d++)
		if (json_object_get(v, n->depsch[d].key) &&
		    (rc = vnode(c, n->depsch[d].n, v, p)) != 0)
			return rc;
	return 0;
}

static void fmt_types(char *buf, size_t size, unsigned types)
{
	size_t len = 0, count = 0, total = 0;

	for (unsigned k = 0; k < 7; k++)
		total += (types >> k) & 1;
	buf[0] = '\0';
	for (unsigned k = 0; k < 7; k++) {
		if (!(types & (1u << k)))
			continue;
		count++;
		len += (size_t)snprintf(buf + len, size - len, "%s%s",
					count == 1 ? "" : count == total ? " or " : ", ",
					type_names[k]);
		if (len >= size)
			return;
	}
}

static int vnode_object_schema(struct vctx *c, const node *n, const json_t *v,
			       const struct ipath *p)
{
	char a[96], b[96];
	int rc;

	if (n->types && !type_ok(n->types, v)) {
		QUIET_FAIL(c);
		fmt_types(a, sizeof(a), n->types);
		return fail(c, p, "type: expected %s, got %s", a, type_of(v));
	}
	if (n->const_val && !json_same(v, n->const_val)) {
		QUIET_FAIL(c);
		fmt_value(a, sizeof(a), v), fmt_value(b, sizeof(b), n->const_val);
		return fail(c, p, "const: %s is not %s", a, b);
	}
	if (n->enum_vals) {
		size_t i, count = json_array_size(n->enum_vals);
		for (i = 0; i < count; i++)
			if (json_same(v, json_array_get(n->enum_vals, i)))
				break;
		if (i == count) {
			QUIET_FAIL(c);
			fmt_value(a, sizeof(a), v);
			return fail(c, p, "enum: %s is not one of the allowed values", a);
		}
	}
	switch (json_typeof(v)) {
	case JSON_INTEGER:
	case JSON_REAL:
		rc = v_number(c, n, v, p);
		break;
	case JSON_STRING:
		rc = v_string(c, n, v, p);
		break;
	case JSON_ARRAY:
		rc = v_array(c, n, v, p);
		break;
	case JSON_OBJECT:
		rc = v_object(c, n, v, p);
		break;
	default:
		rc = 0;
		break;
	}
	if (rc)
		return rc;
	if (n->ref && (rc = vnode(c, n->ref, v, p)) != 0)
		return rc;
	for (size_t i = 0; i < n->nall; i++)
		if ((rc = vnode(c, n->all[i], v, p)) != 0)
			return rc;
	if (n->nany) {
		size_t i;
		for (i = 0; i < n->nany; i++) {
			rc = vquiet(c, n->any[i], v, p);
			if (c->hard)
				return c->hard;
			if (rc == 0)
				break;
		}
		if (i == n->nany) {
			QUIET_FAIL(c);
			if (n->nany == 1)	/* the one branch's own reason says more */
				return vnode(c, n->any[0], v, p);
			return fail(c, p, "anyOf: matched 0 of %zu subschemas", n->nany);
		}
	}
	if (n->none) {
		size_t first = SIZE_MAX;
		for (size_t i = 0; i < n->none; i++) {
			rc = vquiet(c, n->one[i], v, p);
			if (c->hard)
				return c->hard;
			if (rc)
				continue;
			if (first != SIZE_MAX) {
				QUIET_FAIL(c);
				return fail(c, p, "oneOf: matched subschemas %zu and %zu, "
					    "expected exactly one", first, i);
			}
			first = i;
		}
		if (first == SIZE_MAX) {
			QUIET_FAIL(c);
			if (n->none == 1)
				return vnode(c, n->one[0], v, p);
			return fail(c, p, "oneOf: matched 0 of %zu subschemas", n->none);
		}
	}
	if (n->not_) {
		rc = vquiet(c, n->not_, v, p);
		if (c->hard)
			return c->hard;
		if (rc == 0) {
			QUIET_FAIL(c);
			return fail(c, p, "not: the value matches the 'not' subschema");
		}
	}
	if (n->if_ && (n->then_ || n->else_)) {
		rc = vquiet(c, n->if_, v, p);
		if (c->hard)
			return c->hard;
		const node *branch = rc == 0 ? n->then_ : n->else_;
		if (branch && (rc = vnode(c, branch, v, p)) != 0)
			return rc;
	}
	return 0;
}

static int vnode(struct vctx *c, const node *n, const json_t *v, const struct ipath *p)
{
	int rc;

	if (n->boolean == 1)
		return 0;
	if (n->boolean == 0) {
		QUIET_FAIL(c);
		return fail(c, p, "false schema: no value is allowed here");
	}
	if (++c->depth > MAX_DEPTH) {
		c->depth--;
		return hard_fail(c, EVS_ESCHEMA, p, "the value is nested too deeply to validate");
	}
	rc = vnode_object_schema(c, n, v, p);
	c->depth--;
	return rc;
}

int evs__schema_validate(const evs__schema *s, const json_t *instance)
{
	struct vctx c = { s, NULL, 0, 0, 0 };

	return vnode(&c, s->root, instance, NULL);
}
