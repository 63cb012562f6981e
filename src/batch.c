/*
 * batch.c: the on-disk codec of batches and records (layout in internal.h).
 *
 * A batch is the unit of atomicity: one append call's events, one CRC32C
 * over everything after the CRC field (length, count, positions, stream and
 * every record byte).  A batch whose CRC does not match is never decoded.
 */
#include "crc32c.h"
#include "internal.h"

void evs__rec_encode(uint8_t *p, const uint8_t id[16], int64_t ts,
		     uint32_t schema_version, const char *type, size_t type_len,
		     const char *meta, size_t meta_len, const char *data,
		     size_t data_len)
{
	size_t len = evs__rec_size(type_len, meta_len, data_len);
	uint8_t *q;

	evs__put32(p, (uint32_t)len);
	memcpy(p + 4, id, 16);
	evs__put64(p + 20, (uint64_t)ts);
	evs__put32(p + 28, schema_version);
	evs__put16(p + 32, (uint16_t)type_len);
	evs__put32(p + 34, (uint32_t)meta_len);
	evs__put32(p + 38, (uint32_t)data_len);
	q = p + EVS__REC_HDR;
	memcpy(q, type, type_len);
	q += type_len;
	*q++ = 0;
	if (meta_len)
		memcpy(q, meta, meta_len);
	q += meta_len;
	*q++ = 0;
	memcpy(q, data, data_len);
	q += data_len;
	*q = 0;
}

void evs__batch_seal_header(uint8_t *p, uint32_t length, uint32_t count,
			    uint64_t first_position, uint64_t first_version,
			    uint64_t synced_through, const char *stream,
			    uint16_t stream_len, uint16_t flags)
{
	evs__put32(p, EVS__BATCH_MAGIC);
	evs__put32(p + 8, length);
	evs__put32(p + 12, count);
	evs__put64(p + 16, first_position);
	evs__put64(p + 24, first_version);
	evs__put64(p + 32, synced_through);
	evs__put16(p + 40, stream_len);
	evs__put16(p + 42, flags);
	if (stream_len) {
		memcpy(p + EVS__BATCH_HDR, stream, stream_len);
		p[EVS__BATCH_HDR + stream_len] = 0;
	}
	evs__put32(p + 4, evs__crc32c(0, p + 8, length - 8));
}

int evs__batch_parse_header(evs__batch_hdr *h, const uint8_t *p, size_t avail)
{
	if (avail < EVS__BATCH_HDR || evs__get32(p) != EVS__BATCH_MAGIC)
		return -1;
	h->crc = evs__get32(p + 4);
	h->length = evs__get32(p + 8);
	h->count = evs__get32(p + 12);
	h->first_position = evs__get64(p + 16);
	h->first_version = evs__get64(p + 24);
	h->synced_through = evs__get64(p + 32);
	h->stream_len = evs__get16(p + 40);
	h->flags = evs__get16(p + 42);
	h->stream = (const char *)p + EVS__BATCH_HDR;
	if (h->length < EVS__BATCH_HDR || h->length > avail)
		return -1;
	if (h->flags & EVS__BATCH_SEAL) {
		if (h->count != 0 || h->stream_len != 0 || h->length != EVS__SEAL_SIZE)
			return -1;
		return 0;
	}
	if (h->flags != 0 || h->count == 0 || h->stream_len == 0 ||
	    h->stream_len > EVS_MAX_STREAM_LEN || h->first_position == 0 ||
	    h->first_version == 0 || h->synced_through >= h->first_position)
		return -1;
	if ((uint64_t)EVS__BATCH_HDR + h->stream_len + 1 +
	    (uint64_t)h->count * (EVS__REC_HDR + 3) > h->length)
		return -1;
	return 0;
}

int evs__batch_check_crc(const evs__batch_hdr *h, const uint8_t *p)
{
	return evs__crc32c(0, p + 8, h->length - 8) == h->crc ? 0 : -1;
}

int evs__batch_decode(const evs__batch_hdr *h, const uint8_t *p,
		      evs__rec_cb cb, void *ctx)
{
	size_t off = EVS__BATCH_HDR + h->stream_len + 1;
	evs_event ev;

	if (h->flags & EVS__BATCH_SEAL)
		return 0; /* no records, and no stream name to end */
	if (p[EVS__BATCH_HDR + h->stream_len] != 0)
		return -1;
	ev.stream = h->stream;
	ev.stream_len = h->stream_len;
	for (uint32_t i = 0; i < h->count; i++) {
		const uint8_t *r = p + off;
		uint32_t len, mlen, dlen;
		uint16_t tlen;

		if (h->length - off < EVS__REC_HDR)
			return -1;
		len = evs__get32(r);
		tlen = evs__get16(r + 32);
		mlen = evs__get32(r + 34);
		dlen = evs__get32(r + 38);
		if (len > h->length - off ||
		    (uint64_t)len != evs__rec_size(tlen, mlen, dlen))
			return -1;
		ev.position = h->first_position + i;
		ev.version = h->first_version + i;
		memcpy(ev.id, r + 4, 16);
		ev.timestamp_us = (int64_t)evs__get64(r + 20);
		ev.schema_version = evs__get32(r + 28);
		ev.type = (const char *)r + EVS__REC_HDR;
		ev.type_len = tlen;
		ev.metadata = ev.type + tlen + 1;
		ev.metadata_len = mlen;
		ev.data = ev.metadata + mlen + 1;
		ev.data_len = dlen;
		if (ev.type[tlen] || ev.metadata[mlen] || ev.data[dlen])
			return -1;
		off += len;
		if (cb) {
			int rc = cb(&ev, ctx);
			if (rc)
				return 1;
		}
	}
	return off == h->length ? 0 : -1;
}
