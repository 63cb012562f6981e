/*
 * test_crash.c: kill -9 in the middle of appends.
 *
 * A child process appends with 8 threads (single-event and multi-event
 * appends, streams shared between threads and streams of their own,
 * durability sync, tiny segments so rolls happen) and records every
 * acknowledged event in a side file.  The parent kills it with SIGKILL at a
 * random moment, reopens the store and checks: every acknowledged event is
 * there with its stream, version, position, id and bytes; positions and
 * versions are dense; no event id appears twice; evs_verify is clean;
 * appending works again.  Then the next iteration appends on top.
 *
 * After each kill, `evstore verify` (the tool named by $EVSTORE) checks the
 * store read-only, as an operator would, before it is reopened.
 *
 * EVS_CRASH_ITERATIONS sets the number of kills (default 12).
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "testutil.h"

#define THREADS 8

/* One acknowledged event, as the child records it. */
typedef struct ack {
	uint64_t position;
	uint64_t version;
	char stream[24];
	uint8_t id[16];
	uint32_t thread, seq, k, round;
} ack;

static int side_fd;
static pthread_mutex_t side_mu = PTHREAD_MUTEX_INITIALIZER;
static evs_store *child_store;
static uint32_t round_no;

static void event_data(char *buf, size_t n, uint32_t round, uint32_t t, uint32_t seq,
		       uint32_t k)
{
	snprintf(buf, n, "{\"round\":%u,\"thread\":%u,\"seq\":%u,\"k\":%u,"
		 "\"pad\":\"abcdefghijklmnopqrstuvwxyz\"}", round, t, seq, k);
}

static void *child_thread(void *arg)
{
	uint32_t t = (uint32_t)(uintptr_t)arg;
	uint64_t own_version = 0;
	char own[24];

	snprintf(own, sizeof(own), "own%u-r%u", t, round_no);
	for (uint32_t seq = 0;; seq++) {
		char data[8][160];
		evs_new_event ev[8];
		uint8_t ids[8][16];
		uint32_t n = seq % 3 == 0 ? 8 : 1;
		bool shared = seq % 2 == 0;
		char stream[24];
		evs_append_result r;

		if (shared)
			snprintf(stream, sizeof(stream), "shared-%u", seq % 5);
		else
			snprintf(stream, sizeof(stream), "%s", own);
		for (uint32_t k = 0; k < n; k++) {
			event_data(data[k], sizeof(data[k]), round_no, t, seq, k);
			evs__uuid_v7(ids[k], evs__now_us());
			ev[k] = (evs_new_event){ "Crashed", data[k], NULL, ids[k], 0 };
		}
		int rc = evs_append(child_store, stream,
				    shared ? EVS_EXPECT_ANY : (int64_t)own_version, ev, n, &r);
		if (rc != 0) {
			fprintf(stderr, "child append failed: %s\n", evs_errmsg());
			_exit(3);
		}
		if (!shared)
			own_version = r.last_version;
		ack a[8];
		for (uint32_t k = 0; k < n; k++) {
			memset(&a[k], 0, sizeof(a[k]));
			a[k].position = r.first_position + k;
			a[k].version = r.first_version + k;
			snprintf(a[k].stream, sizeof(a[k].stream), "%s", stream);
			memcpy(a[k].id, ids[k], 16);
			a[k].thread = t;
			a[k].seq = seq;
			a[k].k = k;
			a[k].round = round_no;
		}
		pthread_mutex_lock(&side_mu);
		if (write(side_fd, a, n * sizeof(ack)) != (ssize_t)(n * sizeof(ack)))
			_exit(4);
		pthread_mutex_unlock(&side_mu);
	}
	return NULL;
}

static void child_main(const char *dir, const char *side)
{
	evs_options o = EVS_OPTIONS_INIT;
	pthread_t th[THREADS];

	o.create = 1;
	o.segment_size = 64 * 1024;
	if (evs_open(&child_store, dir, &o) != 0) {
		fprintf(stderr, "child open failed: %s\n", evs_errmsg());
		_exit(2);
	}
	side_fd = open(side, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (side_fd < 0)
		_exit(2);
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, child_thread, (void *)t);
	for (;;)
		pause();
}

typedef struct seen {
	evs__map ids;      /* id (as 32 hex chars) -> position, in .version */
	uint64_t next_position;
	evs__map versions; /* stream -> last version */
	int dup;
	char err[512];
} seen;

static int check_event(const evs_event *ev, void *ctx)
{
	seen *s = ctx;
	char hex[37];
	evs__head *h;

	if (ev->position != s->next_position && !s->err[0])
		snprintf(s->err, sizeof(s->err), "position %llu after %llu",
			 (unsigned long long)ev->position,
			 (unsigned long long)s->next_position - 1);
	s->next_position = ev->position + 1;
	h = evs__map_find(&s->versions, ev->stream, ev->stream_len, true);
	if (ev->version != h->version + 1 && !s->err[0])
		snprintf(s->err, sizeof(s->err), "stream %s version %llu after %llu", ev->stream,
			 (unsigned long long)ev->version, (unsigned long long)h->version);
	h->version = ev->version;
	evs_uuid_format(hex, ev->id);
	h = evs__map_find(&s->ids, hex, 36, true);
	if (h->version)
		s->dup++;
	h->version = ev->position;
	return 0;
}

typedef struct lookup {
	const ack *a;
	bool found;
	char data[160];
} lookup;

static int find_version(const evs_event *ev, void *ctx)
{
	lookup *l = ctx;

	l->found = ev->position == l->a->position && memcmp(ev->id, l->a->id, 16) == 0 &&
		   strcmp(ev->type, "Crashed") == 0 && strcmp(ev->data, l->data) == 0 &&
		   ev->metadata_len == 0;
	return 1;
}

START_TEST(test_kill9_loop)
{
	char *dir = tu_mkdtemp(), *store, *side;
	const char *env = getenv("EVS_CRASH_ITERATIONS");
	int iterations = env ? atoi(env) : 12;
	uint64_t total_checked = 0;
	int verified = 0;

	ck_assert_int_ge(asprintf(&store, "%s/store", dir), 0);
	ck_assert_int_ge(asprintf(&side, "%s/acks", dir), 0);
	srand((unsigned)time(NULL));
	for (int it = 0; it < iterations; it++) {
		round_no = (uint32_t)it;
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			child_main(store, side);
		/* let it run 30-250 ms, then kill it mid-flight */
		struct timespec ts = { 0, (30 + rand() % 220) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			      "child exited by itself (status %d)", status);
		/* A kill can cut the child's write of its acks short (the
		 * kernel stops a write to a file between pages for a fatal
		 * signal): drop a torn last record, or the next round's acks
		 * would be read out of step. */
		struct stat sst;
		if (stat(side, &sst) == 0 && sst.st_size % (off_t)sizeof(ack) != 0)
			ck_assert_int_eq(truncate(side, sst.st_size - sst.st_size % (off_t)sizeof(ack)),
					 0);

		/* The operator's check, before any writer has recovered the
		 * store: read-only, it must find the acknowledged log clean. */
		const char *tool = getenv("EVSTORE");
		if (tool && *tool) {
			char cmd[8192];
			snprintf(cmd, sizeof(cmd), "'%s' verify --quiet '%s' >/dev/null", tool, store);
			int vs = system(cmd);
			ck_assert_msg(WIFEXITED(vs) && WEXITSTATUS(vs) == 0,
				      "kill %d: evstore verify exited %d", it, WEXITSTATUS(vs));
			verified++;
		}

		evs_options o = EVS_OPTIONS_INIT;
		evs_store *s = NULL;
		o.segment_size = 64 * 1024;
		ck_assert_msg(evs_open(&s, store, &o) == 0, "reopen after kill %d: %s", it,
			      evs_errmsg());
		ck_assert_int_eq(evs_verify(s, NULL, NULL, NULL), 0);

		/* dense positions and versions, no duplicate id */
		seen sn;
		memset(&sn, 0, sizeof(sn));
		sn.next_position = 1;
		ck_assert_int_eq(evs_read_all(s, 1, 0, NULL, check_event, &sn), 0);
		ck_assert_msg(!sn.err[0], "after kill %d: %s", it, sn.err);
		ck_assert_int_eq(sn.dup, 0);

		/* every acknowledged event is there, as acknowledged */
		size_t size;
		char *acks = tu_read_file(side, &size);
		size_t n = acks ? size / sizeof(ack) : 0;
		for (size_t i = 0; i < n; i++) {
			const ack *a = (const ack *)acks + i;
			lookup l = { a, false, "" };
			event_data(l.data, sizeof(l.data), a->round, a->thread, a->seq, a->k);
			int rc = evs_read_stream(s, a->stream, a->version, EVS_FORWARD, 1,
						 find_version, &l);
			ck_assert_msg(rc == 0 && l.found,
				      "kill %d: acknowledged event %s@%llu (position %llu) lost",
				      it, a->stream, (unsigned long long)a->version,
				      (unsigned long long)a->position);
		}
		total_checked += n;
		free(acks);

		/* and appending works */
		evs_new_event ev = { "AfterCrash", "{}", NULL, NULL, 0 };
		evs_append_result r;
		ck_assert_int_eq(evs_append(s, "after-crash", EVS_EXPECT_ANY,
					    &ev, 1, &r), 0);
		ck_assert_uint_eq(r.first_position, sn.next_position);
		evs__map_free(&sn.ids);
		evs__map_free(&sn.versions);
		evs_close(s);
		/* the acks of the event appended here are not in the side file:
		 * the next child's positions simply follow */
	}
	ck_assert_uint_gt(total_checked, 0);
	printf("crash loop: %d kills, %llu acknowledged events checked, %d evstore verify runs\n",
	       iterations, (unsigned long long)total_checked, verified);
	free(store);
	free(side);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *su = suite_create("crash");
	TCase *tc = tcase_create("kill9");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_kill9_loop);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tu_run(crash_suite());
}
