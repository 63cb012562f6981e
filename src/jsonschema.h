/*
 * jsonschema.h: JSON Schema (draft 2020-12) validation of jansson values,
 * for checking event bodies against the schema of their type and version.
 *
 * A schema document is compiled once (evs__schema_compile) into an
 * immutable graph of nodes with every regex compiled and every $ref
 * resolved; validation (evs__schema_validate) then walks the instance and
 * that graph without looking keywords up by name.
 *
 * What is supported: the validation and applicator keywords of 2020-12
 * except the unevaluated* and dynamic-scope ones, $ref within the same
 * document (JSON pointers, $id and $anchor), boolean schemas, and 'format'
 * date-time, uuid and email as assertions when asked.  A schema using a
 * keyword that is not supported is refused at compile time, naming the
 * keyword and where it is: a keyword that would be silently skipped would
 * let through events the author meant to forbid.  Keywords that are not
 * JSON Schema keywords at all ("x-owner") are ignored, as the
 * specification says.
 *
 * Threading: a compiled schema is never written after compile returns and
 * may be used by any number of threads at once.
 */
#ifndef EVS_JSONSCHEMA_H
#define EVS_JSONSCHEMA_H

#include <jansson.h>

typedef struct evs__schema evs__schema;

/*
 * Treat 'format' as an assertion for date-time (RFC 3339), uuid and email
 * (RFC 5321 mailbox), and refuse at compile time any other format name,
 * which could not be checked.  Without it 'format' is an annotation and
 * never fails.
 */
#define EVS__SCHEMA_FORMAT_ASSERT 1u

/*
 * Compiles the schema document `doc` (borrowed; the schema keeps its own
 * copy, so doc may be freed afterwards).  `name`, e.g. the file the
 * document came from, prefixes every compile error message; NULL reads as
 * "schema".  On success *out is a new schema to free with
 * evs__schema_free().
 *
 * Errors (with a message naming the location in the document as a JSON
 * pointer): EVS_EINVAL for a document that is not a schema (a keyword
 * whose value has the wrong kind, a regex that does not compile, a $ref
 * that does not resolve or leads round a cycle back to itself without
 * descending into the instance), for an unsupported keyword, for a $ref to
 * another document and for a $schema other than draft 2020-12;
 * EVS_ENOMEM.
 */
int evs__schema_compile(evs__schema **out, const json_t *doc, const char *name,
			unsigned flags);

/*
 * 0 if `instance` (borrowed) is valid.  EVS_ESCHEMA if not, with a message
 * "<pointer>: <keyword>: <why>", where the pointer (RFC 6901, "/" for the
 * whole value) locates the first failing value, e.g.
 * "/items/0/quantity: minimum: 0 is less than 1".  Also EVS_ESCHEMA when
 * the value cannot be checked: nested deeper than the validator recurses
 * (4096 schema levels), or a string on which a pattern exceeds its
 * backtracking limit.  EVS_ENOMEM when the per-thread regex state cannot
 * be allocated.
 *
 * Safe to call from many threads on the same schema.
 */
int evs__schema_validate(const evs__schema *s, const json_t *instance);

/* NULL ok. */
void evs__schema_free(evs__schema *s);

#endif
