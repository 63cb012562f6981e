/*
 * read.c: reads.  A stream read is one range lookup in the index plus one
 * pread per batch; a read of the whole log ($all) finds its first batch in
 * the index and then walks the segments sequentially in large reads.  Every
 * batch's CRC is checked before any of its events is handed out; JSON is
 * never parsed here.
 *
 * A reader never looks past the head it took when it started (the last
 * acknowledged position), so it sees positions densely and in order.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store.h"

#define SCAN_CHUNK (1u << 20)

int evs__read_batch(evs_store *s, const evs__batch_ref *b, uint8_t **buf,
		    size_t *cap, evs__batch_hdr *h)
{
	char path[4096];
	int fd, rc;
	ssize_t r;

	if (*cap < b->length) {
		uint8_t *n = evs__realloc(*buf, b->length);
		if (!n)
			return evs__err(EVS_ENOMEM, "out of memory reading a batch");
		*buf = n;
		*cap = b->length;
	}
	rc = evs__store_seg_fd(s, b->segment, &fd);
	if (rc)
		return rc;
	r = evs__os_pread_all(fd, *buf, b->length, (off_t)b->offset);
	evs__store_seg_put(s, b->segment);
	evs__seg_name(path, sizeof(path), s->logdir, b->segment);
	if (r < 0)
		return evs__err_sys(errno, "read", path);
	if (r != (ssize_t)b->length || evs__batch_parse_header(h, *buf, b->length) != 0 ||
	    h->length != b->length || evs__batch_check_crc(h, *buf) != 0 ||
	    h->first_position != b->position || h->count != b->count ||
	    h->first_version != b->first_version)
		return evs__err(EVS_ECORRUPT, "%s offset %" PRIu64
				": bad batch (position %" PRIu64 ", %u bytes)",
				path, b->offset, b->position, b->length);
	return 0;
}

typedef struct id_search {
	const uint8_t *id;
	uint64_t pos;
} id_search;

static int id_match(const evs_event *ev, void *ctx)
{
	id_search *q = ctx;

	if (memcmp(ev->id, q->id, 16) != 0)
		return 0;
	q->pos = ev->position;
	return 1;
}

int evs__find_id(evs_store *s, evs__ix *ix, const uint8_t id[16], uint64_t *pos)
{
	id_search q = { id, 0 };
	evs__batch_ref b;
	evs__batch_hdr h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = evs__ix_find_id(ix, id, pos, &b);

	if (rc != 1)
		return rc;
	rc = evs__read_batch(s, &b, &buf, &cap, &h);
	if (rc == 0 && evs__batch_decode(&h, buf, id_match, &q) < 0)
		rc = evs__err(EVS_ECORRUPT, "batch at position %" PRIu64 ": malformed record",
			      b.position);
	evs__free(buf);
	if (rc)
		return rc;
	if (!q.pos)
		return EVS_ENOTFOUND;
	*pos = q.pos;
	return 0;
}

/* ---- one stream ---- */

typedef struct stream_read {
	evs_store *s;
	uint64_t from, limit, sent;
	evs_direction dir;
	evs_event_cb cb;
	void *ctx;
	uint8_t *buf;
	size_t cap;
	int rc;
	bool stop;
	/* backward reads hold a batch's events to hand them out in reverse */
	evs_event *evs;
	size_t nevs, capevs;
} stream_read;

static int deliver(stream_read *r, const evs_event *ev)
{
	if (r->cb(ev, r->ctx) != 0 || (r->limit && ++r->sent >= r->limit)) {
		r->stop = true;
		return 1;
	}
	return 0;
}

static int fwd_event(const evs_event *ev, void *ctx)
{
	stream_read *r = ctx;

	if (ev->version < r->from)
		return 0;
	return deliver(r, ev);
}

static int bwd_collect(const evs_event *ev, void *ctx)
{
	stream_read *r = ctx;

	if (ev->version > r->from)
		return 1;
	if (r->nevs == r->capevs) {
		size_t ncap = r->capevs ? r->capevs * 2 : 64;
		evs_event *n = evs__realloc(r->evs, ncap * sizeof(*n));
		if (!n) {
			r->rc = evs__err(EVS_ENOMEM, "out of memory reading backward");
			return 1;
		}
		r->evs = n;
		r->capevs = ncap;
	}
	r->evs[r->nevs++] = *ev;
	return 0;
}

static int stream_batch(const evs__batch_ref *b, void *ctx)
{
	stream_read *r = ctx;
	evs__batch_hdr h;
	int rc = evs__read_batch(r->s, b, &r->buf, &r->cap, &h);

	if (rc) {
		r->rc = rc;
		return 1;
	}
	if (r->dir == EVS_FORWARD) {
		rc = evs__batch_decode(&h, r->buf, fwd_event, r);
	} else {
		r->nevs = 0;
		rc = evs__batch_decode(&h, r->buf, bwd_collect, r);
		if (rc == 1)
			rc = 0;
		for (size_t i = r->nevs; i-- > 0 && !r->rc;)
			if (deliver(r, &r->evs[i]))
				break;
	}
	if (rc < 0) {
		r->rc = evs__err(EVS_ECORRUPT, "segment %" PRIu64 " offset %" PRIu64
				 ": malformed record", b->segment, b->offset);
		return 1;
	}
	return r->rc || r->stop;
}

int evs_read_stream(evs_store *s, const char *stream, uint64_t from, evs_direction dir,
		    uint64_t limit, evs_event_cb cb, void *ctx)
{
	stream_read r;
	evs__ix *ix = NULL;
	int64_t id;
	uint64_t last, head;
	size_t len;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_read_stream", "store", s != NULL, "cb", cb != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	if ((rc = evs__check_stream_name(stream, &len)) != 0)
		return rc;
	if (dir != EVS_FORWARD && dir != EVS_BACKWARD)
		return evs__err(EVS_EINVAL, "evs_read_stream: bad direction %d", (int)dir);
	rc = evs__store_read_begin(s, &ix, &head);
	if (rc)
		return rc;
	rc = evs__ix_stream(ix, stream, &id, &last, NULL);
	if (rc == EVS_ENOTFOUND)
		rc = evs__err(EVS_ENOTFOUND, "stream '%s' not found", stream);
	if (rc) {
		evs__store_ix_put(s, ix);
		return rc;
	}
	memset(&r, 0, sizeof(r));
	r.s = s;
	r.dir = dir;
	r.limit = limit;
	r.cb = cb;
	r.ctx = ctx;
	if (dir == EVS_FORWARD)
		r.from = from ? from : 1;
	else
		r.from = from && from < last ? from : last;
	if (dir == EVS_FORWARD && r.from > last) {
		evs__store_ix_put(s, ix);
		return 0;
	}
	rc = evs__ix_stream_batches(ix, id, r.from, dir, stream_batch, &r);
	evs__store_ix_put(s, ix);
	evs__free(r.buf);
	evs__free(r.evs);
	(void)head;
	if (r.rc)
		return r.rc;
	return rc < 0 ? rc : 0;
}

/* ---- the whole log ---- */

typedef struct all_read {
	uint64_t from, head, limit, sent;
	const evs_filter *f;
	size_t catlen;
	evs_event_cb cb;
	void *ctx;
	bool stop;
} all_read;

static bool pass(const all_read *a, const evs_event *ev)
{
	if (!a->f)
		return true;
	if (a->f->category) {
		const char *dash = memchr(ev->stream, '-', ev->stream_len);
		size_t cl = dash ? (size_t)(dash - ev->stream) : ev->stream_len;
		if (cl != a->catlen || memcmp(ev->stream, a->f->category, cl) != 0)
			return false;
	}
	if (a->f->ntypes) {
		for (size_t i = 0; i < a->f->ntypes; i++)
			if (strlen(a->f->types[i]) == ev->type_len &&
			    memcmp(a->f->types[i], ev->type, ev->type_len) == 0)
				return true;
		return false;
	}
	return true;
}

static int all_event(const evs_event *ev, void *ctx)
{
	all_read *a = ctx;

	if (ev->position < a->from)
		return 0;
	if (ev->position > a->head) {
		a->stop = true;
		return 1;
	}
	if (!pass(a, ev))
		return 0;
	if (a->cb(ev, a->ctx) != 0 || (a->limit && ++a->sent >= a->limit)) {
		a->stop = true;
		return 1;
	}
	return 0;
}

/* A window of a segment file held in memory for sequential reads. */
typedef struct window {
	uint8_t *buf;
	size_t cap;
	uint64_t start, len;   /* file range held */
	int err;
} window;

/* Makes [off, off+n) available in w if the file has it; returns the bytes
 * available from off (fewer than n only at the end of the file), or -1
 * with w->err set. */
static ssize_t window_get(window *w, int fd, uint64_t off, size_t n,
			  const uint8_t **p, const char *path)
{
	if (off < w->start || off + n > w->start + w->len) {
		size_t want = n > SCAN_CHUNK ? n : SCAN_CHUNK;
		ssize_t got;

		if (w->cap < want) {
			uint8_t *nb = evs__realloc(w->buf, want);
			if (!nb) {
				w->err = evs__err(EVS_ENOMEM, "out of memory reading the log");
				return -1;
			}
			w->buf = nb;
			w->cap = want;
		}
		got = evs__os_pread_all(fd, w->buf, want, (off_t)off);
		if (got < 0) {
			w->err = evs__err_sys(errno, "read", path);
			return -1;
		}
		w->start = off;
		w->len = (uint64_t)got;
	}
	*p = w->buf + (off - w->start);
	return (ssize_t)(w->start + w->len - off);
}

/*
 * Walks the log from batch (seg, off), whose first position is next_pos,
 * handing events to cb until position `head` is passed, *stop is set, or
 * an error.  `seg_end`, when given, receives nothing; sealed segments lead
 * to the next one, named by the position after the seal.
 */
static int scan_log(evs_store *s, uint64_t seg, uint64_t off, uint64_t next_pos,
		    uint64_t head, evs__rec_cb cb, void *ctx, bool *stop)
{
	window w = { NULL, 0, 0, 0, 0 };
	char path[4096];
	int rc = 0, fd = -1;

	evs__seg_name(path, sizeof(path), s->logdir, seg);
	rc = evs__store_seg_fd(s, seg, &fd);
	while (!rc && next_pos <= head && !*stop) {
		const uint8_t *p;
		evs__batch_hdr h;
		ssize_t avail = window_get(&w, fd, off, EVS__BATCH_HDR, &p, path);

		if (avail < 0) {
			rc = w.err;
			break;
		}
		if (avail >= (ssize_t)EVS__BATCH_HDR && evs__get32(p) == EVS__BATCH_MAGIC) {
			uint32_t len = evs__get32(p + 8);
			if (len > (uint64_t)avail && len <= (1u << 30))
				avail = window_get(&w, fd, off, len, &p, path);
		}
		if (avail < 0 ||
		    evs__batch_parse_header(&h, p, (size_t)avail) != 0 ||
		    evs__batch_check_crc(&h, p) != 0 || h.first_position != next_pos) {
			rc = avail < 0 ? w.err :
			     evs__err(EVS_ECORRUPT, "%s offset %" PRIu64
				      ": bad batch (expected position %" PRIu64 ", head %" PRIu64 ")",
				      path, off, next_pos, head);
			break;
		}
		if (h.flags & EVS__BATCH_SEAL) {
			evs__store_seg_put(s, seg);
			fd = -1;
			seg = next_pos;
			off = EVS__SEG_HDR;
			w.start = w.len = 0;
			evs__seg_name(path, sizeof(path), s->logdir, seg);
			rc = evs__store_seg_fd(s, seg, &fd);
			continue;
		}
		if (evs__batch_decode(&h, p, cb, ctx) < 0) {
			rc = evs__err(EVS_ECORRUPT, "%s offset %" PRIu64 ": malformed record",
				      path, off);
			break;
		}
		next_pos += h.count;
		off += h.length;
	}
	if (fd >= 0)
		evs__store_seg_put(s, seg);
	evs__free(w.buf);
	return rc;
}

int evs_read_all(evs_store *s, uint64_t from, uint64_t limit, const evs_filter *filter,
		 evs_event_cb cb, void *ctx)
{
	all_read a;
	evs__batch_ref b;
	evs__ix *ix = NULL;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_read_all", "store", s != NULL, "cb", cb != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	if (filter && filter->ntypes && !filter->types)
		return evs__err(EVS_EINVAL, "evs_read_all: ntypes without types");
	memset(&a, 0, sizeof(a));
	a.from = from ? from : 1;
	a.limit = limit;
	a.f = filter;
	a.catlen = filter && filter->category ? strlen(filter->category) : 0;
	a.cb = cb;
	a.ctx = ctx;
	rc = evs__store_read_begin(s, &ix, &a.head);
	if (!rc && a.from <= a.head)
		rc = evs__ix_batch_at(ix, a.from, &b);
	evs__store_ix_put(s, ix);
	if (rc == EVS_ENOTFOUND)
		rc = evs__err(EVS_ECORRUPT, "index has no batch for position %" PRIu64
			      " below its head %" PRIu64, a.from, a.head);
	if (rc || a.from > a.head)
		return rc;
	return scan_log(s, b.segment, b.offset, b.position, a.head, all_event, &a, &a.stop);
}

/* ---- info and listings ---- */

int evs_stream_info_get(evs_stream_info *out, evs_store *s, const char *stream)
{
	evs__ix *ix = NULL;
	int64_t id, created;
	uint64_t last;
	size_t len;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_stream_info_get", "out", out != NULL, "store", s != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	memset(out, 0, sizeof(*out));
	if ((rc = evs__check_stream_name(stream, &len)) != 0)
		return rc;
	uint64_t head;
	rc = evs__store_read_begin(s, &ix, &head);
	if (rc)
		return rc;
	rc = evs__ix_stream(ix, stream, &id, &last, &created);
	if (!rc)
		rc = evs__ix_stream_ends(ix, id, &out->first_position, &out->last_position);
	if (!rc) {
		out->exists = 1;
		out->last_version = last;
		out->event_count = last;
		out->created_us = created;
	}
	evs__store_ix_put(s, ix);
	return rc == EVS_ENOTFOUND ? 0 : rc;
}

int evs_list_streams(evs_store *s, const char *after, uint64_t limit, evs_name_cb cb,
		     void *ctx)
{
	evs__ix *ix = NULL;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_list_streams", "store", s != NULL, "cb", cb != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	uint64_t head;
	rc = evs__store_read_begin(s, &ix, &head);
	if (!rc)
		rc = evs__ix_list_streams(ix, after, limit, cb, ctx);
	evs__store_ix_put(s, ix);
	return rc;
}

int evs_list_categories(evs_store *s, evs_name_cb cb, void *ctx)
{
	evs__ix *ix = NULL;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_list_categories", "store", s != NULL, "cb", cb != NULL,
			    (const char *)NULL)) != 0)
		return rc;
	uint64_t head;
	rc = evs__store_read_begin(s, &ix, &head);
	if (!rc)
		rc = evs__ix_list_categories(ix, cb, ctx);
	evs__store_ix_put(s, ix);
	return rc;
}
