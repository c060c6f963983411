/*
 * prng.c - splitmix64 (Steele, Lea, Flood 2014): every 64-bit state is a fine
 * seed, the output passes BigCrush, one add and three xor-multiplies per value.
 */
#include "movie/prng.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "movie/banned.h"

void prng_seed(struct prng *r)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		struct timespec mono, real;
		clock_gettime(CLOCK_MONOTONIC, &mono);
		clock_gettime(CLOCK_REALTIME, &real);
		seed = ((uint64_t)mono.tv_nsec << 32) ^ (uint64_t)mono.tv_sec ^
		       (uint64_t)real.tv_nsec ^ ((uint64_t)getpid() << 48) ^ (uint64_t)(uintptr_t)r;
	}
	r->state = seed;
}

uint64_t prng_next(struct prng *r)
{
	uint64_t z = (r->state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

uint64_t prng_below(struct prng *r, uint64_t n)
{
	if (n == 0)
		return 0;
	/* Reject the top partial block so every residue is equally likely. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do {
		x = prng_next(r);
	} while (x >= limit);
	return x % n;
}
