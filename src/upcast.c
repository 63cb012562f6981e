/*
 * upcast.c: the store's upcasters (evstore/upcast.h).
 *
 * Each upcaster turns one event type's data from version k to k + 1: a C
 * callback, or an SQLite expression over `data` read from a file
 * <type>.v<k>-v<k+1>.sql of the schema directory.  The expressions are
 * compiled at open on a private in-memory SQLite connection (so a broken
 * file fails the open, naming it) and evaluated there under a mutex:
 * upcasting runs on reads of old events, not on the append path.
 *
 * The registry only grows; entries are found by (type, from) under the
 * same mutex, so a callback added while other threads read is safe too.
 * Its hash (evs__upcasters_hash) stands for "which upcasters exist" in
 * snapshots: a snapshot taken under other upcasters is not used.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/upcast.h"
#include "store.h"

typedef struct upcaster {
	char *type;
	uint32_t from;
	evs_upcast_fn fn;       /* or */
	void *ctx;
	sqlite3_stmt *expr;     /* SELECT (<expression>) FROM (SELECT ?1 AS data) */
	char *text;             /* the expression, for the hash */
	char *file;
} upcaster;

struct evs__upcasters {
	pthread_mutex_t mu;
	upcaster *u;
	size_t n, cap;
	sqlite3 *db;            /* for the .sql expressions, opened on first use */
};

int evs__upcasters_new(evs__upcasters **out)
{
	evs__upcasters *r = evs__calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return evs__err(EVS_ENOMEM, "out of memory");
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	return 0;
}

void evs__upcasters_free(evs__upcasters *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		sqlite3_finalize(r->u[i].expr);
		evs__free(r->u[i].type);
		evs__free(r->u[i].text);
		evs__free(r->u[i].file);
	}
	evs__free(r->u);
	sqlite3_close(r->db);
	pthread_mutex_destroy(&r->mu);
	evs__free(r);
}

/* The entry for (type, from), or NULL; call with r->mu held. */
static upcaster *find(evs__upcasters *r, const char *type, size_t tl, uint32_t from)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->u[i].from == from && strncmp(r->u[i].type, type, tl) == 0 &&
		    r->u[i].type[tl] == '\0')
			return &r->u[i];
	return NULL;
}

/* Adds an entry (taking ownership of the strings and statement, also on
 * failure); call with r->mu held. */
static int add(evs__upcasters *r, char *type, uint32_t from, evs_upcast_fn fn, void *ctx,
	       sqlite3_stmt *expr, char *text, char *file)
{
	upcaster *dup = find(r, type, strlen(type), from);
	int rc = 0;

	if (dup) {
		rc = evs__err(EVS_EINVAL, "an upcaster of '%s' from version %" PRIu32 " exists "
			      "already%s%s", type, from, dup->file ? ": " : "",
			      dup->file ? dup->file : "");
		goto fail;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 8;
		upcaster *u = evs__realloc(r->u, cap * sizeof(*u));
		if (!u) {
			rc = evs__err(EVS_ENOMEM, "out of memory adding an upcaster");
			goto fail;
		}
		r->u = u;
		r->cap = cap;
	}
	r->u[r->n++] = (upcaster){ type, from, fn, ctx, expr, text, file };
	return 0;
fail:
	sqlite3_finalize(expr);
	evs__free(type);
	evs__free(text);
	evs__free(file);
	return rc;
}

int evs_upcaster_add(evs_store *s, const char *type, uint32_t from_version, evs_upcast_fn fn,
		     void *ctx)
{
	size_t tl;
	char *t;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_upcaster_add", "store", s != NULL, "fn", fn != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	if ((rc = evs__check_type_name(type, &tl)) != 0)
		return rc;
	if (from_version == 0)
		return evs__err(EVS_EINVAL, "evs_upcaster_add: '%s': versions start at 1", type);
	if (!(t = evs__strdup(type)))
		return evs__err(EVS_ENOMEM, "out of memory adding an upcaster");
	pthread_mutex_lock(&s->upcasters->mu);
	rc = add(s->upcasters, t, from_version, fn, ctx, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->upcasters->mu);
	return rc;
}

/*
 * "<type>.v<k>-v<k+1>.sql" into type and k; 0, 1 when the name is not an
 * upcaster's (not *.sql), or EVS_EINVAL naming the file.
 */
static int parse_name(const char *dir, const char *name, char **type_out, uint32_t *from_out)
{
	size_t n = strlen(name), tl;
	const char *end, *p, *q;
	unsigned long long a = 0, b = 0;

	if (n < 4 || strcmp(name + n - 4, ".sql") != 0)
		return 1;
	/* backwards: digits of k+1, "-v", digits of k, ".v", the type */
	end = name + n - 4;
	for (q = end; q > name && q[-1] >= '0' && q[-1] <= '9'; q--)
		;
	if (q == end || end - q > 9 || q - name < 2 || q[-1] != 'v' || q[-2] != '-')
		goto bad;
	for (const char *c = q; c < end; c++)
		b = b * 10 + (unsigned long long)(*c - '0');
	end = q - 2;
	for (p = end; p > name && p[-1] >= '0' && p[-1] <= '9'; p--)
		;
	if (p == end || end - p > 9 || p - name < 3 || p[-1] != 'v' || p[-2] != '.')
		goto bad;
	for (const char *c = p; c < end; c++)
		a = a * 10 + (unsigned long long)(*c - '0');
	if (a == 0 || b != a + 1)
		goto bad;
	tl = (size_t)(p - 2 - name);
	if (!(*type_out = evs__malloc(tl + 1)))
		return evs__err(EVS_ENOMEM, "out of memory reading upcasters");
	memcpy(*type_out, name, tl);
	(*type_out)[tl] = '\0';
	if (evs__check_type_name(*type_out, &tl) != 0) {
		char why[512];
		snprintf(why, sizeof(why), "%s", evs_errmsg());
		evs__free(*type_out);
		*type_out = NULL;
		return evs__err(EVS_EINVAL, "upcaster %s/%s: %s", dir, name, why);
	}
	*from_out = (uint32_t)a;
	return 0;
bad:
	return evs__err(EVS_EINVAL, "upcaster %s/%s: the name must be "
			"<type>.v<k>-v<k+1>.sql (e.g. OrderPlaced.v1-v2.sql)", dir, name);
}

static int load_file(evs__upcasters *r, const char *dir, const char *name)
{
	char path[4200], *type = NULL, *text = NULL, *sql = NULL, *file = NULL;
	uint32_t from = 0;
	sqlite3_stmt *st = NULL;
	size_t len;
	int rc;

	if ((rc = parse_name(dir, name, &type, &from)) != 0)
		return rc == 1 ? 0 : rc;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		rc = evs__err_sys(errno, "read upcaster", path);
		goto fail;
	}
	text = evs__malloc(65537);
	len = text ? fread(text, 1, 65536, f) : 0;
	fclose(f);
	if (!text) {
		rc = evs__err(EVS_ENOMEM, "out of memory reading %s", path);
		goto fail;
	}
	text[len] = '\0';
	while (len && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == ';' ||
		       text[len - 1] == '\t' || text[len - 1] == '\r'))
		text[--len] = '\0';
	if (len == 0 || len >= 65536) {
		rc = evs__err(EVS_EINVAL, "upcaster %s: must hold one SQL expression over "
			      "`data` (at most 64 KiB), e.g. json_set(data, '$.currency', 'EUR')",
			      path);
		goto fail;
	}
	if (!r->db && sqlite3_open_v2(":memory:", &r->db, SQLITE_OPEN_READWRITE |
				      SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		rc = evs__err(EVS_ENOMEM, "upcaster %s: cannot open SQLite", path);
		goto fail;
	}
	sql = sqlite3_mprintf("SELECT (%s) FROM (SELECT ?1 AS data)", text);
	if (!sql) {
		rc = evs__err(EVS_ENOMEM, "out of memory reading %s", path);
		goto fail;
	}
	const char *tail = NULL;
	if (sqlite3_prepare_v2(r->db, sql, -1, &st, &tail) != SQLITE_OK) {
		rc = evs__err(EVS_EINVAL, "upcaster %s: %s", path, sqlite3_errmsg(r->db));
		goto fail;
	}
	if (tail && tail[strspn(tail, " \t\r\n;")] != '\0') {
		rc = evs__err(EVS_EINVAL, "upcaster %s: must hold one SQL expression over "
			      "`data`, not statements", path);
		goto fail;
	}
	sqlite3_free(sql);
	sql = NULL;
	if (!(file = evs__strdup(path))) {
		rc = evs__err(EVS_ENOMEM, "out of memory reading %s", path);
		goto fail;
	}
	return add(r, type, from, NULL, NULL, st, text, file);
fail:
	sqlite3_free(sql);
	sqlite3_finalize(st);
	evs__free(type);
	evs__free(text);
	evs__free(file);
	return rc;
}

int evs__upcasters_load_dir(evs__upcasters *r, const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *d;
	int rc = 0;

	if (!dh) {
		rc = evs__err_sys(errno, "open schema directory", dir);
		return rc == EVS_ENOTFOUND || rc == EVS_EIO ? EVS_EINVAL : rc;
	}
	pthread_mutex_lock(&r->mu);
	while (rc == 0 && (d = readdir(dh)) != NULL)
		if (d->d_name[0] != '.')
			rc = load_file(r, dir, d->d_name);
	pthread_mutex_unlock(&r->mu);
	closedir(dh);
	return rc;
}

bool evs__upcasters_has(evs__upcasters *r, const char *type, size_t tl, uint32_t version)
{
	bool has;

	pthread_mutex_lock(&r->mu);
	has = r->n && find(r, type, tl, version) != NULL;
	pthread_mutex_unlock(&r->mu);
	return has;
}

/* FNV-1a over (type, from, expression) of every upcaster, in a fixed
 * order. */
uint64_t evs__upcasters_hash(evs__upcasters *r)
{
	uint64_t h = 0xcbf29ce484222325ull;
	bool *done;

	pthread_mutex_lock(&r->mu);
	done = evs__calloc(r->n ? r->n : 1, sizeof(*done));
	for (size_t k = 0; done && k < r->n; k++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < r->n; i++) {
			if (done[i])
				continue;
			if (best == SIZE_MAX) {
				best = i;
				continue;
			}
			int c = strcmp(r->u[i].type, r->u[best].type);
			if (c < 0 || (c == 0 && r->u[i].from < r->u[best].from))
				best = i;
		}
		done[best] = true;
		const upcaster *u = &r->u[best];
		char from[16];
		snprintf(from, sizeof(from), "%" PRIu32, u->from);
		const char *parts[4] = { u->type, from, u->text ? u->text : "(callback)", "\n" };
		for (int p = 0; p < 4; p++)
			for (const char *c = parts[p]; ; c++) {
				h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
				if (!*c)
					break;
			}
	}
	pthread_mutex_unlock(&r->mu);
	evs__free(done);
	return h & 0x7fffffffffffffffull; /* fits an SQLite integer */
}

/* Evaluates an .sql upcaster on `data` (stolen); a new reference, or NULL
 * with the message set.  Call with r->mu held (the statement is shared). */
static json_t *apply_sql(evs__upcasters *r, const upcaster *u, json_t *data,
			 const evs_event *ev, int *rc)
{
	char *in = evs__json_dumps(data);
	json_t *out = NULL;
	int step;

	json_decref(data);
	if (!in) {
		*rc = evs__err(EVS_ENOMEM, "out of memory upcasting");
		return NULL;
	}
	sqlite3_bind_text(u->expr, 1, in, -1, SQLITE_TRANSIENT);
	{
		json_free_t jfree;
		json_get_alloc_funcs(NULL, &jfree);
		jfree(in);
	}
	step = sqlite3_step(u->expr);
	if (step == SQLITE_ROW && sqlite3_column_type(u->expr, 0) == SQLITE_TEXT) {
		out = json_loads((const char *)sqlite3_column_text(u->expr, 0), 0, NULL);
		if (out && !json_is_object(out)) {
			json_decref(out);
			out = NULL;
		}
	}
	if (!out)
		*rc = evs__err(EVS_EINVAL, "upcaster %s did not give a JSON object for stream "
			       "'%.*s' position %" PRIu64 "%s%s", u->file, (int)ev->stream_len,
			       ev->stream, ev->position, step == SQLITE_ROW ? "" : ": ",
			       step == SQLITE_ROW ? "" : sqlite3_errmsg(r->db));
	sqlite3_reset(u->expr);
	sqlite3_clear_bindings(u->expr);
	return out;
}

int evs_upcast(evs_store *s, const evs_event *ev, json_t **data_out, uint32_t *version_out)
{
	evs__upcasters *r;
	json_error_t jerr;
	json_t *data;
	uint32_t v;
	int rc = 0;

	if ((rc = evs__need("evs_upcast", "store", s != NULL, "ev", ev != NULL,
			    "data_out", data_out != NULL, (const char *)NULL)) != 0)
		return rc;
	*data_out = NULL;
	data = json_loadb(ev->data, ev->data_len, 0, &jerr);
	if (!data && evs__json_nomem(ev->data, ev->data_len, &jerr))
		return evs__err(EVS_ENOMEM, "stream '%.*s' position %" PRIu64 ": out of memory "
				"parsing its data", (int)ev->stream_len, ev->stream, ev->position);
	if (!data)
		return evs__err(EVS_ECORRUPT, "stream '%.*s' position %" PRIu64 ": stored data "
				"does not parse: %s", (int)ev->stream_len, ev->stream, ev->position,
				jerr.text);
	r = s->upcasters;
	for (v = ev->schema_version ? ev->schema_version : 1; data; v++) {
		evs_upcast_fn fn = NULL;
		void *ctx = NULL;
		upcaster *u;

		pthread_mutex_lock(&r->mu);
		u = r->n ? find(r, ev->type, ev->type_len, v) : NULL;
		if (u && u->expr)
			data = apply_sql(r, u, data, ev, &rc);
		else if (u)
			fn = u->fn, ctx = u->ctx;
		pthread_mutex_unlock(&r->mu);
		if (!u)
			break;
		if (fn) {
			/* a callback runs unlocked: it may read the store */
			char type[256];
			snprintf(type, sizeof(type), "%.*s", (int)ev->type_len, ev->type);
			if (!(data = fn(ctx, type, v, data)))
				rc = evs__err(EVS_EINVAL, "the upcaster of '%s' from version %" PRIu32
					      " failed on stream '%.*s' position %" PRIu64, type, v,
					      (int)ev->stream_len, ev->stream, ev->position);
		}
	}
	if (!data)
		return rc;
	*data_out = data;
	if (version_out)
		*version_out = v;
	return 0;
}
