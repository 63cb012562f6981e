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
 * directory fsync'ed; so the hot path never changes a file's size.  Zeros
 * are written rather than fallocate'd: writing into unwritten extents makes
 * every fdatasync commit extent metadata as well as data.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

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

int evs__seg_create(int *fd_out, const char *logdir, uint64_t first,
		    uint64_t size)
{
	char path[4096], tmp[4200];
	uint8_t hdr[EVS__SEG_HDR];
	static const size_t chunk = 1u << 20;
	uint8_t *zeros;
	int fd, err;

	evs__seg_name(path, sizeof(path), logdir, first);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, EVS__SEG_MAGIC, 8);
	evs__put32(hdr + 8, 1);
	evs__put32(hdr + 12, EVS__SEG_HDR);
	evs__put64(hdr + 16, first);
	evs__put64(hdr + 24, size);
	evs__put64(hdr + 32, (uint64_t)evs__now_us());
	evs__put32(hdr + 60, evs__crc32c(0, hdr, 60));

	zeros = evs__calloc(1, chunk);
	if (!zeros)
		return evs__err(EVS_ENOMEM, "out of memory creating segment %s", path);
	fd = evs__os_table.open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		evs__free(zeros);
		return evs__err_sys(errno, "create segment", tmp);
	}
	if (evs__os_pwrite_all(fd, hdr, sizeof(hdr), 0) != 0)
		goto fail;
	for (uint64_t off = EVS__SEG_HDR; off < size;) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
		if (evs__os_pwrite_all(fd, zeros, n, (off_t)off) != 0)
			goto fail;
		off += n;
	}
	if (evs__os_table.fsync(fd) != 0)
		goto fail;
	if (evs__os_table.rename(tmp, path) != 0)
		goto fail;
	if (evs__os_fsync_dir(logdir) != 0) {
		err = evs__err_sys(errno, "fsync log directory", logdir);
		evs__os_table.close(fd);
		evs__free(zeros);
		return err;
	}
	evs__free(zeros);
	*fd_out = fd;
	return 0;
fail:
	err = evs__err_sys(errno, "create segment", tmp);
	evs__os_table.close(fd);
	evs__os_table.unlink(tmp);
	evs__free(zeros);
	return err;
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
