/*
 * handle.c: command handling (evs_handle): load a stream's state through a
 * decider, decide, stamp and append, retrying on conflicts.
 *
 * A command is handled optimistically: the state is folded from the
 * stream's events (version V), decide() runs without any lock, and the
 * events are appended with expected version V.  If another writer got
 * there first (EVS_ECONFLICT), only the events after V are read and folded
 * into the state it already has, and decide() runs again on the new
 * state, after a short random wait so that racing handlers spread out.
 *
 * Idempotency: with a command id, the k-th event of the command gets an id
 * derived from (stream, command id, k) alone.  Before each decision the
 * store is asked for the command's first id: if it is stored, the command
 * was handled before and its events are reported, not decided again (a
 * second decision on the new state could well differ, e.g. "already
 * paid").  If two handlers of one command race, the loser's append
 * conflicts, and its retry finds the winner's events.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evstore/handle.h"
#include "evstore/upcast.h"
#include "store.h"

#define DEFAULT_ATTEMPTS 10
#define DEFAULT_BACKOFF_US 200
#define MAX_BACKOFF_US 100000

struct evs_decision {
	evs_new_event *ev;      /* type strings owned; data/metadata set later */
	json_t **data;          /* owned references, one per event */
	size_t n, cap;
	int err;                /* the first failed emit */
	bool rejected;
	char code[64];
	char reason[256];
};

static void decision_clear(evs_decision *d)
{
	for (size_t i = 0; i < d->n; i++) {
		evs__free((char *)d->ev[i].type);
		json_decref(d->data[i]);
	}
	evs__free(d->ev);
	evs__free(d->data);
	memset(d, 0, sizeof(*d));
}

int evs_decision_emit(evs_decision *d, const char *type, uint32_t schema_version,
		      json_t *data)
{
	size_t tl;
	char *t;
	int rc;

	if (!d) {
		json_decref(data);
		return evs__err(EVS_EINVAL, "evs_decision_emit: no decision");
	}
	if ((rc = evs__check_type_name(type, &tl)) != 0) {
		json_decref(data);
		return d->err ? rc : (d->err = rc);
	}
	if (!json_is_object(data)) {
		json_decref(data);
		rc = evs__err(EVS_EINVAL, "evs_decision_emit: the data of event %zu ('%s') is "
			      "not a JSON object", d->n + 1, type);
		return d->err ? rc : (d->err = rc);
	}
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 8;
		evs_new_event *ev = evs__realloc(d->ev, cap * sizeof(*ev));
		json_t **dv = ev ? evs__realloc(d->data, cap * sizeof(*dv)) : NULL;
		if (ev)
			d->ev = ev;
		if (!dv) {
			json_decref(data);
			rc = evs__err(EVS_ENOMEM, "out of memory emitting event %zu", d->n + 1);
			return d->err ? rc : (d->err = rc);
		}
		d->data = dv;
		d->cap = cap;
	}
	if (!(t = evs__strdup(type))) {
		json_decref(data);
		rc = evs__err(EVS_ENOMEM, "out of memory emitting event %zu", d->n + 1);
		return d->err ? rc : (d->err = rc);
	}
	memset(&d->ev[d->n], 0, sizeof(d->ev[d->n]));
	d->ev[d->n].type = t;
	d->ev[d->n].schema_version = schema_version ? schema_version : 1;
	d->data[d->n] = data;
	d->n++;
	return 0;
}

void evs_decision_reject(evs_decision *d, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (!d || d->rejected)
		return;
	d->rejected = true;
	snprintf(d->code, sizeof(d->code), "%s", code ? code : "rejected");
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
		va_end(ap);
	}
}

/*
 * The id of event k of command `cmd` on `stream`: 128 bits of two
 * differently seeded 64-bit hashes, marked as a version 8 (custom) UUID.
 * Not a cryptographic hash: ids of honest commands do not collide, and
 * nobody gains anything by making them.
 */
static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return mix64(h ^ n);
}

static void command_event_id(uint8_t out[16], const char *stream, const char *cmd, uint32_t k)
{
	uint64_t a = 0xcbf29ce484222325ull, b = 0x9e3779b97f4a7c15ull;
	uint8_t kb[4] = { (uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24) };

	a = hash_bytes(a, stream, strlen(stream) + 1);
	a = hash_bytes(a, cmd, strlen(cmd) + 1);
	a = hash_bytes(a, kb, sizeof(kb));
	b = hash_bytes(b ^ a, kb, sizeof(kb));
	b = hash_bytes(b, cmd, strlen(cmd) + 1);
	b = hash_bytes(b, stream, strlen(stream) + 1);
	evs__put64(out, a);
	evs__put64(out + 8, b);
	out[6] = (uint8_t)(0x80 | (out[6] & 0x0f));
	out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
}

/* Frees text from json_dumps, with jansson's own allocator. */
static void json_text_free(char *text)
{
	json_free_t jfree;

	json_get_alloc_funcs(NULL, &jfree);
	if (text)
		jfree(text);
}

/* ---- loading the state ---- */

typedef struct loader {
	evs_store *s;
	const evs_decider *d;
	const char *stream;
	json_t *state;          /* owned */
	uint64_t version;
	int rc;
} loader;

static int load_event(const evs_event *ev, void *ctx)
{
	loader *l = ctx;
	evs_event up = *ev;
	json_t *data;

	if ((l->rc = evs_upcast(l->s, ev, &data, &up.schema_version)) != 0)
		return 1;
	l->state = l->d->evolve(l->d->ctx, l->state, &up, data);
	json_decref(data);
	if (!l->state) {
		l->rc = evs__err(EVS_EINVAL, "decider '%s': evolve returned NULL for stream '%s' "
				 "version %" PRIu64 " (%.*s)", l->d->category, l->stream,
				 ev->version, (int)ev->type_len, ev->type);
		return 1;
	}
	l->version = ev->version;
	return 0;
}

/* Folds the stream's events after l->version into l->state. */
static int load(evs_store *s, loader *l)
{
	int rc = evs_read_stream(s, l->stream, l->version + 1, EVS_FORWARD, 0, load_event, l);

	if (l->rc)
		return l->rc;
	if (rc == EVS_ENOTFOUND && l->version == 0) {
		evs__err_clear(); /* no stream yet: a state like any other */
		return 0;
	}
	return rc;
}

/* ---- snapshots ----
 *
 * Only ever a saving: a snapshot that is missing, unreadable, taken under
 * another state_version or other upcasters, or past the stream's end, is
 * ignored and the state folded from the events.  Errors reading one are
 * swallowed for the same reason (the events are read next anyway, and
 * report their own errors).  New ones go to the indexer thread, which
 * writes them in its next transaction.
 */

/* Starts l from the stream's snapshot if one fits; its version, or 0.
 * *unfit: there is one, not used. */
static uint64_t from_snapshot(evs_store *s, loader *l, uint64_t hash, bool *unfit)
{
	evs__snapshot snap = { 0, 0, 0, NULL, false };
	evs_stream_info info;
	evs__ix *ix;
	uint64_t head, v = 0;
	json_t *state = NULL;
	int rc;

	if (evs__store_read_begin(s, &ix, &head) != 0) {
		evs__err_clear();
		return 0;
	}
	rc = evs__ix_get_snapshot(ix, l->stream, &snap);
	evs__store_ix_put(s, ix);
	if (rc == 0 && snap.state_version == l->d->state_version && snap.upcasters == hash &&
	    evs_stream_info_get(&info, s, l->stream) == 0 && snap.version <= info.last_version &&
	    (state = json_loads(snap.state, 0, NULL)) != NULL) {
		json_decref(l->state);
		l->state = state;
		l->version = v = snap.version;
	}
	*unfit = rc == 0 && v == 0;
	evs__free(snap.state);
	evs__err_clear();
	return v;
}

static void save_snapshot(evs_store *s, const loader *l, uint64_t hash, bool replace)
{
	char *text = evs__json_dumps(l->state);
	evs__snapshot snap = { l->version, l->d->state_version, hash, text, replace };

	if (text)
		evs__indexer_push_snapshot(s, l->stream, &snap);
	json_text_free(text);
}

/* ---- a command handled before ---- */

typedef struct found {
	const char *stream, *cmd;
	evs_handle_result *res;
} found;

static int found_event(const evs_event *ev, void *ctx)
{
	found *f = ctx;
	uint8_t want[16];

	command_event_id(want, f->stream, f->cmd, f->res->events);
	if (memcmp(ev->id, want, 16) != 0 || ev->stream_len != strlen(f->stream) ||
	    memcmp(ev->stream, f->stream, ev->stream_len) != 0)
		return 1;
	if (f->res->events == 0) {
		f->res->first_version = ev->version;
		f->res->first_position = ev->position;
	}
	f->res->last_version = ev->version;
	f->res->last_position = ev->position;
	f->res->events++;
	return 0;
}

/* 1 (with *res filled) if the command's events are stored, 0 if not, or
 * an error. */
static int handled_before(evs_store *s, const char *stream, const char *cmd,
			  evs_handle_result *res)
{
	uint8_t id[16];
	uint64_t head, pos;
	evs__ix *ix;
	found f = { stream, cmd, res };
	evs_stream_info info;
	int rc;

	command_event_id(id, stream, cmd, 0);
	if ((rc = evs__store_read_begin(s, &ix, &head)) != 0)
		return rc;
	rc = evs__find_id(s, ix, id, &pos);
	evs__store_ix_put(s, ix);
	if (rc == EVS_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	res->events = 0;
	rc = evs_read_all(s, pos, 0, NULL, found_event, &f);
	if (rc)
		return rc;
	if (res->events == 0) {
		char t[37];
		evs_uuid_format(t, id);
		return evs__err(EVS_EINVAL, "stream '%s': command '%s' has its first event id "
				"%s at position %" PRIu64 ", in another stream", stream, cmd, t,
				pos);
	}
	if ((rc = evs_stream_info_get(&info, s, stream)) != 0)
		return rc;
	res->idempotent = 1;
	res->stream_version = info.last_version;
	return 1;
}

/* ---- appending a decision ---- */

/* The metadata every event of the command carries (a new string). */
static char *command_metadata(const evs_handle_options *o)
{
	const char *corr = o->correlation_id ? o->correlation_id : o->command_id;
	const char *cause = o->causation_id ? o->causation_id : o->command_id;
	char fresh[37];
	json_t *m = json_object();
	char *text;

	if (!m)
		return NULL;
	if (!corr) {
		uint8_t id[16];
		evs__uuid_v7(id, evs__now_us());
		evs_uuid_format(fresh, id);
		corr = fresh;
	}
	/* a member that could not be set (no memory) fails it all */
	if (json_object_set_new(m, "correlation_id", json_string(corr)) ||
	    (cause && json_object_set_new(m, "causation_id", json_string(cause))) ||
	    (o->command_id && json_object_set_new(m, "command_id", json_string(o->command_id)))) {
		json_decref(m);
		return NULL;
	}
	text = evs__json_dumps(m);
	json_decref(m);
	return text;
}

static int append_decision(evs_store *s, const char *stream, uint64_t expected,
			   evs_decision *d, const char *meta, const char *cmd,
			   evs_append_result *ar)
{
	uint8_t (*ids)[16] = NULL;
	char **texts = evs__calloc(d->n, sizeof(*texts));
	int rc = 0;

	if (!texts)
		return evs__err(EVS_ENOMEM, "out of memory appending %zu events", d->n);
	if (cmd && !(ids = evs__malloc(d->n * sizeof(*ids)))) {
		evs__free(texts);
		return evs__err(EVS_ENOMEM, "out of memory appending %zu events", d->n);
	}
	for (size_t i = 0; i < d->n && !rc; i++) {
		if (!(texts[i] = evs__json_dumps(d->data[i]))) {
			rc = evs__err(EVS_ENOMEM, "out of memory appending %zu events", d->n);
			break;
		}
		d->ev[i].data = texts[i];
		d->ev[i].metadata = meta;
		if (cmd) {
			command_event_id(ids[i], stream, cmd, (uint32_t)i);
			d->ev[i].id = ids[i];
		}
	}
	if (!rc)
		rc = evs_append(s, stream, (int64_t)expected, d->ev, d->n, ar);
	for (size_t i = 0; i < d->n; i++) {
		json_text_free(texts[i]);
		d->ev[i].data = NULL;
		d->ev[i].id = NULL;
	}
	evs__free(texts);
	evs__free(ids);
	return rc;
}

/* A random wait before retry `attempt` (from 1): up to base * 2^(attempt-1). */
static void backoff(uint32_t base, int attempt)
{
	static _Thread_local uint64_t seed;
	uint64_t limit = base, us;
	struct timespec ts;

	for (int i = 1; i < attempt && limit < MAX_BACKOFF_US; i++)
		limit *= 2;
	if (limit > MAX_BACKOFF_US)
		limit = MAX_BACKOFF_US;
	if (!seed)
		seed = (uint64_t)evs__now_us() ^ (uint64_t)(uintptr_t)&ts;
	seed = mix64(seed + 0x9e3779b97f4a7c15ull);
	us = seed % (limit + 1);
	ts.tv_sec = (time_t)(us / 1000000);
	ts.tv_nsec = (long)(us % 1000000) * 1000;
	nanosleep(&ts, NULL);
}

int evs_handle(evs_store *s, const evs_decider *dec, const char *stream,
	       const json_t *command, const evs_handle_options *options,
	       evs_handle_result *out)
{
	evs_handle_options o = EVS_HANDLE_OPTIONS_INIT;
	evs_handle_result res;
	loader l;
	uint64_t hash = 0, snap_version = 0;
	bool snap_unfit = false;
	char *meta = NULL;
	size_t sl, cl;
	int rc = 0, max;

	evs__err_clear();
	memset(&l, 0, sizeof(l));
	memset(&res, 0, sizeof(res));
	if (out)
		memset(out, 0, sizeof(*out));
	if ((rc = evs__need("evs_handle", "store", s != NULL, "d", dec != NULL,
			    "command", command != NULL, (const char *)NULL)) != 0)
		return rc;
	if (dec->version != EVS_DECIDER_VERSION || !dec->category || !dec->initial ||
	    !dec->evolve || !dec->decide)
		return evs__err(EVS_EINVAL, "evs_handle: decider '%s' is incomplete (version %d, "
				"expected %d, with category, initial, evolve and decide)",
				dec->category ? dec->category : "?", dec->version,
				EVS_DECIDER_VERSION);
	if ((rc = evs__check_stream_name(stream, &sl)) != 0)
		return rc;
	cl = strlen(dec->category);
	if (sl <= cl + 1 || memcmp(stream, dec->category, cl) != 0 || stream[cl] != '-')
		return evs__err(EVS_EINVAL, "evs_handle: stream '%s' is not in category '%s' of "
				"the decider (streams are '%s-<id>')", stream, dec->category,
				dec->category);
	if (options) {
		if (options->version != EVS_HANDLE_OPTIONS_VERSION)
			return evs__err(EVS_EINVAL, "evs_handle: options version %d, expected %d",
					options->version, EVS_HANDLE_OPTIONS_VERSION);
		o = *options;
	}
	if (o.command_id && !*o.command_id)
		return evs__err(EVS_EINVAL, "evs_handle: empty command id");
	max = o.max_attempts > 0 ? o.max_attempts : DEFAULT_ATTEMPTS;
	if (!(meta = command_metadata(&o)))
		return evs__err(EVS_ENOMEM, "out of memory handling a command on '%s'", stream);

	l.s = s;
	l.d = dec;
	l.stream = stream;
	if (!(l.state = dec->initial(dec->ctx))) {
		rc = evs__err(EVS_EINVAL, "decider '%s': initial() returned NULL", dec->category);
		goto out;
	}
	if (dec->snapshot_every) {
		hash = evs__upcasters_hash(s->upcasters);
		snap_version = from_snapshot(s, &l, hash, &snap_unfit);
	}
	for (;;) {
		evs_decision d;
		evs_append_result ar;

		res.attempts++;
		if (o.command_id && (rc = handled_before(s, stream, o.command_id, &res)) != 0) {
			if (rc == 1)
				rc = 0;
			goto out;
		}
		if ((rc = load(s, &l)) != 0)
			goto out;
		memset(&d, 0, sizeof(d));
		rc = dec->decide(dec->ctx, l.state, command, &d);
		if (rc == 0 && d.err && !d.rejected)
			rc = d.err;
		if (rc) {
			if (rc > 0 || !*evs_errmsg())
				rc = evs__err(rc > 0 ? EVS_EINVAL : rc, "decider '%s': decide failed "
					      "on stream '%s' version %" PRIu64 " (%d)", dec->category,
					      stream, l.version, rc);
			decision_clear(&d);
			goto out;
		}
		res.stream_version = l.version;
		if (d.rejected) {
			memcpy(res.code, d.code, sizeof(res.code));
			memcpy(res.reason, d.reason, sizeof(res.reason));
			rc = evs__err(EVS_EREJECTED, "stream '%s': command rejected at version %"
				      PRIu64 ": %s%s%s", stream, l.version, d.code,
				      d.reason[0] ? ": " : "", d.reason);
			decision_clear(&d);
			goto out;
		}
		if (d.n == 0) {
			decision_clear(&d);
			goto out;
		}
		rc = append_decision(s, stream, l.version, &d, meta, o.command_id, &ar);
		decision_clear(&d);
		if (rc == 0) {
			res.idempotent = ar.idempotent;
			res.events = (uint32_t)(ar.last_version - ar.first_version + 1);
			res.first_version = ar.first_version;
			res.last_version = ar.last_version;
			res.first_position = ar.first_position;
			res.last_position = ar.last_position;
			res.stream_version = ar.current_version;
			goto out;
		}
		if (rc != EVS_ECONFLICT)
			goto out;
		if (res.attempts >= max) {
			rc = evs__err(EVS_ECONFLICT, "stream '%s': still conflicting after %d attempts "
				      "(the stream is at version %" PRIu64 ")", stream, res.attempts,
				      ar.current_version);
			goto out;
		}
		backoff(o.backoff_us ? o.backoff_us : DEFAULT_BACKOFF_US, res.attempts);
	}
out:
	/* A new snapshot when the stream has passed a multiple of
	 * snapshot_every since the one used (or when none fitted). */
	if (dec->snapshot_every && l.state && (rc == 0 || rc == EVS_EREJECTED) &&
	    !res.idempotent && res.stream_version >= dec->snapshot_every &&
	    res.stream_version / dec->snapshot_every > snap_version / dec->snapshot_every) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", evs_errmsg());
		if (load(s, &l) == 0)
			save_snapshot(s, &l, hash, snap_unfit);
		if (rc)
			evs__err(rc, "%s", msg);
		else
			evs__err_clear();
	}
	json_decref(l.state);
	json_text_free(meta);
	if (out)
		*out = res;
	return rc;
}

int evs_snapshot_take(evs_store *s, const evs_decider *dec, const char *stream,
		      uint64_t *version_out)
{
	loader l;
	size_t sl;
	int rc;

	evs__err_clear();
	if (version_out)
		*version_out = 0;
	if ((rc = evs__need("evs_snapshot_take", "store", s != NULL, "d", dec != NULL,
			    "d->initial", dec && dec->initial, "d->evolve", dec && dec->evolve,
			    (const char *)NULL)) != 0)
		return rc;
	if ((rc = evs__check_stream_name(stream, &sl)) != 0)
		return rc;
	memset(&l, 0, sizeof(l));
	l.s = s;
	l.d = dec;
	l.stream = stream;
	if (!(l.state = dec->initial(dec->ctx)))
		return evs__err(EVS_EINVAL, "decider '%s': initial() returned NULL", dec->category);
	rc = load(s, &l);
	if (rc == 0 && l.version == 0)
		rc = evs__err(EVS_ENOTFOUND, "stream '%s' not found", stream);
	if (rc == 0) {
		save_snapshot(s, &l, evs__upcasters_hash(s->upcasters), true);
		if (version_out)
			*version_out = l.version;
	}
	json_decref(l.state);
	return rc;
}

int evs_snapshots_drop(evs_store *s)
{
	evs__err_clear();
	if (!s)
		return evs__err(EVS_EINVAL, "evs_snapshots_drop: no store");
	if (s->read_only)
		return evs__err(EVS_EREADONLY, "store %s is open read-only", s->dir);
	return evs__indexer_push_snapshot(s, NULL, NULL);
}
