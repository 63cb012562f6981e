/*
 * util.c: memory, clocks, UUIDs, names.  The allocation functions are the
 * one place the library allocates through, so an allocator hook or an
 * out-of-memory test has a single point to hold.
 */
#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "jsoncheck.h"

/* The allocator (evs_set_allocator); NULL functions: the C library's. */
static evs_allocator alloc;

void *evs__malloc(size_t n)
{
	n = n ? n : 1;
	return alloc.alloc ? alloc.alloc(n, alloc.ctx) : malloc(n);
}

void *evs__calloc(size_t n, size_t size)
{
	void *p;

	n = n ? n : 1;
	size = size ? size : 1;
	if (!alloc.alloc)
		return calloc(n, size);
	if (size && n > SIZE_MAX / size)
		return NULL;
	if ((p = alloc.alloc(n * size, alloc.ctx)))
		memset(p, 0, n * size);
	return p;
}

void *evs__realloc(void *p, size_t n)
{
	n = n ? n : 1;
	return alloc.resize ? alloc.resize(p, n, alloc.ctx) : realloc(p, n);
}

char *evs__strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = evs__malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

void evs__free(void *p)
{
	if (alloc.release)
		alloc.release(p, alloc.ctx);
	else
		free(p);
}

/*
 * SQLite asks for the size of its allocations, so each one it gets
 * carries its size in a header of 16 bytes (keeping the alignment).
 */
#define SQL_HDR 16

static void *sql_malloc(int n)
{
	uint8_t *p = evs__malloc((size_t)n + SQL_HDR);

	if (!p)
		return NULL;
	memcpy(p, &(size_t){ (size_t)n }, sizeof(size_t));
	return p + SQL_HDR;
}

static void sql_free(void *p)
{
	if (p)
		evs__free((uint8_t *)p - SQL_HDR);
}

static void *sql_realloc(void *p, int n)
{
	uint8_t *q = evs__realloc((uint8_t *)p - SQL_HDR, (size_t)n + SQL_HDR);

	if (!q)
		return NULL;
	memcpy(q, &(size_t){ (size_t)n }, sizeof(size_t));
	return q + SQL_HDR;
}

static int sql_size(void *p)
{
	size_t n;

	memcpy(&n, (uint8_t *)p - SQL_HDR, sizeof(n));
	return (int)n;
}

static int sql_roundup(int n)
{
	return (n + 7) & ~7;
}

static int sql_init(void *ctx)
{
	(void)ctx;
	return SQLITE_OK;
}

static void sql_shutdown(void *ctx)
{
	(void)ctx;
}

static void *json_malloc(size_t n)
{
	return evs__malloc(n);
}

static void json_free(void *p)
{
	evs__free(p);
}

/*
 * json_dumps(j, JSON_COMPACT) that never hands back malformed text: the
 * out-of-memory sweep caught jansson 2.14 returning text with a key cut
 * out when an allocation failed part way.  The text is checked (objects
 * by the JSON checker, anything else parsed again) and NULL returned, as
 * for no memory, when it is not what it should be.  Free with jansson's
 * free function.
 */
char *evs__json_dumps(const json_t *j)
{
	char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_free_t jfree;
	size_t off;
	bool ok;

	if (!t)
		return NULL;
	if (json_is_object(j)) {
		ok = evs__json_check_object(t, strlen(t), &off) == 0;
	} else {
		json_t *back = json_loads(t, JSON_DECODE_ANY, NULL);
		ok = back != NULL;
		json_decref(back);
	}
	if (ok)
		return t;
	json_get_alloc_funcs(NULL, &jfree);
	jfree(t);
	return NULL;
}

bool evs__json_nomem(const char *text, size_t len, const json_error_t *e)
{
	size_t off;

	return json_error_code(e) == json_error_out_of_memory ||
	       evs__json_check_object(text, len, &off) == 0;
}

int evs_set_allocator(const evs_allocator *a)
{
	static const sqlite3_mem_methods sql = {
		sql_malloc, sql_free, sql_realloc, sql_size, sql_roundup, sql_init,
		sql_shutdown, NULL,
	};
	evs_allocator none = { NULL, NULL, NULL, NULL };

	evs__err_clear();
	if (a && (!a->alloc || !a->resize || !a->release))
		return evs__err(EVS_EINVAL, "evs_set_allocator: alloc, resize and release are all "
				"needed");
	sqlite3_shutdown();
	alloc = a ? *a : none;
	if (a) {
		if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sql) != SQLITE_OK) {
			alloc = none;
			return evs__err(EVS_EINVAL, "evs_set_allocator: SQLite refused it");
		}
		json_set_alloc_funcs(json_malloc, json_free);
	} else {
		/* SQLite's own again: the one it was built with */
		sqlite3_config(SQLITE_CONFIG_MALLOC, &(sqlite3_mem_methods){ 0 });
		json_set_alloc_funcs(malloc, free);
	}
	return 0;
}

void evs_free(void *p)
{
	evs__free(p);
}

void evs__unlink_db(const char *path)
{
	char side[4300];

	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
}

const char *evs_version(void)
{
	return EVS_VERSION_STRING;
}

int64_t evs__now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t evs__monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Random bits for UUIDs: getrandom once per thread for a seed, then a
 * xorshift generator, so the append path makes no system call per id.
 * Uniqueness comes from 74 random bits per millisecond, not from secrecy.
 */
static uint64_t rand64(void)
{
	static _Thread_local uint64_t s[2];

	if (s[0] == 0 && s[1] == 0) {
		if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
			s[0] = (uint64_t)evs__monotonic_ns() ^ (uint64_t)(uintptr_t)&s;
			s[1] = (uint64_t)evs__now_us() * 0x9E3779B97F4A7C15ull;
		}
		s[0] |= 1;
	}
	/* xorshift128+ */
	uint64_t x = s[0], y = s[1];
	s[0] = y;
	x ^= x << 23;
	s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
	return s[1] + y;
}

void evs__uuid_v7(uint8_t out[16], int64_t now_us)
{
	uint64_t ms = (uint64_t)(now_us / 1000);
	uint64_t r1 = rand64(), r2 = rand64();

	for (int i = 0; i < 6; i++)
		out[i] = (uint8_t)(ms >> (40 - 8 * i));
	out[6] = (uint8_t)(0x70 | ((r1 >> 8) & 0x0f));
	out[7] = (uint8_t)r1;
	out[8] = (uint8_t)(0x80 | ((r1 >> 16) & 0x3f));
	for (int i = 9; i < 16; i++)
		out[i] = (uint8_t)(r2 >> (8 * (i - 9)));
}

/* The next version 7 id after `id`: +1 over the bits that are neither
 * version nor variant (the random tail, then rand_a, then the time). */
static void uuid_v7_inc(uint8_t id[16])
{
	for (int i = 15; i >= 9; i--)
		if (++id[i] != 0)
			return;
	if ((id[8] & 0x3f) != 0x3f) {
		id[8]++;
		return;
	}
	id[8] &= 0xc0;
	if (++id[7] != 0)
		return;
	if ((id[6] & 0x0f) != 0x0f) {
		id[6]++;
		return;
	}
	id[6] &= 0xf0;
	for (int i = 5; i >= 0; i--)
		if (++id[i] != 0)
			return;
}

/*
 * n ids, each after the previous and after every id this process made
 * before (a random id of the current millisecond, or one past the last if
 * that is not later): the index keeps ids that come in order as one range
 * per batch (index.c).
 */
void evs__uuid_v7_seq(uint8_t *out, size_t n, int64_t now_us)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static uint8_t last[16];
	uint8_t id[16];

	if (n == 0)
		return;
	evs__uuid_v7(id, now_us);
	pthread_mutex_lock(&mu);
	if (memcmp(id, last, 16) <= 0) {
		memcpy(id, last, 16);
		uuid_v7_inc(id);
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(out + 16 * i, id, 16);
		if (i + 1 < n)
			uuid_v7_inc(id);
	}
	memcpy(last, id, 16);
	pthread_mutex_unlock(&mu);
}

size_t evs__id_hash(const uint8_t id[16])
{
	/* Every input bit must reach the low bits the table uses: ids may
	 * differ only in a few bytes anywhere (a counter in the timestamp
	 * of a version 7 id).  MurmurHash3's finaliser does that. */
	uint64_t h = evs__get64(id) ^ (evs__get64(id + 8) * 0x9E3779B97F4A7C15ull);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (size_t)h;
}

void evs_uuid_format(char out[37], const uint8_t id[16])
{
	static const char hex[] = "0123456789abcdef";
	int j = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[id[i] >> 4];
		out[j++] = hex[id[i] & 15];
	}
	out[j] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int evs_uuid_parse(uint8_t out[16], const char *text)
{
	uint8_t id[16];
	int j = 0;

	if (!text || strlen(text) != 36)
		return evs__err(EVS_EINVAL, "invalid UUID '%.64s': expected 8-4-4-4-12 hex digits",
				text ? text : "(null)");
	for (int i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				return evs__err(EVS_EINVAL, "invalid UUID '%s': expected '-' at %d", text, i);
			i++;
			continue;
		}
		int hi = hexval(text[i]), lo = hexval(text[i + 1]);
		if (hi < 0 || lo < 0)
			return evs__err(EVS_EINVAL, "invalid UUID '%s': not a hex digit at %d", text,
					hi < 0 ? i : i + 1);
		id[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	memcpy(out, id, 16);
	return 0;
}

size_t evs_category(char *out, size_t size, const char *stream)
{
	const char *dash = strchr(stream, '-');
	size_t n = dash ? (size_t)(dash - stream) : strlen(stream);

	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(out, stream, c);
		out[c] = '\0';
	}
	return n;
}

int evs__check_stream_name(const char *stream, size_t *len_out)
{
	size_t n;

	if (!stream)
		return evs__err(EVS_EINVAL, "invalid stream name: NULL");
	if (!*stream)
		return evs__err(EVS_EINVAL, "invalid stream name: empty");
	n = strnlen(stream, EVS_MAX_STREAM_LEN + 1);
	if (n > EVS_MAX_STREAM_LEN)
		return evs__err(EVS_EINVAL, "invalid stream name '%.40s...': longer than %d bytes",
				stream, EVS_MAX_STREAM_LEN);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)stream[i];
		/* C0, DEL, and C1 (U+0080..U+009F, encoded C2 80..C2 9F) */
		if (c < 0x20 || c == 0x7f ||
		    (c == 0xc2 && i + 1 < n && (unsigned char)stream[i + 1] >= 0x80 &&
		     (unsigned char)stream[i + 1] <= 0x9f))
			return evs__err(EVS_EINVAL,
					"invalid stream name: control character at byte %zu", i);
	}
	if (evs__utf8_check(stream, n) != 0)
		return evs__err(EVS_EINVAL, "invalid stream name: not valid UTF-8");
	*len_out = n;
	return 0;
}

int evs__check_type_name(const char *type, size_t *len_out)
{
	size_t n;

	if (!type || !*type)
		return evs__err(EVS_EINVAL, "invalid event type: empty");
	n = strnlen(type, EVS_MAX_TYPE_LEN + 1);
	if (n > EVS_MAX_TYPE_LEN)
		return evs__err(EVS_EINVAL, "invalid event type '%.40s...': longer than %d bytes",
				type, EVS_MAX_TYPE_LEN);
	for (size_t i = 0; i < n; i++) {
		char c = type[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' || c == '-'))
			return evs__err(EVS_EINVAL,
					"invalid event type '%.255s': character %zu is not one of [A-Za-z0-9_.:-]",
					type, i);
	}
	*len_out = n;
	return 0;
}

int evs__hex4(const char *s, size_t n)
{
	int v = 0;

	if (n < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}
