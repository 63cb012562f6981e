/*
 * indexer.c: the index pipeline and the published head.
 *
 * The writer acknowledges an append once its batch is durable in the log;
 * recording it in index.db is taken off that path.  The leader hands each
 * durable group to the indexer thread (evs__indexer_push), which writes
 * whatever has gathered in one SQLite transaction while the next group is
 * being written and synced.  So the SQLite work is shared by many groups
 * and never sits between one group's fdatasync and the next.  It waits up
 * to INDEX_DELAY_MS for work to gather, unless someone is waiting for it.
 *
 * Readers still see every acknowledged event: an in-process read first
 * waits until the index covers the acknowledged head it starts from
 * (evs__store_read_begin), which is at most one index transaction away.
 * Readers in other processes find the writer's acknowledged head in the
 * LOCK file, which the writer maps shared and updates after every group
 * (no system call); they poll the index until it covers that head, every
 * 200 us, for at most EVS__READ_WAIT_MS (then EVS_ETIMEOUT); they cannot
 * hurry the indexer, so such a read can wait up to INDEX_DELAY_MS plus one
 * index transaction.  If no writer
 * holds the lock, there is nothing to wait for.
 *
 * If the index cannot be written, the store fails (appends get
 * EVS_EFAILED); the acknowledged events are durable in the log and the
 * next open indexes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define EVS__READ_WAIT_MS 5000
/* Back-pressure: the leader waits when this many batches or events await
 * indexing (about a quarter second of the indexer's work), so the index
 * never lags far behind and memory stays bounded. */
#define MAX_PENDING_BATCHES 65536
#define MAX_PENDING_EVENTS 262144
/*
 * The indexer lets work gather for up to this long (or until a reader
 * waits, or INDEX_BATCHES batches are queued) before it writes: every
 * transaction rewrites the last pages of each index, so fewer, larger
 * transactions write far less to the WAL, and the writes compete less with
 * the log's fdatasync.
 */
#define INDEX_DELAY_MS 10
#define INDEX_BATCHES 4096

/* What the indexer thread is doing (ix_idle, under ix_mu). */
enum { IX_BUSY, IX_IDLE, IX_GATHERING };
#define SHARED_MAGIC 0x4845414453564531ull /* "1EVSDAEH" */

typedef struct pentry {
	evs__batch_ref ref;
	int64_t created_us;
	const char *stream;     /* into the group's block; NULL if not new */
	uint32_t stream_len;
	const uint8_t *ids;     /* ref.count ids, into the group's block */
} pentry;

struct evs__pgroup {
	evs__pgroup *next;
	size_t n;
	size_t events;
	uint64_t last_position;
	pentry e[];
};

evs__pgroup *evs__pgroup_new(size_t n, size_t extra, uint8_t **area)
{
	evs__pgroup *g = evs__malloc(sizeof(*g) + n * sizeof(pentry) + extra);

	if (!g)
		return NULL;
	g->next = NULL;
	g->n = 0;
	g->events = 0;
	g->last_position = 0;
	*area = (uint8_t *)&g->e[n];
	return g;
}

void evs__pgroup_add(evs__pgroup *g, const evs__batch_ref *ref, int64_t created_us,
		     const char *new_stream, uint32_t stream_len, const uint8_t *ids)
{
	pentry *e = &g->e[g->n++];

	e->ref = *ref;
	e->created_us = created_us;
	e->stream = new_stream;
	e->stream_len = stream_len;
	e->ids = ids;
	g->events += ref->count;
	g->last_position = ref->position + ref->count - 1;
}

/* A snapshot waiting for the indexer's next transaction; no stream means
 * "drop every snapshot". */
struct evs__snapq {
	evs__snapq *next;
	evs__snapshot snap;
	int64_t created_us;
	char stream[];
};

static void snaps_free(evs__snapq *q)
{
	while (q) {
		evs__snapq *next = q->next;
		evs__free(q->snap.state);
		evs__free(q);
		q = next;
	}
}

static void groups_free(evs__pgroup *g)
{
	while (g) {
		evs__pgroup *next = g->next;
		evs__free(g);
		g = next;
	}
}

static int index_groups(evs_store *s, evs__pgroup *g, const evs__snapq *q)
{
	int rc = evs__ix_begin(s->wix, true);

	for (; g && !rc; g = g->next) {
		for (size_t k = 0; k < g->n && !rc; k++) {
			const pentry *e = &g->e[k];
			if (e->stream)
				rc = evs__ix_put_stream(s->wix, e->ref.stream_id, e->stream,
							e->stream_len, e->created_us);
			if (!rc)
				rc = evs__ix_put_batch(s->wix, e->ref.stream_id, &e->ref, e->ids,
						       s->ix_max_id);
		}
	}
	for (; q && !rc; q = q->next)
		rc = q->stream[0] ? evs__ix_put_snapshot(s->wix, q->stream, &q->snap, q->created_us)
				  : evs__ix_clear_snapshots(s->wix);
	if (!rc)
		rc = evs__ix_commit(s->wix);
	if (rc)
		evs__ix_rollback(s->wix);
	return rc;
}

static void *indexer_main(void *arg)
{
	evs_store *s = arg;

	pthread_mutex_lock(&s->ix_mu);
	for (;;) {
		evs__pgroup *work, *last;
		evs__snapq *snaps;
		int rc;

		s->ix_idle = IX_IDLE;
		while (!s->pq_head && !s->sq_head && !s->ix_stop)
			pthread_cond_wait(&s->ix_work, &s->ix_mu);
		if (!s->pq_head && !s->sq_head)
			break;
		s->ix_idle = IX_GATHERING;
		if (!s->ix_stop && !s->ix_waiters && s->pq_batches < INDEX_BATCHES) {
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += INDEX_DELAY_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			while (!s->ix_stop && !s->ix_waiters && s->pq_batches < INDEX_BATCHES &&
			       pthread_cond_timedwait(&s->ix_work, &s->ix_mu, &until) == 0)
				;
		}
		s->ix_idle = IX_BUSY;
		work = s->pq_head;
		last = s->pq_tail;
		snaps = s->sq_head;
		s->pq_head = s->pq_tail = NULL;
		s->sq_head = s->sq_tail = NULL;
		s->pq_batches = 0;
		s->pq_events = 0;
		rc = s->ix_failed;
		pthread_mutex_unlock(&s->ix_mu);

		if (!rc)
			rc = index_groups(s, work, snaps);

		pthread_mutex_lock(&s->ix_mu);
		if (rc) {
			if (!s->ix_failed) {
				s->ix_failed = rc;
				snprintf(s->ix_errmsg, sizeof(s->ix_errmsg), "%s", evs_errmsg());
			}
			int expected = 0;
			atomic_compare_exchange_strong(&s->failed, &expected, rc);
		} else if (last) {
			atomic_store(&s->indexed, last->last_position);
		}
		pthread_cond_broadcast(&s->ix_done);
		pthread_mutex_unlock(&s->ix_mu);
		groups_free(work);
		snaps_free(snaps);
		pthread_mutex_lock(&s->ix_mu);
	}
	pthread_mutex_unlock(&s->ix_mu);
	return NULL;
}

int evs__indexer_start(evs_store *s)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&s->ix_mu, NULL);
	/* the gathering wait must not stretch when the wall clock steps back */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ix_work, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&s->ix_done, NULL);
	s->ix_init = true;
	atomic_store(&s->indexed, atomic_load(&s->visible));
	memcpy(s->ix_max_id, s->max_id, 16); /* everything is indexed at start */
	if (pthread_create(&s->ix_thread, NULL, indexer_main, s) != 0)
		return evs__err(EVS_ENOMEM, "store %s: cannot start the indexer thread", s->dir);
	s->ix_running = true;
	return 0;
}

void evs__indexer_stop(evs_store *s)
{
	if (!s->ix_init)
		return;
	if (s->ix_running) {
		pthread_mutex_lock(&s->ix_mu);
		s->ix_stop = true;
		pthread_cond_signal(&s->ix_work);
		pthread_mutex_unlock(&s->ix_mu);
		pthread_join(s->ix_thread, NULL);
		s->ix_running = false;
	}
	groups_free(s->pq_head);
	s->pq_head = s->pq_tail = NULL;
	snaps_free(s->sq_head);
	s->sq_head = s->sq_tail = NULL;
	pthread_mutex_destroy(&s->ix_mu);
	pthread_cond_destroy(&s->ix_work);
	pthread_cond_destroy(&s->ix_done);
	s->ix_init = false;
}

int evs__indexer_push(evs_store *s, evs__pgroup *g, uint64_t acked)
{
	int rc = 0;

	pthread_mutex_lock(&s->ix_mu);
	while ((s->pq_batches >= MAX_PENDING_BATCHES || s->pq_events >= MAX_PENDING_EVENTS) &&
	       !s->ix_failed) {
		s->ix_waiters++;
		pthread_cond_signal(&s->ix_work);
		pthread_cond_wait(&s->ix_done, &s->ix_mu);
		s->ix_waiters--;
	}
	if (s->pq_tail)
		s->pq_tail->next = g;
	else
		s->pq_head = g;
	s->pq_tail = g;
	s->pq_batches += g->n;
	s->pq_events += g->events;
	atomic_store(&s->visible, acked);
	if (s->shared)
		atomic_store_explicit(&s->shared[0], acked, memory_order_release);
	if (atomic_load(&s->subscribers)) {
		pthread_mutex_lock(&s->head_mu);
		pthread_cond_broadcast(&s->head_cv);
		pthread_mutex_unlock(&s->head_mu);
	}
	/* Wake the indexer only when that changes what it does: a signal
	 * per append would cost the append path a system call. */
	if (s->ix_idle == IX_IDLE ||
	    (s->ix_idle == IX_GATHERING && s->pq_batches >= INDEX_BATCHES))
		pthread_cond_signal(&s->ix_work);
	pthread_mutex_unlock(&s->ix_mu);
	return rc;
}

int evs__indexer_push_snapshot(evs_store *s, const char *stream, const evs__snapshot *snap)
{
	size_t sl = stream ? strlen(stream) : 0;
	evs__snapq *q;

	if (!s->ix_running)
		return 0; /* read-only: snapshots are only ever a saving */
	q = evs__calloc(1, sizeof(*q) + sl + 1);
	if (!q)
		return evs__err(EVS_ENOMEM, "out of memory saving a snapshot");
	if (stream) {
		memcpy(q->stream, stream, sl + 1);
		q->snap = *snap;
		if (!(q->snap.state = evs__strdup(snap->state))) {
			evs__free(q);
			return evs__err(EVS_ENOMEM, "out of memory saving a snapshot");
		}
		q->created_us = evs__now_us();
	}
	pthread_mutex_lock(&s->ix_mu);
	if (s->sq_tail)
		s->sq_tail->next = q;
	else
		s->sq_head = q;
	s->sq_tail = q;
	if (s->ix_idle == IX_IDLE)
		pthread_cond_signal(&s->ix_work);
	pthread_mutex_unlock(&s->ix_mu);
	return 0;
}

int evs__indexer_wait(evs_store *s, uint64_t target)
{
	int rc = 0;

	if (!s->ix_init || atomic_load(&s->indexed) >= target)
		return 0;
	pthread_mutex_lock(&s->ix_mu);
	s->ix_waiters++;
	pthread_cond_signal(&s->ix_work);
	while (atomic_load(&s->indexed) < target && !s->ix_failed)
		pthread_cond_wait(&s->ix_done, &s->ix_mu);
	s->ix_waiters--;
	if (atomic_load(&s->indexed) < target)
		rc = evs__err(EVS_EFAILED, "store %s: the index could not be written (%s); "
			      "acknowledged events past position %" PRIu64
			      " are in the log and will be indexed when the store is reopened",
			      s->dir, s->ix_errmsg, atomic_load(&s->indexed));
	pthread_mutex_unlock(&s->ix_mu);
	return rc;
}

/* ---- the head published in LOCK ---- */

uint64_t evs__store_head_hint(evs_store *s)
{
	_Atomic uint64_t *shared;

	if (!s->read_only)
		return atomic_load(&s->visible);
	pthread_mutex_lock(&s->pool_mu);
	if (!s->shared && s->lock_fd >= 0)
		evs__shared_map(s, s->lock_fd, false);
	shared = s->shared;
	pthread_mutex_unlock(&s->pool_mu);
	if (shared && atomic_load_explicit(&shared[1], memory_order_acquire) == SHARED_MAGIC)
		return atomic_load_explicit(&shared[0], memory_order_acquire);
	return UINT64_MAX;
}

int evs__shared_map(evs_store *s, int fd, bool writer)
{
	struct stat st;
	void *p;

	if (fstat(fd, &st) != 0)
		return -1;
	if (writer && st.st_size < 4096 && ftruncate(fd, 4096) != 0)
		return -1;
	if (!writer && st.st_size < 16)
		return -1;
	p = mmap(NULL, 4096, writer ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	s->shared = p;
	if (writer) {
		atomic_store(&s->shared[0], atomic_load(&s->visible));
		atomic_store(&s->shared[1], SHARED_MAGIC);
	}
	return 0;
}

void evs__shared_unmap(evs_store *s)
{
	if (s->shared)
		munmap((void *)s->shared, 4096);
	s->shared = NULL;
}

/* Does some process hold the writer's lock on LOCK? */
static bool writer_alive(evs_store *s)
{
	struct flock fl;

	if (s->lock_fd < 0)
		return false;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_RDLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(s->lock_fd, F_OFD_GETLK, &fl) != 0)
		return false;
	return fl.l_type != F_UNLCK;
}

static int recover_for_reader(evs_store *s, uint64_t h, uint64_t target)
{
	evs_options o = s->opts;
	evs_store *w = NULL;
	int rc;

	o.read_only = 0;
	o.create = 0;
	rc = evs_open(&w, s->dir, &o);

	if (rc == 0) {
		evs_close(w);
		return 0;
	}
	if (rc == EVS_ELOCKED)
		return rc;
	char why[512];
	snprintf(why, sizeof(why), "%s", evs_errmsg());
	return evs__err(rc, "store %s: its writer stopped before indexing acknowledged positions "
			"%" PRIu64 "..%" PRIu64 ", and recovering them failed: %s", s->dir, h + 1,
			target, why);
}

int evs__store_read_begin(evs_store *s, evs__ix **ix_out, uint64_t *head)
{
	evs__ix *ix;
	uint64_t target = 0, h = 0;
	int rc;

	if (!s->read_only) {
		target = atomic_load(&s->visible);
		rc = evs__indexer_wait(s, target);
		if (rc)
			return rc;
	} else if (s->lock_fd >= 0) {
		_Atomic uint64_t *shared;

		/* Mapped at open, or now if LOCK was too short then (a writer
		 * was still creating the store). */
		pthread_mutex_lock(&s->pool_mu);
		if (!s->shared)
			evs__shared_map(s, s->lock_fd, false);
		shared = s->shared;
		pthread_mutex_unlock(&s->pool_mu);
		if (shared && atomic_load_explicit(&shared[1], memory_order_acquire) == SHARED_MAGIC)
			target = atomic_load_explicit(&shared[0], memory_order_acquire);
	}
	rc = evs__store_ix_get(s, &ix);
	if (rc)
		return rc;
	if (s->read_only) {
		/* Poll until the writer's indexer covers its acknowledged head. */
		struct timespec nap = { 0, 200000 };
		bool recovered = false;
		for (int waited_us = 0;; waited_us += 200) {
			rc = evs__ix_head(ix, &h);
			if (rc || h >= target)
				break;
			if (!writer_alive(s)) {
				/* The writer died with acknowledged events its
				 * indexer had not written: recover the store as a
				 * short-lived writer (what the next writer's open
				 * would do), rather than serve a shorter log. */
				if (recovered)
					break;
				rc = recover_for_reader(s, h, target);
				if (rc == EVS_ELOCKED) {
					rc = 0; /* a writer appeared: wait for it */
				} else if (rc) {
					break;
				} else {
					recovered = true;
					/* a stand-in for an index not set up
					 * then: read the one recovery made */
					if (evs__ix_unset(ix)) {
						evs__ix_close(ix);
						rc = evs__store_ix_get(s, &ix);
						if (rc)
							return rc;
					}
					continue;
				}
			}
			if (waited_us >= EVS__READ_WAIT_MS * 1000) {
				rc = evs__err(EVS_ETIMEOUT, "store %s: the index stayed behind the "
					      "writer's acknowledged position %" PRIu64 " (at %" PRIu64
					      ") for %d ms", s->dir, target, h, EVS__READ_WAIT_MS);
				break;
			}
			nanosleep(&nap, NULL);
		}
	}
	if (!rc)
		rc = evs__ix_begin(ix, false);
	if (!rc && s->read_only)
		rc = evs__ix_head(ix, &h);
	if (rc) {
		evs__store_ix_put(s, ix);
		return rc;
	}
	*head = s->read_only ? h : target;
	*ix_out = ix;
	return 0;
}
