/*
 * jsoncheck.h: strict, non-allocating JSON (RFC 8259) syntax validation for
 * the append path, where an event body has to be proven well-formed before
 * it is written but building a jansson tree for it would be wasted work.
 *
 * What is checked: the full grammar; exactly one object at the top, with
 * optional JSON whitespace (space, tab, LF, CR) around it; strings that are
 * valid UTF-8 (shortest form, no encoded surrogates, nothing above
 * U+10FFFF) with no unescaped control characters; escapes including \uXXXX
 * with properly paired surrogates; numbers by the RFC grammar (no leading
 * zeros, digits on both sides of '.', digits in the exponent); no NUL byte
 * anywhere.  At most EVS__JSON_MAX_DEPTH containers may be open at once,
 * the top-level object counting as the first.
 *
 * What is not: duplicate keys, and number range ("1e400" is valid syntax).
 * "\u0000" is valid JSON and is accepted here, although jansson rejects it
 * unless asked not to.
 *
 * Everything here is reentrant and allocates nothing.
 */
#ifndef EVS_JSONCHECK_H
#define EVS_JSONCHECK_H

#include <stddef.h>

#define EVS__JSON_MAX_DEPTH 512

/*
 * 0 when s[0..len) is exactly one JSON object, -1 otherwise.  On failure
 * *err_off (when err_off is not NULL) is the byte offset of the first
 * problem: the first byte of a bad escape, UTF-8 sequence or literal, the
 * opening bracket that goes too deep, len when the input ends early, and
 * otherwise the first byte the grammar cannot accept.  s need not be
 * NUL-terminated and may be NULL when len is 0.
 */
int evs__json_check_object(const char *s, size_t len, size_t *err_off);

/*
 * Like evs__json_check_object(), and on failure also sets *reason (when
 * reason is not NULL) to a static description such as "expected ':'" or
 * "invalid UTF-8 in string".  Neither output is touched on success.
 */
int evs__json_check_object_ex(const char *s, size_t len, size_t *err_off,
			      const char **reason);

/*
 * 0 when s[0..len) is valid UTF-8 by the same rules as JSON strings above,
 * -1 otherwise.  U+0000 is a valid character: a NUL byte passes here, so
 * callers that need NUL-free text check for it themselves.
 */
int evs__utf8_check(const char *s, size_t len);

#endif
