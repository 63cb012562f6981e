/*
 * evstore/store.h: opening a store, appending events, reading them back.
 *
 * A store is a directory holding the segmented log (log/), the SQLite index
 * (index.db) and a LOCK file.  One process at a time may open it for
 * writing; any number may open it read-only, also while the writer runs.
 *
 * Threading: one evs_store handle may be shared by every thread of a
 * process.  Concurrent evs_append calls are grouped: one thread writes every
 * queued append with one write and one fdatasync (group commit).  Reads run
 * in parallel with appends and with each other.  evs_close must not race
 * with other calls on the same handle.
 */
#ifndef EVSTORE_STORE_H
#define EVSTORE_STORE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evs_store evs_store;

/* Durability of an acknowledged append. */
typedef enum evs_durability {
	/* fdatasync before an append is acknowledged (the default). */
	EVS_DURABILITY_SYNC = 0,
	/*
	 * Never sync: for tests and bulk loads only.  A process crash loses
	 * nothing the kernel has, but a power loss can lose acknowledged
	 * appends and leave a torn tail (recovered at the next open).
	 */
	EVS_DURABILITY_NONE = 1
} evs_durability;

#define EVS_OPTIONS_VERSION 2
#define EVS_DEFAULT_SEGMENT_SIZE (64u * 1024 * 1024)
#define EVS_DEFAULT_MAX_EVENT_SIZE (1u * 1024 * 1024)
#define EVS_MIN_SEGMENT_SIZE 4096u

typedef struct evs_options {
	int version;             /* EVS_OPTIONS_VERSION */
	int create;              /* create the store if the directory has none */
	int read_only;           /* no lock, no recovery, appends fail; an
				  * index not set up yet reads as empty */
	evs_durability durability;
	uint64_t segment_size;   /* bytes per segment file, >= EVS_MIN_SEGMENT_SIZE */
	uint32_t max_event_size; /* bytes of type + metadata + data of one event */

	/* Since version 2.  Event schemas: a directory of JSON Schema
	 * (2020-12) documents named <type>.v<version>.json, read when the
	 * store opens (a bad one fails the open with EVS_EINVAL naming the
	 * file).  Every append then validates each event's data against the
	 * schema of its type and schema_version; a failure is EVS_ESCHEMA with
	 * the JSON pointer of the failing value and the rule, and nothing is
	 * written.  A type with schemas but none for the event's version
	 * always fails; a type with no schema at all passes unless
	 * schema_strict is set.  schema_formats makes "format" (date-time,
	 * uuid, email) an assertion.  NULL: no validation.  The string is
	 * copied. */
	const char *schema_dir;
	int schema_strict;
	int schema_formats;
} evs_options;

#define EVS_OPTIONS_INIT \
	{ EVS_OPTIONS_VERSION, 0, 0, EVS_DURABILITY_SYNC, \
	  EVS_DEFAULT_SEGMENT_SIZE, EVS_DEFAULT_MAX_EVENT_SIZE, NULL, 0, 0 }

/*
 * Opens the store in directory `dir`.  With opts->create, a missing store is
 * created (the directory too, if its parent exists).  A directory that
 * exists but is not a store is refused with EVS_EINVAL; a missing one
 * without create gives EVS_ENOTFOUND.  A second writer, in this process or
 * another, gets EVS_ELOCKED at once.  Opening for writing recovers the
 * store: it indexes what the log holds past the index (after syncing it),
 * truncates a torn tail and fails with EVS_ECORRUPT (naming segment and
 * offset) on a bad batch anywhere before the tail, or on a batch the index
 * records as acknowledged that is missing or damaged (durability sync).
 * A new store gets its first segment here (segment_size bytes, written
 * as zeros).  A writer runs two threads of its own: one writes the index
 * behind the log, one prepares the next segment.  opts may be NULL for the
 * defaults.  On success *out is a new handle, released with evs_close.
 */
EVS_EXTERN int evs_open(evs_store **out, const char *dir,
			const evs_options *opts);

/* Closes the store and releases the lock.  NULL is ignored. */
EVS_EXTERN void evs_close(evs_store *store);

/* Expected versions for evs_append; any value >= 0 is an exact version
 * (0 meaning the stream has no events yet). */
#define EVS_EXPECT_ANY (-1)
#define EVS_EXPECT_NO_STREAM (-2)
#define EVS_EXPECT_EXISTS (-3)

/* An event to append.  Every pointer is borrowed for the call only. */
typedef struct evs_new_event {
	const char *type;         /* [A-Za-z0-9_.:-]{1,255}, e.g. "OrderPlaced" */
	const char *data;         /* JSON object text, NUL-terminated */
	const char *metadata;     /* JSON object text, or NULL / "" for none */
	const uint8_t *id;        /* 16-byte UUID, or NULL to generate one */
	uint32_t schema_version;  /* 0 means 1 */
} evs_new_event;

typedef struct evs_append_result {
	uint64_t first_version;   /* versions of the appended events */
	uint64_t last_version;
	uint64_t first_position;  /* global positions, dense, in commit order */
	uint64_t last_position;
	uint64_t current_version; /* the stream's version after the call, or
				     at the conflict (0: no stream) */
	int idempotent;           /* 1: the events were already stored, nothing
				     was written; the fields above are the
				     original ones */
} evs_append_result;

/*
 * Appends `n` events to `stream` as one atomic batch, if the stream's
 * version matches `expected_version` (EVS_EXPECT_* or an exact version).
 *
 * Returns 0 once the batch is durable (per the store's durability option),
 * with versions and positions in *out (which may be NULL).  Errors:
 *   EVS_ECONFLICT  expected version does not match; out->current_version and
 *                  evs_errmsg() give the actual one.  Nothing written.
 *   EVS_EINVAL     n == 0; stream name empty, over 255 bytes, with control
 *                  characters or invalid UTF-8; bad type name; data or
 *                  metadata not a JSON object; an event id already stored
 *                  elsewhere or with other content.  Nothing written.
 *   EVS_ETOOLARGE  an event over max_event_size, or a batch that cannot fit
 *                  in one segment.  Nothing written.
 *   EVS_EREADONLY  the store was opened read-only.
 *   EVS_EIO, EVS_ENOSPC  the write or the sync failed: the append is not
 *                  acknowledged and the store is now failed.
 *   EVS_EFAILED    the store failed earlier; close and reopen it.
 * Idempotency: if every event carries an id and the same ids are already
 * stored in this stream, consecutively, with the same type, schema version,
 * metadata and data, the call succeeds with the original versions and
 * positions, out->idempotent = 1, whatever the expected version.
 */
EVS_EXTERN int evs_append(evs_store *store, const char *stream,
			  int64_t expected_version, const evs_new_event *events,
			  size_t n, evs_append_result *out);

/*
 * An event as read back.  Every pointer is borrowed and valid only during
 * the callback that receives it.  Strings are NUL-terminated; the _len
 * fields exclude the NUL.  metadata_len is 0 when the event has none.
 */
typedef struct evs_event {
	uint64_t position;
	uint64_t version;
	const char *stream;
	size_t stream_len;
	uint8_t id[16];
	const char *type;
	size_t type_len;
	uint32_t schema_version;
	int64_t timestamp_us;     /* microseconds since the epoch, UTC */
	const char *metadata;
	size_t metadata_len;
	const char *data;
	size_t data_len;
} evs_event;

/* Read callback: return 0 to go on, anything else to stop (the read then
 * returns 0). */
typedef int (*evs_event_cb)(const evs_event *ev, void *ctx);

typedef enum evs_direction {
	EVS_FORWARD = 0,
	EVS_BACKWARD = 1
} evs_direction;

/*
 * Every read sees every event acknowledged before it started.  In the
 * writer's process it first waits for the index to catch up with the
 * acknowledged head (at most one index transaction).  In a read-only
 * handle it waits for the head the writer publishes in LOCK (polling; up to
 * 5 s, then EVS_ETIMEOUT); if the writer died before indexing acknowledged
 * events, the read recovers the store first, as the next writer would.
 * A writer whose index could not be written gives EVS_EFAILED.
 *
 * Reads `stream` from version `from` (inclusive) in `dir`ection, at most
 * `limit` events (0: no limit).  Forward from 0 or 1 starts at the first
 * event; backward from 0 starts at the last.  A stream that does not exist
 * gives EVS_ENOTFOUND.  Every batch's CRC is checked; a bad one gives
 * EVS_ECORRUPT naming the segment and offset.
 */
EVS_EXTERN int evs_read_stream(evs_store *store, const char *stream,
			       uint64_t from, evs_direction dir, uint64_t limit,
			       evs_event_cb cb, void *ctx);

/* Filter for evs_read_all; zeroed means every event. */
typedef struct evs_filter {
	const char *category;      /* stream prefix before the first '-', or NULL */
	const char *const *types;  /* event types, or NULL */
	size_t ntypes;
} evs_filter;

/*
 * Reads the whole log ($all) forward from position `from` (inclusive; 0 or 1
 * is the start), at most `limit` events (0: no limit) that pass `filter`
 * (NULL: all).  Sees every event acknowledged before the call started.
 */
EVS_EXTERN int evs_read_all(evs_store *store, uint64_t from, uint64_t limit,
			    const evs_filter *filter, evs_event_cb cb, void *ctx);

typedef struct evs_stream_info {
	int exists;
	uint64_t last_version;     /* 0 when the stream does not exist */
	uint64_t event_count;
	uint64_t first_position;   /* position of version 1 */
	uint64_t last_position;    /* position of the last version */
	int64_t created_us;        /* timestamp of the first event */
} evs_stream_info;

/* Fills *out about `stream`; a missing stream is not an error (exists = 0). */
EVS_EXTERN int evs_stream_info_get(evs_stream_info *out, evs_store *store,
				   const char *stream);

/* Callback for listings: `name` is borrowed for the call.  Return non-zero
 * to stop. */
typedef int (*evs_name_cb)(const char *name, uint64_t last_version, void *ctx);

/*
 * Lists streams in name order, starting after `after` (NULL: from the
 * first), at most `limit` (0: all).  last_version is given per stream.
 */
EVS_EXTERN int evs_list_streams(evs_store *store, const char *after,
				uint64_t limit, evs_name_cb cb, void *ctx);

/* Lists categories in name order, with their number of streams in the
 * last_version argument of the callback. */
EVS_EXTERN int evs_list_categories(evs_store *store, evs_name_cb cb, void *ctx);

typedef struct evs_stats {
	uint64_t head_position;    /* last acknowledged position, 0 when empty */
	uint64_t streams;
	uint64_t batches;
	uint64_t segments;
	uint64_t log_bytes;        /* bytes of batches in the log */
	uint64_t recovered_batches;/* batches indexed by recovery at open */
	uint64_t recovery_bytes;   /* log bytes scanned by recovery at open */
	uint64_t truncated_bytes;  /* torn tail cut at open */
} evs_stats;

EVS_EXTERN int evs_stats_get(evs_stats *out, evs_store *store);

/*
 * Counters of this handle's appends since it was opened, for monitoring
 * (`evstore serve` exposes them at /metrics).  Every field is a running
 * total.  The histograms count, per bucket, the groups whose value was at
 * most the bucket's bound and above the previous one; the last bucket has
 * no upper bound.
 */
#define EVS_METRICS_SYNC_BUCKETS 12
/* fdatasync time bounds of sync_buckets, in microseconds */
#define EVS_METRICS_SYNC_BOUNDS_US \
	{ 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 0 }
#define EVS_METRICS_GROUP_BUCKETS 10
/* appends per group commit, the bounds of group_buckets */
#define EVS_METRICS_GROUP_BOUNDS { 1, 2, 4, 8, 16, 32, 64, 128, 256, 0 }

typedef struct evs_metrics {
	uint64_t appends_ok;        /* calls that wrote their events */
	uint64_t appends_idempotent;/* calls that found them already stored */
	uint64_t appends_conflict;  /* EVS_ECONFLICT */
	uint64_t appends_invalid;   /* EVS_EINVAL, EVS_ETOOLARGE, EVS_ESCHEMA */
	uint64_t appends_failed;    /* any other error (I/O, a failed store) */
	uint64_t events_appended;   /* events of appends_ok */
	uint64_t events_idempotent; /* events of appends_idempotent, and so on */
	uint64_t events_conflict;
	uint64_t events_invalid;
	uint64_t events_failed;
	uint64_t bytes_written;     /* log bytes written by groups */
	uint64_t groups;            /* group commits: one write, one sync */
	uint64_t group_appends;     /* appends in them, summed */
	uint64_t group_buckets[EVS_METRICS_GROUP_BUCKETS];
	uint64_t syncs;             /* fdatasync calls of groups */
	uint64_t sync_us;           /* their time, summed, in microseconds */
	uint64_t sync_buckets[EVS_METRICS_SYNC_BUCKETS];
	int failed;                 /* the EVS_E* code that failed the store
				       (its appends then give EVS_EFAILED), or 0 */
} evs_metrics;

/* Fills *out; a read-only handle's counters stay 0. */
EVS_EXTERN int evs_metrics_get(evs_metrics *out, evs_store *store);

/*
 * Checks every batch of the log (CRC, framing, dense positions and
 * versions) and that the index agrees with it.  Each problem is reported to
 * `report` (may be NULL) as one line naming the segment and offset.
 * Returns 0 when clean, EVS_ECORRUPT when any problem was found, or
 * another error if the check itself could not run.  `progress` (may be NULL)
 * is called now and then with the bytes checked so far and the total.
 */
typedef void (*evs_report_cb)(const char *problem, void *ctx);
typedef void (*evs_progress_cb)(uint64_t done, uint64_t total, void *ctx);
EVS_EXTERN int evs_verify(evs_store *store, evs_report_cb report,
			  evs_progress_cb progress, void *ctx);

/*
 * Rebuilds the store's index (index.db) from its log: the store is opened
 * over a new index file beside the live one (index.rebuild.db), which
 * recovery fills from the whole log with `progress` (may be NULL) in log
 * bytes; that is then copied over the live one in one transaction
 * (SQLite's backup), so readers in other processes see the old index or
 * the new one, never a mix.  The decider snapshots are dropped: they were
 * folded from the old index's answers, which are what is in doubt
 * (evs_handle takes them again).  The writer lock is held throughout:
 * EVS_ELOCKED while another process writes.  An interrupted rebuild
 * leaves the live index as it was; the next one starts from nothing.
 * `opts` (may be NULL) as for evs_open; create and read_only are ignored.
 */
EVS_EXTERN int evs_rebuild_index(const char *dir, const evs_options *opts,
				 evs_progress_cb progress, void *ctx);

/*
 * The stream's category: the part of the name before the first '-', or the
 * whole name when it has none.  Writes at most `size` bytes with the NUL;
 * returns the category's length.
 */
EVS_EXTERN size_t evs_category(char *out, size_t size, const char *stream);

/* UUID helpers: text form is the 36-character lowercase 8-4-4-4-12. */
EVS_EXTERN void evs_uuid_format(char out[37], const uint8_t id[16]);
EVS_EXTERN int evs_uuid_parse(uint8_t out[16], const char *text);

#ifdef __cplusplus
}
#endif

#endif
