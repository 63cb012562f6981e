/*
 * fuzz_batch.c: the batch and record decoder (batch.c) on arbitrary bytes.
 *
 * A header that parses gets its CRC made right, so that the records behind
 * it are decoded too; every event handed out must be inside the batch and
 * NUL-terminated where its length says.
 */
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "fuzz.h"
#include "internal.h"

typedef struct span {
	const uint8_t *p;
	size_t n;
} span;

static void inside(const span *b, const char *s, size_t len)
{
	const uint8_t *q = (const uint8_t *)s;

	if (q < b->p || q + len + 1 > b->p + b->n || s[len] != '\0')
		abort();
}

static int check(const evs_event *ev, void *ctx)
{
	const span *b = ctx;

	inside(b, ev->type, ev->type_len);
	inside(b, ev->metadata, ev->metadata_len);
	inside(b, ev->data, ev->data_len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	evs__batch_hdr h;
	uint8_t *p = malloc(size ? size : 1);

	if (!p)
		return 0;
	memcpy(p, data, size);
	if (evs__batch_parse_header(&h, p, size) == 0) {
		if (h.length > size || h.length < 8)
			abort(); /* parse_header promised otherwise */
		if (evs__batch_check_crc(&h, p) != 0) {
			evs__put32(p + 4, evs__crc32c(0, p + 8, h.length - 8));
			if (evs__batch_parse_header(&h, p, size) != 0 ||
			    evs__batch_check_crc(&h, p) != 0)
				abort();
		}
		span b = { p, h.length };
		evs__batch_decode(&h, p, check, &b);
	}
	free(p);
	return 0;
}
