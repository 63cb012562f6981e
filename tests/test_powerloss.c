/*
 * test_powerloss.c: power loss, simulated through the replaceable I/O table.
 *
 * A simulated disk sits under the log directory.  Every file keeps two
 * images: what reached the disk (changed only by fsync and fdatasync of
 * that file) and the writes since (kept in order, as the page cache
 * would).  Directory entries are kept the same way: a file created,
 * renamed or removed in the log directory changes what is on disk only
 * when the directory is fsync'ed.  A crash stops every later call with
 * EIO; then each file is put back from what reached the disk, plus one of:
 *  - nothing of the writes since the last sync (all dropped);
 *  - a random prefix of them;
 *  - a random prefix, and the next write torn in the middle of a 4 KiB page;
 *  - any subset of their 4 KiB pages (write-back in any order).
 * Names the directory fsync did not cover go back to what they were: a
 * segment renamed into place without a directory fsync is not there.
 *
 * Each round opens the store (recovery included, so a crash can hit it),
 * appends from 4 threads (single events and 20-event appends, shared
 * streams and streams of their own, durability sync, 64 KiB segments so
 * rolls and spare segments are in play), crashes at a random I/O call and
 * closes.  Then the store is reopened with the disk as the crash left it
 * and checked: every acknowledged event is there with its stream, version,
 * position, id and bytes; positions and versions are dense; no id appears
 * twice; every append is there whole or not at all; evs_verify is clean;
 * appending works.  Every other store runs with durability none: there an
 * acknowledged append may be lost, but no other event may take its
 * position, and the rest holds the same.
 *
 * The SQLite index is not simulated (it is derived data): it keeps
 * everything it committed, so it may be ahead of the log after a crash,
 * which recovery must notice.
 *
 * EVS_POWERLOSS_ROUNDS sets the number of rounds (default 200; the long
 * run is 5000); EVS_POWERLOSS_SEED replays one run.  A store takes 50
 * rounds, the first without a crash, before the next starts empty.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "testutil.h"

/* ---- the simulated disk ---- */

typedef struct op {
	bool trunc;       /* ftruncate to `off`; else a write */
	off_t off;
	size_t len;
	uint8_t *data;
} op;

typedef struct sfile {
	uint8_t *dur;     /* what reached the disk */
	size_t dur_len;
	op *ops;          /* since the last sync, in order */
	size_t nops, cap;
	struct sfile *all_next;
} sfile;

/* A name in the log directory touched since the last crash: the file it
 * names now, and the file it names on disk (NULL: none). */
typedef struct sname {
	char path[512];
	sfile *live, *disk;
} sname;

#define MAX_NAMES 4096
#define MAX_FDS 4096

enum crash_mode { DROP_ALL, PREFIX, TORN, PAGES, MODES };
static const char *const mode_name[MODES] = { "all dropped", "prefix", "torn page",
					       "pages in any order" };

static struct {
	pthread_mutex_t mu;
	char logdir[512];
	sname names[MAX_NAMES];
	size_t nnames;
	struct { sfile *f; bool dir, logdir; } fds[MAX_FDS];
	sfile *all;
	long calls, crash_at;   /* crash at the crash_at-th changing call (0: never) */
	bool crashed;
	uint64_t dropped_ops, kept_ops;
} sim = { .mu = PTHREAD_MUTEX_INITIALIZER };

static unsigned seed;

static unsigned rnd(void)
{
	return (unsigned)rand_r(&seed);
}

static bool in_logdir(const char *path)
{
	size_t n = strlen(sim.logdir);

	return n && strncmp(path, sim.logdir, n) == 0 && path[n] == '/' &&
	       !strchr(path + n + 1, '/');
}

static sfile *sfile_new(void)
{
	sfile *f = calloc(1, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	f->all_next = sim.all;
	sim.all = f;
	return f;
}

/* The name's entry; on first touch, the file as it is (it reached the
 * disk: the previous crash put it there, or it predates the run). */
static sname *touch(const char *path)
{
	for (size_t i = 0; i < sim.nnames; i++)
		if (strcmp(sim.names[i].path, path) == 0)
			return &sim.names[i];
	ck_assert_uint_lt(sim.nnames, MAX_NAMES);
	sname *n = &sim.names[sim.nnames++];
	snprintf(n->path, sizeof(n->path), "%s", path);
	n->live = n->disk = NULL;
	size_t size;
	char *content = tu_read_file(path, &size);
	if (content) {
		n->live = n->disk = sfile_new();
		n->disk->dur = (uint8_t *)content;
		n->disk->dur_len = size;
	}
	return n;
}

static void add_op(sfile *f, bool trunc, off_t off, const void *data, size_t len)
{
	if (f->nops == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 16;
		f->ops = realloc(f->ops, f->cap * sizeof(op));
		ck_assert_ptr_nonnull(f->ops);
	}
	op *o = &f->ops[f->nops++];
	o->trunc = trunc;
	o->off = off;
	o->len = len;
	o->data = NULL;
	if (len) {
		o->data = malloc(len);
		ck_assert_ptr_nonnull(o->data);
		memcpy(o->data, data, len);
	}
}

static void apply(uint8_t **buf, size_t *len, const op *o, size_t from, size_t to)
{
	if (o->trunc) {
		size_t n = (size_t)o->off;
		if (n > *len) {
			*buf = realloc(*buf, n ? n : 1);
			ck_assert_ptr_nonnull(*buf);
			memset(*buf + *len, 0, n - *len);
		}
		*len = n;
		return;
	}
	size_t end = (size_t)o->off + to;
	if (end > *len) {
		*buf = realloc(*buf, end);
		ck_assert_ptr_nonnull(*buf);
		memset(*buf + *len, 0, end - *len);
		*len = end;
	}
	memcpy(*buf + o->off + from, o->data + from, to - from);
}

static void sync_file(sfile *f)
{
	for (size_t i = 0; i < f->nops; i++) {
		apply(&f->dur, &f->dur_len, &f->ops[i], 0, f->ops[i].len);
		free(f->ops[i].data);
	}
	f->nops = 0;
}

/* Counts a changing call; true when it must fail (the crash, or after). */
static bool down(void)
{
	if (sim.crashed)
		return true;
	if (++sim.calls >= sim.crash_at && sim.crash_at) {
		sim.crashed = true;
		return true;
	}
	return false;
}

/* Takes the simulation's lock for a changing call; false (unlocked, errno
 * EIO) when the power is down. */
static bool enter(void)
{
	pthread_mutex_lock(&sim.mu);
	if (down()) {
		pthread_mutex_unlock(&sim.mu);
		errno = EIO;
		return false;
	}
	return true;
}

static int s_open(const char *path, int flags, mode_t mode)
{
	int fd;

	pthread_mutex_lock(&sim.mu);
	if ((flags & (O_CREAT | O_TRUNC)) && down()) {
		pthread_mutex_unlock(&sim.mu);
		errno = EIO;
		return -1;
	}
	if (flags & O_DIRECTORY) {
		fd = evs__os_default.open(path, flags, mode);
		if (fd >= 0 && fd < MAX_FDS) {
			sim.fds[fd].f = NULL;
			sim.fds[fd].dir = true;
			sim.fds[fd].logdir = strcmp(path, sim.logdir) == 0;
		}
		pthread_mutex_unlock(&sim.mu);
		return fd;
	}
	if (!in_logdir(path)) {
		fd = evs__os_default.open(path, flags, mode);
		if (fd >= 0 && fd < MAX_FDS)
			sim.fds[fd].f = NULL, sim.fds[fd].dir = false;
		pthread_mutex_unlock(&sim.mu);
		return fd;
	}
	sname *n = touch(path);
	fd = evs__os_default.open(path, flags, mode);
	if (fd >= 0) {
		ck_assert_int_lt(fd, MAX_FDS);
		if (!n->live)
			n->live = sfile_new(); /* created: on disk only once synced */
		else if (flags & O_TRUNC)
			add_op(n->live, true, 0, NULL, 0);
		sim.fds[fd].f = n->live;
		sim.fds[fd].dir = false;
	}
	pthread_mutex_unlock(&sim.mu);
	return fd;
}

static int s_close(int fd)
{
	pthread_mutex_lock(&sim.mu);
	if (fd >= 0 && fd < MAX_FDS)
		sim.fds[fd].f = NULL, sim.fds[fd].dir = false;
	pthread_mutex_unlock(&sim.mu);
	return evs__os_default.close(fd);
}

static ssize_t s_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	ssize_t w;

	if (!enter())
		return -1;
	w = evs__os_default.pwritev(fd, iov, iovcnt, off);
	sfile *f = fd >= 0 && fd < MAX_FDS ? sim.fds[fd].f : NULL;
	if (w > 0 && f) {
		size_t left = (size_t)w;
		off_t at = off;
		for (int i = 0; i < iovcnt && left; i++) {
			size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
			if (n)
				add_op(f, false, at, iov[i].iov_base, n);
			at += (off_t)n;
			left -= n;
		}
	}
	pthread_mutex_unlock(&sim.mu);
	return w;
}

static ssize_t s_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct iovec v = { (void *)buf, n };

	return s_pwritev(fd, &v, 1, off);
}

static int s_sync(int fd)
{
	if (!enter())
		return -1;
	if (fd >= 0 && fd < MAX_FDS && sim.fds[fd].dir && sim.fds[fd].logdir) {
		for (size_t i = 0; i < sim.nnames; i++)
			sim.names[i].disk = sim.names[i].live;
	} else if (fd >= 0 && fd < MAX_FDS && sim.fds[fd].f) {
		sync_file(sim.fds[fd].f);
	}
	pthread_mutex_unlock(&sim.mu);
	/* The simulation decides what is durable; the real disk need not. */
	return 0;
}

static int s_ftruncate(int fd, off_t len)
{
	int rc;

	if (!enter())
		return -1;
	rc = evs__os_default.ftruncate(fd, len);
	if (rc == 0 && fd >= 0 && fd < MAX_FDS && sim.fds[fd].f)
		add_op(sim.fds[fd].f, true, len, NULL, 0);
	pthread_mutex_unlock(&sim.mu);
	return rc;
}

static int s_rename(const char *from, const char *to)
{
	int rc;

	if (!enter())
		return -1;
	if (in_logdir(from) && in_logdir(to)) {
		sname *a = touch(from), *b = touch(to);
		rc = evs__os_default.rename(from, to);
		if (rc == 0) {
			b->live = a->live;
			a->live = NULL;
		}
	} else {
		rc = evs__os_default.rename(from, to);
	}
	pthread_mutex_unlock(&sim.mu);
	return rc;
}

static int s_unlink(const char *path)
{
	int rc;

	if (!enter())
		return -1;
	if (in_logdir(path)) {
		sname *n = touch(path);
		rc = evs__os_default.unlink(path);
		if (rc == 0)
			n->live = NULL;
	} else {
		rc = evs__os_default.unlink(path);
	}
	pthread_mutex_unlock(&sim.mu);
	return rc;
}

/* What a file holds after the crash: what reached the disk, and of the
 * writes since, what `mode` lets through. */
static void after_crash(sfile *f, enum crash_mode mode, uint8_t **buf, size_t *len)
{
	size_t keep = 0;

	*len = f->dur_len;
	*buf = malloc(*len ? *len : 1);
	ck_assert_ptr_nonnull(*buf);
	if (f->dur_len)
		memcpy(*buf, f->dur, f->dur_len);
	if (mode == PREFIX || mode == TORN)
		keep = f->nops ? rnd() % (f->nops + 1) : 0;
	for (size_t i = 0; i < f->nops; i++) {
		const op *o = &f->ops[i];
		if (mode == PAGES) {
			if (o->trunc) {
				if (rnd() % 2)
					apply(buf, len, o, 0, 0), sim.kept_ops++;
				else
					sim.dropped_ops++;
				continue;
			}
			/* each 4 KiB page of the write, or not */
			size_t at = 0;
			while (at < o->len) {
				size_t next = ((size_t)(o->off + (off_t)at) / 4096 + 1) * 4096 -
					      (size_t)o->off;
				if (next > o->len)
					next = o->len;
				if (rnd() % 2)
					apply(buf, len, o, at, next);
				at = next;
			}
			sim.kept_ops++;
		} else if (i < keep) {
			apply(buf, len, o, 0, o->trunc ? 0 : o->len);
			sim.kept_ops++;
		} else if (mode == TORN && i == keep && !o->trunc && o->len > 1) {
			/* the middle of a page the write covers */
			size_t first = (size_t)o->off / 4096, last = ((size_t)o->off + o->len - 1) / 4096;
			size_t page = first + rnd() % (last - first + 1);
			size_t cut = page * 4096 + 2048;
			if (cut <= (size_t)o->off)
				cut = (size_t)o->off + 1;
			if (cut >= (size_t)o->off + o->len)
				cut = (size_t)o->off + o->len - 1;
			apply(buf, len, o, 0, cut - (size_t)o->off);
			sim.dropped_ops++;
		} else {
			sim.dropped_ops++;
		}
	}
}

static void sim_forget(void);

/* Puts the log directory as the crash left the disk; afterwards what is
 * on the real disk is what reached the simulated one. */
static void power_loss(enum crash_mode mode)
{
	pthread_mutex_lock(&sim.mu);
	for (size_t i = 0; i < sim.nnames; i++)
		unlink(sim.names[i].path);
	for (size_t i = 0; i < sim.nnames; i++) {
		sfile *f = sim.names[i].disk;
		if (!f)
			continue;
		uint8_t *buf;
		size_t len;
		after_crash(f, mode, &buf, &len);
		ck_assert_msg(tu_write_file(sim.names[i].path, buf, len) == 0, "write %s: %s",
			      sim.names[i].path, strerror(errno));
		free(buf);
	}
	pthread_mutex_unlock(&sim.mu);
	sim_forget();
}

/* Drops what the simulation knows: the real disk is the simulated one. */
static void sim_forget(void)
{
	pthread_mutex_lock(&sim.mu);
	while (sim.all) {
		sfile *f = sim.all;
		sim.all = f->all_next;
		for (size_t i = 0; i < f->nops; i++)
			free(f->ops[i].data);
		free(f->ops);
		free(f->dur);
		free(f);
	}
	sim.nnames = 0;
	for (int i = 0; i < MAX_FDS; i++)
		sim.fds[i].f = NULL;
	sim.crashed = false;
	sim.crash_at = 0;
	sim.calls = 0;
	pthread_mutex_unlock(&sim.mu);
}

static void sim_install(const char *store)
{
	sim_forget();
	snprintf(sim.logdir, sizeof(sim.logdir), "%s/log", store);
	evs__os_table.open = s_open;
	evs__os_table.close = s_close;
	evs__os_table.pwrite = s_pwrite;
	evs__os_table.pwritev = s_pwritev;
	evs__os_table.fdatasync = s_sync;
	evs__os_table.fsync = s_sync;
	evs__os_table.ftruncate = s_ftruncate;
	evs__os_table.rename = s_rename;
	evs__os_table.unlink = s_unlink;
}

/* ---- the workload ---- */

#define THREADS 4
#define APPENDS 24 /* per thread and round */
#define BIG 20

typedef struct ack {
	uint64_t position, version;
	char stream[24];
	uint8_t id[16];
	uint32_t round, thread, seq, k, n;
} ack;

typedef struct worker {
	evs_store *s;
	uint32_t round, thread;
	ack acks[APPENDS * BIG];
	size_t nacks;
	int failed_with;
} worker;

static void event_data(char *buf, size_t n, const ack *a)
{
	snprintf(buf, n, "{\"round\":%u,\"thread\":%u,\"seq\":%u,\"k\":%u,\"n\":%u,"
		 "\"pad\":\"%.*s\"}", a->round, a->thread, a->seq, a->k, a->n,
		 (int)(a->seq * 7 % 90), "0123456789abcdefghijklmnopqrstuvwxyz"
		 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz");
}

static void *work(void *arg)
{
	worker *w = arg;
	char own[24], data[BIG][256];
	evs_new_event ev[BIG];
	ack a[BIG];
	uint8_t ids[BIG][16];
	int64_t own_version = EVS_EXPECT_NO_STREAM;

	snprintf(own, sizeof(own), "own-%u-%u", w->round, w->thread);
	for (uint32_t seq = 0; seq < APPENDS; seq++) {
		uint32_t n = seq % 3 == 1 ? BIG : 1;
		bool shared = seq % 2 == 0;
		char stream[24];
		evs_append_result r;

		if (shared)
			snprintf(stream, sizeof(stream), "shared-%u", (w->thread + seq) % 3);
		else
			snprintf(stream, sizeof(stream), "%s", own);
		evs__uuid_v7_seq(&ids[0][0], n, evs__now_us());
		for (uint32_t k = 0; k < n; k++) {
			a[k] = (ack){ .round = w->round, .thread = w->thread, .seq = seq, .k = k,
				      .n = n };
			event_data(data[k], sizeof(data[k]), &a[k]);
			ev[k] = (evs_new_event){ "Written", data[k], NULL, ids[k], 0 };
		}
		int rc = evs_append(w->s, stream, shared ? EVS_EXPECT_ANY : own_version, ev, n,
				    &r);
		if (rc != 0) {
			w->failed_with = rc;
			return NULL;
		}
		if (!shared)
			own_version = (int64_t)r.last_version;
		for (uint32_t k = 0; k < n; k++) {
			a[k].position = r.first_position + k;
			a[k].version = r.first_version + k;
			snprintf(a[k].stream, sizeof(a[k].stream), "%s", stream);
			memcpy(a[k].id, ids[k], 16);
			w->acks[w->nacks++] = a[k];
		}
	}
	return NULL;
}

/* ---- the checks ---- */

typedef struct found {
	uint8_t id[16];
	uint64_t version, stream_hash, data_hash;
	uint32_t round, thread, seq, n;
	bool written;
} found;

typedef struct scan {
	uint64_t next;
	evs__map versions, ids;
	found *at;      /* [position - 1] */
	size_t n, cap;
	int dups;
	char err[512];
} scan;

static int scan_event(const evs_event *ev, void *ctx)
{
	scan *sc = ctx;
	char hex[37];
	evs__head *h;

	if (ev->position != sc->next && !sc->err[0])
		snprintf(sc->err, sizeof(sc->err), "position %llu after %llu",
			 (unsigned long long)ev->position, (unsigned long long)sc->next - 1);
	sc->next = ev->position + 1;
	h = evs__map_find(&sc->versions, ev->stream, ev->stream_len, true);
	ck_assert_ptr_nonnull(h);
	if (ev->version != h->version + 1 && !sc->err[0])
		snprintf(sc->err, sizeof(sc->err), "stream %s: version %llu after %llu",
			 ev->stream, (unsigned long long)ev->version,
			 (unsigned long long)h->version);
	h->version = ev->version;
	evs_uuid_format(hex, ev->id);
	h = evs__map_find(&sc->ids, hex, 36, true);
	ck_assert_ptr_nonnull(h);
	sc->dups += h->version != 0;
	h->version = ev->position;
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 1024;
		sc->at = realloc(sc->at, sc->cap * sizeof(found));
		ck_assert_ptr_nonnull(sc->at);
	}
	found *f = &sc->at[sc->n++];
	memset(f, 0, sizeof(*f));
	memcpy(f->id, ev->id, 16);
	f->version = ev->version;
	f->stream_hash = tu_fnv(ev->stream, ev->stream_len);
	f->data_hash = ev->metadata_len == 0 ? tu_fnv(ev->data, ev->data_len) : 0;
	if (strcmp(ev->type, "Written") == 0) {
		unsigned r, t, s, k, n;
		ck_assert_int_eq(sscanf(ev->data, "{\"round\":%u,\"thread\":%u,\"seq\":%u,\"k\":%u,"
					"\"n\":%u", &r, &t, &s, &k, &n), 5);
		*f = (found){ .version = f->version, .stream_hash = f->stream_hash,
			      .data_hash = f->data_hash, .round = r, .thread = t, .seq = s,
			      .n = n, .written = true };
		memcpy(f->id, ev->id, 16);
	}
	return 0;
}

typedef struct totals {
	uint64_t rounds, crashed, crashes_in_open, acked, present_unacked, events, lost_unsynced;
	uint64_t by_mode[MODES];
} totals;

static void print_problem(const char *problem, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "verify: %s\n", problem);
}

/* Reopens after a crash and checks the store against the acks. */
static void check(const char *store, worker *w, int round, bool durable, totals *t)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	scan sc;

	o.segment_size = 64 * 1024;
	o.durability = durable ? EVS_DURABILITY_SYNC : EVS_DURABILITY_NONE;
	ck_assert_msg(evs_open(&s, store, &o) == 0, "round %d: reopen: %s", round, evs_errmsg());
	ck_assert_msg(evs_verify(s, print_problem, NULL, NULL) == 0, "round %d: verify: %s",
		      round, evs_errmsg());
	memset(&sc, 0, sizeof(sc));
	sc.next = 1;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, scan_event, &sc), 0);
	ck_assert_msg(!sc.err[0], "round %d: %s", round, sc.err);
	ck_assert_msg(sc.dups == 0, "round %d: %d ids twice", round, sc.dups);

	/* every acknowledged event, as acknowledged */
	for (int i = 0; i < THREADS; i++) {
		for (size_t j = 0; j < w[i].nacks; j++) {
			const ack *a = &w[i].acks[j];
			char data[256];
			event_data(data, sizeof(data), a);
			const found *f = a->position <= sc.n ? &sc.at[a->position - 1] : NULL;
			if (!f && !durable) {
				t->lost_unsynced++;
				continue;
			}
			ck_assert_msg(f && memcmp(f->id, a->id, 16) == 0 &&
				      f->version == a->version &&
				      f->stream_hash == tu_fnv(a->stream, strlen(a->stream)) &&
				      f->data_hash == tu_fnv(data, strlen(data)),
				      "round %d: acknowledged %s@%llu (position %llu) lost", round,
				      a->stream, (unsigned long long)a->version,
				      (unsigned long long)a->position);
			t->acked++;
		}
	}
	/* every append of this round whole or not at all */
	for (size_t i = 0; i < sc.n; i++) {
		const found *f = &sc.at[i];
		if (!f->written || f->round != (uint32_t)round)
			continue;
		size_t k = 0;
		while (i + k < sc.n && sc.at[i + k].written && sc.at[i + k].round == f->round &&
		       sc.at[i + k].thread == f->thread && sc.at[i + k].seq == f->seq)
			k++;
		ck_assert_msg(k == f->n, "round %d: append %u.%u has %zu of its %u events",
			      round, f->thread, f->seq, k, f->n);
		bool acked = w[f->thread].nacks > 0 &&
			     w[f->thread].acks[w[f->thread].nacks - 1].seq >= f->seq;
		t->present_unacked += !acked;
		i += k - 1;
	}
	t->events = sc.n;

	evs_new_event ev = { "After", "{}", NULL, NULL, 0 };
	evs_append_result r;
	ck_assert_msg(evs_append(s, "after-crash", EVS_EXPECT_ANY, &ev, 1, &r) == 0,
		      "round %d: append after the crash: %s", round, evs_errmsg());
	ck_assert_uint_eq(r.first_position, sc.n + 1);
	evs_close(s);
	free(sc.at);
	evs__map_free(&sc.versions);
	evs__map_free(&sc.ids);
}

START_TEST(test_power_loss)
{
	char *dir = tu_mkdtemp(), *store = NULL;
	const char *env = getenv("EVS_POWERLOSS_ROUNDS");
	int rounds = env && atoi(env) > 0 ? atoi(env) : 200;
	totals t;
	long most_calls[2] = { 1, 1 }, open_calls = 1;

	memset(&t, 0, sizeof(t));
	seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	if (getenv("EVS_POWERLOSS_SEED"))
		seed = (unsigned)strtoul(getenv("EVS_POWERLOSS_SEED"), NULL, 10);
	printf("power loss: seed %u (EVS_POWERLOSS_SEED)\n", seed);
	for (int round = 0; round < rounds; round++) {
		if (round % 50 == 0) {
			if (store)
				tu_rmdir(store);
			free(store);
			ck_assert_int_ge(asprintf(&store, "%s/store%d", dir, round / 50), 0);
			sim_install(store);
		}
		enum crash_mode mode = (enum crash_mode)(round % MODES);
		bool durable = round / 50 % 2 == 0;
		worker w[THREADS];
		pthread_t th[THREADS];
		evs_options o = EVS_OPTIONS_INIT;
		evs_store *s = NULL;

		/* a crash point somewhere in the round's changing calls, open
		 * and recovery included (every 8th round in the open's
		 * calls); now and then none (a clean close, then the power
		 * goes) */
		pthread_mutex_lock(&sim.mu);
		sim.calls = 0;
		long most = round % 8 == 7 ? open_calls : most_calls[durable];
		sim.crash_at = round % 50 == 0 ? 0 : 1 + (long)(rnd() % (unsigned long)(most + most / 8));
		pthread_mutex_unlock(&sim.mu);
		memset(w, 0, sizeof(w));
		o.create = 1;
		o.segment_size = 64 * 1024;
		o.durability = durable ? EVS_DURABILITY_SYNC : EVS_DURABILITY_NONE;
		if (evs_open(&s, store, &o) == 0) {
			pthread_mutex_lock(&sim.mu);
			if (!sim.crashed && sim.calls > open_calls)
				open_calls = sim.calls;
			pthread_mutex_unlock(&sim.mu);
			for (int i = 0; i < THREADS; i++) {
				w[i].s = s;
				w[i].round = (uint32_t)round;
				w[i].thread = (uint32_t)i;
				ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
			}
			for (int i = 0; i < THREADS; i++)
				pthread_join(th[i], NULL);
			evs_close(s);
		} else {
			/* a crash during open: only the crash may fail it */
			ck_assert_msg(sim.crashed, "round %d: open failed without a crash: %s",
				      round, evs_errmsg());
			t.crashes_in_open++;
		}
		for (int i = 0; i < THREADS; i++)
			ck_assert_msg(w[i].failed_with == 0 || sim.crashed,
				      "round %d: append failed without a crash: %d", round,
				      w[i].failed_with);
		if (!sim.crashed && sim.calls > most_calls[durable])
			most_calls[durable] = sim.calls;
		t.crashed += sim.crashed;
		power_loss(mode);
		t.by_mode[mode]++;
		check(store, w, round, durable, &t);
		t.rounds++;
	}
	evs__os_table = evs__os_default;
	printf("power loss: %llu rounds, %llu crashed (%llu during open or recovery), the "
	       "others closed first; by mode: %s %llu, %s %llu, %s %llu, %s %llu\n",
	       (unsigned long long)t.rounds, (unsigned long long)t.crashed,
	       (unsigned long long)t.crashes_in_open, mode_name[0],
	       (unsigned long long)t.by_mode[0], mode_name[1], (unsigned long long)t.by_mode[1],
	       mode_name[2], (unsigned long long)t.by_mode[2], mode_name[3],
	       (unsigned long long)t.by_mode[3]);
	printf("power loss: %llu acknowledged events found as acknowledged, %llu acknowledged "
	       "without sync (durability none) and lost; %llu appends not acknowledged but "
	       "whole on disk; writes pending at the crash: %llu dropped, %llu kept; most "
	       "changing calls in a round: %ld (sync), %ld (none), in an open %ld\n",
	       (unsigned long long)t.acked, (unsigned long long)t.lost_unsynced,
	       (unsigned long long)t.present_unacked, (unsigned long long)sim.dropped_ops,
	       (unsigned long long)sim.kept_ops, most_calls[1], most_calls[0], open_calls);
	ck_assert_uint_gt(t.acked, 0);
	tu_rmdir(dir);
	free(dir);
	free(store);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("powerloss");
	TCase *tc = tcase_create("powerloss");

	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, test_power_loss);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
