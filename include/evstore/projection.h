/*
 * evstore/projection.h: SQL projections, their read models and the query
 * API.
 *
 * A projection is a .sql file: plain SQL split into sections by comment
 * lines, so it reads well in any SQL editor.
 *
 *   -- projection: orders          (optional; default: the file's name)
 *   -- setup
 *   CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total INTEGER);
 *   -- on: OrderPlaced
 *   INSERT INTO orders (id, total) VALUES (:stream, 0);
 *   -- on: ItemAdded, ItemRemoved
 *   UPDATE orders SET total = total + @price WHERE id = :stream;
 *   -- query: by_id
 *   SELECT * FROM orders WHERE id = :id;
 *
 * "setup" runs when the read model is opened; an "on" section's statements
 * run for each event of its types ("-- on: *" for every type, after the
 * type's own handler if it has one), with these named parameters: :stream,
 * :version, :position, :type, :schema_version, :event_id, :timestamp (µs),
 * :time (the timestamp as UTC ISO 8601 text with microseconds,
 * 2026-11-23T09:01:05.123456Z), :data and :metadata (JSON text, for
 * SQLite's JSON functions; the data upcast to the newest version, see
 * evstore/upcast.h), and @name: the data's top-level member `name` as
 * json_extract(:data, '$.name') gives it, without parsing the data again
 * in each statement (names of letters, digits and _; an object or array
 * nested into another JSON function needs json(@name), since a parameter
 * cannot carry SQLite's JSON mark).  A "query" is one
 * SELECT with parameters of its own.  Mistakes (SQL that does not compile,
 * an unknown parameter, an empty section, a query that writes) are
 * reported when the file is loaded, with its path and line.
 *
 * The read model is <store>/readmodels/<name>.db.  Its table
 * evs_projection holds the checkpoint (the last position applied) and is
 * written in the same transaction as the rows the events changed, so each
 * event changes the read model exactly once, whatever crashes.
 */
#ifndef EVSTORE_PROJECTION_H
#define EVSTORE_PROJECTION_H

#include <jansson.h>

#include "common.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVS_PROJECTION_OPTIONS_VERSION 2

typedef struct evs_projection_options {
	int version;               /* EVS_PROJECTION_OPTIONS_VERSION */
	uint32_t batch_size;       /* events per transaction at most; 0: 1000 */
	/* When the file differs from the one that built the read model:
	 * 1 rebuilds it from the log when started; 0 keeps serving the old
	 * one and starting fails. */
	int rebuild_if_changed;
	/* A handler that fails on an event is tried again this many times
	 * (0: 3), 1 ms apart doubling; then, with park, the event goes to the
	 * read model's table evs_parked with the error and the worker goes on;
	 * without, the worker stops with the error (the default). */
	uint32_t max_retries;
	int park;
	/* Version 2.  A batch commits after batch_size events, when the
	 * worker has caught up, or once its transaction is this old, so
	 * under a steady stream of events queries see them at most about
	 * this late (0: 100 ms). */
	uint32_t max_latency_ms;
} evs_projection_options;

#define EVS_PROJECTION_OPTIONS_INIT { EVS_PROJECTION_OPTIONS_VERSION, 0, 0, 0, 0, 0 }

/*
 * Loads the projection in file `path` into the store (it stays until the
 * store closes) and opens its read model; its name (returned in *name_out
 * if not NULL, valid while the store is open) is how queries reach it.
 * EVS_EINVAL with "path:line: ..." for a bad file, or a second projection
 * of the same name.
 */
EVS_EXTERN int evs_projection_load(evs_store *store, const char *path,
				   const evs_projection_options *options, const char **name_out);

/*
 * C projections, for logic SQL cannot express.  `apply` gets each event of
 * `types` (NULL: every type) in position order, upcast (its data and
 * schema_version are the newest version's), with the read model's
 * connection inside the worker's open transaction: what it writes commits
 * with the checkpoint, exactly once.  It returns 0, or nonzero to fail
 * the event, which is then retried, parked or stops the worker as the
 * options say, its changes undone each time.  It runs on the worker's
 * thread (and on the caller's during evs_projection_rebuild_loaded and
 * evs_projection_replay_parked), never on two at once for one projection.
 *
 * `sql` (may be NULL) is text in the file format above: its setup runs
 * before `setup`, its handlers before `apply`, and its queries serve
 * evs_query.  The definition a read model records is the hash of `sql`
 * and `definition_version`: change the version when apply changes what it
 * writes, and the read model is out of date as for a changed file.
 *
 * Strings and arrays are copied; ctx is the caller's, passed back as is.
 */
struct sqlite3;

#define EVS_PROJECTION_DEF_VERSION 1

typedef struct evs_projection_def {
	int version;                    /* EVS_PROJECTION_DEF_VERSION */
	const char *name;               /* letters, digits, '_' and '-' */
	const char *const *types;       /* the types apply is called for */
	size_t ntypes;                  /* 0: every type */
	const char *sql;
	uint32_t definition_version;
	/* when the read model is opened, in a transaction: 0 or nonzero */
	int (*setup)(struct sqlite3 *db, void *ctx);
	int (*apply)(struct sqlite3 *db, const evs_event *ev, void *ctx);
	void *ctx;
} evs_projection_def;

/* Registers a C projection, as evs_projection_load does a file. */
EVS_EXTERN int evs_projection_register(evs_store *store, const evs_projection_def *def,
				       const evs_projection_options *options,
				       const char **name_out);

/* Starts the workers of every loaded projection (a thread each), from
 * their checkpoints.  A store opened read-only cannot.  At most
 * evs_projections_set_workers of them apply events at once. */
EVS_EXTERN int evs_projections_start(evs_store *store);

/*
 * How many workers may apply events at the same time (0: the number of
 * online CPUs, the default).  A worker holds one of these slots while it
 * applies a batch and gives it up at each commit and whenever it has
 * caught up, so with more projections than slots they take turns batch by
 * batch.  Set it before evs_projections_start.
 */
EVS_EXTERN int evs_projections_set_workers(evs_store *store, unsigned max);

/* Stops them, committing what they applied.  Returns the first error a
 * worker stopped on (with its message), else 0. */
EVS_EXTERN int evs_projections_stop(evs_store *store);

/*
 * Rebuilds the read model of the projection in file `path` from the whole
 * log: into a new database beside the live one, which is then copied over
 * the live one in one transaction (SQLite's backup), so queries, in this
 * process or another, see the old rows until then and the new ones after.
 * An interrupted rebuild leaves the live read model as it was.  `progress`
 * (may be NULL) is called now and then with the position reached and the
 * head.  *position_out: the new model's checkpoint.  The projection must
 * not be running in this process.
 *
 * Events are applied without a savepoint each at first; if a handler
 * fails, the new model is thrown away and the log replayed once more with
 * them, as the worker applies events (retries, parking), so a C apply may
 * then see the events before the failing one twice, and `progress` starts
 * again from the first position.
 */
EVS_EXTERN int evs_projection_rebuild(evs_store *store, const char *path,
				      evs_progress_cb progress, void *ctx,
				      uint64_t *position_out);

/* The same for projection `name` as loaded or registered in this store
 * (the way to rebuild a C projection). */
EVS_EXTERN int evs_projection_rebuild_loaded(evs_store *store, const char *name,
					     evs_progress_cb progress, void *ctx,
					     uint64_t *position_out);

/*
 * The parked events of projection `name`: a new JSON array of
 * {"position","stream","version","type","error","attempts"} objects.
 */
EVS_EXTERN int evs_projection_parked(evs_store *store, const char *name, json_t **rows_out);

/*
 * Applies the parked events of projection `name` again (after a fix): each
 * that succeeds leaves evs_parked, in the same transaction; each that
 * fails stays, with its new error.  *replayed and *still (may be NULL)
 * count them.  The projection must not be running in this process.
 */
EVS_EXTERN int evs_projection_replay_parked(evs_store *store, const char *name,
					    uint64_t *replayed, uint64_t *still);

typedef struct evs_projection_status {
	uint64_t checkpoint;       /* last position applied */
	uint64_t head;             /* the store's last position */
	uint64_t lag;              /* head - checkpoint */
	int running;
	int out_of_date;           /* built by another version of its file */
	int failed;                /* an EVS_E* code the worker stopped on, or 0 */
	uint64_t parked;           /* events in evs_parked */
	double rate;               /* events applied per second by this process's
				      worker over its last second or so of
				      work; 0 when idle or not running */
} evs_projection_status;

EVS_EXTERN int evs_projection_status_get(evs_projection_status *out, evs_store *store,
					 const char *name);

#define EVS_QUERY_OPTIONS_VERSION 1

typedef struct evs_query_options {
	int version;               /* EVS_QUERY_OPTIONS_VERSION */
	uint64_t min_position;     /* wait until the checkpoint reaches it */
	uint32_t timeout_ms;       /* for that wait; 0: 5000 */
} evs_query_options;

#define EVS_QUERY_OPTIONS_INIT { EVS_QUERY_OPTIONS_VERSION, 0, 0 }

/*
 * Runs query `query` of projection `name` with `params` (a JSON object,
 * borrowed, may be NULL: its members bind the query's :parameters by
 * name, numbers, strings and null as themselves, true and false as 1 and
 * 0, arrays and objects as their JSON text for SQLite's JSON functions; a
 * parameter without a member binds NULL; params that are not an object
 * give EVS_EINVAL).  *rows_out is a new JSON array of row objects, one
 * member per column: integers, reals, text, null, and blobs as lowercase
 * hex strings (text that is not valid UTF-8 fails the query with
 * EVS_EINVAL naming the column); *position_out (may be NULL) the checkpoint
 * the read model was at.  EVS_ENOTFOUND for an unknown projection or
 * query, EVS_ETIMEOUT when min_position is not reached in time; when this
 * process's worker of the projection has stopped on an error before
 * reaching it, that error at once, its message in evs_errmsg().
 */
EVS_EXTERN int evs_query(evs_store *store, const char *name, const char *query,
			 const json_t *params, const evs_query_options *options,
			 json_t **rows_out, uint64_t *position_out);

/*
 * The same, row by row, for results too large to hold: `row` gets each
 * row object (borrowed: valid during the call) and returns 0 to go on or
 * nonzero to stop, which ends the query without error.  Queries run on
 * connections of their own, as many as there are callers at once, each
 * in one read transaction: the rows and *position_out are of the same
 * committed state, whatever the worker writes meanwhile.
 */
typedef int (*evs_row_cb)(const json_t *row, void *ctx);

EVS_EXTERN int evs_query_each(evs_store *store, const char *name, const char *query,
			      const json_t *params, const evs_query_options *options,
			      evs_row_cb row, void *ctx, uint64_t *position_out);

/*
 * Ad-hoc SQL on projection `name`'s read model: one SELECT (a WITH ...
 * SELECT too), its :parameters bound from `params` as in evs_query.  It
 * can only read: SQLite refuses, when the statement is prepared, anything
 * but reading tables and calling functions (no INSERT, UPDATE, DELETE,
 * CREATE, DROP, ATTACH, PRAGMA, transaction control ...), and the
 * connection is query_only.  json_each and json_tree work; other virtual
 * tables (FTS) may be refused.  It runs for timeout_ms at most (0: 5000),
 * the min_position wait included, then fails with EVS_ETIMEOUT.
 * EVS_EINVAL with SQLite's message for SQL that does not compile or is
 * refused.
 */
EVS_EXTERN int evs_query_sql(evs_store *store, const char *name, const char *sql,
			     const json_t *params, const evs_query_options *options,
			     json_t **rows_out, uint64_t *position_out);

EVS_EXTERN int evs_query_sql_each(evs_store *store, const char *name, const char *sql,
				  const json_t *params, const evs_query_options *options,
				  evs_row_cb row, void *ctx, uint64_t *position_out);

#ifdef __cplusplus
}
#endif

#endif
