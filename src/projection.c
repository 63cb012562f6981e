/*
 * projection.c: SQL projections (evstore/projection.h): their files, their
 * read models, their workers, and queries.
 *
 * A worker is a catch-up subscription (subscribe.c) from the checkpoint,
 * filtered to the types the projection handles.  Events are applied inside
 * one transaction, which commits with the new checkpoint every batch_size
 * events and whenever the subscription has caught up (its idle hook), so
 * the checkpoint and the rows it covers always commit together: after a
 * crash the read model is exactly as of its checkpoint, and the worker
 * goes on from there (invariant 5 of DESIGN.md).
 *
 * Each read model has two connections: the worker's, which writes, and one
 * for queries (WAL: queries read the last committed state while the worker
 * writes), used under a mutex and opened with query_only.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evstore/projection.h"
#include "evstore/upcast.h"
#include "jsoncheck.h"
#include "jsonmember.h"
#include "store.h"

#define DEFAULT_BATCH 1000
#define DEFAULT_MAX_LATENCY_MS 100
#define MAX_IDLE_QCONNS 8
#define DEFAULT_RETRIES 3
#define DEFAULT_QUERY_TIMEOUT_MS 5000

static const char *const event_params[] = {
	":stream", ":version", ":position", ":type", ":schema_version", ":event_id",
	":timestamp", ":time", ":data", ":metadata",
};
/* P_FIELD: @name, the data's top-level member name */
enum { P_STREAM = 1, P_VERSION, P_POSITION, P_TYPE, P_SCHEMA_VERSION, P_EVENT_ID,
       P_TIMESTAMP, P_TIME, P_DATA, P_METADATA, P__N = P_METADATA, P_FIELD };

typedef struct stmt_at {
	sqlite3_stmt *st;
	int line;
	int np;                 /* how many parameters it has */
	int map[32];            /* statement parameter i+1 -> P_* */
	char *field[32];        /* for P_FIELD: the member's name, owned (SQLite
				   frees its own copy when it recompiles) */
} stmt_at;

typedef struct handler {
	char *type;
	stmt_at *st;
	size_t n;
} handler;

typedef struct pquery {
	char *name;
	char *sql;
} pquery;

/*
 * A connection for queries: opened query_only, one per caller at once,
 * kept in a free list for the next.  Its declared queries are prepared on
 * first use; begin/pos/end hold the read transaction that pins the rows
 * and the checkpoint to one state.
 */
typedef struct qconn {
	sqlite3 *db;
	sqlite3_stmt **st;
	sqlite3_stmt *begin, *pos, *end;
	bool strict;            /* the authorizer allows reading only */
	double deadline;        /* an ad-hoc query's, monotonic seconds */
	struct qconn *next;
} qconn;

typedef struct proj {
	evs_store *s;
	char *name, *path, *db_path;
	evs_projection_options opts;
	uint64_t hash;
	unsigned try_steps;    /* evs__projection_try's budget */
	bool out_of_date;
	sqlite3 *db;
	handler *h;
	size_t nh;
	pquery *q;
	size_t nq;
	const char **types;     /* the subscription's filter */
	size_t ntypes;
	bool all_types;         /* no filter: something takes every type */

	/* a C projection: its definition (name, types and sql copied) */
	bool is_c;
	evs_projection_def c;
	char **ctypes;
	char *csql;

	evs__projections *reg;  /* the store's, for worker slots; NULL for a
				   rebuild's twin */
	bool has_slot;

	pthread_mutex_t qmu;    /* qfree */
	qconn *qfree;

	evs_subscription *sub;
	sqlite3_stmt *sp[3];    /* SAVEPOINT, RELEASE, ROLLBACK TO (per event) */
	bool careful;           /* commit every event (a start after a crash) */
	bool optimistic;        /* a rebuild's first pass: no savepoint per
				   event; a failure starts the rebuild over */
	bool redo;              /* it failed: start over, carefully */
	bool time_ok;           /* time_prefix is :time's text up to time_sec */
	int64_t time_sec;
	char time_prefix[20];
	bool starts_dirty;      /* this run's start is counted, not yet cleared */
	int suspect;            /* starts without progress: the next event stopped
				   the process that many times */
	bool in_tx;
	uint32_t pending;       /* events applied in the open transaction */
	double tx_t0;           /* when it began (monotonic seconds) */
	uint64_t applied;       /* the last position applied in it */
	int failed;
	char errmsg[1024];
	bool running;
	/* the rate: events applied since rate_t0 (monotonic seconds) */
	uint64_t rate_n;
	double rate_t0, rate, rate_at, last_commit;

	pthread_mutex_t mu;     /* checkpoint, running, failed, errmsg */
	pthread_cond_t cv;      /* the checkpoint moved */
	uint64_t checkpoint;
} proj;

struct evs__projections {
	proj **p;
	size_t n, cap;
	pthread_mutex_t mu;     /* active */
	pthread_cond_t cv;
	unsigned max_workers, active;
	bool stopping;          /* evs_projections_stop: no waiting for slots */
};

static uint64_t fnv(const char *t, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)t[i]) * 0x100000001b3ull;
	return h & 0x7fffffffffffffffull;
}

static void qconn_close(qconn *c, size_t nq)
{
	for (size_t i = 0; c->st && i < nq; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_finalize(c->begin);
	sqlite3_finalize(c->pos);
	sqlite3_finalize(c->end);
	sqlite3_close(c->db);
	evs__free(c->st);
	evs__free(c);
}

static void proj_free(proj *p)
{
	if (!p)
		return;
	while (p->qfree) {
		qconn *c = p->qfree;
		p->qfree = c->next;
		qconn_close(c, p->nq);
	}
	for (size_t i = 0; i < p->nh; i++) {
		for (size_t k = 0; k < p->h[i].n; k++) {
			sqlite3_finalize(p->h[i].st[k].st);
			for (int f = 0; f < p->h[i].st[k].np; f++)
				evs__free(p->h[i].st[k].field[f]);
		}
		evs__free(p->h[i].st);
		evs__free(p->h[i].type);
	}
	for (size_t i = 0; i < p->nq; i++) {
		evs__free(p->q[i].sql);
		evs__free(p->q[i].name);
	}
	for (size_t i = 0; p->ctypes && i < p->c.ntypes; i++)
		evs__free(p->ctypes[i]);
	evs__free(p->ctypes);
	evs__free(p->csql);
	for (int i = 0; i < 3; i++)
		sqlite3_finalize(p->sp[i]);
	evs__free(p->h);
	evs__free(p->q);
	evs__free((void *)p->types);
	sqlite3_close(p->db);
	evs__free(p->name);
	evs__free(p->path);
	evs__free(p->db_path);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->qmu);
	pthread_cond_destroy(&p->cv);
	evs__free(p);
}

void evs__projections_free(evs_store *s)
{
	evs__projections *r = s->projections;

	if (!r)
		return;
	evs_projections_stop(s);
	for (size_t i = 0; i < r->n; i++)
		proj_free(r->p[i]);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	evs__free(r->p);
	evs__free(r);
	s->projections = NULL;
}

static proj *find_proj(evs_store *s, const char *name)
{
	evs__projections *r = s->projections;

	for (size_t i = 0; r && i < r->n; i++)
		if (strcmp(r->p[i]->name, name) == 0)
			return r->p[i];
	return NULL;
}

/* ---- the file ---- */

typedef enum { SEC_NONE, SEC_SETUP, SEC_ON, SEC_QUERY } sec_kind;

/* Is `line` (of length n) a section marker "-- <word>[:] [arg]"?  Returns
 * the kind and points *arg at the argument (trimmed, may be empty). */
static sec_kind marker(const char *line, size_t n, const char **arg, size_t *argn,
		       bool *is_name)
{
	static const struct { const char *w; sec_kind k; bool name; } words[] = {
		{ "projection", SEC_NONE, true }, { "setup", SEC_SETUP, false },
		{ "on", SEC_ON, false }, { "query", SEC_QUERY, false },
	};
	size_t i = 0;

	*is_name = false;
	if (n < 2 || line[0] != '-' || line[1] != '-')
		return SEC_NONE;
	for (i = 2; i < n && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		size_t wl = strlen(words[w].w), j = i + wl;
		if (n - i < wl || memcmp(line + i, words[w].w, wl) != 0)
			continue;
		if (j < n && line[j] != ':' && line[j] != ' ' && line[j] != '\t')
			continue;
		if (j < n && line[j] == ':')
			j++;
		while (j < n && (line[j] == ' ' || line[j] == '\t'))
			j++;
		size_t e = n;
		while (e > j && (line[e - 1] == ' ' || line[e - 1] == '\t' || line[e - 1] == '\r'))
			e--;
		*arg = line + j;
		*argn = e - j;
		*is_name = words[w].name;
		return words[w].k == SEC_NONE ? SEC_NONE : words[w].k;
	}
	return SEC_NONE;
}

/* Prepares every statement of `sql` (starting at file line `line0`),
 * calling `take` with each.  Lines in messages are the file's. */
typedef int (*take_fn)(proj *p, void *ctx, sqlite3_stmt *st, int line);

static int prepare_all(proj *p, const char *sql, int line0, take_fn take, void *ctx,
		       int *count)
{
	const char *at = sql;
	int line = line0;       /* the file's line at `at` */

	*count = 0;
	for (;;) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		int rc;

		/* to the statement: past blanks, ';' and comments */
		while (*at) {
			if (*at == '\n') {
				line++;
				at++;
			} else if (*at == ' ' || *at == '\t' || *at == '\r' || *at == ';') {
				at++;
			} else if (at[0] == '-' && at[1] == '-') {
				while (*at && *at != '\n')
					at++;
			} else {
				break;
			}
		}
		if (!*at)
			return 0;
		if ((rc = sqlite3_prepare_v2(p->db, at, -1, &st, &tail)) != SQLITE_OK)
			return evs__err(rc == SQLITE_NOMEM ? EVS_ENOMEM : EVS_EINVAL, "%s:%d: %s",
					p->path, line, sqlite3_errmsg(p->db));
		if (!st)
			return 0;
		if ((rc = take(p, ctx, st, line)) != 0)
			return rc;
		(*count)++;
		for (; at < tail; at++)
			if (*at == '\n')
				line++;
	}
}

/* A setup statement runs at once. */
static int take_setup(proj *p, void *ctx, sqlite3_stmt *st, int line)
{
	int rc;

	(void)ctx;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return evs__err(rc == SQLITE_NOMEM ? EVS_ENOMEM : EVS_EINVAL, "%s:%d: setup: %s",
				p->path, line, sqlite3_errmsg(p->db));
	return 0;
}

static int take_handler(proj *p, void *ctx, sqlite3_stmt *st, int line)
{
	handler *h = ctx;
	stmt_at *sa;
	int np = sqlite3_bind_parameter_count(st);

	if (np > 32) {
		sqlite3_finalize(st);
		return evs__err(EVS_EINVAL, "%s:%d: too many parameters", p->path, line);
	}
	sa = evs__realloc(h->st, (h->n + 1) * sizeof(*sa));
	if (!sa) {
		sqlite3_finalize(st);
		return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
	}
	h->st = sa;
	sa = &h->st[h->n++];
	memset(sa, 0, sizeof(*sa));
	sa->st = st;
	sa->line = line;
	sa->np = np;
	for (int i = 1; i <= np; i++) {
		const char *name = sqlite3_bind_parameter_name(st, i);
		int k;
		if (name && name[0] == '@' && name[1]) {
			for (k = 1; name[k]; k++)
				if (!(name[k] >= 'a' && name[k] <= 'z') &&
				    !(name[k] >= 'A' && name[k] <= 'Z') &&
				    !(name[k] >= '0' && name[k] <= '9') && name[k] != '_')
					break;
			if (name[k])
				return evs__err(EVS_EINVAL, "%s:%d: parameter '%s': a data member's "
						"name is letters, digits and _ only; for others use "
						"json_extract(:data, ...)", p->path, line, name);
			sa->map[i - 1] = P_FIELD;
			if (!(sa->field[i - 1] = evs__strdup(name + 1)))
				return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
			continue;
		}
		for (k = 0; k < P__N; k++)
			if (name && strcmp(name, event_params[k]) == 0)
				break;
		if (k == P__N)
			return evs__err(EVS_EINVAL, "%s:%d: unknown parameter '%s' (a handler has "
					":stream, :version, :position, :type, :schema_version, "
					":event_id, :timestamp, :time, :data, :metadata, and @name "
					"for the data's member name)", p->path, line,
					name ? name : "?");
		sa->map[i - 1] = k + 1;
	}
	return 0;
}

static int take_query(proj *p, void *ctx, sqlite3_stmt *st, int line)
{
	pquery *q = ctx;

	if (q->sql) {
		sqlite3_finalize(st);
		return evs__err(EVS_EINVAL, "%s:%d: query '%s' has more than one statement",
				p->path, line, q->name);
	}
	if (!sqlite3_stmt_readonly(st)) {
		sqlite3_finalize(st);
		return evs__err(EVS_EINVAL, "%s:%d: query '%s' writes; a query may only read",
				p->path, line, q->name);
	}
	q->sql = evs__strdup(sqlite3_sql(st));
	sqlite3_finalize(st);
	return q->sql ? 0 : evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
}

typedef struct section {
	sec_kind kind;
	char *arg;
	int line;               /* of the marker */
	char *sql;
} section;

static void sections_free(section *sec, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		evs__free(sec[i].arg);
		evs__free(sec[i].sql);
	}
	evs__free(sec);
}

/* Splits the file into sections; the name from "-- projection:". */
static int split(proj *p, const char *text, section **out, size_t *nout, char **name)
{
	section *sec = NULL;
	size_t n = 0;
	int line = 0;
	const char *at = text;

	*name = NULL;
	while (*at) {
		const char *eol = strchr(at, '\n'), *arg;
		size_t len = eol ? (size_t)(eol - at) : strlen(at), argn;
		bool is_name;
		sec_kind k = marker(at, len, &arg, &argn, &is_name);

		line++;
		if (is_name) {
			evs__free(*name);
			if (!(*name = evs__malloc(argn + 1)))
				goto nomem;
			memcpy(*name, arg, argn);
			(*name)[argn] = '\0';
		} else if (k != SEC_NONE) {
			section *ns = evs__realloc(sec, (n + 1) * sizeof(*ns));
			if (!ns)
				goto nomem;
			sec = ns;
			memset(&sec[n], 0, sizeof(sec[n]));
			sec[n].kind = k;
			sec[n].line = line;
			if (!(sec[n].arg = evs__malloc(argn + 1)) || !(sec[n].sql = evs__strdup(""))) {
				n++;
				goto nomem;
			}
			memcpy(sec[n].arg, arg, argn);
			sec[n].arg[argn] = '\0';
			n++;
		} else if (n > 0) {
			size_t have = strlen(sec[n - 1].sql);
			char *t = evs__realloc(sec[n - 1].sql, have + len + 2);
			if (!t)
				goto nomem;
			memcpy(t + have, at, len);
			t[have + len] = '\n';
			t[have + len + 1] = '\0';
			sec[n - 1].sql = t;
		} else {
			size_t i = 0;
			while (i < len && (at[i] == ' ' || at[i] == '\t' || at[i] == '\r'))
				i++;
			if (i < len && !(len - i >= 2 && at[i] == '-' && at[i + 1] == '-')) {
				sections_free(sec, n);
				evs__free(*name);
				*name = NULL;
				return evs__err(EVS_EINVAL, "%s:%d: SQL before the first section (start "
						"one with '-- setup', '-- on: Type' or '-- query: name')",
						p->path, line);
			}
		}
		at = eol ? eol + 1 : at + len;
	}
	*out = sec;
	*nout = n;
	return 0;
nomem:
	sections_free(sec, n);
	evs__free(*name);
	*name = NULL;
	return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
}

static handler *handler_for(proj *p, const char *type)
{
	handler *h;

	for (size_t i = 0; i < p->nh; i++)
		if (strcmp(p->h[i].type, type) == 0)
			return &p->h[i];
	h = evs__realloc(p->h, (p->nh + 1) * sizeof(*h));
	if (!h)
		return NULL;
	p->h = h;
	h = &p->h[p->nh];
	memset(h, 0, sizeof(*h));
	if (!(h->type = evs__strdup(type)))
		return NULL;
	p->nh++;
	return h;
}

/* ---- the read model ---- */

static int db_err(proj *p, sqlite3 *db, const char *what)
{
	int ec = sqlite3_errcode(db);

	return evs__err(ec == SQLITE_NOMEM ? EVS_ENOMEM : ec == SQLITE_FULL ? EVS_ENOSPC : EVS_EIO,
			"read model %s: %s: %s", p->db_path, what, sqlite3_errmsg(db));
}

static int read_checkpoint(proj *p, uint64_t *pos, uint64_t *hash)
{
	sqlite3_stmt *st;
	int rc;

	*pos = 0;
	*hash = 0;
	if (sqlite3_prepare_v2(p->db, "SELECT position, definition_hash FROM evs_projection "
			       "WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
		return db_err(p, p->db, "read checkpoint");
	sqlite3_bind_text(st, 1, p->name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*pos = (uint64_t)sqlite3_column_int64(st, 0);
		*hash = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(p, p->db, "read checkpoint");
}

static int write_checkpoint(proj *p, uint64_t pos)
{
	char q[256];

	snprintf(q, sizeof(q), "INSERT INTO evs_projection (name, position, definition_hash) "
		 "VALUES (?1, %" PRIu64 ", %" PRIu64 ") ON CONFLICT (name) DO UPDATE SET "
		 "position = excluded.position, definition_hash = excluded.definition_hash, "
		 "starts = 0",
		 pos, p->hash);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(p->db, q, -1, &st, NULL) != SQLITE_OK)
		return db_err(p, p->db, "write checkpoint");
	sqlite3_bind_text(st, 1, p->name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_err(p, p->db, "write checkpoint");
}

/* A progress handler: stops a statement after about 10^6 VM steps. */
static int try_budget(void *ctx)
{
	unsigned *steps = ctx;

	return ++*steps > 1000;
}

/* Opens (creating) the read model, runs setup, prepares everything. */
static int open_model(proj *p, section *sec, size_t nsec)
{
	char dir[4200];
	uint64_t pos, hash;
	int rc, count;

	snprintf(dir, sizeof(dir), "%s/readmodels", p->s->dir);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return evs__err_sys(errno, "create", dir);
	if (sqlite3_open_v2(p->db_path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return db_err(p, p->db, "open");
	if (strcmp(p->db_path, ":memory:") == 0) {
		/* evs__projection_try: text from a fuzzer may not reach files
		 * (ATTACH) or run for ever */
		sqlite3_limit(p->db, SQLITE_LIMIT_ATTACHED, 0);
		sqlite3_progress_handler(p->db, 1000, try_budget, &p->try_steps);
	}
	sqlite3_busy_timeout(p->db, 5000);
	if (sqlite3_exec(p->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			 "CREATE TABLE IF NOT EXISTS evs_projection (name TEXT PRIMARY KEY, "
			 "position INTEGER NOT NULL, definition_hash INTEGER NOT NULL, "
			 "starts INTEGER NOT NULL DEFAULT 0);"
			 "CREATE TABLE IF NOT EXISTS evs_parked (position INTEGER PRIMARY KEY, "
			 "stream TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, "
			 "error TEXT NOT NULL, attempts INTEGER NOT NULL)",
			 NULL, NULL, NULL) != SQLITE_OK)
		return db_err(p, p->db, "set up");
	if ((rc = read_checkpoint(p, &pos, &hash)) != 0)
		return rc;
	p->out_of_date = pos > 0 && hash != p->hash;
	p->checkpoint = pos;
	for (size_t i = 0; i < nsec; i++)
		if (sec[i].kind == SEC_SETUP &&
		    (rc = prepare_all(p, sec[i].sql, sec[i].line + 1, take_setup, NULL, &count)) != 0)
			return rc;
	/* a C projection's setup, before the SQL that may use its tables */
	if (p->is_c && p->c.setup) {
		if (sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			return db_err(p, p->db, "begin setup");
		int r = p->c.setup(p->db, p->c.ctx);
		if (r || sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			rc = evs__err(EVS_EINVAL, "projection '%s': setup %s %d: %s", p->name,
				      r ? "returned" : "could not commit, code",
				      r ? r : sqlite3_errcode(p->db), sqlite3_errmsg(p->db));
			sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
	}
	for (size_t i = 0; i < nsec; i++) {
		if (sec[i].kind == SEC_ON) {
			char *types = sec[i].arg, *save = NULL;
			if (!*types)
				return evs__err(EVS_EINVAL, "%s:%d: '-- on:' names no event type",
						p->path, sec[i].line);
			for (char *t = strtok_r(types, ", \t", &save); t; t = strtok_r(NULL, ", \t",
										       &save)) {
				size_t tl;
				if (strcmp(t, "*") != 0 && evs__check_type_name(t, &tl) != 0)
					return evs__err(EVS_EINVAL, "%s:%d: bad event type '%s'",
							p->path, sec[i].line, t);
				handler *h = handler_for(p, t);
				if (!h)
					return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
				if ((rc = prepare_all(p, sec[i].sql, sec[i].line + 1, take_handler, h,
						      &count)) != 0)
					return rc;
				if (count == 0)
					return evs__err(EVS_EINVAL, "%s:%d: the handler of '%s' has no "
							"statement", p->path, sec[i].line, t);
			}
		} else if (sec[i].kind == SEC_QUERY) {
			pquery *q = evs__realloc(p->q, (p->nq + 1) * sizeof(*q));
			if (!q)
				return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
			p->q = q;
			q = &p->q[p->nq++];
			memset(q, 0, sizeof(*q));
			if (!(q->name = evs__strdup(sec[i].arg)))
				return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
			if (!*q->name)
				return evs__err(EVS_EINVAL, "%s:%d: '-- query:' has no name", p->path,
						sec[i].line);
			for (size_t k = 0; k + 1 < p->nq; k++)
				if (strcmp(p->q[k].name, q->name) == 0)
					return evs__err(EVS_EINVAL, "%s:%d: a second query '%s'",
							p->path, sec[i].line, q->name);
			if ((rc = prepare_all(p, sec[i].sql, sec[i].line + 1, take_query, q,
					      &count)) != 0)
				return rc;
			if (!q->sql)
				return evs__err(EVS_EINVAL, "%s:%d: query '%s' has no statement",
						p->path, sec[i].line, q->name);
		}
	}
	/* the subscription's filter: every type a handler or apply takes */
	p->all_types = p->is_c && p->c.ntypes == 0;
	for (size_t i = 0; i < p->nh; i++)
		if (strcmp(p->h[i].type, "*") == 0)
			p->all_types = true;
	if (!(p->types = evs__calloc(p->nh + p->c.ntypes + 1, sizeof(*p->types))))
		return evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
	for (size_t i = 0; i < p->nh; i++)
		p->types[p->ntypes++] = p->h[i].type;
	for (size_t i = 0; p->is_c && i < p->c.ntypes; i++)
		p->types[p->ntypes++] = p->ctypes[i];
	return 0;
}

/*
 * Compiles projection text (`text`, `size` bytes, from `path`: a file, or
 * a C projection's label) over the read model readmodels/<name><suffix>;
 * `def` for a C projection, else NULL.  Not registered in the store.
 */
static int load_text(evs_store *s, const char *path, const char *text, size_t size,
		     const evs_projection_def *def, const evs_projection_options *o,
		     const char *suffix, proj **out)
{
	evs_projection_options opts = EVS_PROJECTION_OPTIONS_INIT;
	section *sec = NULL;
	size_t nsec = 0;
	char *name = NULL;
	proj *p;
	int rc;

	*out = NULL;
	if (o) {
		if (o->version < 1 || o->version > EVS_PROJECTION_OPTIONS_VERSION)
			return evs__err(EVS_EINVAL, "projection %s: options version %d, expected 1 "
					"to %d", path, o->version, EVS_PROJECTION_OPTIONS_VERSION);
		/* a version 1 struct ends before max_latency_ms */
		memcpy(&opts, o, o->version == 1 ? offsetof(evs_projection_options, max_latency_ms)
						 : sizeof(opts));
		opts.version = EVS_PROJECTION_OPTIONS_VERSION;
	}
	if (!opts.max_latency_ms)
		opts.max_latency_ms = DEFAULT_MAX_LATENCY_MS;
	if (!opts.batch_size)
		opts.batch_size = DEFAULT_BATCH;
	if (!opts.max_retries)
		opts.max_retries = DEFAULT_RETRIES;
	if (!(p = evs__calloc(1, sizeof(*p))))
		return evs__err(EVS_ENOMEM, "out of memory loading %s", path);
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->qmu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->s = s;
	p->opts = opts;
	p->hash = fnv(text, size);
	if (!(p->path = evs__strdup(path))) {
		rc = evs__err(EVS_ENOMEM, "out of memory loading %s", path);
		goto fail;
	}
	if (def) {
		/* the definition is the text and the callbacks' version */
		char v[32];
		int vn = snprintf(v, sizeof(v), "\nC%" PRIu32, def->definition_version);
		p->hash = fnv(v, (size_t)vn) ^ p->hash;
		p->is_c = true;
		p->c = *def;
		p->c.types = NULL;
		p->c.sql = NULL;
		if (def->ntypes && !(p->ctypes = evs__calloc(def->ntypes, sizeof(*p->ctypes)))) {
			rc = evs__err(EVS_ENOMEM, "out of memory loading %s", path);
			goto fail;
		}
		for (size_t i = 0; i < def->ntypes; i++) {
			size_t tl;
			if (!def->types || !def->types[i] ||
			    evs__check_type_name(def->types[i], &tl) != 0) {
				p->c.ntypes = i;
				rc = evs__err(EVS_EINVAL, "%s: bad event type '%s' in types[%zu]", path,
					      def->types && def->types[i] ? def->types[i] : "(null)", i);
				goto fail;
			}
			if (!(p->ctypes[i] = evs__strdup(def->types[i]))) {
				p->c.ntypes = i;
				rc = evs__err(EVS_ENOMEM, "out of memory loading %s", path);
				goto fail;
			}
		}
		if (!(p->csql = evs__strdup(text))) {
			rc = evs__err(EVS_ENOMEM, "out of memory loading %s", path);
			goto fail;
		}
		/* the copies, for a rebuild's twin */
		p->c.types = (const char *const *)p->ctypes;
		p->c.sql = p->csql;
	}
	const char *nul = memchr(text, '\0', size);
	if (nul) {
		rc = evs__err(EVS_EINVAL, "%s: a NUL byte at offset %zu (not a text file?)", path,
			      (size_t)(nul - text));
		goto fail;
	}
	if ((rc = split(p, text, &sec, &nsec, &name)) != 0)
		goto fail;
	if (def) {
		if (name && strcmp(name, def->name) != 0) {
			rc = evs__err(EVS_EINVAL, "%s: its sql names the projection '%s'", path, name);
			evs__free(name);
			goto fail;
		}
		evs__free(name);
		name = evs__strdup(def->name);
	} else if (!name) {
		const char *b = strrchr(path, '/');
		b = b ? b + 1 : path;
		size_t bl = strlen(b);
		if (bl > 4 && strcmp(b + bl - 4, ".sql") == 0)
			bl -= 4;
		if ((name = evs__malloc(bl + 1))) {
			memcpy(name, b, bl);
			name[bl] = '\0';
		}
	}
	p->name = name;
	if (def)
		p->c.name = name;
	if (!name || !*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789_-") != strlen(name)) {
		rc = evs__err(EVS_EINVAL, "%s: the projection's name '%s' must be letters, digits, "
			      "'_' and '-'", path, name ? name : "");
		goto fail;
	}
	size_t dl = strlen(s->dir) + strlen(name) + (suffix ? strlen(suffix) : 0) + 20;
	if (!(p->db_path = evs__malloc(dl))) {
		rc = evs__err(EVS_ENOMEM, "out of memory loading %s", path);
		goto fail;
	}
	if (suffix)
		snprintf(p->db_path, dl, "%s/readmodels/%s%s", s->dir, name, suffix);
	else
		snprintf(p->db_path, dl, ":memory:");
	if ((rc = open_model(p, sec, nsec)) != 0)
		goto fail;
	sections_free(sec, nsec);
	*out = p;
	return 0;
fail:
	sections_free(sec, nsec);
	proj_free(p);
	return rc;
}

int evs__projection_try(evs_store *s, const char *text, size_t size)
{
	proj *p;
	int rc = load_text(s, "try.sql", text, size, NULL, NULL, NULL, &p);

	if (rc == 0)
		proj_free(p);
	return rc;
}

/* Reads and compiles the file at `path`, as load_text. */
static int load_proj(evs_store *s, const char *path, const evs_projection_options *o,
		     const char *suffix, proj **out)
{
	size_t size;
	char *text = NULL;
	int rc;

	*out = NULL;
	if ((rc = evs__need("evs_projection_load", "store", s != NULL, "path", path != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	FILE *f = fopen(path, "rb");
	if (!f)
		return evs__err(EVS_EINVAL, "projection %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	size = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	if (!(text = evs__malloc(size + 1))) {
		fclose(f);
		return evs__err(EVS_ENOMEM, "projection %s: out of memory reading it", path);
	}
	if (fread(text, 1, size, f) != size) {
		evs__free(text);
		fclose(f);
		return evs__err(EVS_EIO, "projection %s: cannot read it", path);
	}
	fclose(f);
	text[size] = '\0';
	rc = load_text(s, path, text, size, NULL, o, suffix, out);
	evs__free(text);
	return rc;
}

/* A C projection's twin or first load, as load_text. */
static int load_def(evs_store *s, const evs_projection_def *def,
		    const evs_projection_options *o, const char *suffix, proj **out)
{
	char label[300];
	const char *sql;
	int rc;

	*out = NULL;
	if ((rc = evs__need("evs_projection_register", "store", s != NULL, "def", def != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	if (def->version != EVS_PROJECTION_DEF_VERSION)
		return evs__err(EVS_EINVAL, "evs_projection_register: definition version %d, "
				"expected %d", def->version, EVS_PROJECTION_DEF_VERSION);
	if (!def->name || !def->apply)
		return evs__err(EVS_EINVAL, "evs_projection_register: a C projection needs a name "
				"and an apply callback");
	snprintf(label, sizeof(label), "C projection %.200s", def->name);
	sql = def->sql ? def->sql : "";
	return load_text(s, label, sql, strlen(sql), def, o, suffix, out);
}

static evs__projections *registry(evs_store *s)
{
	evs__projections *r = s->projections;

	if (r)
		return r;
	if (!(r = evs__calloc(1, sizeof(*r))))
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	s->projections = r;
	return r;
}

static int add_proj(evs_store *s, proj *p, const char **name_out)
{
	evs__projections *r;
	int rc;

	if (find_proj(s, p->name)) {
		rc = evs__err(EVS_EINVAL, "%s: a projection named '%s' is loaded already", p->path,
			      p->name);
		goto fail;
	}
	if (!(r = registry(s))) {
		rc = evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
		goto fail;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 8;
		proj **np = evs__realloc(r->p, cap * sizeof(*np));
		if (!np) {
			rc = evs__err(EVS_ENOMEM, "out of memory loading %s", p->path);
			goto fail;
		}
		r->p = np;
		r->cap = cap;
	}
	r->p[r->n++] = p;
	p->reg = r;
	if (name_out)
		*name_out = p->name;
	return 0;
fail:
	proj_free(p);
	return rc;
}

int evs_projection_load(evs_store *s, const char *path, const evs_projection_options *o,
			const char **name_out)
{
	proj *p;
	int rc;

	evs__err_clear();
	if (name_out)
		*name_out = NULL;
	if ((rc = load_proj(s, path, o, ".db", &p)) != 0)
		return rc;
	return add_proj(s, p, name_out);
}

int evs_projection_register(evs_store *s, const evs_projection_def *def,
			    const evs_projection_options *o, const char **name_out)
{
	proj *p;
	int rc;

	evs__err_clear();
	if (name_out)
		*name_out = NULL;
	if ((rc = load_def(s, def, o, ".db", &p)) != 0)
		return rc;
	return add_proj(s, p, name_out);
}

int evs_projections_set_workers(evs_store *s, unsigned max)
{
	evs__projections *r;

	evs__err_clear();
	if (!s)
		return evs__err(EVS_EINVAL, "evs_projections_set_workers: no store");
	if (!(r = registry(s)))
		return evs__err(EVS_ENOMEM, "out of memory");
	pthread_mutex_lock(&r->mu);
	r->max_workers = max;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return 0;
}

/* ---- the worker ---- */

/*
 * Worker slots: at most max_workers projections apply events at once.  A
 * worker takes one before it opens a transaction and gives it back when
 * the transaction ends, so none waits for a slot while it holds one.
 */
static void slot_take(proj *p)
{
	evs__projections *r = p->reg;

	if (!r || p->has_slot)
		return;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		unsigned max = r->max_workers;
		if (!max) {
			long n = sysconf(_SC_NPROCESSORS_ONLN);
			max = n > 0 ? (unsigned)n : 1;
		}
		if (r->active < max || r->stopping)
			break;
		pthread_cond_wait(&r->cv, &r->mu);
	}
	r->active++;
	pthread_mutex_unlock(&r->mu);
	p->has_slot = true;
}

static void slot_give(proj *p)
{
	evs__projections *r = p->reg;

	if (!r || !p->has_slot)
		return;
	pthread_mutex_lock(&r->mu);
	r->active--;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	p->has_slot = false;
}

/* What runs for an event of `type`: its own handler, the '*' one, and
 * whether the C projection's apply takes it. */
typedef struct targets {
	handler *hs[2];
	bool c;
} targets;

static bool targets_for(proj *p, const char *type, targets *t)
{
	t->hs[0] = t->hs[1] = NULL;
	t->c = false;
	for (size_t i = 0; i < p->nh; i++) {
		if (strcmp(p->h[i].type, type) == 0)
			t->hs[0] = &p->h[i];
		else if (strcmp(p->h[i].type, "*") == 0)
			t->hs[1] = &p->h[i];
	}
	if (p->is_c) {
		t->c = p->c.ntypes == 0;
		for (size_t i = 0; i < p->c.ntypes && !t->c; i++)
			t->c = strcmp(p->ctypes[i], type) == 0;
	}
	return t->hs[0] || t->hs[1] || t->c;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_checkpoint(proj *p, uint64_t pos)
{
	double now = mono_s();

	pthread_mutex_lock(&p->mu);
	/* the rate over the work since the last measure, a second or more */
	if (p->rate_t0 == 0) {
		p->rate_t0 = now;
		p->rate_n = 0;
	} else if (now - p->rate_t0 >= 1.0) {
		p->rate = (double)p->rate_n / (now - p->rate_t0);
		p->rate_at = now;
		p->rate_t0 = now;
		p->rate_n = 0;
	}
	p->checkpoint = pos;
	p->last_commit = now;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static int commit(proj *p, uint64_t pos)
{
	if (!p->in_tx && pos <= p->checkpoint)
		return 0;
	if (!p->in_tx)
		slot_take(p);
	if (!p->in_tx && sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(p, p->db, "begin");
	p->in_tx = true;
	int rc = write_checkpoint(p, pos);
	if (!rc && sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(p, p->db, "commit");
	if (rc) {
		sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
		p->in_tx = false;
		slot_give(p);
		return rc;
	}
	p->in_tx = false;
	p->pending = 0;
	p->careful = false;
	slot_give(p);
	set_checkpoint(p, pos);
	return 0;
}

static void fail_worker(proj *p, int rc)
{
	if (p->in_tx)
		sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
	p->in_tx = false;
	slot_give(p);
	char prefix[300];
	int pn = snprintf(prefix, sizeof(prefix), "projection '%s': ", p->name);
	const char *msg = evs_errmsg();
	pthread_mutex_lock(&p->mu);
	p->failed = rc;
	/* a message of apply's names the projection already */
	snprintf(p->errmsg, sizeof(p->errmsg), "%s%s",
		 strncmp(msg, prefix, (size_t)pn) == 0 ? "" : prefix, msg);
	pthread_cond_broadcast(&p->cv); /* queries waiting for it: it will not come */
	pthread_mutex_unlock(&p->mu);
}

/* The subscription under a worker ended on a read error. */
static void worker_ended(void *ctx, int rc)
{
	fail_worker(ctx, rc);
}

/* Puts the event in evs_parked with `error` (in the open transaction). */
static int park_event(proj *p, const evs_event *ev, const char *type, const char *error,
		      uint32_t attempts)
{
	char err[1024];
	sqlite3_stmt *st;
	int rc;

	snprintf(err, sizeof(err), "%s", error);
	if (sqlite3_prepare_v2(p->db, "INSERT OR REPLACE INTO evs_parked (position, stream, "
			       "version, type, error, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
			       -1, &st, NULL) != SQLITE_OK)
		return db_err(p, p->db, "park an event");
	sqlite3_bind_int64(st, 1, (int64_t)ev->position);
	sqlite3_bind_text(st, 2, ev->stream, (int)ev->stream_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)ev->version);
	sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, err, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, attempts);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(p, p->db, "park an event");
	sqlite3_finalize(st);
	if (!rc)
		evs__err_clear();
	return rc;
}

static char *put_digits(char *o, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		o[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return o + n;
}

/* :time, the timestamp t (µs since the epoch) as UTC ISO 8601 text with
 * microseconds, 1970-01-01T00:00:00.000000Z, into out[32]; its length.
 * (snprintf would cost more than some handlers.)  The text up to the
 * second is kept in p for the next event, which is mostly of the same
 * second. */
static int format_time(proj *p, char *out, int64_t t)
{
	int64_t sec = t / 1000000, us = t % 1000000;
	struct tm tm;
	time_t tt;
	char *o = out;

	if (us < 0) {
		us += 1000000;
		sec--;
	}
	if (p->time_ok && sec == p->time_sec) {
		memcpy(out, p->time_prefix, 19);
		o = out + 19;
		goto fraction;
	}
	tt = (time_t)sec;
	if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return snprintf(out, 32, "%s", t < 0 ? "0000-01-01T00:00:00.000000Z" :
				"9999-12-31T23:59:59.999999Z");
	o = put_digits(o, (unsigned)(tm.tm_year + 1900), 4);
	*o++ = '-';
	o = put_digits(o, (unsigned)tm.tm_mon + 1, 2);
	*o++ = '-';
	o = put_digits(o, (unsigned)tm.tm_mday, 2);
	*o++ = 'T';
	o = put_digits(o, (unsigned)tm.tm_hour, 2);
	*o++ = ':';
	o = put_digits(o, (unsigned)tm.tm_min, 2);
	*o++ = ':';
	o = put_digits(o, (unsigned)tm.tm_sec, 2);
	memcpy(p->time_prefix, out, 19);
	p->time_sec = sec;
	p->time_ok = true;
fraction:
	*o++ = '.';
	o = put_digits(o, (unsigned)us, 6);
	*o++ = 'Z';
	*o = 0;
	return (int)(o - out);
}

#define MEMBERS 32

/* The data's top-level members, indexed once per event when a handler
 * first binds one (n: SIZE_MAX before that). */
typedef struct members {
	const char *data;
	size_t len, n;
	evs__json_span m[MEMBERS];
} members;

/* Binds @name, the data's member name, to parameter i of st. */
static int bind_field(proj *p, sqlite3_stmt *st, int i, const char *name, members *d)
{
	size_t name_len = strlen(name), k;
	evs__json_value v;
	int r = 0;

	if (d->n == SIZE_MAX)
		d->n = evs__json_members(d->data, d->len, d->m, MEMBERS);
	for (k = 0; k < d->n && k < MEMBERS; k++)
		if (d->m[k].key_len == name_len && memcmp(d->m[k].key, name, name_len) == 0)
			break;
	if (k < d->n && k < MEMBERS)
		r = evs__json_span_value(&d->m[k], &v);
	else if (d->n > MEMBERS)
		r = evs__json_member(d->data, d->len, name, name_len, &v);
	else
		v.kind = EVS__JSON_MISSING;
	if (r)
		return evs__err(EVS_ENOMEM, "projection '%s': out of memory reading @%s",
				p->name, name);
	switch (v.kind) {
	case EVS__JSON_MISSING:
	case EVS__JSON_NULL:
		sqlite3_bind_null(st, i);
		break;
	case EVS__JSON_FALSE:
	case EVS__JSON_TRUE:
	case EVS__JSON_INTEGER:
		sqlite3_bind_int64(st, i, v.i);
		break;
	case EVS__JSON_REAL:
		sqlite3_bind_double(st, i, v.r);
		break;
	case EVS__JSON_STRING:
	case EVS__JSON_CONTAINER:
		if (v.owned)
			sqlite3_bind_text(st, i, v.owned, (int)v.len, evs__free);
		else
			sqlite3_bind_text(st, i, v.text, (int)v.len, SQLITE_STATIC);
		break;
	}
	return 0;
}

/* Runs the handlers hs[0..2) for one event, with its parameters bound;
 * the first failure's code, its message naming file, line and event. */
static int run_once(proj *p, const targets *t, const evs_event *ev, const char *type,
		    uint32_t version, const char *data_text)
{
	const char *data = data_text ? data_text : ev->data;
	size_t data_len = data_text ? strlen(data_text) : ev->data_len;
	members d;
	char id[37], time[32];
	int id_len = 0, time_len = 0;
	int rc = 0;

	d.data = data;
	d.len = data_len;
	d.n = SIZE_MAX;
	for (int w = 0; w < 2 && !rc; w++) {
		handler *h = t->hs[w];
		for (size_t k = 0; h && k < h->n && !rc; k++) {
			sqlite3_stmt *st = h->st[k].st;
			int np = h->st[k].np;
			for (int i = 1; i <= np && !rc; i++) {
				switch (h->st[k].map[i - 1]) {
				case P_STREAM:
					sqlite3_bind_text(st, i, ev->stream, (int)ev->stream_len, SQLITE_STATIC);
					break;
				case P_VERSION:
					sqlite3_bind_int64(st, i, (int64_t)ev->version);
					break;
				case P_POSITION:
					sqlite3_bind_int64(st, i, (int64_t)ev->position);
					break;
				case P_TYPE:
					sqlite3_bind_text(st, i, ev->type, (int)ev->type_len, SQLITE_STATIC);
					break;
				case P_SCHEMA_VERSION:
					sqlite3_bind_int64(st, i, version);
					break;
				case P_EVENT_ID:
					if (!id_len) {
						evs_uuid_format(id, ev->id);
						id_len = 36;
					}
					sqlite3_bind_text(st, i, id, id_len, SQLITE_STATIC);
					break;
				case P_TIMESTAMP:
					sqlite3_bind_int64(st, i, ev->timestamp_us);
					break;
				case P_TIME:
					if (!time_len)
						time_len = format_time(p, time, ev->timestamp_us);
					sqlite3_bind_text(st, i, time, time_len, SQLITE_STATIC);
					break;
				case P_DATA:
					sqlite3_bind_text(st, i, data, (int)data_len, SQLITE_STATIC);
					break;
				case P_FIELD:
					rc = bind_field(p, st, i, h->st[k].field[i - 1], &d);
					break;
				case P_METADATA:
					if (ev->metadata_len)
						sqlite3_bind_text(st, i, ev->metadata, (int)ev->metadata_len,
								  SQLITE_STATIC);
					else
						sqlite3_bind_null(st, i);
					break;
				}
			}
			if (rc) {
				sqlite3_clear_bindings(st);
				break;
			}
			int r = sqlite3_step(st);
			while (r == SQLITE_ROW)
				r = sqlite3_step(st);
			if (r != SQLITE_DONE)
				rc = evs__err(r == SQLITE_NOMEM ? EVS_ENOMEM : EVS_EINVAL,
					      "%s:%d: on %s at stream '%.*s' version %" PRIu64
					      " (position %" PRIu64 "): %s", p->path, h->st[k].line, type,
					      (int)ev->stream_len, ev->stream, ev->version, ev->position,
					      sqlite3_errmsg(p->db));
			/* the bindings stay until the next event's replace them all:
			 * clearing them would cost as much as some handlers */
			sqlite3_reset(st);
		}
	}
	if (!rc && t->c) {
		/* the event as apply sees it: upcast */
		evs_event up = *ev;
		if (data_text) {
			up.data = data_text;
			up.data_len = strlen(data_text);
		}
		up.schema_version = version;
		int r = p->c.apply(p->db, &up, p->c.ctx);
		if (r) {
			int ec = sqlite3_errcode(p->db);
			rc = evs__err(EVS_EINVAL, "projection '%s': apply returned %d on %s at stream "
				      "'%.*s' version %" PRIu64 " (position %" PRIu64 ")%s%s", p->name,
				      r, type, (int)ev->stream_len, ev->stream, ev->version,
				      ev->position, ec != SQLITE_OK && ec != SQLITE_ROW &&
				      ec != SQLITE_DONE ? ": " : "",
				      ec != SQLITE_OK && ec != SQLITE_ROW && ec != SQLITE_DONE ?
				      sqlite3_errmsg(p->db) : "");
		}
	}
	return rc;
}

/* Runs the savepoint statement k (0 SAVEPOINT, 1 RELEASE, 2 ROLLBACK TO),
 * prepared once: per event, parsing them would cost more than most
 * handlers. */
static int sp_run(proj *p, int k)
{
	static const char *const sql[3] = {
		"SAVEPOINT evs_event", "RELEASE evs_event", "ROLLBACK TO evs_event",
	};
	int rc;

	if (!p->sp[k] && sqlite3_prepare_v2(p->db, sql[k], -1, &p->sp[k], NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(p->sp[k]);
	sqlite3_reset(p->sp[k]);
	return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * Applies one event inside a savepoint, so that a failure undoes only its
 * own changes: retried max_retries times (1 ms apart, doubling), then
 * parked (the event and the error in evs_parked) or failed.
 */
static int run_handlers(proj *p, const targets *t, const evs_event *ev, const char *type,
			uint32_t version, const char *data_text)
{
	char err[1024];
	int rc = 0;

	if (p->optimistic) {
		/* a savepoint per event costs as much as a small handler; a
		 * failure here only marks the pass to be done again with them */
		rc = run_once(p, t, ev, type, version, data_text);
		if (rc == 0 && sqlite3_get_autocommit(p->db))
			rc = evs__err(EVS_EINVAL, "projection '%s': a handler ended the transaction",
				      p->name);
		p->redo = rc != 0;
		return rc;
	}
	for (uint32_t attempt = 0; attempt <= p->opts.max_retries; attempt++) {
		if (attempt) {
			long ms = 1L << (attempt - 1 < 7 ? attempt - 1 : 7);
			struct timespec nap = { ms / 1000, (ms % 1000) * 1000000L };
			nanosleep(&nap, NULL);
		}
		if (sp_run(p, 0) != 0)
			return db_err(p, p->db, "savepoint");
		rc = run_once(p, t, ev, type, version, data_text);
		if (rc == 0 && sqlite3_get_autocommit(p->db)) {
			p->in_tx = false;
			return evs__err(EVS_EINVAL, "projection '%s': the handler of '%s' ended the "
					"batch's transaction at stream '%.*s' version %" PRIu64
					" (a handler must not COMMIT or ROLLBACK)", p->name, type,
					(int)ev->stream_len, ev->stream, ev->version);
		}
		if (rc == 0)
			return sp_run(p, 1) == 0 ? 0 : db_err(p, p->db, "release");
		if (sqlite3_get_autocommit(p->db)) {
			/* SQLite rolled the whole batch back (out of memory, disk
			 * full ...): the events before this one are undone too, so
			 * neither a retry nor parking may go on from here.  The
			 * worker stops; a restart resumes at the checkpoint. */
			p->in_tx = false;
			return rc;
		}
		sp_run(p, 2);
		sp_run(p, 1);
	}
	if (!p->opts.park)
		return rc;
	snprintf(err, sizeof(err), "%s", evs_errmsg());
	return park_event(p, ev, type, err, p->opts.max_retries + 1);
}

/* The event's type as a string, cut to type[256] (a type is at most 255
 * bytes). */
static void copy_type(char type[256], const evs_event *ev)
{
	size_t n = ev->type_len < 255 ? ev->type_len : 255;

	memcpy(type, ev->type, n);
	type[n] = 0;
}

static int apply_event(const evs_event *ev, void *ctx)
{
	proj *p = ctx;
	char type[256];
	json_t *up = NULL;
	char *data_text = NULL;
	uint32_t version = ev->schema_version;
	targets t;
	int rc = 0;

	if (p->failed)
		return 1;
	copy_type(type, ev);
	if (!targets_for(p, type, &t))
		return 0;
	if (evs__upcasters_has(p->s->upcasters, ev->type, ev->type_len, ev->schema_version)) {
		if ((rc = evs_upcast(p->s, ev, &up, &version)) != 0 ||
		    !(data_text = evs__json_dumps(up))) {
			json_decref(up);
			fail_worker(p, rc ? rc : evs__err(EVS_ENOMEM, "out of memory upcasting"));
			return 1;
		}
	}
	if (!p->in_tx) {
		slot_take(p);
		if (sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
			rc = db_err(p, p->db, "begin");
			goto out;
		}
		p->tx_t0 = mono_s();
		/* busy again after a rest: the rate's window starts now */
		pthread_mutex_lock(&p->mu);
		if (p->tx_t0 - p->last_commit > 1.0) {
			p->rate_t0 = p->tx_t0;
			p->rate_n = 0;
		}
		pthread_mutex_unlock(&p->mu);
	}
	p->in_tx = true;
	if (p->suspect) {
		/* the process died this many times applying this event */
		rc = evs__err(EVS_EFAILED, "%s: the process stopped %d times while applying the "
			      "event at stream '%.*s' version %" PRIu64 " (position %" PRIu64 ")",
			      p->path, p->suspect, (int)ev->stream_len, ev->stream, ev->version,
			      ev->position);
		p->suspect = 0;
		if (p->opts.park)
			rc = park_event(p, ev, type, evs_errmsg(), p->opts.max_retries + 1);
	} else {
		rc = run_handlers(p, &t, ev, type, version, data_text);
	}
	if (!rc) {
		p->applied = ev->position;
		p->rate_n++;
		if (++p->pending >= p->opts.batch_size || p->careful ||
		    (mono_s() - p->tx_t0) * 1000.0 >= p->opts.max_latency_ms)
			rc = commit(p, ev->position);
	}
out:
	json_decref(up);
	if (data_text) {
		json_free_t jfree;
		json_get_alloc_funcs(NULL, &jfree);
		jfree(data_text);
	}
	if (rc) {
		fail_worker(p, rc);
		return 1;
	}
	return 0;
}

/* Caught up: commit, with the checkpoint past every event looked at. */
static void caught_up(void *ctx, uint64_t next)
{
	proj *p = ctx;
	int rc;

	if (p->failed)
		return;
	if (next > 1 && (rc = commit(p, next - 1)) != 0) {
		fail_worker(p, rc);
		return;
	}
	slot_give(p);
	/* caught up without dying: this start was not a crash loop (an idle
	 * process killed again and again must not count against the next
	 * event) */
	if (p->starts_dirty) {
		sqlite3_exec(p->db, "UPDATE evs_projection SET starts = 0", NULL, NULL, NULL);
		p->starts_dirty = false;
	}
}

static int rebuild_model(proj *p)
{
	/* the file changed: the rows it built are wrong; empty every table
	 * but the checkpoint, which starts over */
	sqlite3_stmt *st;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	if (sqlite3_prepare_v2(p->db, "SELECT name FROM sqlite_master WHERE type = 'table' AND "
			       "name NOT LIKE 'sqlite_%' AND name != 'evs_projection'", -1, &st,
			       NULL) != SQLITE_OK)
		return db_err(p, p->db, "list tables");
	while (sqlite3_step(st) == SQLITE_ROW) {
		char **nn = evs__realloc(names, (n + 1) * sizeof(*nn));
		if (!nn)
			break;
		names = nn;
		names[n++] = evs__strdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	for (size_t i = 0; i < n && !rc; i++) {
		char *q = sqlite3_mprintf("DELETE FROM \"%w\"", names[i] ? names[i] : "");
		if (!q || sqlite3_exec(p->db, q, NULL, NULL, NULL) != SQLITE_OK)
			rc = db_err(p, p->db, "empty the read model");
		sqlite3_free(q);
	}
	if (!rc && sqlite3_exec(p->db, "DELETE FROM evs_projection", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(p, p->db, "reset the checkpoint");
	sqlite3_exec(p->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		evs__free(names[i]);
	evs__free(names);
	if (!rc) {
		pthread_mutex_lock(&p->mu);
		p->out_of_date = false;
		pthread_mutex_unlock(&p->mu);
		set_checkpoint(p, 0);
	}
	return rc;
}

/*
 * Counts this start in the read model, durably: `starts` says how many
 * workers started since the checkpoint last moved.  A clean stop resets
 * it; a crash does not.  So more than one means the last run died before
 * committing anything; the worker then commits event by event, which
 * pins the crash to the first event after the checkpoint, and after
 * max_retries + 1 such starts that event is parked (or the worker stops)
 * instead of crashing the process again.
 */
static int count_start(proj *p, int *starts)
{
	sqlite3_stmt *st;
	char q[512];
	int rc;

	snprintf(q, sizeof(q), "INSERT INTO evs_projection (name, position, definition_hash, "
		 "starts) VALUES (?1, %" PRIu64 ", %" PRIu64 ", 1) ON CONFLICT (name) DO UPDATE "
		 "SET starts = starts + 1 RETURNING starts", p->checkpoint, p->hash);
	if (sqlite3_prepare_v2(p->db, q, -1, &st, NULL) != SQLITE_OK)
		return db_err(p, p->db, "count a start");
	sqlite3_bind_text(st, 1, p->name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*starts = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_err(p, p->db, "count a start");
}

int evs_projections_start(evs_store *s)
{
	evs__projections *r;
	int rc = 0;

	evs__err_clear();
	if (!s)
		return evs__err(EVS_EINVAL, "evs_projections_start: no store");
	r = s->projections;
	for (size_t i = 0; r && i < r->n && !rc; i++) {
		proj *p = r->p[i];
		evs_subscribe_options so = EVS_SUBSCRIBE_OPTIONS_INIT;

		if (p->sub)
			continue;
		if (p->out_of_date) {
			if (!p->opts.rebuild_if_changed) {
				rc = evs__err(EVS_EINVAL, "projection '%s': its read model %s was built "
					      "by another version of %s; rebuild it "
					      "(rebuild_if_changed) or serve it without starting",
					      p->name, p->db_path, p->path);
				break;
			}
			if ((rc = rebuild_model(p)) != 0)
				break;
		}
		pthread_mutex_lock(&p->mu);
		p->failed = 0;
		pthread_mutex_unlock(&p->mu);
		int starts = 0;
		if ((rc = count_start(p, &starts)) != 0)
			break;
		p->careful = starts > 1;
		p->starts_dirty = true;
		p->suspect = starts > (int)p->opts.max_retries + 1 ? starts - 1 : 0;
		so.from = p->checkpoint + 1;
		/* only the handled types, unless something takes every type */
		if (!p->all_types) {
			so.filter.types = p->types;
			so.filter.ntypes = p->ntypes;
		}
		rc = evs__subscribe_ex(&p->sub, s, &so, apply_event, caught_up, worker_ended, p);
		pthread_mutex_lock(&p->mu);
		p->running = rc == 0;
		pthread_mutex_unlock(&p->mu);
	}
	return rc;
}

int evs_projections_stop(evs_store *s)
{
	evs__projections *r = s ? s->projections : NULL;
	int first = 0;
	char msg[1024] = "";

	if (!r)
		return 0;
	/* every worker told first, and none left waiting for a slot that a
	 * worker not yet joined holds */
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (size_t i = 0; i < r->n; i++)
		if (r->p[i]->sub)
			evs__subscription_ask_stop(r->p[i]->sub);
	for (size_t i = 0; i < r->n; i++) {
		proj *p = r->p[i];
		if (!p->sub)
			continue;
		int src = evs_subscription_stop(p->sub);
		p->sub = NULL;
		if (src && !p->failed)
			fail_worker(p, src);
		pthread_mutex_lock(&p->mu);
		p->running = false;
		pthread_mutex_unlock(&p->mu);
		if (!p->failed && p->in_tx) {
			int rc = commit(p, p->applied);
			if (rc)
				fail_worker(p, rc);
		}
		if (!p->failed)
			sqlite3_exec(p->db, "UPDATE evs_projection SET starts = 0", NULL, NULL, NULL);
		if (p->failed && !first) {
			first = p->failed;
			snprintf(msg, sizeof(msg), "%s", p->errmsg);
		}
	}
	pthread_mutex_lock(&r->mu);
	r->stopping = false;
	pthread_mutex_unlock(&r->mu);
	if (first)
		evs__err(first, "%s", msg);
	return first;
}

/* ---- connections for queries ---- */

/*
 * The authorizer of query connections: while an ad-hoc statement is
 * prepared or runs (when SQLite may prepare it again), reading, and
 * nothing else.
 */
static int read_only_auth(void *ctx, int action, const char *a, const char *b, const char *c,
			  const char *d)
{
	if (!((qconn *)ctx)->strict)
		return SQLITE_OK;
	(void)a;
	(void)c;
	(void)d;
	switch (action) {
	case SQLITE_FUNCTION:
		/* these change the connection or reach outside it */
		return b && (strcmp(b, "fts3_tokenizer") == 0 || strcmp(b, "load_extension") == 0)
		       ? SQLITE_DENY : SQLITE_OK;
	case SQLITE_SELECT:
	case SQLITE_READ:
	case SQLITE_RECURSIVE:
		return SQLITE_OK;
	default:
		return SQLITE_DENY;
	}
}


static int qconn_get(proj *p, qconn **out)
{
	qconn *c;

	pthread_mutex_lock(&p->qmu);
	if ((c = p->qfree))
		p->qfree = c->next;
	pthread_mutex_unlock(&p->qmu);
	if (c) {
		*out = c;
		return 0;
	}
	if (!(c = evs__calloc(1, sizeof(*c))) || !(c->st = evs__calloc(p->nq + 1, sizeof(*c->st)))) {
		evs__free(c);
		return evs__err(EVS_ENOMEM, "out of memory opening %s for queries", p->db_path);
	}
	if (sqlite3_open_v2(p->db_path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK ||
	    sqlite3_exec(c->db, "PRAGMA query_only=1", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "BEGIN", -1, &c->begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "SELECT position FROM evs_projection WHERE name = ?1", -1,
			       &c->pos, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "COMMIT", -1, &c->end, NULL) != SQLITE_OK) {
		int rc = db_err(p, c->db, "open for queries");
		qconn_close(c, p->nq);
		return rc;
	}
	sqlite3_busy_timeout(c->db, 5000);
	sqlite3_bind_text(c->pos, 1, p->name, -1, SQLITE_STATIC);
	/* no tokenizer pointers, no schema tricks; and the JSON table
	 * functions connected now, since connecting a virtual table declares
	 * it, which the authorizer refuses while an ad-hoc query runs */
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, (int *)NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	sqlite3_exec(c->db, "SELECT 1 FROM json_each('[]'); SELECT 1 FROM json_tree('[]')", NULL,
		     NULL, NULL);
	sqlite3_set_authorizer(c->db, read_only_auth, c);
	*out = c;
	return 0;
}

static void qconn_put(proj *p, qconn *c)
{
	size_t idle = 0;

	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_lock(&p->qmu);
	for (qconn *k = p->qfree; k; k = k->next)
		idle++;
	/* one still in a transaction (no memory to end it) is not kept */
	if (idle < MAX_IDLE_QCONNS && sqlite3_get_autocommit(c->db)) {
		c->next = p->qfree;
		p->qfree = c;
		c = NULL;
	}
	pthread_mutex_unlock(&p->qmu);
	if (c)
		qconn_close(c, p->nq);  /* a burst's extra connections */
}

static int step_once(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc;
}

/* Ends c's read transaction; false when it is still open (no memory). */
static bool read_end(qconn *c)
{
	if (step_once(c->end) != SQLITE_DONE && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return sqlite3_get_autocommit(c->db) != 0;
}

/*
 * Opens a read transaction on c in which the read model's checkpoint is
 * at least `min` (*pos: the checkpoint it sees), waiting up to `ms` for
 * it: woken by this process's worker, and polling every 5 ms for one in
 * another process.
 */
static int read_begin(proj *p, qconn *c, uint64_t min, uint32_t ms, uint64_t *pos)
{
	struct timespec until, now;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	for (;;) {
		int r;
		if (step_once(c->begin) != SQLITE_DONE)
			return db_err(p, c->db, "begin a query");
		r = sqlite3_step(c->pos);
		*pos = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(c->pos, 0) : 0;
		sqlite3_reset(c->pos);
		if (r != SQLITE_ROW && r != SQLITE_DONE) {
			int rc = db_err(p, c->db, "read the checkpoint");
			read_end(c);
			return rc;
		}
		if (*pos >= min)
			return 0;
		if (!read_end(c))
			return evs__err(EVS_ENOMEM, "read model %s: cannot end a query's transaction",
					p->db_path);
		/* this process's worker stopped on an error: no use waiting */
		pthread_mutex_lock(&p->mu);
		int failed = p->failed;
		if (failed)
			evs__err(failed, "projection '%s' is at position %" PRIu64 ", not yet %"
				 PRIu64 ", and its worker stopped: %s", p->name, *pos, min,
				 p->errmsg);
		pthread_mutex_unlock(&p->mu);
		if (failed)
			return failed;
		clock_gettime(CLOCK_REALTIME, &now);
		if (now.tv_sec > until.tv_sec ||
		    (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
			return evs__err(EVS_ETIMEOUT, "projection '%s' is at position %" PRIu64
					", not yet %" PRIu64 ", after %u ms", p->name, *pos, min, ms);
		now.tv_nsec += 5000000L;
		if (now.tv_nsec >= 1000000000L) {
			now.tv_sec++;
			now.tv_nsec -= 1000000000L;
		}
		if (now.tv_sec > until.tv_sec ||
		    (now.tv_sec == until.tv_sec && now.tv_nsec > until.tv_nsec))
			now = until;
		/* woken by this process's worker; else (a stale checkpoint in
		 * memory, or a worker elsewhere) the 5 ms poll */
		pthread_mutex_lock(&p->mu);
		pthread_cond_timedwait(&p->cv, &p->mu, &now);
		pthread_mutex_unlock(&p->mu);
	}
}

/* ---- parked events ---- */

int evs_projection_parked(evs_store *s, const char *name, json_t **rows_out)
{
	proj *p;
	sqlite3_stmt *st;
	json_t *rows;
	int r, rc;

	evs__err_clear();
	if ((rc = evs__need("evs_projection_parked", "store", s != NULL, "name", name != NULL,
			    "rows_out", rows_out != NULL, (const char *)NULL)) != 0)
		return rc;
	*rows_out = NULL;
	if (!(p = find_proj(s, name)))
		return evs__err(EVS_ENOTFOUND, "no projection '%s' is loaded", name);
	qconn *c;
	if ((r = qconn_get(p, &c)) != 0)
		return r;
	if (sqlite3_prepare_v2(c->db, "SELECT position, stream, version, type, error, attempts "
			       "FROM evs_parked ORDER BY position", -1, &st, NULL) != SQLITE_OK) {
		r = db_err(p, c->db, "list parked events");
		qconn_put(p, c);
		return r;
	}
	rows = json_array();
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(rows, json_pack("{s:I, s:s, s:I, s:s, s:s, s:I}",
			"position", (json_int_t)sqlite3_column_int64(st, 0),
			"stream", (const char *)sqlite3_column_text(st, 1),
			"version", (json_int_t)sqlite3_column_int64(st, 2),
			"type", (const char *)sqlite3_column_text(st, 3),
			"error", (const char *)sqlite3_column_text(st, 4),
			"attempts", (json_int_t)sqlite3_column_int64(st, 5)));
	sqlite3_finalize(st);
	if (r != SQLITE_DONE) {
		r = db_err(p, c->db, "list parked events");
		qconn_put(p, c);
		json_decref(rows);
		return r;
	}
	qconn_put(p, c);
	*rows_out = rows;
	return 0;
}

typedef struct replay_ctx {
	proj *p;
	uint64_t want;
	int rc;
	bool ok, seen;
} replay_ctx;

/* Applies the event at rc->want once, in the open transaction. */
static int replay_event(const evs_event *ev, void *ctx)
{
	replay_ctx *r = ctx;
	proj *p = r->p;
	char type[256];
	targets t;
	json_t *up = NULL;
	char *data_text = NULL;
	uint32_t version = ev->schema_version;

	r->seen = ev->position == r->want;
	if (!r->seen)
		return 1;
	copy_type(type, ev);
	targets_for(p, type, &t);
	if (evs__upcasters_has(p->s->upcasters, ev->type, ev->type_len, ev->schema_version) &&
	    ((r->rc = evs_upcast(p->s, ev, &up, &version)) != 0 ||
	     !(data_text = evs__json_dumps(up)))) {
		json_decref(up);
		if (!r->rc)
			r->rc = evs__err(EVS_ENOMEM, "out of memory upcasting");
		return 1;
	}
	r->rc = run_handlers(p, &t, ev, type, version, data_text);
	if (!r->rc) {
		/* parked again (it failed again), or applied? */
		sqlite3_stmt *st;
		r->ok = true;
		if (sqlite3_prepare_v2(p->db, "SELECT 1 FROM evs_parked WHERE position = ?1", -1,
				       &st, NULL) == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, (int64_t)ev->position);
			r->ok = sqlite3_step(st) != SQLITE_ROW;
			sqlite3_finalize(st);
		}
	}
	json_decref(up);
	if (data_text) {
		json_free_t jfree;
		json_get_alloc_funcs(NULL, &jfree);
		jfree(data_text);
	}
	return 1;
}

int evs_projection_replay_parked(evs_store *s, const char *name, uint64_t *replayed,
				 uint64_t *still)
{
	uint64_t *pos = NULL, n = 0, done = 0, left = 0;
	proj *p;
	sqlite3_stmt *st;
	int rc = 0, park;

	evs__err_clear();
	if (replayed)
		*replayed = 0;
	if (still)
		*still = 0;
	if ((rc = evs__need("evs_projection_replay_parked", "store", s != NULL,
			    "name", name != NULL, (const char *)NULL)) != 0)
		return rc;
	if (!(p = find_proj(s, name)))
		return evs__err(EVS_ENOTFOUND, "no projection '%s' is loaded", name);
	if (p->sub)
		return evs__err(EVS_EINVAL, "projection '%s' is running in this process; stop it "
				"before replaying its parked events", name);
	if (sqlite3_prepare_v2(p->db, "SELECT position FROM evs_parked ORDER BY position", -1,
			       &st, NULL) != SQLITE_OK)
		return db_err(p, p->db, "list parked events");
	while (sqlite3_step(st) == SQLITE_ROW) {
		uint64_t *np = evs__realloc(pos, (n + 1) * sizeof(*np));
		if (!np)
			break;
		pos = np;
		pos[n++] = (uint64_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	/* one transaction per event: parked again (with its new error) when
	 * it still fails, gone when it works */
	park = p->opts.park;
	p->opts.park = 1;
	for (uint64_t i = 0; i < n && !rc; i++) {
		replay_ctx r = { p, pos[i], 0, false, false };
		char del[128];
		if (sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
			rc = db_err(p, p->db, "begin");
			break;
		}
		snprintf(del, sizeof(del), "DELETE FROM evs_parked WHERE position = %" PRIu64, pos[i]);
		if (sqlite3_exec(p->db, del, NULL, NULL, NULL) != SQLITE_OK)
			rc = db_err(p, p->db, "unpark an event");
		if (!rc)
			rc = evs_read_all(s, pos[i], 1, NULL, replay_event, &r);
		if (!rc && r.rc)
			rc = r.rc;
		if (!rc && !r.seen)
			rc = evs__err(EVS_ENOTFOUND, "parked position %" PRIu64 " is not in the log",
				      pos[i]);
		if (rc) {
			sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
			break;
		}
		if (sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			rc = db_err(p, p->db, "commit");
			sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
			break;
		}
		if (r.ok)
			done++;
		else
			left++;
	}
	p->opts.park = park;
	evs__free(pos);
	if (replayed)
		*replayed = done;
	if (still)
		*still = left;
	return rc;
}

/* ---- rebuild ---- */

typedef struct rebuild_ctx {
	proj *p;
	evs_progress_cb progress;
	void *ctx;
	uint64_t head, seen;
} rebuild_ctx;

static int rebuild_event(const evs_event *ev, void *ctx)
{
	rebuild_ctx *r = ctx;
	int stop = apply_event(ev, r->p);

	if (r->progress && (++r->seen & 0xffff) == 0)
		r->progress(ev->position, r->head, r->ctx);
	return stop;
}

/*
 * Builds a twin of a projection over readmodels/<name>.rebuild.db, from
 * nothing: of the file at `path`, or of the loaded projection `of` (its
 * file or its C definition).  It takes the options of the projection of
 * that name loaded here, if any (retries, parking), with large batches.
 */
static int load_twin(evs_store *s, const char *path, const proj *of, const char *fn, proj **out)
{
	evs_projection_options o = EVS_PROJECTION_OPTIONS_INIT;
	char tmp[4200];
	bool from_def = of && of->is_c;
	proj *p;
	int rc;

	*out = NULL;
	if (!of) {
		/* a file names its projection: loaded once to learn the name */
		if ((rc = load_proj(s, path, NULL, ".rebuild.db", &p)) != 0)
			return rc;
		of = find_proj(s, p->name);
		if (of && of->sub) {
			rc = evs__err(EVS_EINVAL, "%s: projection '%s' is running in this process; "
				      "stop it before rebuilding it", fn, p->name);
			proj_free(p);
			return rc;
		}
		snprintf(tmp, sizeof(tmp), "%s", p->db_path);
		proj_free(p);
	} else {
		if (of->sub)
			return evs__err(EVS_EINVAL, "%s: projection '%s' is running in this process; "
					"stop it before rebuilding it", fn, of->name);
		snprintf(tmp, sizeof(tmp), "%s/readmodels/%s.rebuild.db", s->dir, of->name);
		path = of->path;
	}
	if (of)
		o = of->opts;
	/* nobody reads the twin before the swap: large transactions */
	o.batch_size = 65536;
	o.max_latency_ms = UINT32_MAX;
	/* what an interrupted rebuild left is not trusted */
	evs__unlink_db(tmp);
	rc = from_def ? load_def(s, &of->c, &o, ".rebuild.db", out) :
			load_proj(s, path, &o, ".rebuild.db", out);
	/* a twin left by a crash is thrown away, so its commits need not
	 * wait for the disk: the swap writes the live model durably */
	if (!rc && sqlite3_exec((*out)->db, "PRAGMA synchronous=OFF", NULL, NULL, NULL) !=
		   SQLITE_OK)
		rc = db_err(*out, (*out)->db, "set up the rebuild");
	if (rc) {
		if (*out)
			proj_free(*out);
		*out = NULL;
		evs__unlink_db(tmp);
	}
	return rc;
}

/* Replays the log into the twin p, swaps it in, and frees it.  *redo:
 * the optimistic pass failed; nothing was swapped in. */
static int rebuild_swap(evs_store *s, proj *p, evs_progress_cb progress, void *ctx,
			uint64_t *position_out, bool *redo)
{
	char live[4200];
	rebuild_ctx r = { p, progress, ctx, 0, 0 };
	evs_filter filter = { NULL, NULL, 0 };
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	evs_stats st;
	proj *loaded;
	int rc;

	snprintf(live, sizeof(live), "%s/readmodels/%s.db", s->dir, p->name);
	if ((rc = evs_stats_get(&st, s)) != 0)
		goto out;
	r.head = st.head_position;
	if (!p->all_types) {
		filter.types = p->types;
		filter.ntypes = p->ntypes;
	}
	rc = evs_read_all(s, 1, 0, &filter, rebuild_event, &r);
	if (!rc && p->failed) {
		rc = p->failed;
		evs__err(rc, "%s", p->errmsg);
	}
	if (rc && p->redo) {
		*redo = true;
		goto out;
	}
	if (!rc)
		rc = commit(p, p->applied > r.head ? p->applied : r.head ? r.head : 0);
	if (rc)
		goto out;
	/*
	 * The swap: SQLite's backup copies the new model over the live one
	 * in one write transaction of the live database, so its readers see
	 * the old rows or the new ones, never a mix, and keep their
	 * connections.  (Renaming the file over the live one would leave the
	 * live one's WAL file behind, to be read as the new one's.)
	 */
	if (sqlite3_open(live, &dst) != SQLITE_OK) {
		rc = evs__err(EVS_EIO, "read model %s: %s", live, sqlite3_errmsg(dst));
		goto out;
	}
	sqlite3_busy_timeout(dst, 5000);
	b = sqlite3_backup_init(dst, "main", p->db, "main");
	if (!b) {
		rc = evs__err(EVS_EIO, "read model %s: %s", live, sqlite3_errmsg(dst));
		goto out;
	}
	int br = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (br != SQLITE_DONE) {
		rc = evs__err(EVS_EIO, "read model %s: cannot swap the rebuilt one in: %s", live,
			      sqlite3_errstr(br));
		goto out;
	}
	/* the same projection loaded here starts from the new checkpoint */
	if ((loaded = find_proj(s, p->name)) && loaded->hash == p->hash) {
		uint64_t pos, hash;
		if (read_checkpoint(loaded, &pos, &hash) == 0) {
			pthread_mutex_lock(&loaded->mu);
			loaded->out_of_date = pos > 0 && hash != loaded->hash;
			pthread_mutex_unlock(&loaded->mu);
			set_checkpoint(loaded, pos);
		}
	} else if (loaded) {
		pthread_mutex_lock(&loaded->mu);
		loaded->out_of_date = true;
		pthread_mutex_unlock(&loaded->mu);
	}
	if (progress)
		progress(r.head, r.head, ctx);
	if (position_out)
		*position_out = p->checkpoint;
out:
	sqlite3_close(dst);
	{
		char tmp[4200];
		snprintf(tmp, sizeof(tmp), "%s", p->db_path);
		proj_free(p);
		evs__unlink_db(tmp);
	}
	return rc;
}

/*
 * A rebuild: first without a savepoint per event, which no event needs
 * unless a handler fails.  If one fails, the twin is thrown away and the
 * log replayed again into a new one the way the worker applies events
 * (each in a savepoint: retried, then parked or failing the rebuild).
 */
static int rebuild(evs_store *s, const char *path, const proj *of, const char *fn,
		   evs_progress_cb progress, void *ctx, uint64_t *position_out)
{
	bool redo = false;
	proj *p;
	int rc;

	for (int pass = 0; pass < 2; pass++) {
		if ((rc = load_twin(s, path, of, fn, &p)) != 0)
			return rc;
		p->optimistic = pass == 0;
		rc = rebuild_swap(s, p, progress, ctx, position_out, &redo);
		if (!redo)
			break;
		evs__err_clear();
		redo = false;
	}
	return rc;
}

int evs_projection_rebuild(evs_store *s, const char *path, evs_progress_cb progress, void *ctx,
			   uint64_t *position_out)
{
	int rc;

	evs__err_clear();
	if (position_out)
		*position_out = 0;
	if ((rc = evs__need("evs_projection_rebuild", "store", s != NULL, "path", path != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	return rebuild(s, path, NULL, "evs_projection_rebuild", progress, ctx, position_out);
}

int evs_projection_rebuild_loaded(evs_store *s, const char *name, evs_progress_cb progress,
				  void *ctx, uint64_t *position_out)
{
	proj *of;
	int rc;

	evs__err_clear();
	if (position_out)
		*position_out = 0;
	if ((rc = evs__need("evs_projection_rebuild_loaded", "store", s != NULL,
			    "name", name != NULL, (const char *)NULL)) != 0)
		return rc;
	if (!(of = find_proj(s, name)))
		return evs__err(EVS_ENOTFOUND, "no projection '%s' is loaded", name);
	return rebuild(s, NULL, of, "evs_projection_rebuild_loaded", progress, ctx, position_out);
}

int evs_projection_status_get(evs_projection_status *out, evs_store *s, const char *name)
{
	proj *p;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_projection_status_get", "out", out != NULL, "store", s != NULL,
			    "name", name != NULL, (const char *)NULL)) != 0)
		return rc;
	memset(out, 0, sizeof(*out));
	if (!(p = find_proj(s, name)))
		return evs__err(EVS_ENOTFOUND, "no projection '%s' is loaded", name);
	/* the head alone (evs_stats_get counts the whole index) */
	evs__ix *ix;
	uint64_t head = 0;
	if ((rc = evs__store_read_begin(s, &ix, &head)) != 0)
		return rc;
	evs__store_ix_put(s, ix);
	pthread_mutex_lock(&p->mu);
	out->checkpoint = p->checkpoint;
	out->running = p->running && !p->failed;
	out->failed = p->failed;
	/* a worker that stopped applying has no rate */
	out->rate = out->running && mono_s() - p->rate_at < 2.0 ? p->rate : 0;
	pthread_mutex_unlock(&p->mu);
	out->head = head;
	out->lag = out->head > out->checkpoint ? out->head - out->checkpoint : 0;
	{
		sqlite3_stmt *q;
		qconn *c;
		if ((rc = qconn_get(p, &c)) != 0)
			return rc;
		if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM evs_parked", -1, &q, NULL) ==
		    SQLITE_OK) {
			if (sqlite3_step(q) == SQLITE_ROW)
				out->parked = (uint64_t)sqlite3_column_int64(q, 0);
			sqlite3_finalize(q);
		}
		qconn_put(p, c);
	}
	pthread_mutex_lock(&p->mu);
	out->out_of_date = p->out_of_date;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

/* ---- queries ---- */

static json_t *column_json(sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(st, i));
	case SQLITE_FLOAT:
		return json_real(sqlite3_column_double(st, i));
	case SQLITE_TEXT: {
		const char *t = (const char *)sqlite3_column_text(st, i);
		return t ? json_stringn(t, (size_t)sqlite3_column_bytes(st, i)) : NULL;
	}
	case SQLITE_BLOB: {
		/* as lowercase hex: JSON has no bytes */
		const unsigned char *b = sqlite3_column_blob(st, i);
		size_t n = (size_t)sqlite3_column_bytes(st, i);
		char *hex = evs__malloc(2 * n + 1);
		json_t *v;
		if (!hex || (n && !b)) {
			evs__free(hex);
			return NULL;
		}
		for (size_t k = 0; k < n; k++) {
			hex[2 * k] = "0123456789abcdef"[b[k] >> 4];
			hex[2 * k + 1] = "0123456789abcdef"[b[k] & 15];
		}
		v = json_stringn(hex, 2 * n);
		evs__free(hex);
		return v;
	}
	default:
		return json_null();
	}
}

/* Why column i of the row could not be made JSON: text that is not
 * UTF-8, or out of memory. */
static int column_err(proj *p, sqlite3_stmt *st, int i, const char *what)
{
	const char *name = sqlite3_column_name(st, i);
	const char *t;

	if (name && sqlite3_column_type(st, i) == SQLITE_TEXT &&
	    (t = (const char *)sqlite3_column_text(st, i)) != NULL &&
	    evs__utf8_check(t, (size_t)sqlite3_column_bytes(st, i)) != 0)
		return evs__err(EVS_EINVAL, "projection '%s' %s: column '%s' holds text that is "
				"not valid UTF-8", p->name, what, name);
	return evs__err(EVS_ENOMEM, "projection '%s' %s: out of memory building a row", p->name,
			what);
}

static int bind_param(sqlite3_stmt *st, int i, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_INTEGER:
		return sqlite3_bind_int64(st, i, json_integer_value(v));
	case JSON_REAL:
		return sqlite3_bind_double(st, i, json_real_value(v));
	case JSON_STRING:
		return sqlite3_bind_text(st, i, json_string_value(v), (int)json_string_length(v),
					 SQLITE_TRANSIENT);
	case JSON_TRUE:
		return sqlite3_bind_int(st, i, 1);
	case JSON_FALSE:
		return sqlite3_bind_int(st, i, 0);
	case JSON_NULL:
		return sqlite3_bind_null(st, i);
	default: {
		char *t = evs__json_dumps(v);
		int rc = sqlite3_bind_text(st, i, t ? t : "null", -1, SQLITE_TRANSIENT);
		json_free_t jfree;
		json_get_alloc_funcs(NULL, &jfree);
		jfree(t);
		return rc;
	}
	}
}

/* Steps st with `params` bound by name, handing each row to `row`. */
static int run_rows(proj *p, qconn *c, sqlite3_stmt *st, const char *what,
		    const json_t *params, evs_row_cb row, void *ctx)
{
	int rc = 0, r, np = sqlite3_bind_parameter_count(st);

	for (int i = 1; i <= np; i++) {
		const char *pn = sqlite3_bind_parameter_name(st, i);
		const json_t *v = params && pn ? json_object_get(params, pn + 1) : NULL;
		if (v ? bind_param(st, i, v) : sqlite3_bind_null(st, i)) {
			rc = evs__err(EVS_ENOMEM, "projection '%s' %s: cannot bind %s", p->name, what,
				      pn ? pn : "?");
			goto out;
		}
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();
		int nc = sqlite3_column_count(st), stop;
		if (!o) {
			rc = evs__err(EVS_ENOMEM, "projection '%s' %s: out of memory", p->name, what);
			goto out;
		}
		for (int i = 0; i < nc; i++) {
			const char *cn = sqlite3_column_name(st, i);
			json_t *v = column_json(st, i);
			if (!cn || !v || json_object_set_new(o, cn, v) != 0) {
				if (!cn)
					json_decref(v);
				rc = column_err(p, st, i, what);
				json_decref(o);
				goto out;
			}
		}
		stop = row(o, ctx);
		json_decref(o);
		if (stop)
			goto out;
	}
	if (r != SQLITE_DONE)
		rc = evs__err(EVS_EIO, "projection '%s' %s: %s", p->name, what, sqlite3_errmsg(c->db));
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

/* The progress handler of ad-hoc queries: stops one past its deadline. */
static int past_deadline(void *ctx)
{
	return mono_s() >= ((qconn *)ctx)->deadline;
}

/* Is `t` only blanks, ';' and comments? */
static bool only_blanks(const char *t)
{
	while (*t) {
		if (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n' || *t == ';') {
			t++;
		} else if (t[0] == '-' && t[1] == '-') {
			while (*t && *t != '\n')
				t++;
		} else if (t[0] == '/' && t[1] == '*') {
			const char *e = strstr(t + 2, "*/");
			if (!e)
				return true;
			t = e + 2;
		} else {
			return false;
		}
	}
	return true;
}

/* A declared query (`query`) or ad-hoc SQL (`sql`), row by row. */
static int query_run(evs_store *s, const char *fn, const char *name, const char *query,
		     const char *sql, const json_t *params, const evs_query_options *o,
		     evs_row_cb row, void *ctx, uint64_t *position_out)
{
	evs_query_options opts = EVS_QUERY_OPTIONS_INIT;
	sqlite3_stmt *st = NULL;
	qconn *c = NULL;
	char what[200];
	uint64_t pos = 0;
	size_t qi = 0;
	proj *p;
	int rc;

	double t0 = mono_s();

	evs__err_clear();
	if (position_out)
		*position_out = 0;
	if ((rc = evs__need(fn, "store", s != NULL, "name", name != NULL, "query", query || sql,
			    "row", row != NULL, (const char *)NULL)) != 0)
		return rc;
	if (o) {
		if (o->version != EVS_QUERY_OPTIONS_VERSION)
			return evs__err(EVS_EINVAL, "%s: options version %d, expected %d", fn,
					o->version, EVS_QUERY_OPTIONS_VERSION);
		opts = *o;
	}
	if (params && !json_is_object(params))
		return evs__err(EVS_EINVAL, "%s: params must be a JSON object", fn);
	if (!(p = find_proj(s, name)))
		return evs__err(EVS_ENOTFOUND, "no projection '%s' is loaded", name);
	if (query) {
		for (qi = 0; qi < p->nq; qi++)
			if (strcmp(p->q[qi].name, query) == 0)
				break;
		if (qi == p->nq)
			return evs__err(EVS_ENOTFOUND, "projection '%s' has no query '%s'", name,
					query);
		snprintf(what, sizeof(what), "query '%s'", query);
	} else {
		snprintf(what, sizeof(what), "ad-hoc query");
	}
	if ((rc = qconn_get(p, &c)) != 0)
		return rc;
	if (query) {
		if (!c->st[qi] && sqlite3_prepare_v2(c->db, p->q[qi].sql, -1, &c->st[qi], NULL) !=
		    SQLITE_OK) {
			rc = db_err(p, c->db, "prepare a query");
			goto out;
		}
		st = c->st[qi];
	} else {
		const char *tail = NULL;
		/* what SQLite refuses to prepare cannot run */
		c->strict = true;
		if (sqlite3_prepare_v2(c->db, sql, -1, &st, &tail) != SQLITE_OK) {
			rc = evs__err(EVS_EINVAL, "projection '%s' ad-hoc query: %s", name,
				      sqlite3_errmsg(c->db));
			goto out;
		}
		if (!st || !only_blanks(tail) || !sqlite3_stmt_readonly(st)) {
			rc = evs__err(EVS_EINVAL, "projection '%s' ad-hoc query: %s", name, !st ?
				      "no statement" : !only_blanks(tail) ?
				      "one statement only" : "a query may only read");
			goto out;
		}
	}
	c->strict = false;
	if ((rc = read_begin(p, c, opts.min_position,
			     opts.timeout_ms ? opts.timeout_ms : DEFAULT_QUERY_TIMEOUT_MS, &pos)) != 0)
		goto out;
	c->strict = sql != NULL;
	if (sql) {
		/* ad-hoc SQL may be anything that reads: bounded in time too */
		c->deadline = t0 + (opts.timeout_ms ? opts.timeout_ms : DEFAULT_QUERY_TIMEOUT_MS) / 1e3;
		sqlite3_progress_handler(c->db, 10000, past_deadline, c);
	}
	rc = run_rows(p, c, st, what, params, row, ctx);
	if (sql) {
		sqlite3_progress_handler(c->db, 0, NULL, NULL);
		if (rc == EVS_EIO && mono_s() >= c->deadline)
			rc = evs__err(EVS_ETIMEOUT, "projection '%s' ad-hoc query: stopped after "
				      "%u ms (timeout_ms)", name, opts.timeout_ms ? opts.timeout_ms :
				      DEFAULT_QUERY_TIMEOUT_MS);
	}
	c->strict = false;
	read_end(c);
	if (!rc && position_out)
		*position_out = pos;
out:
	c->strict = false;
	if (sql)
		sqlite3_finalize(st);
	qconn_put(p, c);
	return rc;
}

typedef struct collect {
	json_t *rows;
	bool nomem;
} collect;

static int collect_row(const json_t *row, void *ctx)
{
	collect *c = ctx;

	c->nomem = json_array_append(c->rows, (json_t *)row) != 0;
	return c->nomem;
}

/* query_run into a new array */
static int query_rows(evs_store *s, const char *fn, const char *name, const char *query,
		      const char *sql, const json_t *params, const evs_query_options *o,
		      json_t **rows_out, uint64_t *position_out)
{
	collect c = { NULL, false };
	int rc;

	if ((rc = evs__need(fn, "rows_out", rows_out != NULL, (const char *)NULL)) != 0)
		return rc;
	*rows_out = NULL;
	if (!(c.rows = json_array()))
		return evs__err(EVS_ENOMEM, "%s: out of memory", fn);
	rc = query_run(s, fn, name, query, sql, params, o, collect_row, &c, position_out);
	if (!rc && c.nomem)
		rc = evs__err(EVS_ENOMEM, "%s: out of memory collecting the rows", fn);
	if (rc) {
		json_decref(c.rows);
		return rc;
	}
	*rows_out = c.rows;
	return 0;
}

int evs_query(evs_store *s, const char *name, const char *query, const json_t *params,
	      const evs_query_options *o, json_t **rows_out, uint64_t *position_out)
{
	return query_rows(s, "evs_query", name, query, NULL, params, o, rows_out,
			  position_out);
}

int evs_query_each(evs_store *s, const char *name, const char *query, const json_t *params,
		   const evs_query_options *o, evs_row_cb row, void *ctx, uint64_t *position_out)
{
	return query_run(s, "evs_query_each", name, query, NULL, params, o, row, ctx,
			 position_out);
}

int evs_query_sql(evs_store *s, const char *name, const char *sql, const json_t *params,
		  const evs_query_options *o, json_t **rows_out, uint64_t *position_out)
{
	return query_rows(s, "evs_query_sql", name, NULL, sql, params, o, rows_out,
			  position_out);
}

int evs_query_sql_each(evs_store *s, const char *name, const char *sql, const json_t *params,
		       const evs_query_options *o, evs_row_cb row, void *ctx,
		       uint64_t *position_out)
{
	return query_run(s, "evs_query_sql_each", name, NULL, sql, params, o, row, ctx,
			 position_out);
}
