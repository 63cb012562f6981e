/*
 * jsoncheck.c: a strict JSON validator that runs in one pass, without
 * recursion and without allocating, for the append hot path.
 *
 * The checker is a small pushdown automaton written as a few labelled
 * states inside one function (value, key, next).  The stack of open
 * containers is a fixed array of EVS__JSON_MAX_DEPTH bytes on the C stack,
 * one byte per container ('{' or '['), so hostile nesting costs a bounded
 * 512 bytes and is rejected at the bracket that goes one level too deep.
 *
 * Invariants:
 * - p only moves forward and never passes end; every read of *p is behind a
 *   p < end test (the input is not NUL-terminated).
 * - cur is the innermost open container, 0 once the top-level object has
 *   closed; stack[0..depth) holds the containers around it, stack[0] == 0.
 * - The token scanners (string, escape, number) return NULL on success with
 *   *pp just past the token, or a static reason with *pp at the error.
 *
 * Strings dominate event bodies, so plain ASCII runs inside them are skipped
 * eight bytes at a time with word-wide tests for '"', '\\', control bytes
 * and bytes >= 0x80; only those fall through to the byte-at-a-time code.
 */
#include "jsoncheck.h"

#include <stdint.h>
#include <string.h>

/* Bytes a string scan must stop at: '"', '\\', < 0x20 and >= 0x80. */
static const unsigned char str_stop[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x00 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x10 */
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x20 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x30 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x40 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,	/* 0x50 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x60 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x70 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x80 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x90 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xa0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xb0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xc0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xd0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xe0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xf0 */
};

#define ONES 0x0101010101010101u
#define HIGHS 0x8080808080808080u

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/*
 * Nonzero when any byte of w is one str_stop[] holds.  The zero-byte test
 * (x - ONES) & ~x & HIGHS is exact as a yes/no answer for the whole word;
 * byte order does not matter.
 */
static inline uint64_t word_has_stop(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"');
	uint64_t b = w ^ (ONES * '\\');

	return (((w - ONES * 0x20) & ~w) |	/* < 0x20 (or >= 0x80) */
		((q - ONES) & ~q) |
		((b - ONES) & ~b) |
		w) & HIGHS;
}

static inline int is_digit(unsigned c)
{
	return c - '0' < 10;
}

static inline const unsigned char *skip_ws(const unsigned char *p,
					   const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' ||
			   *p == '\t'))
		p++;
	return p;
}

/*
 * Length of the well-formed UTF-8 sequence of two to four bytes at p
 * (Unicode table 3-7: shortest form, no surrogates, at most U+10FFFF), or 0
 * when there is none.  Call with avail >= 1 and p[0] >= 0x80.
 */
static inline size_t utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned c = p[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0xc2) {
		return 0;	/* continuation byte, or overlong C0/C1 */
	} else if (c < 0xe0) {
		n = 2;
	} else if (c < 0xf0) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* U+D800..U+DFFF */
	} else if (c < 0xf5) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	} else {
		return 0;
	}
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

static inline int hex_val(unsigned c)
{
	if (c - '0' < 10)
		return (int)(c - '0');
	c |= 0x20;
	if (c - 'a' < 6)
		return (int)(c - 'a' + 10);
	return -1;
}

/* The four hex digits at p (which has at least four bytes), or -1. */
static inline long hex4(const unsigned char *p)
{
	int a = hex_val(p[0]), b = hex_val(p[1]);
	int c = hex_val(p[2]), d = hex_val(p[3]);

	if ((a | b | c | d) < 0)
		return -1;
	return (long)a << 12 | (long)b << 8 | (long)c << 4 | (long)d;
}

/* *pp is at a backslash inside a string.  Errors point at a backslash. */
static const char *scan_escape(const unsigned char **pp,
			       const unsigned char *end)
{
	const unsigned char *p = *pp;
	long u;

	if (end - p < 2)
		return "invalid escape";
	switch (p[1]) {
	case '"': case '\\': case '/':
	case 'b': case 'f': case 'n': case 'r': case 't':
		*pp = p + 2;
		return NULL;
	case 'u':
		break;
	default:
		return "invalid escape";
	}
	if (end - p < 6 || (u = hex4(p + 2)) < 0)
		return "invalid \\u escape";
	if (u >= 0xdc00 && u <= 0xdfff)
		return "unpaired low surrogate in \\u escape";
	if (u >= 0xd800 && u <= 0xdbff) {
		if (end - p < 8 || p[6] != '\\' || p[7] != 'u')
			return "unpaired high surrogate in \\u escape";
		if (end - p < 12 || (u = hex4(p + 8)) < 0) {
			*pp = p + 6;
			return "invalid \\u escape";
		}
		if (u < 0xdc00 || u > 0xdfff)
			return "unpaired high surrogate in \\u escape";
		*pp = p + 12;
		return NULL;
	}
	*pp = p + 6;
	return NULL;
}

/* *pp is at the opening quote. */
static const char *scan_string(const unsigned char **pp,
			       const unsigned char *end)
{
	const unsigned char *p = *pp + 1;
	const char *why;
	size_t n;

	for (;;) {
		while (end - p >= 8 && !word_has_stop(load64(p)))
			p += 8;
		while (p < end && !str_stop[*p])
			p++;
		if (p == end) {
			*pp = p;
			return "unterminated string";
		}
		if (*p == '"') {
			*pp = p + 1;
			return NULL;
		}
		if (*p == '\\') {
			why = scan_escape(&p, end);
			if (why)
				break;
			continue;
		}
		if (*p < 0x20) {
			why = "unescaped control character in string";
			break;
		}
		n = utf8_seq(p, (size_t)(end - p));
		if (n == 0) {
			why = "invalid UTF-8 in string";
			break;
		}
		p += n;
	}
	*pp = p;
	return why;
}

/* *pp is at '-' or a digit. */
static const char *scan_number(const unsigned char **pp,
			       const unsigned char *end)
{
	const unsigned char *p = *pp;
	const char *why = NULL;

	if (*p == '-')
		p++;
	if (p < end && *p == '0') {
		p++;
		if (p < end && is_digit(*p)) {
			why = "leading zero in number";
			goto out;
		}
	} else if (p < end && is_digit(*p)) {
		while (p < end && is_digit(*p))
			p++;
	} else {
		why = "expected digit";
		goto out;
	}
	if (p < end && *p == '.') {
		p++;
		if (p == end || !is_digit(*p)) {
			why = "expected digit after '.'";
			goto out;
		}
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || !is_digit(*p)) {
			why = "expected digit in exponent";
			goto out;
		}
		while (p < end && is_digit(*p))
			p++;
	}
out:
	*pp = p;
	return why;
}

static inline int match(const unsigned char *p, const unsigned char *end,
			const char *lit, size_t n)
{
	return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

int evs__json_check_object_ex(const char *s, size_t len, size_t *err_off,
			      const char **reason)
{
	unsigned char stack[EVS__JSON_MAX_DEPTH];
	const unsigned char *begin = (const unsigned char *)s, *p, *end;
	unsigned depth = 0, cur = 0;
	const char *why;

	if (len == 0) {
		/* Not begin + 0: s may be NULL. */
		if (err_off)
			*err_off = 0;
		if (reason)
			*reason = "empty input";
		return -1;
	}
	p = begin;
	end = begin + len;

	p = skip_ws(p, end);
	if (p == end)
		goto eof;
	if (*p != '{') {
		why = "top-level value is not an object";
		goto fail;
	}
	/* fall through into the '{' case of value */

open:
	/* *p is '{' or '[' */
	if (depth == EVS__JSON_MAX_DEPTH) {
		why = "nesting too deep";
		goto fail;
	}
	stack[depth++] = (unsigned char)cur;
	cur = *p++;
	p = skip_ws(p, end);
	if (p == end)
		goto eof;
	if (cur == '{') {
		if (*p == '}') {
			p++;
			goto close;
		}
		goto key;
	}
	if (*p == ']') {
		p++;
		goto close;
	}
	/* fall through: first element of an array */

value:
	/* p is past whitespace; p < end */
	switch (*p) {
	case '{':
	case '[':
		goto open;
	case '"':
		why = scan_string(&p, end);
		break;
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		why = scan_number(&p, end);
		break;
	case 't':
		if (!match(p, end, "true", 4))
			goto bad_literal;
		p += 4;
		goto next;
	case 'f':
		if (!match(p, end, "false", 5))
			goto bad_literal;
		p += 5;
		goto next;
	case 'n':
		if (!match(p, end, "null", 4))
			goto bad_literal;
		p += 4;
		goto next;
	default:
		why = "expected value";
		break;
	}
	if (why)
		goto fail;
	goto next;

close:
	cur = stack[--depth];
	/* fall through */

next:
	/* a value has just ended at p */
	if (cur == 0)
		goto done;
	p = skip_ws(p, end);
	if (p == end)
		goto eof;
	if (*p == ',') {
		p = skip_ws(p + 1, end);
		if (p == end)
			goto eof;
		if (cur == '{')
			goto key;
		goto value;
	}
	if (*p == (cur == '{' ? '}' : ']')) {
		p++;
		goto close;
	}
	why = cur == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
	goto fail;

key:
	/* p is past whitespace; p < end */
	if (*p != '"') {
		why = "expected string key";
		goto fail;
	}
	why = scan_string(&p, end);
	if (why)
		goto fail;
	p = skip_ws(p, end);
	if (p == end)
		goto eof;
	if (*p != ':') {
		why = "expected ':'";
		goto fail;
	}
	p = skip_ws(p + 1, end);
	if (p == end)
		goto eof;
	goto value;

done:
	p = skip_ws(p, end);
	if (p == end)
		return 0;
	why = "unexpected data after the object";
	goto fail;

bad_literal:
	why = "invalid literal";
	goto fail;
eof:
	why = "unexpected end of input";
fail:
	if (p < end && *p == 0)
		why = "unexpected NUL byte";
	if (err_off)
		*err_off = (size_t)(p - begin);
	if (reason)
		*reason = why;
	return -1;
}

int evs__json_check_object(const char *s, size_t len, size_t *err_off)
{
	return evs__json_check_object_ex(s, len, err_off, NULL);
}

int evs__utf8_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	while (len) {
		if (len >= 8 && (load64(p) & HIGHS) == 0) {
			p += 8;
			len -= 8;
		} else if (*p < 0x80) {
			p++;
			len--;
		} else {
			n = utf8_seq(p, len);
			if (n == 0)
				return -1;
			p += n;
			len -= n;
		}
	}
	return 0;
}
