/*
 * jsonmember.h: finding one top-level member of a JSON object without
 * parsing the rest, for the projections' @name parameters.
 *
 * The text is expected to be a valid JSON object (event data is checked on
 * append, and upcast data is written by jansson), but nothing here trusts
 * that: every read stays inside [s, s + len), and text that does not scan
 * as an object finds nothing.
 */
#ifndef EVS_JSONMEMBER_H
#define EVS_JSONMEMBER_H

#include <stddef.h>
#include <stdint.h>

typedef enum evs__json_kind {
	EVS__JSON_MISSING = 0, /* no such member, or the text is not an object */
	EVS__JSON_NULL,
	EVS__JSON_FALSE,
	EVS__JSON_TRUE,
	EVS__JSON_INTEGER,     /* .i */
	EVS__JSON_REAL,        /* .r */
	EVS__JSON_STRING,      /* .text/.len: the characters, unescaped */
	EVS__JSON_CONTAINER,   /* .text/.len: the object or array, minified */
} evs__json_kind;

typedef struct evs__json_value {
	evs__json_kind kind;
	int64_t i;
	double r;
	const char *text;      /* into the input, or .owned */
	size_t len;
	char *owned;           /* when not NULL: text allocated with evs__malloc,
				  the caller's to evs__free */
} evs__json_value;

/* One member of an object: its key as written between its quotes, and its
 * value's text. */
typedef struct evs__json_span {
	const char *key, *value;
	size_t key_len, value_len;
} evs__json_span;

/*
 * Indexes the members of the object s[0..len) into out[0..max), in order,
 * and returns how many there are; when there are more than max, only the
 * first max are indexed and max + 1 is returned.  0 for text that does not
 * scan as an object.
 */
size_t evs__json_members(const char *s, size_t len, evs__json_span *out, size_t max);

/* The value of one member indexed above, as evs__json_member() gives it;
 * 0, or -1 when out of memory. */
int evs__json_span_value(const evs__json_span *m, evs__json_value *out);

/*
 * Finds the first member of the object s[0..len) whose key, as written
 * between its quotes, is key[0..keylen), and sets *out to its value the way
 * SQLite's json_extract(s, '$.key') returns it: numbers without a fraction
 * or exponent that fit in 64 bits as integers, other numbers as reals;
 * strings unescaped; objects and arrays as JSON text without whitespace.
 * Returns 0, or -1 when out of memory (a string with escapes, or a
 * container with whitespace, needs a copy).
 */
int evs__json_member(const char *s, size_t len, const char *key, size_t keylen,
		     evs__json_value *out);

#endif
