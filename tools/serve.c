/*
 * serve.c: `evstore serve`, the store over HTTP/1.1 with JSON, on
 * libmicrohttpd with a thread per connection (so appends from many
 * connections meet in the store's group commit, and a /subscribe stream
 * may block its own thread while it waits for events).
 *
 * A request goes: route (the raw path split on '/', each part
 * percent-decoded and checked as UTF-8), method, Host (without --auth),
 * role (bearer token), declared body size and type; then the body is
 * gathered up to --max-body, and the route's handler answers.  Every answer but /metrics, the page and the
 * event stream is one JSON object; errors are
 * {"error": name, "code": N, "message": "..."} with the C API's names.
 *
 * Slow clients: a reaper thread shuts the socket of any connection whose
 * request has not arrived whole within --timeout seconds of the previous
 * answer (or of its connect), so a client trickling headers or a body
 * cannot hold a thread.  It is the only timeout: libmicrohttpd's own would
 * also drop an answer that took long (a query waiting for min_position),
 * and an idle event stream finds its client gone at the next heartbeat.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "evstore.h"
#include "events.h"
#include "orders.h"
#include "serve.h"

#define MAX_ARGS 64          /* query parameters of one request */
#define MAX_TOKEN 256        /* bytes of a bearer token */
#define MIN_TOKEN 16
#define SSE_BUF_MAX (1u << 20) /* bytes a slow /subscribe client may lag */
#define MAX_PROJECTIONS 64

/* ---- routes ---- */

enum route {
	R_PAGE, R_HEALTH, R_READY, R_METRICS, R_STREAMS, R_STREAM_READ,
	R_STREAM_APPEND, R_STREAM_INFO, R_ALL, R_SUBSCRIBE, R_COMMAND,
	R_PROJECTIONS, R_QUERY, R_NONE, R__COUNT
};

static const char *const route_names[R__COUNT] = {
	"GET /", "GET /health", "GET /ready", "GET /metrics", "GET /streams",
	"GET /streams/{stream}", "POST /streams/{stream}", "GET /streams/{stream}/info",
	"GET /all", "GET /subscribe", "POST /commands/{decider}/{stream}",
	"GET /projections", "GET /projections/{name}/queries/{query}", "none"
};

enum role { ROLE_NONE = 0, ROLE_READ, ROLE_WRITE, ROLE_ADMIN };

static const char *const role_names[] = { "none", "read", "write", "admin" };

/* The statuses counted apart in /metrics; anything else is "other". */
static const unsigned statuses[] = { 200, 201, 400, 401, 403, 404, 405, 409, 413, 415,
				     422, 500, 503, 504 };
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]) + 1)

/* Query latency buckets, in microseconds (the last has no bound). */
static const uint64_t query_bounds_us[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
					    100000, 1000000, 0 };
#define NQUERY_BUCKETS (sizeof(query_bounds_us) / sizeof(query_bounds_us[0]))

typedef struct token {
	char text[MAX_TOKEN];    /* zero-padded */
	size_t len;
	enum role role;
} token;

/* One connection, for the reaper. */
typedef struct conn {
	struct conn *prev, *next;
	int fd;
	uint64_t deadline_ms;    /* its request must have arrived by then; 0: none */
	bool reaped;
} conn;

typedef struct server {
	const serve_options *o;
	const char *cmd;
	evs_store *store;
	struct MHD_Daemon *daemon;
	token *tokens;
	size_t ntokens;
	bool auth;
	const char *projections[MAX_PROJECTIONS];
	size_t nprojections;
	evs_decider orders;

	atomic_bool stopping;
	atomic_uint subscribers;
	atomic_uint inflight;      /* requests between their first call and completion */

	sem_t big_parses;          /* BIG_PARSES bodies over BIG_BODY at once */

	pthread_mutex_t conn_mu;
	conn *conns;
	pthread_t reaper;
	bool reaper_running;

	_Atomic uint64_t requests[R__COUNT][NSTATUS];
	_Atomic uint64_t query_buckets[NQUERY_BUCKETS];
	_Atomic uint64_t query_count, query_us;
	_Atomic uint64_t sse_events, dropped_slow;
} server;

/* One request, from its first call to the completion callback. */
typedef struct req {
	enum route route;
	char *parts[4];          /* decoded path parts after the first */
	size_t nparts;
	char *body;
	size_t len, cap;
	bool too_large;
	bool answered;
	unsigned status;
	conn *c;
} req;

typedef struct qarg {
	char *key, *val;
} qarg;

typedef struct args {
	qarg v[MAX_ARGS];
	size_t n;
	bool bad;                /* an undecodable or excess parameter */
	char why[160];
} args;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- text ---- */

static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], cp, min;
		size_t k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (i + k >= n)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * Percent-decodes s[0..n) into a new string ('+' as a space when
 * `form`); NULL for a bad escape, a NUL byte, text that is not UTF-8, or
 * no memory.
 */
static char *pct_decode(const char *s, size_t n, bool form)
{
	char *out = malloc(n + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				goto bad;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (form && c == '+') {
			c = ' ';
		}
		if (c == '\0')
			goto bad;
		out[o++] = c;
	}
	out[o] = '\0';
	if (utf8_valid((const unsigned char *)out, o))
		return out;
bad:
	free(out);
	return NULL;
}

/* Appends s[0..n) to the growing buffer *buf (length *len, capacity
 * *cap, `first` bytes when it has none yet, doubling); false when out of
 * memory, the buffer then as it was. */
static bool grow_append(char **buf, size_t *len, size_t *cap, size_t first, const void *s,
			size_t n)
{
	if (*len + n > *cap) {
		size_t want = *cap ? *cap : first;
		while (want < *len + n)
			want *= 2;
		char *p = realloc(*buf, want);
		if (!p)
			return false;
		*buf = p;
		*cap = want;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	return true;
}

/* ---- tokens ---- */

/*
 * Reads the --auth file: one "TOKEN ROLE" per line (ROLE read, write or
 * admin), '#' comments and blank lines skipped.  0, or -1 with the reason
 * printed naming the line.
 */
static int load_tokens(server *srv, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	unsigned long lineno = 0;
	int rc = 0;

	if (!f) {
		fprintf(stderr, "evstore: %s: cannot open %s: %s\n", srv->cmd, path,
			strerror(errno));
		return -1;
	}
	while ((got = getline(&line, &cap, f)) != -1) {
		char *tok, *role, *extra, *save = NULL;
		token *t;

		lineno++;
		if (got > 0 && line[got - 1] == '\n')
			line[--got] = '\0';
		tok = strtok_r(line, " \t\r", &save);
		if (!tok || tok[0] == '#')
			continue;
		role = strtok_r(NULL, " \t\r", &save);
		extra = strtok_r(NULL, " \t\r", &save);
		if (!role || extra) {
			fprintf(stderr, "evstore: %s: %s:%lu: expected \"TOKEN ROLE\"\n",
				srv->cmd, path, lineno);
			rc = -1;
			break;
		}
		size_t len = strlen(tok);
		bool printable = true;
		for (size_t i = 0; i < len; i++)
			if (tok[i] <= ' ' || tok[i] > '~')
				printable = false;
		if (len < MIN_TOKEN || len >= MAX_TOKEN || !printable) {
			fprintf(stderr, "evstore: %s: %s:%lu: a token is %d to %d printable "
				"ASCII characters\n", srv->cmd, path, lineno, MIN_TOKEN,
				MAX_TOKEN - 1);
			rc = -1;
			break;
		}
		enum role r = strcmp(role, "read") == 0 ? ROLE_READ :
			      strcmp(role, "write") == 0 ? ROLE_WRITE :
			      strcmp(role, "admin") == 0 ? ROLE_ADMIN : ROLE_NONE;
		if (r == ROLE_NONE) {
			/* not echoed: with the columns swapped it is the token */
			fprintf(stderr, "evstore: %s: %s:%lu: the second field is not a role "
				"(read, write or admin)\n", srv->cmd, path, lineno);
			rc = -1;
			break;
		}
		for (size_t k = 0; k < srv->ntokens; k++)
			if (srv->tokens[k].len == len && memcmp(srv->tokens[k].text, tok, len) == 0)
				rc = -1;
		if (rc) {
			fprintf(stderr, "evstore: %s: %s:%lu: the token is given twice\n",
				srv->cmd, path, lineno);
			break;
		}
		t = realloc(srv->tokens, (srv->ntokens + 1) * sizeof(*t));
		if (!t) {
			fprintf(stderr, "evstore: %s: out of memory\n", srv->cmd);
			rc = -1;
			break;
		}
		srv->tokens = t;
		t = &srv->tokens[srv->ntokens++];
		memset(t, 0, sizeof(*t));
		memcpy(t->text, tok, len);
		t->len = len;
		t->role = r;
	}
	if (line)
		explicit_bzero(line, cap);
	free(line);
	fclose(f);
	if (rc == 0 && srv->ntokens == 0) {
		fprintf(stderr, "evstore: %s: %s holds no token\n", srv->cmd, path);
		rc = -1;
	}
	return rc;
}

/*
 * The role of bearer token `given` (NUL-terminated), ROLE_NONE for none.
 * Every token is compared, over all MAX_TOKEN bytes, whatever matched:
 * the time taken says nothing about how close a guess came.
 */
static enum role token_role(const server *srv, const char *given)
{
	char padded[MAX_TOKEN];
	size_t len = strnlen(given, MAX_TOKEN);
	unsigned role = ROLE_NONE;

	memset(padded, 0, sizeof(padded));
	memcpy(padded, given, len < MAX_TOKEN ? len : MAX_TOKEN - 1);
	for (size_t k = 0; k < srv->ntokens; k++) {
		const token *t = &srv->tokens[k];
		unsigned diff = (unsigned)(len ^ t->len);

		for (size_t i = 0; i < MAX_TOKEN; i++)
			diff |= (unsigned char)(padded[i] ^ t->text[i]);
		/* all ones when diff is 0, else 0 */
		unsigned same = (unsigned)(((uint64_t)diff - 1) >> 63) * 0xffu;
		role |= (unsigned)t->role & same;
	}
	explicit_bzero(padded, sizeof(padded));
	return (enum role)(role > ROLE_ADMIN ? ROLE_ADMIN : role);
}

/* ---- answers ---- */

static size_t status_slot(unsigned status)
{
	for (size_t i = 0; i < NSTATUS - 1; i++)
		if (statuses[i] == status)
			return i;
	return NSTATUS - 1;
}

/* Queues `body` (malloc'd, taken) with `status`; false when MHD refused. */
static enum MHD_Result answer(struct MHD_Connection *c, req *r, unsigned status,
			      const char *ctype, char *body, size_t len, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ok;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", ctype);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (allow)
		MHD_add_response_header(resp, "Allow", allow);
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	ok = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	r->status = status;
	r->answered = true;
	return ok;
}

/* Compact JSON text of `obj` (released) and a newline, malloc'd. */
static char *json_text(json_t *obj, size_t *len)
{
	size_t n = obj ? json_dumpb(obj, NULL, 0, JSON_COMPACT) : 0;
	char *text = n ? malloc(n + 1) : NULL;

	if (text && json_dumpb(obj, text, n, JSON_COMPACT) == n) {
		text[n] = '\n';
		*len = n + 1;
	} else {
		free(text);
		text = NULL;
	}
	json_decref(obj);
	return text;
}

static enum MHD_Result answer_json(struct MHD_Connection *c, req *r, unsigned status,
				   json_t *obj)
{
	size_t len = 0;
	char *text = json_text(obj, &len);

	if (!text) {
		static const char oom[] = "{\"error\":\"nomem\",\"code\":-11,"
			"\"message\":\"out of memory formatting the answer\"}\n";
		char *copy = strdup(oom);
		if (!copy)
			return MHD_NO;
		return answer(c, r, 500, "application/json", copy, sizeof(oom) - 1, NULL);
	}
	return answer(c, r, status, "application/json", text, len, NULL);
}

/*
 * An error answer {"error": name, "code": code, "message": ...} plus the
 * members of `extra` (taken, may be NULL).  `allow` for a 405.
 */
static enum MHD_Result answer_error(struct MHD_Connection *c, req *r, unsigned status,
				    const char *name, int code, json_t *extra,
				    const char *allow, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));

static enum MHD_Result answer_error(struct MHD_Connection *c, req *r, unsigned status,
				    const char *name, int code, json_t *extra,
				    const char *allow, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	json_t *obj;
	size_t len = 0;
	char *text;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* a message quoting bad input may not be UTF-8: "?" for the bytes */
	if (!utf8_valid((const unsigned char *)msg, strlen(msg)))
		for (char *p = msg; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
	obj = json_pack("{s:s, s:i, s:s}", "error", name, "code", code, "message", msg);
	if (obj && extra)
		json_object_update(obj, extra);
	json_decref(extra);
	text = json_text(obj, &len);
	if (!text)
		return answer_json(c, r, status, NULL);
	return answer(c, r, status, "application/json", text, len, allow);
}

/* The HTTP status of a library error. */
static unsigned lib_status(int rc)
{
	switch (rc) {
	case EVS_ECONFLICT: return 409;
	case EVS_ENOTFOUND: return 404;
	case EVS_EINVAL: return 400;
	case EVS_ESCHEMA: return 422;
	case EVS_EREJECTED: return 422;
	case EVS_ETOOLARGE: return 413;
	case EVS_ETIMEOUT: return 504;
	case EVS_ELOCKED:
	case EVS_EFAILED:
	case EVS_EREADONLY: return 503;
	default: return 500;
	}
}

/* The library's name of an error, lower case without the E: "conflict". */
static void lib_name(char *out, size_t size, int rc)
{
	const char *n = evs_errname(rc);
	size_t i = 0;

	if (n[0] == 'E')
		n++;
	for (; n[i] && i + 1 < size; i++)
		out[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] - 'A' + 'a' : n[i]);
	out[i] = '\0';
}

/* An error from the library, with its detailed message. */
static enum MHD_Result answer_lib(struct MHD_Connection *c, req *r, int rc, json_t *extra)
{
	char name[32];
	const char *msg = evs_errmsg();

	lib_name(name, sizeof(name), rc);
	return answer_error(c, r, lib_status(rc), name, rc, extra, NULL, "%s",
			    msg && *msg ? msg : evs_strerror(rc));
}

static enum MHD_Result answer_bad(struct MHD_Connection *c, req *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result answer_bad(struct MHD_Connection *c, req *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return answer_error(c, r, 400, "inval", EVS_EINVAL, NULL, NULL, "%s", msg);
}

/* ---- query parameters ---- */

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	args *a = cls;
	char *k, *v;

	(void)kind;
	if (a->bad)
		return MHD_NO;
	if (a->n == MAX_ARGS) {
		a->bad = true;
		snprintf(a->why, sizeof(a->why), "more than %d query parameters", MAX_ARGS);
		return MHD_NO;
	}
	k = pct_decode(key, strlen(key), true);
	v = pct_decode(value ? value : "", value ? strlen(value) : 0, true);
	if (!k || !v) {
		a->bad = true;
		snprintf(a->why, sizeof(a->why), "query parameter '%.64s' is not valid "
			 "percent-encoded UTF-8", k ? k : "?");
		free(k);
		free(v);
		return MHD_NO;
	}
	a->v[a->n].key = k;
	a->v[a->n].val = v;
	a->n++;
	return MHD_YES;
}

static void args_free(args *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i].key);
		free(a->v[i].val);
	}
	a->n = 0;
}

static const char *args_get(const args *a, const char *key)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i].key, key) == 0)
			return a->v[i].val;
	return NULL;
}

/* Only the parameters in `known` (NULL-terminated) may be given; 0, or
 * -1 with `why` set. */
static int args_only(args *a, const char *const *known)
{
	for (size_t i = 0; i < a->n; i++) {
		bool ok = false;
		for (const char *const *k = known; *k && !ok; k++)
			ok = strcmp(a->v[i].key, *k) == 0;
		if (!ok) {
			snprintf(a->why, sizeof(a->why), "unknown query parameter '%.64s'",
				 a->v[i].key);
			return -1;
		}
	}
	return 0;
}

/* Parameter `key` as a number in [min, max], `def` when absent; 0, or -1
 * with `why` set. */
static int args_u64(args *a, const char *key, uint64_t def, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	const char *v = args_get(a, key);
	uint64_t n;

	if (!v) {
		*out = def;
		return 0;
	}
	if (parse_u64(v, &n) != 0 || n < min || n > max) {
		snprintf(a->why, sizeof(a->why), "'%s' must be a whole number from %" PRIu64
			 " to %" PRIu64 ", not '%.32s'", key, min, max, v);
		return -1;
	}
	*out = n;
	return 0;
}

/* ---- the reaper of slow connections ---- */

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode code)
{
	server *srv = cls;
	conn *k = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		k = calloc(1, sizeof(*k));
		if (!k)
			return;
		k->fd = info ? info->connect_fd : -1;
		k->deadline_ms = now_ms() + (uint64_t)srv->o->timeout_s * 1000;
		pthread_mutex_lock(&srv->conn_mu);
		k->next = srv->conns;
		if (srv->conns)
			srv->conns->prev = k;
		srv->conns = k;
		pthread_mutex_unlock(&srv->conn_mu);
		*socket_context = k;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED && k) {
		pthread_mutex_lock(&srv->conn_mu);
		if (k->prev)
			k->prev->next = k->next;
		else
			srv->conns = k->next;
		if (k->next)
			k->next->prev = k->prev;
		pthread_mutex_unlock(&srv->conn_mu);
		free(k);
		*socket_context = NULL;
	}
}

/* Sets the connection's deadline: `ms` from now, or none (0). */
static void conn_deadline(server *srv, conn *k, uint64_t ms)
{
	if (!k)
		return;
	pthread_mutex_lock(&srv->conn_mu);
	k->deadline_ms = ms ? now_ms() + ms : 0;
	pthread_mutex_unlock(&srv->conn_mu);
}

static void *reaper_main(void *arg)
{
	server *srv = arg;

	while (!atomic_load(&srv->stopping)) {
		struct timespec nap = { 0, 200 * 1000000L };
		uint64_t now = now_ms();

		pthread_mutex_lock(&srv->conn_mu);
		for (conn *k = srv->conns; k; k = k->next) {
			if (k->deadline_ms && now > k->deadline_ms && !k->reaped && k->fd >= 0) {
				/* MHD's thread sees the connection end and closes it */
				shutdown(k->fd, SHUT_RDWR);
				k->reaped = true;
				atomic_fetch_add(&srv->dropped_slow, 1);
			}
		}
		pthread_mutex_unlock(&srv->conn_mu);
		nanosleep(&nap, NULL);
	}
	return NULL;
}

/* ---- reads ---- */

/* A page of events stops once their data and metadata pass this many
 * bytes (however many events were asked for): its "next" goes on from
 * there.  Events are up to 1 MiB each, a page of 1000 could be a GiB. */
#define PAGE_BYTES (4u << 20)

typedef struct collect {
	json_t *events;
	char err[512];
	uint64_t last_position, last_version, count;
	uint64_t bytes;
	bool paged;              /* stop at PAGE_BYTES */
	bool cut;                /* stopped there */
} collect;

#define COLLECT_INIT(paged) { json_array(), "", 0, 0, 0, 0, paged, false }

static int collect_event(const evs_event *ev, void *ctx)
{
	collect *k = ctx;
	json_t *obj = event_json(ev, k->err, sizeof(k->err));

	if (!obj || json_array_append_new(k->events, obj) != 0) {
		if (!k->err[0])
			snprintf(k->err, sizeof(k->err), "out of memory");
		return 1;
	}
	k->last_position = ev->position;
	k->last_version = ev->version;
	k->count++;
	k->bytes += ev->data_len + ev->metadata_len;
	if (k->paged && k->bytes >= PAGE_BYTES) {
		k->cut = true;
		return 1;
	}
	return 0;
}

static enum MHD_Result read_stream(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "from", "limit", "direction", "access_token", NULL };
	const char *stream = r->parts[0], *dirtext = args_get(a, "direction");
	uint64_t from, limit;
	evs_direction dir = EVS_FORWARD;
	collect k = COLLECT_INIT(true);
	int rc;

	if (!k.events)
		return answer_json(c, r, 500, NULL);
	if (args_only(a, known) || args_u64(a, "from", 0, 0, INT64_MAX, &from) ||
	    args_u64(a, "limit", 100, 1, srv->o->max_limit, &limit)) {
		json_decref(k.events);
		return answer_bad(c, r, "%s", a->why);
	}
	if (dirtext && strcmp(dirtext, "backward") == 0) {
		dir = EVS_BACKWARD;
	} else if (dirtext && strcmp(dirtext, "forward") != 0) {
		json_decref(k.events);
		return answer_bad(c, r, "'direction' must be forward or backward, not '%.32s'",
				  dirtext);
	}
	rc = evs_read_stream(srv->store, stream, from, dir, limit, collect_event, &k);
	if (rc == 0 && k.err[0])
		return json_decref(k.events),
		       answer_error(c, r, 500, "corrupt", EVS_ECORRUPT, NULL, NULL, "%s", k.err);
	if (rc) {
		json_decref(k.events);
		return answer_lib(c, r, rc, json_pack("{s:s}", "stream", stream));
	}
	/* the version to ask for next: forward past the last one, backward
	 * below it (null once version 1 was read) */
	json_t *next = dir == EVS_FORWARD ?
		       json_integer((json_int_t)(k.count ? k.last_version + 1 : from ? from : 1)) :
		       k.count && k.last_version > 1 ? json_integer((json_int_t)k.last_version - 1) :
		       json_null();
	return answer_json(c, r, 200, json_pack("{s:s, s:s, s:o, s:o}", "stream", stream,
						"direction", dir == EVS_FORWARD ? "forward" : "backward",
						"events", k.events, "next", next));
}

static enum MHD_Result read_all(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "from", "limit", "category", "type",
					     "access_token", NULL };
	const char *types[MAX_ARGS];
	evs_filter filter = { args_get(a, "category"), types, 0 };
	collect k = COLLECT_INIT(true);
	uint64_t from, limit;
	evs_stats st;
	int rc;

	if (!k.events)
		return answer_json(c, r, 500, NULL);
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i].key, "type") == 0)
			types[filter.ntypes++] = a->v[i].val;
	if (args_only(a, known) || args_u64(a, "from", 1, 0, INT64_MAX, &from) ||
	    args_u64(a, "limit", 100, 1, srv->o->max_limit, &limit)) {
		json_decref(k.events);
		return answer_bad(c, r, "%s", a->why);
	}
	if (from == 0)
		from = 1;
	/* the head before the read: a read that comes back short has seen
	 * every position up to it */
	rc = evs_stats_get(&st, srv->store);
	if (!rc)
		rc = evs_read_all(srv->store, from, limit, &filter, collect_event, &k);
	if (rc == 0 && k.err[0])
		return json_decref(k.events),
		       answer_error(c, r, 500, "corrupt", EVS_ECORRUPT, NULL, NULL, "%s", k.err);
	if (rc) {
		json_decref(k.events);
		return answer_lib(c, r, rc, NULL);
	}
	uint64_t next = k.count ? k.last_position + 1 : from;
	if (k.count < limit && !k.cut && st.head_position + 1 > next)
		next = st.head_position + 1;
	return answer_json(c, r, 200, json_pack("{s:o, s:I}", "events", k.events,
						"next", (json_int_t)next));
}

typedef struct list_ctx {
	json_t *streams;
	char last[512];
	uint64_t count, limit;
	bool more;               /* a stream past the page's limit exists */
	bool failed;
} list_ctx;

static int list_one(const char *name, uint64_t last_version, void *ctx)
{
	list_ctx *l = ctx;

	if (l->count == l->limit) {
		l->more = true;
		return 1;
	}
	if (json_array_append_new(l->streams, json_pack("{s:s, s:I}", "stream", name,
						     "last_version", (json_int_t)last_version))) {
		l->failed = true;
		return 1;
	}
	snprintf(l->last, sizeof(l->last), "%s", name);
	l->count++;
	return 0;
}

static enum MHD_Result list_streams(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "after", "limit", "access_token", NULL };
	list_ctx l = { json_array(), "", 0, 0, false, false };
	uint64_t limit;
	int rc;

	if (!l.streams)
		return answer_json(c, r, 500, NULL);
	if (args_only(a, known) || args_u64(a, "limit", 100, 1, srv->o->max_limit, &limit)) {
		json_decref(l.streams);
		return answer_bad(c, r, "%s", a->why);
	}
	/* one more than asked: whether there is a next page */
	l.limit = limit;
	rc = evs_list_streams(srv->store, args_get(a, "after"), limit + 1, list_one, &l);
	if (rc || l.failed) {
		json_decref(l.streams);
		return rc ? answer_lib(c, r, rc, NULL) : answer_json(c, r, 500, NULL);
	}
	return answer_json(c, r, 200, json_pack("{s:o, s:o}", "streams", l.streams, "next",
						l.more ? json_string(l.last) : json_null()));
}

static enum MHD_Result stream_info(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "access_token", NULL };
	const char *stream = r->parts[0];
	evs_stream_info info;
	char ts[64];
	int rc;

	if (args_only(a, known))
		return answer_bad(c, r, "%s", a->why);
	rc = evs_stream_info_get(&info, srv->store, stream);
	if (rc)
		return answer_lib(c, r, rc, json_pack("{s:s}", "stream", stream));
	if (!info.exists)
		return answer_error(c, r, 404, "notfound", EVS_ENOTFOUND,
				    json_pack("{s:s}", "stream", stream), NULL,
				    "stream '%s' does not exist", stream);
	format_time_us(ts, sizeof(ts), info.created_us);
	return answer_json(c, r, 200, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}",
		"stream", stream, "last_version", (json_int_t)info.last_version,
		"event_count", (json_int_t)info.event_count,
		"first_position", (json_int_t)info.first_position,
		"last_position", (json_int_t)info.last_position, "created", ts));
}

/* ---- writes ---- */

/* The library refuses data nested deeper than this (EVS__JSON_MAX_DEPTH);
 * a body is checked for it before jansson parses it, whose recursion
 * must stay well inside a connection thread's stack. */
#define MAX_DEPTH 512

/* Events one append request may hold, checked before the body is parsed:
 * jansson's tree of 4 MiB of tiny events would take hundreds of MiB. */
#define MAX_APPEND_EVENTS 10000

/* Bodies larger than this are parsed by at most BIG_PARSES requests at
 * once, which bounds the memory their trees take together. */
#define BIG_BODY (256u << 10)
#define BIG_PARSES 4

/*
 * A look at the JSON text before jansson parses it: whether it nests
 * arrays and objects deeper than MAX_DEPTH, and how many elements a
 * top-level array has (commas at depth 1, plus one; 1 for anything else).
 */
static bool too_deep(const char *s, size_t n, size_t *elements)
{
	bool in_string = false, escaped = false, any = false;
	unsigned depth = 0;
	size_t commas = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (depth == 1 && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ']')
			any = true;
		if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > MAX_DEPTH)
				return true;
		} else if ((c == ']' || c == '}') && depth) {
			depth--;
		} else if (c == ',' && depth == 1) {
			commas++;
		}
	}
	*elements = any ? commas + 1 : 0;
	return false;
}

/* Parses the body: the JSON, or NULL after answering 400. */
static json_t *parse_body(struct MHD_Connection *c, req *r, const char *what,
			  enum MHD_Result *answered)
{
	json_error_t jerr;
	json_t *root;

	if (!r->len) {
		*answered = answer_bad(c, r, "the body is empty: expected %s", what);
		return NULL;
	}
	size_t elements = 0;
	if (too_deep(r->body, r->len, &elements)) {
		*answered = answer_bad(c, r, "the body nests arrays and objects deeper than %d "
				       "levels", MAX_DEPTH);
		return NULL;
	}
	for (size_t i = 0; i < r->len; i++) {
		if (r->body[i] == ' ' || r->body[i] == '\t' || r->body[i] == '\r' ||
		    r->body[i] == '\n')
			continue;
		if (r->body[i] == '[' && elements > MAX_APPEND_EVENTS) {
			*answered = answer_error(c, r, 413, "toolarge", EVS_ETOOLARGE, NULL, NULL,
						 "the body holds %zu events; one request appends "
						 "at most %d", elements, MAX_APPEND_EVENTS);
			return NULL;
		}
		break;
	}
	root = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root)
		*answered = answer_bad(c, r, "invalid JSON in the body: %s (line %d, column %d)",
				       jerr.text, jerr.line, jerr.column);
	return root;
}

static enum MHD_Result append(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { NULL };
	const char *stream = r->parts[0];
	const char *ev_text = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expected-Version");
	struct pending *p = NULL;
	evs_new_event *evs = NULL;
	evs_append_result res;
	json_t *root;
	int64_t expected = EVS_EXPECT_ANY;
	size_t n = 0;
	char err[512];
	enum MHD_Result ok;
	int rc;

	if (args_only(a, known))
		return answer_bad(c, r, "%s", a->why);
	if (ev_text && parse_expected(ev_text, &expected) != 0)
		return answer_bad(c, r, "Expected-Version must be any, no_stream, exists or a "
				  "version from 0 to 2^63-1, not '%.32s'", ev_text);
	if (!(root = parse_body(c, r, "an event object or an array of them", &ok)))
		return ok;
	n = json_is_array(root) ? json_array_size(root) : 1;
	if (json_is_array(root) && n == 0) {
		json_decref(root);
		return answer_bad(c, r, "the body is an empty array: nothing to append");
	}
	if (!json_is_array(root) && !json_is_object(root)) {
		json_decref(root);
		return answer_bad(c, r, "the body must be an event object or an array of them");
	}
	p = calloc(n, sizeof(*p));
	evs = calloc(n, sizeof(*evs));
	if (!p || !evs) {
		ok = answer_json(c, r, 500, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *one = json_is_array(root) ? json_array_get(root, i) : root;

		if (parse_event_json(&p[i], json_incref(one), NULL, err, sizeof(err)) != 0) {
			ok = json_is_array(root) ?
			     answer_bad(c, r, "event %zu of %zu: %s", i + 1, n, err) :
			     answer_bad(c, r, "%s", err);
			goto out;
		}
		evs[i].type = p[i].type;
		evs[i].data = p[i].data;
		evs[i].metadata = p[i].metadata;
		evs[i].id = p[i].has_id ? p[i].id : NULL;
		evs[i].schema_version = p[i].schema_version;
	}
	rc = evs_append(srv->store, stream, expected, evs, n, &res);
	if (rc == EVS_ECONFLICT)
		ok = answer_lib(c, r, rc, json_pack("{s:s, s:I}", "stream", stream,
						    "current_version",
						    (json_int_t)res.current_version));
	else if (rc)
		ok = answer_lib(c, r, rc, json_pack("{s:s}", "stream", stream));
	else
		ok = answer_json(c, r, res.idempotent ? 200 : 201,
			json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "stream", stream,
				  "first_version", (json_int_t)res.first_version,
				  "last_version", (json_int_t)res.last_version,
				  "first_position", (json_int_t)res.first_position,
				  "last_position", (json_int_t)res.last_position,
				  "idempotent", res.idempotent));
out:
	for (size_t i = 0; p && i < n; i++)
		pending_free(&p[i]);
	free(p);
	free(evs);
	json_decref(root);
	return ok;
}

/* A header value for evs_handle_options: printable ASCII, 1 to 128 bytes. */
static int header_id(struct MHD_Connection *c, const char *name, const char **out)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	size_t n = v ? strlen(v) : 0;

	*out = NULL;
	if (!v)
		return 0;
	if (n == 0 || n > 128)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (v[i] < ' ' || v[i] > '~')
			return -1;
	*out = v;
	return 0;
}

static enum MHD_Result command(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { NULL };
	const char *decider = r->parts[0], *stream = r->parts[1];
	evs_handle_options ho = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result res;
	enum MHD_Result ok;
	json_t *cmd;
	int rc;

	if (args_only(a, known))
		return answer_bad(c, r, "%s", a->why);
	if (strcmp(decider, "orders") != 0)
		return answer_error(c, r, 404, "notfound", EVS_ENOTFOUND,
				    json_pack("{s:s}", "decider", decider), NULL,
				    "no decider '%s' (this server has: orders)", decider);
	if (header_id(c, "Command-Id", &ho.command_id) ||
	    header_id(c, "Correlation-Id", &ho.correlation_id) ||
	    header_id(c, "Causation-Id", &ho.causation_id))
		return answer_bad(c, r, "Command-Id, Correlation-Id and Causation-Id are 1 to "
				  "128 printable ASCII characters");
	if (!(cmd = parse_body(c, r, "a command object", &ok)))
		return ok;
	if (!json_is_object(cmd)) {
		json_decref(cmd);
		return answer_bad(c, r, "the command must be a JSON object");
	}
	rc = evs_handle(srv->store, &srv->orders, stream, cmd, &ho, &res);
	json_decref(cmd);
	if (rc == EVS_EREJECTED)
		return answer_error(c, r, 422, "rejected", rc,
				    json_pack("{s:s, s:s, s:s, s:I}", "stream", stream,
					      "decider", decider, "reason_code", res.code,
					      "stream_version", (json_int_t)res.stream_version),
				    NULL, "%s", res.reason);
	if (rc)
		return answer_lib(c, r, rc, json_pack("{s:s, s:s}", "stream", stream,
						      "decider", decider));
	/* the events it appended (one batch: consecutive positions) */
	collect k = COLLECT_INIT(false);
	if (!k.events)
		return answer_json(c, r, 500, NULL);
	if (res.events) {
		rc = evs_read_all(srv->store, res.first_position, res.events, NULL,
				  collect_event, &k);
		if (rc || k.err[0]) {
			json_decref(k.events);
			return rc ? answer_lib(c, r, rc, NULL) :
			       answer_error(c, r, 500, "corrupt", EVS_ECORRUPT, NULL, NULL, "%s",
					    k.err);
		}
	}
	return answer_json(c, r, res.idempotent || !res.events ? 200 : 201,
		json_pack("{s:s, s:s, s:I, s:b, s:i, s:o}", "stream", stream,
			  "decider", decider, "stream_version", (json_int_t)res.stream_version,
			  "idempotent", res.idempotent, "attempts", res.attempts,
			  "events", k.events));
}

/* ---- projections ---- */

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static json_t *status_json(const evs_projection_status *st, const char *name)
{
	char failed[32] = "";

	if (st->failed)
		lib_name(failed, sizeof(failed), st->failed);
	return json_pack("{s:s, s:I, s:I, s:I, s:b, s:b, s:o, s:I, s:f}", "name", name,
			 "checkpoint", (json_int_t)st->checkpoint, "head", (json_int_t)st->head,
			 "lag", (json_int_t)st->lag, "running", st->running,
			 "out_of_date", st->out_of_date,
			 "failed", st->failed ? json_string(failed) : json_null(),
			 "parked", (json_int_t)st->parked, "rate", st->rate);
}

static enum MHD_Result projections(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "access_token", NULL };
	json_t *list = json_array();

	if (args_only(a, known)) {
		json_decref(list);
		return answer_bad(c, r, "%s", a->why);
	}
	for (size_t i = 0; list && i < srv->nprojections; i++) {
		evs_projection_status st;
		int rc = evs_projection_status_get(&st, srv->store, srv->projections[i]);
		if (rc) {
			json_decref(list);
			return answer_lib(c, r, rc, json_pack("{s:s}", "projection",
							      srv->projections[i]));
		}
		json_array_append_new(list, status_json(&st, srv->projections[i]));
	}
	return answer_json(c, r, 200, json_pack("{s:o}", "projections", list));
}

/* A query parameter's JSON value: a whole number written the plain way
 * ("12", "-3", not "012" or "+3") binds as an integer, anything else as
 * text.  SQLite's column affinity makes either compare right. */
static json_t *param_value(const char *v)
{
	const char *p = v + (v[0] == '-');
	size_t n = strlen(p);
	bool plain = n > 0 && n <= 18 && (p[0] != '0' || n == 1);

	for (size_t i = 0; plain && i < n; i++)
		plain = p[i] >= '0' && p[i] <= '9';
	if (plain && !(v[0] == '-' && strcmp(p, "0") == 0))
		return json_integer((json_int_t)strtoll(v, NULL, 10));
	return json_string(v);
}

static void count_query(server *srv, uint64_t us)
{
	size_t i = 0;

	while (i + 1 < NQUERY_BUCKETS && us > query_bounds_us[i])
		i++;
	atomic_fetch_add_explicit(&srv->query_buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->query_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->query_us, us, memory_order_relaxed);
}

static enum MHD_Result query(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	const char *name = r->parts[0], *q = r->parts[2];
	evs_query_options qo = EVS_QUERY_OPTIONS_INIT;
	json_t *params = json_object(), *rows = NULL;
	uint64_t min_position, timeout_ms, position = 0, t0;
	int rc;

	if (!params)
		return answer_json(c, r, 500, NULL);
	if (!valid_name(name) || !valid_name(q)) {
		json_decref(params);
		return answer_bad(c, r, "projection and query names are 1 to 64 of A-Z a-z "
				  "0-9 _ -");
	}
	if (args_u64(a, "min_position", 0, 0, INT64_MAX, &min_position) ||
	    args_u64(a, "timeout_ms", 5000, 1, 60000, &timeout_ms)) {
		json_decref(params);
		return answer_bad(c, r, "%s", a->why);
	}
	for (size_t i = 0; i < a->n; i++) {
		const char *k = a->v[i].key;
		if (strcmp(k, "min_position") == 0 || strcmp(k, "timeout_ms") == 0 ||
		    strcmp(k, "access_token") == 0)
			continue;
		if (json_object_get(params, k)) {
			json_decref(params);
			return answer_bad(c, r, "query parameter '%.64s' is given twice", k);
		}
		json_object_set_new(params, k, param_value(a->v[i].val));
	}
	qo.min_position = min_position;
	qo.timeout_ms = (uint32_t)timeout_ms;
	t0 = now_us();
	rc = evs_query(srv->store, name, q, params, &qo, &rows, &position);
	count_query(srv, now_us() - t0);
	json_decref(params);
	if (rc)
		return answer_lib(c, r, rc, json_pack("{s:s, s:s}", "projection", name,
						      "query", q));
	return answer_json(c, r, 200, json_pack("{s:s, s:s, s:I, s:o}", "projection", name,
						"query", q, "position", (json_int_t)position,
						"rows", rows));
}

/* ---- health, readiness, metrics, the page ---- */

/* Whether the store is open and not failed, and every projection runs;
 * `why` says what is not. */
static bool is_ready(server *srv, char *why, size_t size)
{
	evs_metrics m;

	memset(&m, 0, sizeof(m));
	if (atomic_load(&srv->stopping)) {
		snprintf(why, size, "shutting down");
		return false;
	}
	if (evs_metrics_get(&m, srv->store) != 0 || m.failed) {
		snprintf(why, size, "the store failed (%s): restart the server",
			 evs_errname(m.failed));
		return false;
	}
	for (size_t i = 0; i < srv->nprojections; i++) {
		evs_projection_status st;
		memset(&st, 0, sizeof(st));
		if (evs_projection_status_get(&st, srv->store, srv->projections[i]) != 0 ||
		    !st.running || st.failed) {
			snprintf(why, size, "projection %s is not running%s%s", srv->projections[i],
				 st.failed ? ": " : "", st.failed ? evs_errname(st.failed) : "");
			return false;
		}
	}
	why[0] = '\0';
	return true;
}

typedef struct textbuf {
	char *p;
	size_t len, cap;
	bool failed;
} textbuf;

static void put(textbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(textbuf *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap ? t->cap * 2 : 8192) + (size_t)n;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->failed = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

static void put_hist(textbuf *t, const char *name, const char *help, const uint64_t *bounds,
		     const uint64_t *counts, size_t n, double scale, double sum, uint64_t count)
{
	uint64_t cum = 0;

	put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < n; i++) {
		cum += counts[i];
		if (i + 1 < n)
			put(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bounds[i] * scale,
			    cum);
		else
			put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	}
	put(t, "%s_sum %.9g\n%s_count %" PRIu64 "\n", name, sum, name, count);
}

static enum MHD_Result metrics(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "access_token", NULL };
	static const uint64_t sync_bounds[] = EVS_METRICS_SYNC_BOUNDS_US;
	static const uint64_t group_bounds[] = EVS_METRICS_GROUP_BOUNDS;
	textbuf t = { NULL, 0, 0, false };
	evs_metrics m;
	uint64_t qb[NQUERY_BUCKETS];
	int rc;

	if (args_only(a, known))
		return answer_bad(c, r, "%s", a->why);
	if ((rc = evs_metrics_get(&m, srv->store)) != 0)
		return answer_lib(c, r, rc, NULL);
	put(&t, "# HELP evstore_appends_total Appends (evs_append calls) by outcome.\n"
		"# TYPE evstore_appends_total counter\n");
	put(&t, "evstore_appends_total{outcome=\"ok\"} %" PRIu64 "\n", m.appends_ok);
	put(&t, "evstore_appends_total{outcome=\"idempotent\"} %" PRIu64 "\n",
	    m.appends_idempotent);
	put(&t, "evstore_appends_total{outcome=\"conflict\"} %" PRIu64 "\n", m.appends_conflict);
	put(&t, "evstore_appends_total{outcome=\"invalid\"} %" PRIu64 "\n", m.appends_invalid);
	put(&t, "evstore_appends_total{outcome=\"failed\"} %" PRIu64 "\n", m.appends_failed);
	put(&t, "# HELP evstore_events_total Events given to appends, by the append's "
		"outcome (ok: written).\n# TYPE evstore_events_total counter\n");
	put(&t, "evstore_events_total{outcome=\"ok\"} %" PRIu64 "\n", m.events_appended);
	put(&t, "evstore_events_total{outcome=\"idempotent\"} %" PRIu64 "\n",
	    m.events_idempotent);
	put(&t, "evstore_events_total{outcome=\"conflict\"} %" PRIu64 "\n", m.events_conflict);
	put(&t, "evstore_events_total{outcome=\"invalid\"} %" PRIu64 "\n", m.events_invalid);
	put(&t, "evstore_events_total{outcome=\"failed\"} %" PRIu64 "\n", m.events_failed);
	put(&t, "# HELP evstore_bytes_written_total Log bytes written by group commits.\n"
		"# TYPE evstore_bytes_written_total counter\n"
		"evstore_bytes_written_total %" PRIu64 "\n", m.bytes_written);
	put_hist(&t, "evstore_group_commit_appends", "Appends per group commit (one write, "
		 "one fdatasync).", group_bounds, m.group_buckets, EVS_METRICS_GROUP_BUCKETS, 1,
		 (double)m.group_appends, m.groups);
	put_hist(&t, "evstore_fdatasync_seconds", "Time of each group commit's fdatasync.",
		 sync_bounds, m.sync_buckets, EVS_METRICS_SYNC_BUCKETS, 1e-6,
		 (double)m.sync_us / 1e6, m.syncs);
	put(&t, "# HELP evstore_store_failed 1 when an I/O error failed the store.\n"
		"# TYPE evstore_store_failed gauge\nevstore_store_failed %d\n", m.failed != 0);
	put(&t, "# HELP evstore_projection_position The last position a projection applied.\n"
		"# TYPE evstore_projection_position gauge\n");
	for (size_t i = 0; i < srv->nprojections; i++) {
		evs_projection_status st;
		if (evs_projection_status_get(&st, srv->store, srv->projections[i]) == 0)
			put(&t, "evstore_projection_position{projection=\"%s\"} %" PRIu64 "\n",
			    srv->projections[i], st.checkpoint);
	}
	put(&t, "# HELP evstore_projection_lag Events a projection is behind the head.\n"
		"# TYPE evstore_projection_lag gauge\n");
	for (size_t i = 0; i < srv->nprojections; i++) {
		evs_projection_status st;
		if (evs_projection_status_get(&st, srv->store, srv->projections[i]) == 0)
			put(&t, "evstore_projection_lag{projection=\"%s\"} %" PRIu64 "\n",
			    srv->projections[i], st.lag);
	}
	for (size_t i = 0; i < NQUERY_BUCKETS; i++)
		qb[i] = atomic_load_explicit(&srv->query_buckets[i], memory_order_relaxed);
	put_hist(&t, "evstore_query_seconds", "Time of each read-model query.", query_bounds_us,
		 qb, NQUERY_BUCKETS, 1e-6,
		 (double)atomic_load(&srv->query_us) / 1e6, atomic_load(&srv->query_count));
	put(&t, "# HELP evstore_http_requests_total HTTP requests answered, by route and "
		"status.\n# TYPE evstore_http_requests_total counter\n");
	for (size_t k = 0; k < R__COUNT; k++)
		for (size_t i = 0; i < NSTATUS; i++) {
			uint64_t v = atomic_load_explicit(&srv->requests[k][i],
							  memory_order_relaxed);
			if (!v)
				continue;
			if (i + 1 < NSTATUS)
				put(&t, "evstore_http_requests_total{route=\"%s\",status=\"%u\"} %"
				    PRIu64 "\n", route_names[k], statuses[i], v);
			else
				put(&t, "evstore_http_requests_total{route=\"%s\",status=\"other\"} %"
				    PRIu64 "\n", route_names[k], v);
		}
	put(&t, "# HELP evstore_sse_subscribers Open /subscribe streams.\n"
		"# TYPE evstore_sse_subscribers gauge\nevstore_sse_subscribers %u\n",
	    atomic_load(&srv->subscribers));
	put(&t, "# HELP evstore_sse_events_total Events sent on /subscribe streams.\n"
		"# TYPE evstore_sse_events_total counter\nevstore_sse_events_total %" PRIu64 "\n",
	    atomic_load(&srv->sse_events));
	put(&t, "# HELP evstore_http_slow_dropped_total Connections dropped for not sending "
		"a whole request in time.\n# TYPE evstore_http_slow_dropped_total counter\n"
		"evstore_http_slow_dropped_total %" PRIu64 "\n", atomic_load(&srv->dropped_slow));
	if (t.failed) {
		free(t.p);
		return answer_json(c, r, 500, NULL);
	}
	return answer(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", t.p, t.len, NULL);
}

/* A page that follows the log live with EventSource: "/", or
 * "/#token=T" when the server wants a token; "?from=P" starts at P,
 * "?until=P" closes the stream once P arrived (the browser test). */
static const char page_html[] =
	"<!DOCTYPE html>\n"
	"<html><head><meta charset=\"utf-8\"><title>evstore</title></head>\n"
	"<body><h1>evstore: the log, live</h1>\n"
	"<p id=\"state\">connecting</p>\n"
	"<ol id=\"events\"></ol>\n"
	"<script>\n"
	"const hash = new URLSearchParams(location.hash.slice(1));\n"
	"const q = new URLSearchParams(location.search);\n"
	"const url = new URLSearchParams();\n"
	"url.set('from', q.get('from') || '1');\n"
	"if (hash.get('token')) url.set('access_token', hash.get('token'));\n"
	"const es = new EventSource('/subscribe?' + url);\n"
	"const list = document.getElementById('events');\n"
	"es.onopen = () => { document.getElementById('state').textContent = 'open'; };\n"
	"es.onerror = () => { document.getElementById('state').textContent = 'reconnecting'; };\n"
	"const until = Number(q.get('until') || 0);\n"
	"es.onmessage = (m) => {\n"
	"  const ev = JSON.parse(m.data);\n"
	"  const li = document.createElement('li');\n"
	"  li.dataset.position = m.lastEventId;\n"
	"  li.textContent = ev.position + ' ' + ev.stream + ' ' + ev.version + ' ' + ev.type;\n"
	"  list.appendChild(li);\n"
	"  if (until && ev.position >= until) {\n"
	"    es.close();\n"
	"    document.getElementById('state').textContent = 'done';\n"
	"  }\n"
	"};\n"
	"</script></body></html>\n";

/* ---- /subscribe: Server-Sent Events ---- */

/* The bytes a subscription's thread produces and the connection's thread
 * sends, and what ends them. */
typedef struct sse {
	server *srv;
	pthread_mutex_t mu;
	pthread_cond_t cv;         /* data added, or room made */
	char *buf;
	size_t len, off, cap;
	bool closed;               /* the connection is gone */
	bool ended;                /* no more events: an error frame is queued */
	uint64_t next;             /* past the last event queued */
	evs_subscription *sub;
	uint64_t last_write_ms;
	char *types[MAX_ARGS];
	size_t ntypes;
	char *category;
} sse;

/* Appends to the buffer; the caller holds mu.  False when out of memory. */
static bool sse_put(sse *e, const char *s, size_t n)
{
	/* what was sent makes room first, so the buffer stays near the
	 * most a client may lag behind, however long the stream runs */
	if (e->off && e->len + n > e->cap) {
		memmove(e->buf, e->buf + e->off, e->len - e->off);
		e->len -= e->off;
		e->off = 0;
	}
	return grow_append(&e->buf, &e->len, &e->cap, 16384, s, n);
}

/*
 * Ends the stream with a last frame, "event: error" and the error as JSON
 * (an EventSource client gets it as an "error"-typed message, then the
 * end), and says so on stderr.  The caller holds mu.
 */
static void sse_end(sse *e, int code, uint64_t position, const char *why)
{
	char name[32];
	json_t *obj;
	size_t len = 0;
	char *text;

	if (e->ended)
		return;
	e->ended = true;
	lib_name(name, sizeof(name), code);
	obj = json_pack("{s:s, s:i, s:s, s:I}", "error", name, "code", code, "message", why,
			"position", (json_int_t)position);
	text = json_text(obj, &len);
	fprintf(stderr, "evstore: %s: an event stream ended at position %" PRIu64 ": %s\n",
		e->srv->cmd, position, why);
	if (text && sse_put(e, "event: error\ndata: ", 19))
		if (sse_put(e, text, len))
			sse_put(e, "\n", 1);
	free(text);
	pthread_cond_broadcast(&e->cv);
}

/* evs_event_cb, on the subscription's thread: one "id:" and "data:" frame. */
static int sse_event(const evs_event *ev, void *ctx)
{
	sse *e = ctx;
	char head[64], err[512];
	json_t *obj = event_json(ev, err, sizeof(err));
	size_t len = 0;
	char *text = json_text(obj, &len);
	int stop = 0;

	pthread_mutex_lock(&e->mu);
	if (!text) {
		sse_end(e, EVS_ECORRUPT, ev->position, obj ? "out of memory" : err);
		stop = 1;
	}
	/* a slow client holds this subscription back, never the store */
	while (!stop && !e->closed && e->len - e->off > SSE_BUF_MAX)
		pthread_cond_wait(&e->cv, &e->mu);
	if (!stop && !e->closed) {
		int h = snprintf(head, sizeof(head), "id: %" PRIu64 "\ndata: ", ev->position);
		/* json_text ends with one newline; a frame ends with a blank line */
		if (!sse_put(e, head, (size_t)h) || !sse_put(e, text, len) || !sse_put(e, "\n", 1)) {
			sse_end(e, EVS_ENOMEM, ev->position, "out of memory");
			stop = 1;
		} else {
			e->next = ev->position + 1;
			atomic_fetch_add_explicit(&e->srv->sse_events, 1, memory_order_relaxed);
		}
		pthread_cond_broadcast(&e->cv);
	}
	stop = stop || e->closed || e->ended;
	pthread_mutex_unlock(&e->mu);
	free(text);
	return stop;
}

/* MHD's content reader, on the connection's thread: what is buffered, a
 * heartbeat comment after heartbeat_s of silence, or the end when the
 * server stops. */
static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	sse *e = cls;
	server *srv = e->srv;
	ssize_t n = 0;

	(void)pos;
	pthread_mutex_lock(&e->mu);
	while (e->len == e->off && !e->closed && !e->ended && !atomic_load(&srv->stopping)) {
		uint64_t due = e->last_write_ms + (uint64_t)srv->o->heartbeat_s * 1000;
		uint64_t now = now_ms();
		int err = evs_subscription_error(e->sub);
		if (err) {
			char why[160];
			snprintf(why, sizeof(why), "%s: the log could not be read there (evstore "
				 "verify names the damage)", evs_strerror(err));
			sse_end(e, err, e->next, why);
			break;
		}
		if (now >= due) {
			sse_put(e, ": heartbeat\n\n", 13);
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t wait = due - now < 250 ? due - now : 250;
		ts.tv_nsec += (long)(wait * 1000000);
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&e->cv, &e->mu, &ts);
	}
	if (atomic_load(&srv->stopping)) {
		/* at once: a frame cut short is dropped by the client, which
		 * resumes after the last whole one */
		n = MHD_CONTENT_READER_END_OF_STREAM;
	} else if (e->len > e->off) {
		n = (ssize_t)(e->len - e->off < max ? e->len - e->off : max);
		memcpy(out, e->buf + e->off, (size_t)n);
		e->off += (size_t)n;
		e->last_write_ms = now_ms();
		pthread_cond_broadcast(&e->cv);
	} else {
		n = MHD_CONTENT_READER_END_OF_STREAM;
	}
	pthread_mutex_unlock(&e->mu);
	return n;
}

static void sse_free(void *cls)
{
	sse *e = cls;

	pthread_mutex_lock(&e->mu);
	e->closed = true;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	evs_subscription_stop(e->sub);
	atomic_fetch_sub(&e->srv->subscribers, 1);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	for (size_t i = 0; i < e->ntypes; i++)
		free(e->types[i]);
	free(e->category);
	free(e->buf);
	free(e);
}

static enum MHD_Result subscribe(server *srv, struct MHD_Connection *c, req *r, args *a)
{
	static const char *const known[] = { "from", "category", "type", "access_token", NULL };
	const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	evs_subscribe_options so = EVS_SUBSCRIBE_OPTIONS_INIT;
	struct MHD_Response *resp;
	uint64_t from, last_id;
	enum MHD_Result ok;
	sse *e;
	int rc;

	if (args_only(a, known) || args_u64(a, "from", 1, 0, INT64_MAX, &from))
		return answer_bad(c, r, "%s", a->why);
	if (last && *last) {
		if (parse_u64(last, &last_id) != 0 || last_id >= INT64_MAX)
			return answer_bad(c, r, "Last-Event-ID must be a position, not '%.32s'",
					  last);
		from = last_id + 1;
	}
	if (atomic_fetch_add(&srv->subscribers, 1) >= srv->o->max_subscribers) {
		atomic_fetch_sub(&srv->subscribers, 1);
		return answer_error(c, r, 503, "busy", 0, NULL, NULL, "%u subscribers already: "
				    "the most this server takes (--max-subscribers)",
				    srv->o->max_subscribers);
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		atomic_fetch_sub(&srv->subscribers, 1);
		return answer_json(c, r, 500, NULL);
	}
	e->srv = srv;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->last_write_ms = now_ms();
	bool oom = false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i].key, "type") == 0 &&
		    !(e->types[e->ntypes++] = strdup(a->v[i].val)))
			oom = true;
	if (args_get(a, "category") && !(e->category = strdup(args_get(a, "category"))))
		oom = true;
	if (oom) {
		sse_free(e);
		return answer_json(c, r, 500, NULL);
	}
	so.from = from;
	e->next = from ? from : 1;
	so.filter.category = e->category;
	so.filter.types = (const char *const *)e->types;
	so.filter.ntypes = e->ntypes;
	/* a first comment, so the client sees the stream open at once */
	sse_put(e, ": evstore\n\n", 11);
	rc = evs_subscribe(&e->sub, srv->store, &so, sse_event, e);
	if (rc) {
		ok = answer_lib(c, r, rc, NULL);
		sse_free(e);
		return ok;
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, sse_read, e,
						 sse_free);
	if (!resp) {
		sse_free(e);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ok = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	r->status = 200;
	r->answered = true;
	return ok;
}

/* ---- dispatch ---- */

/*
 * Splits the raw path into its decoded parts and finds the route;
 * `allow` gets the methods of a known path.  0, or -1 for a part that is
 * not percent-encoded UTF-8.
 */
static int route_of(const char *url, const char *method, req *r, const char **allow)
{
	char *parts[6];
	size_t n = 0;
	const char *p = url;
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool post = strcmp(method, "POST") == 0;

	*allow = NULL;
	r->route = R_NONE;
	if (*p != '/')
		return 0;
	p++;
	while (*p && n < 6) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		parts[n] = pct_decode(p, len, false);
		if (!parts[n]) {
			for (size_t i = 0; i < n; i++)
				free(parts[i]);
			return -1;
		}
		n++;
		p += len;
		if (*p == '/')
			p++;
		if (!*p && end)
			break; /* a trailing slash: no empty last part */
	}
	if (*p) {
		for (size_t i = 0; i < n; i++)
			free(parts[i]);
		return 0;
	}
	enum route want = R_NONE;
	const char *methods = "GET, HEAD";
	size_t keep = 0;          /* parts after the first that the handler reads */
	if (n == 0) {
		want = R_PAGE;
	} else if (n == 1 && strcmp(parts[0], "health") == 0) {
		want = R_HEALTH;
	} else if (n == 1 && strcmp(parts[0], "ready") == 0) {
		want = R_READY;
	} else if (n == 1 && strcmp(parts[0], "metrics") == 0) {
		want = R_METRICS;
	} else if (n == 1 && strcmp(parts[0], "streams") == 0) {
		want = R_STREAMS;
	} else if (n == 2 && strcmp(parts[0], "streams") == 0 && parts[1][0]) {
		want = post ? R_STREAM_APPEND : R_STREAM_READ;
		methods = "GET, HEAD, POST";
		keep = 1;
	} else if (n == 3 && strcmp(parts[0], "streams") == 0 && parts[1][0] &&
		   strcmp(parts[2], "info") == 0) {
		want = R_STREAM_INFO;
		keep = 1;
	} else if (n == 1 && strcmp(parts[0], "all") == 0) {
		want = R_ALL;
	} else if (n == 1 && strcmp(parts[0], "subscribe") == 0) {
		want = R_SUBSCRIBE;
	} else if (n == 3 && strcmp(parts[0], "commands") == 0 && parts[1][0] && parts[2][0]) {
		want = R_COMMAND;
		methods = "POST";
		keep = 2;
	} else if (n == 1 && strcmp(parts[0], "projections") == 0) {
		want = R_PROJECTIONS;
	} else if (n == 4 && strcmp(parts[0], "projections") == 0 &&
		   strcmp(parts[2], "queries") == 0) {
		want = R_QUERY;
		keep = 3;
	}
	if (want != R_NONE) {
		bool ok = (get && strstr(methods, "GET")) || (post && strstr(methods, "POST"));
		if (ok) {
			r->route = want;
			for (size_t i = 0; i < keep; i++) {
				r->parts[i] = parts[i + 1];
				parts[i + 1] = NULL;
			}
			r->nparts = keep;
		} else {
			*allow = methods;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(parts[i]);
	return 0;
}

/*
 * Without --auth, whether the Host header names this server as loopback
 * (localhost, 127.x.y.z, [::1] or the --listen address, any port): a
 * browser page whose name was rebound to 127.0.0.1 sends its own name.
 * No Host (HTTP/1.0) passes.
 */
static bool host_ok(const server *srv, const char *host)
{
	char name[256];
	size_t n;

	if (!host || srv->auth)
		return true;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		n = end ? (size_t)(end - host - 1) : 0;
		host++;
	} else {
		const char *colon = strchr(host, ':');
		n = colon ? (size_t)(colon - host) : strlen(host);
	}
	if (n == 0 || n >= sizeof(name))
		return false;
	memcpy(name, host, n);
	name[n] = '\0';
	if (strcasecmp(name, "localhost") == 0 || strcmp(name, "::1") == 0 ||
	    strcmp(name, srv->o->listen) == 0)
		return true;
	struct in_addr a4;
	return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* Whether a POST's Content-Type is JSON (or missing).  A form or text
 * body is what a page of another site can send without asking first. */
static bool json_body_type(const char *ct)
{
	static const char want[] = "application/json";

	if (!ct)
		return true;
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return false;
	ct += sizeof(want) - 1;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static enum role role_needed(enum route rt)
{
	switch (rt) {
	case R_PAGE:
	case R_HEALTH:
	case R_READY:
		return ROLE_NONE;
	case R_STREAM_APPEND:
	case R_COMMAND:
		return ROLE_WRITE;
	default:
		return ROLE_READ;
	}
}

/* The caller's role: the bearer token, or for a GET an access_token
 * parameter (EventSource cannot send headers).  Without --auth, admin. */
static enum role caller_role(server *srv, struct MHD_Connection *c, bool get, bool *given)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *q = NULL;
	char *decoded = NULL;
	enum role role;

	*given = false;
	if (!srv->auth)
		return ROLE_ADMIN;
	if (h && strncasecmp(h, "Bearer ", 7) == 0) {
		h += 7;
		while (*h == ' ')
			h++;
		*given = true;
		return token_role(srv, h);
	}
	if (h) {
		*given = true;
		return ROLE_NONE;
	}
	q = get ? MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "access_token") : NULL;
	if (!q)
		return ROLE_NONE;
	*given = true;
	decoded = pct_decode(q, strlen(q), true);
	role = decoded ? token_role(srv, decoded) : ROLE_NONE;
	if (decoded) {
		explicit_bzero(decoded, strlen(decoded));
		free(decoded);
	}
	return role;
}

static enum MHD_Result dispatch(server *srv, struct MHD_Connection *c, req *r)
{
	args a;
	enum MHD_Result ok;

	/* the request is here whole: no deadline while it is answered */
	conn_deadline(srv, r->c, 0);
	memset(&a, 0, sizeof(a));
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &a);
	if (a.bad) {
		ok = answer_bad(c, r, "%s", a.why);
		args_free(&a);
		return ok;
	}
	switch (r->route) {
	case R_PAGE: {
		static const char *const known[] = { "from", "until", NULL };
		char *copy = strdup(page_html);
		if (args_only(&a, known)) {
			free(copy);
			ok = answer_bad(c, r, "%s", a.why);
		} else {
			ok = copy ? answer(c, r, 200, "text/html; charset=utf-8", copy,
					   sizeof(page_html) - 1, NULL) : MHD_NO;
		}
		break;
	}
	case R_HEALTH:
		ok = answer_json(c, r, 200, json_pack("{s:s}", "status", "ok"));
		break;
	case R_READY: {
		char why[256];
		bool ready = is_ready(srv, why, sizeof(why));
		ok = answer_json(c, r, ready ? 200 : 503,
				 ready ? json_pack("{s:b}", "ready", 1) :
				 json_pack("{s:b, s:s}", "ready", 0, "reason", why));
		break;
	}
	case R_METRICS:
		ok = metrics(srv, c, r, &a);
		break;
	case R_STREAMS:
		ok = list_streams(srv, c, r, &a);
		break;
	case R_STREAM_READ:
		ok = read_stream(srv, c, r, &a);
		break;
	case R_STREAM_APPEND:
	case R_COMMAND: {
		bool big = r->len > BIG_BODY;
		if (big)
			while (sem_wait(&srv->big_parses) != 0 && errno == EINTR)
				;
		ok = r->route == R_COMMAND ? command(srv, c, r, &a) : append(srv, c, r, &a);
		if (big)
			sem_post(&srv->big_parses);
		break;
	}
	case R_STREAM_INFO:
		ok = stream_info(srv, c, r, &a);
		break;
	case R_ALL:
		ok = read_all(srv, c, r, &a);
		break;
	case R_SUBSCRIBE:
		ok = subscribe(srv, c, r, &a);
		break;
	case R_PROJECTIONS:
		ok = projections(srv, c, r, &a);
		break;
	case R_QUERY:
		ok = query(srv, c, r, &a);
		break;
	default:
		ok = answer_error(c, r, 404, "notfound", EVS_ENOTFOUND, NULL, NULL, "no route");
		break;
	}
	args_free(&a);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **con_cls)
{
	server *srv = cls;
	req *r = *con_cls;

	(void)version;
	if (!r) {
		const union MHD_ConnectionInfo *info;
		const char *allow, *cl;
		enum role need, have;
		bool given;

		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		atomic_fetch_add(&srv->inflight, 1);
		info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->c = info ? info->socket_context : NULL;
		if (atomic_load(&srv->stopping))
			return answer_error(c, r, 503, "busy", 0, NULL, NULL, "shutting down");
		if (route_of(url, method, r, &allow) != 0)
			return answer_bad(c, r, "the path is not percent-encoded UTF-8 (a name "
					  "with a NUL byte or a bad escape)");
		if (allow)
			return answer_error(c, r, 405, "method", 0, NULL, allow, "%s is not "
					    "allowed here (allowed: %s)", method, allow);
		if (r->route == R_NONE)
			return answer_error(c, r, 404, "notfound", EVS_ENOTFOUND, NULL, NULL,
					    "no route %s %.200s", method, url);
		const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
		if (!host_ok(srv, host))
			return answer_error(c, r, 403, "forbidden", 0, NULL, NULL,
					    "Host '%.100s' is not a loopback name: without --auth "
					    "only localhost, 127.0.0.1 and [::1] are served", host);
		need = role_needed(r->route);
		have = caller_role(srv, c, strcmp(method, "POST") != 0, &given);
		if (need > have && !given)
			return answer_error(c, r, 401, "unauthorized", 0, NULL, NULL,
					    "a bearer token is needed (Authorization: Bearer "
					    "TOKEN)");
		if (need > have && have == ROLE_NONE)
			return answer_error(c, r, 401, "unauthorized", 0, NULL, NULL,
					    "the token is not valid");
		if (need > have)
			return answer_error(c, r, 403, "forbidden", 0, NULL, NULL,
					    "%s needs the %s role; the token has %s",
					    route_names[r->route], role_names[need],
					    role_names[have]);
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl) {
			uint64_t n;
			if (parse_u64(cl, &n) != 0)
				return answer_bad(c, r, "bad Content-Length");
			if (n > srv->o->max_body)
				return answer_error(c, r, 413, "toolarge", EVS_ETOOLARGE, NULL, NULL,
						    "the body has %" PRIu64 " bytes, more than the "
						    "%zu this server takes (--max-body)", n,
						    srv->o->max_body);
		}
		if (strcmp(method, "POST") == 0) {
			const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
								     "Content-Type");
			if (!json_body_type(ct))
				return answer_error(c, r, 415, "media", 0, NULL, NULL,
						    "the body must be sent as Content-Type: "
						    "application/json, not '%.100s'", ct);
			return MHD_YES; /* the body comes in the next calls */
		}
		return dispatch(srv, c, r);
	}
	if (r->answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (r->too_large || r->len + n > srv->o->max_body) {
			r->too_large = true;
			return MHD_YES;
		}
		return grow_append(&r->body, &r->len, &r->cap, 4096, upload_data, n) ?
		       MHD_YES : MHD_NO;
	}
	if (r->too_large)
		return answer_error(c, r, 413, "toolarge", EVS_ETOOLARGE, NULL, NULL,
				    "the body is larger than the %zu bytes this server takes "
				    "(--max-body)", srv->o->max_body);
	return dispatch(srv, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	server *srv = cls;
	req *r = *con_cls;

	(void)c;
	(void)toe;
	if (!r)
		return;
	atomic_fetch_sub(&srv->inflight, 1);
	if (r->answered)
		atomic_fetch_add_explicit(&srv->requests[r->route][status_slot(r->status)], 1,
					  memory_order_relaxed);
	/* the next request on this connection has --timeout to arrive whole */
	conn_deadline(srv, r->c, (uint64_t)srv->o->timeout_s * 1000);
	for (size_t i = 0; i < r->nparts; i++)
		free(r->parts[i]);
	free(r->body);
	free(r);
	*con_cls = NULL;
}

/* MHD's own unescaping is off: route_of and collect_arg decode each part
 * themselves, so an escaped '/' stays inside a stream name. */
static size_t keep_escapes(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

/* ---- the server's life ---- */

static int stop_pipe[2] = { -1, -1 };

static volatile sig_atomic_t signals;

/* The first signal starts the graceful stop; a second one ends the
 * process at once (the store recovers at its next open, as after a
 * crash). */
static void on_signal(int sig)
{
	static const char msg[] = "evstore: serve: second signal: stopping now\n";
	char c = (char)sig;
	ssize_t w;

	if (signals++) {
		w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)w;
		_exit(1);
	}
	w = write(stop_pipe[1], &c, 1);
	(void)w;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Loads every .sql file of the directory, in name order. */
static int load_projections(server *srv, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *files[MAX_PROJECTIONS];
	size_t n = 0;
	int rc = 0;

	if (!d) {
		fprintf(stderr, "evstore: %s: cannot open the projections directory %s: %s\n",
			srv->cmd, dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 4, ".sql") != 0 || de->d_name[0] == '.')
			continue;
		if (n == MAX_PROJECTIONS) {
			fprintf(stderr, "evstore: %s: more than %d projections in %s\n", srv->cmd,
				MAX_PROJECTIONS, dir);
			rc = -1;
			break;
		}
		if (!(files[n] = strdup(de->d_name))) {
			rc = -1;
			break;
		}
		n++;
	}
	closedir(d);
	qsort(files, n, sizeof(files[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		const char *name;
		int err;

		if (rc)
			break;
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if ((err = evs_projection_load(srv->store, path, NULL, &name)) != 0) {
			fprintf(stderr, "evstore: %s: cannot load projection %s: %s\n", srv->cmd,
				path, evs_errmsg());
			rc = -1;
			break;
		}
		srv->projections[srv->nprojections++] = name;
	}
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	return rc;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
	server *srv = cls;

	fprintf(stderr, "evstore: %s: http: ", srv->cmd);
	vfprintf(stderr, fmt, ap);
}

int serve_run(const char *cmd, const serve_options *o)
{
	server srv;
	evs_options so = EVS_OPTIONS_INIT;
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	char host[INET6_ADDRSTRLEN + 2];
	int rc = 1, err;

	memset(&srv, 0, sizeof(srv));
	memset(&ss, 0, sizeof(ss));
	srv.o = o;
	srv.cmd = cmd;
	pthread_mutex_init(&srv.conn_mu, NULL);
	sem_init(&srv.big_parses, 0, BIG_PARSES);
	orders_decider(&srv.orders);

	if (inet_pton(AF_INET, o->listen, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)o->port);
		snprintf(host, sizeof(host), "%s", o->listen);
	} else if (inet_pton(AF_INET6, o->listen,
			     &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)o->port);
		snprintf(host, sizeof(host), "[%s]", o->listen);
	} else {
		fprintf(stderr, "evstore: %s: --listen '%s' is not an IPv4 or IPv6 address\n",
			cmd, o->listen);
		return 2;
	}
	if (o->auth_file) {
		if (load_tokens(&srv, o->auth_file) != 0)
			goto out;
		srv.auth = true;
	} else if (!is_loopback(&ss)) {
		fprintf(stderr, "evstore: %s: without --auth the server listens on loopback "
			"only; give --auth FILE to listen on %s\n", cmd, o->listen);
		return 2;
	}

	so.create = 1;
	so.durability = o->durability;
	so.schema_dir = o->schemas;
	if ((err = evs_open(&srv.store, o->dir, &so)) != 0) {
		fprintf(stderr, "evstore: %s: cannot open store '%s': %s: %s\n", cmd, o->dir,
			evs_strerror(err), evs_errmsg());
		goto out;
	}
	if (o->projections && load_projections(&srv, o->projections) != 0)
		goto out;
	if (srv.nprojections && (err = evs_projections_start(srv.store)) != 0) {
		fprintf(stderr, "evstore: %s: cannot start the projections: %s\n", cmd,
			evs_errmsg());
		goto out;
	}

	if (pipe2(stop_pipe, O_CLOEXEC) != 0) {
		fprintf(stderr, "evstore: %s: pipe: %s\n", cmd, strerror(errno));
		goto out;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	srv.daemon = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
		MHD_USE_ITC | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
		o->port, NULL, NULL, on_request, &srv,
		MHD_OPTION_EXTERNAL_LOGGER, log_mhd, &srv,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o->max_header,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)(2 << 20),
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
		MHD_OPTION_NOTIFY_CONNECTION, notify_connection, &srv,
		MHD_OPTION_UNESCAPE_CALLBACK, keep_escapes, NULL,
		MHD_OPTION_END);
	if (!srv.daemon) {
		fprintf(stderr, "evstore: %s: cannot listen on %s port %u: %s\n", cmd, o->listen,
			o->port, strerror(errno));
		goto out;
	}
	if (pthread_create(&srv.reaper, NULL, reaper_main, &srv) != 0) {
		fprintf(stderr, "evstore: %s: cannot start a thread\n", cmd);
		goto out;
	}
	srv.reaper_running = true;
	info = MHD_get_daemon_info(srv.daemon, MHD_DAEMON_INFO_BIND_PORT);
	{
		json_t *names = json_array();
		for (size_t i = 0; names && i < srv.nprojections; i++)
			json_array_append_new(names, json_string(srv.projections[i]));
		char url[128];
		snprintf(url, sizeof(url), "http://%s:%u", host, info ? info->port : o->port);
		json_t *hello = json_pack("{s:s, s:s, s:b, s:o}", "listening", url, "store", o->dir,
					  "auth", srv.auth, "projections", names);
		char *line = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
		if (line)
			printf("%s\n", line);
		fflush(stdout);
		free(line);
		json_decref(hello);
	}
	if (!srv.auth)
		fprintf(stderr, "evstore: %s: no --auth: listening on loopback only, and every "
			"caller may read and write\n", cmd);

	/* until SIGTERM or SIGINT */
	for (;;) {
		char c;
		ssize_t got = read(stop_pipe[0], &c, 1);
		if (got == 1 || (got < 0 && errno != EINTR))
			break;
	}
	fprintf(stderr, "evstore: %s: stopping: finishing the requests in flight\n", cmd);
	rc = 0;

out:
	atomic_store(&srv.stopping, true);
	if (srv.daemon) {
		/* no new connections; the ones open finish what they do, event
		 * streams end at their next wake-up */
		MHD_socket listener = MHD_quiesce_daemon(srv.daemon);
		if (listener != MHD_INVALID_SOCKET)
			close(listener); /* new connections are refused, not queued */
		for (int i = 0; i < 1000 && atomic_load(&srv.inflight); i++) {
			struct timespec nap = { 0, 10 * 1000000L };
			nanosleep(&nap, NULL);
		}
		MHD_stop_daemon(srv.daemon);
	}
	if (srv.reaper_running)
		pthread_join(srv.reaper, NULL);
	if (srv.store) {
		if (srv.nprojections)
			evs_projections_stop(srv.store);
		evs_close(srv.store);
	}
	if (rc == 0)
		fprintf(stderr, "evstore: %s: stopped\n", cmd);
	if (srv.tokens)
		explicit_bzero(srv.tokens, srv.ntokens * sizeof(*srv.tokens));
	free(srv.tokens);
	pthread_mutex_destroy(&srv.conn_mu);
	sem_destroy(&srv.big_parses);
	if (stop_pipe[0] >= 0) {
		close(stop_pipe[0]);
		close(stop_pipe[1]);
		stop_pipe[0] = stop_pipe[1] = -1;
	}
	return rc;
}
