/*
 * testutil.h: what the test suites share: fresh temporary store
 * directories, small event builders and file helpers.
 */
#ifndef EVS_TESTUTIL_H
#define EVS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <check.h>

#include "evstore.h"

/* A new empty directory under $TMPDIR (or /tmp); the path is static per
 * call site until tu_rmdir. */
char *tu_mkdtemp(void);
/* rm -rf of a test directory. */
void tu_rmdir(const char *path);
/* The contents of a file (NUL-terminated) and its size; NULL if missing. */
char *tu_read_file(const char *path, size_t *size);
int tu_write_file(const char *path, const void *buf, size_t size);
/* Path of the i-th (0-based) segment of a store's log, or NULL. */
char *tu_segment_path(const char *dir, size_t i);
/* Flips bit 0x40 of byte `off` of the i-th segment file of the store in
 * `dir` (a damaged batch); fails the test if it cannot. */
void tu_damage_segment(const char *dir, size_t i, size_t off);
size_t tu_segment_count(const char *dir);

/* Opens a store in dir with create, durability none unless `sync`, and
 * the given segment size (0: default). */
evs_store *tu_open(const char *dir, uint64_t segment_size, int sync);

/* Every event of the log as text lines "pos stream version type data",
 * one per line (a new string to free). */
char *tu_dump(evs_store *s);

/* Runs a suite as CK_ENV says (CK_RUN_CASE, CK_FORK, ...); the exit
 * status for main: 0 when every test passed. */
int tu_run(Suite *su);

/* FNV-1a, 64 bits, of n bytes: for comparing contents cheaply. */
uint64_t tu_fnv(const void *p, size_t n);

/* Read callback counting events into an int. */
int tu_count_cb(const evs_event *ev, void *ctx);

#endif
