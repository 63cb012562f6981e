/*
 * events.c: events as JSON for the command-line tool and the HTTP server
 * (see events.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"

int parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

int parse_expected(const char *s, int64_t *out)
{
	uint64_t v;

	if (strcmp(s, "any") == 0)
		*out = EVS_EXPECT_ANY;
	else if (strcmp(s, "no_stream") == 0)
		*out = EVS_EXPECT_NO_STREAM;
	else if (strcmp(s, "exists") == 0)
		*out = EVS_EXPECT_EXISTS;
	else if (parse_u64(s, &v) == 0 && v <= (uint64_t)INT64_MAX)
		*out = (int64_t)v;
	else
		return -1;
	return 0;
}

void format_time_us(char *out, size_t size, int64_t us)
{
	int64_t sec = us / 1000000, frac = us % 1000000;
	time_t t;
	struct tm tm;

	if (frac < 0) {
		frac += 1000000;
		sec -= 1;
	}
	t = (time_t)sec;
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, size, "%" PRId64 "us", us);
		return;
	}
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)frac);
}

json_t *event_json(const evs_event *ev, char *err, size_t errsize)
{
	char id[37], ts[96];
	json_error_t jerr;
	json_t *obj, *data, *meta = NULL;

	data = json_loadb(ev->data, ev->data_len, 0, &jerr);
	if (!data) {
		snprintf(err, errsize, "event at position %" PRIu64 ": data "
			 "is not a JSON object: %s", ev->position, jerr.text);
		return NULL;
	}
	if (ev->metadata_len > 0) {
		meta = json_loadb(ev->metadata, ev->metadata_len, 0, &jerr);
		if (!meta) {
			snprintf(err, errsize, "event at position %" PRIu64
				 ": metadata is not a JSON object: %s",
				 ev->position, jerr.text);
			json_decref(data);
			return NULL;
		}
	}
	evs_uuid_format(id, ev->id);
	format_time_us(ts, sizeof ts, ev->timestamp_us);
	obj = json_pack("{s:I, s:s%, s:I, s:s, s:s%, s:I, s:s}",
			"position", (json_int_t)ev->position,
			"stream", ev->stream, ev->stream_len,
			"version", (json_int_t)ev->version,
			"id", id,
			"type", ev->type, ev->type_len,
			"schema_version", (json_int_t)ev->schema_version,
			"timestamp", ts);
	if (obj && meta && json_object_set_new(obj, "metadata", meta) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	meta = NULL;
	if (obj && json_object_set_new(obj, "data", data) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	data = NULL;
	if (!obj)
		snprintf(err, errsize, "event at position %" PRIu64 ": cannot "
			 "format it (out of memory, or a name that is not "
			 "UTF-8)", ev->position);
	json_decref(meta);
	json_decref(data);
	return obj;
}

void pending_free(struct pending *p)
{
	json_decref(p->root);
	free(p->data);
	free(p->metadata);
	memset(p, 0, sizeof *p);
}

char *dump_compact(const json_t *j)
{
	size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
	char *s;

	if (n == 0)
		return NULL;
	s = malloc(n + 1);
	if (!s)
		return NULL;
	if (json_dumpb(j, s, n, JSON_COMPACT) != n) {
		free(s);
		return NULL;
	}
	s[n] = '\0';
	return s;
}

int valid_type(const char *t)
{
	size_t i, n = strlen(t);

	if (n == 0 || n > 255)
		return 0;
	for (i = 0; i < n; i++) {
		char c = t[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

int parse_event(struct pending *p, const char *text, size_t len,
		const char *fixed_type, char *err, size_t errsize)
{
	json_error_t jerr;
	json_t *root;

	memset(p, 0, sizeof *p);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errsize, "invalid JSON: %s (column %d)", jerr.text,
			 jerr.column);
		return -1;
	}
	return parse_event_json(p, root, fixed_type, err, errsize);
}

int parse_event_json(struct pending *p, json_t *root, const char *fixed_type,
		     char *err, size_t errsize)
{
	json_t *data, *v;
	const char *key;

	memset(p, 0, sizeof *p);
	p->root = root;
	if (!json_is_object(root)) {
		snprintf(err, errsize, "%s is not a JSON object",
			 fixed_type ? "the data" : "the event");
		goto bad;
	}
	if (fixed_type) {
		p->type = fixed_type;
		data = root;
		goto dump;
	}

	json_object_foreach(root, key, v) {
		if (strcmp(key, "type") != 0 && strcmp(key, "data") != 0 &&
		    strcmp(key, "id") != 0 && strcmp(key, "metadata") != 0 &&
		    strcmp(key, "schema_version") != 0) {
			snprintf(err, errsize, "unknown key \"%.64s\" (expected "
				 "type, data, id, metadata, schema_version)",
				 key);
			goto bad;
		}
	}

	v = json_object_get(root, "type");
	if (!v) {
		snprintf(err, errsize, "missing \"type\"");
		goto bad;
	}
	if (!json_is_string(v)) {
		snprintf(err, errsize, "\"type\" is not a string");
		goto bad;
	}
	p->type = json_string_value(v);
	if (!valid_type(p->type)) {
		snprintf(err, errsize, "bad \"type\" \"%.64s\": 1 to 255 of "
			 "A-Z a-z 0-9 _ . : -", p->type);
		goto bad;
	}

	data = json_object_get(root, "data");
	if (!data) {
		snprintf(err, errsize, "missing \"data\"");
		goto bad;
	}
	if (!json_is_object(data)) {
		snprintf(err, errsize, "\"data\" is not a JSON object");
		goto bad;
	}

	v = json_object_get(root, "metadata");
	if (v && !json_is_null(v)) {
		if (!json_is_object(v)) {
			snprintf(err, errsize,
				 "\"metadata\" is not a JSON object");
			goto bad;
		}
		p->metadata = dump_compact(v);
		if (!p->metadata) {
			snprintf(err, errsize, "out of memory");
			goto bad;
		}
	}

	v = json_object_get(root, "id");
	if (v) {
		if (!json_is_string(v)) {
			snprintf(err, errsize, "\"id\" is not a string");
			goto bad;
		}
		if (evs_uuid_parse(p->id, json_string_value(v)) != 0) {
			snprintf(err, errsize, "bad \"id\" \"%.64s\": not a UUID",
				 json_string_value(v));
			goto bad;
		}
		p->has_id = 1;
	}

	v = json_object_get(root, "schema_version");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > (json_int_t)UINT32_MAX) {
			snprintf(err, errsize, "\"schema_version\" is not an "
				 "integer from 1 to %" PRIu32, UINT32_MAX);
			goto bad;
		}
		p->schema_version = (uint32_t)json_integer_value(v);
	}

dump:
	p->data = dump_compact(data);
	if (!p->data) {
		snprintf(err, errsize, "out of memory");
		goto bad;
	}
	return 0;

bad:
	pending_free(p);
	return -1;
}
