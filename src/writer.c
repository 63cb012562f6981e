/*
 * writer.c: appends and group commit.
 *
 * Each evs_append encodes its events into a batch buffer on its own thread
 * (no lock held), then joins the queue.  The thread at the head of the
 * queue is the leader: it takes every queued append (up to about 1 MiB),
 * checks each one's expected version against the in-memory stream heads in
 * queue order, stamps positions, versions and CRCs, writes all the batches
 * with one pwritev and one fdatasync, hands them to the indexer thread
 * (indexer.c), and wakes each waiter with its result.  There is no fixed
 * delay: appends that arrive while a leader is writing form the next
 * group.
 *
 * A failed write or sync is never retried and never acknowledged: the store
 * is marked failed (every later append gets EVS_EFAILED) and the bytes of
 * the failed group are zeroed when that is still possible, so a reopen sees
 * exactly the acknowledged events (DESIGN.md invariant 8).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "jsoncheck.h"
#include "store.h"

#define GROUP_MAX_BYTES (1u << 20)
#define GROUP_MAX_REQS 1024

struct evs__req {
	/* input, set by the appending thread */
	const char *stream;
	size_t stream_len;
	int64_t expected;
	uint8_t *buf;           /* the whole batch, header space first */
	size_t len;
	uint32_t count;
	uint8_t *ids;           /* count * 16 bytes, the event ids */
	bool ids_given;         /* every event came with its own id */

	/* output */
	int rc;
	evs_append_result res;
	char *errmsg;           /* the leader's message for this request */
	bool done;
	bool accepted;          /* part of the group's write */
	uint64_t off;           /* where the leader put it in the segment */
	evs__head *head;
	bool new_stream;
	pthread_cond_t cv;
	evs__req *next;
};

static void req_fail(evs__req *r, int rc)
{
	r->rc = rc;
	evs__free(r->errmsg);
	r->errmsg = evs__strdup(evs_errmsg());
}

static int fail_store(evs_store *s, int rc)
{
	int expected = 0;

	atomic_compare_exchange_strong(&s->failed, &expected, rc);
	return rc;
}

static bool ids_equal_event(const evs_event *ev, const evs__req *r, uint32_t i,
			    const uint8_t *rec)
{
	/* rec is the request's own encoded record i: compare all but the
	 * timestamp. */
	uint32_t sv = evs__get32(rec + 28);
	uint16_t tl = evs__get16(rec + 32);
	uint32_t ml = evs__get32(rec + 34), dl = evs__get32(rec + 38);
	const char *t = (const char *)rec + EVS__REC_HDR;

	(void)r;
	(void)i;
	return ev->schema_version == sv && ev->type_len == tl && ev->metadata_len == ml &&
	       ev->data_len == dl && memcmp(ev->type, t, tl) == 0 &&
	       memcmp(ev->metadata, t + tl + 1, ml) == 0 &&
	       memcmp(ev->data, t + tl + 1 + ml + 1, dl) == 0;
}

typedef struct idem_ctx {
	evs__req *r;
	const uint8_t *rec;   /* next record of the request */
	uint32_t i;
	bool same;
	uint64_t first_version, first_position;
} idem_ctx;

static int idem_cmp(const evs_event *ev, void *ctx)
{
	idem_ctx *c = ctx;

	if (c->i >= c->r->count)
		return 1;
	if (memcmp(ev->id, c->r->ids + 16 * c->i, 16) != 0 ||
	    ev->stream_len != c->r->stream_len ||
	    memcmp(ev->stream, c->r->stream, ev->stream_len) != 0 ||
	    !ids_equal_event(ev, c->r, c->i, c->rec)) {
		c->same = false;
		return 1;
	}
	if (c->i == 0) {
		c->first_version = ev->version;
		c->first_position = ev->position;
	}
	c->rec += evs__get32(c->rec);
	c->i++;
	return 0;
}

static int idem_batch(const evs__batch_ref *b, void *ctx);

typedef struct idem_walk {
	evs_store *s;
	idem_ctx *c;
	uint8_t *buf;
	size_t cap;
	uint64_t from;
	int rc;
} idem_walk;

static int idem_skip(const evs_event *ev, void *ctx)
{
	idem_walk *w = ctx;

	if (ev->position < w->from)
		return 0;
	return idem_cmp(ev, w->c);
}

static int idem_batch(const evs__batch_ref *b, void *ctx)
{
	idem_walk *w = ctx;
	evs__batch_hdr h;
	int rc = evs__read_batch(w->s, b, &w->buf, &w->cap, &h);

	if (rc) {
		w->rc = rc;
		return 1;
	}
	if (evs__batch_decode(&h, w->buf, idem_skip, w) != 0 || !w->c->same ||
	    w->c->i >= w->c->r->count)
		return 1;
	return 0;
}

/*
 * Idempotency: the request's first id is already stored.  Succeeds (with
 * the original result) only if every event is stored, in order, in this
 * stream, with the same content.  Called by the leader.
 */
static int check_idempotent(evs_store *s, evs__req *r, uint64_t pos)
{
	char idtext[37];
	idem_ctx c = { r, r->buf + EVS__BATCH_HDR + r->stream_len + 1, 0, true, 0, 0 };
	idem_walk w = { s, &c, NULL, 0, pos, 0 };
	evs__batch_ref b;
	int rc;

	evs_uuid_format(idtext, r->ids);
	rc = evs__ix_batch_at(s->lix, pos, &b);
	while (rc == 0 && c.same && c.i < r->count) {
		uint64_t next = b.position + b.count;
		idem_batch(&b, &w);
		if (w.rc) {
			rc = w.rc;
			break;
		}
		if (!c.same || c.i >= r->count)
			break;
		w.from = next;
		rc = evs__ix_batch_at(s->lix, next, &b);
		if (rc == EVS_ENOTFOUND)
			c.same = false;
	}
	evs__free(w.buf);
	if (rc && rc != EVS_ENOTFOUND)
		return rc;
	if (!c.same || c.i != r->count)
		return evs__err(EVS_EINVAL,
				"stream '%s': event id %s is already stored at position %" PRIu64
				" with other content, in another stream, or not as this same append",
				r->stream, idtext, pos);
	r->res.first_version = c.first_version;
	r->res.last_version = c.first_version + r->count - 1;
	r->res.first_position = c.first_position;
	r->res.last_position = c.first_position + r->count - 1;
	r->res.current_version = r->head ? r->head->version : 0;
	r->res.idempotent = 1;
	return 0;
}

/* ---- ids of batches the indexer may not have written yet ----
 *
 * The leader's own open-addressing table of the ids writers gave with
 * their events, so an append with ids never waits for the indexer just to
 * look them up.  Entries whose position the index already covers are
 * stale and dropped when the table is rebuilt; the indexer's backlog
 * bounds the live ones.  Generated ids need no entry: a writer can only
 * learn one by reading it, and reads wait for the index.
 */
static void pid_insert(evs__pid *t, size_t cap, const uint8_t *id, uint64_t position)
{
	size_t i = evs__id_hash(id) & (cap - 1);

	while (t[i].position && memcmp(t[i].id, id, 16) != 0)
		i = (i + 1) & (cap - 1);
	memcpy(t[i].id, id, 16);
	t[i].position = position;
}

/* Makes room for `more` ids; false when out of memory. */
static bool pids_reserve(evs_store *s, size_t more)
{
	uint64_t indexed = atomic_load(&s->indexed);
	size_t live = 0, cap;
	evs__pid *t;

	if ((s->pids_n + more) * 2 <= s->pids_cap)
		return true;
	for (size_t i = 0; i < s->pids_cap; i++)
		if (s->pids[i].position > indexed)
			live++;
	for (cap = 4096; cap < 4 * (live + more); cap *= 2)
		;
	t = evs__calloc(cap, sizeof(*t));
	if (!t)
		return false;
	for (size_t i = 0; i < s->pids_cap; i++)
		if (s->pids[i].position > indexed)
			pid_insert(t, cap, s->pids[i].id, s->pids[i].position);
	evs__free(s->pids);
	s->pids = t;
	s->pids_cap = cap;
	s->pids_n = live;
	return true;
}

/*
 * The leader's look-ups of ids run in one read transaction per group (one
 * set of SQLite locks, not one per id).  `lix_indexed` is read before the
 * snapshot starts: an id at a position up to it was committed before the
 * snapshot, so the snapshot has it; one past it is still in the table.
 */
static int lix_begin(evs_store *s)
{
	if (s->lix_open)
		evs__ix_rollback(s->lix);
	s->lix_indexed = atomic_load(&s->indexed);
	s->lix_open = true;
	return evs__ix_begin(s->lix, false);
}

static void lix_end(evs_store *s)
{
	if (s->lix_open)
		evs__ix_rollback(s->lix);
	s->lix_open = false;
}

/*
 * Where is this id stored?  An id that sorts after every stored one
 * (max_id, which counts the not-yet-indexed ones too) is new without a
 * look-up, which makes time-ordered (version 7) ids cheap to check; else
 * the table of not-yet-indexed ids, then the index (see lix_begin).
 */
static int find_id(evs_store *s, const uint8_t *id, uint64_t *pos)
{
	if (memcmp(id, s->max_id, 16) > 0)
		return EVS_ENOTFOUND;
	if (s->pids_cap) {
		size_t i = evs__id_hash(id) & (s->pids_cap - 1);
		while (s->pids[i].position) {
			if (memcmp(s->pids[i].id, id, 16) == 0) {
				if (s->pids[i].position > s->lix_indexed) {
					*pos = s->pids[i].position;
					return 0;
				}
				break;
			}
			i = (i + 1) & (s->pids_cap - 1);
		}
	}
	if (!s->lix_open) {
		int rc = lix_begin(s);
		if (rc)
			return rc;
	}
	return evs__find_id(s, s->lix, id, pos);
}

static const char *expect_text(int64_t e, char *buf, size_t n)
{
	switch (e) {
	case EVS_EXPECT_ANY:
		return "any";
	case EVS_EXPECT_NO_STREAM:
		return "no_stream";
	case EVS_EXPECT_EXISTS:
		return "exists";
	default:
		snprintf(buf, n, "%" PRId64, e);
		return buf;
	}
}

/* Expected-version check and idempotency for one request.  0: go ahead;
 * otherwise the request's final code (0 with idempotent set counts as
 * done). */
static int admit(evs_store *s, evs__req *r, bool *done)
{
	evs__head *h = evs__map_find(&s->heads, r->stream, r->stream_len, false);
	uint64_t cur = h ? h->version : 0;
	char eb[32];
	int rc;

	*done = false;
	r->head = h;
	if (r->ids_given) {
		uint64_t pos;

		rc = find_id(s, r->ids, &pos);
		if (rc == 0) {
			/* A retry: compare with what is stored, once the index
			 * has it, in a snapshot that shows it. */
			*done = true;
			if (pos > s->lix_indexed) {
				rc = evs__indexer_wait(s, pos);
				if (!rc)
					rc = lix_begin(s);
				if (rc)
					return rc;
			}
			return check_idempotent(s, r, pos);
		}
		if (rc != EVS_ENOTFOUND)
			return rc;
		/* The other ids must be new too. */
		for (uint32_t i = 1; i < r->count; i++) {
			rc = find_id(s, r->ids + 16 * i, &pos);
			if (rc == 0) {
				char idt[37];
				evs_uuid_format(idt, r->ids + 16 * i);
				*done = true;
				return evs__err(EVS_EINVAL,
						"stream '%s': event id %s (event %u of the append) is "
						"already stored at position %" PRIu64, r->stream, idt,
						i + 1, pos);
			}
			if (rc != EVS_ENOTFOUND)
				return rc;
		}
	}
	bool ok = r->expected == EVS_EXPECT_ANY ||
		  (r->expected == EVS_EXPECT_NO_STREAM && cur == 0) ||
		  (r->expected == EVS_EXPECT_EXISTS && cur > 0) ||
		  (r->expected >= 0 && (uint64_t)r->expected == cur);
	if (!ok) {
		*done = true;
		r->res.current_version = cur;
		return evs__err(EVS_ECONFLICT,
				"stream '%s': expected version %s, actual %" PRIu64 "%s", r->stream,
				expect_text(r->expected, eb, sizeof(eb)), cur,
				cur ? "" : " (no stream)");
	}
	return 0;
}

/* Seals the active segment and starts a new one at next_position. */
static int roll(evs_store *s)
{
	int rc;

	if (s->wfd >= 0) {
		uint8_t seal[EVS__SEAL_SIZE];
		memset(seal, 0, sizeof(seal));
		evs__batch_seal_header(seal, EVS__SEAL_SIZE, 0, s->next_position, 0,
				       s->next_position - 1, NULL, 0, EVS__BATCH_SEAL);
		if (evs__os_pwrite_all(s->wfd, seal, sizeof(seal), (off_t)s->woff) != 0 ||
		    evs__os_table.fdatasync(s->wfd) != 0) {
			char path[4096];
			evs__seg_name(path, sizeof(path), s->logdir, s->wseg);
			return fail_store(s, evs__err_sys(errno, "seal segment", path));
		}
		evs__os_table.close(s->wfd);
		s->wfd = -1;
		s->synced_pos = s->next_position - 1;
	}
	rc = evs__spare_install(s, s->next_position, &s->wfd);
	if (rc)
		return fail_store(s, rc);
	s->wseg = s->next_position;
	s->woff = EVS__SEG_HDR;
	s->wsize = s->opts.segment_size;
	atomic_store_explicit(&s->active_fill, 0, memory_order_relaxed);
	rc = evs__store_add_segment(s, s->wseg);
	if (rc)
		return fail_store(s, rc);
	return 0;
}

int evs__writer_first_segment(evs_store *s)
{
	return s->wfd < 0 && s->nsegs == 0 ? roll(s) : 0;
}

static uint64_t seg_room(const evs_store *s)
{
	return s->wsize - EVS__SEAL_SIZE - s->woff;
}

/* Zeroes [from, from+len) of the active segment after a failed write, so
 * the unacknowledged batches cannot come back at the next open. */
static void cut_back(evs_store *s, uint64_t from, size_t len)
{
	uint8_t z[4096];

	memset(z, 0, sizeof(z));
	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof(z) ? len - done : sizeof(z);
		if (evs__os_pwrite_all(s->wfd, z, n, (off_t)(from + done)) != 0)
			return;
		done += n;
	}
	evs__os_table.fdatasync(s->wfd);
}

/*
 * What the group grp[0..n) can need to be indexed, allocated before
 * anything of it is admitted: the batches' copy for the indexer (*g,
 * *area) and room for their given ids.  So running out of memory fails
 * the requests with nothing written, and the store goes on.
 */
static int index_room(evs_store *s, evs__req **grp, size_t n, evs__pgroup **g, uint8_t **area)
{
	size_t extra = 0, given = 0;

	for (size_t k = 0; k < n; k++) {
		extra += 16u * grp[k]->count + grp[k]->stream_len + 1;
		if (grp[k]->ids_given)
			given += grp[k]->count;
	}
	if (!(*g = evs__pgroup_new(n, extra, area)))
		return evs__err(EVS_ENOMEM, "store %s: out of memory queueing %zu batches for "
				"the index", s->dir, n);
	if (given && !pids_reserve(s, given)) {
		evs__free(*g);
		*g = NULL;
		return evs__err(EVS_ENOMEM, "store %s: out of memory recording event ids", s->dir);
	}
	return 0;
}

/*
 * Hands the group's accepted batches to the indexer in g (from index_room:
 * copying what it needs, since the requests' buffers belong to their
 * threads) and publishes the new acknowledged head.
 */
static int queue_for_index(evs_store *s, evs__req **grp, size_t n, evs__pgroup *g,
			   uint8_t *area)
{
	for (size_t k = 0; k < n; k++) {
		evs__req *r = grp[k];
		if (!r->accepted || !r->ids_given)
			continue;
		for (uint32_t i = 0; i < r->count; i++)
			pid_insert(s->pids, s->pids_cap, r->ids + 16 * i, r->res.first_position + i);
		s->pids_n += r->count;
	}
	for (size_t k = 0; k < n; k++) {
		evs__req *r = grp[k];
		evs__batch_ref b;
		const char *name = NULL;
		uint8_t *ids;

		if (!r->accepted)
			continue;
		b = (evs__batch_ref){ r->res.first_position, r->res.first_version, r->count,
				      s->wseg, r->off, (uint32_t)r->len, r->head->id };
		ids = area;
		memcpy(ids, r->ids, 16u * r->count);
		area += 16u * r->count;
		if (r->new_stream) {
			memcpy(area, r->stream, r->stream_len);
			area[r->stream_len] = 0;
			name = (const char *)area;
			area += r->stream_len + 1;
		}
		evs__pgroup_add(g, &b, (int64_t)evs__get64(r->buf + EVS__BATCH_HDR +
							   r->stream_len + 1 + 20),
				name, (uint32_t)r->stream_len, ids);
	}
	return evs__indexer_push(s, g, s->next_position - 1);
}

/* Does an id of `r` appear in an earlier request of the group? */
static bool dup_in_group(evs__req **grp, size_t n, const evs__req *r)
{
	for (size_t k = 0; k < n; k++) {
		const evs__req *o = grp[k];
		if (!o->accepted || !o->ids_given)
			continue;
		for (uint32_t i = 0; i < r->count; i++)
			for (uint32_t j = 0; j < o->count; j++)
				if (memcmp(r->ids + 16 * i, o->ids + 16 * j, 16) == 0)
					return true;
	}
	return false;
}

/* ---- evs_metrics ---- */

static const uint64_t sync_bounds[EVS_METRICS_SYNC_BUCKETS] = EVS_METRICS_SYNC_BOUNDS_US;
static const uint64_t group_bounds[EVS_METRICS_GROUP_BUCKETS] = EVS_METRICS_GROUP_BOUNDS;

/* The bucket of `v` under `bounds` (the last one, 0, has no bound). */
static size_t bucket(const uint64_t *bounds, size_t n, uint64_t v)
{
	size_t i = 0;

	while (i + 1 < n && v > bounds[i])
		i++;
	return i;
}

static void count_sync(evs_store *s, uint64_t us)
{
	atomic_fetch_add_explicit(&s->m_syncs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m_sync_us, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m_sync_buckets[bucket(sync_bounds,
			EVS_METRICS_SYNC_BUCKETS, us)], 1, memory_order_relaxed);
}

static void count_group(evs_store *s, size_t appends, size_t bytes)
{
	atomic_fetch_add_explicit(&s->m_groups, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m_group_appends, appends, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m_bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m_group_buckets[bucket(group_bounds,
			EVS_METRICS_GROUP_BUCKETS, appends)], 1, memory_order_relaxed);
}

/* Counts a finished evs_append of n events by its outcome. */
static void count_append(evs_store *s, int rc, const evs__req *r, size_t n)
{
	int k = rc == 0 ? (r->res.idempotent ? 1 : 0) :
		rc == EVS_ECONFLICT ? 2 :
		rc == EVS_EINVAL || rc == EVS_ETOOLARGE || rc == EVS_ESCHEMA ? 3 : 4;

	atomic_fetch_add_explicit(&s->m_appends[k], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m_events[k], n, memory_order_relaxed);
}

int evs_metrics_get(evs_metrics *out, evs_store *s)
{
	evs__err_clear();
	if (!out || !s)
		return evs__need("evs_metrics_get", "out", out != NULL, "store", s != NULL,
				 (const char *)NULL);
	memset(out, 0, sizeof(*out));
	out->appends_ok = atomic_load_explicit(&s->m_appends[0], memory_order_relaxed);
	out->appends_idempotent = atomic_load_explicit(&s->m_appends[1], memory_order_relaxed);
	out->appends_conflict = atomic_load_explicit(&s->m_appends[2], memory_order_relaxed);
	out->appends_invalid = atomic_load_explicit(&s->m_appends[3], memory_order_relaxed);
	out->appends_failed = atomic_load_explicit(&s->m_appends[4], memory_order_relaxed);
	out->events_appended = atomic_load_explicit(&s->m_events[0], memory_order_relaxed);
	out->events_idempotent = atomic_load_explicit(&s->m_events[1], memory_order_relaxed);
	out->events_conflict = atomic_load_explicit(&s->m_events[2], memory_order_relaxed);
	out->events_invalid = atomic_load_explicit(&s->m_events[3], memory_order_relaxed);
	out->events_failed = atomic_load_explicit(&s->m_events[4], memory_order_relaxed);
	out->bytes_written = atomic_load_explicit(&s->m_bytes, memory_order_relaxed);
	out->groups = atomic_load_explicit(&s->m_groups, memory_order_relaxed);
	out->group_appends = atomic_load_explicit(&s->m_group_appends, memory_order_relaxed);
	out->syncs = atomic_load_explicit(&s->m_syncs, memory_order_relaxed);
	out->sync_us = atomic_load_explicit(&s->m_sync_us, memory_order_relaxed);
	for (size_t i = 0; i < EVS_METRICS_GROUP_BUCKETS; i++)
		out->group_buckets[i] = atomic_load_explicit(&s->m_group_buckets[i],
							     memory_order_relaxed);
	for (size_t i = 0; i < EVS_METRICS_SYNC_BUCKETS; i++)
		out->sync_buckets[i] = atomic_load_explicit(&s->m_sync_buckets[i],
							    memory_order_relaxed);
	out->failed = atomic_load(&s->failed);
	return 0;
}

/*
 * The leader's work on the group grp[0..n): admit, stamp, write, sync,
 * index.  Returns how many requests of the group it finished (a request
 * that needs a new segment or repeats an id of this group waits for the
 * next round).
 */
static size_t lead(evs_store *s, evs__req **grp, size_t n)
{
	struct iovec iov[GROUP_MAX_REQS];
	size_t niov = 0, taken, total = 0;
	uint64_t start_off, first_pos = s->next_position;
	int failed = atomic_load(&s->failed);
	evs__pgroup *g = NULL;
	uint8_t *area = NULL;
	int rc;

	if (failed) {
		for (size_t k = 0; k < n; k++)
			req_fail(grp[k], evs__err(EVS_EFAILED, "store %s failed earlier (%s); "
						  "close and reopen it", s->dir,
						  evs_errname(failed)));
		return n;
	}
	if ((rc = index_room(s, grp, n, &g, &area)) != 0) {
		for (size_t k = 0; k < n; k++)
			req_fail(grp[k], rc);
		return n;
	}
	/* The first request decides whether the segment must roll. */
	if (s->wfd < 0 || seg_room(s) < grp[0]->len) {
		rc = roll(s);
		if (rc) {
			evs__free(g);
			for (size_t k = 0; k < n; k++)
				req_fail(grp[k], rc);
			return n;
		}
	}
	start_off = s->woff;
	for (taken = 0; taken < n; taken++) {
		evs__req *r = grp[taken];
		bool done;

		if (total + r->len > seg_room(s))
			break;
		if (r->ids_given && dup_in_group(grp, taken, r))
			break;
		rc = admit(s, r, &done);
		if (rc || done) {
			if (rc)
				req_fail(r, rc);
			else
				r->rc = 0;
			continue;
		}
		if (!r->head) {
			r->head = evs__map_find(&s->heads, r->stream, r->stream_len, true);
			if (!r->head) {
				req_fail(r, evs__err(EVS_ENOMEM, "out of memory adding stream"));
				continue;
			}
			r->head->id = s->next_stream_id++;
			r->new_stream = true;
		} else {
			r->new_stream = r->head->version == 0;
		}
		r->res.first_version = r->head->version + 1;
		r->res.last_version = r->head->version + r->count;
		r->res.first_position = s->next_position;
		r->res.last_position = s->next_position + r->count - 1;
		r->res.current_version = r->res.last_version;
		r->off = start_off + total;
		evs__batch_seal_header(r->buf, (uint32_t)r->len, r->count, s->next_position,
				       r->res.first_version, s->synced_pos, r->stream,
				       (uint16_t)r->stream_len, 0);
		r->head->version += r->count;
		s->next_position += r->count;
		for (uint32_t i = 0; i < r->count; i++)
			if (memcmp(r->ids + 16 * i, s->max_id, 16) > 0)
				memcpy(s->max_id, r->ids + 16 * i, 16);
		r->accepted = true;
		iov[niov].iov_base = r->buf;
		iov[niov].iov_len = r->len;
		niov++;
		total += r->len;
	}
	lix_end(s);
	if (niov == 0) {
		evs__free(g);
		return taken;
	}

	/* One write, one sync for the whole group. */
	ssize_t w = evs__os_table.pwritev(s->wfd, iov, (int)niov, (off_t)start_off);
	if (w != (ssize_t)total) {
		char path[4096];
		evs__seg_name(path, sizeof(path), s->logdir, s->wseg);
		rc = w < 0 ? evs__err_sys(errno, "write", path) :
		     evs__err(EVS_EIO, "write %s: short write (%zd of %zu bytes at offset %" PRIu64
			      ")", path, w, total, start_off);
		goto io_failed;
	}
	if (s->opts.durability == EVS_DURABILITY_SYNC) {
		uint64_t t0 = evs__monotonic_ns();
		if (evs__os_table.fdatasync(s->wfd) != 0) {
			char path[4096];
			evs__seg_name(path, sizeof(path), s->logdir, s->wseg);
			rc = evs__err_sys(errno, "fdatasync", path);
			goto io_failed;
		}
		count_sync(s, (evs__monotonic_ns() - t0) / 1000);
		s->synced_pos = s->next_position - 1;
	}
	count_group(s, niov, total);
	s->woff += total;
	atomic_store_explicit(&s->active_fill, (unsigned)(s->woff * 1000 / s->wsize),
			      memory_order_relaxed);
	if (s->woff > s->wsize / 16)
		evs__spare_want(s);
	rc = queue_for_index(s, grp, taken, g, area);
	if (rc) {
		/* The events are durable in the log and will be indexed at the
		 * next open; the store cannot go on without its index. */
		fail_store(s, rc);
		for (size_t k = 0; k < taken; k++)
			if (grp[k]->accepted)
				req_fail(grp[k], rc);
		return taken;
	}
	for (size_t k = 0; k < taken; k++)
		if (grp[k]->accepted)
			grp[k]->rc = 0;
	return taken;

io_failed:
	evs__free(g);
	fail_store(s, rc);
	cut_back(s, start_off, total);
	s->next_position = first_pos;
	for (size_t k = 0; k < taken; k++)
		if (grp[k]->accepted)
			req_fail(grp[k], rc);
	return taken;
}

/* Is any id in ids[0..n) there twice?  A small hash set of indexes.
 * 1 with the two events' indexes, 0, or -1 when out of memory. */
static int has_duplicate_id(const uint8_t *ids, size_t n, size_t *i_out, size_t *j_out)
{
	uint32_t local[256], *set = local;
	size_t cap = 16;
	int dup = 0;

	while (cap < 2 * n)
		cap *= 2;
	if (cap > sizeof(local) / sizeof(local[0])) {
		set = evs__malloc(cap * sizeof(*set));
		if (!set)
			return -1;
	}
	memset(set, 0xff, cap * sizeof(*set));
	for (size_t k = 0; k < n && !dup; k++) {
		size_t h = evs__id_hash(ids + 16 * k) & (cap - 1);
		for (; set[h] != UINT32_MAX; h = (h + 1) & (cap - 1)) {
			if (memcmp(ids + 16 * (size_t)set[h], ids + 16 * k, 16) == 0) {
				*i_out = set[h];
				*j_out = k;
				dup = 1;
				break;
			}
		}
		set[h] = (uint32_t)k;
	}
	if (set != local)
		evs__free(set);
	return dup;
}

/*
 * Checks and encodes the events into r->buf, on the caller's thread with
 * no lock held: everything per event (validation, copying, ids) happens
 * here, so the leader's work per append is a header and a CRC.
 */
static int encode(evs_store *s, evs__req *r, const evs_new_event *ev, size_t n)
{
	size_t len = EVS__BATCH_HDR + r->stream_len + 1, eoff;
	size_t room = s->opts.segment_size - EVS__SEG_HDR - EVS__SEAL_SIZE;
	int64_t now = evs__now_us();
	uint32_t lens_local[3 * 64], *lens = lens_local;
	bool any_id = false, all_ids = true;
	int rc = 0;

	if (n > UINT32_MAX)
		return evs__err(EVS_ETOOLARGE, "stream '%s': too many events", r->stream);
	if (n > 64) {
		lens = evs__malloc(3 * sizeof(*lens) * n);
		if (!lens)
			return evs__err(EVS_ENOMEM, "stream '%s': out of memory encoding %zu events",
					r->stream, n);
	}
	for (size_t i = 0; i < n; i++) {
		size_t bad, tl, ml, dl;
		const char *why = NULL;

		if ((rc = evs__check_type_name(ev[i].type, &tl)) != 0) {
			char why_type[512];
			/* evs__err writes the buffer evs_errmsg() reads */
			snprintf(why_type, sizeof(why_type), "%s", evs_errmsg());
			rc = evs__err(rc, "stream '%s', event %zu: %s", r->stream, i + 1,
				      why_type);
			goto out;
		}
		if (!ev[i].data) {
			rc = evs__err(EVS_EINVAL, "stream '%s', event %zu: no data", r->stream, i + 1);
			goto out;
		}
		dl = strlen(ev[i].data);
		ml = ev[i].metadata ? strlen(ev[i].metadata) : 0;
		if (tl + ml + dl > s->opts.max_event_size) {
			rc = evs__err(EVS_ETOOLARGE,
				      "stream '%s', event %zu: %zu bytes, over the limit of %u",
				      r->stream, i + 1, tl + ml + dl, s->opts.max_event_size);
			goto out;
		}
		if (evs__json_check_object_ex(ev[i].data, dl, &bad, &why) != 0) {
			rc = evs__err(EVS_EINVAL,
				      "stream '%s', event %zu: data is not a JSON object (%s at byte %zu)",
				      r->stream, i + 1, why ? why : "syntax error", bad);
			goto out;
		}
		if (ml && evs__json_check_object_ex(ev[i].metadata, ml, &bad, &why) != 0) {
			rc = evs__err(EVS_EINVAL,
				      "stream '%s', event %zu: metadata is not a JSON object (%s at byte %zu)",
				      r->stream, i + 1, why ? why : "syntax error", bad);
			goto out;
		}
		if (s->schemas &&
		    (rc = evs__schemas_check(s->schemas, r->stream, i + 1, ev[i].type, tl,
					     ev[i].schema_version ? ev[i].schema_version : 1,
					     ev[i].data, dl)) != 0)
			goto out;
		len += evs__rec_size(tl, ml, dl);
		if (len > room || len > EVS__MAX_BATCH) {
			rc = evs__err(EVS_ETOOLARGE,
				      "stream '%s': the append is over %zu bytes, more than a segment of %"
				      PRIu64 " bytes holds (or over 1 GiB)", r->stream, len - 1,
				      s->opts.segment_size);
			goto out;
		}
		lens[3 * i] = (uint32_t)tl;
		lens[3 * i + 1] = (uint32_t)ml;
		lens[3 * i + 2] = (uint32_t)dl;
		if (ev[i].id)
			any_id = true;
		else
			all_ids = false;
	}
	r->buf = evs__malloc(len);
	r->ids = evs__malloc(16 * n);
	if (!r->buf || !r->ids) {
		rc = evs__err(EVS_ENOMEM, "stream '%s': out of memory encoding %zu events",
			      r->stream, n);
		goto out;
	}
	r->len = len;
	r->count = (uint32_t)n;
	r->ids_given = any_id;
	eoff = EVS__BATCH_HDR + r->stream_len + 1;
	/* ids for all, overwritten where given: one lock, no random draw per
	 * event, and the generated ones in order for the index */
	if (!all_ids)
		evs__uuid_v7_seq(r->ids, n, now);
	for (size_t i = 0; i < n; i++) {
		uint8_t *id = r->ids + 16 * i;
		uint32_t tl = lens[3 * i], ml = lens[3 * i + 1], dl = lens[3 * i + 2];

		if (ev[i].id)
			memcpy(id, ev[i].id, 16);
		evs__rec_encode(r->buf + eoff, id, now,
				ev[i].schema_version ? ev[i].schema_version : 1, ev[i].type, tl,
				ev[i].metadata, ml, ev[i].data, dl);
		eoff += evs__rec_size(tl, ml, dl);
	}
	/* The same id twice in one append can never be stored. */
	size_t di = 0, dj = 0;
	int dup = any_id ? has_duplicate_id(r->ids, n, &di, &dj) : 0;
	if (dup < 0)
		rc = evs__err(EVS_ENOMEM, "stream '%s': out of memory checking %zu ids",
			      r->stream, n);
	else if (dup)
		rc = evs__err(EVS_EINVAL, "stream '%s': events %zu and %zu have the same id",
			      r->stream, di + 1, dj + 1);
out:
	if (lens != lens_local)
		evs__free(lens);
	return rc;
}

/*
 * One round of leadership, called with wmu held by the thread at the head
 * of the queue: take the queue as it stands, write it without the lock (so
 * the next group gathers meanwhile), then retire what was finished and hand
 * the lead to the new head.  A request the round deferred stays at the head.
 */
static void lead_round(evs_store *s)
{
	evs__req *grp[GROUP_MAX_REQS];
	size_t n = 0, bytes = 0, finished;

	for (evs__req *q = s->qhead; q && n < GROUP_MAX_REQS; q = q->next) {
		if (n > 0 && bytes + q->len > GROUP_MAX_BYTES)
			break;
		grp[n++] = q;
		bytes += q->len;
	}
	pthread_mutex_unlock(&s->wmu);
	finished = lead(s, grp, n);
	pthread_mutex_lock(&s->wmu);
	for (size_t k = 0; k < finished; k++) {
		evs__req *q = s->qhead;
		s->qhead = q->next;
		q->done = true;
		pthread_cond_signal(&q->cv);
	}
	if (!s->qhead)
		s->qtail = NULL;
	else
		pthread_cond_signal(&s->qhead->cv);
}

int evs_append(evs_store *s, const char *stream, int64_t expected_version,
	       const evs_new_event *events, size_t n, evs_append_result *out)
{
	evs__req r;
	int rc;

	evs__err_clear();
	memset(&r, 0, sizeof(r));
	if (out)
		memset(out, 0, sizeof(*out));
	if (!s)
		return evs__err(EVS_EINVAL, "evs_append: no store");
	if (s->read_only)
		return evs__err(EVS_EREADONLY, "store %s is open read-only", s->dir);
	if ((rc = evs__check_stream_name(stream, &r.stream_len)) != 0)
		goto out;
	if (n == 0 || !events) {
		rc = evs__err(EVS_EINVAL, "stream '%s': an append needs at least one event",
			      stream);
		goto out;
	}
	if (expected_version < EVS_EXPECT_EXISTS) {
		rc = evs__err(EVS_EINVAL, "stream '%s': invalid expected version %" PRId64,
			      stream, expected_version);
		goto out;
	}
	r.stream = stream;
	r.expected = expected_version;
	rc = encode(s, &r, events, n);
	if (rc)
		goto out;

	pthread_cond_init(&r.cv, NULL);
	pthread_mutex_lock(&s->wmu);
	if (s->qtail)
		s->qtail->next = &r;
	else
		s->qhead = &r;
	s->qtail = &r;
	while (!r.done) {
		if (s->qhead == &r)
			lead_round(s);
		else
			pthread_cond_wait(&r.cv, &s->wmu);
	}
	pthread_mutex_unlock(&s->wmu);
	pthread_cond_destroy(&r.cv);
	rc = r.rc;
	if (rc && r.errmsg)
		evs__err(rc, "%s", r.errmsg);
	if (out && (rc == 0 || rc == EVS_ECONFLICT))
		*out = r.res;
out:
	count_append(s, rc, &r, events ? n : 0);
	evs__free(r.buf);
	evs__free(r.ids);
	evs__free(r.errmsg);
	return rc;
}
