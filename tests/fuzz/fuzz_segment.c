/*
 * fuzz_segment.c: opening a store whose only segment holds arbitrary bytes.
 *
 * The first input byte chooses: odd, the segment file is the rest of the
 * input, header included; even, a valid segment header is written and the
 * rest follows it (so the batches themselves get fuzzed).  Opening
 * (recovery), evs_verify, a full read and one append must each return,
 * with an error or without, and never crash, leak or hit undefined
 * behaviour.  The syncs are skipped: durability is not what is tested.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "store.h"
#include "testutil.h"

static int no_sync(int fd)
{
	(void)fd;
	return 0;
}

/* SQLite's syncs too (the index): these take the place of libc's. */
int fsync(int fd)
{
	(void)fd;
	return 0;
}

int fdatasync(int fd)
{
	(void)fd;
	return 0;
}

static int count(const evs_event *ev, void *ctx)
{
	size_t *n = ctx;

	/* touch every byte a reader may touch */
	*n += strlen(ev->type) + strlen(ev->data) + strlen(ev->metadata) + strlen(ev->stream);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[4096], logdir[4200], seg[4300], lock[4200];
	evs_store *s = NULL;

	evs__os_table.fsync = no_sync;
	evs__os_table.fdatasync = no_sync;
	evs__spare_enabled = false;
	snprintf(dir, sizeof(dir), "%s/store", fuzz_scratch());
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	snprintf(lock, sizeof(lock), "%s/LOCK", dir);
	tu_rmdir(dir);
	if (mkdir(dir, 0755) != 0 || mkdir(logdir, 0755) != 0 || tu_write_file(lock, "", 0) != 0)
		abort();
	evs__seg_name(seg, sizeof(seg), logdir, 1);
	if (size > 0 && (data[0] & 1)) {
		if (tu_write_file(seg, data + 1, size - 1) != 0)
			abort();
	} else {
		size_t body = size > 0 ? size - 1 : 0;
		uint64_t segsize = (EVS__SEG_HDR + body + 4095) / 4096 * 4096;
		int fd;
		if (segsize < EVS_MIN_SEGMENT_SIZE)
			segsize = EVS_MIN_SEGMENT_SIZE;
		if (evs__seg_create(&fd, logdir, 1, segsize) != 0)
			abort();
		if (body && pwrite(fd, data + 1, body, EVS__SEG_HDR) != (ssize_t)body)
			abort();
		close(fd);
	}

	evs_options o = EVS_OPTIONS_INIT;
	o.durability = EVS_DURABILITY_NONE;
	o.segment_size = 4096;
	if (evs_open(&s, dir, &o) == 0) {
		size_t n = 0;
		evs_verify(s, NULL, NULL, NULL);
		evs_read_all(s, 1, 0, NULL, count, &n);
		evs_new_event ev = { "Fuzzed", "{}", NULL, NULL, 0 };
		evs_append(s, "fuzz-1", EVS_EXPECT_ANY, &ev, 1, NULL);
		evs_close(s);
	}
	return 0;
}
