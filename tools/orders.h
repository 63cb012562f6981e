/*
 * orders.h: the example domain of issue 4, a web shop's orders, as a
 * decider for evs_handle (tools/orders.c), and the `evstore demo` command
 * that runs a workload through it (tools/demo.c).
 *
 * An order lives in stream "order-<id>".  Commands are JSON objects
 * {"type": "PlaceOrder" | "AddItem" | "RemoveItem" | "Pay" | "Ship" |
 * "Cancel", ...fields}; the events they produce (OrderPlaced v2, ItemAdded,
 * ItemRemoved, OrderPaid, OrderShipped, OrderCancelled) have JSON Schemas
 * in schema/events/.  The state folded from them is
 *   {"status": "none" | "placed" | "paid" | "shipped" | "cancelled",
 *    "customer": id or null, "currency": "EUR" or null,
 *    "items": {sku: {"qty": n, "price": cents}}, "total": cents}
 * Money is integer cents throughout, so totals are exact.
 *
 * The business rules, each a rejection code of decide():
 *   unknown_command  the type is not one of the six
 *   cancelled        nothing is accepted once the order is cancelled
 *   already_placed   PlaceOrder on a placed order
 *   no_order         any other command before PlaceOrder
 *   bad_order_id, bad_customer, bad_currency, bad_sku, bad_time,
 *   bad_reason       a malformed field
 *   bad_quantity     qty is not an integer from 1 to ORDERS_MAX_QTY
 *   bad_price        price is not an integer from 0 to ORDERS_MAX_PRICE
 *   price_mismatch   AddItem of a sku already in the order at another price
 *   already_paid     AddItem, RemoveItem or Pay once paid (or shipped)
 *   no_such_item     RemoveItem of a sku not in the order
 *   empty_order      Pay on an order without items
 *   wrong_amount     Pay with an amount other than the order's total
 *   not_paid         Ship before Pay
 *   already_shipped  Ship or Cancel once shipped
 * State rules are checked before the command's fields, so a cancelled
 * order says "cancelled" whatever the command holds.
 *
 * Threading: the decider has no context and its callbacks no shared
 * state; it may run on any number of threads.
 */
#ifndef EVSTORE_TOOLS_ORDERS_H
#define EVSTORE_TOOLS_ORDERS_H

#include <stdint.h>

#include <jansson.h>

#include "evstore.h"

/* Limits of the rules above (and of the schemas, which say the same). */
#define ORDERS_MAX_QTY 10000
#define ORDERS_MAX_PRICE 10000000

/* The commands, in the order of their names' table. */
typedef enum evs_order_command {
	ORDER_PLACE = 0,     /* {order_id, customer_id, currency?} */
	ORDER_ADD_ITEM,      /* {sku, qty, price} */
	ORDER_REMOVE_ITEM,   /* {sku}: the whole line */
	ORDER_PAY,           /* {amount} */
	ORDER_SHIP,          /* {} */
	ORDER_CANCEL,        /* {reason?} */
	ORDER_COMMANDS       /* how many there are */
} evs_order_command;

/*
 * Fills *out with the order decider: category "order", state version 1,
 * a snapshot every 16 events.  Every command may carry "at", an RFC 3339
 * date-time used as the event's timestamp (placed_at, paid_at, ...);
 * without it the current time is used.
 */
void orders_decider(evs_decider *out);

/* The command named `name` ("PlaceOrder", ...), or -1 when there is none. */
int orders_command_parse(const char *name);

/* The name of command `c` (a static string), or NULL when out of range. */
const char *orders_command_name(int c);

/* An order folded from its events by orders_load. */
typedef struct orders_loaded {
	json_t *state;          /* new reference, the caller releases it */
	uint64_t version;       /* the stream's last version */
	uint32_t upcast;        /* events stored at an older schema version */
	char error[512];        /* why it failed, when it did */
} orders_loaded;

/*
 * Folds every event of `stream` (upcast, as evs_handle sees them) into an
 * order's state with the decider's evolve, without snapshots: the answer
 * an order's history gives on its own.  Returns 0, EVS_ENOTFOUND for a
 * stream without events, EVS_EINVAL when evolve refuses an event, or the
 * error of the read or the upcast; out->error then says which.
 */
int orders_load(orders_loaded *out, evs_store *store, const char *stream);

#endif
