/*
 * evstore.h: the umbrella header of libevstore, an embedded append-only
 * event store.  Include this one; it pulls in every public header.
 *
 *   evstore/common.h  error codes, evs_errmsg(), evs_free()
 *   evstore/store.h   open, append, read, verify
 *   evstore/handle.h  command handling: deciders and evs_handle
 *   evstore/upcast.h  versioned events: upcasters, evs_upcast
 *   evstore/subscribe.h  catch-up subscriptions
 *   evstore/projection.h SQL projections, read models, queries
 */
#ifndef EVSTORE_H
#define EVSTORE_H

#include "evstore/common.h"
#include "evstore/store.h"
#include "evstore/handle.h"
#include "evstore/upcast.h"
#include "evstore/subscribe.h"
#include "evstore/projection.h"

#endif
