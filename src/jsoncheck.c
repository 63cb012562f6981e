/*
 * jsoncheck.c: a strict JSON validator that runs in one pass, without
 * recursion and without allocating, for the append hot path.
 *
 * The checker is a small pushdown automaton written as a few labelled
 * states inside one function (key, colon, value, next).  The stack of open
 * containers is a fixed array of EVS__JSON_MAX_DEPTH bytes on the C stack,
 * one byte per container ('{' or '['), so hostile nesting costs a bounded
 * 512 bytes and is rejected at the bracket that goes one level too deep.
 *
 * Invariants:
 * - p only moves forward and never passes end.  Every read is inside
 *   [begin, end): the input need not be NUL-terminated and may end at the
 *   end of a page.
 * - cur is the innermost open container, 0 once the top-level object has
 *   closed; stack[0..depth) holds the containers around it, stack[0] == 0.
 * - The token scanners return p just past the token and a NULL reason, or
 *   p at the error and a static reason.
 * - The fast paths below only find, sooner, the first byte that the
 *   byte-at-a-time code has to look at; that code then decides what the
 *   byte means.  So the verdict, the offset and the reason are the same
 *   for every input whichever path ran.
 *
 * Speed (event bodies are mostly short keys, short ASCII strings and
 * numbers, so the cost is per token rather than per byte):
 * - The automaton is compiled twice (see check()).  Every valid input ends
 *   in '}' and whitespace, and then most end-of-input tests cannot fire and
 *   are left out.
 * - Each state first tests for the byte compact JSON has there, and only
 *   then for whitespace.
 * - With SSE2 (baseline on x86-64), strings are scanned with a window: a
 *   bit map of the bytes that stop a string scan ('"', '\\', < 0x20,
 *   >= 0x80) over 64 bytes, built sixteen bytes at a time.  Finding the end
 *   of a plain string is then bit arithmetic on the map, not a load at an
 *   address that depends on where the previous token ended, so the short
 *   strings of an event do not wait on each other.  Without SSE2, plain
 *   runs are skipped eight bytes at a time with word-wide tests.
 *
 * Defining EVS__JSON_NO_SIMD builds only the portable code; the tests
 * compile a second copy of this file that way, to run both.
 */
#include "jsoncheck.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__) && !defined(EVS__JSON_NO_SIMD)
#define JSON_SSE2 1
#include <emmintrin.h>
#endif

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

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

#ifndef JSON_SSE2
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
#endif

static inline int is_digit(unsigned c)
{
	return c - '0' < 10;
}

/* JSON whitespace, as a set of bits over the bytes 0..0x20. */
#define WS_BITS ((uint64_t)1 << ' ' | (uint64_t)1 << '\t' | \
		 (uint64_t)1 << '\n' | (uint64_t)1 << '\r')

static inline int is_ws(unsigned c)
{
	return c <= ' ' && (WS_BITS >> c & 1);
}

static inline const unsigned char *skip_ws(const unsigned char *p,
					   const unsigned char *end)
{
	while (p < end && is_ws(*p))
		p++;
	return p;
}

/* skip_ws() where a byte that is not whitespace is known to follow p. */
static inline const unsigned char *skip_ws_to_last(const unsigned char *p)
{
	while (is_ws(*p))
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


/*
 * A token scanner's result: on success p is just past the token and why
 * is NULL; on failure p is at the error and why says what it is.  Returned
 * by value, in two registers, so that the checker's cursor never has its
 * address taken and can stay in a register.
 */
struct tok {
	const unsigned char *p;
	const char *why;
};

static inline struct tok tok_ok(const unsigned char *p)
{
	struct tok t = { p, NULL };

	return t;
}

static inline struct tok tok_fail(const unsigned char *p, const char *why)
{
	struct tok t = { p, why };

	return t;
}

#ifdef JSON_SSE2
/*
 * Bit i set when p[i] is plain, a byte str_stop[] does not hold.  This way
 * round (the callers invert it) costs one instruction fewer: SSE2 only
 * compares for "greater than", and gcc writes "below 0x20" as "above 0x1f"
 * followed by an inversion of every lane.
 */
static inline unsigned plain16(const unsigned char *p)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i plain, q, b;

	/* Signed: above 0x1f leaves out 0x00..0x1f and 0x80..0xff at once. */
	plain = _mm_cmpgt_epi8(v, _mm_set1_epi8(0x1f));
	q = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
	b = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
	return (unsigned)_mm_movemask_epi8(
		_mm_andnot_si128(_mm_or_si128(q, b), plain));
}

/* Bit i set when p[i] is not an ASCII digit. */
static inline unsigned nondigits16(const unsigned char *p)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);

	/* b - '0' is below 10 unsigned when b - '0' - 128 is below
	 * 10 - 128 signed. */
	v = _mm_sub_epi8(v, _mm_set1_epi8('0' - 128));
	return ~(unsigned)_mm_movemask_epi8(
		_mm_cmplt_epi8(v, _mm_set1_epi8(10 - 128))) & 0xffff;
}
#endif

/* The first byte at or after p that str_stop[] holds, or end. */
static inline const unsigned char *skip_plain(const unsigned char *p,
					      const unsigned char *end)
{
#ifdef JSON_SSE2
	unsigned m;

	for (; end - p >= 16; p += 16) {
		m = ~plain16(p) & 0xffff;
		if (m)
			return p + __builtin_ctz(m);
	}
#else
	while (end - p >= 8 && !word_has_stop(load64(p)))
		p += 8;
#endif
	while (p < end && !str_stop[*p])
		p++;
	return p;
}

/* The first byte at or after p that is not a digit, or end. */
static inline const unsigned char *skip_digits(const unsigned char *p,
					       const unsigned char *end)
{
#ifdef JSON_SSE2
	unsigned m;

	for (; end - p >= 16; p += 16) {
		m = nondigits16(p);
		if (m)
			return p + __builtin_ctz(m);
	}
#endif
	while (p < end && is_digit(*p))
		p++;
	return p;
}

/*
 * p is inside a string, after the opening quote, and the bytes from that
 * quote to p are plain.  Scans the rest of the string byte by byte, or a
 * block at a time over plain runs.
 */
static struct tok scan_string_rest(const unsigned char *p,
				   const unsigned char *end)
{
	const char *why;
	size_t n;

	for (;;) {
		p = skip_plain(p, end);
		if (p == end)
			return tok_fail(p, "unterminated string");
		if (*p == '"')
			return tok_ok(p + 1);
		if (*p == '\\') {
			why = scan_escape(&p, end);
			if (why)
				return tok_fail(p, why);
			continue;
		}
		if (*p < 0x20)
			return tok_fail(p, "unescaped control character "
					"in string");
		n = utf8_seq(p, (size_t)(end - p));
		if (n == 0)
			return tok_fail(p, "invalid UTF-8 in string");
		p += n;
	}
}

#ifdef JSON_SSE2
/*
 * The stop bytes of 64 bytes of input: bit i of stops is str_stop[base[i]].
 * The input does not change, so the map stays true while p moves on, and
 * moves only when a string starts past it.  Over an input of 64 bytes or
 * more the window lies inside the input; over a shorter one it starts at
 * the input and has no bits past its end.
 *
 * rem is 0, or stops less the bits below some position: the stop bytes not
 * yet consumed.  In compact JSON the only stop bytes outside strings are
 * the quotes around them, so when one string ends the lowest bit of rem is
 * usually the opening quote of the next.  Checking that is cheap and does
 * not hold up the scan, and then that string's end comes from rem alone,
 * so scanning a run of short strings is a short chain of bit operations
 * rather than one through every byte test in between.
 */
struct window {
	const unsigned char *base;
	uint64_t stops;
	uint64_t rem;
};

static inline uint64_t str_stops64(const unsigned char *p)
{
	return ~((uint64_t)plain16(p) |
		 (uint64_t)plain16(p + 16) << 16 |
		 (uint64_t)plain16(p + 32) << 32 |
		 (uint64_t)plain16(p + 48) << 48);
}

/* The window for an input of len >= 1 bytes, placed at its start. */
static inline struct window window_init(const unsigned char *begin,
					size_t len)
{
	struct window w;
	unsigned char buf[64] = { 0 };

	w.base = begin;
	if (len >= 64) {
		w.stops = str_stops64(begin);
	} else {
		/* No load may reach past the end: map a copy instead. */
		memcpy(buf, begin, len);
		w.stops = str_stops64(buf) & (((uint64_t)1 << len) - 1);
	}
	w.rem = w.stops;
	return w;
}

/*
 * p is at the opening quote.  A plain string that ends inside the window
 * costs a few bit operations; anything else is left to scan_string_rest().
 */
static ALWAYS_INLINE struct tok scan_string(const unsigned char *p,
					    struct window *w,
					    const unsigned char *end)
{
	size_t off = (size_t)(p - w->base);
	uint64_t r = w->rem;
	const unsigned char *q = p + 1;

	if (r == 0 || (size_t)__builtin_ctzll(r) != off) {
		/* Something else came first, or the window is behind. */
		if (off >= 64) {
			/* Only over 64 bytes or more: there is no copy. */
			w->base = end - p >= 64 ? p : end - 64;
			w->stops = str_stops64(w->base);
			off = (size_t)(p - w->base);
		}
		r = w->stops & ~(uint64_t)0 << off;
	}
	/* The lowest bit of r is now the opening quote, at p. */
	r &= r - 1;
	if (r) {
		q = w->base + __builtin_ctzll(r);
		if (*q == '"') {
			w->rem = r & (r - 1);
			return tok_ok(q + 1);
		}
	}
	w->rem = 0;
	return scan_string_rest(q, end);
}
#else
struct window {
	char unused;	/* the portable code keeps nothing */
};

static inline struct window window_init(const unsigned char *begin,
					size_t len)
{
	struct window w = { 0 };

	(void)begin;
	(void)len;
	return w;
}

/* p is at the opening quote. */
static inline struct tok scan_string(const unsigned char *p,
				     struct window *w,
				     const unsigned char *end)
{
	(void)w;
	return scan_string_rest(p + 1, end);
}
#endif

/* p is at '-' or a digit. */
static ALWAYS_INLINE struct tok scan_number(const unsigned char *p,
					    const unsigned char *end)
{
	if (*p == '-')
		p++;
	if (p < end && *p == '0') {
		p++;
		if (p < end && is_digit(*p))
			return tok_fail(p, "leading zero in number");
	} else if (p < end && is_digit(*p)) {
		p = skip_digits(p + 1, end);
	} else {
		return tok_fail(p, "expected digit");
	}
	if (p < end && *p == '.') {
		p++;
		if (p == end || !is_digit(*p))
			return tok_fail(p, "expected digit after '.'");
		p = skip_digits(p + 1, end);
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || !is_digit(*p))
			return tok_fail(p, "expected digit in exponent");
		p = skip_digits(p + 1, end);
	}
	return tok_ok(p);
}

static inline int match(const unsigned char *p, const unsigned char *end,
			const char *lit, size_t n)
{
	return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

/*
 * The automaton, compiled twice (it is always inlined, and closed is a
 * constant at both calls).
 *
 * closed is set when the last byte of the input that is not whitespace is
 * the '}' at last, as in every valid input.  Then every token starts at or
 * before last: a run of whitespace or digits, a literal or a punctuation
 * byte cannot run past that '}', and a string ends at a quote, which comes
 * before it.  The only way past last is to consume that '}', and close
 * handles that.  So every test marked AT_END is false for such an input
 * and can be left out, and whitespace can be skipped without looking for
 * the end.  Both copies give the same result for every input.
 */
#define AT_END(p) (!closed && (p) == end)
#define SKIP_WS(p) (closed ? skip_ws_to_last(p) : skip_ws((p), end))

static ALWAYS_INLINE struct tok check(const unsigned char *begin,
				      const unsigned char *end,
				      const unsigned char *last, int closed)
{
	unsigned char stack[EVS__JSON_MAX_DEPTH];
	const unsigned char *p = begin;
	unsigned depth = 0, cur = 0;
	const char *why;
	struct window w = window_init(begin, (size_t)(end - begin));
	struct tok t;

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
	p = SKIP_WS(p);
	if (AT_END(p))
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
	goto value;

	/*
	 * Each state below starts where the previous token ended.  It tests
	 * first for the byte compact JSON has there, then for whitespace,
	 * which it skips before trying again.
	 */
key:
	if (AT_END(p))
		goto eof;
	if (*p != '"') {
		if (is_ws(*p)) {
			p = SKIP_WS(p);
			goto key;
		}
		why = "expected string key";
		goto fail;
	}
	t = scan_string(p, &w, end);
	p = t.p;
	if (t.why) {
		why = t.why;
		goto fail;
	}

colon:
	if (AT_END(p))
		goto eof;
	if (*p != ':') {
		if (is_ws(*p)) {
			p = SKIP_WS(p);
			goto colon;
		}
		why = "expected ':'";
		goto fail;
	}
	p++;

value:
	if (AT_END(p))
		goto eof;
	if (*p == '"') {
		t = scan_string(p, &w, end);
	} else if (is_digit(*p) || *p == '-') {
		t = scan_number(p, end);
	} else if (*p == '{' || *p == '[') {
		goto open;
	} else if (is_ws(*p)) {
		p = SKIP_WS(p);
		goto value;
	} else {
		switch (*p) {
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
			goto fail;
		}
	}
	p = t.p;
	if (t.why) {
		why = t.why;
		goto fail;
	}

next:
	/* a value inside the container cur has just ended at p */
	if (AT_END(p))
		goto eof;
	if (*p == ',') {
		p++;
		if (cur == '{')
			goto key;
		goto value;
	}
	/* The closing bracket is two past the opening one: {} and []. */
	if (*p == cur + 2) {
		p++;
		goto close;
	}
	if (is_ws(*p)) {
		p = SKIP_WS(p);
		goto next;
	}
	why = cur == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
	goto fail;

close:
	cur = stack[--depth];
	if (cur == 0)
		goto done;
	if (closed && p > last) {
		/* That was the '}' at last, and only whitespace follows. */
		p = end;
		goto eof;
	}
	goto next;

done:
	p = skip_ws(p, end);
	if (p == end)
		return tok_ok(p);
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
	return tok_fail(p, why);
}

#undef AT_END
#undef SKIP_WS

int evs__json_check_object_ex(const char *s, size_t len, size_t *err_off,
			      const char **reason)
{
	const unsigned char *begin = (const unsigned char *)s, *end, *last;
	struct tok t;

	if (len == 0) {
		/* Not begin + 0: s may be NULL. */
		if (err_off)
			*err_off = 0;
		if (reason)
			*reason = "empty input";
		return -1;
	}
	end = begin + len;
	last = end - 1;
	while (last > begin && is_ws(*last))
		last--;
	if (*last == '}')
		t = check(begin, end, last, 1);
	else
		t = check(begin, end, last, 0);
	if (t.why == NULL)
		return 0;
	if (err_off)
		*err_off = (size_t)(t.p - begin);
	if (reason)
		*reason = t.why;
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
