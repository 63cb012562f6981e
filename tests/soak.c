/*
 * soak.c: the store under a steady load for a set time, checking that
 * nothing grows without bound.
 *
 * 16 threads run orders through the order decider (tools/orders.c: place,
 * add two items, pay, ship; durability sync, 1 MiB segments so rolls
 * happen), the five shipped projections run, and a query thread asks
 * point and top-N queries with min_position.  Once a second the process's
 * RSS, its open descriptors, the size of every SQLite WAL file of the
 * store and each projection's lag are sampled.  Bounded means: the second
 * half of the run stays within the first half's maximum plus a margin
 * (RSS + 25% + 16 MiB, plus STREAM_BYTES for each stream the second half
 * created, since the writer keeps every stream's head in memory;
 * descriptors + 8, segment files apart, which a
 * cache fills as the store grows: those at most EVS__SEG_FDS_KEPT plus
 * two per reader; WAL files under 64 MiB, the index checkpointing every
 * 8192 pages; projection lag + 50% + 5000 events, since a lag that grows
 * with time nearly doubles; not under sanitizers, EVS_SOAK_LAG=off), and
 * once the load stops every projection
 * catches up.  At the end
 * evs_verify, and `evstore verify` (the tool named by $EVSTORE), must be
 * clean, and the orders read model must hold one row per order placed.
 *
 * EVS_SOAK_SECONDS sets the time (default 60, the CI run; the long run is
 * 1800).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evstore/projection.h"
#include "orders.h"
#include "store.h"
#include "testutil.h"

#ifndef EVS_TEST_PROJECTIONS
#error "EVS_TEST_PROJECTIONS must name the projections directory"
#endif

#define THREADS 16
/* what one stream costs the writer in memory at most: its evs__head (40
 * bytes and the allocator's 8 to 16), its name (order-N, under 32 with the
 * allocator's), and up to 2 / 0.7 slots of 8 bytes in the heads table */
#define STREAM_BYTES 128

static const char *const projections[] = {
	"orders", "customers", "daily_revenue", "streams", "event_types",
};
#define NPROJ (sizeof(projections) / sizeof(projections[0]))

static evs_store *store;
static char *dir;
static atomic_bool stop;
static atomic_ulong orders_placed, commands, queries, failures;
static atomic_ulong last_position;

static void soak_fail(const char *what)
{
	fprintf(stderr, "soak: %s: %s\n", what, evs_errmsg());
	atomic_fetch_add(&failures, 1);
}

static int command(const char *stream, const char *text)
{
	evs_decider d;
	evs_handle_result r;
	json_t *c = json_loads(text, 0, NULL);
	int rc;

	if (!c)
		abort();
	orders_decider(&d);
	memset(&r, 0, sizeof(r));
	rc = evs_handle(store, &d, stream, c, NULL, &r);
	json_decref(c);
	if (rc != 0) {
		soak_fail(stream);
		return rc;
	}
	atomic_fetch_add(&commands, 1);
	if (r.last_position > atomic_load(&last_position))
		atomic_store(&last_position, r.last_position);
	return 0;
}

static void *orders_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;

	for (unsigned k = 0; !atomic_load(&stop); k++) {
		char stream[64], text[512];
		unsigned long id = (unsigned long)t * 100000000ul + k;
		snprintf(stream, sizeof(stream), "order-%lu", id);
		snprintf(text, sizeof(text), "{\"type\":\"PlaceOrder\",\"order_id\":\"%lu\","
			 "\"customer_id\":\"c-%u\",\"currency\":\"EUR\","
			 "\"at\":\"2026-03-%02uT10:00:00Z\"}", id, (t * 7 + k) % 97, k % 28 + 1);
		if (command(stream, text) != 0)
			return NULL;
		atomic_fetch_add(&orders_placed, 1);
		if (command(stream, "{\"type\":\"AddItem\",\"sku\":\"TEA-1\",\"qty\":2,"
				    "\"price\":450,\"at\":\"2026-03-01T10:00:00Z\"}") ||
		    command(stream, "{\"type\":\"AddItem\",\"sku\":\"MUG-2\",\"qty\":1,"
				    "\"price\":899,\"at\":\"2026-03-01T10:00:00Z\"}"))
			return NULL;
		snprintf(text, sizeof(text), "{\"type\":\"Pay\",\"amount\":1799,"
			 "\"at\":\"2026-03-%02uT11:00:00Z\"}", k % 28 + 1);
		if (command(stream, text) ||
		    command(stream, "{\"type\":\"Ship\",\"at\":\"2026-03-01T12:00:00Z\"}"))
			return NULL;
	}
	return NULL;
}

static void *query_thread(void *arg)
{
	(void)arg;
	for (unsigned k = 0; !atomic_load(&stop); k++) {
		evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
		json_t *rows = NULL, *p;
		const char *proj, *q;
		char id[64];

		qo.min_position = atomic_load(&last_position);
		qo.timeout_ms = 30000;
		switch (k % 4) {
		case 0:
			snprintf(id, sizeof(id), "%lu", (unsigned long)(k % THREADS) * 100000000ul);
			p = json_pack("{s:s}", "id", id);
			proj = "orders", q = "by_id";
			break;
		case 1:
			p = json_pack("{s:i}", "limit", 10);
			proj = "orders", q = "recent";
			break;
		case 2:
			p = json_pack("{s:i}", "limit", 10);
			proj = "customers", q = "top";
			break;
		default:
			p = NULL;
			proj = "event_types", q = "all";
			break;
		}
		if (evs_query(store, proj, q, p, &qo, &rows, NULL) != 0)
			soak_fail(q);
		else
			atomic_fetch_add(&queries, 1);
		json_decref(rows);
		json_decref(p);
	}
	return NULL;
}

/* ---- the samples ---- */

typedef struct sample {
	long rss_kib, fds, seg_fds, wal_kib;
	uint64_t lag;
} sample;

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* Open descriptors: segment files apart (a bounded cache of them fills as
 * the store grows, see EVS__SEG_FDS_KEPT), everything else in *other. */
static long count_fds(long *other)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long seg = 0;

	*other = 0;
	while (d && (e = readdir(d)) != NULL) {
		char link[300], target[4200];
		ssize_t n;
		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		if (n > 4 && strcmp(target + n - 4, ".seg") == 0)
			seg++;
		else
			(*other)++;
	}
	if (d)
		closedir(d);
	(*other)--; /* the directory's own */
	return seg;
}

static long wal_kib_in(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	long most = 0;

	while (d && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		char p[8192];
		struct stat st;
		if (n < 4 || strcmp(e->d_name + n - 4, "-wal") != 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (stat(p, &st) == 0 && st.st_size / 1024 > most)
			most = (long)(st.st_size / 1024);
	}
	if (d)
		closedir(d);
	return most;
}

static sample take(void)
{
	sample s = { rss_kib(), 0, 0, wal_kib_in(dir), 0 };
	char rm[4200];

	s.seg_fds = count_fds(&s.fds);
	snprintf(rm, sizeof(rm), "%s/readmodels", dir);
	long w = wal_kib_in(rm);
	if (w > s.wal_kib)
		s.wal_kib = w;
	for (size_t i = 0; i < NPROJ; i++) {
		evs_projection_status st;
		if (evs_projection_status_get(&st, store, projections[i]) == 0 && st.lag > s.lag)
			s.lag = st.lag;
	}
	return s;
}

static void max_into(sample *m, const sample *s)
{
	if (s->rss_kib > m->rss_kib)
		m->rss_kib = s->rss_kib;
	if (s->fds > m->fds)
		m->fds = s->fds;
	if (s->seg_fds > m->seg_fds)
		m->seg_fds = s->seg_fds;
	if (s->wal_kib > m->wal_kib)
		m->wal_kib = s->wal_kib;
	if (s->lag > m->lag)
		m->lag = s->lag;
}

int main(void)
{
	const char *env = getenv("EVS_SOAK_SECONDS");
	int seconds = env && atoi(env) > 0 ? atoi(env) : 60;
	evs_options o = EVS_OPTIONS_INIT;
	pthread_t th[THREADS + 1];
	sample first = { 0, 0, 0, 0, 0 }, second = { 0, 0, 0, 0, 0 };
	int bad = 0;

	dir = tu_mkdtemp();
	o.create = 1;
	o.segment_size = 1u << 20;
	if (evs_open(&store, dir, &o) != 0) {
		fprintf(stderr, "soak: open: %s\n", evs_errmsg());
		return 1;
	}
	for (size_t i = 0; i < NPROJ; i++) {
		char file[4200];
		snprintf(file, sizeof(file), "%s/%s.sql", EVS_TEST_PROJECTIONS, projections[i]);
		if (evs_projection_load(store, file, NULL, NULL) != 0) {
			fprintf(stderr, "soak: load %s: %s\n", file, evs_errmsg());
			return 1;
		}
	}
	if (evs_projections_start(store) != 0) {
		fprintf(stderr, "soak: start: %s\n", evs_errmsg());
		return 1;
	}
	for (uintptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, orders_thread, (void *)t);
	pthread_create(&th[THREADS], NULL, query_thread, NULL);

	/* the first seconds warm up (caches, the first segments): not sampled */
	int warm = seconds / 10 > 2 ? seconds / 10 : 2;
	unsigned long orders_at_half = 0;
	for (int sec = 0; sec < seconds; sec++) {
		sleep(1);
		if (sec < warm)
			continue;
		sample s = take();
		bool in_first = sec < (seconds + warm) / 2;
		max_into(in_first ? &first : &second, &s);
		if (in_first)
			orders_at_half = atomic_load(&orders_placed);
	}
	atomic_store(&stop, true);
	for (int t = 0; t <= THREADS; t++)
		pthread_join(th[t], NULL);

	/* caught up once the load stops */
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	json_t *rows = NULL;
	uint64_t at = 0;
	qo.min_position = atomic_load(&last_position);
	qo.timeout_ms = 60000;
	for (size_t i = 0; i < NPROJ; i++) {
		json_t *r = NULL;
		if (evs_query_sql(store, projections[i], "SELECT 1", NULL, &qo, &r, NULL) != 0) {
			fprintf(stderr, "soak: %s did not catch up: %s\n", projections[i],
				evs_errmsg());
			bad = 1;
		}
		json_decref(r);
	}
	if (evs_query_sql(store, "orders", "SELECT count(*) AS n FROM orders", NULL, &qo, &rows,
			  &at) != 0 ||
	    (unsigned long)json_integer_value(json_object_get(json_array_get(rows, 0), "n")) !=
		    atomic_load(&orders_placed)) {
		fprintf(stderr, "soak: the orders read model has %lld rows, %lu orders were placed\n",
			(long long)json_integer_value(json_object_get(json_array_get(rows, 0), "n")),
			atomic_load(&orders_placed));
		bad = 1;
	}
	json_decref(rows);
	evs_stats st;
	evs_stats_get(&st, store);
	if (evs_verify(store, NULL, NULL, NULL) != 0) {
		fprintf(stderr, "soak: evs_verify: %s\n", evs_errmsg());
		bad = 1;
	}
	evs_close(store);
	const char *tool = getenv("EVSTORE");
	if (tool && *tool) {
		char cmd[8192];
		snprintf(cmd, sizeof(cmd), "'%s' verify --quiet '%s' >/dev/null", tool, dir);
		int vs = system(cmd);
		if (!WIFEXITED(vs) || WEXITSTATUS(vs) != 0) {
			fprintf(stderr, "soak: evstore verify exited %d\n", WEXITSTATUS(vs));
			bad = 1;
		}
	}

	printf("soak: %d s, 16 threads: %lu orders, %lu commands, %llu events, %llu segments, "
	       "%lu queries, %lu failures\n", seconds, atomic_load(&orders_placed),
	       atomic_load(&commands), (unsigned long long)st.head_position,
	       (unsigned long long)st.segments, atomic_load(&queries), atomic_load(&failures));
	printf("soak: streams created in the second half: %lu\n",
	       atomic_load(&orders_placed) - orders_at_half);
	printf("soak: first half / second half maxima: RSS %ld / %ld KiB, descriptors %ld / %ld "
	       "(and segment files %ld / %ld), largest WAL %ld / %ld KiB, projection lag %llu / "
	       "%llu events\n", first.rss_kib, second.rss_kib, first.fds, second.fds,
	       first.seg_fds, second.seg_fds, first.wal_kib,
	       second.wal_kib, (unsigned long long)first.lag, (unsigned long long)second.lag);
	if (atomic_load(&failures)) {
		fprintf(stderr, "soak: %lu calls failed\n", atomic_load(&failures));
		bad = 1;
	}
	/* Each order is a new stream, and the writer keeps every stream's
	 * head in memory (the design: memory grows with streams, not
	 * events): a 40-byte head, its name and its share of the hash table,
	 * under STREAM_BYTES.  The second half may grow by that much for
	 * each order it placed. */
	long streams_kib = (long)((atomic_load(&orders_placed) - orders_at_half) *
				  STREAM_BYTES / 1024);
	if (second.rss_kib > first.rss_kib + first.rss_kib / 4 + 16 * 1024 + streams_kib) {
		fprintf(stderr, "soak: RSS grew from %ld to %ld KiB (allowed: %ld KiB more for "
			"the %lu new streams)\n", first.rss_kib, second.rss_kib, streams_kib,
			atomic_load(&orders_placed) - orders_at_half);
		bad = 1;
	}
	if (second.fds > first.fds + 8) {
		fprintf(stderr, "soak: descriptors grew from %ld to %ld\n", first.fds, second.fds);
		bad = 1;
	}
	/* segment files: the kept ones, and one or two per reader at work */
	if (second.seg_fds > (long)(EVS__SEG_FDS_KEPT + 2 * (THREADS + NPROJ + 1))) {
		fprintf(stderr, "soak: %ld segment files open\n", second.seg_fds);
		bad = 1;
	}
	if (first.wal_kib > 64 * 1024 || second.wal_kib > 64 * 1024) {
		fprintf(stderr, "soak: a WAL file reached %ld KiB\n",
			first.wal_kib > second.wal_kib ? first.wal_kib : second.wal_kib);
		bad = 1;
	}
	/* lag bounded: a projection slower than the appends has a lag that
	 * grows with time, and its second half's maximum near twice the
	 * first's.  Not in sanitizer builds (EVS_SOAK_LAG=off): they slow the
	 * workers' SQLite far more than the writer, and how far they fall
	 * behind then depends on what else the machine runs; the catch-up
	 * at the end is checked there too. */
	const char *lag_env = getenv("EVS_SOAK_LAG");
	bool check_lag = !lag_env || strcmp(lag_env, "off") != 0;
	if (check_lag && second.lag > first.lag + first.lag / 2 + 5000) {
		fprintf(stderr, "soak: projection lag reached %llu events\n",
			(unsigned long long)second.lag);
		bad = 1;
	}
	tu_rmdir(dir);
	free(dir);
	return bad;
}
