/*
 * test_crc32c.c: CRC-32C against published vectors, against a bit-at-a-time
 * reference, and the hardware path against the software one.
 *
 * The vectors are RFC 3720 (iSCSI) appendix B.4 plus the customary check
 * value for "123456789".  The comparisons cover every length 0..1024 at
 * every misalignment 0..15, and the lengths around the blocks the hardware
 * path interleaves (3 x 256 and 3 x 8192 bytes).  On a CPU without SSE4.2
 * the hardware comparisons print a note and check only that the dispatcher
 * picked the software path; everything else still runs.
 */
#include "crc32c.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAXLEN 1024
#define BIGLEN (4 * 3 * 8192 + 4096)

static uint64_t rng_state;

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Du;
}

static void fill_random(unsigned char *buf, size_t len, uint64_t seed)
{
	size_t i;

	rng_state = seed;
	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)(rng() >> 56);
}

/* The definition, one bit at a time: independent of both implementations. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	int k;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return ~crc;
}

static int hw_or_note(const char *what)
{
	if (evs__crc32c_hw_available())
		return 1;
	printf("note: no SSE4.2 on this CPU; hardware CRC-32C %s skipped\n",
	       what);
	fflush(stdout);
	return 0;
}

/* ---- vectors ---- */

static const unsigned char iscsi_read_pdu[48] = {
	0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
	0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
	0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

struct vector {
	const char *name;
	unsigned char data[48];
	size_t len;
	uint32_t crc;
};

static struct vector vectors[6];
static const size_t nvectors = sizeof(vectors) / sizeof(vectors[0]);

static void vectors_setup(void)
{
	int i;

	memset(vectors, 0, sizeof(vectors));
	vectors[0] = (struct vector){ "32 x 0x00", { 0 }, 32, 0x8A9136AAu };
	vectors[1] = (struct vector){ "32 x 0xff", { 0 }, 32, 0x62A8AB43u };
	memset(vectors[1].data, 0xff, 32);
	vectors[2] = (struct vector){ "0x00..0x1f", { 0 }, 32, 0x46DD794Eu };
	vectors[3] = (struct vector){ "0x1f..0x00", { 0 }, 32, 0x113FDB5Cu };
	for (i = 0; i < 32; i++) {
		vectors[2].data[i] = (unsigned char)i;
		vectors[3].data[i] = (unsigned char)(31 - i);
	}
	vectors[4] = (struct vector){ "iSCSI PDU", { 0 }, 48, 0xD9963A56u };
	memcpy(vectors[4].data, iscsi_read_pdu, 48);
	vectors[5] = (struct vector){ "123456789", { 0 }, 9, 0xE3069283u };
	memcpy(vectors[5].data, "123456789", 9);
}

START_TEST(test_vectors_sw)
{
	const struct vector *v = &vectors[_i];

	ck_assert_msg(evs__crc32c_sw(0, v->data, v->len) == v->crc,
		      "%s: sw 0x%08x, want 0x%08x", v->name,
		      evs__crc32c_sw(0, v->data, v->len), v->crc);
	ck_assert_msg(evs__crc32c(0, v->data, v->len) == v->crc,
		      "%s: dispatch 0x%08x, want 0x%08x", v->name,
		      evs__crc32c(0, v->data, v->len), v->crc);
	ck_assert_uint_eq(crc_bitwise(0, v->data, v->len), v->crc);
}
END_TEST

START_TEST(test_vectors_hw)
{
	const struct vector *v = &vectors[_i];

	if (!hw_or_note("vectors"))
		return;
	ck_assert_msg(evs__crc32c_hw(0, v->data, v->len) == v->crc,
		      "%s: hw 0x%08x, want 0x%08x", v->name,
		      evs__crc32c_hw(0, v->data, v->len), v->crc);
}
END_TEST

START_TEST(test_empty)
{
	const char *s = "x";

	ck_assert_uint_eq(evs__crc32c(0, NULL, 0), 0);
	ck_assert_uint_eq(evs__crc32c_sw(0, NULL, 0), 0);
	ck_assert_uint_eq(evs__crc32c(0, s, 0), 0);
	/* An empty continuation leaves any running value alone. */
	ck_assert_uint_eq(evs__crc32c(0xE3069283u, s, 0), 0xE3069283u);
	ck_assert_uint_eq(evs__crc32c_sw(0xE3069283u, s, 0), 0xE3069283u);
	if (hw_or_note("empty input")) {
		ck_assert_uint_eq(evs__crc32c_hw(0, NULL, 0), 0);
		ck_assert_uint_eq(evs__crc32c_hw(0xE3069283u, s, 0),
				  0xE3069283u);
	}
}
END_TEST

/* ---- software against the bitwise definition ---- */

START_TEST(test_sw_reference)
{
	_Alignas(64) static unsigned char buf[MAXLEN + 16];
	size_t len, off;

	fill_random(buf, sizeof(buf), 0x5EED0001u);
	for (off = 0; off < 16; off++) {
		for (len = 0; len <= MAXLEN; len++) {
			uint32_t want = crc_bitwise(0, buf + off, len);
			uint32_t got = evs__crc32c_sw(0, buf + off, len);

			ck_assert_msg(got == want,
				      "off %zu len %zu: 0x%08x want 0x%08x",
				      off, len, got, want);
			ck_assert_uint_eq(evs__crc32c(0, buf + off, len), want);
		}
	}
}
END_TEST

/* ---- hardware against software ---- */

START_TEST(test_hw_matches_sw)
{
	_Alignas(64) static unsigned char buf[MAXLEN + 16];
	size_t len, off;

	if (!hw_or_note("comparison (lengths 0..1024, offsets 0..15)"))
		return;
	fill_random(buf, sizeof(buf), 0x5EED0002u);
	for (off = 0; off < 16; off++) {
		for (len = 0; len <= MAXLEN; len++) {
			uint32_t sw = evs__crc32c_sw(0x1234567u, buf + off, len);
			uint32_t hw = evs__crc32c_hw(0x1234567u, buf + off, len);

			ck_assert_msg(hw == sw,
				      "off %zu len %zu: hw 0x%08x sw 0x%08x",
				      off, len, hw, sw);
		}
	}
}
END_TEST

/* Lengths on both sides of the interleaved block sizes. */
START_TEST(test_hw_matches_sw_large)
{
	static const size_t base[] = {
		3 * 256, 2 * 3 * 256, 3 * 8192, 3 * 8192 + 3 * 256,
		2 * 3 * 8192, 4 * 3 * 8192,
	};
	unsigned char *buf;
	size_t i, off, len;
	int d;

	if (!hw_or_note("comparison (large buffers)"))
		return;
	buf = malloc(BIGLEN + 16);
	ck_assert_ptr_nonnull(buf);
	fill_random(buf, BIGLEN + 16, 0x5EED0003u);
	for (i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
		for (d = -9; d <= 9; d++) {
			len = base[i] + (size_t)(long)d;
			for (off = 0; off < 16; off += 3) {
				uint32_t sw = evs__crc32c_sw(0, buf + off, len);
				uint32_t hw = evs__crc32c_hw(0, buf + off, len);

				ck_assert_msg(hw == sw, "off %zu len %zu: "
					      "hw 0x%08x sw 0x%08x",
					      off, len, hw, sw);
			}
		}
	}
	/* One known value through the long path, from the definition. */
	ck_assert_uint_eq(evs__crc32c_hw(0, buf, BIGLEN),
			  crc_bitwise(0, buf, BIGLEN));
	free(buf);
}
END_TEST

/* ---- chaining ---- */

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_chaining(crc_fn f, const char *name)
{
	static const char digits[] = "123456789";
	_Alignas(64) static unsigned char buf[600];
	size_t len, cut, cut2;

	fill_random(buf, sizeof(buf), 0x5EED0004u);
	for (cut = 0; cut <= 9; cut++)
		ck_assert_uint_eq(f(f(0, digits, cut), &digits[cut], 9 - cut),
				  0xE3069283u);
	for (len = 0; len <= 300; len += 7) {
		uint32_t whole = f(0, buf + 1, len);

		for (cut = 0; cut <= len; cut++) {
			uint32_t two = f(f(0, buf + 1, cut), buf + 1 + cut,
					 len - cut);

			ck_assert_msg(two == whole, "%s: len %zu cut %zu",
				      name, len, cut);
		}
	}
	/* Three pieces across the 3 x 256 block boundary. */
	len = sizeof(buf) - 1;
	for (cut = 0; cut < len; cut += 37) {
		for (cut2 = cut; cut2 <= len; cut2 += 41) {
			uint32_t c = f(0, buf, cut);

			c = f(c, buf + cut, cut2 - cut);
			c = f(c, buf + cut2, len - cut2);
			ck_assert_uint_eq(c, f(0, buf, len));
		}
	}
}

START_TEST(test_chain_sw)
{
	check_chaining(evs__crc32c_sw, "sw");
}
END_TEST

START_TEST(test_chain_dispatch)
{
	check_chaining(evs__crc32c, "dispatch");
}
END_TEST

START_TEST(test_chain_hw)
{
	_Alignas(64) static unsigned char buf[2000];
	size_t cut;

	if (!hw_or_note("chaining"))
		return;
	check_chaining(evs__crc32c_hw, "hw");
	/* The two implementations can hand a running value to each other. */
	fill_random(buf, sizeof(buf), 0x5EED0005u);
	for (cut = 0; cut <= sizeof(buf); cut += 13) {
		uint32_t whole = evs__crc32c_sw(0, buf, sizeof(buf));

		ck_assert_uint_eq(evs__crc32c_sw(evs__crc32c_hw(0, buf, cut),
						 buf + cut, sizeof(buf) - cut),
				  whole);
		ck_assert_uint_eq(evs__crc32c_hw(evs__crc32c_sw(0, buf, cut),
						 buf + cut, sizeof(buf) - cut),
				  whole);
	}
}
END_TEST

/* ---- first use from many threads at once ---- */

#define NTHREADS 8

static pthread_barrier_t barrier;

static void *thread_main(void *arg)
{
	uint32_t *out = arg;

	pthread_barrier_wait(&barrier);
	*out = evs__crc32c(0, "123456789", 9);
	return NULL;
}

START_TEST(test_threads_first_use)
{
	pthread_t tid[NTHREADS];
	uint32_t res[NTHREADS];
	int i;

	/* With CK_FORK (the default) this process has not computed a CRC
	 * yet, so the threads race through the one-time setup. */
	ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
	for (i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&tid[i], NULL, thread_main,
						&res[i]), 0);
	for (i = 0; i < NTHREADS; i++) {
		ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
		ck_assert_uint_eq(res[i], 0xE3069283u);
	}
	pthread_barrier_destroy(&barrier);
}
END_TEST

static Suite *crc32c_suite(void)
{
	Suite *s = suite_create("crc32c");
	TCase *tc;

	vectors_setup();

	tc = tcase_create("vectors");
	tcase_add_loop_test(tc, test_vectors_sw, 0, (int)nvectors);
	tcase_add_loop_test(tc, test_vectors_hw, 0, (int)nvectors);
	tcase_add_test(tc, test_empty);
	suite_add_tcase(s, tc);

	tc = tcase_create("reference");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_sw_reference);
	suite_add_tcase(s, tc);

	tc = tcase_create("hw_vs_sw");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hw_matches_sw);
	tcase_add_test(tc, test_hw_matches_sw_large);
	suite_add_tcase(s, tc);

	tc = tcase_create("chaining");
	tcase_add_test(tc, test_chain_sw);
	tcase_add_test(tc, test_chain_dispatch);
	tcase_add_test(tc, test_chain_hw);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_test(tc, test_threads_first_use);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return tu_run(crc32c_suite());
}
