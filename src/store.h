/*
 * store.h: the store handle and the interfaces between the store's parts:
 * segments (segment.c), the SQLite index (index.c), the writer (writer.c)
 * and the readers (read.c).  Private to the library.
 *
 * Locking:
 *   wmu       the append queue; the leader (head of the queue) alone owns
 *             the write state: active segment, next position, stream
 *             heads, the index's write connection.
 *   seg_mu    the segment table (readers look up file descriptors while the
 *             leader adds segments).
 *   pool_mu   the pool of read connections to the index.
 *   ix_mu     the queue of durable groups waiting for the indexer thread
 *             (indexer.c).
 * `visible` is the last acknowledged position; `indexed` the last one the
 * index holds.  Readers in this process wait until indexed >= visible as
 * it was when they started, and never look past that.
 */
#ifndef EVS_STORE_H
#define EVS_STORE_H

#include "internal.h"
#include "evstore/subscribe.h"

#define EVS__SEG_HDR 64u
#define EVS__SEG_MAGIC "EVSSEG\0\1"

/* ---- index.c ---- */

typedef struct evs__ix evs__ix;

typedef struct evs__batch_ref {
	uint64_t position;
	uint64_t first_version;
	uint32_t count;
	uint64_t segment;
	uint64_t offset;
	uint32_t length;
	int64_t stream_id;
} evs__batch_ref;

int evs__ix_open(evs__ix **out, const char *path, bool read_only);
void evs__ix_close(evs__ix *ix);
/* true for a reader's stand-in for an index its writer has not set up */
bool evs__ix_unset(const evs__ix *ix);
int evs__ix_begin(evs__ix *ix, bool write);
int evs__ix_commit(evs__ix *ix);
/* Ends the open transaction, if any; false when it could not. */
bool evs__ix_rollback(evs__ix *ix);
int evs__ix_get_meta(evs__ix *ix, const char *key, uint64_t *out);
int evs__ix_put_meta(evs__ix *ix, const char *key, uint64_t value);
/* meta key: 1 while a writer with durability none has the store open */
#define EVS__META_UNSYNCED "unsynced_writer"
int evs__ix_put_stream(evs__ix *ix, int64_t id, const char *name, size_t len,
		       int64_t created_us);
/* The last indexed position (the "indexed to" mark), 0 when empty. */
int evs__ix_head(evs__ix *ix, uint64_t *out);
/*
 * Indexes batch b with its b->count event ids: its row, and an event_ids
 * row per id unless all sort above max_id (then the row keeps their range,
 * see schema/index.sql).  max_id is the greatest id indexed so far,
 * updated; batches must come in position order.
 */
int evs__ix_put_batch(evs__ix *ix, int64_t stream_id, const evs__batch_ref *b,
		      const uint8_t *ids, uint8_t max_id[16]);
int evs__ix_put_id(evs__ix *ix, const uint8_t id[16], uint64_t position);
/*
 * Where is event id `id`?  0 with *pos (a row of event_ids); 1 with the
 * only batch whose ids could hold it (*batch: a ranged batch, the id
 * within its range), which the log must confirm (evs__find_id);
 * EVS_ENOTFOUND.
 */
int evs__ix_find_id(evs__ix *ix, const uint8_t id[16], uint64_t *pos, evs__batch_ref *batch);
/* The batch with the highest position; EVS_ENOTFOUND when empty. */
int evs__ix_last_batch(evs__ix *ix, evs__batch_ref *out);
/* The batch holding `position`; EVS_ENOTFOUND when none. */
int evs__ix_batch_at(evs__ix *ix, uint64_t position, evs__batch_ref *out);
/* Drops every batch and id past `position` and fixes the streams' last
 * versions to match. */
int evs__ix_truncate_after(evs__ix *ix, uint64_t position);
typedef int (*evs__ix_stream_cb)(int64_t id, const char *name, size_t len,
				 uint64_t last_version, void *ctx);
int evs__ix_each_stream(evs__ix *ix, evs__ix_stream_cb cb, void *ctx);
/* Stream lookup: 0 with id and last version, or EVS_ENOTFOUND. */
int evs__ix_stream(evs__ix *ix, const char *name, int64_t *id,
		   uint64_t *last_version, int64_t *created_us);
/* Batches of a stream covering versions from `from` on (forward) or up to
 * `from` (backward), in that order. */
typedef int (*evs__ix_batch_cb)(const evs__batch_ref *b, void *ctx);
int evs__ix_stream_batches(evs__ix *ix, int64_t stream_id, uint64_t from,
			   evs_direction dir, evs__ix_batch_cb cb, void *ctx);
int evs__ix_list_streams(evs__ix *ix, const char *after, uint64_t limit,
			 evs_name_cb cb, void *ctx);
int evs__ix_list_categories(evs__ix *ix, evs_name_cb cb, void *ctx);
int evs__ix_counts(evs__ix *ix, uint64_t *streams, uint64_t *batches,
		   uint64_t *log_bytes);
/* The greatest stored event id, or all zeros when there is none. */
int evs__ix_max_id(evs__ix *ix, uint8_t out[16]);

/* A stream's saved decider state (handle.c); state is a new string. */
typedef struct evs__snapshot {
	uint64_t version;       /* the stream version it folds */
	uint32_t state_version; /* the decider's */
	uint64_t upcasters;     /* evs__upcasters_hash when it was taken */
	char *state;            /* JSON text */
	bool replace;           /* put: over any snapshot there (one found unfit) */
} evs__snapshot;
/* 0, EVS_ENOTFOUND, or an error. */
int evs__ix_get_snapshot(evs__ix *ix, const char *stream, evs__snapshot *out);
/* Saves it unless a later one (same state version and upcasters) is there,
 * or in any case with snap->replace. */
int evs__ix_put_snapshot(evs__ix *ix, const char *stream, const evs__snapshot *snap,
			 int64_t created_us);
int evs__ix_clear_snapshots(evs__ix *ix);
int evs__ix_replace(evs__ix *ix, const char *path);
int evs__ix_stream_ends(evs__ix *ix, int64_t stream_id, uint64_t *first, uint64_t *last);

/* ---- segment.c ---- */

typedef struct evs__seg {
	uint64_t first;  /* first position; the file's name */
	int fd;          /* read-only descriptor, -1 when not open */
	unsigned users;  /* readers holding fd (evs__store_seg_fd .. _put) */
	uint64_t used;   /* s->seg_tick when last handed out */
} evs__seg;

/* Read descriptors of segments kept open when no reader holds them: a
 * store of many segments must not hold a descriptor for each. */
#define EVS__SEG_FDS_KEPT 32

void evs__seg_name(char *out, size_t size, const char *logdir, uint64_t first);
/* Creates log/<first>.seg durably: temp file, header, zero-filled to its
 * full size, fsync, rename, fsync of the directory.  Returns an O_RDWR
 * descriptor in *fd_out. */
int evs__seg_create(int *fd_out, const char *logdir, uint64_t first,
		    uint64_t size);
/* The spare segment (segment.c): prepared in the background, installed at a
 * roll (or a segment is created on the spot if none is ready). */
int evs__spare_start(evs_store *s);
/* Tests that count I/O calls turn the background thread off (its calls
 * would make the count vary from run to run). */
extern bool evs__spare_enabled;
void evs__spare_stop(evs_store *s);
void evs__spare_want(evs_store *s);
int evs__spare_install(evs_store *s, uint64_t first, int *fd_out);
/* Checks the 64-byte header of a segment read into hdr. */
int evs__seg_check_header(const uint8_t *hdr, uint64_t first, uint64_t *size_out);
/* Sorted list of segment first positions in logdir; removes stale temp
 * files when `cleanup`. */
int evs__seg_list(uint64_t **out, size_t *n, const char *logdir, bool cleanup);

/* ---- schemas.c ---- */

typedef struct evs__schemas evs__schemas;
/* Reads and compiles every <type>.v<N>.json in dir; EVS_EINVAL naming the
 * file that is misnamed, does not parse or does not compile. */
int evs__schemas_load(evs__schemas **out, const char *dir, bool strict, bool formats);
void evs__schemas_free(evs__schemas *r);
/* Checks event `index` (from 1) of an append to `stream`: 0, or
 * EVS_ESCHEMA (EVS_EINVAL for data that does not parse) with a message
 * naming stream, event, type, version, the JSON pointer and the rule. */
int evs__schemas_check(const evs__schemas *r, const char *stream, size_t index,
		       const char *type, size_t tl, uint32_t version,
		       const char *data, size_t dl);

/* ---- upcast.c ---- */

typedef struct evs__upcasters evs__upcasters;
int evs__upcasters_new(evs__upcasters **out);
void evs__upcasters_free(evs__upcasters *r);
/* Adds every <type>.v<k>-v<k+1>.sql of dir; EVS_EINVAL naming a bad one. */
int evs__upcasters_load_dir(evs__upcasters *r, const char *dir);
/* Stands for the set of upcasters (types, versions, expressions). */
uint64_t evs__upcasters_hash(evs__upcasters *r);

/* ---- the store ---- */

typedef struct evs__head {
	char *name;
	uint32_t hash;
	uint32_t len;
	int64_t id;
	uint64_t version;
	uint64_t aux;           /* for verify */
} evs__head;

/* Stream name -> head: open addressing, grows at 70% load.  Heads are
 * allocated one by one, so a pointer to one stays valid while the table
 * grows (the leader holds such pointers across a group). */
typedef struct evs__map {
	evs__head **slots;
	size_t cap, n;
} evs__map;

evs__head *evs__map_find(evs__map *m, const char *name, size_t len, bool create);
void evs__map_free(evs__map *m);

/* An event id the writer gave out whose batch may not be indexed yet. */
typedef struct evs__pid {
	uint8_t id[16];
	uint64_t position;      /* 0: empty slot */
} evs__pid;

typedef struct evs__req evs__req;
typedef struct evs__pgroup evs__pgroup;
typedef struct evs__snapq evs__snapq;

struct evs_store {
	char *dir;
	char *logdir;
	char *ixpath;          /* dir/index.db, or the index being rebuilt */
	evs_progress_cb rprogress; /* recovery's progress (evs_rebuild_index) */
	void *rctx;
	evs_options opts;
	evs__schemas *schemas;  /* NULL without opts.schema_dir */
	evs__upcasters *upcasters;
	struct evs__projections *projections; /* projection.c */
	bool read_only;
	int lock_fd;

	/* write state: owned by the leader */
	int wfd;               /* active segment, O_RDWR, -1 if none/sealed */
	uint64_t wseg;         /* its first position */
	uint64_t woff;         /* next write offset in it */
	uint64_t wsize;        /* its size, from its header (segments made
				  under another segment_size option keep
				  theirs) */
	uint64_t next_position;
	bool unsynced_mark;    /* index meta EVS__META_UNSYNCED is set */
	uint64_t synced_pos;   /* every position up to it is fdatasync'ed:
				  what a batch's synced-through mark says */
	int64_t next_stream_id;
	evs__ix *wix;          /* the indexer's (and recovery's) connection */
	evs__ix *lix;          /* the leader's, for idempotency look-ups */
	bool lix_open;         /* lix is in a read transaction (writer.c) */
	uint64_t lix_indexed;
	evs__map heads;
	evs__pid *pids;        /* writer-given ids not yet surely indexed */
	size_t pids_cap, pids_n;
	uint8_t max_id[16];    /* no stored id sorts after it (writer.c) */
	uint8_t ix_max_id[16]; /* nor indexed one (recovery, then the indexer) */
	uint8_t *zeros;        /* for cutting back failed writes */

	pthread_mutex_t wmu;
	evs__req *qhead, *qtail;
	atomic_int failed;     /* 0, or the error that failed the store */
	/* evs_metrics' counters, as the writer and evs_append count them */
	_Atomic uint64_t m_appends[5];  /* ok, idempotent, conflict, invalid, failed */
	_Atomic uint64_t m_events[5];   /* events of those appends */
	_Atomic uint64_t m_bytes, m_groups, m_group_appends, m_syncs, m_sync_us;
	_Atomic uint64_t m_group_buckets[EVS_METRICS_GROUP_BUCKETS];
	_Atomic uint64_t m_sync_buckets[EVS_METRICS_SYNC_BUCKETS];

	_Atomic uint64_t visible;
	_Atomic uint64_t indexed;
	/* subscribe.c waits here for `visible` to move (CLOCK_MONOTONIC) */
	pthread_mutex_t head_mu;
	pthread_cond_t head_cv;
	atomic_int subscribers;

	/* segment.c: the spare segment */
	bool spare_init, spare_running, spare_want, spare_stop_req, spare_busy, spare_failed;
	atomic_bool spare_stop, spare_hurry;
	atomic_uint active_fill;  /* active segment's fill in 1/1000ths (writer.c) */
	unsigned spare_from;      /* active_fill when the spare was started */
	int spare_fd;
	pthread_t spare_thread;
	pthread_mutex_t spare_mu;
	pthread_cond_t spare_cv;

	/* indexer.c */
	bool ix_init, ix_running, ix_stop;
	pthread_t ix_thread;
	pthread_mutex_t ix_mu;
	pthread_cond_t ix_work, ix_done;
	evs__pgroup *pq_head, *pq_tail;
	evs__snapq *sq_head, *sq_tail; /* snapshots to write (handle.c) */
	size_t pq_batches, pq_events;
	int ix_failed;
	int ix_waiters;         /* threads waiting for the index: no delay */
	int ix_idle;            /* IX_* state of the indexer thread */
	char ix_errmsg[512];
	_Atomic uint64_t *shared; /* LOCK mapped: [0] acked head, [1] magic */

	pthread_mutex_t seg_mu;
	evs__seg *segs;
	size_t nsegs, capsegs;
	size_t nseg_open;      /* segs[] with fd >= 0 */
	uint64_t seg_tick;

	pthread_mutex_t pool_mu;
	evs__ix **pool;
	size_t npool, cappool;

	evs_stats open_stats;  /* recovery figures */
};

/* store.c */
int evs__store_add_segment(evs_store *s, uint64_t first);
/* A read-only descriptor for the segment whose first position is `first`,
 * held until evs__store_seg_put(s, first).  Descriptors no reader holds
 * stay open for the next read, at most EVS__SEG_FDS_KEPT of them (the
 * least recently used are closed). */
int evs__store_seg_fd(evs_store *s, uint64_t first, int *fd_out);
void evs__store_seg_put(evs_store *s, uint64_t first);
/* A read connection from the pool (opened when the pool is empty). */
int evs__store_ix_get(evs_store *s, evs__ix **out);
void evs__store_ix_put(evs_store *s, evs__ix *ix);
/*
 * Starts a read: waits until the index covers every acknowledged event,
 * then hands out a pool connection inside a read transaction and the head
 * (last position) the read may see.  Give the connection back with
 * evs__store_ix_put.
 */
int evs__store_read_begin(evs_store *s, evs__ix **ix_out, uint64_t *head);

/* read.c */
/* Reads and checks the batch `b` into *buf (grown as needed). */
int evs__read_batch(evs_store *s, const evs__batch_ref *b, uint8_t **buf,
		    size_t *cap, evs__batch_hdr *h);
/* The position of event id `id` per index `ix` (a read transaction), the
 * log confirming an id of a batch in order: 0, EVS_ENOTFOUND or an error. */
int evs__find_id(evs_store *s, evs__ix *ix, const uint8_t id[16], uint64_t *pos);

/* writer.c: a store with no segment yet gets its first one (at open, so
 * that the first append does not pay for it). */
int evs__writer_first_segment(evs_store *s);

/* indexer.c */
evs__pgroup *evs__pgroup_new(size_t n, size_t extra, uint8_t **area);
void evs__pgroup_add(evs__pgroup *g, const evs__batch_ref *ref, int64_t created_us,
		     const char *new_stream, uint32_t stream_len, const uint8_t *ids);
int evs__indexer_start(evs_store *s);
void evs__indexer_stop(evs_store *s);
/* Queues a durable group for the index and publishes `acked` as the
 * acknowledged head.  Takes ownership of g. */
int evs__indexer_push(evs_store *s, evs__pgroup *g, uint64_t acked);
/* projection.c: stops the workers and frees every loaded projection. */
void evs__projections_free(evs_store *s);
/* Compiles `text` (NUL-terminated at size) as a projection file over an
 * in-memory read model and frees it: the fuzzer's way in (tests/fuzz). */
int evs__projection_try(evs_store *s, const char *text, size_t size);
typedef struct evs__projections evs__projections;

/* subscribe.c: evs_subscribe, with `idle` called on the subscription's
 * thread after each pass over the log, with the next position to look at
 * (every earlier one was delivered or filtered out), and `ended` there
 * when a read error ends it (evs_errmsg() says what). */
int evs__subscribe_ex(evs_subscription **out, evs_store *s, const evs_subscribe_options *o,
		      evs_event_cb cb, void (*idle)(void *ctx, uint64_t next),
		      void (*ended)(void *ctx, int rc), void *ctx);
/* Asks the subscription to stop, without waiting for it (see
 * evs_subscription_stop, which then only waits). */
void evs__subscription_ask_stop(evs_subscription *sub);
/* upcast.c: does (type, version) have an upcaster? */
bool evs__upcasters_has(evs__upcasters *r, const char *type, size_t tl, uint32_t version);

/* The last acknowledged position as far as this handle can tell cheaply:
 * the writer's own, or the one its writer publishes in LOCK for a
 * read-only handle; UINT64_MAX when there is none to watch. */
uint64_t evs__store_head_hint(evs_store *s);
/* Queues a snapshot (copied) for the indexer's next transaction; with no
 * stream, drops every snapshot there instead.  Nothing on a read-only
 * store. */
int evs__indexer_push_snapshot(evs_store *s, const char *stream, const evs__snapshot *snap);
/* Waits until the index holds every position up to target. */
int evs__indexer_wait(evs_store *s, uint64_t target);
int evs__shared_map(evs_store *s, int fd, bool writer);
void evs__shared_unmap(evs_store *s);

#endif
