/*
 * test_reindex.c: evs_rebuild_index: the index rebuilt from the log gives
 * the same answers, replaces a wrong index or one of another format, drops
 * the snapshots, ignores what an interrupted rebuild left, and refuses a
 * store another writer holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testutil.h"

static char *path_in(const char *dir, const char *name)
{
	char *p = malloc(4200);

	snprintf(p, 4200, "%s/%s", dir, name);
	return p;
}

static void sql(const char *db_path, const char *q)
{
	sqlite3 *db;

	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, q, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", q,
		      sqlite3_errmsg(db));
	sqlite3_close(db);
}

static long long sql_count(const char *db_path, const char *q)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long long n = -1;

	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* A store of 3 streams over several segments, its dump as text. */
static char *fill(const char *dir)
{
	evs_store *s = tu_open(dir, 16384, 0);
	char data[200];
	char *dump;

	for (int i = 0; i < 300; i++) {
		char stream[32];
		evs_new_event ev[3];
		snprintf(stream, sizeof(stream), "order-%d", i % 3);
		snprintf(data, sizeof(data), "{\"i\":%d,\"pad\":\"%0100d\"}", i, i);
		for (int k = 0; k < 3; k++)
			ev[k] = (evs_new_event){ k ? "ItemAdded" : "Noted", data, NULL, NULL, 1 };
		ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, ev, 1 + (size_t)(i % 3), NULL),
				 0);
	}
	dump = tu_dump(s);
	evs_close(s);
	return dump;
}

static char *dump_of(const char *dir)
{
	evs_store *s = tu_open(dir, 16384, 0);
	char *d = tu_dump(s);

	evs_close(s);
	return d;
}

static int progress_calls;
static uint64_t progress_done, progress_total;

static void on_progress(uint64_t done, uint64_t total, void *ctx)
{
	(void)ctx;
	progress_calls++;
	progress_done = done;
	progress_total = total;
}

START_TEST(test_rebuild_equals)
{
	char *dir = tu_mkdtemp(), *ixp = path_in(dir, "index.db"), *before, *after;
	evs_options o = EVS_OPTIONS_INIT;

	o.segment_size = 16384;
	before = fill(dir);
	ck_assert_uint_gt(tu_segment_count(dir), 3);
	/* a wrong index: batches in the middle lost, a snapshot taken from it */
	sql(ixp, "DELETE FROM batches WHERE position BETWEEN 100 AND 200;"
		 "INSERT INTO snapshots VALUES ('order-1', 3, 1, 0, '{\"kept\":true}', 1)");
	progress_calls = 0;
	ck_assert_msg(evs_rebuild_index(dir, &o, on_progress, NULL) == 0, "%s", evs_errmsg());
	ck_assert_int_gt(progress_calls, 0);
	ck_assert_uint_eq(progress_done, progress_total);
	ck_assert_uint_gt(progress_done, 300 * 100);
	after = dump_of(dir);
	ck_assert_str_eq(after, before);
	/* snapshots folded from the old index's answers are not trusted */
	ck_assert_int_eq(sql_count(ixp, "SELECT count(*) FROM snapshots"), 0);
	ck_assert_int_eq(sql_count(ixp, "SELECT count(*) FROM batches"), 300);
	/* nothing left beside it */
	char *tmp = path_in(dir, "index.rebuild.db");
	ck_assert_int_ne(access(tmp, F_OK), 0);
	free(after);

	/* an index of another format is replaced: the store opens again */
	sql(ixp, "UPDATE meta SET value = 3 WHERE key = 'format'");
	evs_store *s;
	ck_assert_int_eq(evs_open(&s, dir, &o), EVS_ECORRUPT);
	ck_assert_int_eq(evs_rebuild_index(dir, &o, NULL, NULL), 0);
	after = dump_of(dir);
	ck_assert_str_eq(after, before);
	free(after);

	/* what an interrupted rebuild left is not trusted */
	ck_assert_int_eq(tu_write_file(tmp, "not a database, not at all", 26), 0);
	ck_assert_int_eq(evs_rebuild_index(dir, NULL, NULL, NULL), 0);
	ck_assert_int_ne(access(tmp, F_OK), 0);
	after = dump_of(dir);
	ck_assert_str_eq(after, before);
	free(after);
	free(tmp);
	free(before);
	free(ixp);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_rebuild_refused)
{
	char *dir = tu_mkdtemp(), *ixp = path_in(dir, "index.db"), *before, *after;
	char *missing = path_in(dir, "nowhere");
	evs_store *s;

	before = fill(dir);
	/* a writer holds it: refused, nothing changed */
	s = tu_open(dir, 16384, 0);
	ck_assert_int_eq(evs_rebuild_index(dir, NULL, NULL, NULL), EVS_ELOCKED);
	ck_assert_msg(strstr(evs_errmsg(), "stop it before rebuilding the index"), "%s",
		      evs_errmsg());
	after = tu_dump(s);
	ck_assert_str_eq(after, before);
	free(after);
	evs_close(s);

	ck_assert_int_eq(evs_rebuild_index(NULL, NULL, NULL, NULL), EVS_EINVAL);
	/* an allocator missing a function is refused before anything changes
	 * (the store above was just used with the default one) */
	evs_allocator half = { NULL, NULL, NULL, NULL };
	ck_assert_int_eq(evs_set_allocator(&half), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_set_allocator: alloc, resize and release are all "
			 "needed");
	ck_assert_int_eq(evs_rebuild_index(missing, NULL, NULL, NULL), EVS_ENOTFOUND);
	ck_assert_int_ne(access(missing, F_OK), 0);
	evs_options o = EVS_OPTIONS_INIT;
	o.version = 99;
	ck_assert_int_eq(evs_rebuild_index(dir, &o, NULL, NULL), EVS_EINVAL);

	/* an index that is no database: named, with the way out */
	ck_assert_int_eq(tu_write_file(ixp, "garbage garbage garbage garbage", 31), 0);
	{
		char side[4300];
		snprintf(side, sizeof(side), "%s-wal", ixp);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", ixp);
		unlink(side);
	}
	ck_assert_int_eq(evs_rebuild_index(dir, NULL, NULL, NULL), EVS_ECORRUPT);
	ck_assert_msg(strstr(evs_errmsg(), "delete it: opening the store rebuilds it"), "%s",
		      evs_errmsg());
	unlink(ixp);
	after = dump_of(dir);
	ck_assert_str_eq(after, before);
	free(after);
	free(before);
	free(missing);
	free(ixp);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("reindex");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_rebuild_equals);
	tcase_add_test(tc, test_rebuild_refused);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
