/*
 * crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum on every record and segment header in the log.
 *
 * The value is the usual one (iSCSI, ext4, LevelDB): the register starts
 * inverted and the result is inverted again, so evs__crc32c(0, "123456789",
 * 9) == 0xE3069283 and an empty buffer gives 0.  Calls chain: passing the
 * result for A as the crc of a call on B gives the CRC of A followed by B.
 *
 * evs__crc32c() uses the SSE4.2 crc32 instruction when the CPU has it and a
 * slicing-by-8 table otherwise; the choice is made once, on first use, and
 * every entry point may be called from any thread at any time.  The two
 * implementations are exported separately only so tests can compare them.
 */
#ifndef EVS_CRC32C_H
#define EVS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of buf[0..len) continuing from crc (0 to start).  buf may be NULL
 * when len is 0. */
uint32_t evs__crc32c(uint32_t crc, const void *buf, size_t len);

/* The table-driven implementation, available everywhere. */
uint32_t evs__crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when evs__crc32c_hw() may be called on this CPU, 0 otherwise. */
int evs__crc32c_hw_available(void);

/*
 * The implementation on the CPU's crc32 instruction.  Only call it when
 * evs__crc32c_hw_available() returned 1: elsewhere it executes an illegal
 * instruction.  (On builds for other architectures it is the software one.)
 */
uint32_t evs__crc32c_hw(uint32_t crc, const void *buf, size_t len);

#endif
