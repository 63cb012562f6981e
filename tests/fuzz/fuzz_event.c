/*
 * fuzz_event.c: the JSON event input path.
 *
 * The first input byte picks the field the rest goes into: the data, the
 * metadata, the event type or the stream name of one append to a store
 * kept open across inputs.  The JSON checker also gets the raw bytes (NULs
 * included), and so does the member finder of @name parameters, which must
 * stay inside them whatever they are.  An append that succeeds must read back byte for byte; one
 * that fails must leave the head where it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/store.h"
#include "fuzz.h"
#include "jsoncheck.h"
#include "jsonmember.h"
#include "store.h"
#include "testutil.h"

static evs_store *store;
static unsigned appended;

static int no_sync(int fd)
{
	(void)fd;
	return 0;
}

static uint64_t head(void)
{
	evs_stats st;

	if (evs_stats_get(&st, store) != 0)
		abort();
	return st.head_position;
}

typedef struct want {
	const char *type, *data, *metadata;
	int found;
} want;

static int same(const evs_event *ev, void *ctx)
{
	want *w = ctx;

	w->found = strcmp(ev->type, w->type) == 0 && strcmp(ev->data, w->data) == 0 &&
		   strcmp(ev->metadata, w->metadata ? w->metadata : "") == 0;
	return 1;
}

static void open_store(void)
{
	char dir[4096];
	evs_options o = EVS_OPTIONS_INIT;

	snprintf(dir, sizeof(dir), "%s/events", fuzz_scratch());
	tu_rmdir(dir);
	o.create = 1;
	o.durability = EVS_DURABILITY_NONE;
	o.segment_size = 1u << 20;
	if (evs_open(&store, dir, &o) != 0)
		abort();
}

/* Every member of the bytes as an object, each decoded, and the first
 * one's key looked up again: what is found must lie inside them. */
static void members(const char *s, size_t n)
{
	evs__json_span m[8];
	evs__json_value v;
	size_t k = evs__json_members(s, n, m, 8);

	for (size_t i = 0; i < k && i < 8; i++) {
		if (m[i].key < s || m[i].key + m[i].key_len > s + n || m[i].value < s ||
		    m[i].value + m[i].value_len > s + n)
			abort();
		if (evs__json_span_value(&m[i], &v) == 0)
			evs__free(v.owned);
	}
	if (k && evs__json_member(s, n, m[0].key, m[0].key_len, &v) == 0) {
		if (v.kind == EVS__JSON_MISSING)
			abort();
		evs__free(v.owned);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	size_t err;

	evs__json_check_object((const char *)data, size, &err);
	members((const char *)data, size);
	if (size == 0)
		return 0;
	evs__os_table.fsync = no_sync;
	evs__os_table.fdatasync = no_sync;
	/* a fresh store now and then keeps the scratch directory small */
	if (!store || appended >= 20000) {
		evs_close(store);
		open_store();
		appended = 0;
	}
	if (!(text = malloc(size)))
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	const char *stream = "fuzz-1";
	want w = { "Fuzzed", "{\"a\":1}", NULL, 0 };
	switch (data[0] % 4) {
	case 0: w.data = text; break;
	case 1: w.metadata = text; break;
	case 2: w.type = text; break;
	default: stream = text; break;
	}
	uint64_t before = head();
	evs_new_event ev = { w.type, w.data, w.metadata, NULL, 0 };
	evs_append_result r;
	if (evs_append(store, stream, EVS_EXPECT_ANY, &ev, 1, &r) == 0) {
		appended++;
		if (r.first_position != before + 1 ||
		    evs_read_stream(store, stream, r.first_version, EVS_FORWARD, 1, same, &w) != 0 ||
		    !w.found)
			abort();
	} else if (head() != before) {
		abort();
	}
	free(text);
	return 0;
}
