/*
 * subscribe.c: catch-up subscriptions (evstore/subscribe.h).
 *
 * Each subscription is a thread that repeats: learn the head (the last
 * acknowledged position: the writer's `visible`, or for a read-only handle
 * the head its writer publishes in LOCK), read $all from `next` through
 * evs_read_all, then move `next` past both the last event delivered and
 * that head.  evs_read_all sees every event acknowledged before it
 * started, so everything up to the head learnt before it was delivered
 * (or filtered out): no gap, and as `next` only grows, no duplicate.
 * History and live events go through the same loop, so there is no
 * switch to get wrong.
 *
 * When `next` is past the head it waits on the store's head_cv: the
 * writer broadcasts it after each acknowledged group (evs__indexer_push,
 * only while subscriptions exist), and it is checked under head_mu, so no
 * wake-up is lost.  A read-only handle has no writer in its process: it
 * waits poll_ms and looks again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evstore/subscribe.h"
#include "store.h"

#define DEFAULT_POLL_MS 50
/* A writer handle's wait is woken; this only bounds it. */
#define WRITER_WAIT_MS 1000

struct evs_subscription {
	evs_store *s;
	pthread_t thread;
	evs_filter filter;
	char *category;
	char **types;
	evs_event_cb cb;
	void (*idle)(void *ctx, uint64_t next); /* after each pass (projections) */
	void (*ended)(void *ctx, int rc);       /* the loop ended on an error */
	void *ctx;
	uint32_t poll_ms;
	_Atomic uint64_t next;
	atomic_bool stop;
	bool stopped_by_cb;
	uint64_t last;          /* the last position delivered in a pass */
	int rc;
	atomic_int error;       /* rc, for evs_subscription_error */
	char errmsg[1024];
};

static void sub_free(evs_subscription *sub)
{
	if (!sub)
		return;
	for (size_t i = 0; i < sub->filter.ntypes; i++)
		evs__free(sub->types[i]);
	evs__free(sub->types);
	evs__free(sub->category);
	evs__free(sub);
}

static int deliver(const evs_event *ev, void *ctx)
{
	evs_subscription *sub = ctx;

	if (atomic_load(&sub->stop))
		return 1;
	sub->last = ev->position;
	if (sub->cb(ev, sub->ctx) != 0) {
		sub->stopped_by_cb = true;
		atomic_store(&sub->next, ev->position + 1);
		return 1;
	}
	return 0;
}

/* Waits until the head may have moved past `next`, or a while. */
static void wait_for_head(evs_subscription *sub, uint64_t next)
{
	evs_store *s = sub->s;
	struct timespec until;
	uint32_t ms = s->read_only ? sub->poll_ms : WRITER_WAIT_MS;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->head_mu);
	if (!atomic_load(&sub->stop) && evs__store_head_hint(s) < next)
		pthread_cond_timedwait(&s->head_cv, &s->head_mu, &until);
	pthread_mutex_unlock(&s->head_mu);
}

static void *sub_main(void *arg)
{
	evs_subscription *sub = arg;
	evs_store *s = sub->s;

	while (!atomic_load(&sub->stop)) {
		uint64_t next = atomic_load(&sub->next), head = evs__store_head_hint(s);
		int rc;

		if (head != UINT64_MAX && head < next) {
			wait_for_head(sub, next);
			continue;
		}
		sub->last = 0;
		rc = evs_read_all(s, next, 0, &sub->filter, deliver, sub);
		if (sub->stopped_by_cb)
			break;
		if (rc && !atomic_load(&sub->stop)) {
			sub->rc = rc;
			snprintf(sub->errmsg, sizeof(sub->errmsg), "%s", evs_errmsg());
			atomic_store(&sub->error, rc);
			if (sub->ended)
				sub->ended(sub->ctx, rc);
			break;
		}
		if (atomic_load(&sub->stop))
			break;
		/* everything up to `head` was delivered or filtered out */
		if (sub->last >= next)
			next = sub->last + 1;
		if (head != UINT64_MAX && head >= next)
			next = head + 1;
		atomic_store(&sub->next, next);
		if (sub->idle)
			sub->idle(sub->ctx, next);
		if (head == UINT64_MAX)
			wait_for_head(sub, next); /* no head to watch: poll */
	}
	return NULL;
}

int evs_subscribe(evs_subscription **out, evs_store *s, const evs_subscribe_options *o,
		  evs_event_cb cb, void *ctx)
{
	return evs__subscribe_ex(out, s, o, cb, NULL, NULL, ctx);
}

int evs__subscribe_ex(evs_subscription **out, evs_store *s, const evs_subscribe_options *o,
		      evs_event_cb cb, void (*idle)(void *ctx, uint64_t next),
		      void (*ended)(void *ctx, int rc), void *ctx)
{
	evs_subscribe_options defaults = EVS_SUBSCRIBE_OPTIONS_INIT;
	evs_subscription *sub;
	int rc;

	evs__err_clear();
	if ((rc = evs__need("evs_subscribe", "out", out != NULL, "store", s != NULL,
			    "cb", cb != NULL, (const char *)NULL)) != 0)
		return rc;
	*out = NULL;
	if (!o)
		o = &defaults;
	if (o->version != EVS_SUBSCRIBE_OPTIONS_VERSION)
		return evs__err(EVS_EINVAL, "evs_subscribe: options version %d, expected %d",
				o->version, EVS_SUBSCRIBE_OPTIONS_VERSION);
	if (o->filter.ntypes && !o->filter.types)
		return evs__err(EVS_EINVAL, "evs_subscribe: %zu types but no type list",
				o->filter.ntypes);
	if (!(sub = evs__calloc(1, sizeof(*sub))))
		return evs__err(EVS_ENOMEM, "out of memory subscribing");
	sub->s = s;
	sub->cb = cb;
	sub->idle = idle;
	sub->ended = ended;
	sub->ctx = ctx;
	sub->poll_ms = o->poll_ms ? o->poll_ms : DEFAULT_POLL_MS;
	atomic_store(&sub->next, o->from ? o->from : 1);
	if (o->filter.category && !(sub->category = evs__strdup(o->filter.category)))
		goto nomem;
	if (o->filter.ntypes) {
		if (!(sub->types = evs__calloc(o->filter.ntypes, sizeof(*sub->types))))
			goto nomem;
		for (size_t i = 0; i < o->filter.ntypes; i++) {
			sub->filter.ntypes = i + 1;
			if (!o->filter.types[i] || !(sub->types[i] = evs__strdup(o->filter.types[i])))
				goto nomem;
		}
	}
	sub->filter.category = sub->category;
	sub->filter.types = (const char *const *)sub->types;
	atomic_fetch_add(&s->subscribers, 1);
	if (pthread_create(&sub->thread, NULL, sub_main, sub) != 0) {
		atomic_fetch_sub(&s->subscribers, 1);
		sub_free(sub);
		return evs__err(EVS_ENOMEM, "evs_subscribe: cannot start a thread");
	}
	*out = sub;
	return 0;
nomem:
	sub_free(sub);
	return evs__err(EVS_ENOMEM, "out of memory subscribing");
}

uint64_t evs_subscription_position(const evs_subscription *sub)
{
	return sub ? atomic_load(&((evs_subscription *)sub)->next) : 0;
}

int evs_subscription_error(const evs_subscription *sub)
{
	return sub ? atomic_load(&((evs_subscription *)sub)->error) : 0;
}

void evs__subscription_ask_stop(evs_subscription *sub)
{
	atomic_store(&sub->stop, true);
	pthread_mutex_lock(&sub->s->head_mu);
	pthread_cond_broadcast(&sub->s->head_cv);
	pthread_mutex_unlock(&sub->s->head_mu);
}

int evs_subscription_stop(evs_subscription *sub)
{
	int rc;

	if (!sub)
		return 0;
	evs__subscription_ask_stop(sub);
	pthread_join(sub->thread, NULL);
	atomic_fetch_sub(&sub->s->subscribers, 1);
	rc = sub->rc;
	if (rc)
		evs__err(rc, "%s", sub->errmsg);
	sub_free(sub);
	return rc;
}
