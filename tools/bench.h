/*
 * bench.h: `evstore bench`, the benchmark of the store side by side with
 * plain SQLite and the disk's limit (tools/bench.c).  The command table of
 * tools/evstore.c is its only user.
 */
#ifndef EVSTORE_TOOLS_BENCH_H
#define EVSTORE_TOOLS_BENCH_H

/* The usage text printed by `evstore bench --help`. */
extern const char usage_bench[];

/*
 * Runs `evstore bench` with the arguments after the command name.  Returns
 * the tool's exit status: 0 when every selected scenario produced its rows,
 * 1 when one failed, 2 on a usage error.
 */
int cmd_bench(const char *cmd, int argc, char **argv);

#endif
