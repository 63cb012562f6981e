/*
 * evstore/upcast.h: versioned events.  The data of an event type changes
 * shape over time; each shape is a schema version (evs_new_event's
 * schema_version).  Stored bytes never change: an upcaster turns data of
 * version k into version k + 1 when it is read, and chains of them bring
 * old events to the newest version.  Command handling (evs_handle) always
 * folds upcast events; plain reads return events as stored, and
 * evs_upcast gives the upcast data of any event.
 *
 * Two kinds of upcasters:
 * - a C callback, registered with evs_upcaster_add;
 * - a file <type>.v<k>-v<k+1>.sql in the store's schema directory
 *   (evs_options.schema_dir) holding one SQLite expression over `data`
 *   (the event's JSON text), evaluated with SQLite's JSON functions, e.g.
 *   json_set(data, '$.currency', 'EUR').  Read when the store opens; a
 *   file that does not compile fails the open, naming it.
 *
 * Threading: register callbacks before the store is used by other
 * threads; evs_upcast may then run on any number of threads.
 */
#ifndef EVSTORE_UPCAST_H
#define EVSTORE_UPCAST_H

#include <jansson.h>

#include "common.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Turns `data` of `type` at `from_version` into the data of version
 * from_version + 1.  Steals `data` (it may change and return it); returns
 * a new reference, or NULL on failure.
 */
typedef json_t *(*evs_upcast_fn)(void *ctx, const char *type, uint32_t from_version,
				 json_t *data);

/*
 * Registers fn as the upcaster of `type` from `from_version` (>= 1).
 * EVS_EINVAL for a bad type or version, or when (type, from_version)
 * already has one (a callback or a .sql file).
 */
EVS_EXTERN int evs_upcaster_add(evs_store *store, const char *type, uint32_t from_version,
				evs_upcast_fn fn, void *ctx);

/*
 * The data of `ev` brought to the newest version its upcasters reach: a
 * new reference in *data_out, its version in *version_out (may be NULL).
 * An event without upcasters comes back parsed, unchanged.  EVS_ECORRUPT
 * when stored data does not parse; EVS_EINVAL when an upcaster fails (the
 * message names type, version, stream and position).
 */
EVS_EXTERN int evs_upcast(evs_store *store, const evs_event *ev, json_t **data_out,
			  uint32_t *version_out);

#ifdef __cplusplus
}
#endif

#endif
