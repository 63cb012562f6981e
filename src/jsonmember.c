/*
 * jsonmember.c: one top-level member of a JSON object, found by scanning
 * the object's members and skipping every value but the one asked for.
 *
 * This is what lets a projection handler bind @sku instead of calling
 * json_extract(:data, '$.sku'): SQLite parses the whole text again for
 * each statement that reads it, which costs more than the rest of a small
 * handler.  The value comes out as json_extract gives it (SQLite 3.40):
 * - the first member of that key wins, and keys compare as written, escapes
 *   and all;
 * - integers that fit in 64 bits stay integers, other numbers are reals;
 * - strings are unescaped, and like SQLite's, end at an escaped NUL;
 * - objects and arrays come back as their text without whitespace.
 */
#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "jsonmember.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at the opening quote; the closing quote, or end when there is none.
 * *esc tells whether a backslash came in between. */
static const char *string_end(const char *p, const char *end, bool *esc)
{
	*esc = false;
	for (p++; p < end; p++) {
		if (*p == '"')
			return p;
		if (*p == '\\') {
			*esc = true;
			p++;
		}
	}
	return end;
}

/* p at a value's first byte; just past the value (end when cut short). */
static const char *skip_value(const char *p, const char *end)
{
	bool esc;
	size_t depth = 0;

	if (p >= end)
		return end;
	if (*p == '"') {
		p = string_end(p, end, &esc);
		return p < end ? p + 1 : end;
	}
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
		       *p != '\t' && *p != '\n' && *p != '\r')
			p++;
		return p;
	}
	for (; p < end; p++) {
		if (*p == '"') {
			p = string_end(p, end, &esc);
			if (p == end)
				return end;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
	}
	return end;
}

static size_t put_utf8(char *o, uint32_t v)
{
	if (v < 0x80) {
		o[0] = (char)v;
		return 1;
	}
	if (v < 0x800) {
		o[0] = (char)(0xc0 | (v >> 6));
		o[1] = (char)(0x80 | (v & 0x3f));
		return 2;
	}
	if (v < 0x10000) {
		o[0] = (char)(0xe0 | (v >> 12));
		o[1] = (char)(0x80 | ((v >> 6) & 0x3f));
		o[2] = (char)(0x80 | (v & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (v >> 18));
	o[1] = (char)(0x80 | ((v >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((v >> 6) & 0x3f));
	o[3] = (char)(0x80 | (v & 0x3f));
	return 4;
}

/* The characters of the string s[0..n) (between its quotes), unescaped
 * into o, which has room for n bytes (no escape grows); their length. */
static size_t unescape(const char *s, size_t n, char *o)
{
	const char *p = s, *end = s + n;
	size_t k = 0;

	while (p < end) {
		if (*p != '\\') {
			o[k++] = *p++;
			continue;
		}
		if (++p == end)
			break;
		char c = *p++;
		switch (c) {
		case 'b': o[k++] = '\b'; break;
		case 'f': o[k++] = '\f'; break;
		case 'n': o[k++] = '\n'; break;
		case 'r': o[k++] = '\r'; break;
		case 't': o[k++] = '\t'; break;
		case 'u': {
			int v = evs__hex4(p, (size_t)(end - p)), lo;
			if (v < 0)
				return k;
			p += 4;
			if (v == 0)
				return k; /* SQLite's string ends there */
			if ((v & 0xfc00) == 0xd800 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
			    ((lo = evs__hex4(p + 2, (size_t)(end - p - 2))) & 0xfc00) == 0xdc00 && lo >= 0) {
				p += 6;
				k += put_utf8(o + k, 0x10000u + (((uint32_t)v & 0x3ff) << 10) +
							((uint32_t)lo & 0x3ff));
			} else {
				k += put_utf8(o + k, (uint32_t)v);
			}
			break;
		}
		default:
			o[k++] = c; /* " \ / */
			break;
		}
	}
	return k;
}

/* The container s[0..n) without whitespace outside its strings, into o. */
static size_t minify(const char *s, size_t n, char *o)
{
	const char *p = s, *end = s + n;
	size_t k = 0;
	bool esc;

	while (p < end) {
		if (*p == '"') {
			const char *q = string_end(p, end, &esc);
			q = q < end ? q + 1 : end;
			memcpy(o + k, p, (size_t)(q - p));
			k += (size_t)(q - p);
			p = q;
		} else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			p++;
		} else {
			o[k++] = *p++;
		}
	}
	return k;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* A JSON number's text as a double, whatever locale the application set
 * (a decimal comma would cut "1.5" to 1). */
static double to_double(const char *text)
{
	char *tail;

	pthread_once(&c_locale_once, c_locale_init);
	return c_locale ? strtod_l(text, &tail, c_locale) : strtod(text, &tail);
}

/* The number s[0..n): an integer as json_extract gives one, else a real;
 * -1 when out of memory. */
static int number(const char *s, size_t n, evs__json_value *out)
{
	char buf[64];
	const char *p = s, *end = s + n;
	bool neg = p < end && *p == '-';
	uint64_t u = 0;

	if (neg)
		p++;
	while (p < end && *p >= '0' && *p <= '9') {
		unsigned d = (unsigned)(*p - '0');
		if (u > (UINT64_C(1) << 63) / 10 ||
		    u * 10 + d > (neg ? UINT64_C(1) << 63 : (UINT64_C(1) << 63) - 1))
			break;
		u = u * 10 + d;
		p++;
	}
	if (p == end && p > s + neg) {
		out->kind = EVS__JSON_INTEGER;
		out->i = neg ? (int64_t)(0 - u) : (int64_t)u;
		return 0;
	}
	out->kind = EVS__JSON_REAL;
	if (n < sizeof(buf)) {
		memcpy(buf, s, n);
		buf[n] = 0;
		out->r = to_double(buf);
	} else {
		char *big = evs__malloc(n + 1);
		if (!big)
			return -1;
		memcpy(big, s, n);
		big[n] = 0;
		out->r = to_double(big);
		evs__free(big);
	}
	return 0;
}

/* Decodes the value v[0..n), which scanned as one JSON value. */
static int decode(const char *v, size_t n, evs__json_value *out)
{
	bool esc;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return 0;
	switch (*v) {
	case 'n':
		out->kind = EVS__JSON_NULL;
		return 0;
	case 't':
		out->kind = EVS__JSON_TRUE;
		out->i = 1;
		return 0;
	case 'f':
		out->kind = EVS__JSON_FALSE;
		return 0;
	case '"':
		out->kind = EVS__JSON_STRING;
		string_end(v, v + n, &esc);
		n = n >= 2 ? n - 2 : 0;
		if (!esc) {
			out->text = v + 1;
			out->len = n;
			return 0;
		}
		if (!(out->owned = evs__malloc(n + 1)))
			return -1;
		out->len = unescape(v + 1, n, out->owned);
		out->text = out->owned;
		return 0;
	case '{':
	case '[':
		out->kind = EVS__JSON_CONTAINER;
		out->text = v;
		out->len = n;
		if (memchr(v, ' ', n) || memchr(v, '\n', n) || memchr(v, '\t', n) ||
		    memchr(v, '\r', n)) {
			if (!(out->owned = evs__malloc(n)))
				return -1;
			out->len = minify(v, n, out->owned);
			out->text = out->owned;
		}
		return 0;
	default:
		return number(v, n, out);
	}
}

/*
 * Walks the members of the object s[0..len): calls each(m, ctx) for each
 * until it returns non-zero, which is returned; 0 at the end or at the
 * first thing that does not scan.
 */
static int walk(const char *s, size_t len, int (*each)(const evs__json_span *, void *),
		void *ctx)
{
	const char *end = s + len, *p = skip_ws(s, end);
	bool esc;
	int r;

	if (p == end || *p != '{')
		return 0;
	p = skip_ws(p + 1, end);
	while (p < end && *p == '"') {
		evs__json_span m;
		const char *ke = string_end(p, end, &esc);
		if (ke == end)
			return 0;
		m.key = p + 1;
		m.key_len = (size_t)(ke - m.key);
		p = skip_ws(ke + 1, end);
		if (p == end || *p != ':')
			return 0;
		m.value = skip_ws(p + 1, end);
		p = skip_value(m.value, end);
		m.value_len = (size_t)(p - m.value);
		if (m.value_len && (r = each(&m, ctx)) != 0)
			return r;
		p = skip_ws(p, end);
		if (p == end || *p != ',')
			return 0;
		p = skip_ws(p + 1, end);
	}
	return 0;
}

struct find {
	const char *key;
	size_t key_len;
	evs__json_span found;
};

static int find_one(const evs__json_span *m, void *ctx)
{
	struct find *f = ctx;

	if (m->key_len != f->key_len || memcmp(m->key, f->key, f->key_len) != 0)
		return 0;
	f->found = *m;
	return 1;
}

struct index {
	evs__json_span *out;
	size_t max, n;
};

static int index_one(const evs__json_span *m, void *ctx)
{
	struct index *x = ctx;

	if (x->n == x->max) {
		x->n++;
		return 1;
	}
	x->out[x->n++] = *m;
	return 0;
}

size_t evs__json_members(const char *s, size_t len, evs__json_span *out, size_t max)
{
	struct index x = { out, max, 0 };

	walk(s, len, index_one, &x);
	return x.n;
}

int evs__json_span_value(const evs__json_span *m, evs__json_value *out)
{
	return decode(m->value, m->value_len, out);
}

int evs__json_member(const char *s, size_t len, const char *key, size_t keylen,
		     evs__json_value *out)
{
	struct find f = { key, keylen, { NULL, NULL, 0, 0 } };

	if (!walk(s, len, find_one, &f)) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	return decode(f.found.value, f.found.value_len, out);
}
