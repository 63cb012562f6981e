/*
 * test_fault.c: I/O failures injected through the replaceable I/O table
 * (evs__os_table) at the Nth call, for a fixed workload: open, appends
 * across several segment rolls, close, reopen.
 *
 * For every N until the workload runs clean, and for each kind of fault
 * (EIO or ENOSPC on writes and syncs, short writes, EIO on open, rename
 * and directory fsync), transient (only call N fails) or persistent (every
 * call from N on fails):
 *  - the failing call returns the documented code, and every later append
 *    gets EVS_EFAILED until the store is reopened;
 *  - no append was acknowledged that is not there after reopening;
 *  - with a transient fault, reopening yields exactly the acknowledged
 *    events (the failed group was cut back); with a persistent one, the
 *    acknowledged events plus at most the failed appends, whole (their
 *    bytes reached the page cache and cutting them back failed too).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "testutil.h"

enum fault_kind { F_EIO_WRITE, F_ENOSPC_WRITE, F_SHORT_WRITE, F_EIO_SYNC,
		  F_ENOSPC_SYNC, F_EIO_OPEN, F_EIO_RENAME, F_EIO_DIRSYNC, F__COUNT };

static const char *const kind_name[F__COUNT] = {
	"EIO on write", "ENOSPC on write", "short write", "EIO on fdatasync",
	"ENOSPC on fdatasync", "EIO on open", "EIO on rename", "EIO on fsync",
};

typedef struct fault_plan {
	enum fault_kind kind;
	long at;         /* fail the at-th matching call (1-based); 0: never */
	bool persistent;
	long calls;      /* matching calls so far */
	long injected;
} fault_plan;

static fault_plan fault;

static bool hit(void)
{
	fault.calls++;
	if (fault.at && (fault.calls == fault.at || (fault.persistent && fault.calls > fault.at))) {
		fault.injected++;
		return true;
	}
	return false;
}

static ssize_t f_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (fault.kind <= F_SHORT_WRITE && hit()) {
		if (fault.kind == F_SHORT_WRITE && n > 1)
			return evs__os_default.pwrite(fd, buf, n / 2, off);
		errno = fault.kind == F_ENOSPC_WRITE ? ENOSPC : EIO;
		return -1;
	}
	return evs__os_default.pwrite(fd, buf, n, off);
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (fault.kind <= F_SHORT_WRITE && hit()) {
		if (fault.kind == F_SHORT_WRITE && iov[0].iov_len > 1)
			return evs__os_default.pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, off);
		errno = fault.kind == F_ENOSPC_WRITE ? ENOSPC : EIO;
		return -1;
	}
	return evs__os_default.pwritev(fd, iov, cnt, off);
}

static int f_fdatasync(int fd)
{
	if ((fault.kind == F_EIO_SYNC || fault.kind == F_ENOSPC_SYNC) && hit()) {
		errno = fault.kind == F_ENOSPC_SYNC ? ENOSPC : EIO;
		return -1;
	}
	return evs__os_default.fdatasync(fd);
}

static int f_fsync(int fd)
{
	if ((fault.kind == F_EIO_SYNC || fault.kind == F_EIO_DIRSYNC) && hit()) {
		errno = EIO;
		return -1;
	}
	return evs__os_default.fsync(fd);
}

static int f_open(const char *path, int flags, mode_t mode)
{
	if (fault.kind == F_EIO_OPEN && hit()) {
		errno = EIO;
		return -1;
	}
	return evs__os_default.open(path, flags, mode);
}

static int f_rename(const char *from, const char *to)
{
	if (fault.kind == F_EIO_RENAME && hit()) {
		errno = EIO;
		return -1;
	}
	return evs__os_default.rename(from, to);
}

static void install(void)
{
	/* The sweep counts I/O calls: no background segment preparation,
	 * whose calls would interleave differently from run to run. */
	evs__spare_enabled = false;
	evs__os_table = evs__os_default;
	evs__os_table.pwrite = f_pwrite;
	evs__os_table.pwritev = f_pwritev;
	evs__os_table.fdatasync = f_fdatasync;
	evs__os_table.fsync = f_fsync;
	evs__os_table.open = f_open;
	evs__os_table.rename = f_rename;
}

static void uninstall(void)
{
	evs__os_table = evs__os_default;
	fault.at = 0;
	evs__spare_enabled = true;
}

#define APPENDS 40

typedef struct outcome {
	int rc;
	uint64_t first_position;
	uint32_t n;
	char data[APPENDS][8][48];
} outcome;

static const char *stream_of(int i)
{
	static const char *const s[] = { "order-1", "order-2", "cart-9" };
	return s[i % 3];
}

/*
 * The workload.  Returns the open's code; fills out[] with each append's
 * result.  Expected codes are checked here: before the fault every append
 * succeeds; the first failing one gets the fault's code; every one after
 * it gets EVS_EFAILED.
 */
static int workload(const char *dir, outcome *out, int *acked, int *failed_at)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;
	int rc;

	o.create = 1;
	o.segment_size = 4096;
	*acked = 0;
	*failed_at = -1;
	rc = evs_open(&s, dir, &o);
	if (rc)
		return rc;
	for (int i = 0; i < APPENDS; i++) {
		evs_new_event ev[8];
		uint32_t n = 1 + (uint32_t)(i % 4) * 2;
		evs_append_result r;

		for (uint32_t k = 0; k < n; k++) {
			snprintf(out->data[i][k], sizeof(out->data[i][k]),
				 "{\"append\":%d,\"k\":%u,\"pad\":\"xxxxxxxxxxxx\"}", i, k);
			ev[k] = (evs_new_event){ "Faulted", out->data[i][k], NULL, NULL, 0 };
		}
		rc = evs_append(s, stream_of(i), EVS_EXPECT_ANY, ev, n, &r);
		if (rc == 0) {
			ck_assert_int_eq(*failed_at, -1);
			(*acked)++;
		} else if (*failed_at < 0) {
			*failed_at = i;
			ck_assert_msg(rc == EVS_EIO || rc == EVS_ENOSPC,
				      "append %d: %s (%s)", i, evs_errname(rc), evs_errmsg());
			if (fault.kind == F_ENOSPC_WRITE || fault.kind == F_ENOSPC_SYNC)
				ck_assert_int_eq(rc, EVS_ENOSPC);
			else
				ck_assert_int_eq(rc, EVS_EIO);
		} else {
			ck_assert_int_eq(rc, EVS_EFAILED);
		}
	}
	evs_close(s);
	return 0;
}

/* The expected dump for the first `n` appends (as tu_dump prints it). */
static char *expected_dump(outcome *out, int n)
{
	char *buf = calloc(1, 1 << 16);
	size_t len = 0;
	uint64_t pos = 1, ver[3] = { 0, 0, 0 };

	for (int i = 0; i < n; i++) {
		uint32_t cnt = 1 + (uint32_t)(i % 4) * 2;
		for (uint32_t k = 0; k < cnt; k++)
			len += (size_t)sprintf(buf + len, "%llu %s %llu Faulted - %s\n",
					       (unsigned long long)pos++, stream_of(i),
					       (unsigned long long)++ver[i % 3], out->data[i][k]);
	}
	return buf;
}

static void run_kind(enum fault_kind kind, bool persistent)
{
	outcome *out = calloc(1, sizeof(*out));
	long total = 0;

	/* How many matching calls does a clean run make? */
	{
		char *dir = tu_mkdtemp();
		int acked, failed_at;
		install();
		fault = (fault_plan){ kind, 0, false, 0, 0 };
		ck_assert_int_eq(workload(dir, out, &acked, &failed_at), 0);
		ck_assert_int_eq(acked, APPENDS);
		total = fault.calls;
		uninstall();
		tu_rmdir(dir);
		free(dir);
	}
	ck_assert_int_gt(total, 0);

	for (long at = 1; at <= total; at++) {
		char *dir = tu_mkdtemp();
		int acked = 0, failed_at = -1, rc;

		install();
		fault = (fault_plan){ kind, at, persistent, 0, 0 };
		rc = workload(dir, out, &acked, &failed_at);
		uninstall();
		ck_assert_int_ge(fault.injected, 1);

		evs_options o = EVS_OPTIONS_INIT;
		evs_store *s = NULL;
		o.segment_size = 4096;
		o.create = 1;
		int orc = evs_open(&s, dir, &o);
		ck_assert_msg(orc == 0, "%s at call %ld: reopen failed: %s", kind_name[kind], at,
			      evs_errmsg());
		char *got = tu_dump(s);
		ck_assert_ptr_nonnull(got);
		if (rc != 0) {
			/* the fault hit evs_open itself: nothing was acknowledged */
			ck_assert_str_eq(got, "");
		} else {
			char *want = expected_dump(out, acked);
			if (!persistent || strcmp(got, want) == 0) {
				ck_assert_msg(strcmp(got, want) == 0,
					      "%s at call %ld (%s): after reopen\n%s\nwanted\n%s",
					      kind_name[kind], at, persistent ? "persistent" : "transient",
					      got, want);
			} else {
				/* acknowledged prefix, then whole failed appends */
				int k = acked + 1;
				char *more = NULL;
				for (; k <= APPENDS; k++) {
					free(more);
					more = expected_dump(out, k);
					if (strcmp(got, more) == 0)
						break;
				}
				ck_assert_msg(k <= APPENDS, "%s at call %ld (persistent): reopened store "
					      "is not the acknowledged prefix plus whole appends:\n%s",
					      kind_name[kind], at, got);
				free(more);
			}
			free(want);
		}
		ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
		/* and the store takes appends again */
		evs_new_event ev = { "After", "{}", NULL, NULL, 0 };
		ck_assert_int_eq(evs_append(s, "order-1", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
		evs_close(s);
		free(got);
		tu_rmdir(dir);
		free(dir);
	}
	free(out);
}

START_TEST(test_transient)
{
	run_kind((enum fault_kind)_i, false);
}
END_TEST

START_TEST(test_persistent)
{
	run_kind((enum fault_kind)_i, true);
}
END_TEST

/* After a failed sync, the store is failed until reopened, even for
 * appends to other streams, and reads still work. */
START_TEST(test_failed_state)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 1);
	evs_new_event ev = { "A", "{\"x\":1}", NULL, NULL, 0 };
	int n = 0;

	ck_assert_int_eq(evs_append(s, "a-1", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
	install();
	fault = (fault_plan){ F_EIO_SYNC, 1, false, 0, 0 };
	ck_assert_int_eq(evs_append(s, "a-1", EVS_EXPECT_ANY, &ev, 1, NULL), EVS_EIO);
	ck_assert_msg(strstr(evs_errmsg(), "fdatasync") && strstr(evs_errmsg(), ".seg"),
		      "message: %s", evs_errmsg());
	uninstall();
	ck_assert_int_eq(evs_append(s, "b-1", EVS_EXPECT_ANY, &ev, 1, NULL), EVS_EFAILED);
	ck_assert_int_eq(evs_append(s, "a-1", EVS_EXPECT_ANY, &ev, 1, NULL), EVS_EFAILED);
	ck_assert_int_eq(evs_read_stream(s, "a-1", 1, EVS_FORWARD, 0, tu_count_cb, &n), 0);
	ck_assert_int_eq(n, 1);
	/* the metrics say so, and count the failures */
	evs_metrics m;
	ck_assert_int_eq(evs_metrics_get(&m, s), 0);
	ck_assert_int_eq(m.failed, EVS_EIO);
	ck_assert_uint_eq(m.appends_ok, 1);
	ck_assert_uint_eq(m.appends_failed, 3);
	ck_assert_uint_eq(m.syncs, 1);
	evs_close(s);
	s = tu_open(dir, 0, 1);
	ck_assert_int_eq(evs_append(s, "a-1", 1, &ev, 1, NULL), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* Waits (up to 10 s) for the background thread to finish a spare, and
 * checks it is on disk, whole. */
static bool spare_ready(evs_store *st, const char *dir, off_t size)
{
	char *path;
	struct stat sb;
	bool ok = false;

	for (int i = 0; i < 1000 && !ok; i++) {
		pthread_mutex_lock(&st->spare_mu);
		ok = st->spare_fd >= 0;
		pthread_mutex_unlock(&st->spare_mu);
		if (!ok)
			usleep(10000);
	}
	if (asprintf(&path, "%s/log/spare.tmp", dir) < 0)
		abort();
	ok = ok && stat(path, &sb) == 0 && sb.st_size == size;
	free(path);
	return ok;
}

/* Appends 1-event batches to order-1 until the store has `segs` segments. */
static int fill_until(evs_store *s, const char *dir, size_t segs)
{
	int n = 0;

	while (tu_segment_count(dir) < segs) {
		evs_new_event ev = { "Filler", "{\"pad\":\"0123456789012345678901234567890123456789\"}",
				     NULL, NULL, 0 };
		ck_assert_int_eq(evs_append(s, "order-1", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
		n++;
	}
	return n;
}

/* Fills a fresh 8192-byte segment past its half (the filler record is
 * about 120 bytes): the writer then asks for a spare. */
static int fill_half(evs_store *s)
{
	for (int i = 0; i < 45; i++) {
		evs_new_event ev = { "Filler", "{\"pad\":\"0123456789012345678901234567890123456789\"}",
				     NULL, NULL, 0 };
		ck_assert_int_eq(evs_append(s, "order-1", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
	}
	ck_assert_uint_eq(tu_segment_count(s->dir), 1);
	return 45;
}

/* A roll installs the spare the background thread prepared. */
START_TEST(test_spare_installed)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 8192, 1);
	int n;

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(tu_segment_count(dir), 1); /* made at open */
	n = fill_half(s);
	/* past half the segment, a spare is prepared */
	ck_assert(spare_ready(s, dir, 8192));
	n += fill_until(s, dir, 2);
	char *seg = tu_segment_path(dir, 1);
	size_t size;
	char *bytes = tu_read_file(seg, &size);
	ck_assert_uint_eq(size, 8192);
	ck_assert_int_eq(memcmp(bytes, "EVSSEG\0\1", 8), 0);
	free(bytes);
	free(seg);
	int got = 0;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, tu_count_cb, &got), 0);
	ck_assert_int_eq(got, n);
	ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* Installing the spare fails at its rename: the store fails, nothing
 * unacknowledged comes back, and a reopen goes on. */
START_TEST(test_spare_install_fails)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 8192, 1);
	int acked = 0, rc = 0;

	ck_assert_ptr_nonnull(s);
	acked = fill_half(s);
	ck_assert(spare_ready(s, dir, 8192));
	evs__os_table = evs__os_default;
	evs__os_table.rename = f_rename;
	fault = (fault_plan){ F_EIO_RENAME, 1, false, 0, 0 };
	while (rc == 0) {
		evs_new_event ev = { "Filler", "{\"pad\":\"0123456789012345678901234567890123456789\"}",
				     NULL, NULL, 0 };
		rc = evs_append(s, "order-1", EVS_EXPECT_ANY, &ev, 1, NULL);
		if (rc == 0)
			acked++;
	}
	ck_assert_int_eq(rc, EVS_EIO);
	ck_assert_int_eq(fault.injected, 1);
	ck_assert_msg(strstr(evs_errmsg(), "install segment"), "message: %s", evs_errmsg());
	evs_new_event ev = { "Late", "{}", NULL, NULL, 0 };
	ck_assert_int_eq(evs_append(s, "order-2", EVS_EXPECT_ANY, &ev, 1, NULL), EVS_EFAILED);
	evs_close(s);
	uninstall();
	s = tu_open(dir, 8192, 1);
	ck_assert_ptr_nonnull(s);
	int got = 0;
	ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, tu_count_cb, &got), 0);
	ck_assert_int_eq(got, acked);
	ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);
	ck_assert_int_eq(evs_append(s, "order-2", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static Suite *fault_suite(void)
{
	Suite *su = suite_create("fault");
	TCase *tc = tcase_create("sweep");

	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_transient, 0, F__COUNT);
	tcase_add_loop_test(tc, test_persistent, 0, F__COUNT);
	tcase_add_test(tc, test_failed_state);
	tcase_add_test(tc, test_spare_installed);
	tcase_add_test(tc, test_spare_install_fails);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tu_run(fault_suite());
}
