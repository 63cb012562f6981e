/*
 * fuzz_schema.c: the JSON Schema loader and validator.  The input is a
 * schema, then optionally a NUL byte and an instance (without one, the
 * schema document is validated against itself).  Both are parsed with
 * jansson; a schema that compiles, with and without format assertions,
 * validates the instance.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "jsonschema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t slen = nul ? (size_t)(nul - data) : size;
	json_t *doc = json_loadb((const char *)data, slen, JSON_DECODE_ANY, NULL);
	json_t *inst = nul ? json_loadb((const char *)nul + 1, size - slen - 1,
					JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)
			   : json_incref(doc);

	if (doc) {
		for (unsigned flags = 0; flags <= EVS__SCHEMA_FORMAT_ASSERT; flags++) {
			evs__schema *s = NULL;
			if (evs__schema_compile(&s, doc, "fuzz", flags) == 0) {
				if (inst)
					evs__schema_validate(s, inst);
				evs__schema_free(s);
			}
		}
	}
	json_decref(doc);
	json_decref(inst);
	return 0;
}
