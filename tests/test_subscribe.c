/*
 * test_subscribe.c: catch-up subscriptions: history then live events with
 * no gap and no duplicate while four threads append, filters, a callback
 * that stops, a read-only handle following a writer, and bad arguments.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

typedef struct seen {
	uint64_t *pos;
	size_t n, cap;
	size_t stop_after;      /* return 1 on this many events (0: never) */
} seen;

static int collect(const evs_event *ev, void *ctx)
{
	seen *w = ctx;

	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 256;
		w->pos = realloc(w->pos, w->cap * sizeof(*w->pos));
		ck_assert_ptr_nonnull(w->pos);
	}
	w->pos[w->n++] = ev->position;
	return w->stop_after && w->n == w->stop_after;
}

/* Waits (up to 10 s, a bound for failure only) until the subscription has
 * looked at every position up to `head`. */
static void wait_position(evs_subscription *sub, uint64_t head)
{
	struct timespec nap = { 0, 1000000 };

	for (int i = 0; i < 10000 && evs_subscription_position(sub) <= head; i++)
		nanosleep(&nap, NULL);
	ck_assert_uint_gt(evs_subscription_position(sub), head);
}

static void append_one(evs_store *s, const char *stream, const char *type)
{
	evs_new_event ev = { type, "{\"x\":1}", NULL, NULL, 1 };
	ck_assert_int_eq(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL), 0);
}

static uint64_t head_of(evs_store *s)
{
	evs_stats st;
	ck_assert_int_eq(evs_stats_get(&st, s), 0);
	return st.head_position;
}

#define WRITERS 4
#define PER_WRITER 200

typedef struct writer {
	evs_store *s;
	int k;
} writer;

static void *write_main(void *arg)
{
	writer *w = arg;
	char stream[32];

	snprintf(stream, sizeof(stream), "w%d-1", w->k);
	for (int i = 0; i < PER_WRITER; i++)
		append_one(w->s, stream, "Written");
	return NULL;
}

START_TEST(test_history_then_live)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	evs_subscription *sub;
	seen w = { NULL, 0, 0, 0 };
	pthread_t th[WRITERS];
	writer wr[WRITERS];
	uint64_t head;

	for (int i = 0; i < 50; i++)
		append_one(s, "old-1", "Old");
	ck_assert_int_eq(evs_subscribe(&sub, s, NULL, collect, &w), 0);
	for (int k = 0; k < WRITERS; k++) {
		wr[k] = (writer){ s, k };
		ck_assert_int_eq(pthread_create(&th[k], NULL, write_main, &wr[k]), 0);
	}
	for (int k = 0; k < WRITERS; k++)
		pthread_join(th[k], NULL);
	head = head_of(s);
	ck_assert_uint_eq(head, 50 + WRITERS * PER_WRITER);
	wait_position(sub, head);
	/* and once more after a quiet spell: live again */
	append_one(s, "late-1", "Late");
	wait_position(sub, head + 1);
	ck_assert_int_eq(evs_subscription_stop(sub), 0);
	ck_assert_uint_eq(w.n, head + 1);
	for (size_t i = 0; i < w.n; i++)
		ck_assert_uint_eq(w.pos[i], i + 1);
	free(w.pos);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A damaged batch of an older segment (which open does not re-read) ends
 * the subscription: evs_subscription_error says so from another thread,
 * the events before it were delivered, and stop returns the same error. */
START_TEST(test_read_error_ends_it)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 16384, 0);
	evs_subscription *sub;
	seen w = { NULL, 0, 0, 0 };

	for (int i = 0; i < 600; i++)
		append_one(s, "a-1", "Added");
	evs_close(s);
	ck_assert_uint_gt(tu_segment_count(dir), 2);
	tu_damage_segment(dir, 1, 4000);
	s = tu_open(dir, 16384, 0);
	ck_assert_int_eq(evs_subscribe(&sub, s, NULL, collect, &w), 0);
	struct timespec nap = { 0, 1000000 };
	for (int i = 0; i < 10000 && !evs_subscription_error(sub); i++)
		nanosleep(&nap, NULL);
	ck_assert_int_eq(evs_subscription_error(sub), EVS_ECORRUPT);
	ck_assert_uint_gt(w.n, 0);
	ck_assert_uint_lt(w.n, 600);
	for (size_t i = 0; i < w.n; i++)
		ck_assert_uint_eq(w.pos[i], i + 1);
	ck_assert_int_eq(evs_subscription_stop(sub), EVS_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(evs_errmsg(), ".seg"));
	ck_assert_int_eq(evs_subscription_error(NULL), 0);
	free(w.pos);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_filters_and_stop)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0);
	evs_subscribe_options o = EVS_SUBSCRIBE_OPTIONS_INIT;
	const char *types[] = { "B" };
	evs_subscription *sub;
	seen w = { NULL, 0, 0, 0 };

	/* positions: 1 a/A, 2 a/B, 3 b/B, 4 a/B, 5 a/A, ... */
	for (int i = 0; i < 20; i++)
		append_one(s, i % 3 == 2 ? "b-1" : "a-1", i % 4 == 0 ? "A" : "B");
	o.from = 3;
	o.filter.category = "a";
	o.filter.types = types;
	o.filter.ntypes = 1;
	ck_assert_int_eq(evs_subscribe(&sub, s, &o, collect, &w), 0);
	wait_position(sub, 20);
	append_one(s, "a-1", "B");  /* 21: passes */
	append_one(s, "b-1", "B");  /* 22: other category */
	wait_position(sub, 22);
	ck_assert_int_eq(evs_subscription_stop(sub), 0);
	/* expected: from 3 on, a-1 events of type B */
	uint64_t want[32];
	size_t nw = 0;
	for (int i = 2; i < 20; i++)
		if (i % 3 != 2 && i % 4 != 0)
			want[nw++] = (uint64_t)i + 1;
	want[nw++] = 21;
	ck_assert_uint_eq(w.n, nw);
	for (size_t i = 0; i < nw; i++)
		ck_assert_uint_eq(w.pos[i], want[i]);

	/* a callback that says stop gets nothing more */
	free(w.pos);
	memset(&w, 0, sizeof(w));
	w.stop_after = 5;
	ck_assert_int_eq(evs_subscribe(&sub, s, NULL, collect, &w), 0);
	struct timespec nap = { 0, 1000000 };
	for (int i = 0; i < 10000 && evs_subscription_position(sub) < 6; i++)
		nanosleep(&nap, NULL);
	ck_assert_uint_eq(evs_subscription_position(sub), 6);
	append_one(s, "a-1", "A");
	ck_assert_int_eq(evs_subscription_stop(sub), 0);
	ck_assert_uint_eq(w.n, 5);
	free(w.pos);

	/* bad arguments */
	o.version = 2;
	ck_assert_int_eq(evs_subscribe(&sub, s, &o, collect, &w), EVS_EINVAL);
	ck_assert_str_eq(evs_errmsg(), "evs_subscribe: options version 2, expected 1");
	ck_assert_int_eq(evs_subscribe(&sub, s, NULL, NULL, &w), EVS_EINVAL);
	o.version = EVS_SUBSCRIBE_OPTIONS_VERSION;
	o.filter.types = NULL;
	ck_assert_int_eq(evs_subscribe(&sub, s, &o, collect, &w), EVS_EINVAL);
	ck_assert_int_eq(evs_subscription_stop(NULL), 0);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A read-only handle follows the writer through the head in LOCK. */
START_TEST(test_read_only_follower)
{
	char *dir = tu_mkdtemp();
	evs_store *s = tu_open(dir, 0, 0), *ro;
	evs_options o = EVS_OPTIONS_INIT;
	evs_subscribe_options so = EVS_SUBSCRIBE_OPTIONS_INIT;
	evs_subscription *sub;
	seen w = { NULL, 0, 0, 0 };

	append_one(s, "a-1", "A");
	o.read_only = 1;
	ck_assert_int_eq(evs_open(&ro, dir, &o), 0);
	so.poll_ms = 5;
	ck_assert_int_eq(evs_subscribe(&sub, ro, &so, collect, &w), 0);
	wait_position(sub, 1);
	for (int i = 0; i < 30; i++)
		append_one(s, "a-1", "A");
	wait_position(sub, 31);
	ck_assert_int_eq(evs_subscription_stop(sub), 0);
	ck_assert_uint_eq(w.n, 31);
	for (size_t i = 0; i < w.n; i++)
		ck_assert_uint_eq(w.pos[i], i + 1);
	free(w.pos);
	evs_close(ro);
	evs_close(s);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("subscribe");
	TCase *tc = tcase_create("subscribe");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_history_then_live);
	tcase_add_test(tc, test_filters_and_stop);
	tcase_add_test(tc, test_read_error_ends_it);
	tcase_add_test(tc, test_read_only_follower);
	suite_add_tcase(su, tc);
	return tu_run(su);
}
