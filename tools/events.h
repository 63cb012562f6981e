/*
 * events.h: events as JSON, shared by the command-line tool (tools/evstore.c)
 * and the HTTP server (tools/serve.c): the object an event is printed as,
 * and the checks of an event given as JSON (type, data, optional id,
 * metadata and schema_version).
 */
#ifndef EVSTORE_TOOLS_EVENTS_H
#define EVSTORE_TOOLS_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "evstore.h"

/* One validated input event, owning what its evs_new_event borrows. */
struct pending {
	json_t *root;             /* the parsed line; owns the type string */
	const char *type;
	char *data;               /* compact JSON text (malloc) */
	char *metadata;           /* compact JSON text (malloc), or NULL */
	uint8_t id[16];
	int has_id;
	uint32_t schema_version;  /* 0: the default, 1 */
};

void pending_free(struct pending *p);

/*
 * Parses and checks one input event: a whole event object, or with
 * `fixed_type` the data object alone.  0 on success; else -1 with the
 * reason in `err` and *p left empty.
 */
int parse_event(struct pending *p, const char *text, size_t len,
		const char *fixed_type, char *err, size_t errsize);

/* The same for parsed JSON; `root` is stolen (also on failure). */
int parse_event_json(struct pending *p, json_t *root, const char *fixed_type,
		     char *err, size_t errsize);

/*
 * An event as one JSON object (new reference), data and metadata embedded
 * as parsed JSON; the "metadata" key is left out when the event has none.
 * NULL with `err` filled when the stored text does not parse.
 */
json_t *event_json(const evs_event *ev, char *err, size_t errsize);

/* Compact JSON text of `j` in memory of the tool's own (free() it), not
 * jansson's allocator, which the library may have hooked. */
char *dump_compact(const json_t *j);

/* The library's rule for type names: [A-Za-z0-9_.:-]{1,255}. */
int valid_type(const char *t);

/* A decimal number without sign, spaces or overflow: 0, else -1. */
int parse_u64(const char *s, uint64_t *out);

/* "any", "no_stream", "exists" or an exact version: 0, else -1. */
int parse_expected(const char *s, int64_t *out);

/* "2026-11-22T20:03:56.123456Z" */
void format_time_us(char *out, size_t size, int64_t us);

#endif
