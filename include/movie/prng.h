/*
 * prng.h - a small per-owner pseudo-random generator for jitter (splitmix64).
 *
 * Not for secrets. One generator per event loop (or other single owner): no
 * locking, no shared state, unlike random(), whose one global state is shared
 * by every thread and identical in every process unless someone seeds it.
 */
#ifndef MOVIE_PRNG_H
#define MOVIE_PRNG_H

#include <stdint.h>

struct prng {
	uint64_t state;
};

/* Seed `r` from getrandom(2), so that processes (and loops) started at the
 * same moment draw different sequences. When getrandom fails (a kernel
 * without it, a seccomp filter) it falls back to the monotonic and real-time
 * clocks, the pid and the address of r. Any thread; cannot fail. */
void prng_seed(struct prng *r);

/* The next 64 random bits. Only from r's owner. */
uint64_t prng_next(struct prng *r);

/* A uniform value in [0, n) (0 when n is 0), without modulo bias. */
uint64_t prng_below(struct prng *r, uint64_t n);

#endif
