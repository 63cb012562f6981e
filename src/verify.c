/*
 * verify.c: evs_verify, the full check of a store: every segment header,
 * every batch's framing and CRC, dense positions and versions, and that the
 * index (batches, streams, event ids) agrees with the log.  It reads the
 * whole log once, sequentially; it changes nothing.
 *
 * Batches past the index's head were never acknowledged to a reader of
 * this index (a crash before recovery): they are checked but not required
 * in the index, and garbage there is the torn tail the next writable open
 * cuts, not a problem.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "store.h"

typedef struct vctx {
	evs_store *s;
	evs__ix *ix;
	evs_report_cb report;
	void *ctx;
	uint64_t problems;
	uint64_t head;
	uint64_t cur_pos;     /* position of the batch being checked */
	const char *path;
	uint64_t off;
	int err;              /* an error that stopped check_id */
} vctx;

__attribute__((format(printf, 2, 3)))
static void problem(vctx *v, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->problems++;
	if (v->report)
		v->report(msg, v->ctx);
}

static int check_id(const evs_event *ev, void *ctx)
{
	vctx *v = ctx;
	uint64_t pos;
	char idt[37];
	int rc;

	if (ev->position > v->head)
		return 0;
	evs__batch_ref b;
	rc = evs__ix_find_id(v->ix, ev->id, &pos, &b);
	if (rc == 0 && pos == ev->position)
		return 0;
	/* in a batch of ordered ids: the index must point at this batch
	 * (whose ids this pass reads anyway) */
	if (rc == 1 && ev->position >= b.position && ev->position < b.position + b.count)
		return 0;
	if (rc == 1) {
		rc = 0;
		pos = b.position;
	}
	if (rc != 0 && rc != EVS_ENOTFOUND) {
		v->err = rc;
		return 1;
	}
	evs_uuid_format(idt, ev->id);
	if (rc == EVS_ENOTFOUND)
		problem(v, "%s offset %" PRIu64 ": event id %s at position %" PRIu64
			" is missing from the index", v->path, v->off, idt, ev->position);
	else
		problem(v, "%s offset %" PRIu64 ": event id %s at position %" PRIu64
			" is indexed at position %" PRIu64, v->path, v->off, idt, ev->position, pos);
	return 0;
}

static int check_stream(int64_t id, const char *name, size_t len, uint64_t last_version,
			void *ctx)
{
	void **a = ctx;
	vctx *v = a[0];
	evs__map *m = a[1];
	evs__head *h = evs__map_find(m, name, len, false);

	(void)id;
	if (!h || h->aux != last_version)
		problem(v, "index: stream '%s' has last version %" PRIu64
			", the log has %" PRIu64, name, last_version, h ? h->aux : 0);
	if (h)
		h->id = -1; /* seen */
	return 0;
}

int evs_verify(evs_store *s, evs_report_cb report, evs_progress_cb progress, void *ctx)
{
	vctx v = { s, NULL, report, ctx, 0, 0, 0, NULL, 0, 0 };
	evs__map m = { NULL, 0, 0 };
	uint64_t *segs = NULL, total = 0, done = 0, next_pos = 1;
	size_t nsegs = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char path[4096];
	bool cut_short = false;
	int rc;

	evs__err_clear();
	if (!s)
		return evs__err(EVS_EINVAL, "evs_verify: no store");
	rc = evs__store_read_begin(s, &v.ix, &v.head);
	if (rc)
		return rc;
	/* the whole index snapshot is checked, whatever was acknowledged */
	rc = evs__ix_head(v.ix, &v.head);
	if (!rc)
		rc = evs__seg_list(&segs, &nsegs, s->logdir, false);
	if (rc)
		goto out;
	for (size_t i = 0; i < nsegs; i++) {
		struct stat st;
		evs__seg_name(path, sizeof(path), s->logdir, segs[i]);
		if (stat(path, &st) == 0)
			total += (uint64_t)st.st_size;
	}

	for (size_t i = 0; i < nsegs; i++) {
		uint8_t shdr[EVS__SEG_HDR];
		uint64_t segsize, off = EVS__SEG_HDR;
		bool sealed = false, stop = false;
		int fd;

		evs__seg_name(path, sizeof(path), s->logdir, segs[i]);
		v.path = path;
		if (segs[i] != next_pos) {
			problem(&v, "%s: segment starts at position %" PRIu64 ", expected %" PRIu64,
				path, segs[i], next_pos);
			if (segs[i] < next_pos)
				continue;
		}
		fd = evs__os_table.open(path, O_RDONLY, 0);
		if (fd < 0) {
			rc = evs__err_sys(errno, "open", path);
			goto out;
		}
		if (evs__os_pread_all(fd, shdr, sizeof(shdr), 0) != (ssize_t)sizeof(shdr) ||
		    evs__seg_check_header(shdr, segs[i], &segsize) != 0) {
			problem(&v, "%s offset 0: bad segment header", path);
			evs__os_table.close(fd);
			break;
		}
		while (!stop) {
			uint8_t hdr[EVS__BATCH_HDR];
			static const uint8_t zero[EVS__BATCH_HDR];
			evs__batch_hdr h;
			ssize_t r = off + EVS__BATCH_HDR <= segsize ?
				    evs__os_pread_all(fd, hdr, sizeof(hdr), (off_t)off) : 0;

			if (r < 0) {
				rc = evs__err_sys(errno, "read", path);
				evs__os_table.close(fd);
				goto out;
			}
			if (r < (ssize_t)sizeof(hdr) || memcmp(hdr, zero, sizeof(hdr)) == 0)
				break;
			v.off = off;
			if (evs__batch_parse_header(&h, hdr, segsize - off) != 0)
				goto bad;
			if (cap < h.length) {
				uint8_t *n = evs__realloc(buf, h.length);
				if (!n) {
					rc = evs__err(EVS_ENOMEM, "out of memory in verify");
					evs__os_table.close(fd);
					goto out;
				}
				buf = n;
				cap = h.length;
			}
			if (evs__os_pread_all(fd, buf, h.length, (off_t)off) != (ssize_t)h.length ||
			    evs__batch_check_crc(&h, buf) != 0 || h.first_position != next_pos)
				goto bad;
			evs__batch_parse_header(&h, buf, h.length);
			if (h.flags & EVS__BATCH_SEAL) {
				sealed = true;
				off += h.length;
				break;
			}
			{
				evs__head *hd = evs__map_find(&m, h.stream, h.stream_len, true);
				evs__batch_ref b;

				if (!hd) {
					rc = evs__err(EVS_ENOMEM, "out of memory in verify");
					evs__os_table.close(fd);
					goto out;
				}
				if (h.first_version != hd->version + 1)
					problem(&v, "%s offset %" PRIu64 ": stream '%s' version %" PRIu64
						" follows version %" PRIu64, path, off, hd->name,
						h.first_version, hd->version);
				hd->version = h.first_version + h.count - 1;
				if (h.first_position <= v.head) {
					int64_t sid;
					uint64_t lv;

					hd->aux = hd->version;
					rc = evs__ix_batch_at(v.ix, h.first_position, &b);
					if (rc == 0 && (b.position != h.first_position ||
							b.segment != segs[i] || b.offset != off ||
							b.length != h.length || b.count != h.count ||
							b.first_version != h.first_version))
						rc = EVS_ENOTFOUND;
					if (rc == 0 && (evs__ix_stream(v.ix, hd->name, &sid, &lv, NULL) != 0 ||
							sid != b.stream_id))
						rc = EVS_ENOTFOUND;
					if (rc == EVS_ENOTFOUND)
						problem(&v, "%s offset %" PRIu64 ": batch at position %" PRIu64
							" (stream '%s' version %" PRIu64
							") does not match the index", path, off,
							h.first_position, hd->name, h.first_version);
					else if (rc) {
						evs__os_table.close(fd);
						goto out;
					}
					rc = evs__batch_decode(&h, buf, check_id, &v);
					if (rc < 0)
						goto bad;
					if (rc) {
						rc = v.err;
						evs__os_table.close(fd);
						goto out;
					}
				}
			}
			next_pos += h.count;
			off += h.length;
			done += h.length;
			if (progress && (h.first_position & 1023) == 0)
				progress(done, total, ctx);
			continue;
bad:
			if (next_pos <= v.head || i + 1 < nsegs)
				problem(&v, "%s offset %" PRIu64 ": bad batch (expected position %"
					PRIu64 "): CRC or framing does not match", path, off, next_pos);
			stop = true;
		}
		evs__os_table.close(fd);
		if (stop) {
			/* past a bad batch the walk cannot go on, and comparing
			 * the rest with the index would only repeat it */
			cut_short = true;
			break;
		}
		if (!sealed && i + 1 < nsegs)
			problem(&v, "%s offset %" PRIu64 ": segment is not sealed but another follows",
				path, off);
	}
	if (cut_short)
		goto done;
	if (next_pos - 1 < v.head)
		problem(&v, "log ends at position %" PRIu64 " but the index's head is %" PRIu64,
			next_pos - 1, v.head);
	{
		evs__batch_ref last;
		int lr = evs__ix_last_batch(v.ix, &last);
		if (lr == 0 && last.position + last.count - 1 > v.head)
			problem(&v, "index holds positions up to %" PRIu64 " beyond its head %" PRIu64,
				last.position + last.count - 1, v.head);
	}
	{
		void *a[2] = { &v, &m };
		rc = evs__ix_each_stream(v.ix, check_stream, a);
		if (rc)
			goto out;
		for (size_t i = 0; i < m.cap; i++)
			if (m.slots[i] && m.slots[i]->id != -1 && m.slots[i]->aux)
				problem(&v, "index: stream '%s' (last version %" PRIu64
					") is missing", m.slots[i]->name, m.slots[i]->aux);
	}
done:
	if (progress)
		progress(total, total, ctx);
	rc = v.problems ? evs__err(EVS_ECORRUPT, "verify found %" PRIu64 " problem%s in %s",
				   v.problems, v.problems == 1 ? "" : "s", s->dir) : 0;
out:
	evs__store_ix_put(s, v.ix);
	evs__map_free(&m);
	evs__free(segs);
	evs__free(buf);
	return rc;
}
