/*
 * segment.c: segment files.  A segment is log/<20-digit first position>.seg,
 * a 64-byte header followed by batches, then zeros up to its fixed size.
 *
 * Header, little-endian: 0 magic "EVSSEG\0\1", 8 u32 format (1), 12 u32
 * header size (64), 16 u64 first position, 24 u64 segment size, 32 i64
 * created (us), 40..59 reserved (0), 60 u32 crc32c of bytes [0, 60).
 *
 * Segments are created whole: written to a temp name with the header and
 * zeros up to their full size, fsync'ed, renamed into place, and the
 * directory fsync'ed; so the hot path never changes a file's size.  The
 * zeros are normally written ahead of time (the spare, below).  Zeros
 * are written rather than fallocate'd: writing into unwritten extents makes
 * every fdatasync commit extent metadata as well as data.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "crc32c.h"
#include "store.h"

void evs__seg_name(char *out, size_t size, const char *logdir, uint64_t first)
{
	snprintf(out, size, "%s/%020" PRIu64 ".seg", logdir, first);
}

int evs__seg_check_header(const uint8_t *hdr, uint64_t first, uint64_t *size_out)
{
	if (memcmp(hdr, EVS__SEG_MAGIC, 8) != 0 || evs__get32(hdr + 8) != 1 ||
	    evs__get32(hdr + 12) != EVS__SEG_HDR ||
	    evs__crc32c(0, hdr, 60) != evs__get32(hdr + 60) ||
	    evs__get64(hdr + 16) != first)
		return -1;
	if (size_out)
		*size_out = evs__get64(hdr + 24);
	return 0;
}

static void seg_header(uint8_t *hdr, uint64_t first, uint64_t size)
{
	memset(hdr, 0, EVS__SEG_HDR);
	memcpy(hdr, EVS__SEG_MAGIC, 8);
	evs__put32(hdr + 8, 1);
	evs__put32(hdr + 12, EVS__SEG_HDR);
	evs__put64(hdr + 16, first);
	evs__put64(hdr + 24, size);
	evs__put64(hdr + 32, (uint64_t)evs__now_us());
	evs__put32(hdr + 60, evs__crc32c(0, hdr, 60));
}

/*
 * Writes zeros over [from, size) in 1 MiB writes; stops early (returning
 * 1) when *stop becomes true.  0 or -1 with errno.  With a store `s` (the
 * background spare), each chunk is sent to the disk as it is written, and
 * the fill pauses 20 ms after a chunk whenever it is ahead of schedule
 * (spare_behind): 64 MiB of dirty pages flushed at once would stall the
 * log's fdatasyncs, and so does zeroing at full speed beside them.
 */
static bool spare_behind(evs_store *s, uint64_t done, uint64_t size);

static int zero_fill(int fd, uint64_t from, uint64_t size, const atomic_bool *stop,
		     evs_store *s)
{
	static const size_t chunk = 1u << 20;
	uint8_t *zeros = evs__calloc(1, chunk);

	if (!zeros) {
		errno = ENOMEM;
		return -1;
	}
	for (uint64_t off = from; off < size;) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
		if (stop && atomic_load(stop)) {
			evs__free(zeros);
			return 1;
		}
		if (evs__os_pwrite_all(fd, zeros, n, (off_t)off) != 0) {
			int e = errno;
			evs__free(zeros);
			errno = e;
			return -1;
		}
		off += n;
		if (s && !atomic_load(&s->spare_hurry)) {
			sync_file_range(fd, (off_t)(off - n), (off_t)n,
					SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					SYNC_FILE_RANGE_WAIT_AFTER);
			if (!spare_behind(s, off, size)) {
				struct timespec nap = { 0, 20000000 };
				nanosleep(&nap, NULL);
			}
		}
	}
	evs__free(zeros);
	return 0;
}

int evs__seg_create(int *fd_out, const char *logdir, uint64_t first,
		    uint64_t size)
{
	char path[4096], tmp[4200];
	uint8_t hdr[EVS__SEG_HDR];
	int fd, err;

	evs__seg_name(path, sizeof(path), logdir, first);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	seg_header(hdr, first, size);
	fd = evs__os_table.open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return evs__err_sys(errno, "create segment", tmp);
	if (evs__os_pwrite_all(fd, hdr, sizeof(hdr), 0) != 0 ||
	    zero_fill(fd, EVS__SEG_HDR, size, NULL, NULL) != 0 ||
	    evs__os_table.fsync(fd) != 0 ||
	    evs__os_table.rename(tmp, path) != 0) {
		err = evs__err_sys(errno, "create segment", tmp);
		evs__os_table.close(fd);
		evs__os_table.unlink(tmp);
		return err;
	}
	if (evs__os_fsync_dir(logdir) != 0) {
		err = evs__err_sys(errno, "fsync log directory", logdir);
		evs__os_table.close(fd);
		return err;
	}
	*fd_out = fd;
	return 0;
}

/* ---- the spare: the next segment, zero-filled ahead of time ----
 *
 * Zero-filling a 64 MiB segment takes a good part of a second, which a
 * roll would otherwise spend between two groups.  A thread prepares
 * log/spare.tmp (zeros, fsync'ed) once the active segment is a sixteenth
 * full, paced (see zero_fill and spare_behind) so it does not stall the
 * log's fdatasyncs; a roll that finds it unfinished has it finish at full
 * speed and waits.  A roll then only writes the header, syncs it, renames
 * the spare into place and syncs the directory.  A spare of the right size left by an
 * earlier run is reused; any other is removed at open.
 */

/*
 * Is the spare's fill behind schedule?  The schedule: done by the time the
 * active segment is 80% full, starting from its fill when the spare was
 * started.  So the zeros go out at about the pace the log fills (plus a
 * quarter), spread over the segment's life rather than in a burst at the
 * roll, and at the minimum pace when the log is idle.
 */
static bool spare_behind(evs_store *s, uint64_t done, uint64_t size)
{
	unsigned a = atomic_load_explicit(&s->active_fill, memory_order_relaxed);
	unsigned from = s->spare_from, until = 800;

	if (a <= from)
		return false;
	if (a >= until || from >= until)
		return true;
	return (double)done / (double)size < (double)(a - from) / (double)(until - from);
}

static void spare_path(char *out, size_t size, const char *logdir)
{
	snprintf(out, size, "%s/spare.tmp", logdir);
}

static void *spare_main(void *arg)
{
	evs_store *s = arg;
	char path[4200];

	spare_path(path, sizeof(path), s->logdir);
	pthread_mutex_lock(&s->spare_mu);
	for (;;) {
		while (!s->spare_stop_req && !(s->spare_want && s->spare_fd < 0))
			pthread_cond_wait(&s->spare_cv, &s->spare_mu);
		if (s->spare_stop_req)
			break;
		s->spare_want = false;
		s->spare_busy = true;
		s->spare_from = atomic_load(&s->active_fill);
		pthread_mutex_unlock(&s->spare_mu);

		int fd = evs__os_table.open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		int rc = fd < 0 ? -1 : zero_fill(fd, 0, s->opts.segment_size, &s->spare_stop, s);
		if (rc == 0)
			rc = evs__os_table.fsync(fd);
		if (rc != 0 && fd >= 0) {
			/* stopped, or failed: a roll creates its segment itself */
			evs__os_table.close(fd);
			evs__os_table.unlink(path);
			fd = -1;
		}
		pthread_mutex_lock(&s->spare_mu);
		s->spare_fd = fd;
		/* after a failure (disk full, say), no new try until a roll */
		s->spare_failed = fd < 0 && !atomic_load(&s->spare_stop);
		s->spare_busy = false;
		atomic_store(&s->spare_hurry, false);
		pthread_cond_broadcast(&s->spare_cv);
	}
	pthread_mutex_unlock(&s->spare_mu);
	return NULL;
}

bool evs__spare_enabled = true;

int evs__spare_start(evs_store *s)
{
	char path[4200];
	struct stat st;

	s->spare_fd = -1;
	if (!evs__spare_enabled)
		return 0;
	spare_path(path, sizeof(path), s->logdir);
	if (stat(path, &st) == 0) {
		if ((uint64_t)st.st_size == s->opts.segment_size)
			s->spare_fd = evs__os_table.open(path, O_RDWR, 0);
		if (s->spare_fd < 0)
			evs__os_table.unlink(path);
	}
	pthread_mutex_init(&s->spare_mu, NULL);
	pthread_cond_init(&s->spare_cv, NULL);
	s->spare_init = true;
	if (pthread_create(&s->spare_thread, NULL, spare_main, s) != 0)
		return evs__err(EVS_ENOMEM, "store %s: cannot start the segment thread", s->dir);
	s->spare_running = true;
	return 0;
}

void evs__spare_stop(evs_store *s)
{
	if (!s->spare_init)
		return;
	if (s->spare_running) {
		atomic_store(&s->spare_stop, true);
		pthread_mutex_lock(&s->spare_mu);
		s->spare_stop_req = true;
		pthread_cond_broadcast(&s->spare_cv);
		pthread_mutex_unlock(&s->spare_mu);
		pthread_join(s->spare_thread, NULL);
		s->spare_running = false;
	}
	if (s->spare_fd >= 0)
		evs__os_table.close(s->spare_fd); /* kept on disk for the next open */
	s->spare_fd = -1;
	pthread_mutex_destroy(&s->spare_mu);
	pthread_cond_destroy(&s->spare_cv);
	s->spare_init = false;
}

void evs__spare_want(evs_store *s)
{
	if (!s->spare_init)
		return;
	pthread_mutex_lock(&s->spare_mu);
	if (s->spare_fd < 0 && !s->spare_want && !s->spare_busy && !s->spare_failed) {
		s->spare_want = true;
		pthread_cond_broadcast(&s->spare_cv);
	}
	pthread_mutex_unlock(&s->spare_mu);
}

int evs__spare_install(evs_store *s, uint64_t first, int *fd_out)
{
	char path[4096], spare[4200];
	uint8_t hdr[EVS__SEG_HDR];
	int fd = -1;

	if (s->spare_init) {
		pthread_mutex_lock(&s->spare_mu);
		/* Being prepared: finish it at full speed rather than write a
		 * second one here. */
		if (s->spare_fd < 0 && s->spare_busy) {
			atomic_store(&s->spare_hurry, true);
			while (s->spare_busy)
				pthread_cond_wait(&s->spare_cv, &s->spare_mu);
		}
		fd = s->spare_fd;
		s->spare_fd = -1;
		s->spare_failed = false;
		pthread_mutex_unlock(&s->spare_mu);
	}
	if (fd < 0)
		return evs__seg_create(fd_out, s->logdir, first, s->opts.segment_size);
	evs__seg_name(path, sizeof(path), s->logdir, first);
	spare_path(spare, sizeof(spare), s->logdir);
	seg_header(hdr, first, s->opts.segment_size);
	if (evs__os_pwrite_all(fd, hdr, sizeof(hdr), 0) != 0 ||
	    evs__os_table.fdatasync(fd) != 0 ||
	    evs__os_table.rename(spare, path) != 0) {
		int err = evs__err_sys(errno, "install segment", path);
		evs__os_table.close(fd);
		evs__os_table.unlink(spare);
		return err;
	}
	if (evs__os_fsync_dir(s->logdir) != 0) {
		int err = evs__err_sys(errno, "fsync log directory", s->logdir);
		evs__os_table.close(fd);
		return err;
	}
	*fd_out = fd;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Parses "<20 digits>.seg"; 0 on success. */
static int parse_name(const char *name, uint64_t *first, bool *tmp)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	if (strcmp(name + 20, ".seg") == 0)
		*tmp = false;
	else if (strcmp(name + 20, ".seg.tmp") == 0)
		*tmp = true;
	else
		return -1;
	*first = v;
	return 0;
}

int evs__seg_list(uint64_t **out, size_t *n, const char *logdir, bool cleanup)
{
	DIR *d = opendir(logdir);
	struct dirent *e;
	uint64_t *v = NULL;
	size_t len = 0, cap = 0;

	if (!d)
		return evs__err_sys(errno, "open log directory", logdir);
	while ((e = readdir(d)) != NULL) {
		uint64_t first;
		bool tmp;

		if (parse_name(e->d_name, &first, &tmp) != 0)
			continue;
		if (tmp) {
			/* A segment whose creation did not finish: never
			 * renamed, so nothing in it was ever acknowledged. */
			if (cleanup) {
				char path[4200];
				snprintf(path, sizeof(path), "%s/%s", logdir, e->d_name);
				evs__os_table.unlink(path);
			}
			continue;
		}
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint64_t *nv = evs__realloc(v, ncap * sizeof(*v));
			if (!nv) {
				closedir(d);
				evs__free(v);
				return evs__err(EVS_ENOMEM, "out of memory listing %s", logdir);
			}
			v = nv;
			cap = ncap;
		}
		v[len++] = first;
	}
	closedir(d);
	if (len)
		qsort(v, len, sizeof(*v), cmp_u64);
	*out = v;
	*n = len;
	return 0;
}
