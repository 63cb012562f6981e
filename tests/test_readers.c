/*
 * test_readers.c: readers in other processes.
 *
 * A writer process appends while a read-only handle in this process reads:
 * every event the writer had acknowledged before a read started must be
 * in that read (the index is written behind the log, so the reader has to
 * wait for it to catch up with the head the writer publishes in LOCK).
 * When the writer is killed with acknowledged events its indexer had not
 * written, a reader does not wait for it and does not serve a shorter log:
 * it recovers the store first, as the next writer would.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evstore/subscribe.h"
#include "testutil.h"

#define EVENTS 2000

static int last_position(const evs_event *ev, void *ctx)
{
	*(uint64_t *)ctx = ev->position;
	return 0;
}

static void writer_child(const char *dir, int fd, bool sync_each)
{
	evs_store *s = tu_open(dir, 64 * 1024, sync_each);

	if (!s)
		_exit(2);
	for (int i = 1; i <= EVENTS; i++) {
		char data[64];
		if (i == 100) {
			/* An unrelated descriptor of LOCK, opened and closed in
			 * the writer's own process: with POSIX record locks that
			 * close would drop the writer's lock (test_followers). */
			char lock[4200];
			snprintf(lock, sizeof(lock), "%s/LOCK", dir);
			int lfd = open(lock, O_RDONLY);
			if (lfd < 0)
				_exit(6);
			close(lfd);
		}
		snprintf(data, sizeof(data), "{\"i\":%d}", i);
		evs_new_event ev = { "Seen", data, NULL, NULL, 0 };
		evs_append_result r;
		if (evs_append(s, i % 2 ? "left-1" : "right-1", EVS_EXPECT_ANY, &ev, 1, &r) != 0)
			_exit(3);
		if (write(fd, &r.first_position, 8) != 8)
			_exit(4);
	}
	/* stay alive (holding the lock) until told to go */
	char c;
	if (read(0, &c, 1) < 0)
		_exit(5);
	evs_close(s);
	_exit(0);
}

/*
 * Creates a store in dir and forks a writer into it; *acks_fd reads the
 * positions it acknowledges, a byte on *go_fd lets it close and exit.
 */
static pid_t start_writer(const char *dir, bool sync_each, int *acks_fd, int *go_fd)
{
	int acks[2], go[2];
	evs_store *w = tu_open(dir, 64 * 1024, 0);

	ck_assert_ptr_nonnull(w);
	evs_close(w);
	ck_assert_int_eq(pipe(acks), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(acks[0]);
		close(go[1]);
		dup2(go[0], 0);
		writer_child(dir, acks[1], sync_each);
	}
	close(acks[1]);
	close(go[0]);
	*acks_fd = acks[0];
	*go_fd = go[1];
	return pid;
}

START_TEST(test_sees_acknowledged)
{
	char *dir = tu_mkdtemp();
	int acks_fd, go_fd;
	pid_t pid = start_writer(dir, _i, &acks_fd, &go_fd);

	evs_options o = EVS_OPTIONS_INIT;
	evs_store *r = NULL;
	o.read_only = 1;
	ck_assert_int_eq(evs_open(&r, dir, &o), 0);
	uint64_t acked;
	int reads = 0;
	while (read(acks_fd, &acked, 8) == 8) {
		/* every 7th ack, read: the acknowledged position must be there */
		if (acked % 7 && acked != EVENTS)
			continue;
		uint64_t seen = 0;
		ck_assert_int_eq(evs_read_all(r, acked, 1, NULL, last_position, &seen), 0);
		ck_assert_uint_eq(seen, acked);
		evs_stream_info info;
		ck_assert_int_eq(evs_stream_info_get(&info, r, acked % 2 ? "left-1" : "right-1"), 0);
		ck_assert_uint_ge(info.last_position, acked);
		reads++;
		if (acked == EVENTS)
			break;
	}
	ck_assert_int_gt(reads, EVENTS / 7 - 1);
	ck_assert_int_eq(write(go_fd, "x", 1), 1);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	int n = 0;
	ck_assert_int_eq(evs_read_all(r, 1, 0, NULL, tu_count_cb, &n), 0);
	ck_assert_int_eq(n, EVENTS);
	evs_close(r);
	close(acks_fd);
	close(go_fd);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* The writer is killed: readers neither hang nor miss acknowledged events. */
START_TEST(test_dead_writer_no_wait)
{
	char *dir = tu_mkdtemp();
	int acks_fd, go_fd;
	evs_store *w;
	pid_t pid = start_writer(dir, false, &acks_fd, &go_fd);
	uint64_t acked = 0, p;
	while (acked < EVENTS && read(acks_fd, &p, 8) == 8)
		acked = p;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	evs_options o = EVS_OPTIONS_INIT;
	evs_store *r = NULL;
	o.read_only = 1;
	ck_assert_int_eq(evs_open(&r, dir, &o), 0);
	int n = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(evs_read_all(r, 1, 0, NULL, tu_count_cb, &n), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* not the 5 s wait for a live writer (a generous bound, not timing) */
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 4);
	ck_assert_int_eq(n, EVENTS);
	evs_close(r);
	/* a writer's open recovers every acknowledged event */
	w = tu_open(dir, 64 * 1024, 0);
	ck_assert_ptr_nonnull(w);
	n = 0;
	ck_assert_int_eq(evs_read_all(w, 1, 0, NULL, tu_count_cb, &n), 0);
	ck_assert_int_eq(n, EVENTS);
	evs_close(w);
	close(acks_fd);
	close(go_fd);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A follower process: a live subscription from the start (or, poll, a
 * reader re-reading the whole log), which must see positions 1..EVENTS in
 * order with nothing missing before any position it saw.  Exits 0 when it
 * did within a minute. */
typedef struct follow {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t next;
	bool bad;
} follow;

static int follow_cb(const evs_event *ev, void *ctx)
{
	follow *f = ctx;

	pthread_mutex_lock(&f->mu);
	if (ev->position != f->next)
		f->bad = true;
	f->next = ev->position + 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static int dense_cb(const evs_event *ev, void *ctx)
{
	uint64_t *next = ctx;

	if (ev->position != *next)
		return 1;
	(*next)++;
	return 0;
}

static void follower_child(const char *dir, bool poll)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *r = NULL;
	struct timespec end;

	o.read_only = 1;
	if (evs_open(&r, dir, &o) != 0)
		_exit(2);
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 60;
	if (poll) {
		uint64_t seen = 0;
		while (seen < EVENTS) {
			uint64_t next = 1;
			if (evs_read_all(r, 1, 0, NULL, dense_cb, &next) != 0)
				_exit(3); /* a gap stops the read with 1: an error */
			if (next - 1 < seen)
				_exit(4); /* went backwards */
			seen = next - 1;
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			if (now.tv_sec > end.tv_sec)
				_exit(5);
		}
		evs_close(r);
		_exit(0);
	}
	follow f = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, false };
	evs_subscribe_options so = EVS_SUBSCRIBE_OPTIONS_INIT;
	evs_subscription *sub;
	so.poll_ms = 5;
	if (evs_subscribe(&sub, r, &so, follow_cb, &f) != 0)
		_exit(6);
	pthread_mutex_lock(&f.mu);
	while (f.next <= EVENTS && !f.bad)
		if (pthread_cond_timedwait(&f.cv, &f.mu, &end) != 0)
			break;
	bool ok = f.next == EVENTS + 1 && !f.bad;
	pthread_mutex_unlock(&f.mu);
	if (evs_subscription_stop(sub) != 0)
		_exit(7);
	evs_close(r);
	_exit(ok ? 0 : 8);
}

/* Another process tries to open the store for writing: 0 if refused. */
static int second_writer(const char *dir)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		evs_options o = EVS_OPTIONS_INIT;
		evs_store *w = NULL;
		_exit(evs_open(&w, dir, &o) == EVS_ELOCKED ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

/*
 * Reader processes follow a writer process live: two subscriptions and two
 * readers re-reading the log each see every position in order, never one
 * before all smaller ones.  A second writer process is refused while the
 * writer runs, also after the writer opened and closed another descriptor
 * of LOCK (at its 100th append), and accepted once it has gone.
 */
START_TEST(test_followers)
{
	char *dir = tu_mkdtemp();
	int acks_fd, go_fd;
	pid_t followers[4];

	{
		evs_store *w = tu_open(dir, 64 * 1024, 0);
		ck_assert_ptr_nonnull(w);
		evs_close(w);
	}
	for (int i = 0; i < 4; i++) {
		followers[i] = fork();
		ck_assert_int_ge(followers[i], 0);
		if (followers[i] == 0)
			follower_child(dir, i >= 2);
	}
	pid_t pid = start_writer(dir, true, &acks_fd, &go_fd);
	uint64_t p = 0;
	while (p < 200 && read(acks_fd, &p, 8) == 8)
		;
	ck_assert_uint_ge(p, 200);
	ck_assert_int_eq(second_writer(dir), 0);
	while (p < EVENTS && read(acks_fd, &p, 8) == 8)
		;
	ck_assert_uint_eq(p, EVENTS);
	for (int i = 0; i < 4; i++) {
		int status;
		ck_assert_int_eq(waitpid(followers[i], &status, 0), followers[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "follower %d (%s): status %d", i, i >= 2 ? "re-reading" : "subscribed",
			      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	ck_assert_int_eq(second_writer(dir), 0);
	ck_assert_int_eq(write(go_fd, "x", 1), 1);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(second_writer(dir), 1); /* the writer is gone: it opens */
	close(acks_fd);
	close(go_fd);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static Suite *readers_suite(void)
{
	Suite *su = suite_create("readers");
	TCase *tc = tcase_create("processes");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_sees_acknowledged, 0, 2);
	tcase_add_test(tc, test_dead_writer_no_wait);
	tcase_add_test(tc, test_followers);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tu_run(readers_suite());
}
