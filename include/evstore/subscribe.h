/*
 * evstore/subscribe.h: catch-up subscriptions.  A subscription delivers the
 * log's events in position order to a callback on a thread of its own:
 * first the history from a position, then live events as they are
 * appended, with no gap and no duplicate at the switch.
 *
 * In the writer's process, live delivery is woken by the writer when a
 * group is acknowledged.  A read-only handle (another process's writer)
 * polls the head the writer publishes in the store's LOCK file, a shared
 * memory read with no system call, every poll_ms milliseconds (default
 * 50): that is the most a live event waits there.
 */
#ifndef EVSTORE_SUBSCRIBE_H
#define EVSTORE_SUBSCRIBE_H

#include "common.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evs_subscription evs_subscription;

#define EVS_SUBSCRIBE_OPTIONS_VERSION 1

typedef struct evs_subscribe_options {
	int version;               /* EVS_SUBSCRIBE_OPTIONS_VERSION */
	uint64_t from;             /* first position (0 or 1: the start) */
	evs_filter filter;         /* category and types; copied */
	uint32_t poll_ms;          /* read-only handles: 0 means 50 */
} evs_subscribe_options;

#define EVS_SUBSCRIBE_OPTIONS_INIT { EVS_SUBSCRIBE_OPTIONS_VERSION, 0, { NULL, NULL, 0 }, 0 }

/*
 * Starts a subscription on `store` (which must outlive it): `cb` is called
 * on the subscription's thread for each event from options->from on that
 * passes the filter, in position order, until evs_subscription_stop or
 * until cb returns non-zero.  The event is valid only during the call.
 * options may be NULL (everything from the start).  On success *out is
 * the new subscription.
 */
EVS_EXTERN int evs_subscribe(evs_subscription **out, evs_store *store,
			     const evs_subscribe_options *options, evs_event_cb cb,
			     void *ctx);

/*
 * The next position the subscription will look at: every event before it
 * that passes the filter has been delivered.  Safe from any thread.
 */
EVS_EXTERN uint64_t evs_subscription_position(const evs_subscription *sub);

/*
 * The error that ended the subscription early (a read that failed, e.g.
 * EVS_ECORRUPT for a damaged batch: no more events come), or 0 while it
 * runs.  Safe from any thread; evs_subscription_stop returns the same
 * error with its message.
 */
EVS_EXTERN int evs_subscription_error(const evs_subscription *sub);

/*
 * Stops the subscription (waiting for a callback in progress to return)
 * and frees it.  Returns the error that ended it early (a failed read,
 * with evs_errmsg() set), else 0.  NULL is ignored.  Not from inside the
 * callback.
 */
EVS_EXTERN int evs_subscription_stop(evs_subscription *sub);

#ifdef __cplusplus
}
#endif

#endif
