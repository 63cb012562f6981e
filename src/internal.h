/*
 * internal.h: declarations shared between the library's own files.  Nothing
 * here is public API.  Names are evs__<module>_<verb>.
 *
 * Byte order: every integer on disk is little-endian; the get/put helpers
 * below are the only place that knows it.
 */
#ifndef EVS_INTERNAL_H
#define EVS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <sqlite3.h>

#include "evstore.h"

#define EVS_MAX_STREAM_LEN 255
#define EVS_MAX_TYPE_LEN 255

/* ---- errors (error.c) ---- */

/* Sets the calling thread's message and returns err. */
int evs__err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps an errno value from a failed system call to an EVS_E* code and
 * records "what: path: strerror". */
int evs__err_sys(int errnum, const char *what, const char *path);
/*
 * EVS_EINVAL "<fn>: <name> is NULL" for the first argument of `fn` that is
 * missing, given as pairs (const char *name, int given) ended by a NULL
 * name; 0 when every one is given.
 */
int evs__need(const char *fn, ...);
void evs__err_clear(void);

/* ---- memory (util.c) ---- */

void *evs__malloc(size_t n);
void *evs__calloc(size_t n, size_t size);
void *evs__realloc(void *p, size_t n);
char *evs__strdup(const char *s);
void evs__free(void *p);
/* json_dumps(j, JSON_COMPACT) whose text is checked: NULL when jansson
 * ran out of memory, also part way (free with jansson's free). */
char *evs__json_dumps(const json_t *j);
/* Did json_loadb of text[0..len) (an object), which filled `e`, fail for
 * want of memory?  jansson reports some of those as syntax errors, so
 * text the JSON checker passes counts as such a failure too. */
bool evs__json_nomem(const char *text, size_t len, const json_error_t *e);

/* ---- small utilities (util.c) ---- */

/* Removes an SQLite database file and its -wal and -shm files. */
void evs__unlink_db(const char *path);

int64_t evs__now_us(void);
uint64_t evs__monotonic_ns(void);
/* A version 7 (time-ordered) UUID: generated ids sort by creation time so
 * the id index is appended to rather than scattered. */
void evs__uuid_v7(uint8_t out[16], int64_t now_us);
/* n increasing version 7 ids (16 bytes each), all after any the process
 * made before. */
void evs__uuid_v7_seq(uint8_t *out, size_t n, int64_t now_us);
/* A hash of a 16-byte id whose every bit depends on every input bit. */
size_t evs__id_hash(const uint8_t id[16]);
/* The four hex digits at s[0..n) as a number (0..0xffff), or -1 when n < 4
 * or one is not a hex digit (a JSON \uXXXX escape's). */
int evs__hex4(const char *s, size_t n);
int evs__check_stream_name(const char *stream, size_t *len_out);
int evs__check_type_name(const char *type, size_t *len_out);

static inline void evs__put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void evs__put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void evs__put64(uint8_t *p, uint64_t v)
{
	evs__put32(p, (uint32_t)v);
	evs__put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t evs__get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t evs__get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
	       ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t evs__get64(const uint8_t *p)
{
	return (uint64_t)evs__get32(p) | ((uint64_t)evs__get32(p + 4) << 32);
}

/* ---- the I/O table (os.c) ---- */

/*
 * Every system call that touches the log goes through this table, so tests
 * can swap entries to inject failures (EIO, ENOSPC, short writes) and to
 * simulate a crash.  Entries follow the system calls' own conventions
 * (-1 and errno), except fallocate, which returns 0 or an errno value like
 * posix_fallocate.
 */
typedef struct evs__os {
	int (*open)(const char *path, int flags, mode_t mode);
	int (*close)(int fd);
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	int (*rename)(const char *from, const char *to);
	int (*unlink)(const char *path);
	int (*mkdir)(const char *path, mode_t mode);
} evs__os;

extern evs__os evs__os_table;
/* The real system calls, for tests that wrap them. */
extern const evs__os evs__os_default;

/* Full write at an offset (loops on short writes).  0, or -1 with errno. */
int evs__os_pwrite_all(int fd, const void *buf, size_t n, off_t off);
/* Full read; returns bytes read (less only at end of file) or -1. */
ssize_t evs__os_pread_all(int fd, void *buf, size_t n, off_t off);
/* fsync of a directory by path. */
int evs__os_fsync_dir(const char *path);

/* ---- batches (batch.c) ---- */

/*
 * Batch layout, little-endian:
 *   0  u32 magic "EVB1"        4  u32 crc32c of bytes [8, length)
 *   8  u32 length             12  u32 count of events (0: seal record)
 *  16  u64 first position     24  u64 first stream version
 *  32  u64 synced through: every position up to it was durable before this
 *      batch was written (the position before its group)
 *  40  u16 stream length      42  u16 flags (EVS__BATCH_SEAL)
 *  44  stream bytes, NUL
 *  then `count` records:
 *   0  u32 record length       4  16-byte event id
 *  20  i64 timestamp (us)     28  u32 schema version
 *  32  u16 type length        34  u32 metadata length   38 u32 data length
 *  42  type, NUL, metadata, NUL, data, NUL
 * Event i of the batch has position first+i and version first_version+i:
 * an append is one stream's events, so the stream is stored once.
 */
#define EVS__BATCH_MAGIC 0x31425645u /* "EVB1" */
#define EVS__BATCH_HDR 44u
#define EVS__REC_HDR 42u
#define EVS__BATCH_SEAL 1u
#define EVS__SEAL_SIZE EVS__BATCH_HDR
/* The largest batch: one pwrite of it must not come back short. */
#define EVS__MAX_BATCH (1u << 30)

typedef struct evs__batch_hdr {
	uint32_t crc;
	uint32_t length;
	uint32_t count;
	uint64_t first_position;
	uint64_t first_version;
	uint64_t synced_through;
	uint16_t stream_len;
	uint16_t flags;
	const char *stream; /* into the batch bytes */
} evs__batch_hdr;

/* Size of a record holding the given field lengths. */
static inline size_t evs__rec_size(size_t type_len, size_t meta_len, size_t data_len)
{
	return EVS__REC_HDR + type_len + 1 + meta_len + 1 + data_len + 1;
}

/* Writes one record at p (which must have evs__rec_size bytes). */
void evs__rec_encode(uint8_t *p, const uint8_t id[16], int64_t ts,
		     uint32_t schema_version, const char *type, size_t type_len,
		     const char *meta, size_t meta_len, const char *data,
		     size_t data_len);

/* Fills in a batch header at p and computes the CRC over the whole batch
 * (header fields and records, already in place after the header). */
void evs__batch_seal_header(uint8_t *p, uint32_t length, uint32_t count,
			    uint64_t first_position, uint64_t first_version,
			    uint64_t synced_through, const char *stream,
			    uint16_t stream_len, uint16_t flags);

/*
 * Parses the 44-byte header at p, given `avail` bytes from p on.  Returns 0
 * when the header is plausible (magic, length within avail, count and
 * stream length consistent), -1 otherwise.  Does not check the CRC.
 */
int evs__batch_parse_header(evs__batch_hdr *h, const uint8_t *p, size_t avail);
/* 0 if the CRC of the `h->length` bytes at p matches. */
int evs__batch_check_crc(const evs__batch_hdr *h, const uint8_t *p);
/*
 * Walks the records of a checked batch, filling `ev` for each and calling
 * cb.  Returns 0, 1 if cb asked to stop, or -1 if a record is malformed
 * (which a good CRC makes a bug or a hostile writer).
 */
typedef int (*evs__rec_cb)(const evs_event *ev, void *ctx);
int evs__batch_decode(const evs__batch_hdr *h, const uint8_t *p,
		      evs__rec_cb cb, void *ctx);

#endif
