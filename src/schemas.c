/*
 * schemas.c: the event schemas of a store (evs_options.schema_dir).
 *
 * A schema directory holds one JSON Schema document per event type and
 * schema version, named <type>.v<version>.json (OrderPlaced.v2.json).  They
 * are all read and compiled when the store opens; a file that does not
 * parse, does not compile or is misnamed fails the open, naming the file,
 * so a bad schema is found before any event is checked against it.  Files
 * not ending in .json are not schemas and are left alone (upcaster files
 * live in the same directory).
 *
 * Every appended event whose type has schemas is parsed and validated
 * against the schema of its version, on the appending thread, before the
 * batch is queued: a rejected append writes nothing.  A type without any
 * schema passes unless the store is strict; a known type with a version
 * that has no schema never passes (a typo in a version is a bug, not a new
 * type).
 *
 * Invariant: the registry is built at open and never written afterwards,
 * so appending threads read it without a lock.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema.h"
#include "store.h"

typedef struct entry {
	char *type;
	uint32_t version;
	evs__schema *schema;
} entry;

struct evs__schemas {
	char *dir;
	bool strict;
	entry *e;               /* sorted by (type, version) */
	size_t n, cap;
};

static int entry_cmp(const void *a, const void *b)
{
	const entry *x = a, *y = b;
	int c = strcmp(x->type, y->type);

	if (c)
		return c;
	return x->version < y->version ? -1 : x->version > y->version;
}

void evs__schemas_free(evs__schemas *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		evs__free(r->e[i].type);
		evs__schema_free(r->e[i].schema);
	}
	evs__free(r->e);
	evs__free(r->dir);
	evs__free(r);
}

/*
 * Splits "<type>.v<version>.json" (the type may hold dots itself).  0, or
 * EVS_EINVAL with a message naming the file.
 */
static int parse_name(const char *dir, const char *name, char **type_out, uint32_t *version_out)
{
	size_t n = strlen(name), tl;
	const char *v, *end = name + n - 5; /* at ".json" */
	uint64_t version = 0;

	for (v = end; v > name && v[-1] >= '0' && v[-1] <= '9'; v--)
		;
	if (v == end || v - name < 3 || v[-1] != 'v' || v[-2] != '.' ||
	    (v[0] == '0' && v + 1 != end))
		goto bad;
	for (const char *p = v; p < end; p++) {
		version = version * 10 + (uint64_t)(*p - '0');
		if (version > UINT32_MAX)
			goto bad;
	}
	if (version == 0)
		goto bad;
	tl = (size_t)(v - 2 - name);
	*type_out = evs__malloc(tl + 1);
	if (!*type_out)
		return evs__err(EVS_ENOMEM, "out of memory reading schemas");
	memcpy(*type_out, name, tl);
	(*type_out)[tl] = '\0';
	if (evs__check_type_name(*type_out, &tl) != 0) {
		char why[512];
		snprintf(why, sizeof(why), "%s", evs_errmsg());
		evs__free(*type_out);
		*type_out = NULL;
		return evs__err(EVS_EINVAL, "schema %s/%s: %s", dir, name, why);
	}
	*version_out = (uint32_t)version;
	return 0;
bad:
	return evs__err(EVS_EINVAL, "schema %s/%s: the name must be <type>.v<version>.json, "
			"with a version from 1 (e.g. OrderPlaced.v2.json)", dir, name);
}

static int load_one(evs__schemas *r, const char *name, unsigned flags)
{
	char path[4200], *type = NULL;
	uint32_t version = 0;
	json_error_t jerr;
	json_t *doc;
	entry *e;
	int rc;

	if ((rc = parse_name(r->dir, name, &type, &version)) != 0)
		return rc;
	snprintf(path, sizeof(path), "%s/%s", r->dir, name);
	doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		evs__free(type);
		return evs__err(EVS_EINVAL, "schema %s: line %d, column %d: %s", path, jerr.line,
				jerr.column, jerr.text);
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		entry *ne = evs__realloc(r->e, cap * sizeof(*ne));
		if (!ne) {
			json_decref(doc);
			evs__free(type);
			return evs__err(EVS_ENOMEM, "out of memory reading schemas");
		}
		r->e = ne;
		r->cap = cap;
	}
	e = &r->e[r->n];
	rc = evs__schema_compile(&e->schema, doc, path, flags);
	json_decref(doc);
	if (rc) {
		evs__free(type);
		return rc;
	}
	e->type = type;
	e->version = version;
	r->n++;
	return 0;
}

int evs__schemas_load(evs__schemas **out, const char *dir, bool strict, bool formats)
{
	evs__schemas *r;
	struct dirent *d;
	DIR *dh;
	int rc = 0;

	*out = NULL;
	r = evs__calloc(1, sizeof(*r));
	if (!r || !(r->dir = evs__strdup(dir))) {
		evs__free(r);
		return evs__err(EVS_ENOMEM, "out of memory reading schemas");
	}
	r->strict = strict;
	dh = opendir(dir);
	if (!dh) {
		rc = evs__err_sys(errno, "open schema directory", dir);
		evs__schemas_free(r);
		return rc == EVS_ENOTFOUND || rc == EVS_EIO ? EVS_EINVAL : rc;
	}
	errno = 0;
	while (rc == 0 && (d = readdir(dh)) != NULL) {
		size_t n = strlen(d->d_name);
		if (d->d_name[0] == '.' || n < 5 || strcmp(d->d_name + n - 5, ".json") != 0)
			continue;
		rc = load_one(r, d->d_name, formats ? EVS__SCHEMA_FORMAT_ASSERT : 0);
	}
	closedir(dh);
	if (rc) {
		evs__schemas_free(r);
		return rc;
	}
	if (r->n)
		qsort(r->e, r->n, sizeof(*r->e), entry_cmp);
	*out = r;
	return 0;
}

/* The first entry of `type` (of length tl), or NULL. */
static const entry *find_type(const evs__schemas *r, const char *type, size_t tl)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strncmp(r->e[mid].type, type, tl);
		if (c == 0 && r->e[mid].type[tl] != '\0')
			c = 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < r->n && strncmp(r->e[lo].type, type, tl) == 0 && r->e[lo].type[tl] == '\0')
		return &r->e[lo];
	return NULL;
}

int evs__schemas_check(const evs__schemas *r, const char *stream, size_t index,
		       const char *type, size_t tl, uint32_t version,
		       const char *data, size_t dl)
{
	const entry *e = find_type(r, type, tl), *end = r->e + r->n;
	json_error_t jerr;
	json_t *v;
	int rc;

	if (!e) {
		if (!r->strict)
			return 0;
		return evs__err(EVS_ESCHEMA, "stream '%s', event %zu: type '%.*s' has no schema "
				"in %s (the store is strict)", stream, index, (int)tl, type, r->dir);
	}
	for (const entry *first = e; e < end && strcmp(e->type, first->type) == 0; e++)
		if (e->version == version)
			break;
	if (e == end || strncmp(e->type, type, tl) != 0 || e->type[tl] != '\0' ||
	    e->version != version)
		return evs__err(EVS_ESCHEMA, "stream '%s', event %zu: type '%.*s' has no schema "
				"version %" PRIu32 " in %s", stream, index, (int)tl, type, version,
				r->dir);
	v = json_loadb(data, dl, JSON_DECODE_ANY, &jerr);
	if (!v && evs__json_nomem(data, dl, &jerr))
		return evs__err(EVS_ENOMEM, "stream '%s', event %zu: out of memory parsing its data",
				stream, index);
	if (!v)
		return evs__err(EVS_EINVAL, "stream '%s', event %zu: data does not parse: %s",
				stream, index, jerr.text);
	rc = evs__schema_validate(e->schema, v);
	json_decref(v);
	if (rc) {
		char why[768];
		snprintf(why, sizeof(why), "%s", evs_errmsg());
		return evs__err(rc, "stream '%s', event %zu (%.*s v%" PRIu32 "): %s", stream,
				index, (int)tl, type, version, why);
	}
	return 0;
}
