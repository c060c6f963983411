#include <stdint.h>
#include <string.h>

#include "movie/prng.h"
#include "../testing.h"

/* Two generators seeded one after the other (as two processes started
 * together, or two worker loops) do not produce the same sequence. Seeds are
 * 64 random bits from getrandom: a collision would take ~2^32 tries. */
static void test_seeds_differ(void)
{
	struct prng a, b;
	prng_seed(&a);
	prng_seed(&b);
	CHECK(a.state != b.state);
	CHECK(prng_next(&a) != prng_next(&b));
}

/* splitmix64's published first output for seed 0 (reference implementation). */
static void test_known_sequence(void)
{
	struct prng r = {.state = 0};
	CHECK(prng_next(&r) == 0xE220A8397B1DCDAFULL);
	CHECK(prng_next(&r) == 0x6E789E6AA1B965F4ULL);
}

/* prng_below stays in range and reaches every value of a small range. */
static void test_below(void)
{
	struct prng r;
	prng_seed(&r);
	CHECK(prng_below(&r, 0) == 0);
	CHECK(prng_below(&r, 1) == 0);
	int seen[7];
	memset(seen, 0, sizeof(seen));
	int out_of_range = 0;
	for (int i = 0; i < 7000; i++) {
		uint64_t v = prng_below(&r, 7);
		if (v >= 7)
			out_of_range++;
		else
			seen[v]++;
	}
	CHECK_INT_EQ(out_of_range, 0);
	/* Each value expected 1000 times; 700 is > 9 standard deviations away. */
	for (int i = 0; i < 7; i++)
		CHECK(seen[i] > 700);
	uint64_t big = (UINT64_MAX / 3) * 2 + 1; /* worst case for rejection */
	for (int i = 0; i < 100; i++)
		CHECK(prng_below(&r, big) < big);
}

int main(void)
{
	RUN(test_seeds_differ);
	RUN(test_known_sequence);
	RUN(test_below);
	return TEST_SUMMARY();
}
