/*
 * test_recovery.c: what open does with a damaged or lagging store.
 *
 *  - a torn last batch (the file cut at every byte offset of it, or its
 *    tail overwritten) is cut off and the acknowledged prefix survives,
 *    nothing else; appending then goes on at the right position;
 *  - one flipped bit in an older batch: reads and verify report it by
 *    segment and offset, and an open that has to scan it fails naming it;
 *  - index.db deleted: rebuilt from the log with identical answers;
 *  - an acknowledged (indexed) batch damaged under durability sync: open
 *    refuses instead of dropping it.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
	dir = tu_mkdtemp();
}

static void teardown(void)
{
	tu_rmdir(dir);
	free(dir);
}

static char *path_in(const char *d, const char *name)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", d, name), 0);
	return p;
}

/* Copies a closed store (log/, index.db, LOCK) to `to`. */
static void copy_store(const char *from, const char *to, bool with_index)
{
	char *lf = path_in(from, "log"), *lt = path_in(to, "log");
	size_t n = tu_segment_count(from);

	mkdir(to, 0755);
	mkdir(lt, 0755);
	for (size_t i = 0; i < n; i++) {
		char *src = tu_segment_path(from, i), *dst;
		size_t size;
		char *buf = tu_read_file(src, &size);
		ck_assert_ptr_nonnull(buf);
		ck_assert_int_ge(asprintf(&dst, "%s/%s", lt, strrchr(src, '/') + 1), 0);
		ck_assert_int_eq(tu_write_file(dst, buf, size), 0);
		free(buf);
		free(src);
		free(dst);
	}
	char *lock = path_in(to, "LOCK");
	ck_assert_int_eq(tu_write_file(lock, "", 0), 0);
	free(lock);
	if (with_index) {
		char *src = path_in(from, "index.db"), *dst = path_in(to, "index.db");
		size_t size;
		char *buf = tu_read_file(src, &size);
		ck_assert_ptr_nonnull(buf);
		ck_assert_int_eq(tu_write_file(dst, buf, size), 0);
		free(buf);
		free(src);
		free(dst);
	}
	free(lf);
	free(lt);
}

static void append1(evs_store *s, const char *stream, const char *type, const char *data,
		    evs_append_result *res)
{
	evs_new_event ev = { type, data, NULL, NULL, 0 };

	ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, res), 0);
}

/* Appends `n` events as one batch to `stream`. */
static void append_n(evs_store *s, const char *stream, int n, int tag)
{
	evs_new_event ev[16];
	char data[16][64];

	ck_assert_int_le(n, 16);
	for (int i = 0; i < n; i++) {
		snprintf(data[i], sizeof(data[i]), "{\"tag\":%d,\"i\":%d}", tag, i);
		ev[i] = (evs_new_event){ "Tick", data[i], "{\"m\":true}", NULL, 0 };
	}
	ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, ev, (size_t)n, NULL), 0);
}

/* The last batch of a closed store, from its index. */
static evs__batch_ref last_batch(const char *d)
{
	char *p = path_in(d, "index.db");
	evs__ix *ix;
	evs__batch_ref b;

	/* read-write, so that closing it checkpoints and removes the WAL */
	ck_assert_int_eq(evs__ix_open(&ix, p, false), 0);
	ck_assert_int_eq(evs__ix_last_batch(ix, &b), 0);
	evs__ix_close(ix);
	free(p);
	return b;
}

static int count_cb(const evs_event *ev, void *ctx)
{
	(void)ev;
	(*(int *)ctx)++;
	return 0;
}

/*
 * A base store: three streams, several batches; `prefix` is the dump
 * before the last batch, `full` after it.  The index copy in `dir/old` is
 * from before the last batch, as after a crash between the log's sync and
 * the index's commit.
 */
static void make_base(const char *base, char **prefix, char **full, evs__batch_ref *lastb)
{
	evs_store *s = tu_open(base, 16384, 0);
	char *old = path_in(dir, "old-index");

	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 6; i++)
		append_n(s, i % 2 ? "order-1" : "order-2", 1 + i % 4, i);
	*prefix = tu_dump(s);
	evs_close(s);
	copy_store(base, old, true);
	s = tu_open(base, 16384, 0);
	append_n(s, "order-3", 5, 99);
	*full = tu_dump(s);
	evs_close(s);
	*lastb = last_batch(base);
	/* base's index.db goes back to the one before the last batch */
	char *src = path_in(old, "index.db"), *dst = path_in(base, "index.db");
	char *wal = path_in(base, "index.db-wal"), *shm = path_in(base, "index.db-shm");
	ck_assert_int_eq(access(wal, F_OK), -1); /* closed cleanly: checkpointed */
	unlink(shm);
	free(wal);
	free(shm);
	size_t size;
	char *buf = tu_read_file(src, &size);
	ck_assert_int_eq(tu_write_file(dst, buf, size), 0);
	free(buf);
	free(src);
	free(dst);
	tu_rmdir(old);
	free(old);
}

/* The cut after `cut`: `stride` bytes on, but never past the last byte. */
static uint32_t next_cut(uint32_t cut, uint32_t stride, uint32_t length)
{
	if (cut + 1 == length)
		return length;
	return cut + stride < length ? cut + stride : length - 1;
}

START_TEST(test_truncate_every_offset)
{
	char *base = path_in(dir, "base"), *prefix, *full;
	evs__batch_ref lb;
	int durability = _i; /* 0: none, 1: sync */

	make_base(base, &prefix, &full, &lb);
	ck_assert_str_ne(prefix, full);
	char *bseg = tu_segment_path(base, 0);
	size_t bsize;
	uint8_t *bytes = (uint8_t *)tu_read_file(bseg, &bsize);
	ck_assert_uint_ge(bsize, lb.offset + lb.length);
	/* every byte; under valgrind (EVS_RECOVERY_CUT_STRIDE) every n-th
	 * and the last, which the plain and sanitizer builds cover whole */
	const char *env = getenv("EVS_RECOVERY_CUT_STRIDE");
	uint32_t stride = env && atoi(env) > 0 ? (uint32_t)atoi(env) : 1;
	for (uint32_t cut = 0; cut < lb.length; cut = next_cut(cut, stride, lb.length)) {
		/* what recovery clears: the kept part of the batch up to its
		 * last non-zero byte (the NULs after a field read as zeros) */
		uint32_t cleared = cut;
		while (cleared > 0 && bytes[lb.offset + cleared - 1] == 0)
			cleared--;
		char *d = path_in(dir, "t");
		copy_store(base, d, true);
		char *seg = tu_segment_path(d, 0);
		ck_assert_int_eq(truncate(seg, (off_t)(lb.offset + cut)), 0);

		evs_store *s = tu_open(d, 16384, durability);
		ck_assert_msg(s != NULL, "cut at +%u: open failed: %s", cut, evs_errmsg());
		char *got = tu_dump(s);
		ck_assert_str_eq(got, prefix);
		free(got);
		evs_stats st;
		ck_assert_int_eq(evs_stats_get(&st, s), 0);
		ck_assert_uint_eq(st.head_position, lb.position - 1);
		ck_assert_uint_eq(st.truncated_bytes, cleared);
		/* appending goes on right where the log ended */
		evs_append_result r;
		append1(s, "order-3", "After", "{}", &r);
		ck_assert_uint_eq(r.first_position, lb.position);
		ck_assert_uint_eq(r.first_version, 1);
		ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
		evs_close(s);
		/* and it holds across another reopen */
		s = tu_open(d, 16384, durability);
		ck_assert_ptr_nonnull(s);
		int n = 0;
		ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, count_cb, &n), 0);
		ck_assert_int_eq(n, (int)lb.position);
		evs_close(s);
		free(seg);
		tu_rmdir(d);
		free(d);
	}
	free(bytes);
	free(bseg);
	free(prefix);
	free(full);
	free(base);
}
END_TEST

/* The torn tail is garbage rather than missing: a half-written page. */
START_TEST(test_garbage_tail)
{
	char *base = path_in(dir, "base"), *prefix, *full;
	evs__batch_ref lb;

	make_base(base, &prefix, &full, &lb);
	for (uint32_t keep = 0; keep < lb.length; keep += 7) {
		char *d = path_in(dir, "t");
		copy_store(base, d, true);
		char *seg = tu_segment_path(d, 0);
		int fd = open(seg, O_WRONLY);
		ck_assert_int_ge(fd, 0);
		uint8_t junk[512];
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 37 + keep);
		ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), (off_t)(lb.offset + keep)),
				 (ssize_t)sizeof(junk));
		close(fd);
		evs_store *s = tu_open(d, 16384, 0);
		ck_assert_msg(s != NULL, "garbage at +%u: %s", keep, evs_errmsg());
		char *got = tu_dump(s);
		ck_assert_str_eq(got, prefix);
		free(got);
		ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
		evs_close(s);
		free(seg);
		tu_rmdir(d);
		free(d);
	}
	free(prefix);
	free(full);
	free(base);
}
END_TEST

static int syncs, fail_sync;

static int counting_fdatasync(int fd)
{
	syncs++;
	if (fail_sync) {
		errno = EIO;
		return -1;
	}
	return evs__os_default.fdatasync(fd);
}

/*
 * The whole last batch is intact but unindexed: recovery makes it durable
 * (it may never have been synced: a crash in its group's fdatasync) and
 * only then indexes it.
 */
START_TEST(test_unindexed_tail_is_indexed)
{
	char *base = path_in(dir, "base"), *prefix, *full;
	evs__batch_ref lb;

	make_base(base, &prefix, &full, &lb);
	/* the sync fails: the open fails and indexes nothing */
	evs__os_table.fdatasync = counting_fdatasync;
	fail_sync = 1;
	syncs = 0;
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	o.segment_size = 16384;
	ck_assert_int_eq(evs_open(&s, base, &o), EVS_EIO);
	ck_assert_int_eq(syncs, 1);
	fail_sync = 0;
	syncs = 0;
	s = tu_open(base, 16384, 1);
	evs__os_table = evs__os_default;
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(syncs, 1);
	char *got = tu_dump(s);
	ck_assert_str_eq(got, full);
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(st.recovered_batches, 1);
	ck_assert_uint_eq(st.truncated_bytes, 0);
	evs_stream_info info;
	ck_assert_int_eq(evs_stream_info_get(&info, s, "order-3"), 0);
	ck_assert_int_eq(info.exists, 1);
	ck_assert_uint_eq(info.last_version, 5);
	ck_assert_uint_eq(info.first_position, lb.position);
	free(got);
	evs_close(s);
	free(prefix);
	free(full);
	free(base);
}
END_TEST

/* An acknowledged batch cut under durability sync: open refuses. */
START_TEST(test_indexed_batch_damaged_sync)
{
	evs_store *s = tu_open(dir, 16384, 1);
	evs__batch_ref lb;

	append_n(s, "order-1", 3, 1);
	append_n(s, "order-1", 3, 2);
	evs_close(s);
	lb = last_batch(dir);
	char *seg = tu_segment_path(dir, 0);
	ck_assert_int_eq(truncate(seg, (off_t)(lb.offset + lb.length - 1)), 0);
	evs_options o = EVS_OPTIONS_INIT;
	o.segment_size = 16384;
	ck_assert_int_eq(evs_open(&s, dir, &o), EVS_ECORRUPT);
	ck_assert_ptr_null(s);
	char want[4200];
	snprintf(want, sizeof(want), "%s offset %llu: acknowledged batch at position 4",
		 seg, (unsigned long long)lb.offset);
	ck_assert_msg(strstr(evs_errmsg(), want), "message: %s", evs_errmsg());
	/* durability none promised nothing: the batch is dropped */
	o.durability = EVS_DURABILITY_NONE;
	ck_assert_int_eq(evs_open(&s, dir, &o), 0);
	int n = 0;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, count_cb, &n), 0);
	ck_assert_int_eq(n, 3);
	evs_close(s);
	free(seg);
}
END_TEST

static void report_cb(const char *problem, void *ctx)
{
	char **last = ctx;

	free(*last);
	*last = strdup(problem);
}

START_TEST(test_bitflip_older_batch)
{
	/* durability sync: the later batches' synced-through marks prove the
	 * damaged one was durable (with durability none they cannot) */
	evs_store *s = tu_open(dir, 16384, 1);
	evs__batch_ref b2;
	char *ixp = path_in(dir, "index.db");

	for (int i = 0; i < 5; i++)
		append_n(s, i == 1 ? "order-7" : "order-8", 3, i);
	evs_close(s);
	/* batch 2 is at position 4 */
	{
		evs__ix *ix;
		ck_assert_int_eq(evs__ix_open(&ix, ixp, false), 0);
		ck_assert_int_eq(evs__ix_batch_at(ix, 4, &b2), 0);
		evs__ix_close(ix);
	}
	ck_assert_uint_eq(b2.position, 4);
	char *seg = tu_segment_path(dir, 0);
	int fd = open(seg, O_RDWR);
	uint8_t byte;
	off_t at = (off_t)(b2.offset + b2.length - 5); /* inside the data JSON */
	ck_assert_int_eq(pread(fd, &byte, 1, at), 1);
	byte ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &byte, 1, at), 1);
	close(fd);

	char want[4200];
	snprintf(want, sizeof(want), "%s offset %llu", seg, (unsigned long long)b2.offset);

	/* Index intact: open does not rescan, but nothing serves the bad batch. */
	s = tu_open(dir, 16384, 1);
	ck_assert_ptr_nonnull(s);
	int n = 0;
	ck_assert_int_eq(evs_read_stream(s, "order-7", 1, EVS_FORWARD, 0, count_cb, &n),
			 EVS_ECORRUPT);
	ck_assert_int_eq(n, 0);
	ck_assert_msg(strstr(evs_errmsg(), want), "message: %s", evs_errmsg());
	n = 0;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, count_cb, &n), EVS_ECORRUPT);
	ck_assert_int_eq(n, 3);
	ck_assert_msg(strstr(evs_errmsg(), want), "message: %s", evs_errmsg());
	n = 0;
	ck_assert_int_eq(evs_read_stream(s, "order-8", 1, EVS_FORWARD, 0, count_cb, &n), 0);
	ck_assert_int_eq(n, 12);
	char *problem = NULL;
	ck_assert_int_eq(evs_verify(s, report_cb, NULL, &problem), EVS_ECORRUPT);
	ck_assert_ptr_nonnull(problem);
	ck_assert_msg(strstr(problem, want), "problem: %s", problem);
	free(problem);
	evs_close(s);

	/* Index gone: the open that scans the log must fail, naming the place. */
	ck_assert_int_eq(unlink(ixp), 0);
	evs_options o = EVS_OPTIONS_INIT;
	o.segment_size = 16384;
	ck_assert_int_eq(evs_open(&s, dir, &o), EVS_ECORRUPT);
	ck_assert_msg(strstr(evs_errmsg(), want), "message: %s", evs_errmsg());
	/* the log was not touched by the failed open */
	ck_assert_int_eq(evs_open(&s, dir, &o), EVS_ECORRUPT);
	free(seg);
	free(ixp);
}
END_TEST

START_TEST(test_index_deleted_rebuilt)
{
	evs_store *s = tu_open(dir, 4096, 0);
	char *ixp = path_in(dir, "index.db");

	for (int i = 0; i < 60; i++)
		append_n(s, i % 3 == 0 ? "cart-1" : i % 3 == 1 ? "order-1" : "order-2",
			 1 + i % 5, i);
	char *before = tu_dump(s);
	evs_stream_info a, b;
	ck_assert_int_eq(evs_stream_info_get(&a, s, "order-2"), 0);
	evs_close(s);
	ck_assert_uint_gt(tu_segment_count(dir), 3);
	ck_assert_int_eq(unlink(ixp), 0);

	s = tu_open(dir, 4096, 0);
	ck_assert_ptr_nonnull(s);
	char *after = tu_dump(s);
	ck_assert_str_eq(after, before);
	ck_assert_int_eq(evs_stream_info_get(&b, s, "order-2"), 0);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(st.recovered_batches, 60);
	ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
	evs_close(s);
	free(before);
	free(after);
	free(ixp);
}
END_TEST

/* A clean reopen reads one batch header, not the log. */
START_TEST(test_clean_reopen_scans_nothing)
{
	evs_store *s = tu_open(dir, 0, 0);

	for (int i = 0; i < 200; i++)
		append_n(s, "order-1", 10, i);
	evs_close(s);
	s = tu_open(dir, 0, 0);
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(st.recovered_batches, 0);
	ck_assert_uint_eq(st.recovery_bytes, 0);
	ck_assert_uint_eq(st.head_position, 2000);
	evs_close(s);
}
END_TEST

/* A temp segment left by a crash during a roll is removed. */
START_TEST(test_stale_temp_segment)
{
	evs_store *s = tu_open(dir, 4096, 0);

	append_n(s, "order-1", 2, 0);
	evs_close(s);
	char *tmp = path_in(dir, "log/00000000000000000003.seg.tmp");
	ck_assert_int_eq(tu_write_file(tmp, "partial", 7), 0);
	s = tu_open(dir, 4096, 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	append_n(s, "order-1", 2, 1);
	ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
	evs_close(s);
	free(tmp);
}
END_TEST

/*
 * Power loss can persist the pages of an unsynced group out of order: a
 * page of its first batch lost (zeros, or a torn batch) while a later batch
 * of the same group reached the disk.  Nothing of that group was
 * acknowledged, so open cuts all of it.  A batch whose synced-through mark
 * says the missing position was durable proves corruption instead.
 */
static size_t make_batch(uint8_t *p, uint64_t position, uint64_t version,
			 uint64_t synced_through, const char *stream, const char *data)
{
	size_t sl = strlen(stream), dl = strlen(data);
	size_t len = EVS__BATCH_HDR + sl + 1 + evs__rec_size(4, 0, dl);
	uint8_t id[16];

	memset(id, 0x5a, 16);
	id[15] = (uint8_t)position;
	evs__rec_encode(p + EVS__BATCH_HDR + sl + 1, id, 1, 1, "Lost", 4, "", 0, data, dl);
	evs__batch_seal_header(p, (uint32_t)len, 1, position, version, synced_through, stream,
			       (uint16_t)sl, 0);
	return len;
}

START_TEST(test_unsynced_group_out_of_order)
{
	int torn = _i & 1;        /* B2 torn (else: B2's bytes are zeros) */
	int proves = (_i >> 1) & 1; /* B3 says position 2 was durable */
	evs_store *s = tu_open(dir, 16384, 1);
	uint8_t b2[512], b3[512];
	evs__batch_ref lb;

	append_n(s, "order-1", 1, 0);
	evs_close(s);
	lb = last_batch(dir);
	uint64_t end = lb.offset + lb.length;
	size_t l2 = make_batch(b2, 2, 1, 1, "order-9", "{\"n\":2}");
	size_t l3 = make_batch(b3, 3, 2, proves ? 2 : 1, "order-9", "{\"n\":3}");
	char *seg = tu_segment_path(dir, 0);
	int fd = open(seg, O_RDWR);
	ck_assert_int_ge(fd, 0);
	if (torn) {
		b2[l2 - 3] ^= 0x40; /* its CRC no longer matches */
		ck_assert_int_eq(pwrite(fd, b2, l2, (off_t)end), (ssize_t)l2);
	}
	ck_assert_int_eq(pwrite(fd, b3, l3, (off_t)(end + l2)), (ssize_t)l3);
	close(fd);

	evs_options o = EVS_OPTIONS_INIT;
	o.segment_size = 16384;
	if (proves) {
		ck_assert_int_eq(evs_open(&s, dir, &o), EVS_ECORRUPT);
		char want[4200];
		snprintf(want, sizeof(want), "%s offset %llu: %s where position 2 was", seg,
			 (unsigned long long)end, torn ? "a bad batch" : "zeros");
		ck_assert_msg(strstr(evs_errmsg(), want), "message: %s", evs_errmsg());
		free(seg);
		return;
	}
	ck_assert_int_eq(evs_open(&s, dir, &o), 0);
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(st.head_position, 1);
	/* cleared up to B3's last non-zero byte (a batch ends with a NUL) */
	ck_assert_uint_eq(st.truncated_bytes, l2 + l3 - 1);
	/* appends of the same sizes must never bring the old bytes back */
	for (int i = 0; i < 3; i++)
		append_n(s, "order-2", 1, 10 + i);
	evs_close(s);
	s = tu_open(dir, 16384, 1);
	int n = 0;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, count_cb, &n), 0);
	ck_assert_int_eq(n, 4);
	evs_stream_info info;
	ck_assert_int_eq(evs_stream_info_get(&info, s, "order-9"), 0);
	ck_assert_int_eq(info.exists, 0);
	ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
	evs_close(s);
	free(seg);
}
END_TEST

static uint64_t unsynced_mark(const char *d)
{
	char *p = path_in(d, "index.db");
	evs__ix *ix;
	uint64_t v = 99;

	ck_assert_int_eq(evs__ix_open(&ix, p, true), 0);
	ck_assert_int_eq(evs__ix_get_meta(ix, EVS__META_UNSYNCED, &v), 0);
	evs__ix_close(ix);
	free(p);
	return v;
}

/*
 * Found by the power-loss simulation (test_powerloss): a writer with
 * durability none dies; of its last appends, the third reached the disk
 * and the second did not (pages are written back in any order), while the
 * index holds all three.  The third's synced-through mark once claimed the
 * second was durable, and the next open refused the store; and the index,
 * its last batch being there, was trusted.  Now the marks say only what
 * was synced, and the index's mark of such a writer has the last segment
 * indexed again.  _i: the next open is with durability none (0) or sync.
 */
START_TEST(test_none_writer_power_loss)
{
	evs_store *s = tu_open(dir, 16384, 0);
	evs__batch_ref b2;

	append_n(s, "order-1", 1, 1);
	ck_assert_uint_eq(unsynced_mark(dir), 1);
	evs_close(s);
	ck_assert_uint_eq(unsynced_mark(dir), 0); /* a clean close syncs */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		s = tu_open(dir, 16384, 0);
		if (!s)
			_exit(2);
		for (int i = 2; i <= 4; i++)
			append_n(s, "order-1", 1, i);
		if (evs__indexer_wait(s, 4) != 0)
			_exit(3);
		_exit(0); /* no close: the mark stays */
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_uint_eq(unsynced_mark(dir), 1);
	{
		char *ixp = path_in(dir, "index.db");
		evs__ix *ix;
		ck_assert_int_eq(evs__ix_open(&ix, ixp, true), 0);
		ck_assert_int_eq(evs__ix_batch_at(ix, 3, &b2), 0);
		evs__ix_close(ix);
		free(ixp);
	}
	ck_assert_uint_eq(b2.position, 3);
	char *seg = tu_segment_path(dir, 0);
	int fd = open(seg, O_RDWR);
	uint8_t zeros[4096] = { 0 };
	ck_assert_int_ge(fd, 0);
	ck_assert_uint_le(b2.length, sizeof(zeros));
	ck_assert_int_eq(pwrite(fd, zeros, b2.length, (off_t)b2.offset), (ssize_t)b2.length);
	close(fd);

	evs_options o = EVS_OPTIONS_INIT;
	o.segment_size = 16384;
	o.durability = _i ? EVS_DURABILITY_SYNC : EVS_DURABILITY_NONE;
	ck_assert_msg(evs_open(&s, dir, &o) == 0, "%s", evs_errmsg());
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	ck_assert_uint_eq(st.head_position, 2);
	ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
	evs_stream_info info;
	ck_assert_int_eq(evs_stream_info_get(&info, s, "order-1"), 0);
	ck_assert_uint_eq(info.last_version, 2);
	evs_new_event ev = { "Again", "{}", NULL, NULL, 0 };
	evs_append_result r;
	ck_assert_int_eq(evs_append(s, "order-1", 2, &ev, 1, &r), 0);
	ck_assert_uint_eq(r.first_position, 3);
	ck_assert_uint_eq(unsynced_mark(dir), _i ? 0 : 1);
	evs_close(s);
	ck_assert_uint_eq(unsynced_mark(dir), 0);
	free(seg);
}
END_TEST

/* An index of another format is refused, not misread. */
START_TEST(test_index_format_refused)
{
	evs_store *s = tu_open(dir, 16384, 0);
	char *ixp = path_in(dir, "index.db");
	sqlite3 *db;

	append_n(s, "order-1", 2, 0);
	evs_close(s);
	ck_assert_int_eq(sqlite3_open(ixp, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "UPDATE meta SET value = 3 WHERE key = 'format'",
				      NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	evs_options o = EVS_OPTIONS_INIT;
	o.segment_size = 16384;
	ck_assert_int_eq(evs_open(&s, dir, &o), EVS_ECORRUPT);
	ck_assert_msg(strstr(evs_errmsg(), "has format 3, this library reads format 2"),
		      "message: %s", evs_errmsg());
	o.read_only = 1;
	ck_assert_int_eq(evs_open(&s, dir, &o), 0);
	int n = 0;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, count_cb, &n), EVS_ECORRUPT);
	ck_assert_msg(strstr(evs_errmsg(), "has format 3"), "message: %s", evs_errmsg());
	evs_close(s);
	free(ixp);
}
END_TEST

static Suite *recovery_suite(void)
{
	Suite *su = suite_create("recovery");
	TCase *tc = tcase_create("torn");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_truncate_every_offset, 0, 2);
	tcase_add_test(tc, test_garbage_tail);
	tcase_add_test(tc, test_unindexed_tail_is_indexed);
	tcase_add_test(tc, test_indexed_batch_damaged_sync);
	tcase_add_loop_test(tc, test_unsynced_group_out_of_order, 0, 4);
	tcase_add_loop_test(tc, test_none_writer_power_loss, 0, 2);
	suite_add_tcase(su, tc);

	tc = tcase_create("corrupt");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bitflip_older_batch);
	tcase_add_test(tc, test_index_deleted_rebuilt);
	tcase_add_test(tc, test_clean_reopen_scans_nothing);
	tcase_add_test(tc, test_stale_temp_segment);
	tcase_add_test(tc, test_index_format_refused);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tu_run(recovery_suite());
}
