/*
 * store.c: opening and closing a store, the writer's lock, recovery, the
 * stream-head table, the segment table, the pool of index connections,
 * stats and verify.
 *
 * Recovery (DESIGN.md invariants 4 and 6) runs at every writable open:
 *  - the scan starts right after the last batch the index knows, so a
 *    cleanly closed store reads one batch header, not the whole log;
 *  - every batch past it is checked and indexed;
 *  - an invalid batch in the last segment with no valid batch after it is a
 *    torn tail (a write that was never acknowledged) and is cut off;
 *  - an invalid batch anywhere else fails the open with EVS_ECORRUPT naming
 *    the segment and offset: acknowledged data is never dropped silently;
 *  - index rows past the log's end are removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

/* ---- stream heads: open addressing, FNV-1a ---- */

static uint32_t hash_name(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h ? h : 1;
}

static int map_grow(evs__map *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 1024;
	evs__head **nh = evs__calloc(ncap, sizeof(*nh));

	if (!nh)
		return -1;
	for (size_t i = 0; i < m->cap; i++) {
		evs__head *h = m->slots[i];
		if (!h)
			continue;
		size_t j = h->hash & (ncap - 1);
		while (nh[j])
			j = (j + 1) & (ncap - 1);
		nh[j] = h;
	}
	evs__free(m->slots);
	m->slots = nh;
	m->cap = ncap;
	return 0;
}

evs__head *evs__map_find(evs__map *m, const char *name, size_t len, bool create)
{
	uint32_t hash = hash_name(name, len);
	evs__head *h;
	size_t i;

	if (m->cap) {
		for (i = hash & (m->cap - 1); m->slots[i]; i = (i + 1) & (m->cap - 1)) {
			h = m->slots[i];
			if (h->hash == hash && h->len == len && memcmp(h->name, name, len) == 0)
				return h;
		}
	}
	if (!create)
		return NULL;
	if ((m->n + 1) * 10 > m->cap * 7 && map_grow(m) != 0)
		return NULL;
	for (i = hash & (m->cap - 1); m->slots[i]; i = (i + 1) & (m->cap - 1))
		;
	h = evs__malloc(sizeof(*h) + len + 1);
	if (!h)
		return NULL;
	*h = (evs__head){ (char *)(h + 1), hash, (uint32_t)len, 0, 0, 0 };
	memcpy(h->name, name, len);
	h->name[len] = 0;
	m->slots[i] = h;
	m->n++;
	return h;
}

void evs__map_free(evs__map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		evs__free(m->slots[i]);
	evs__free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

static int load_head(int64_t id, const char *name, size_t len, uint64_t last_version,
		     void *ctx)
{
	evs_store *s = ctx;
	evs__head *h = evs__map_find(&s->heads, name, len, true);

	if (!h)
		return evs__err(EVS_ENOMEM, "out of memory loading stream heads");
	h->id = id;
	h->version = last_version;
	if (id >= s->next_stream_id)
		s->next_stream_id = id + 1;
	return 0;
}

static int load_heads(evs_store *s)
{
	evs__map_free(&s->heads);
	s->next_stream_id = 1;
	return evs__ix_each_stream(s->wix, load_head, s);
}

/* ---- segment table ---- */

int evs__store_add_segment(evs_store *s, uint64_t first)
{
	int rc = 0;
	size_t i;

	pthread_mutex_lock(&s->seg_mu);
	for (i = s->nsegs; i > 0 && s->segs[i - 1].first > first; i--)
		;
	if (i > 0 && s->segs[i - 1].first == first)
		goto out;
	if (s->nsegs == s->capsegs) {
		size_t ncap = s->capsegs ? s->capsegs * 2 : 16;
		evs__seg *n = evs__realloc(s->segs, ncap * sizeof(*n));
		if (!n) {
			rc = evs__err(EVS_ENOMEM, "out of memory adding a segment");
			goto out;
		}
		s->segs = n;
		s->capsegs = ncap;
	}
	memmove(&s->segs[i + 1], &s->segs[i], (s->nsegs - i) * sizeof(*s->segs));
	s->segs[i] = (evs__seg){ first, -1, 0, 0 };
	s->nsegs++;
out:
	pthread_mutex_unlock(&s->seg_mu);
	return rc;
}

/* segs[] index of `first`, or nsegs; under seg_mu. */
static size_t seg_find(const evs_store *s, uint64_t first)
{
	size_t lo = 0, hi = s->nsegs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->segs[mid].first < first)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nsegs && s->segs[lo].first == first ? lo : s->nsegs;
}

/* Closes the least recently used descriptors no reader holds, down to
 * EVS__SEG_FDS_KEPT open; under seg_mu. */
static void seg_evict(evs_store *s)
{
	while (s->nseg_open > EVS__SEG_FDS_KEPT) {
		size_t victim = s->nsegs;
		for (size_t i = 0; i < s->nsegs; i++)
			if (s->segs[i].fd >= 0 && s->segs[i].users == 0 &&
			    (victim == s->nsegs || s->segs[i].used < s->segs[victim].used))
				victim = i;
		if (victim == s->nsegs)
			return; /* every open one is in use */
		evs__os_table.close(s->segs[victim].fd);
		s->segs[victim].fd = -1;
		s->nseg_open--;
	}
}

int evs__store_seg_fd(evs_store *s, uint64_t first, int *fd_out)
{
	size_t i;
	int rc;

	pthread_mutex_lock(&s->seg_mu);
	i = seg_find(s, first);
	if (i < s->nsegs && s->segs[i].fd >= 0) {
		s->segs[i].users++;
		s->segs[i].used = ++s->seg_tick;
		*fd_out = s->segs[i].fd;
		pthread_mutex_unlock(&s->seg_mu);
		return 0;
	}
	pthread_mutex_unlock(&s->seg_mu);

	/* Not open (yet, or any more; or made by another process's writer). */
	char path[4096];
	evs__seg_name(path, sizeof(path), s->logdir, first);
	int fd = evs__os_table.open(path, O_RDONLY, 0);
	if (fd < 0)
		return evs__err_sys(errno, "open segment", path);
	rc = evs__store_add_segment(s, first);
	if (rc) {
		evs__os_table.close(fd);
		return rc;
	}
	pthread_mutex_lock(&s->seg_mu);
	i = seg_find(s, first);
	if (s->segs[i].fd < 0) {
		s->segs[i].fd = fd;
		s->nseg_open++;
		fd = -1;
	}
	s->segs[i].users++;
	s->segs[i].used = ++s->seg_tick;
	*fd_out = s->segs[i].fd;
	seg_evict(s);
	pthread_mutex_unlock(&s->seg_mu);
	if (fd >= 0)
		evs__os_table.close(fd); /* another thread opened it first */
	return 0;
}

void evs__store_seg_put(evs_store *s, uint64_t first)
{
	pthread_mutex_lock(&s->seg_mu);
	size_t i = seg_find(s, first);
	if (i < s->nsegs && s->segs[i].users > 0 && --s->segs[i].users == 0)
		seg_evict(s);
	pthread_mutex_unlock(&s->seg_mu);
}

/* ---- index connection pool ---- */

int evs__store_ix_get(evs_store *s, evs__ix **out)
{
	evs__ix *ix = NULL;
	char path[4096];

	pthread_mutex_lock(&s->pool_mu);
	if (s->npool)
		ix = s->pool[--s->npool];
	pthread_mutex_unlock(&s->pool_mu);
	if (ix) {
		*out = ix;
		return 0;
	}
	snprintf(path, sizeof(path), "%s", s->ixpath);
	return evs__ix_open(out, path, true);
}

void evs__store_ix_put(evs_store *s, evs__ix *ix)
{
	if (!ix)
		return;
	if (evs__ix_unset(ix) || !evs__ix_rollback(ix)) {
		/* a stand-in for an index not set up yet (the next reader
		 * looks at the file again), or still in a transaction: not
		 * for the next reader */
		evs__ix_close(ix);
		return;
	}
	pthread_mutex_lock(&s->pool_mu);
	if (s->npool == s->cappool) {
		size_t ncap = s->cappool ? s->cappool * 2 : 8;
		evs__ix **n = evs__realloc(s->pool, ncap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&s->pool_mu);
			evs__ix_close(ix);
			return;
		}
		s->pool = n;
		s->cappool = ncap;
	}
	s->pool[s->npool++] = ix;
	pthread_mutex_unlock(&s->pool_mu);
}

/* ---- recovery ---- */

/* Reads the batch at `off` of an open segment into *buf; returns 0 with
 * *h filled when it is a well-formed batch with a good CRC, 1 when the
 * segment has only zeros there (end of its data), -1 when invalid. */
static int load_batch(int fd, uint64_t off, uint64_t segsize, uint8_t **buf,
		      size_t *cap, evs__batch_hdr *h)
{
	uint8_t hdr[EVS__BATCH_HDR];
	ssize_t r;

	if (off + EVS__BATCH_HDR > segsize)
		return 1;
	r = evs__os_pread_all(fd, hdr, sizeof(hdr), (off_t)off);
	if (r < 0)
		return -2;
	if (r < (ssize_t)sizeof(hdr)) {
		/* A short file: zeros past its end were lost (or cut). */
		for (ssize_t i = 0; i < r; i++)
			if (hdr[i])
				return -1;
		return 1;
	}
	static const uint8_t zero[EVS__BATCH_HDR];
	if (memcmp(hdr, zero, sizeof(hdr)) == 0)
		return 1;
	if (evs__batch_parse_header(h, hdr, segsize - off) != 0)
		return -1;
	if (*cap < h->length) {
		uint8_t *n = evs__realloc(*buf, h->length);
		if (!n)
			return -3;
		*buf = n;
		*cap = h->length;
	}
	r = evs__os_pread_all(fd, *buf, h->length, (off_t)off);
	if (r < 0)
		return -2;
	if (r < (ssize_t)h->length)
		return -1;
	evs__batch_parse_header(h, *buf, h->length);
	if (evs__batch_check_crc(h, *buf) != 0)
		return -1;
	return 0;
}

/*
 * Looks at [from, to) of the last segment, past the end of its good
 * batches.  Returns 1 if some batch there proves that position `expect`
 * was durable (its synced-through mark reaches `expect`: it was written
 * after the group holding `expect` was synced), 0 if not, or < 0 on a read
 * error (-2) or out of memory (-3).  *nonzero_end is set past the last
 * non-zero byte found (or to `from`).  Batches of a group that was never
 * synced can sit there after a power loss, behind a torn or missing page,
 * and prove nothing.
 */
static int scan_tail(int fd, uint64_t from, uint64_t to, uint64_t expect,
		     uint64_t *nonzero_end, uint64_t *proof_off)
{
	const size_t chunk = 1u << 20;
	uint8_t *buf = NULL, *win = evs__malloc(chunk + 4);
	size_t cap = 0;
	int rc = 0;

	*nonzero_end = from;
	if (!win)
		return -3;
	for (uint64_t base = from; base < to && rc == 0; base += chunk) {
		size_t want = to - base < chunk ? (size_t)(to - base) : chunk;
		ssize_t r = evs__os_pread_all(fd, win, want, (off_t)base);
		if (r < 0) {
			rc = -2;
			break;
		}
		for (ssize_t k = r; k > 0; k--)
			if (win[k - 1]) {
				*nonzero_end = base + (uint64_t)k;
				break;
			}
		for (size_t i = 0; i + 4 <= (size_t)r; i++) {
			uint8_t *m = memchr(win + i, 'E', (size_t)r - i);
			evs__batch_hdr h;

			if (!m)
				break;
			i = (size_t)(m - win);
			if (i + 4 > (size_t)r || evs__get32(m) != EVS__BATCH_MAGIC)
				continue;
			int lr = load_batch(fd, base + i, to, &buf, &cap, &h);
			if (lr == -3) {
				rc = -3;
				break;
			}
			if (lr == 0 && !(h.flags & EVS__BATCH_SEAL) && h.synced_through >= expect) {
				*proof_off = base + i;
				rc = 1;
				break;
			}
		}
		if ((size_t)r < want)
			break;
	}
	evs__free(win);
	evs__free(buf);
	return rc;
}

/*
 * Makes the tail of the last segment from `off` on read as zeros: writes
 * zeros over [off, nonzero_end) (real writes, so the blocks stay allocated
 * and later fdatasyncs carry no metadata) and gives a file that was cut
 * short its size back.
 */
static int scrub_tail(evs_store *s, int fd, const char *path, uint64_t off,
		      uint64_t nonzero_end, uint64_t segsize)
{
	struct stat st;
	bool changed = false;

	if (nonzero_end > off) {
		uint8_t z[4096];
		memset(z, 0, sizeof(z));
		for (uint64_t at = off; at < nonzero_end;) {
			size_t n = nonzero_end - at < sizeof(z) ? (size_t)(nonzero_end - at) : sizeof(z);
			if (evs__os_pwrite_all(fd, z, n, (off_t)at) != 0)
				return evs__err_sys(errno, "clear torn tail of segment", path);
			at += n;
		}
		s->open_stats.truncated_bytes += nonzero_end - off;
		changed = true;
	}
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < segsize) {
		if (evs__os_table.ftruncate(fd, (off_t)segsize) != 0)
			return evs__err_sys(errno, "restore the size of segment", path);
		changed = true;
	}
	if (changed && evs__os_table.fsync(fd) != 0)
		return evs__err_sys(errno, "clear torn tail of segment", path);
	return 0;
}

/* How far past the log's end a power loss can leave batches of the last,
 * unsynced group: a group is at most about 1 MiB, or one batch. */
#define TAIL_WINDOW (2u << 20)

typedef struct recover_ctx {
	uint8_t *ids;
	uint32_t n;
} recover_ctx;

static int collect_id(const evs_event *ev, void *ctx)
{
	recover_ctx *c = ctx;

	memcpy(c->ids + 16 * c->n++, ev->id, 16);
	return 0;
}

/* Adds a recovered batch to the index (inside the open transaction). */
static int index_recovered(evs_store *s, const evs__batch_hdr *h, const uint8_t *p,
			   uint64_t seg, uint64_t off, const char *segpath)
{
	evs__head *head = evs__map_find(&s->heads, h->stream, h->stream_len, true);
	recover_ctx c = { NULL, 0 };
	evs__batch_ref ref;
	bool is_new;
	int64_t ts;
	int rc;

	if (!head)
		return evs__err(EVS_ENOMEM, "out of memory during recovery");
	is_new = head->id == 0;
	if (h->first_version != head->version + 1)
		return evs__err(EVS_ECORRUPT,
				"%s offset %" PRIu64 ": batch of stream '%.*s' starts at version %"
				PRIu64 ", expected %" PRIu64, segpath, off, (int)h->stream_len,
				h->stream, h->first_version, head->version + 1);
	if (is_new)
		head->id = s->next_stream_id++;
	head->version += h->count;
	ts = (int64_t)evs__get64(p + EVS__BATCH_HDR + h->stream_len + 1 + 20);
	if (is_new) {
		rc = evs__ix_put_stream(s->wix, head->id, h->stream, h->stream_len, ts);
		if (rc)
			return rc;
	}
	ref = (evs__batch_ref){ h->first_position, h->first_version, h->count,
				seg, off, h->length, head->id };
	if (!(c.ids = evs__malloc(16 * (size_t)h->count)))
		return evs__err(EVS_ENOMEM, "out of memory during recovery");
	if (evs__batch_decode(h, p, collect_id, &c) < 0 || c.n != h->count)
		rc = evs__err(EVS_ECORRUPT, "%s offset %" PRIu64 ": malformed record",
			      segpath, off);
	else
		rc = evs__ix_put_batch(s->wix, head->id, &ref, c.ids, s->ix_max_id);
	evs__free(c.ids);
	return rc;
}

/* Writes the index's mark of a writer with durability none (see recover). */
static int set_unsynced_mark(evs_store *s, bool on)
{
	int rc = evs__ix_begin(s->wix, true);

	if (!rc)
		rc = evs__ix_put_meta(s->wix, EVS__META_UNSYNCED, on);
	if (!rc)
		rc = evs__ix_commit(s->wix);
	if (rc)
		evs__ix_rollback(s->wix);
	else
		s->unsynced_mark = on;
	return rc;
}

static int recover(evs_store *s)
{
	uint64_t *segs = NULL;
	size_t nsegs = 0, i, start = 0;
	uint64_t start_off = EVS__SEG_HDR, pending = 0;
	evs__batch_ref last;
	uint8_t *buf = NULL;
	size_t cap = 0;
	bool in_tx = false;
	uint64_t done_before = 0;  /* bytes of the segments scanned, for progress */
	int rc;
	char path[4096];

	rc = evs__seg_list(&segs, &nsegs, s->logdir, true);
	if (rc)
		return rc;
	rc = load_heads(s);
	if (rc)
		goto out;
	s->next_position = 1;
	s->wfd = -1;

	/* Was the last writer one with durability none that did not close?
	 * Then the index may hold batches of the last segment that never
	 * reached the disk.  (No mark: a store no such writer has opened;
	 * the option of this open decides, as before there was a mark.) */
	uint64_t unsynced = 0;
	rc = evs__ix_get_meta(s->wix, EVS__META_UNSYNCED, &unsynced);
	if (rc && rc != EVS_ENOTFOUND)
		goto out;
	bool marked = rc == 0 && unsynced != 0;
	bool may_be_ahead = rc == 0 ? marked : s->opts.durability == EVS_DURABILITY_NONE;
	s->unsynced_mark = marked;

	rc = evs__ix_last_batch(s->wix, &last);
	if (rc == 0) {
		/* Check the index's last batch is in the log as recorded. */
		bool ok = false;
		for (i = 0; i < nsegs; i++)
			if (segs[i] == last.segment)
				break;
		if (i < nsegs) {
			evs__seg_name(path, sizeof(path), s->logdir, segs[i]);
			int fd = evs__os_table.open(path, O_RDONLY, 0);
			evs__batch_hdr h;
			if (fd >= 0) {
				ok = load_batch(fd, last.offset, last.offset + last.length,
						&buf, &cap, &h) == 0 &&
				     h.first_position == last.position &&
				     h.count == last.count;
				evs__os_table.close(fd);
			}
		}
		if (ok && !marked) {
			start = i;
			start_off = last.offset + last.length;
			s->next_position = last.position + last.count;
		} else if (!may_be_ahead) {
			/* The index is written only after the log's fdatasync:
			 * a batch it records was acknowledged and must be
			 * there.  Refuse rather than drop it. */
			evs__seg_name(path, sizeof(path), s->logdir, last.segment);
			rc = evs__err(EVS_ECORRUPT, "%s offset %" PRIu64 ": acknowledged batch "
				      "at position %" PRIu64 " (%u bytes, recorded in index.db) "
				      "is missing or damaged", path, last.offset, last.position,
				      last.length);
			goto out;
		} else {
			/* Durability none promised nothing across a power
			 * loss: the index may have outlived the log's last
			 * pages, even with its last batch there (pages reach
			 * the disk in any order).  Sealed segments were
			 * synced at their seal.  Drop what the index holds
			 * from the last segment on and index it again from
			 * the log. */
			uint64_t keep = 0;
			for (start = 0; start < nsegs && segs[start] < last.segment; start++)
				;
			if (start == nsegs && nsegs > 0)
				start = nsegs - 1;
			if (start < nsegs)
				keep = segs[start] - 1;
			rc = evs__ix_begin(s->wix, true);
			if (!rc)
				rc = evs__ix_truncate_after(s->wix, keep);
			if (!rc)
				rc = evs__ix_commit(s->wix);
			if (!rc)
				rc = load_heads(s);
			if (rc)
				goto out;
			start_off = EVS__SEG_HDR;
			s->next_position = keep + 1;
		}
	} else if (rc == EVS_ENOTFOUND) {
		rc = 0;
		if (nsegs > 0 && segs[0] != 1) {
			rc = evs__err(EVS_ECORRUPT, "log %s: first segment starts at position %"
				      PRIu64 ", expected 1", s->logdir, segs[0]);
			goto out;
		}
	} else {
		goto out;
	}

	for (i = 0; i < nsegs; i++) {
		rc = evs__store_add_segment(s, segs[i]);
		if (rc)
			goto out;
	}
	/* recovered batches are indexed in order after what the index has */
	if ((rc = evs__ix_max_id(s->wix, s->ix_max_id)) != 0)
		goto out;

	for (i = start; i < nsegs; i++) {
		bool is_last = i + 1 == nsegs, sealed = false, synced = false;
		uint8_t shdr[EVS__SEG_HDR];
		uint64_t segsize, off = i == start ? start_off : EVS__SEG_HDR;
		int fd;

		evs__seg_name(path, sizeof(path), s->logdir, segs[i]);
		fd = evs__os_table.open(path, is_last ? O_RDWR : O_RDONLY, 0);
		if (fd < 0) {
			rc = evs__err_sys(errno, "open segment", path);
			goto out;
		}
		if (evs__os_pread_all(fd, shdr, sizeof(shdr), 0) != (ssize_t)sizeof(shdr) ||
		    evs__seg_check_header(shdr, segs[i], &segsize) != 0 ||
		    segsize < EVS_MIN_SEGMENT_SIZE) {
			evs__os_table.close(fd);
			rc = evs__err(EVS_ECORRUPT, "%s offset 0: bad segment header", path);
			goto out;
		}
		if (off == EVS__SEG_HDR && segs[i] != s->next_position) {
			evs__os_table.close(fd);
			rc = evs__err(EVS_ECORRUPT, "%s: segment starts at position %" PRIu64
				      ", expected %" PRIu64, path, segs[i], s->next_position);
			goto out;
		}
		for (;;) {
			evs__batch_hdr h;
			int lr = load_batch(fd, off, segsize, &buf, &cap, &h);
			if (lr == -2 || lr == -3) {
				evs__os_table.close(fd);
				rc = lr == -3 ? evs__err(EVS_ENOMEM, "out of memory in recovery")
					      : evs__err_sys(errno, "read segment", path);
				goto out;
			}
			if (lr == 0 && h.first_position != s->next_position)
				lr = -1;
			if (lr == 1 && !is_last)
				break;
			if (lr == 1 || (lr < 0 && is_last)) {
				/*
				 * The end of the last segment's good batches.  A
				 * bad batch here (lr < 0), or bytes after zeros
				 * (lr == 1), are what a crash or power loss left of
				 * a group that was never acknowledged, unless a batch
				 * further on says `next_position` was durable.
				 */
				uint64_t nz, proof = 0;
				uint64_t to = lr == 1 ? off + TAIL_WINDOW : segsize;
				int vr = scan_tail(fd, lr == 1 ? off : off + 1, to < segsize ? to : segsize,
						   s->next_position, &nz, &proof);
				if (vr == 1) {
					evs__os_table.close(fd);
					rc = evs__err(EVS_ECORRUPT,
						      "%s offset %" PRIu64 ": %s where position %" PRIu64
						      " was, but the batch at offset %" PRIu64
						      " was written after it was durable", path, off,
						      lr == 1 ? "zeros" : "a bad batch", s->next_position,
						      proof);
					goto out;
				}
				if (vr < 0) {
					evs__os_table.close(fd);
					rc = vr == -3 ? evs__err(EVS_ENOMEM, "out of memory in recovery")
						      : evs__err_sys(errno, "read segment", path);
					goto out;
				}
				if (lr < 0 && nz < off + 1)
					nz = off + 1; /* the bad header itself */
				rc = scrub_tail(s, fd, path, off, nz, segsize);
				if (rc) {
					evs__os_table.close(fd);
					goto out;
				}
				break;
			}
			if (lr < 0) {
				evs__os_table.close(fd);
				rc = evs__err(EVS_ECORRUPT, "%s offset %" PRIu64
					      ": bad batch (expected position %" PRIu64 ")", path, off,
					      s->next_position);
				goto out;
			}
			s->open_stats.recovery_bytes += h.length;
			if (h.flags & EVS__BATCH_SEAL) {
				sealed = true;
				off += h.length;
				break;
			}
			if (!synced) {
				/* What the index records must be durable: these
				 * bytes may never have been synced (a crash during
				 * the fdatasync of their group). */
				if (evs__os_table.fdatasync(fd) != 0) {
					rc = evs__err_sys(errno, "fdatasync", path);
					evs__os_table.close(fd);
					goto out;
				}
				synced = true;
			}
			if (!in_tx) {
				rc = evs__ix_begin(s->wix, true);
				if (rc) {
					evs__os_table.close(fd);
					goto out;
				}
				in_tx = true;
			}
			rc = index_recovered(s, &h, buf, segs[i], off, path);
			if (rc) {
				evs__os_table.close(fd);
				goto out;
			}
			s->open_stats.recovered_batches++;
			s->next_position += h.count;
			off += h.length;
			if (++pending >= 4096) {
				rc = evs__ix_commit(s->wix);
				in_tx = false;
				pending = 0;
				if (rc) {
					evs__os_table.close(fd);
					goto out;
				}
				/* the total guesses every segment left is full */
				if (s->rprogress)
					s->rprogress(done_before + off, done_before +
						     (nsegs - i) * segsize, s->rctx);
			}
		}
		if (!is_last && !sealed) {
			evs__os_table.close(fd);
			rc = evs__err(EVS_ECORRUPT, "%s offset %" PRIu64
				      ": segment ends without a seal but another follows it",
				      path, off);
			goto out;
		}
		done_before += is_last ? off : segsize;
		if (is_last && !sealed) {
			s->wfd = fd;
			s->wseg = segs[i];
			s->woff = off;
			s->wsize = segsize;
			atomic_store(&s->active_fill, (unsigned)(off * 1000 / segsize));
		} else {
			evs__os_table.close(fd);
		}
	}
	if (in_tx) {
		rc = evs__ix_commit(s->wix);
		in_tx = false;
	}
	if (!rc && s->rprogress)
		s->rprogress(done_before, done_before, s->rctx);
	if (!rc && s->open_stats.recovered_batches)
		rc = load_heads(s);
	if (!rc)
		rc = evs__ix_max_id(s->wix, s->max_id);
out:
	if (in_tx)
		evs__ix_rollback(s->wix);
	if (rc && s->wfd >= 0) {
		evs__os_table.close(s->wfd);
		s->wfd = -1;
	}
	evs__free(buf);
	evs__free(segs);
	atomic_store(&s->visible, s->next_position - 1);
	return rc;
}

/* ---- open and close ---- */

/*
 * Is the directory empty, or holding only what an interrupted creation
 * leaves (an empty log/ directory, no LOCK)?  Either may be made a store.
 */
static int is_empty_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!strcmp(e->d_name, "log")) {
			char sub[4200];
			snprintf(sub, sizeof(sub), "%s/log", path);
			if (is_empty_dir(sub))
				continue;
		}
		empty = 0;
		break;
	}
	closedir(d);
	return empty;
}

/* The directory holding `path` ("." for a bare name). */
static void parent_of(char *out, size_t size, const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	while (n > 0 && path[n - 1] != '/')
		n--;
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 0)
		snprintf(out, size, ".");
	else
		snprintf(out, size, "%.*s", (int)n, path);
}

static int create_layout(evs_store *s, const char *lockpath)
{
	int fd;

	if (evs__os_table.mkdir(s->logdir, 0755) != 0 && errno != EEXIST)
		return evs__err_sys(errno, "create", s->logdir);
	fd = evs__os_table.open(lockpath, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		return evs__err_sys(errno, "create", lockpath);
	evs__os_table.close(fd);
	if (evs__os_fsync_dir(s->dir) != 0)
		return evs__err_sys(errno, "fsync", s->dir);
	return 0;
}

/* evs_open, over index file `ixname` in dir; `progress` for recovery.
 * `fresh`: the index file is removed first, once the lock is taken, and
 * again if the open fails after that. */
static int open_store(evs_store **out, const char *dir, const evs_options *opts,
		      const char *ixname, bool fresh, evs_progress_cb progress, void *pctx)
{
	evs_options defaults = EVS_OPTIONS_INIT;
	evs_store *s;
	char lockpath[4096], ixpath[4096];
	struct stat st;
	bool locked = false;
	int rc;

	evs__err_clear();
	if (!out)
		return evs__err(EVS_EINVAL, "evs_open: out is NULL");
	if (!dir || !*dir)
		return evs__err(EVS_EINVAL, "evs_open: no directory given");
	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (opts->version < 1 || opts->version > EVS_OPTIONS_VERSION)
		return evs__err(EVS_EINVAL, "evs_open: options version %d, expected 1 to %d",
				opts->version, EVS_OPTIONS_VERSION);
	if (opts->segment_size < EVS_MIN_SEGMENT_SIZE || opts->segment_size > (1ull << 40))
		return evs__err(EVS_EINVAL, "evs_open: segment size %" PRIu64
				" out of range [%u, 2^40]", opts->segment_size,
				EVS_MIN_SEGMENT_SIZE);
	if (opts->max_event_size == 0)
		return evs__err(EVS_EINVAL, "evs_open: max event size is 0");
	if (opts->durability != EVS_DURABILITY_SYNC && opts->durability != EVS_DURABILITY_NONE)
		return evs__err(EVS_EINVAL, "evs_open: unknown durability %d", (int)opts->durability);
	if (strlen(dir) > 3000)
		return evs__err(EVS_EINVAL, "evs_open: directory path too long");

	s = evs__calloc(1, sizeof(*s));
	if (!s)
		return evs__err(EVS_ENOMEM, "out of memory opening %s", dir);
	/* a version 1 struct ends before the schema fields */
	if (opts->version == 1) {
		memcpy(&s->opts, opts, offsetof(evs_options, schema_dir));
		s->opts.version = EVS_OPTIONS_VERSION;
	} else {
		s->opts = *opts;
	}
	s->opts.schema_dir = NULL; /* the caller's string; s->schemas keeps what it needs */
	s->read_only = opts->read_only != 0;
	s->lock_fd = -1;
	s->wfd = -1;
	s->next_stream_id = 1;
	pthread_mutex_init(&s->wmu, NULL);
	pthread_mutex_init(&s->head_mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->head_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_mutex_init(&s->seg_mu, NULL);
	pthread_mutex_init(&s->pool_mu, NULL);
	s->dir = evs__strdup(dir);
	s->logdir = evs__malloc(strlen(dir) + 5);
	if (!s->dir || !s->logdir) {
		evs_close(s);
		return evs__err(EVS_ENOMEM, "out of memory opening %s", dir);
	}
	sprintf(s->logdir, "%s/log", dir);
	if ((rc = evs__upcasters_new(&s->upcasters)) != 0 ||
	    (opts->version >= 2 && opts->schema_dir &&
	     ((rc = evs__schemas_load(&s->schemas, opts->schema_dir, opts->schema_strict != 0,
				      opts->schema_formats != 0)) != 0 ||
	      (rc = evs__upcasters_load_dir(s->upcasters, opts->schema_dir)) != 0))) {
		evs_close(s);
		return rc;
	}
	snprintf(lockpath, sizeof(lockpath), "%s/LOCK", dir);
	snprintf(ixpath, sizeof(ixpath), "%s/%s", dir, ixname);
	if (!(s->ixpath = evs__strdup(ixpath))) {
		rc = evs__err(EVS_ENOMEM, "out of memory opening %s", dir);
		goto fail;
	}
	s->rprogress = progress;
	s->rctx = pctx;

	if (stat(dir, &st) != 0) {
		if (errno != ENOENT || !opts->create || s->read_only) {
			rc = errno == ENOENT ? evs__err(EVS_ENOTFOUND, "no store at %s", dir)
					     : evs__err_sys(errno, "open store", dir);
			goto fail;
		}
		if (evs__os_table.mkdir(dir, 0755) != 0) {
			rc = evs__err_sys(errno, "create store directory", dir);
			goto fail;
		}
		/* the new directory's entry must survive a power loss too */
		char parent[4096];
		parent_of(parent, sizeof(parent), dir);
		if (evs__os_fsync_dir(parent) != 0) {
			rc = evs__err_sys(errno, "fsync", parent);
			goto fail;
		}
		if ((rc = create_layout(s, lockpath)) != 0)
			goto fail;
	} else if (!S_ISDIR(st.st_mode)) {
		rc = evs__err(EVS_EINVAL, "%s is not a directory", dir);
		goto fail;
	} else if (stat(s->logdir, &st) != 0 || !S_ISDIR(st.st_mode) ||
		   access(lockpath, F_OK) != 0) {
		if (!opts->create || s->read_only || !is_empty_dir(dir)) {
			rc = evs__err(opts->create && !s->read_only ? EVS_EINVAL :
				      is_empty_dir(dir) ? EVS_ENOTFOUND : EVS_EINVAL,
				      "%s is not an evstore store (no log/ directory or LOCK file)%s",
				      dir, is_empty_dir(dir) ? "" : " and is not empty");
			goto fail;
		}
		if ((rc = create_layout(s, lockpath)) != 0)
			goto fail;
	}

	if (!s->read_only) {
		s->lock_fd = open(lockpath, O_RDWR | O_CLOEXEC);
		if (s->lock_fd < 0) {
			rc = evs__err_sys(errno, "open", lockpath);
			goto fail;
		}
		/* An OFD lock belongs to the open file description, so a
		 * second open in this same process is refused too; readers
		 * can test for it without taking it (F_OFD_GETLK). */
		struct flock fl;
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (fcntl(s->lock_fd, F_OFD_SETLK, &fl) != 0) {
			rc = errno == EAGAIN || errno == EACCES ?
			     evs__err(EVS_ELOCKED, "store %s is locked by another writer", dir) :
			     evs__err_sys(errno, "lock", lockpath);
			goto fail;
		}
		locked = true;
		if (fresh)
			evs__unlink_db(ixpath);
		rc = evs__ix_open(&s->wix, ixpath, false);
		if (!rc)
			rc = evs__ix_open(&s->lix, ixpath, true);
		if (rc)
			goto fail;
		rc = recover(s);
		if (rc)
			goto fail;
		/* A batch's synced-through mark must be true.  With durability
		 * none, what the last process wrote may still be only in the
		 * page cache: sync it once here, so that marks can start from
		 * the head. */
		if (s->opts.durability == EVS_DURABILITY_NONE && s->wfd >= 0 &&
		    evs__os_table.fdatasync(s->wfd) != 0) {
			char seg[4096];
			evs__seg_name(seg, sizeof(seg), s->logdir, s->wseg);
			rc = evs__err_sys(errno, "fdatasync", seg);
			goto fail;
		}
		s->synced_pos = s->next_position - 1;
		/* Marked while a writer with durability none has the store
		 * open (cleared by its close), so the next open knows to check
		 * the index against the log; cleared once the log is synced. */
		bool want = s->opts.durability == EVS_DURABILITY_NONE;
		if (want != s->unsynced_mark && (rc = set_unsynced_mark(s, want)) != 0)
			goto fail;
		if (evs__shared_map(s, s->lock_fd, true) != 0) {
			rc = evs__err_sys(errno, "map", lockpath);
			goto fail;
		}
		rc = evs__indexer_start(s);
		if (!rc)
			rc = evs__spare_start(s);
		if (!rc)
			rc = evs__writer_first_segment(s);
		if (rc)
			goto fail;
	} else {
		/* For the writer's published head and to see whether a
		 * writer is alive; a store without it is read as indexed. */
		s->lock_fd = open(lockpath, O_RDONLY | O_CLOEXEC);
		if (s->lock_fd >= 0)
			evs__shared_map(s, s->lock_fd, false);
	}
	*out = s;
	return 0;
fail:
	/* still under the lock: nobody else's file */
	if (fresh && locked)
		evs__unlink_db(ixpath);
	evs_close(s);
	return rc;
}

int evs_open(evs_store **out, const char *dir, const evs_options *opts)
{
	return open_store(out, dir, opts, "index.db", false, NULL, NULL);
}

int evs_rebuild_index(const char *dir, const evs_options *opts, evs_progress_cb progress,
		      void *ctx)
{
	evs_options o = EVS_OPTIONS_INIT;
	char tmp[4200], live[4200];
	evs_store *s = NULL;
	int rc;

	evs__err_clear();
	if (!dir || !*dir)
		return evs__err(EVS_EINVAL, "evs_rebuild_index: no directory given");
	if (opts) {
		if (opts->version < 1 || opts->version > EVS_OPTIONS_VERSION)
			return evs__err(EVS_EINVAL, "evs_rebuild_index: options version %d, "
					"expected 1 to %d", opts->version, EVS_OPTIONS_VERSION);
		memcpy(&o, opts, opts->version == 1 ? offsetof(evs_options, schema_dir) :
		       sizeof(o));
		o.version = EVS_OPTIONS_VERSION;
	}
	o.create = 0;
	o.read_only = 0;
	if (strlen(dir) > 3000)
		return evs__err(EVS_EINVAL, "evs_rebuild_index: directory path too long");
	snprintf(tmp, sizeof(tmp), "%s/index.rebuild.db", dir);
	snprintf(live, sizeof(live), "%s/index.db", dir);
	/*
	 * The store opened over a new index beside the live one, emptied
	 * once the writer lock is taken: recovery indexes the whole log into
	 * it.  The lock is held until the new index is in place and the file
	 * removed.
	 */
	rc = open_store(&s, dir, &o, "index.rebuild.db", true, progress, ctx);
	if (rc == EVS_ELOCKED)
		return evs__err(EVS_ELOCKED, "store %s is locked by another writer; stop it "
				"before rebuilding the index", dir);
	if (rc)
		return rc;
	rc = evs__ix_replace(s->wix, live);
	/* the connections still open on it close after the unlink */
	evs__unlink_db(tmp);
	evs_close(s);
	return rc;
}

void evs_close(evs_store *s)
{
	if (!s)
		return;
	evs__projections_free(s); /* their workers read the store */
	evs__spare_stop(s);
	evs__indexer_stop(s);
	/* A clean close with durability none: everything indexed is synced
	 * now, so the next open can trust the index. */
	if (s->unsynced_mark && s->wix && !atomic_load(&s->failed) && !s->ix_failed &&
	    (s->wfd < 0 || evs__os_table.fdatasync(s->wfd) == 0))
		set_unsynced_mark(s, false);
	evs__shared_unmap(s);
	if (s->wfd >= 0)
		evs__os_table.close(s->wfd);
	/* Readers first: the last connection to close checkpoints the WAL
	 * into index.db, and only the writer's can. */
	for (size_t i = 0; i < s->npool; i++)
		evs__ix_close(s->pool[i]);
	evs__free(s->pool);
	evs__ix_close(s->lix);
	evs__ix_close(s->wix);
	for (size_t i = 0; i < s->nsegs; i++)
		if (s->segs[i].fd >= 0)
			evs__os_table.close(s->segs[i].fd);
	evs__free(s->segs);
	evs__map_free(&s->heads);
	evs__free(s->pids);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the lock */
	pthread_mutex_destroy(&s->wmu);
	pthread_mutex_destroy(&s->head_mu);
	pthread_cond_destroy(&s->head_cv);
	pthread_mutex_destroy(&s->seg_mu);
	pthread_mutex_destroy(&s->pool_mu);
	evs__free(s->zeros);
	evs__schemas_free(s->schemas);
	evs__upcasters_free(s->upcasters);
	evs__free(s->dir);
	evs__free(s->logdir);
	evs__free(s->ixpath);
	evs__free(s);
}

/* ---- stats ---- */

int evs_stats_get(evs_stats *out, evs_store *s)
{
	evs__ix *ix = NULL;
	uint64_t *segs = NULL;
	size_t nsegs = 0;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_stats_get", "out", out != NULL, "store", s != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	*out = s->open_stats;
	rc = evs__store_read_begin(s, &ix, &out->head_position);
	if (rc)
		return rc;
	/* counts and head from the same snapshot */
	rc = evs__ix_head(ix, &out->head_position);
	if (!rc)
		rc = evs__ix_counts(ix, &out->streams, &out->batches, &out->log_bytes);
	evs__store_ix_put(s, ix);
	if (rc)
		return rc;
	rc = evs__seg_list(&segs, &nsegs, s->logdir, false);
	evs__free(segs);
	out->segments = nsegs;
	return rc;
}
