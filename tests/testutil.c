/*
 * testutil.c: helpers shared by the test suites (see testutil.h).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

char *tu_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *path;

	if (asprintf(&path, "%s/evstore-test-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
		abort();
	if (!mkdtemp(path))
		abort();
	return path;
}

void tu_rmdir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d) {
		unlink(path);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char *p;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (asprintf(&p, "%s/%s", path, e->d_name) < 0)
			abort();
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			tu_rmdir(p);
		else
			unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(path);
}

char *tu_read_file(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		abort();
	buf[n] = 0;
	fclose(f);
	if (size)
		*size = (size_t)n;
	return buf;
}

int tu_write_file(const char *path, const void *buf, size_t size)
{
	FILE *f = fopen(path, "wb");

	if (!f)
		return -1;
	if (fwrite(buf, 1, size, f) != size) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **list_segments(const char *dir, size_t *n)
{
	char *logdir;
	DIR *d;
	struct dirent *e;
	char **v = NULL;

	*n = 0;
	if (asprintf(&logdir, "%s/log", dir) < 0)
		abort();
	d = opendir(logdir);
	while (d && (e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l < 4 || strcmp(e->d_name + l - 4, ".seg") != 0)
			continue;
		v = realloc(v, (*n + 1) * sizeof(*v));
		if (asprintf(&v[*n], "%s/%s", logdir, e->d_name) < 0)
			abort();
		(*n)++;
	}
	if (d)
		closedir(d);
	free(logdir);
	if (*n)
		qsort(v, *n, sizeof(*v), cmpstr);
	return v;
}

char *tu_segment_path(const char *dir, size_t i)
{
	size_t n;
	char **v = list_segments(dir, &n);
	char *r = i < n ? v[i] : NULL;

	for (size_t k = 0; k < n; k++)
		if (k != i)
			free(v[k]);
	free(v);
	return r;
}

void tu_damage_segment(const char *dir, size_t i, size_t off)
{
	char *seg = tu_segment_path(dir, i);
	size_t size;
	char *bytes;

	ck_assert_ptr_nonnull(seg);
	bytes = tu_read_file(seg, &size);
	ck_assert_ptr_nonnull(bytes);
	ck_assert_uint_lt(off, size);
	bytes[off] ^= 0x40;
	ck_assert_int_eq(tu_write_file(seg, bytes, size), 0);
	free(bytes);
	free(seg);
}

size_t tu_segment_count(const char *dir)
{
	size_t n;
	char **v = list_segments(dir, &n);

	for (size_t k = 0; k < n; k++)
		free(v[k]);
	free(v);
	return n;
}

evs_store *tu_open(const char *dir, uint64_t segment_size, int sync)
{
	evs_options o = EVS_OPTIONS_INIT;
	evs_store *s = NULL;

	o.create = 1;
	o.durability = sync ? EVS_DURABILITY_SYNC : EVS_DURABILITY_NONE;
	if (segment_size)
		o.segment_size = segment_size;
	if (evs_open(&s, dir, &o) != 0)
		return NULL;
	return s;
}

typedef struct dumpbuf {
	char *p;
	size_t len, cap;
} dumpbuf;

static int dump_event(const evs_event *ev, void *ctx)
{
	dumpbuf *b = ctx;
	char line[8192];
	int n = snprintf(line, sizeof(line), "%llu %s %llu %s %s %s\n",
			 (unsigned long long)ev->position, ev->stream,
			 (unsigned long long)ev->version, ev->type,
			 ev->metadata_len ? ev->metadata : "-", ev->data);

	if (b->len + (size_t)n + 1 > b->cap) {
		b->cap = (b->len + (size_t)n + 1) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, line, (size_t)n + 1);
	b->len += (size_t)n;
	return 0;
}

char *tu_dump(evs_store *s)
{
	dumpbuf b = { calloc(1, 1), 0, 1 };

	if (evs_read_all(s, 1, 0, NULL, dump_event, &b) != 0) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

int tu_count_cb(const evs_event *ev, void *ctx)
{
	(void)ev;
	(*(int *)ctx)++;
	return 0;
}

int tu_run(Suite *su)
{
	SRunner *sr = srunner_create(su);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

uint64_t tu_fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}
