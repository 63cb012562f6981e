/*
 * fuzz_projection.c: the SQL projection file parser.  The input is a
 * projection file, compiled (sections, handlers, parameters, queries,
 * setup run) over an in-memory read model, then freed; setup may not
 * attach files and is stopped after about a million SQLite steps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "store.h"
#include "testutil.h"

static evs_store *store;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (!store) {
		char dir[4096];
		evs_options o = EVS_OPTIONS_INIT;
		snprintf(dir, sizeof(dir), "%s/projections", fuzz_scratch());
		o.create = 1;
		o.durability = EVS_DURABILITY_NONE;
		if (evs_open(&store, dir, &o) != 0)
			abort();
	}
	if (!(text = malloc(size + 1)))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	evs__projection_try(store, text, size);
	free(text);
	return 0;
}
