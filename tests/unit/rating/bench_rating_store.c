/*
 * bench_rating_store.c - throughput of rating_store_apply.
 *
 *   bench_rating_store DRIVER [EVENTS [BATCH [THREADS]]]
 *
 * Events look like ingestion traffic: 10,000 movies, 100,000 users, values
 * 1..5, about 10% of them replacing an earlier rating and 2% deletes.
 * Prints one line: driver, events, batch, threads, seconds, events/s.
 * Uses the same fixture as the tests (mysql: MOVIE_TEST_MYSQL_* variables).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/err.h"
#include "store.h"
#include "store_testing.h"

#include "movie/banned.h"

struct bench {
	struct rating_store *s;
	long events, batch;
	int thread, threads;
	int failures;
};

static long arg_long(const char *s, long dflt)
{
	char *end;
	long long v;

	if (!s)
		return dflt;
	errno = 0;
	v = strtoll(s, &end, 10);
	return errno || end == s || *end || v <= 0 ? dflt : (long)v;
}

static void *bench_main(void *arg)
{
	struct bench *b = arg;
	struct rating_change *c = calloc((size_t)b->batch, sizeof(*c));
	char(*ids)[2][24] = calloc((size_t)b->batch, sizeof(*ids));
	unsigned int seed = 12345u + (unsigned int)b->thread;
	long mine = b->events / b->threads;

	if (!c || !ids) {
		b->failures++;
		goto out;
	}
	for (long done = 0; done < mine; done += b->batch) {
		long k = 0;
		for (; k < b->batch && done + k < mine; k++) {
			unsigned int r = (unsigned int)rand_r(&seed);
			snprintf(ids[k][0], sizeof(ids[k][0]), "%u", r % 10000);
			snprintf(ids[k][1], sizeof(ids[k][1]), "user%u",
			         (unsigned int)rand_r(&seed) % 100000);
			c[k].record_type = "movie";
			c[k].record_id = ids[k][0];
			c[k].user_id = ids[k][1];
			c[k].op = r % 50 == 0 ? RATING_OP_DELETE : RATING_OP_PUT;
			c[k].value = (int32_t)(r % 5) + 1;
		}
		int rc = rating_store_apply(b->s, c, (size_t)k);
		if (rc != 0) {
			if (b->failures++ < 5)
				fprintf(stderr, "rating_store_apply: %s\n", mv_strerror(rc));
		}
	}
out:
	free(c);
	free(ids);
	return NULL;
}

int main(int argc, char **argv)
{
	struct store_fixture fx;
	struct bench b[16];
	pthread_t th[16];
	char err[256];
	long events, batch;
	int threads, failures = 0;
	int64_t t0, ms;
	struct rating_store *s;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DRIVER [EVENTS [BATCH [THREADS]]]\n", argv[0]);
		return 2;
	}
	events = arg_long(argc > 2 ? argv[2] : NULL, 200000);
	batch = arg_long(argc > 3 ? argv[3] : NULL, 1000);
	threads = (int)arg_long(argc > 4 ? argv[4] : NULL, 1);
	if (threads > 16)
		threads = 16;
	if (store_fixture_init(&fx, argv[1]) != 0)
		return 1;
	s = rating_store_open(&fx.cfg, err, sizeof(err));
	if (!s) {
		fprintf(stderr, "open: %s\n", err);
		store_fixture_release(&fx);
		return 1;
	}
	t0 = store_testing_now_ms();
	for (int i = 0; i < threads; i++) {
		b[i] = (struct bench){s, events, batch, i, threads, 0};
		pthread_create(&th[i], NULL, bench_main, &b[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		failures += b[i].failures;
	}
	ms = store_testing_now_ms() - t0;
	printf("driver=%s events=%ld batch=%ld threads=%d seconds=%.2f events_per_s=%.0f "
	       "failed_batches=%d\n",
	       argv[1], events, batch, threads, (double)ms / 1000.0,
	       ms > 0 ? (double)events * 1000.0 / (double)ms : 0.0, failures);
	rating_store_close(s);
	store_fixture_release(&fx);
	return failures ? 1 : 0;
}
