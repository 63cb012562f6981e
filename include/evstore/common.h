/*
 * evstore/common.h: what every part of the API shares: the export macro,
 * the error codes, the per-thread error message and evs_free().
 *
 * Error convention: a function that can fail returns an int, 0 on success or
 * a negative EVS_E* code.  The detailed message (naming the stream, version,
 * file and offset involved) is kept per thread and read with evs_errmsg().
 *
 * Threading: an evs_store handle may be shared by any number of threads for
 * appends and reads; the functions that may not are documented as such.
 */
#ifndef EVSTORE_COMMON_H
#define EVSTORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(EVS_BUILDING_LIBRARY) && defined(__GNUC__)
#define EVS_EXTERN __attribute__((visibility("default")))
#else
#define EVS_EXTERN
#endif

/*
 * The error list.  Each code is something a caller acts on differently.
 * X(name, value, short description)
 */
#define EVS_ERRORS(X)                                                    \
	X(ECONFLICT, -1, "wrong expected version")                      \
	X(ENOTFOUND, -2, "not found")                                   \
	X(EINVAL, -3, "invalid input")                                  \
	X(ESCHEMA, -4, "schema violation")                              \
	X(ETOOLARGE, -5, "too large")                                   \
	X(ELOCKED, -6, "store is locked by another writer")             \
	X(ECORRUPT, -7, "corrupt data")                                 \
	X(EIO, -8, "I/O error")                                         \
	X(EFAILED, -9, "store failed after an I/O error; reopen it")    \
	X(ETIMEOUT, -10, "timed out")                                   \
	X(ENOMEM, -11, "out of memory")                                 \
	X(ENOSPC, -12, "no space left on device")                       \
	X(EREADONLY, -13, "store is open read-only")                    \
	X(EREJECTED, -14, "command rejected")

enum evs_error {
	EVS_OK = 0,
#define EVS__ERRENUM(name, value, text) EVS_##name = value,
	EVS_ERRORS(EVS__ERRENUM)
#undef EVS__ERRENUM
	EVS__ERRMIN = -14
};

/* Short, static description of an error code ("wrong expected version"). */
EVS_EXTERN const char *evs_strerror(int err);

/* The code's name without prefix ("ECONFLICT"), static; "OK" for 0. */
EVS_EXTERN const char *evs_errname(int err);

/*
 * The detailed message of the last error on the calling thread, e.g.
 * "stream 'order-7': expected version 3, actual 5".  Borrowed: valid until
 * the next evstore call on this thread.  Never NULL (empty when no error).
 */
EVS_EXTERN const char *evs_errmsg(void);

/* Frees memory the library handed to the caller (strings, arrays).  NULL ok. */
EVS_EXTERN void evs_free(void *p);

/*
 * An allocator for the library and for the SQLite and jansson it uses, in
 * the roles of malloc, realloc and free (named apart from them, which may
 * be macros): alloc and resize return NULL when they fail, which calls
 * then report as EVS_ENOMEM (or the store fails, where an allocation of a
 * background thread failed).  ctx is passed back as is.
 */
typedef struct evs_allocator {
	void *(*alloc)(size_t n, void *ctx);
	void *(*resize)(void *p, size_t n, void *ctx);
	void (*release)(void *p, void *ctx);
	void *ctx;
} evs_allocator;

/*
 * Routes every allocation of the library, of SQLite and of jansson through
 * `a` (copied; NULL: back to the C library's).  Call it first, before any
 * other evstore, SQLite or jansson call in the process and with no thread
 * using them: SQLite accepts an allocator only while it is not initialised
 * (this shuts it down first), and memory from one allocator must not be
 * freed by another.  EVS_EINVAL when SQLite refuses it.
 */
EVS_EXTERN int evs_set_allocator(const evs_allocator *a);

/* The library's version, "MAJOR.MINOR.PATCH", static. */
EVS_EXTERN const char *evs_version(void);

#ifdef __cplusplus
}
#endif

#endif
