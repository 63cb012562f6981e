/*
 * evstore/handle.h: command handling.  A decider says how a stream's events
 * fold into a state (evolve) and which events a command produces on that
 * state (decide); evs_handle does the rest: load, decide, stamp, append
 * with the loaded version as the expected version, and retry on a
 * conflict.  State, commands and event data are jansson values.
 *
 * Ownership (jansson's vocabulary):
 * - initial() returns a new reference.
 * - evolve() is given the state as a reference it owns (it may change and
 *   return the same object, or release it and return another) and returns
 *   a new reference; the event and its data are borrowed.  NULL fails the
 *   command with EVS_EINVAL.
 * - decide() borrows the state and the command; every data object it
 *   passes to evs_decision_emit is stolen.
 * - evs_handle borrows the command.
 *
 * Threading: evs_handle may be called from many threads at once on one
 * store, also for the same stream (conflicts are retried).  The decider's
 * callbacks then run concurrently on different states: ctx must allow that.
 */
#ifndef EVSTORE_HANDLE_H
#define EVSTORE_HANDLE_H

#include <jansson.h>

#include "common.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What decide() fills: events to append, or a rejection. */
typedef struct evs_decision evs_decision;

/*
 * Adds an event of `type` and schema version (0 means 1) with `data` (a
 * JSON object, stolen: also on failure).  EVS_EINVAL for a bad type or data
 * that is not an object, EVS_ENOMEM.
 */
EVS_EXTERN int evs_decision_emit(evs_decision *d, const char *type, uint32_t schema_version,
				 json_t *data);

/*
 * Rejects the command: nothing is appended and evs_handle returns
 * EVS_EREJECTED with `code` (a short machine-readable word, e.g.
 * "not_paid", at most 63 bytes) and the formatted reason (at most 255
 * bytes) in its result.  Events emitted before or after are dropped.
 */
EVS_EXTERN void evs_decision_reject(evs_decision *d, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 3, 4)))
#endif
	;

#define EVS_DECIDER_VERSION 1

typedef struct evs_decider {
	int version;               /* EVS_DECIDER_VERSION */
	const char *category;      /* it handles streams "<category>-<id>" */
	uint32_t state_version;    /* bump when evolve changes meaning */
	void *ctx;                 /* passed to every callback */

	/* The state of a stream without events (new reference). */
	json_t *(*initial)(void *ctx);
	/* Folds one event into the state; see the ownership rules above.
	 * The event comes upcast (evstore/upcast.h): `data` is at the newest
	 * version, and event->schema_version says which. */
	json_t *(*evolve)(void *ctx, json_t *state, const evs_event *event,
			  const json_t *data);
	/* Decides: 0 with events emitted (none is fine: nothing is appended),
	 * or with a rejection; a negative EVS_E* code aborts the command with
	 * that error (set a message with evs_errmsg's conventions if useful). */
	int (*decide)(void *ctx, const json_t *state, const json_t *command,
		      evs_decision *decision);

	/*
	 * Snapshots: every this many events of a stream (0: never), its state
	 * is saved in the index, with the stream version, state_version and a
	 * hash of the store's upcasters; loading starts from the latest
	 * snapshot whose state_version and hash match, else from the first
	 * event (and writes a new snapshot).  Snapshots only save work:
	 * losing or damaging them changes no result.
	 */
	uint32_t snapshot_every;
} evs_decider;

#define EVS_HANDLE_OPTIONS_VERSION 1

typedef struct evs_handle_options {
	int version;               /* EVS_HANDLE_OPTIONS_VERSION */
	/*
	 * The command's idempotency key.  The events it produces get ids
	 * derived from (stream, command_id, index), so handling the same
	 * command again finds them stored and appends nothing (the result
	 * says idempotent).  NULL: new random ids, no such protection.
	 */
	const char *command_id;
	const char *correlation_id; /* NULL: command_id, else a new id */
	const char *causation_id;   /* NULL: command_id, else none */
	int max_attempts;           /* loads+decides on conflicts; 0: 10 */
	uint32_t backoff_us;        /* first retry waits up to this, doubling
				       each time (random jitter); 0: 200 */
} evs_handle_options;

#define EVS_HANDLE_OPTIONS_INIT { EVS_HANDLE_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0 }

typedef struct evs_handle_result {
	int attempts;              /* times the state was loaded and decided */
	int idempotent;            /* 1: the command was handled before */
	uint32_t events;           /* events appended (or found, if idempotent) */
	uint64_t first_version, last_version;   /* 0 when no events */
	uint64_t first_position, last_position;
	uint64_t stream_version;   /* the stream's version after the command */
	char code[64];             /* the rejection, with EVS_EREJECTED */
	char reason[256];
} evs_handle_result;

/*
 * Handles `command` (borrowed) on `stream` with decider `d`: loads the
 * stream's state (initial() then evolve() over its events), calls
 * decide(), and appends the emitted events at the loaded version.  Each
 * event's metadata gets "correlation_id", "causation_id" (when known) and
 * "command_id" (when given).  On EVS_ECONFLICT it loads the new events and
 * decides again, up to max_attempts times, waiting a random while between
 * tries.  `options` and `out` may be NULL.
 *
 * Returns 0 (also when decide emitted nothing), EVS_EREJECTED with the
 * code and reason in *out, EVS_ECONFLICT after the last attempt, EVS_EINVAL
 * for a stream outside the decider's category or a callback failure,
 * EVS_ESCHEMA when the store's schemas refuse an event, or the error of
 * the read or append.
 */
EVS_EXTERN int evs_handle(evs_store *store, const evs_decider *d, const char *stream,
			  const json_t *command, const evs_handle_options *options,
			  evs_handle_result *out);

/*
 * Folds `stream` from its events alone (ignoring any snapshot) and saves
 * the state as its snapshot, whatever snapshot_every says; the version it
 * folds in *version_out (may be NULL).  EVS_ENOTFOUND for a stream without
 * events.  The snapshot is written by the store's index thread shortly
 * after (at the latest by evs_close).
 */
EVS_EXTERN int evs_snapshot_take(evs_store *store, const evs_decider *d, const char *stream,
				 uint64_t *version_out);

/* Drops every snapshot of the store (queued like evs_snapshot_take's
 * writes, so snapshots taken after this call are kept). */
EVS_EXTERN int evs_snapshots_drop(evs_store *store);

#ifdef __cplusplus
}
#endif

#endif
