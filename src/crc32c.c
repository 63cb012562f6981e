/*
 * crc32c.c: CRC-32C with the SSE4.2 crc32 instruction where the CPU has it
 * and slicing-by-8 tables everywhere else.
 *
 * Invariants:
 * - Every public entry point runs crc_init() through pthread_once before it
 *   touches a table, so the tables are written once, by one thread, and are
 *   read-only afterwards.
 * - crc_impl starts out pointing at crc_resolve(), which runs the
 *   initialisation and then stores the chosen implementation with release
 *   order; evs__crc32c() loads it with acquire order, so a thread that jumps
 *   straight to an implementation also sees the tables it reads.  Two
 *   threads racing through crc_resolve() store the same pointer.
 * - All implementations take and return the finished (inverted) value, so
 *   they can be swapped for each other anywhere, including mid-chain.
 *
 * The hardware path follows Mark Adler's crc32c.c (zlib licence): the
 * instruction has a latency of three cycles but a throughput of one, so
 * large buffers are cut into three equal blocks whose CRCs are computed side
 * by side and then combined.  Combining needs the CRC register advanced over
 * a block's length of zero bytes, which is linear over GF(2) and precomputed
 * into byte-indexed tables for the two block sizes used.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define EVS__CRC_X86 1
#include <nmmintrin.h>
#else
#define EVS__CRC_X86 0
#endif

#define CRC_POLY 0x82F63B78u	/* reflected Castagnoli polynomial */

/* Interleaved block sizes for the hardware path; both powers of two. */
#define CRC_LONG 8192
#define CRC_SHORT 256

typedef uint32_t (*crc_fn)(uint32_t crc, const unsigned char *p, size_t len);

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;			/* set by crc_init() */
static uint32_t crc_table[8][256];	/* [k][b]: byte b then k zero bytes */

#if EVS__CRC_X86
/* Advance a CRC register over CRC_LONG or CRC_SHORT zero bytes. */
static uint32_t crc_long[4][256];
static uint32_t crc_short[4][256];
#endif

/* ---- Software: slicing-by-8 ---- */

/* Explicitly little-endian, so the table walk is right on any host. */
static inline uint32_t load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len && ((uintptr_t)p & 7) != 0) {
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint32_t lo = crc ^ load_le32(p);
		uint32_t hi = load_le32(p + 4);

		crc = crc_table[7][lo & 0xff] ^
		      crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^
		      crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^
		      crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^
		      crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void crc_sw_init(void)
{
	uint32_t b, c;
	int k;

	for (b = 0; b < 256; b++) {
		c = b;
		for (k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC_POLY : c >> 1;
		crc_table[0][b] = c;
	}
	for (b = 0; b < 256; b++) {
		c = crc_table[0][b];
		for (k = 1; k < 8; k++) {
			c = crc_table[0][c & 0xff] ^ (c >> 8);
			crc_table[k][b] = c;
		}
	}
}

/* ---- Hardware: SSE4.2 ---- */

#if EVS__CRC_X86

/* GF(2) matrix (32 columns, one per bit of vec) times vector. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	while (vec) {
		if (vec & 1)
			sum ^= *mat;
		vec >>= 1;
		mat++;
	}
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	int n;

	for (n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/*
 * The operator that advances a (non-inverted) CRC register over len zero
 * bytes, as tables indexed by each byte of the register.  len must be a
 * power of two, at least 1.
 */
static void crc_zeros(uint32_t zeros[4][256], size_t len)
{
	uint32_t even[32], odd[32], row = 1;
	uint32_t *op = even;
	uint32_t n;

	/* One zero bit: shift right, folding in the polynomial. */
	odd[0] = CRC_POLY;
	for (n = 1; n < 32; n++) {
		odd[n] = row;
		row <<= 1;
	}
	gf2_square(even, odd);		/* two bits */
	gf2_square(odd, even);		/* four bits */
	for (;;) {
		gf2_square(even, odd);	/* 8, 32, 128... bits */
		op = even;
		len >>= 1;
		if (len == 0)
			break;
		gf2_square(odd, even);	/* 16, 64, 256... bits */
		op = odd;
		len >>= 1;
		if (len == 0)
			break;
	}
	for (n = 0; n < 256; n++) {
		zeros[0][n] = gf2_times(op, n);
		zeros[1][n] = gf2_times(op, n << 8);
		zeros[2][n] = gf2_times(op, n << 16);
		zeros[3][n] = gf2_times(op, n << 24);
	}
}

static inline uint32_t crc_shift(uint32_t zeros[4][256], uint32_t crc)
{
	return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^
	       zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

__attribute__((target("sse4.2")))
static inline uint32_t crc_u64(uint32_t crc, uint64_t w)
{
#if defined(__x86_64__)
	return (uint32_t)_mm_crc32_u64(crc, w);
#else
	crc = _mm_crc32_u32(crc, (uint32_t)w);
	return _mm_crc32_u32(crc, (uint32_t)(w >> 32));
#endif
}

__attribute__((target("sse4.2")))
static uint32_t crc_hw_run(uint32_t crc, const unsigned char *p, size_t len)
{
	uint32_t c0 = ~crc, c1, c2;
	const unsigned char *end;

	while (len && ((uintptr_t)p & 7) != 0) {
		c0 = _mm_crc32_u8(c0, *p++);
		len--;
	}

	/*
	 * Three streams per block; the CRC of A||B from 0 is CRC(A) advanced
	 * over |B| zero bytes, xor CRC(B) from 0.
	 */
	while (len >= 3 * CRC_LONG) {
		c1 = 0;
		c2 = 0;
		end = p + CRC_LONG;
		do {
			c0 = crc_u64(c0, load64(p));
			c1 = crc_u64(c1, load64(p + CRC_LONG));
			c2 = crc_u64(c2, load64(p + 2 * CRC_LONG));
			p += 8;
		} while (p < end);
		c0 = crc_shift(crc_long, c0) ^ c1;
		c0 = crc_shift(crc_long, c0) ^ c2;
		p += 2 * CRC_LONG;
		len -= 3 * CRC_LONG;
	}
	while (len >= 3 * CRC_SHORT) {
		c1 = 0;
		c2 = 0;
		end = p + CRC_SHORT;
		do {
			c0 = crc_u64(c0, load64(p));
			c1 = crc_u64(c1, load64(p + CRC_SHORT));
			c2 = crc_u64(c2, load64(p + 2 * CRC_SHORT));
			p += 8;
		} while (p < end);
		c0 = crc_shift(crc_short, c0) ^ c1;
		c0 = crc_shift(crc_short, c0) ^ c2;
		p += 2 * CRC_SHORT;
		len -= 3 * CRC_SHORT;
	}

	while (len >= 8) {
		c0 = crc_u64(c0, load64(p));
		p += 8;
		len -= 8;
	}
	while (len--)
		c0 = _mm_crc32_u8(c0, *p++);
	return ~c0;
}

static int crc_hw_detect(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

#else	/* !EVS__CRC_X86 */

#define crc_hw_run crc_sw

static int crc_hw_detect(void)
{
	return 0;
}

#endif

/* ---- Dispatch ---- */

static void crc_init(void)
{
	crc_sw_init();
	crc_hw = crc_hw_detect();
#if EVS__CRC_X86
	if (crc_hw) {
		crc_zeros(crc_long, CRC_LONG);
		crc_zeros(crc_short, CRC_SHORT);
	}
#endif
}

static uint32_t crc_resolve(uint32_t crc, const unsigned char *p, size_t len);

static _Atomic crc_fn crc_impl = crc_resolve;

static uint32_t crc_resolve(uint32_t crc, const unsigned char *p, size_t len)
{
	crc_fn fn;

	pthread_once(&crc_once, crc_init);
	fn = crc_hw ? crc_hw_run : crc_sw;
	atomic_store_explicit(&crc_impl, fn, memory_order_release);
	return fn(crc, p, len);
}

uint32_t evs__crc32c(uint32_t crc, const void *buf, size_t len)
{
	crc_fn fn;

	if (len == 0)
		return crc;
	fn = atomic_load_explicit(&crc_impl, memory_order_acquire);
	return fn(crc, buf, len);
}

uint32_t evs__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	if (len == 0)
		return crc;
	pthread_once(&crc_once, crc_init);
	return crc_sw(crc, buf, len);
}

int evs__crc32c_hw_available(void)
{
	pthread_once(&crc_once, crc_init);
	return crc_hw;
}

uint32_t evs__crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	if (len == 0)
		return crc;
	pthread_once(&crc_once, crc_init);
	return crc_hw_run(crc, buf, len);
}
