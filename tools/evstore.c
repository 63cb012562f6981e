/*
 * evstore.c: the evstore command-line tool.
 *
 * The operator's view of a store: create one (init), append events given as
 * JSON Lines or as an argument (append), read a stream or the whole log back
 * (read, read-all), list streams and categories, show a stream's info and the
 * store's counters (info, stats), check every batch (verify), and load a
 * deterministic order workload for demos and benchmarks (generate).
 *
 * Everything the tool prints on stdout is JSON Lines: one compact object per
 * line, its keys in a fixed order, so that the output can be piped into other
 * programs and compared byte for byte in tests.  Progress and errors go to
 * stderr, errors as "evstore: <command>: <message>", with the library's
 * detailed message (evs_errmsg) when it gave one.  Exit status: 0 success,
 * 1 an error (the library's, bad input, problems found by verify), 2 a usage
 * error (unknown command or option, a bad number).
 *
 * Every command that only reads opens the store read-only, so it runs beside
 * the process that writes.  The tool is a thin layer over the public API:
 * every rule about streams, versions and events is the library's; append
 * validates its input itself only so that it can name the offending line
 * before anything is written, and so that a bad line leaves the store as it
 * was (all the lines of one invocation are one atomic append).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "evstore.h"
#include "bench.h"
#include "demo.h"
#include "events.h"
#include "serve.h"
#include "orders.h"

#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define PRINTF_LIKE(fmt, first)
#endif

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Exit statuses. */
enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2 };

/* At most this many bad input lines are reported one by one. */
#define MAX_REPORTED_LINES 20

/* ------------------------------------------------------------------ */
/* Messages                                                            */

static void msgv(const char *cmd, const char *fmt, va_list ap)
	PRINTF_LIKE(2, 0);
static int fail(const char *cmd, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int lib_fail(const char *cmd, int err, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
static int usage_error(const char *cmd, const char *fmt, ...)
	PRINTF_LIKE(2, 3);

static void msgv(const char *cmd, const char *fmt, va_list ap)
{
	fputs("evstore: ", stderr);
	if (cmd)
		fprintf(stderr, "%s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* Reports an error of the tool's own finding; returns RC_FAIL. */
static int fail(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	msgv(cmd, fmt, ap);
	va_end(ap);
	return RC_FAIL;
}

/*
 * Copies the library's detailed message for the calling thread.  Call it
 * right after the failed call: the message is only good until the next
 * evstore call.
 */
static void copy_errmsg(char *out, size_t size)
{
	const char *m = evs_errmsg();

	snprintf(out, size, "%s", m ? m : "");
}

/*
 * Reports a failed library call as "<context>: <short description>:
 * <detailed message>".  Call it before any other evstore call, which would
 * replace the detailed message.  Returns RC_FAIL.
 */
static int lib_fail(const char *cmd, int err, const char *fmt, ...)
{
	char detail[2048];
	va_list ap;

	copy_errmsg(detail, sizeof detail);
	fprintf(stderr, "evstore: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s", evs_strerror(err));
	if (detail[0] != '\0')
		fprintf(stderr, ": %s", detail);
	fputc('\n', stderr);
	return RC_FAIL;
}

/* Reports a usage error and where to find help; returns RC_USAGE. */
static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	msgv(cmd, fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "Try 'evstore %s --help'.\n", cmd);
	else
		fputs("Try 'evstore --help'.\n", stderr);
	return RC_USAGE;
}

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

/*
 * A small argument scanner.  Options are "--name value" or "--name=value"
 * and may come before, between or after the positional arguments; "--" ends
 * them, so that a stream may be called "-x".  A lone "-" is positional.
 */
struct args {
	const char *cmd;
	int argc;
	char **argv;
	int next;           /* index of the next argument */
	int opts_done;      /* "--" was seen */
	const char *arg;    /* the current argument */
	size_t name_len;    /* option: length of its name, before any '=' */
	const char *value;  /* option: text after '=', or NULL */
};

static void args_init(struct args *a, const char *cmd, int argc, char **argv)
{
	memset(a, 0, sizeof *a);
	a->cmd = cmd;
	a->argc = argc;
	a->argv = argv;
}

/* Steps to the next argument: 1 an option, 0 a positional one, -1 the end. */
static int args_next(struct args *a)
{
	const char *eq;

	for (;;) {
		if (a->next >= a->argc)
			return -1;
		a->arg = a->argv[a->next++];
		a->value = NULL;
		if (a->opts_done || a->arg[0] != '-' || a->arg[1] == '\0')
			return 0;
		if (strcmp(a->arg, "--") == 0) {
			a->opts_done = 1;
			continue;
		}
		eq = strchr(a->arg, '=');
		a->name_len = eq ? (size_t)(eq - a->arg) : strlen(a->arg);
		a->value = eq ? eq + 1 : NULL;
		return 1;
	}
}

static int args_is(const struct args *a, const char *name)
{
	return strlen(name) == a->name_len &&
	       strncmp(a->arg, name, a->name_len) == 0;
}

/* The current option's value; NULL, with the usage error printed, when it
 * has none. */
static const char *args_value(struct args *a)
{
	if (a->value)
		return a->value;
	if (a->next >= a->argc) {
		usage_error(a->cmd, "option '%.*s' needs a value",
			    (int)a->name_len, a->arg);
		return NULL;
	}
	return a->argv[a->next++];
}

/* Checks that a flag option was not given a value; 0 when it was not. */
static int args_flag(const struct args *a)
{
	if (a->value) {
		usage_error(a->cmd, "option '%.*s' takes no value",
			    (int)a->name_len, a->arg);
		return -1;
	}
	return 0;
}

static int args_unknown(const struct args *a)
{
	return usage_error(a->cmd, "unknown option '%.*s'", (int)a->name_len,
			   a->arg);
}

static int args_extra(const struct args *a)
{
	return usage_error(a->cmd, "unexpected argument '%s'", a->arg);
}

/* Reads the current option's value as a number in [min, max]; 0 on
 * success, else the usage error is printed. */
static int args_u64(struct args *a, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *v = args_value(a);
	uint64_t n;

	if (!v)
		return -1;
	if (parse_u64(v, &n) != 0 || n < min || n > max) {
		usage_error(a->cmd, "option '%.*s': '%s' is not a number from "
			    "%" PRIu64 " to %" PRIu64, (int)a->name_len,
			    a->arg, v, min, max);
		return -1;
	}
	*out = n;
	return 0;
}

static int args_durability(struct args *a, evs_durability *out)
{
	const char *v = args_value(a);

	if (!v)
		return -1;
	if (strcmp(v, "sync") == 0) {
		*out = EVS_DURABILITY_SYNC;
	} else if (strcmp(v, "none") == 0) {
		*out = EVS_DURABILITY_NONE;
	} else {
		usage_error(a->cmd, "option '--durability': '%s' is not "
			    "'sync' or 'none'", v);
		return -1;
	}
	return 0;
}

/* Whether --help or -h comes before any "--". */
static int wants_help(int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return 0;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

/*
 * Writes `obj` as one compact line on stdout and releases it (the reference
 * is stolen).  A NULL obj, from a failed json_pack, is an error: out of
 * memory, or a name that is not UTF-8.
 */
static int emit(json_t *obj, size_t flags)
{
	int rc = -1;

	if (obj && json_dumpf(obj, stdout, JSON_COMPACT | flags) == 0 &&
	    putchar('\n') != EOF)
		rc = 0;
	json_decref(obj);
	return rc;
}

static int emit_fail(const char *cmd)
{
	if (ferror(stdout))
		return fail(cmd, "cannot write to stdout: %s", strerror(errno));
	return fail(cmd, "cannot format the output (out of memory, or a "
		    "name that is not UTF-8)");
}

/* "2026-11-22T20:03:56Z", or with date_only "2026-11-22". */
static void format_time_s(char *out, size_t size, int64_t sec, int date_only)
{
	time_t t = (time_t)sec;
	struct tm tm;

	if (!gmtime_r(&t, &tm)) {
		snprintf(out, size, "%" PRId64, sec);
		return;
	}
	if (date_only)
		snprintf(out, size, "%04d-%02d-%02d", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday);
	else
		snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

struct print_ctx {
	const char *cmd;
	int failed;
	evs_store *upcast;      /* print data upcast by this store's upcasters */
};

/* evs_event_cb: prints one event line; stops the read on any error. */
static int print_event(const evs_event *ev, void *vctx)
{
	struct print_ctx *ctx = vctx;
	char err[512];
	json_t *obj = event_json(ev, err, sizeof err);

	if (!obj) {
		fail(ctx->cmd, "%s", err);
		ctx->failed = 1;
		return 1;
	}
	if (ctx->upcast) {
		json_t *data;
		uint32_t version;
		int e = evs_upcast(ctx->upcast, ev, &data, &version);
		if (e != 0) {
			json_decref(obj);
			lib_fail(ctx->cmd, e, "cannot upcast the event at position %" PRIu64,
				 ev->position);
			ctx->failed = 1;
			return 1;
		}
		json_object_set_new(obj, "schema_version", json_integer(version));
		json_object_del(obj, "data");
		json_object_set_new(obj, "data", data);
	}
	if (emit(obj, 0) != 0) {
		emit_fail(ctx->cmd);
		ctx->failed = 1;
		return 1;
	}
	return 0;
}

static json_t *stats_json(const char *dir, const evs_stats *st)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "store", dir,
			 "head_position", (json_int_t)st->head_position,
			 "streams", (json_int_t)st->streams,
			 "batches", (json_int_t)st->batches,
			 "segments", (json_int_t)st->segments,
			 "log_bytes", (json_int_t)st->log_bytes,
			 "recovered_batches", (json_int_t)st->recovered_batches,
			 "recovery_bytes", (json_int_t)st->recovery_bytes,
			 "truncated_bytes", (json_int_t)st->truncated_bytes);
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */

enum open_mode { OPEN_READ, OPEN_WRITE, OPEN_CREATE };

/* Opens `dir`; on failure reports it and returns RC_FAIL. */
/* --schemas DIR and --strict of the commands that write. */
struct schema_args {
	const char *dir;
	int strict;
};

/* 1 when the current option was one of them (consumed), 0 when not,
 * -1 on a usage error (reported). */
static int args_schema(struct args *a, struct schema_args *sa)
{
	if (args_is(a, "--schemas")) {
		if (!(sa->dir = args_value(a)))
			return -1;
		return 1;
	}
	if (args_is(a, "--strict")) {
		sa->strict = 1;
		return 1;
	}
	return 0;
}

/* --upcast and --schemas DIR of the commands that read: as args_schema. */
static int args_upcast(struct args *a, int *upcast, struct schema_args *sa)
{
	if (args_is(a, "--upcast")) {
		if (args_flag(a) != 0)
			return -1;
		*upcast = 1;
		return 1;
	}
	if (args_is(a, "--schemas")) {
		if (!(sa->dir = args_value(a)))
			return -1;
		return 1;
	}
	return 0;
}

/* Opens `dir` (with the event schemas of sa, if any); on failure reports
 * it and returns RC_FAIL. */
static int open_store(evs_store **out, const char *cmd, const char *dir,
		      enum open_mode mode, evs_durability durability,
		      const struct schema_args *sa)
{
	evs_options opts = EVS_OPTIONS_INIT;
	int err;

	opts.read_only = mode == OPEN_READ;
	opts.create = mode == OPEN_CREATE;
	opts.durability = durability;
	if (sa) {
		opts.schema_dir = sa->dir;
		opts.schema_strict = sa->strict;
	}
	err = evs_open(out, dir, &opts);
	if (err != 0) {
		*out = NULL;
		return lib_fail(cmd, err, "cannot open store '%s'", dir);
	}
	return RC_OK;
}

/* 1 when `dir` is missing or an empty directory: a new store goes there. */
static int dir_is_vacant(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int vacant = 1;

	if (!d)
		return errno == ENOENT;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			vacant = 0;
			break;
		}
	}
	closedir(d);
	return vacant;
}

/* ------------------------------------------------------------------ */
/* init                                                                */

static const char usage_init[] =
	"usage: evstore init DIR\n"
	"\n"
	"Creates an event store in DIR (and DIR itself, if its parent exists)\n"
	"and prints {\"store\":DIR,\"created\":true}; when DIR already holds a\n"
	"store, it is opened (and recovered) and created is false.\n";

static int cmd_init(const char *cmd, int argc, char **argv)
{
	evs_options opts = EVS_OPTIONS_INIT;
	evs_store *store = NULL;
	const char *dir = NULL;
	struct args a;
	int k, err, created;

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 1)
			return args_unknown(&a);
		if (dir)
			return args_extra(&a);
		dir = a.arg;
	}
	if (!dir)
		return usage_error(cmd, "missing DIR");

	/*
	 * A missing or empty directory gets a new store.  Anything else is
	 * opened as it is, and only if the library says there is no store
	 * there is one created: it decides what counts as a store.
	 */
	created = dir_is_vacant(dir);
	opts.create = created;
	err = evs_open(&store, dir, &opts);
	if (err == EVS_ENOTFOUND && !created) {
		created = 1;
		opts.create = 1;
		err = evs_open(&store, dir, &opts);
	}
	if (err != 0)
		return lib_fail(cmd, err, "cannot %s store '%s'",
				created ? "create" : "open", dir);
	evs_close(store);
	if (emit(json_pack("{s:s, s:b}", "store", dir, "created", created), 0))
		return emit_fail(cmd);
	return RC_OK;
}

/* ------------------------------------------------------------------ */
/* append                                                              */

static const char usage_append[] =
	"usage: evstore append DIR STREAM [OPTIONS] [EVENT_JSON]\n"
	"\n"
	"Appends events to STREAM as one atomic batch: the one EVENT_JSON\n"
	"argument, or else every line of stdin (JSON Lines; blank lines are\n"
	"skipped).  An event is\n"
	"  {\"type\": \"OrderPlaced\", \"data\": {...}, \"id\": \"<uuid>\",\n"
	"   \"metadata\": {...}, \"schema_version\": 1}\n"
	"where id, metadata and schema_version are optional.  Every line is\n"
	"checked first; if any is bad, nothing is appended.\n"
	"\n"
	"Options:\n"
	"  --expected-version V  any (default), no_stream, exists, or the\n"
	"                        stream's exact current version (0: no events)\n"
	"  --type T              each line (or EVENT_JSON) is the data object\n"
	"                        alone, of events of type T\n"
	"  --durability D        sync (default: acknowledged after fdatasync)\n"
	"                        or none\n"
	"  --schemas DIR         validate each event's data against the JSON\n"
	"                        Schema DIR/<type>.v<schema_version>.json\n"
	"  --strict              with --schemas: refuse types without a schema\n"
	"\n"
	"Prints {\"stream\",\"first_version\",\"last_version\",\"first_position\",\n"
	"\"last_position\",\"idempotent\"}.  A wrong expected version exits 1 with\n"
	"the stream's current version in the message.\n";

static int is_blank(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return 0;
	return 1;
}

struct pending_list {
	struct pending *v;
	size_t n, cap;
};

static void pending_list_free(struct pending_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		pending_free(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

/* A free slot at the end of the list (not yet counted in n); NULL when out
 * of memory. */
static struct pending *pending_list_slot(struct pending_list *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct pending *v = realloc(l->v, cap * sizeof *v);

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	return &l->v[l->n];
}

/* Reads and checks every stdin line into `l`; RC_OK when all were good. */
static int read_stdin_events(const char *cmd, const char *fixed_type,
			     struct pending_list *l)
{
	char *line = NULL, err[512];
	size_t cap = 0;
	ssize_t got;
	unsigned long lineno = 0, bad = 0;
	struct pending *p;
	int rc = RC_OK;

	while ((got = getline(&line, &cap, stdin)) != -1) {
		size_t len = (size_t)got;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (is_blank(line, len))
			continue;
		p = pending_list_slot(l);
		if (!p) {
			rc = fail(cmd, "line %lu: out of memory", lineno);
			goto out;
		}
		if (parse_event(p, line, len, fixed_type, err, sizeof err) != 0) {
			if (++bad <= MAX_REPORTED_LINES)
				fail(cmd, "line %lu: %s", lineno, err);
			continue;
		}
		l->n++;
	}
	if (ferror(stdin)) {
		rc = fail(cmd, "cannot read stdin: %s", strerror(errno));
		goto out;
	}
	if (bad > 0)
		rc = fail(cmd, "%lu bad line%s; nothing was appended", bad,
			  bad == 1 ? "" : "s");
out:
	free(line);
	return rc;
}

static int cmd_append(const char *cmd, int argc, char **argv)
{
	const char *pos[3] = { NULL, NULL, NULL };
	const char *expected_text = "any", *fixed_type = NULL;
	evs_durability durability = EVS_DURABILITY_SYNC;
	int64_t expected = EVS_EXPECT_ANY;
	struct pending_list list = { NULL, 0, 0 };
	struct schema_args sa = { NULL, 0 };
	evs_new_event *events = NULL;
	evs_append_result res;
	evs_store *store = NULL;
	size_t npos = 0, i;
	struct args a;
	int k, err, rc;
	json_t *out;

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (npos == 3)
				return args_extra(&a);
			pos[npos++] = a.arg;
		} else if (args_is(&a, "--expected-version")) {
			if (!(expected_text = args_value(&a)))
				return RC_USAGE;
			if (parse_expected(expected_text, &expected) != 0)
				return usage_error(cmd, "bad expected version "
						   "'%s': use any, no_stream, "
						   "exists or a version >= 0",
						   expected_text);
		} else if (args_is(&a, "--type")) {
			if (!(fixed_type = args_value(&a)))
				return RC_USAGE;
			if (!valid_type(fixed_type))
				return usage_error(cmd, "bad type '%s': 1 to "
						   "255 of A-Z a-z 0-9 _ . : -",
						   fixed_type);
		} else if (args_is(&a, "--durability")) {
			if (args_durability(&a, &durability) != 0)
				return RC_USAGE;
		} else if ((k = args_schema(&a, &sa)) != 0) {
			if (k < 0)
				return RC_USAGE;
		} else {
			return args_unknown(&a);
		}
	}
	if (npos < 2)
		return usage_error(cmd, "missing %s", npos ? "STREAM" : "DIR");

	if (npos == 3) {
		char msg[512];
		struct pending *p = pending_list_slot(&list);

		if (!p) {
			rc = fail(cmd, "out of memory");
			goto out;
		}
		if (parse_event(p, pos[2], strlen(pos[2]), fixed_type, msg,
				sizeof msg) != 0) {
			rc = fail(cmd, "EVENT_JSON argument: %s", msg);
			goto out;
		}
		list.n = 1;
	} else {
		rc = read_stdin_events(cmd, fixed_type, &list);
		if (rc != RC_OK)
			goto out;
		if (list.n == 0) {
			rc = fail(cmd, "no events on stdin; nothing was "
				  "appended");
			goto out;
		}
	}

	events = calloc(list.n, sizeof *events);
	if (!events) {
		rc = fail(cmd, "out of memory");
		goto out;
	}
	for (i = 0; i < list.n; i++) {
		events[i].type = list.v[i].type;
		events[i].data = list.v[i].data;
		events[i].metadata = list.v[i].metadata;
		events[i].id = list.v[i].has_id ? list.v[i].id : NULL;
		events[i].schema_version = list.v[i].schema_version;
	}

	rc = open_store(&store, cmd, pos[0], OPEN_WRITE, durability, &sa);
	if (rc != RC_OK)
		goto out;
	memset(&res, 0, sizeof res);
	err = evs_append(store, pos[1], expected, events, list.n, &res);
	if (err == EVS_ECONFLICT) {
		char detail[2048];

		copy_errmsg(detail, sizeof detail);
		rc = fail(cmd, "stream '%s': wrong expected version: expected "
			  "%s, current version is %" PRIu64 "%s%s%s", pos[1],
			  expected_text, res.current_version,
			  res.current_version == 0 ? " (no stream)" : "",
			  detail[0] ? ": " : "", detail);
		goto out;
	}
	if (err != 0) {
		rc = lib_fail(cmd, err, "cannot append to stream '%s'", pos[1]);
		goto out;
	}
	out = json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}",
			"stream", pos[1],
			"first_version", (json_int_t)res.first_version,
			"last_version", (json_int_t)res.last_version,
			"first_position", (json_int_t)res.first_position,
			"last_position", (json_int_t)res.last_position,
			"idempotent", res.idempotent);
	rc = emit(out, 0) == 0 ? RC_OK : emit_fail(cmd);
out:
	evs_close(store);
	free(events);
	pending_list_free(&list);
	return rc;
}

/* ------------------------------------------------------------------ */
/* read, read-all                                                      */

static const char usage_read[] =
	"usage: evstore read DIR STREAM [--from V] [--backward] [--limit N]\n"
	"                    [--upcast [--schemas D]]\n"
	"\n"
	"Prints the events of STREAM, one JSON object a line:\n"
	"{\"position\",\"stream\",\"version\",\"id\",\"type\",\"schema_version\",\n"
	"\"timestamp\",\"metadata\" (when the event has any),\"data\"}.\n"
	"\n"
	"Options:\n"
	"  --from V     start at version V (default: the first, or the last\n"
	"               with --backward)\n"
	"  --backward   newest first\n"
	"  --limit N    at most N events (0: no limit)\n"
	"  --upcast     each event's data at the newest version its upcasters\n"
	"               reach (schema_version says which); default: as stored\n"
	"  --schemas D  the schema directory, whose .sql upcasters --upcast uses\n"
	"\n"
	"A stream that does not exist is an error (exit 1).\n";

static int cmd_read(const char *cmd, int argc, char **argv)
{
	const char *pos[2] = { NULL, NULL };
	uint64_t from = 0, limit = 0;
	struct print_ctx ctx = { cmd, 0, NULL };
	struct schema_args sa = { NULL, 0 };
	evs_store *store;
	int backward = 0, upcast = 0, k, err, rc;
	size_t npos = 0;
	struct args a;

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (npos == 2)
				return args_extra(&a);
			pos[npos++] = a.arg;
		} else if (args_is(&a, "--from")) {
			if (args_u64(&a, 0, UINT64_MAX, &from) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--limit")) {
			if (args_u64(&a, 0, UINT64_MAX, &limit) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--backward")) {
			if (args_flag(&a) != 0)
				return RC_USAGE;
			backward = 1;
		} else if ((k = args_upcast(&a, &upcast, &sa)) != 0) {
			if (k < 0)
				return RC_USAGE;
		} else {
			return args_unknown(&a);
		}
	}
	if (npos < 2)
		return usage_error(cmd, "missing %s", npos ? "STREAM" : "DIR");

	rc = open_store(&store, cmd, pos[0], OPEN_READ, EVS_DURABILITY_SYNC, &sa);
	if (rc != RC_OK)
		return rc;
	if (upcast)
		ctx.upcast = store;
	err = evs_read_stream(store, pos[1], from,
			      backward ? EVS_BACKWARD : EVS_FORWARD, limit,
			      print_event, &ctx);
	if (err != 0)
		rc = lib_fail(cmd, err, "cannot read stream '%s'", pos[1]);
	else if (ctx.failed)
		rc = RC_FAIL;
	evs_close(store);
	return rc;
}

static const char usage_read_all[] =
	"usage: evstore read-all DIR [--from P] [--limit N] [--category C]\n"
	"                        [--type T]... [--upcast [--schemas D]]\n"
	"\n"
	"Prints every event of the store in commit order (the $all stream), in\n"
	"the line format of 'evstore read'.\n"
	"\n"
	"Options:\n"
	"  --from P       start at global position P (default: the first)\n"
	"  --limit N      at most N events (0: no limit)\n"
	"  --category C   only streams of category C (the name before its\n"
	"                 first '-')\n"
	"  --type T       only events of type T; may be repeated\n"
	"  --upcast       data upcast, as for 'evstore read'\n"
	"  --schemas D    the schema directory, whose .sql upcasters --upcast uses\n";

static int cmd_read_all(const char *cmd, int argc, char **argv)
{
	const char *dir = NULL;
	const char **types;
	uint64_t from = 0, limit = 0;
	struct print_ctx ctx = { cmd, 0, NULL };
	struct schema_args sa = { NULL, 0 };
	evs_filter filter;
	evs_store *store = NULL;
	int k, err, rc = RC_OK, upcast = 0;
	struct args a;

	memset(&filter, 0, sizeof filter);
	types = calloc((size_t)argc + 1, sizeof *types);
	if (!types)
		return fail(cmd, "out of memory");
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir) {
				rc = args_extra(&a);
				goto out;
			}
			dir = a.arg;
		} else if (args_is(&a, "--from")) {
			if (args_u64(&a, 0, UINT64_MAX, &from) != 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--limit")) {
			if (args_u64(&a, 0, UINT64_MAX, &limit) != 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--category")) {
			if (!(filter.category = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--type")) {
			if (!(types[filter.ntypes] = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
			filter.ntypes++;
		} else if ((k = args_upcast(&a, &upcast, &sa)) != 0) {
			if (k < 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else {
			rc = args_unknown(&a);
			goto out;
		}
	}
	if (!dir) {
		rc = usage_error(cmd, "missing DIR");
		goto out;
	}
	if (filter.ntypes > 0)
		filter.types = types;

	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, &sa);
	if (rc != RC_OK)
		goto out;
	if (upcast)
		ctx.upcast = store;
	err = evs_read_all(store, from, limit, &filter, print_event, &ctx);
	if (err != 0)
		rc = lib_fail(cmd, err, "cannot read the store");
	else if (ctx.failed)
		rc = RC_FAIL;
out:
	evs_close(store);
	free(types);
	return rc;
}

/* ------------------------------------------------------------------ */
/* streams, categories                                                 */

static const char usage_streams[] =
	"usage: evstore streams DIR [--category C]...\n"
	"\n"
	"Lists the streams in name order, one {\"stream\",\"last_version\"}\n"
	"a line.\n"
	"\n"
	"Options:\n"
	"  --category C   only streams of category C; may be repeated\n";

struct list_ctx {
	const char *cmd;
	const char **categories;
	size_t ncategories;
	int failed;
};

/* evs_name_cb for evs_list_streams. */
static int print_stream(const char *name, uint64_t last_version, void *vctx)
{
	struct list_ctx *ctx = vctx;
	json_t *obj;

	if (ctx->ncategories > 0) {
		char cat[512];
		size_t i, n = evs_category(cat, sizeof cat, name);

		if (n >= sizeof cat)
			return 0;
		for (i = 0; i < ctx->ncategories; i++)
			if (strcmp(cat, ctx->categories[i]) == 0)
				break;
		if (i == ctx->ncategories)
			return 0;
	}
	obj = json_pack("{s:s, s:I}", "stream", name,
			"last_version", (json_int_t)last_version);
	if (emit(obj, 0) != 0) {
		emit_fail(ctx->cmd);
		ctx->failed = 1;
		return 1;
	}
	return 0;
}

static int cmd_streams(const char *cmd, int argc, char **argv)
{
	struct list_ctx ctx = { cmd, NULL, 0, 0 };
	const char *dir = NULL;
	evs_store *store = NULL;
	int k, err, rc = RC_OK;
	struct args a;

	ctx.categories = calloc((size_t)argc + 1, sizeof *ctx.categories);
	if (!ctx.categories)
		return fail(cmd, "out of memory");
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir) {
				rc = args_extra(&a);
				goto out;
			}
			dir = a.arg;
		} else if (args_is(&a, "--category")) {
			const char *c = args_value(&a);

			if (!c) {
				rc = RC_USAGE;
				goto out;
			}
			ctx.categories[ctx.ncategories++] = c;
		} else {
			rc = args_unknown(&a);
			goto out;
		}
	}
	if (!dir) {
		rc = usage_error(cmd, "missing DIR");
		goto out;
	}
	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, NULL);
	if (rc != RC_OK)
		goto out;
	err = evs_list_streams(store, NULL, 0, print_stream, &ctx);
	if (err != 0)
		rc = lib_fail(cmd, err, "cannot list the streams");
	else if (ctx.failed)
		rc = RC_FAIL;
out:
	evs_close(store);
	free(ctx.categories);
	return rc;
}

static const char usage_categories[] =
	"usage: evstore categories DIR\n"
	"\n"
	"Lists the categories in name order, one {\"category\",\"streams\"} a\n"
	"line, streams being the number of streams in the category.\n";

/* evs_name_cb for evs_list_categories. */
static int print_category(const char *name, uint64_t streams, void *vctx)
{
	struct list_ctx *ctx = vctx;
	json_t *obj = json_pack("{s:s, s:I}", "category", name,
				"streams", (json_int_t)streams);

	if (emit(obj, 0) != 0) {
		emit_fail(ctx->cmd);
		ctx->failed = 1;
		return 1;
	}
	return 0;
}

/* Parses the arguments of a command that takes DIR alone; RC_OK or the
 * usage error's status. */
static int only_dir(const char *cmd, int argc, char **argv, const char **dir)
{
	struct args a;
	int k;

	*dir = NULL;
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 1)
			return args_unknown(&a);
		if (*dir)
			return args_extra(&a);
		*dir = a.arg;
	}
	if (!*dir)
		return usage_error(cmd, "missing DIR");
	return RC_OK;
}

static int cmd_categories(const char *cmd, int argc, char **argv)
{
	struct list_ctx ctx = { cmd, NULL, 0, 0 };
	const char *dir;
	evs_store *store;
	int err, rc;

	rc = only_dir(cmd, argc, argv, &dir);
	if (rc != RC_OK)
		return rc;
	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, NULL);
	if (rc != RC_OK)
		return rc;
	err = evs_list_categories(store, print_category, &ctx);
	if (err != 0)
		rc = lib_fail(cmd, err, "cannot list the categories");
	else if (ctx.failed)
		rc = RC_FAIL;
	evs_close(store);
	return rc;
}

/* ------------------------------------------------------------------ */
/* info, stats                                                         */

static const char usage_info[] =
	"usage: evstore info DIR STREAM\n"
	"\n"
	"Prints one object about STREAM: {\"stream\",\"exists\",\"last_version\",\n"
	"\"event_count\",\"first_position\",\"last_position\",\"created\"}, created\n"
	"(the first event's timestamp) only when the stream exists.  A stream\n"
	"that does not exist is not an error: exists is false.\n";

static int cmd_info(const char *cmd, int argc, char **argv)
{
	const char *pos[2] = { NULL, NULL };
	evs_stream_info info;
	evs_store *store;
	size_t npos = 0;
	struct args a;
	int k, err, rc;
	json_t *obj;
	char ts[96];

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 1)
			return args_unknown(&a);
		if (npos == 2)
			return args_extra(&a);
		pos[npos++] = a.arg;
	}
	if (npos < 2)
		return usage_error(cmd, "missing %s", npos ? "STREAM" : "DIR");

	rc = open_store(&store, cmd, pos[0], OPEN_READ, EVS_DURABILITY_SYNC, NULL);
	if (rc != RC_OK)
		return rc;
	memset(&info, 0, sizeof info);
	err = evs_stream_info_get(&info, store, pos[1]);
	if (err != 0) {
		rc = lib_fail(cmd, err, "cannot get stream '%s'", pos[1]);
		goto out;
	}
	obj = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}",
			"stream", pos[1],
			"exists", info.exists,
			"last_version", (json_int_t)info.last_version,
			"event_count", (json_int_t)info.event_count,
			"first_position", (json_int_t)info.first_position,
			"last_position", (json_int_t)info.last_position);
	if (obj && info.exists) {
		format_time_us(ts, sizeof ts, info.created_us);
		if (json_object_set_new(obj, "created", json_string(ts)) != 0) {
			json_decref(obj);
			obj = NULL;
		}
	}
	rc = emit(obj, 0) == 0 ? RC_OK : emit_fail(cmd);
out:
	evs_close(store);
	return rc;
}

static const char usage_stats[] =
	"usage: evstore stats DIR\n"
	"\n"
	"Prints the store's counters as one object: {\"store\",\"head_position\",\n"
	"\"streams\",\"batches\",\"segments\",\"log_bytes\",\"recovered_batches\",\n"
	"\"recovery_bytes\",\"truncated_bytes\"}.\n";

static int cmd_stats(const char *cmd, int argc, char **argv)
{
	const char *dir;
	evs_store *store;
	evs_stats st;
	int err, rc;

	rc = only_dir(cmd, argc, argv, &dir);
	if (rc != RC_OK)
		return rc;
	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, NULL);
	if (rc != RC_OK)
		return rc;
	memset(&st, 0, sizeof st);
	err = evs_stats_get(&st, store);
	if (err != 0)
		rc = lib_fail(cmd, err, "cannot get the statistics");
	else if (emit(stats_json(dir, &st), 0) != 0)
		rc = emit_fail(cmd);
	evs_close(store);
	return rc;
}

/* ------------------------------------------------------------------ */
/* verify                                                              */

static const char usage_verify[] =
	"usage: evstore verify DIR [--quiet]\n"
	"\n"
	"Checks every batch of the log (checksums, framing, dense positions and\n"
	"versions) and that the index agrees with it.  Prints each problem as\n"
	"{\"problem\": \"...\"} and then {\"ok\",\"problems\",\"store\"}; exits 0\n"
	"when the store is clean, 1 otherwise.  When stderr is a terminal the\n"
	"progress is shown there.  A store whose first writer died while\n"
	"creating it has no index yet: its log is checked alone, with a note.\n"
	"\n"
	"Options:\n"
	"  --quiet   no progress and no problem lines: only the final object\n";

struct verify_ctx {
	const char *cmd;
	int quiet;
	int tty;
	int shown;          /* a progress line is on the terminal */
	int last_percent;
	uint64_t problems;
	int failed;         /* output could not be written */
};

/* evs_report_cb */
static void verify_report(const char *problem, void *vctx)
{
	struct verify_ctx *ctx = vctx;

	ctx->problems++;
	if (ctx->quiet || ctx->failed)
		return;
	if (ctx->shown) {
		/* Keep the problem off the progress line on a terminal. */
		fputs("\r\033[K", stderr);
		ctx->shown = 0;
		ctx->last_percent = -1;
	}
	if (emit(json_pack("{s:s}", "problem", problem), 0) != 0) {
		emit_fail(ctx->cmd);
		ctx->failed = 1;
	}
	fflush(stdout);
}

/* evs_progress_cb: a percentage redrawn in place, on a terminal only. */
static void verify_progress(uint64_t done, uint64_t total, void *vctx)
{
	struct verify_ctx *ctx = vctx;
	int percent;

	if (ctx->quiet || !ctx->tty)
		return;
	percent = total == 0 ? 100 :
		(int)((done >= total ? total : done) * 100 / total);
	if (percent == ctx->last_percent)
		return;
	ctx->last_percent = percent;
	ctx->shown = 1;
	fprintf(stderr, "\rverify: %3d%%", percent);
	fflush(stderr);
}

/* Whether DIR/index.db exists with its tables: a store whose first
 * writer died while opening it has none, and is read as an empty index. */
static int index_set_up(const char *dir)
{
	char path[4096];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int found = 0;

	snprintf(path, sizeof path, "%s/index.db", dir);
	if (access(path, F_OK) != 0)
		return 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' "
			       "AND name = 'meta'", -1, &st, NULL) == SQLITE_OK)
		found = sqlite3_step(st) != SQLITE_DONE;
	else
		found = 1; /* unreadable: evs_verify has said why */
	sqlite3_finalize(st);
	sqlite3_close(db);
	return found;
}

static int cmd_verify(const char *cmd, int argc, char **argv)
{
	struct verify_ctx ctx;
	const char *dir = NULL;
	evs_store *store;
	struct args a;
	int k, err, rc;
	json_t *obj;

	memset(&ctx, 0, sizeof ctx);
	ctx.cmd = cmd;
	ctx.last_percent = -1;
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir)
				return args_extra(&a);
			dir = a.arg;
		} else if (args_is(&a, "--quiet")) {
			if (args_flag(&a) != 0)
				return RC_USAGE;
			ctx.quiet = 1;
		} else {
			return args_unknown(&a);
		}
	}
	if (!dir)
		return usage_error(cmd, "missing DIR");
	ctx.tty = isatty(STDERR_FILENO);

	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, NULL);
	if (rc != RC_OK)
		return rc;
	err = evs_verify(store, verify_report, verify_progress, &ctx);
	if (ctx.shown)
		fputc('\n', stderr);
	if (err != 0 && err != EVS_ECORRUPT) {
		rc = lib_fail(cmd, err, "cannot verify store '%s'", dir);
		goto out;
	}
	if (err == EVS_ECORRUPT && ctx.problems == 0) {
		/* Corrupt, but no line reported: show the library's message. */
		char detail[2048];

		copy_errmsg(detail, sizeof detail);
		ctx.problems = 1;
		if (!ctx.quiet && emit(json_pack("{s:s}", "problem", detail[0] ?
				detail : evs_strerror(err)), 0) != 0)
			ctx.failed = 1;
	}
	if (ctx.failed) {
		rc = RC_FAIL;
		goto out;
	}
	if (!ctx.quiet && !index_set_up(dir))
		fprintf(stderr, "evstore: %s: note: %s/index.db is not set up yet (the store's first "
			"writer did not finish opening it): the log was checked alone, and "
			"the next writable open indexes it\n", cmd, dir);
	obj = json_pack("{s:b, s:I, s:s}", "ok", err == 0 && ctx.problems == 0,
			"problems", (json_int_t)ctx.problems, "store", dir);
	if (emit(obj, 0) != 0)
		rc = emit_fail(cmd);
	else
		rc = err == 0 && ctx.problems == 0 ? RC_OK : RC_FAIL;
out:
	evs_close(store);
	return rc;
}

/* ------------------------------------------------------------------ */
/* tail                                                                */

static const char usage_tail[] =
	"usage: evstore tail DIR [--from P] [--category C] [--type T]...\n"
	"                    [--count N] [--upcast [--schemas D]]\n"
	"\n"
	"Prints the store's events from position P (default: the end, i.e.\n"
	"only new ones) as JSON Lines in the format of 'evstore read', then\n"
	"every event appended after, live, until interrupted (Ctrl-C) or\n"
	"until N events were printed.  The store is opened read-only, so this\n"
	"follows a writer in another process; new events show within 50 ms.\n"
	"\n"
	"Options:\n"
	"  --from P       start at position P (1: the whole log)\n"
	"  --category C   only streams of category C\n"
	"  --type T       only events of type T; may be repeated\n"
	"  --count N      stop after N events\n"
	"  --upcast       data upcast, as for 'evstore read'\n";

struct tail_ctx {
	struct print_ctx print;
	uint64_t count, printed;
	atomic_bool done;
};

/* evs_event_cb on the subscription's thread: one line, flushed. */
static int tail_event(const evs_event *ev, void *vctx)
{
	struct tail_ctx *t = vctx;

	if (print_event(ev, &t->print) != 0 || fflush(stdout) != 0) {
		atomic_store(&t->done, true);
		return 1;
	}
	if (t->count && ++t->printed == t->count) {
		atomic_store(&t->done, true);
		return 1;
	}
	return 0;
}

static int cmd_tail(const char *cmd, int argc, char **argv)
{
	const char *dir = NULL;
	const char **types;
	struct schema_args sa = { NULL, 0 };
	struct tail_ctx t;
	evs_subscribe_options so = EVS_SUBSCRIBE_OPTIONS_INIT;
	evs_subscription *sub = NULL;
	evs_store *store = NULL;
	uint64_t from = 0;
	int k, err, rc = RC_OK, upcast = 0, from_given = 0;
	sigset_t sigs, old;
	struct args a;

	memset(&t, 0, sizeof t);
	t.print.cmd = cmd;
	types = calloc((size_t)argc + 1, sizeof *types);
	if (!types)
		return fail(cmd, "out of memory");
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir) {
				rc = args_extra(&a);
				goto out;
			}
			dir = a.arg;
		} else if (args_is(&a, "--from")) {
			if (args_u64(&a, 1, UINT64_MAX, &from) != 0) {
				rc = RC_USAGE;
				goto out;
			}
			from_given = 1;
		} else if (args_is(&a, "--count")) {
			if (args_u64(&a, 1, UINT64_MAX, &t.count) != 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--category")) {
			if (!(so.filter.category = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--type")) {
			if (!(types[so.filter.ntypes] = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
			so.filter.ntypes++;
		} else if ((k = args_upcast(&a, &upcast, &sa)) != 0) {
			if (k < 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else {
			rc = args_unknown(&a);
			goto out;
		}
	}
	if (!dir) {
		rc = usage_error(cmd, "missing DIR");
		goto out;
	}
	if (so.filter.ntypes)
		so.filter.types = types;
	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, &sa);
	if (rc != RC_OK)
		goto out;
	if (upcast)
		t.print.upcast = store;
	if (!from_given) {
		evs_stats st;
		if ((err = evs_stats_get(&st, store)) != 0) {
			rc = lib_fail(cmd, err, "cannot read the store's head");
			goto out;
		}
		from = st.head_position + 1;
	}
	so.from = from;
	/* the subscription's thread must not take the signals: this one
	 * waits for them */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, &old);
	err = evs_subscribe(&sub, store, &so, tail_event, &t);
	if (err != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		rc = lib_fail(cmd, err, "cannot follow the store");
		goto out;
	}
	while (!atomic_load(&t.done)) {
		struct timespec tick = { 0, 50000000 };
		if (sigtimedwait(&sigs, NULL, &tick) > 0)
			break;
	}
	err = evs_subscription_stop(sub);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0)
		rc = lib_fail(cmd, err, "cannot read the store");
	else if (t.print.failed)
		rc = RC_FAIL;
out:
	evs_close(store);
	free(types);
	return rc;
}

/* ------------------------------------------------------------------ */
/* query, projections                                                  */

#ifndef EVS_DEMO_PROJECTIONS
#define EVS_DEMO_PROJECTIONS "projections"
#endif

static const char usage_query[] =
	"usage: evstore query DIR PROJECTION QUERY [NAME=VALUE]...\n"
	"       evstore query DIR PROJECTION --sql SQL [NAME=VALUE]...\n"
	"                     [--projections D] [--schemas D]\n"
	"                     [--min-position P] [--timeout-ms T]\n"
	"\n"
	"Runs query QUERY of projection PROJECTION (a .sql file, or the name of\n"
	"one in the projections directory) over its read model in DIR, with\n"
	"parameters NAME=VALUE (VALUE is taken as JSON when it parses as JSON,\n"
	"else as a string).  The read model is first brought up to the store's\n"
	"head (or to --min-position P); if another process holds the store's\n"
	"writer lock, it is read as it is.  Prints one JSON object a row as it\n"
	"is read (an aligned table on a terminal).\n"
	"\n"
	"Options:\n"
	"  --sql SQL         run SQL, one SELECT, instead of a declared query:\n"
	"                    SQLite refuses anything but reading (writes,\n"
	"                    ATTACH, PRAGMA, transactions)\n"
	"  --projections D   where projection files are found (default: the\n"
	"                    source tree's projections/)\n"
	"  --schemas D       the schema directory, for its upcasters (default:\n"
	"                    the demo's)\n"
	"  --min-position P  wait until the read model has reached P\n"
	"  --timeout-ms T    for that wait (default 5000)\n";

/* A projection's file: PROJ itself if it names a file, else DIR/PROJ.sql. */
static void projection_path(char *out, size_t size, const char *dir, const char *proj)
{
	struct stat st;

	if (strchr(proj, '/') || (stat(proj, &st) == 0 && S_ISREG(st.st_mode)))
		snprintf(out, size, "%s", proj);
	else
		snprintf(out, size, "%s/%s.sql", dir, proj);
}

/* Prints rows as an aligned table. */
static void print_table(json_t *rows)
{
	size_t n = json_array_size(rows), nc = 0, *w = NULL;
	const char **keys = NULL;
	json_t *first = json_array_get(rows, 0);
	const char *k;
	json_t *v;

	if (!first)
		return;
	nc = json_object_size(first);
	keys = calloc(nc, sizeof *keys);
	w = calloc(nc, sizeof *w);
	if (!keys || !w)
		goto out;
	size_t c = 0;
	json_object_foreach(first, k, v) {
		keys[c] = k;
		w[c] = strlen(k);
		c++;
	}
	for (size_t r = 0; r < n; r++)
		for (c = 0; c < nc; c++) {
			json_t *cell = json_object_get(json_array_get(rows, r), keys[c]);
			char *t = json_is_string(cell) ? strdup(json_string_value(cell))
						       : json_dumps(cell, JSON_COMPACT | JSON_ENCODE_ANY);
			if (t && strlen(t) > w[c])
				w[c] = strlen(t);
			free(t);
		}
	for (c = 0; c < nc; c++)
		printf("%-*s%s", (int)w[c], keys[c], c + 1 < nc ? "  " : "\n");
	for (size_t r = 0; r < n; r++)
		for (c = 0; c < nc; c++) {
			json_t *cell = json_object_get(json_array_get(rows, r), keys[c]);
			char *t = json_is_string(cell) ? strdup(json_string_value(cell))
						       : json_dumps(cell, JSON_COMPACT | JSON_ENCODE_ANY);
			printf("%-*s%s", (int)w[c], t ? t : "", c + 1 < nc ? "  " : "\n");
			free(t);
		}
out:
	free(keys);
	free(w);
}

/* Prints a row as a JSON line; a query's row callback. */
static int emit_row(const json_t *row, void *ctx)
{
	int *failed = ctx;

	if (emit(json_incref((json_t *)row), 0) != 0) {
		*failed = 1;
		return 1;
	}
	return 0;
}

static int collect(const json_t *row, void *ctx)
{
	return json_array_append((json_t *)ctx, (json_t *)row) ? 1 : 0;
}

static int cmd_query(const char *cmd, int argc, char **argv)
{
	const char *pos[3] = { NULL, NULL, NULL }, *sql = NULL;
	const char *projections = EVS_DEMO_PROJECTIONS;
	struct schema_args sa = { NULL, 0 };
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	uint64_t min_position = 0, timeout = 0, at = 0;
	json_t *params = json_object(), *rows = NULL;
	evs_store *store = NULL;
	const char *name;
	char path[4200];
	int k, err, rc = RC_OK, writer = 1;
	size_t npos = 0;
	struct args a;

	if (!params)
		return fail(cmd, "out of memory");
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			/* a query's name has no '=' */
			const char *eq = strchr(a.arg, '=');
			if (npos >= 2 && eq && eq != a.arg) {
				json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
				char key[256];
				snprintf(key, sizeof key, "%.*s", (int)(eq - a.arg), a.arg);
				json_object_set_new(params, key, v ? v : json_string(eq + 1));
			} else if (npos == 3) {
				rc = usage_error(cmd, "parameter '%s' is not NAME=VALUE", a.arg);
				goto out;
			} else {
				pos[npos++] = a.arg;
			}
		} else if (args_is(&a, "--sql")) {
			if (!(sql = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--projections")) {
			if (!(projections = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--schemas")) {
			if (!(sa.dir = args_value(&a))) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--min-position")) {
			if (args_u64(&a, 1, UINT64_MAX, &min_position) != 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else if (args_is(&a, "--timeout-ms")) {
			if (args_u64(&a, 1, 3600000, &timeout) != 0) {
				rc = RC_USAGE;
				goto out;
			}
		} else {
			rc = args_unknown(&a);
			goto out;
		}
	}
	if (npos < (sql ? 2u : 3u)) {
		rc = usage_error(cmd, "missing %s", npos == 0 ? "DIR" : npos == 1 ? "PROJECTION"
								   : "QUERY (or --sql SQL)");
		goto out;
	}
	if (sql && npos == 3) {
		rc = usage_error(cmd, "both a query ('%s') and --sql", pos[2]);
		goto out;
	}
	sa.dir = demo_find_schemas(sa.dir);
	projection_path(path, sizeof path, projections, pos[1]);
	{
		evs_options opts = EVS_OPTIONS_INIT;
		opts.schema_dir = sa.dir;
		err = evs_open(&store, pos[0], &opts);
		if (err == EVS_ELOCKED) {
			/* another process writes: read the read model as it is */
			writer = 0;
			opts.read_only = 1;
			err = evs_open(&store, pos[0], &opts);
		}
		if (err != 0) {
			store = NULL;
			rc = lib_fail(cmd, err, "cannot open store '%s'", pos[0]);
			goto out;
		}
	}
	if ((err = evs_projection_load(store, path, NULL, &name)) != 0) {
		rc = lib_fail(cmd, err, "cannot load projection '%s'", pos[1]);
		goto out;
	}
	if (writer) {
		evs_stats st;
		if ((err = evs_stats_get(&st, store)) != 0 ||
		    (err = evs_projections_start(store)) != 0) {
			rc = lib_fail(cmd, err, "cannot bring projection '%s' up to date", name);
			goto out;
		}
		qo.min_position = min_position ? min_position : st.head_position;
	} else {
		qo.min_position = min_position;
	}
	qo.timeout_ms = (uint32_t)timeout;
	{
		/* rows as they come, unless they make a table */
		int tty = isatty(STDOUT_FILENO), failed = 0;
		evs_row_cb cb = tty ? collect : emit_row;
		void *ctx = tty ? (void *)(rows = json_array()) : (void *)&failed;
		if (tty && !rows) {
			rc = fail(cmd, "out of memory");
			goto out;
		}
		err = sql ? evs_query_sql_each(store, name, sql, params, &qo, cb, ctx, &at)
			  : evs_query_each(store, name, pos[2], params, &qo, cb, ctx, &at);
		if (failed) {
			rc = emit_fail(cmd);
			goto out;
		}
		if (err != 0) {
			if (sql)
				rc = lib_fail(cmd, err, "SQL on projection '%s'", name);
			else
				rc = lib_fail(cmd, err, "query '%s' of projection '%s'", pos[2], name);
			goto out;
		}
		if (tty) {
			print_table(rows);
			printf("(%zu rows, read model at position %" PRIu64 ")\n",
			       json_array_size(rows), at);
		}
	}
out:
	json_decref(rows);
	json_decref(params);
	evs_close(store);
	return rc;
}

static const char usage_parked[] =
	"usage: evstore parked DIR PROJECTION [--replay] [--projections D]\n"
	"                      [--schemas D]\n"
	"\n"
	"Lists the events projection PROJECTION parked (its handlers failed on\n"
	"them; see the projection option park), one JSON object a line:\n"
	"{\"position\",\"stream\",\"version\",\"type\",\"error\",\"attempts\"}.\n"
	"With --replay, applies them again (after a fix): those that succeed\n"
	"leave the list; prints {\"replayed\",\"still_parked\"}.\n";

static int cmd_parked(const char *cmd, int argc, char **argv)
{
	const char *pos[2] = { NULL, NULL }, *projections = EVS_DEMO_PROJECTIONS, *name;
	struct schema_args sa = { NULL, 0 };
	evs_store *store = NULL;
	evs_options opts = EVS_OPTIONS_INIT;
	char path[4200];
	int k, err, rc = RC_OK, replay = 0;
	size_t npos = 0;
	struct args a;

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (npos == 2)
				return args_extra(&a);
			pos[npos++] = a.arg;
		} else if (args_is(&a, "--replay")) {
			if (args_flag(&a) != 0)
				return RC_USAGE;
			replay = 1;
		} else if (args_is(&a, "--projections")) {
			if (!(projections = args_value(&a)))
				return RC_USAGE;
		} else if (args_is(&a, "--schemas")) {
			if (!(sa.dir = args_value(&a)))
				return RC_USAGE;
		} else {
			return args_unknown(&a);
		}
	}
	if (npos < 2)
		return usage_error(cmd, "missing %s", npos ? "PROJECTION" : "DIR");
	projection_path(path, sizeof path, projections, pos[1]);
	opts.schema_dir = demo_find_schemas(sa.dir);
	opts.read_only = !replay;
	if ((err = evs_open(&store, pos[0], &opts)) != 0)
		return lib_fail(cmd, err, "cannot open store '%s'", pos[0]);
	if ((err = evs_projection_load(store, path, NULL, &name)) != 0) {
		rc = lib_fail(cmd, err, "cannot load projection '%s'", pos[1]);
		goto out;
	}
	if (replay) {
		uint64_t done, left;
		if ((err = evs_projection_replay_parked(store, name, &done, &left)) != 0) {
			rc = lib_fail(cmd, err, "cannot replay the parked events of '%s'", name);
			goto out;
		}
		if (emit(json_pack("{s:I, s:I}", "replayed", (json_int_t)done, "still_parked",
				   (json_int_t)left), 0) != 0)
			rc = emit_fail(cmd);
	} else {
		json_t *rows, *row;
		size_t i;
		if ((err = evs_projection_parked(store, name, &rows)) != 0) {
			rc = lib_fail(cmd, err, "cannot list the parked events of '%s'", name);
			goto out;
		}
		json_array_foreach(rows, i, row)
			if (rc == RC_OK && emit(json_incref(row), 0) != 0)
				rc = emit_fail(cmd);
		json_decref(rows);
	}
out:
	evs_close(store);
	return rc;
}

static const char usage_projections[] =
	"usage: evstore projections DIR [--projections D] [--schemas D]\n"
	"\n"
	"Shows each projection of the projections directory (default: the\n"
	"source tree's projections/) with its read model in DIR, one JSON\n"
	"object a line: {\"projection\",\"checkpoint\",\"head\",\"lag\",\n"
	"\"parked\",\"out_of_date\"}.  Nothing is applied: lag is how far the read model\n"
	"is behind the store.\n";

static int cmd_projections(const char *cmd, int argc, char **argv)
{
	const char *dir = NULL, *projections = EVS_DEMO_PROJECTIONS;
	struct schema_args sa = { NULL, 0 };
	evs_store *store = NULL;
	struct dirent **list = NULL;
	int k, n = 0, err, rc = RC_OK;
	struct args a;

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir)
				return args_extra(&a);
			dir = a.arg;
		} else if (args_is(&a, "--projections")) {
			if (!(projections = args_value(&a)))
				return RC_USAGE;
		} else if (args_is(&a, "--schemas")) {
			if (!(sa.dir = args_value(&a)))
				return RC_USAGE;
		} else {
			return args_unknown(&a);
		}
	}
	if (!dir)
		return usage_error(cmd, "missing DIR");
	sa.dir = demo_find_schemas(sa.dir);
	rc = open_store(&store, cmd, dir, OPEN_READ, EVS_DURABILITY_SYNC, &sa);
	if (rc != RC_OK)
		return rc;
	n = scandir(projections, &list, NULL, alphasort);
	if (n < 0) {
		rc = fail(cmd, "cannot list %s: %s", projections, strerror(errno));
		goto out;
	}
	for (int i = 0; i < n && rc == RC_OK; i++) {
		size_t len = strlen(list[i]->d_name);
		char path[4200];
		const char *name;
		evs_projection_status st;

		if (len < 5 || strcmp(list[i]->d_name + len - 4, ".sql") != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", projections, list[i]->d_name);
		if ((err = evs_projection_load(store, path, NULL, &name)) != 0 ||
		    (err = evs_projection_status_get(&st, store, name)) != 0) {
			rc = lib_fail(cmd, err, "projection %s", path);
			break;
		}
		if (emit(json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "projection", name,
				   "checkpoint", (json_int_t)st.checkpoint, "head",
				   (json_int_t)st.head, "lag", (json_int_t)st.lag, "parked",
				   (json_int_t)st.parked, "out_of_date", st.out_of_date), 0) != 0)
			rc = emit_fail(cmd);
	}
out:
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	evs_close(store);
	return rc;
}

/* ------------------------------------------------------------------ */
/* rebuild                                                             */

static const char usage_rebuild[] =
	"usage: evstore rebuild DIR [PROJECTION...|--all] [--index] [--snapshots]\n"
	"                       [--projections D] [--schemas D]\n"
	"\n"
	"Rebuilds derived data of the store in DIR from its log.\n"
	"\n"
	"--index (done first): the index is rebuilt from the whole log into a\n"
	"new file beside index.db, then copied over it in one transaction, so\n"
	"readers see the old index or the new one; the decider snapshots are\n"
	"dropped (add --snapshots to take them again now).  It needs the writer\n"
	"lock (no other process writing).  Progress\n"
	"in MiB of log goes to stderr.  Prints {\"store\",\"index\",\"head\"}.\n"
	"\n"
	"PROJECTION (a .sql file, or the name of one in the projections\n"
	"directory; --all: every one there): its read model is rebuilt into a\n"
	"new database beside the live one, then copied over it in one\n"
	"transaction, so queries see the old rows until then and the new ones\n"
	"after; an interrupted rebuild leaves the live one as it was.  Progress\n"
	"(events/s, ETA) goes to stderr.  Prints {\"projection\",\"position\"}\n"
	"for each.\n"
	"\n"
	"--snapshots: drops every decider snapshot, then takes one again for\n"
	"each stream of the deciders this tool knows (the orders demo's:\n"
	"order-<id>), folded from its events alone.  Prints\n"
	"{\"store\",\"snapshots\"} (how many were taken).\n"
	"\n"
	"Options:\n"
	"  --projections D   where projection files are found (default: the\n"
	"                    source tree's projections/)\n"
	"  --schemas D       the schema directory with the upcasters (default:\n"
	"                    the demo's, as 'evstore demo' finds it)\n";

struct rebuild_progress {
	const char *cmd, *name;
	double t0;
	int tty, shown;
	int bytes;              /* done and total are log bytes, not events */
};

/* evs_progress_cb: events/s and ETA, redrawn on a terminal, else a line
 * now and then. */
static void rebuild_progress(uint64_t done, uint64_t total, void *vctx)
{
	struct rebuild_progress *p = vctx;
	struct timespec ts;
	double now, rate, eta;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	rate = now > p->t0 ? (double)done / (now - p->t0) : 0;
	eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
	if (p->bytes)
		fprintf(stderr, "%sevstore: %s: %s: %.1f of %.1f MiB of log (%.1f MiB/s, ETA %.0f s)%s",
			p->tty ? "\r" : "", p->cmd, p->name, (double)done / 1048576.0,
			(double)total / 1048576.0, rate / 1048576.0, eta, p->tty ? "" : "\n");
	else
		fprintf(stderr, "%sevstore: %s: %s: %" PRIu64 " of %" PRIu64
			" (%.0f events/s, ETA %.0f s)%s", p->tty ? "\r" : "", p->cmd, p->name,
			done, total, rate, eta, p->tty ? "" : "\n");
	p->shown = 1;
}

struct name_list {
	char **v;
	size_t n, cap;
};

/* evs_name_cb: collects the names of order streams. */
static int collect_order(const char *name, uint64_t last_version, void *vctx)
{
	struct name_list *l = vctx;

	(void)last_version;
	if (strncmp(name, "order-", 6) != 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		char **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return 1;
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(name)))
		return 1;
	l->n++;
	return 0;
}

/* Rebuilds the read model of projection file `path`; prints its line. */
static int rebuild_projection(const char *cmd, evs_store *store, const char *path)
{
	struct rebuild_progress pr = { cmd, path, 0, isatty(STDERR_FILENO), 0, 0 };
	struct timespec ts;
	uint64_t at;
	int err;
	const char *b = strrchr(path, '/');

	pr.name = b ? b + 1 : path;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	pr.t0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	err = evs_projection_rebuild(store, path, rebuild_progress, &pr, &at);
	if (pr.shown && pr.tty)
		fputc('\n', stderr);
	if (err != 0)
		return lib_fail(cmd, err, "cannot rebuild %s", path);
	if (emit(json_pack("{s:s, s:I}", "projection", path, "position", (json_int_t)at), 0) != 0)
		return emit_fail(cmd);
	return RC_OK;
}

static int cmd_rebuild(const char *cmd, int argc, char **argv)
{
	const char *dir = NULL, *projections = EVS_DEMO_PROJECTIONS;
	const char **projs;
	size_t nprojs = 0;
	struct schema_args sa = { NULL, 0 };
	struct name_list names = { NULL, 0, 0 };
	int snapshots = 0, all = 0, index = 0, k, err, rc = RC_OK;
	evs_store *store = NULL;
	evs_decider d;
	struct args a;
	size_t i;

	projs = calloc((size_t)argc + 1, sizeof *projs);
	if (!projs)
		return fail(cmd, "out of memory");
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir)
				projs[nprojs++] = a.arg;
			else
				dir = a.arg;
		} else if (args_is(&a, "--all")) {
			if (args_flag(&a) != 0) {
				free(projs);
				return RC_USAGE;
			}
			all = 1;
		} else if (args_is(&a, "--projections")) {
			if (!(projections = args_value(&a))) {
				free(projs);
				return RC_USAGE;
			}
		} else if (args_is(&a, "--snapshots")) {
			if (args_flag(&a) != 0) {
				free(projs);
				return RC_USAGE;
			}
			snapshots = 1;
		} else if (args_is(&a, "--index")) {
			if (args_flag(&a) != 0) {
				free(projs);
				return RC_USAGE;
			}
			index = 1;
		} else if (args_is(&a, "--schemas")) {
			if (!(sa.dir = args_value(&a))) {
				free(projs);
				return RC_USAGE;
			}
		} else {
			free(projs);
			return args_unknown(&a);
		}
	}
	if (!dir || (!snapshots && !all && !index && nprojs == 0)) {
		free(projs);
		return usage_error(cmd, !dir ? "missing DIR" : "say what to rebuild: "
				   "PROJECTION..., --all, --index or --snapshots");
	}
	if (!(sa.dir = demo_find_schemas(sa.dir))) {
		free(projs);
		return fail(cmd, "cannot find the demo's event schemas; give --schemas DIR");
	}

	if (index) {
		struct rebuild_progress pr = { cmd, "index", 0, isatty(STDERR_FILENO), 0, 1 };
		struct timespec ts;
		evs_options o = EVS_OPTIONS_INIT;
		o.schema_dir = sa.dir;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		pr.t0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
		err = evs_rebuild_index(dir, &o, rebuild_progress, &pr);
		if (pr.shown && pr.tty)
			fputc('\n', stderr);
		if (err != 0) {
			free(projs);
			return lib_fail(cmd, err, "cannot rebuild the index of '%s'", dir);
		}
	}
	rc = open_store(&store, cmd, dir, OPEN_WRITE, EVS_DURABILITY_SYNC, &sa);
	if (rc != RC_OK) {
		free(projs);
		return rc;
	}
	if (index) {
		evs_stats st;
		if ((err = evs_stats_get(&st, store)) != 0)
			rc = lib_fail(cmd, err, "cannot read the stats of '%s'", dir);
		else if (emit(json_pack("{s:s, s:s, s:I}", "store", dir, "index", "rebuilt", "head",
					(json_int_t)st.head_position), 0) != 0)
			rc = emit_fail(cmd);
	}
	for (i = 0; i < nprojs && rc == RC_OK; i++) {
		char path[4200];
		projection_path(path, sizeof path, projections, projs[i]);
		rc = rebuild_projection(cmd, store, path);
	}
	if (all && rc == RC_OK) {
		struct dirent **list = NULL;
		int n = scandir(projections, &list, NULL, alphasort);
		if (n < 0)
			rc = fail(cmd, "cannot list %s: %s", projections, strerror(errno));
		for (int j = 0; j < n; j++) {
			size_t len = strlen(list[j]->d_name);
			char path[4200];
			if (rc == RC_OK && len > 4 && strcmp(list[j]->d_name + len - 4, ".sql") == 0) {
				snprintf(path, sizeof path, "%s/%s", projections, list[j]->d_name);
				rc = rebuild_projection(cmd, store, path);
			}
			free(list[j]);
		}
		free(list);
	}
	if (rc != RC_OK || !snapshots)
		goto out;
	orders_decider(&d);
	if ((err = evs_snapshots_drop(store)) != 0) {
		rc = lib_fail(cmd, err, "cannot drop the snapshots");
		goto out;
	}
	if ((err = evs_list_streams(store, NULL, 0, collect_order, &names)) != 0) {
		rc = lib_fail(cmd, err, "cannot list the streams");
		goto out;
	}
	for (i = 0; i < names.n; i++) {
		if ((err = evs_snapshot_take(store, &d, names.v[i], NULL)) != 0) {
			rc = lib_fail(cmd, err, "cannot take the snapshot of '%s'", names.v[i]);
			goto out;
		}
		if (names.n >= 1000 && (i + 1) % 1000 == 0)
			fprintf(stderr, "evstore: %s: %zu of %zu streams\n", cmd, i + 1, names.n);
	}
	if (emit(json_pack("{s:s, s:I}", "store", dir, "snapshots", (json_int_t)names.n), 0) != 0)
		rc = emit_fail(cmd);
out:
	/* closing writes the queued snapshots */
	evs_close(store);
	for (i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	free(projs);
	return rc;
}

/* ------------------------------------------------------------------ */
/* generate                                                            */

static const char usage_generate[] =
	"usage: evstore generate DIR [--events N] [--streams S] [--batch B]\n"
	"                        [--seed X] [--durability sync|none]\n"
	"                        [--schemas DIR [--strict]]\n"
	"\n"
	"Appends a generated workload of web-shop orders to the store in DIR\n"
	"(created if missing): streams order-1 .. order-S, each receiving\n"
	"OrderPlaced, ItemAdded events (with the odd ItemQuantityChanged,\n"
	"ItemRemoved, DiscountApplied, ShippingAddressChanged), then OrderPaid,\n"
	"OrderShipped and OrderDelivered.  Each append is B events to one\n"
	"stream, the streams taking turns, with the stream's exact version as\n"
	"the expected version.  The same seed gives the same events (the event\n"
	"ids too, when the store starts empty).  Streams that already exist are\n"
	"continued.\n"
	"\n"
	"Options:\n"
	"  --events N       events in all (default 10000)\n"
	"  --streams S      number of order streams (default 100)\n"
	"  --batch B        events per append (default 10)\n"
	"  --seed X         seed of the generator (default 42)\n"
	"  --durability D   sync (default) or none\n"
	"  --schemas DIR    validate every event against DIR's JSON Schemas\n"
	"  --strict         with --schemas: refuse types without a schema\n"
	"\n"
	"Prints progress to stderr, then {\"events\",\"streams\",\"appends\",\n"
	"\"seconds\",\"events_per_second\",\"head_position\"}, the store's\n"
	"statistics (as 'evstore stats'), and the events of order-1 read\n"
	"back (as 'evstore read').\n";

/* splitmix64: tiny, fast, and the same sequence on every platform. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

/* A random (version 4) UUID from the generator. */
static void rng_uuid(uint64_t *s, uint8_t out[16])
{
	uint64_t hi = rng_next(s), lo = rng_next(s);
	int i;

	for (i = 0; i < 8; i++) {
		out[i] = (uint8_t)(hi >> (56 - 8 * i));
		out[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
	}
	out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
	out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

static const struct place {
	const char *city, *country, *currency, *region;
} places[] = {
	{ "Lisbon", "PT", "EUR", "eu-west" },
	{ "Porto", "PT", "EUR", "eu-west" },
	{ "Berlin", "DE", "EUR", "eu-central" },
	{ "Hamburg", "DE", "EUR", "eu-central" },
	{ "Lyon", "FR", "EUR", "eu-west" },
	{ "Leeds", "GB", "GBP", "eu-west" },
	{ "Krakow", "PL", "PLN", "eu-central" },
	{ "Austin", "US", "USD", "us-central" },
	{ "Portland", "US", "USD", "us-west" },
	{ "Toronto", "CA", "CAD", "us-east" },
	{ "Osaka", "JP", "JPY", "ap-northeast" },
	{ "Melbourne", "AU", "AUD", "ap-southeast" },
};

static const char *const first_names[] = {
	"Ana", "Jonas", "Chloe", "Priya", "Mateus", "Hana", "Liam", "Zofia",
	"Omar", "Grace", "Kenji", "Ines",
};

static const char *const last_names[] = {
	"Silva", "Becker", "Martin", "Nowak", "Walker", "Tanaka", "Costa",
	"Novak", "Haddad", "Okafor", "Murphy", "Larsen",
};

static const char *const streets[] = {
	"Harbour Road", "Linden Allee", "Rue des Tanneurs", "Mill Lane",
	"Ulica Dluga", "Elm Street", "Queen Street West", "Sakura Dori",
	"Rua Augusta", "Collins Street",
};

static const struct product {
	const char *sku, *name;
	int64_t price_cents;
} products[] = {
	{ "SKU-10423", "Ceramic mug, blue", 1299 },
	{ "SKU-10587", "French press, 1 l", 3499 },
	{ "SKU-11002", "Coffee beans, Ethiopia, 250 g", 1150 },
	{ "SKU-11310", "Burr grinder", 8999 },
	{ "SKU-12044", "Linen tea towel", 899 },
	{ "SKU-12519", "Cast iron skillet, 26 cm", 4450 },
	{ "SKU-13007", "Chef's knife, 20 cm", 7900 },
	{ "SKU-13388", "Bamboo cutting board", 2299 },
	{ "SKU-14150", "Glass storage jars, set of 3", 2799 },
	{ "SKU-14622", "Digital kitchen scale", 2499 },
	{ "SKU-15071", "Espresso cups, set of 4", 3199 },
	{ "SKU-15930", "Stainless steel kettle", 5900 },
};

static const char *const channels[] = { "web", "ios", "android", "phone" };
static const char *const carriers[] = {
	"DHL", "UPS", "FedEx", "PostNL", "Royal Mail", "Japan Post",
};
static const char *const discount_codes[] = {
	"WELCOME10", "SPRING15", "LOYALTY5", "BUNDLE20",
};
static const char *const remove_reasons[] = {
	"customer_request", "out_of_stock", "duplicate_line",
};
static const char *const address_reasons[] = {
	"customer_moved", "typo_corrected", "deliver_to_work",
};
static const char *const card_brands[] = { "visa", "mastercard", "amex" };
static const char *const providers[] = { "stripe", "adyen", "braintree" };

/* What the generator knows of one order stream. */
struct gen_order {
	uint64_t version;      /* the stream's version after the last append */
	uint64_t base_version; /* its version when the run began */
	uint64_t quota;        /* events this run gives it */
	uint64_t done;         /* of which generated */
	int64_t clock;         /* seconds since the epoch of its last event */
	int64_t subtotal;      /* cents */
	uint64_t tracking;
	uint32_t customer;
	uint32_t lines;        /* item lines added in this run */
	uint32_t postcode;
	uint16_t house;
	uint8_t place, first, last, street, carrier;
	uint8_t correlation[16];
	uint8_t last_id[16];
};

static json_t *address_json(const struct gen_order *o)
{
	const struct place *p = &places[o->place];
	char name[64], street[64], postcode[16];

	snprintf(name, sizeof name, "%s %s", first_names[o->first],
		 last_names[o->last]);
	snprintf(street, sizeof street, "%u %s", (unsigned)o->house,
		 streets[o->street]);
	snprintf(postcode, sizeof postcode, "%05u", (unsigned)o->postcode);
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name,
			 "street", street, "city", p->city,
			 "postcode", postcode, "country", p->country);
}

static void new_address(uint64_t *rng, struct gen_order *o)
{
	o->first = (uint8_t)rng_below(rng, COUNT_OF(first_names));
	o->last = (uint8_t)rng_below(rng, COUNT_OF(last_names));
	o->street = (uint8_t)rng_below(rng, COUNT_OF(streets));
	o->house = (uint16_t)(1 + rng_below(rng, 240));
	o->postcode = 1000 + rng_below(rng, 98000);
}

/* A warehouse near the order; `pick` chooses one of three. */
static json_t *warehouse_json(const struct gen_order *o, uint32_t pick)
{
	char id[48];

	snprintf(id, sizeof id, "wh-%s-%u", places[o->place].region,
		 (unsigned)(1 + pick % 3));
	return json_pack("{s:s, s:s}", "id", id,
			 "region", places[o->place].region);
}

/*
 * The data object (new reference) of the next event of order `o`, stream
 * number `n`, and its type in *type.  The order's life: OrderPlaced; item
 * changes; then OrderPaid, OrderShipped, OrderDelivered as its last three
 * events of this run.  A stream that existed before the run skips
 * OrderPlaced.
 *
 * Every random number is drawn into a variable, in a fixed order, before
 * the object is built: the order in which function arguments are evaluated
 * is unspecified, and the workload must be the same for every compiler.
 */
static json_t *gen_data(uint64_t *rng, struct gen_order *o, uint64_t n,
			const char **type)
{
	const struct place *pl = &places[o->place];
	const struct product *pr;
	uint64_t k = o->done, q = o->quota;
	uint64_t tail = q <= 2 ? 0 : (q - 2 < 3 ? q - 2 : 3);
	char order_id[32], customer_id[32], ts[96], text[64];
	uint32_t qty, roll, pick, line;
	int64_t amount;

	snprintf(order_id, sizeof order_id, "order-%" PRIu64, n);
	snprintf(customer_id, sizeof customer_id, "customer-%u",
		 (unsigned)o->customer);
	o->clock += 20 + rng_below(rng, 600);

	if (k == 0 && o->base_version == 0) {
		const char *channel;

		pr = &products[rng_below(rng, COUNT_OF(products))];
		qty = 1 + rng_below(rng, 3);
		channel = channels[rng_below(rng, COUNT_OF(channels))];
		o->lines = 1;
		o->subtotal = pr->price_cents * qty;
		format_time_s(ts, sizeof ts, o->clock, 0);
		*type = "OrderPlaced";
		return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, "
				 "s:[{s:s, s:i, s:I}], s:I}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "placed_at", ts,
				 "currency", pl->currency,
				 "channel", channel,
				 "shipping_address", address_json(o),
				 "items", "sku", pr->sku, "qty", (int)qty,
				 "price_cents", (json_int_t)pr->price_cents,
				 "total_cents", (json_int_t)o->subtotal);
	}

	if (k >= q - tail && k - (q - tail) == 0) {
		const char *provider, *brand;
		char last4[8];

		provider = providers[rng_below(rng, COUNT_OF(providers))];
		brand = card_brands[rng_below(rng, COUNT_OF(card_brands))];
		snprintf(last4, sizeof last4, "%04u",
			 (unsigned)rng_below(rng, 10000));
		snprintf(text, sizeof text, "txn_%016" PRIx64, rng_next(rng));
		format_time_s(ts, sizeof ts, o->clock, 0);
		*type = "OrderPaid";
		return json_pack("{s:s, s:s, s:I, s:s, s:s, "
				 "s:{s:s, s:s, s:s, s:{s:s, s:s}}, s:s}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "amount_cents", (json_int_t)o->subtotal,
				 "currency", pl->currency,
				 "paid_at", ts,
				 "payment",
				 "method", "card",
				 "provider", provider,
				 "transaction_id", text,
				 "card", "brand", brand, "last4", last4,
				 "billing_country", pl->country);
	}
	if (k >= q - tail && k - (q - tail) == 1) {
		const char *service;
		char eta[96];
		int parcels, grams;

		o->clock += 3600 * (2 + rng_below(rng, 46));
		o->carrier = (uint8_t)rng_below(rng, COUNT_OF(carriers));
		o->tracking = rng_next(rng) % UINT64_C(1000000000000);
		format_time_s(eta, sizeof eta,
			      o->clock + 86400 * (1 + rng_below(rng, 5)), 1);
		service = rng_below(rng, 4) ? "standard" : "express";
		pick = rng_below(rng, 3);
		parcels = 1 + (int)rng_below(rng, 3);
		grams = 200 + (int)rng_below(rng, 9800);
		format_time_s(ts, sizeof ts, o->clock, 0);
		snprintf(text, sizeof text, "TRK%012" PRIu64, o->tracking);
		*type = "OrderShipped";
		return json_pack("{s:s, s:s, s:s, s:s, s:s, "
				 "s:{s:o, s:s, s:s}, s:i, s:i, s:s, s:s}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "carrier", carriers[o->carrier],
				 "tracking_number", text,
				 "service", service,
				 "shipped_from",
				 "warehouse", warehouse_json(o, pick),
				 "city", pl->city,
				 "country", pl->country,
				 "parcels", parcels,
				 "weight_grams", grams,
				 "shipped_at", ts,
				 "estimated_delivery", eta);
	}
	if (k >= q - tail) {
		const char *signer;

		o->clock += 86400 * (1 + rng_below(rng, 4));
		signer = first_names[rng_below(rng, COUNT_OF(first_names))];
		format_time_s(ts, sizeof ts, o->clock, 0);
		snprintf(text, sizeof text, "TRK%012" PRIu64, o->tracking);
		*type = "OrderDelivered";
		return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "delivered_at", ts,
				 "carrier", carriers[o->carrier],
				 "tracking_number", text,
				 "signed_by", signer,
				 "address", address_json(o));
	}

	format_time_s(ts, sizeof ts, o->clock, 0);
	roll = o->lines == 0 ? 0 : rng_below(rng, 100);
	if (roll < 75) {
		int tax_bp;

		pr = &products[rng_below(rng, COUNT_OF(products))];
		qty = 1 + rng_below(rng, 4);
		tax_bp = 500 + 100 * (int)rng_below(rng, 20);
		pick = rng_below(rng, 3);
		o->lines++;
		o->subtotal += pr->price_cents * qty;
		*type = "ItemAdded";
		return json_pack("{s:s, s:s, s:i, s:{s:s, s:s, s:i, s:I, s:i}, "
				 "s:s, s:I, s:s, s:o}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "line", (int)o->lines,
				 "item",
				 "sku", pr->sku,
				 "name", pr->name,
				 "qty", (int)qty,
				 "price_cents", (json_int_t)pr->price_cents,
				 "tax_rate_bp", tax_bp,
				 "currency", pl->currency,
				 "subtotal_cents", (json_int_t)o->subtotal,
				 "added_at", ts,
				 "warehouse", warehouse_json(o, pick));
	}
	if (roll < 87) {
		uint32_t old_qty;

		line = 1 + rng_below(rng, o->lines);
		pr = &products[rng_below(rng, COUNT_OF(products))];
		old_qty = 1 + rng_below(rng, 4);
		qty = old_qty + 1 + rng_below(rng, 3);
		pick = rng_below(rng, 3);
		o->subtotal += pr->price_cents * (qty - old_qty);
		*type = "ItemQuantityChanged";
		return json_pack("{s:s, s:s, s:i, s:s, s:i, s:i, s:I, s:s, "
				 "s:I, s:s, s:o}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "line", (int)line,
				 "sku", pr->sku,
				 "old_qty", (int)old_qty,
				 "new_qty", (int)qty,
				 "price_cents", (json_int_t)pr->price_cents,
				 "currency", pl->currency,
				 "subtotal_cents", (json_int_t)o->subtotal,
				 "changed_at", ts,
				 "warehouse", warehouse_json(o, pick));
	}
	if (roll < 94) {
		const char *reason;

		line = 1 + rng_below(rng, o->lines);
		pr = &products[rng_below(rng, COUNT_OF(products))];
		qty = 1 + rng_below(rng, 2);
		reason = remove_reasons[rng_below(rng, COUNT_OF(remove_reasons))];
		pick = rng_below(rng, 3);
		amount = pr->price_cents * qty;
		if (amount > o->subtotal)
			amount = o->subtotal;
		o->subtotal -= amount;
		*type = "ItemRemoved";
		return json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:I, s:s, "
				 "s:I, s:s, s:o}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "line", (int)line,
				 "sku", pr->sku,
				 "qty", (int)qty,
				 "reason", reason,
				 "refund_cents", (json_int_t)amount,
				 "currency", pl->currency,
				 "subtotal_cents", (json_int_t)o->subtotal,
				 "removed_at", ts,
				 "warehouse", warehouse_json(o, pick));
	}
	if (roll < 98) {
		const char *code, *channel;
		int percent;

		percent = 5 * (1 + (int)rng_below(rng, 4));
		code = discount_codes[rng_below(rng, COUNT_OF(discount_codes))];
		snprintf(text, sizeof text, "cmp-2026-%02u",
			 (unsigned)(1 + rng_below(rng, 12)));
		channel = channels[rng_below(rng, COUNT_OF(channels))];
		amount = o->subtotal * percent / 100;
		o->subtotal -= amount;
		*type = "DiscountApplied";
		return json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:s, s:I, "
				 "s:s, s:{s:s, s:s}}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "code", code,
				 "kind", "percent",
				 "percent", percent,
				 "amount_cents", (json_int_t)amount,
				 "currency", pl->currency,
				 "subtotal_cents", (json_int_t)o->subtotal,
				 "applied_at", ts,
				 "campaign", "id", text, "channel", channel);
	}
	{
		const char *reason;

		snprintf(text, sizeof text, "%05u", (unsigned)o->postcode);
		new_address(rng, o);
		reason = address_reasons[rng_below(rng,
						    COUNT_OF(address_reasons))];
		*type = "ShippingAddressChanged";
		return json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}",
				 "order_id", order_id,
				 "customer_id", customer_id,
				 "address", address_json(o),
				 "previous_postcode", text,
				 "reason", reason,
				 "changed_at", ts);
	}
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_generate(const char *cmd, int argc, char **argv)
{
	uint64_t nevents = 10000, nstreams = 100, batch = 10, seed = 42;
	evs_durability durability = EVS_DURABILITY_SYNC;
	struct schema_args sa = { NULL, 0 };
	const char *dir = NULL;
	struct gen_order *orders = NULL;
	evs_new_event *events = NULL;
	char **datas = NULL, (*metas)[128] = NULL;
	uint8_t (*ids)[16] = NULL;
	uint64_t rng, id_rng, left, appends, s, done, used_streams;
	uint64_t head0, mix;
	evs_store *store = NULL;
	evs_append_result res;
	evs_stats st;
	struct args a;
	int k, err, rc = RC_OK, last_tenth = 0;
	size_t i, n;
	double t0, secs;
	json_t *obj;

	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (dir)
				return args_extra(&a);
			dir = a.arg;
		} else if (args_is(&a, "--events")) {
			if (args_u64(&a, 0, UINT64_C(1) << 40, &nevents) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--streams")) {
			if (args_u64(&a, 1, UINT64_C(100000000), &nstreams) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--batch")) {
			if (args_u64(&a, 1, 100000, &batch) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--seed")) {
			if (args_u64(&a, 0, UINT64_MAX, &seed) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--durability")) {
			if (args_durability(&a, &durability) != 0)
				return RC_USAGE;
		} else if ((k = args_schema(&a, &sa)) != 0) {
			if (k < 0)
				return RC_USAGE;
		} else {
			return args_unknown(&a);
		}
	}
	if (!dir)
		return usage_error(cmd, "missing DIR");

	orders = calloc((size_t)nstreams, sizeof *orders);
	events = calloc((size_t)batch, sizeof *events);
	datas = calloc((size_t)batch, sizeof *datas);
	metas = calloc((size_t)batch, sizeof *metas);
	ids = calloc((size_t)batch, sizeof *ids);
	if (!orders || !events || !datas || !metas || !ids) {
		rc = fail(cmd, "out of memory");
		goto out;
	}

	/* The schedule: B events to one stream per append, streams in turn. */
	for (appends = 0, left = nevents; left > 0; appends++) {
		n = (size_t)(left < batch ? left : batch);
		orders[appends % nstreams].quota += n;
		left -= n;
	}
	used_streams = appends < nstreams ? appends : nstreams;

	rc = open_store(&store, cmd, dir, OPEN_CREATE, durability, &sa);
	if (rc != RC_OK)
		goto out;
	memset(&st, 0, sizeof st);
	err = evs_stats_get(&st, store);
	if (err != 0) {
		rc = lib_fail(cmd, err, "cannot get the statistics");
		goto out;
	}
	head0 = st.head_position;

	/*
	 * Two generators: one for the workload, a pure function of the seed,
	 * and one for event ids, also mixing in the store's head so that a
	 * second run into the same store does not repeat the first run's ids
	 * (which the library would take for idempotent retries).
	 */
	rng = seed;
	mix = head0;
	id_rng = seed ^ rng_next(&mix);
	for (s = 0; s < used_streams; s++) {
		struct gen_order *o = &orders[s];
		char stream[32];
		evs_stream_info info;

		snprintf(stream, sizeof stream, "order-%" PRIu64, s + 1);
		memset(&info, 0, sizeof info);
		err = evs_stream_info_get(&info, store, stream);
		if (err != 0) {
			rc = lib_fail(cmd, err, "cannot get stream '%s'", stream);
			goto out;
		}
		o->version = o->base_version = info.last_version;
		o->customer = 1 + rng_below(&rng, (uint32_t)(nstreams / 3 + 1));
		o->place = (uint8_t)rng_below(&rng, COUNT_OF(places));
		new_address(&rng, o);
		/* Orders of 2026, spread over the year. */
		o->clock = INT64_C(1767225600) + (int64_t)rng_below(&rng,
							       360 * 86400);
		rng_uuid(&rng, o->correlation);
	}

	t0 = now_seconds();
	done = 0;
	for (s = 0, left = nevents; left > 0; s = (s + 1) % nstreams) {
		struct gen_order *o = &orders[s];
		char stream[32], corr[37], cause[37];

		n = (size_t)(left < batch ? left : batch);
		snprintf(stream, sizeof stream, "order-%" PRIu64, s + 1);
		for (i = 0; i < n; i++) {
			json_t *data = gen_data(&rng, o, s + 1, &events[i].type);

			datas[i] = data ? dump_compact(data) : NULL;
			json_decref(data);
			if (!datas[i]) {
				rc = fail(cmd, "out of memory");
				goto out;
			}
			rng_uuid(&id_rng, ids[i]);
			evs_uuid_format(corr, o->correlation);
			evs_uuid_format(cause, o->done > 0 ? o->last_id
							   : o->correlation);
			snprintf(metas[i], sizeof metas[i],
				 "{\"correlation_id\":\"%s\","
				 "\"causation_id\":\"%s\"}", corr, cause);
			memcpy(o->last_id, ids[i], 16);
			o->done++;
			events[i].data = datas[i];
			events[i].metadata = metas[i];
			events[i].id = ids[i];
			events[i].schema_version = 1;
		}
		memset(&res, 0, sizeof res);
		err = evs_append(store, stream, (int64_t)o->version, events, n,
				 &res);
		if (err != 0) {
			rc = lib_fail(cmd, err, "cannot append %zu events to "
				      "stream '%s' at expected version %" PRIu64,
				      n, stream, o->version);
			goto out;
		}
		for (i = 0; i < n; i++) {
			free(datas[i]);
			datas[i] = NULL;
		}
		if (res.idempotent || res.first_version != o->version + 1) {
			rc = fail(cmd, "stream '%s': the append at expected "
				  "version %" PRIu64 " returned versions %"
				  PRIu64 "..%" PRIu64 "%s", stream, o->version,
				  res.first_version, res.last_version,
				  res.idempotent ? " (idempotent)" : "");
			goto out;
		}
		o->version = res.last_version;
		left -= n;
		done += n;
		if ((int)(done * 10 / nevents) > last_tenth) {
			last_tenth = (int)(done * 10 / nevents);
			fprintf(stderr, "generate: %3d%% (%" PRIu64 "/%" PRIu64
				" events)\n", last_tenth * 10, done, nevents);
		}
	}
	secs = now_seconds() - t0;

	memset(&st, 0, sizeof st);
	err = evs_stats_get(&st, store);
	if (err != 0) {
		rc = lib_fail(cmd, err, "cannot get the statistics");
		goto out;
	}
	obj = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I}",
			"events", (json_int_t)nevents,
			"streams", (json_int_t)used_streams,
			"appends", (json_int_t)appends,
			"seconds", secs,
			"events_per_second", (json_int_t)(secs > 0 ?
				(double)nevents / secs + 0.5 : (double)nevents),
			"head_position", (json_int_t)st.head_position);
	if (emit(obj, JSON_REAL_PRECISION(6)) != 0 ||
	    emit(stats_json(dir, &st), 0) != 0) {
		rc = emit_fail(cmd);
		goto out;
	}
	/* A sample of what was stored: the first order, read back. */
	{
		struct print_ctx pctx = { cmd, 0, NULL };
		err = evs_read_stream(store, "order-1", 1, EVS_FORWARD, 0, print_event, &pctx);
		if (pctx.failed)
			rc = 1;
		else if (err != 0 && !(err == EVS_ENOTFOUND && st.head_position == 0))
			/* (an empty store has no order-1 to show) */
			rc = lib_fail(cmd, err, "cannot read back stream 'order-1'");
	}
out:
	evs_close(store);
	if (datas)
		for (i = 0; i < batch; i++)
			free(datas[i]);
	free(orders);
	free(events);
	free(datas);
	free(metas);
	free(ids);
	return rc;
}

/* ------------------------------------------------------------------ */
/* serve                                                               */

static const char usage_serve[] =
	"usage: evstore serve DIR [--listen ADDR] [--port N] [--auth FILE]\n"
	"                     [--schemas DIR|--no-schemas]\n"
	"                     [--projections DIR|--no-projections]\n"
	"                     [--durability sync|none] [--max-body BYTES]\n"
	"                     [--max-header BYTES] [--max-connections N]\n"
	"                     [--timeout S] [--max-subscribers N]\n"
	"                     [--heartbeat S] [--max-limit N]\n"
	"\n"
	"Serves the store in DIR (created if missing) over HTTP/1.1 with JSON:\n"
	"appends, reads, live subscriptions (Server-Sent Events), the orders\n"
	"commands, read-model queries and Prometheus metrics (see the README\n"
	"for the routes).  Prints {\"listening\",\"store\",\"auth\",\"projections\"}\n"
	"once it listens; runs until SIGTERM or SIGINT, then finishes the\n"
	"requests in flight, stops the projections at a batch boundary and\n"
	"closes the store.\n"
	"\n"
	"Options:\n"
	"  --listen ADDR         IPv4 or IPv6 address (default 127.0.0.1);\n"
	"                        other than loopback only with --auth\n"
	"  --port N              TCP port (default 2113; 0: any free one)\n"
	"  --auth FILE           bearer tokens, one \"TOKEN ROLE\" a line (ROLE\n"
	"                        read, write or admin; tokens of 16 to 255\n"
	"                        printable characters).  Without it every\n"
	"                        caller may read and write\n"
	"  --schemas DIR         event schemas and upcasters (default: the\n"
	"                        source tree's schema/events, if found)\n"
	"  --no-schemas          no validation, no upcasters\n"
	"  --projections DIR     run every .sql projection of DIR (default:\n"
	"                        the source tree's projections/, if found)\n"
	"  --no-projections      run none\n"
	"  --durability D        sync (default) or none\n"
	"  --max-body BYTES      largest request body (default 4 MiB)\n"
	"  --max-header BYTES    memory for a request's line, headers and\n"
	"                        buffers (default 32 KiB)\n"
	"  --max-connections N   open connections (default 256)\n"
	"  --timeout S           a request must arrive whole within S seconds\n"
	"                        (default 30); slower clients are dropped\n"
	"  --max-subscribers N   open /subscribe streams (default 64)\n"
	"  --heartbeat S         comment line on an idle stream (default 15)\n"
	"  --max-limit N         most events or streams one page may ask for\n"
	"                        (default 1000)\n";

static int cmd_serve(const char *cmd, int argc, char **argv)
{
	serve_options o;
	struct args a;
	uint64_t v;
	int k, no_schemas = 0, no_projections = 0;
	const char *schemas = NULL, *projections = NULL;

	memset(&o, 0, sizeof o);
	o.listen = "127.0.0.1";
	o.port = SERVE_DEFAULT_PORT;
	o.durability = EVS_DURABILITY_SYNC;
	o.max_body = SERVE_DEFAULT_MAX_BODY;
	o.max_header = SERVE_DEFAULT_MAX_HEADER;
	o.max_connections = SERVE_DEFAULT_MAX_CONNECTIONS;
	o.timeout_s = SERVE_DEFAULT_TIMEOUT_S;
	o.max_subscribers = SERVE_DEFAULT_MAX_SUBSCRIBERS;
	o.heartbeat_s = SERVE_DEFAULT_HEARTBEAT_S;
	o.max_limit = SERVE_DEFAULT_MAX_LIMIT;
	args_init(&a, cmd, argc, argv);
	while ((k = args_next(&a)) >= 0) {
		if (k == 0) {
			if (o.dir)
				return args_extra(&a);
			o.dir = a.arg;
		} else if (args_is(&a, "--listen")) {
			if (!(o.listen = args_value(&a)))
				return RC_USAGE;
		} else if (args_is(&a, "--port")) {
			if (args_u64(&a, 0, 65535, &v) != 0)
				return RC_USAGE;
			o.port = (unsigned)v;
		} else if (args_is(&a, "--auth")) {
			if (!(o.auth_file = args_value(&a)))
				return RC_USAGE;
		} else if (args_is(&a, "--schemas")) {
			if (!(schemas = args_value(&a)))
				return RC_USAGE;
		} else if (args_is(&a, "--no-schemas")) {
			if (args_flag(&a) != 0)
				return RC_USAGE;
			no_schemas = 1;
		} else if (args_is(&a, "--projections")) {
			if (!(projections = args_value(&a)))
				return RC_USAGE;
		} else if (args_is(&a, "--no-projections")) {
			if (args_flag(&a) != 0)
				return RC_USAGE;
			no_projections = 1;
		} else if (args_is(&a, "--durability")) {
			if (args_durability(&a, &o.durability) != 0)
				return RC_USAGE;
		} else if (args_is(&a, "--max-body")) {
			if (args_u64(&a, 1024, 64u << 20, &v) != 0)
				return RC_USAGE;
			o.max_body = (size_t)v;
		} else if (args_is(&a, "--max-header")) {
			if (args_u64(&a, 8192, 1u << 20, &v) != 0)
				return RC_USAGE;
			o.max_header = (size_t)v;
		} else if (args_is(&a, "--max-connections")) {
			if (args_u64(&a, 1, 10000, &v) != 0)
				return RC_USAGE;
			o.max_connections = (unsigned)v;
		} else if (args_is(&a, "--timeout")) {
			if (args_u64(&a, 1, 3600, &v) != 0)
				return RC_USAGE;
			o.timeout_s = (unsigned)v;
		} else if (args_is(&a, "--max-subscribers")) {
			if (args_u64(&a, 0, 10000, &v) != 0)
				return RC_USAGE;
			o.max_subscribers = (unsigned)v;
		} else if (args_is(&a, "--heartbeat")) {
			if (args_u64(&a, 1, 3600, &v) != 0)
				return RC_USAGE;
			o.heartbeat_s = (unsigned)v;
		} else if (args_is(&a, "--max-limit")) {
			if (args_u64(&a, 1, 1000000, &v) != 0)
				return RC_USAGE;
			o.max_limit = (unsigned)v;
		} else {
			return args_unknown(&a);
		}
	}
	if (!o.dir)
		return usage_error(cmd, "missing DIR");
	if (schemas && no_schemas)
		return usage_error(cmd, "--schemas and --no-schemas exclude each other");
	if (projections && no_projections)
		return usage_error(cmd, "--projections and --no-projections exclude each other");
	if (!no_schemas && !(o.schemas = demo_find_schemas(schemas)) && schemas)
		return usage_error(cmd, "--schemas '%s' is not a directory", schemas);
	if (!no_projections && !(o.projections = demo_find_projections(projections)) &&
	    projections)
		return usage_error(cmd, "--projections '%s' is not a directory", projections);
	return serve_run(cmd, &o);
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static const char usage_main[] =
	"usage: evstore COMMAND [ARGS]\n"
	"\n"
	"The command-line tool of evstore, an embedded append-only event store.\n"
	"\n"
	"Commands:\n"
	"  init DIR                   create a store\n"
	"  append DIR STREAM [EVENT]  append events (JSON Lines on stdin)\n"
	"  read DIR STREAM            print one stream's events\n"
	"  read-all DIR               print every event in commit order\n"
	"  streams DIR                list the streams\n"
	"  categories DIR             list the categories\n"
	"  info DIR STREAM            show one stream's versions and positions\n"
	"  stats DIR                  show the store's counters\n"
	"  verify DIR                 check the log and the index\n"
	"  generate DIR               append a generated order workload\n"
	"  demo [DIR]                 run the orders demo (command handling)\n"
	"  rebuild DIR --snapshots    drop and retake the decider snapshots\n"
	"  tail DIR                   print new events as they are appended\n"
	"  query DIR PROJ QUERY ...   run a projection's named query\n"
	"  projections DIR            show the projections' checkpoints and lag\n"
	"  parked DIR PROJ [--replay] list (or replay) a projection's parked events\n"
	"  bench                      benchmark against SQLite and the disk\n"
	"  serve DIR                  serve the store over HTTP\n"
	"  help [COMMAND]             show the usage of a command\n"
	"\n"
	"Every command takes --help.  'evstore --version' prints the library's\n"
	"version.  Output is JSON Lines on stdout; errors go to stderr.  Exit\n"
	"status: 0 success, 1 error, 2 usage error.\n";

struct command {
	const char *name;
	int (*run)(const char *cmd, int argc, char **argv);
	const char *usage;
};

static const struct command commands[] = {
	{ "init", cmd_init, usage_init },
	{ "append", cmd_append, usage_append },
	{ "read", cmd_read, usage_read },
	{ "read-all", cmd_read_all, usage_read_all },
	{ "streams", cmd_streams, usage_streams },
	{ "categories", cmd_categories, usage_categories },
	{ "info", cmd_info, usage_info },
	{ "stats", cmd_stats, usage_stats },
	{ "verify", cmd_verify, usage_verify },
	{ "generate", cmd_generate, usage_generate },
	{ "demo", cmd_demo, usage_demo },
	{ "rebuild", cmd_rebuild, usage_rebuild },
	{ "tail", cmd_tail, usage_tail },
	{ "query", cmd_query, usage_query },
	{ "projections", cmd_projections, usage_projections },
	{ "parked", cmd_parked, usage_parked },
	{ "bench", cmd_bench, usage_bench },
	{ "serve", cmd_serve, usage_serve },
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < COUNT_OF(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Makes sure stdout reached its destination: a full disk or a closed pipe
 * is an error, not a silent success. */
static int finish(const char *cmd, int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (rc == RC_OK)
			rc = fail(cmd, "cannot write to stdout: %s",
				  strerror(errno));
	}
	return rc;
}

int main(int argc, char **argv)
{
	const struct command *c;
	const char *name;

	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	if (argc < 2) {
		fputs(usage_main, stderr);
		return RC_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		fputs(usage_main, stdout);
		return finish(NULL, RC_OK);
	}
	if (strcmp(name, "--version") == 0) {
		printf("evstore %s\n", evs_version());
		return finish(NULL, RC_OK);
	}
	if (strcmp(name, "help") == 0) {
		if (argc == 2 || (argc == 3 && (strcmp(argv[2], "--help") == 0 ||
						strcmp(argv[2], "-h") == 0))) {
			fputs(usage_main, stdout);
			return finish(name, RC_OK);
		}
		if (argc > 3)
			return usage_error(name, "unexpected argument '%s'",
					   argv[3]);
		c = find_command(argv[2]);
		if (!c)
			return usage_error(name, "unknown command '%s'", argv[2]);
		fputs(c->usage, stdout);
		return finish(name, RC_OK);
	}
	c = find_command(name);
	if (!c)
		return usage_error(NULL, "unknown %s '%s'",
				   name[0] == '-' ? "option" : "command", name);
	if (wants_help(argc - 2, argv + 2)) {
		fputs(c->usage, stdout);
		return finish(c->name, RC_OK);
	}
	return finish(c->name, c->run(c->name, argc - 2, argv + 2));
}
