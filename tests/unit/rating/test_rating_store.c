/*
 * test_rating_store.c - one suite for every rating store driver.
 *
 *   test_rating_store memory|sqlite|mysql
 *
 * MOVIE_TEST_RATING_BIG sets the ratings of the big test (default 1,000,000;
 * 100,000 for mysql).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "movie/err.h"
#include "store.h"
#include "store_testing.h"
#include "../testing.h"

#include "movie/banned.h"

static struct store_fixture fx;
static const char *driver;

static struct rating_store *open_store(void)
{
	char err[256];
	struct rating_store *s = rating_store_open(&fx.cfg, err, sizeof(err));
	if (!s)
		fprintf(stderr, "rating_store_open(%s): %s\n", driver, err);
	return s;
}

static struct rating_change put(const char *type, const char *id, const char *user, int32_t v)
{
	return (struct rating_change){RATING_OP_PUT, id, type, user, v};
}

static struct rating_change del(const char *type, const char *id, const char *user)
{
	return (struct rating_change){RATING_OP_DELETE, id, type, user, 0};
}

/* Expect exactly (count, sum) for a record; count 0 means MV_ENOTFOUND. */
#define CHECK_AGG(s, type, id, want_count, want_sum)                               \
	do {                                                                       \
		double mean_ = -1;                                                 \
		uint64_t n_ = 0;                                                   \
		int rc_ = rating_store_aggregate((s), (id), (type), &mean_, &n_);  \
		if ((want_count) == 0) {                                           \
			CHECK_INT_EQ(rc_, MV_ENOTFOUND);                           \
		} else {                                                           \
			CHECK_INT_EQ(rc_, 0);                                      \
			CHECK_INT_EQ(n_, (want_count));                            \
			CHECK(mean_ == (double)(want_sum) / (double)(want_count)); \
		}                                                                  \
	} while (0)

static void test_put_replace_delete(void)
{
	struct rating_store *s = open_store();
	struct rating_change c[3];

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT_EQ(rating_store_ping(s), 0);
	CHECK_INT_EQ(rating_store_blocking(s), strcmp(driver, "memory") != 0);
	CHECK_AGG(s, "movie", "1", 0, 0);
	c[0] = put("movie", "1", "u1", 3);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 1, 3);
	/* Same user again: replaces (sum += new - old), count unchanged. */
	c[0] = put("movie", "1", "u1", 5);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 1, 5);
	c[0] = put("movie", "1", "u2", 2);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 2, 7);
	/* Same value again: nothing changes. */
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 2, 7);
	/* Same ids under another record type are another record. */
	c[0] = put("show", "1", "u1", 1);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "show", "1", 1, 1);
	CHECK_AGG(s, "movie", "1", 2, 7);
	/* Delete subtracts; deleting an absent rating is a no-op. */
	c[0] = del("movie", "1", "u1");
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 1, 2);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 1, 2);
	c[0] = del("movie", "never", "u1");
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "never", 0, 0);
	/* The last rating goes: the aggregate is gone (not a 0 mean). */
	c[0] = del("movie", "1", "u2");
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 0, 0);
	/* And it can come back. */
	c[0] = put("movie", "1", "u3", 4);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	CHECK_AGG(s, "movie", "1", 1, 4);
	CHECK_INT_EQ(rating_store_apply(s, c, 0), 0);
	rating_store_close(s);
}

static void test_batch_order(void)
{
	struct rating_store *s = open_store();
	struct rating_change c[8];

	CHECK(s != NULL);
	if (!s)
		return;
	/* put 3, put 5, delete in one batch: no rating at all. */
	c[0] = put("movie", "b1", "u", 3);
	c[1] = put("movie", "b1", "u", 5);
	c[2] = del("movie", "b1", "u");
	CHECK_INT_EQ(rating_store_apply(s, c, 3), 0);
	CHECK_AGG(s, "movie", "b1", 0, 0);
	/* put, delete, put: the last put wins. */
	c[0] = put("movie", "b2", "u", 3);
	c[1] = del("movie", "b2", "u");
	c[2] = put("movie", "b2", "u", 4);
	CHECK_INT_EQ(rating_store_apply(s, c, 3), 0);
	CHECK_AGG(s, "movie", "b2", 1, 4);
	/* Existing rating, then in one batch: replace, delete, other users. */
	c[0] = put("movie", "b2", "u", 1);
	c[1] = put("movie", "b2", "v", 2);
	c[2] = del("movie", "b2", "u");
	c[3] = put("movie", "b2", "w", 5);
	c[4] = put("movie", "b3", "u", 2);
	c[5] = put("movie", "b2", "v", 3);
	CHECK_INT_EQ(rating_store_apply(s, c, 6), 0);
	CHECK_AGG(s, "movie", "b2", 2, 8);
	CHECK_AGG(s, "movie", "b3", 1, 2);
	/* Delete everything of b2 and add to b3 in the same batch. */
	c[0] = del("movie", "b2", "v");
	c[1] = del("movie", "b2", "w");
	c[2] = put("movie", "b3", "x", 5);
	CHECK_INT_EQ(rating_store_apply(s, c, 3), 0);
	CHECK_AGG(s, "movie", "b2", 0, 0);
	CHECK_AGG(s, "movie", "b3", 2, 7);
	rating_store_close(s);
}

static void test_invalid_batch_applies_nothing(void)
{
	struct rating_store *s = open_store();
	struct rating_change c[3];
	static char long_id[RATING_ID_MAX + 2];

	CHECK(s != NULL);
	if (!s)
		return;
	memset(long_id, 'x', RATING_ID_MAX + 1);
	c[0] = put("movie", "inv", "u1", 4);
	c[1] = put("movie", "inv", "", 4);
	CHECK_INT_EQ(rating_store_apply(s, c, 2), MV_EINVAL);
	c[1] = put("movie", "inv", long_id, 4);
	CHECK_INT_EQ(rating_store_apply(s, c, 2), MV_EINVAL);
	c[1] = put("movie", "inv", NULL, 4);
	CHECK_INT_EQ(rating_store_apply(s, c, 2), MV_EINVAL);
	c[1] = put("movie", "inv", "u2", 4);
	c[1].op = (enum rating_op)7;
	CHECK_INT_EQ(rating_store_apply(s, c, 2), MV_EINVAL);
	CHECK_AGG(s, "movie", "inv", 0, 0);
	/* Exactly at the cap is fine. */
	long_id[RATING_ID_MAX] = '\0';
	c[1] = put(long_id, long_id, long_id, 2);
	CHECK_INT_EQ(rating_store_apply(s, c, 2), 0);
	CHECK_AGG(s, long_id, long_id, 1, 2);
	CHECK_INT_EQ(rating_store_aggregate(s, "", "movie", NULL, NULL), MV_EINVAL);
	rating_store_close(s);
}

/* A database error in the middle of a batch rolls back its earlier changes
 * (a trigger rejects one user's row). */
static void test_failure_rolls_back(void)
{
	struct rating_store *s;
	struct rating_change c[4];
	const char *trigger;

	if (strcmp(driver, "memory") == 0)
		return;   /* cannot fail once validated */
	s = open_store(); /* creates the schema */
	CHECK(s != NULL);
	if (!s)
		return;
	c[0] = put("movie", "rb", "a", 2);
	CHECK_INT_EQ(rating_store_apply(s, c, 1), 0);
	if (strcmp(driver, "sqlite") == 0)
		trigger = "CREATE TRIGGER poison BEFORE INSERT ON ratings"
		          " WHEN NEW.user_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END";
	else
		trigger = "CREATE TRIGGER poison BEFORE INSERT ON ratings FOR EACH ROW"
		          " IF NEW.user_id = 'poison' THEN"
		          " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison'; END IF";
	CHECK_INT_EQ(store_fixture_sql(&fx, trigger), 0);
	c[0] = put("movie", "rb", "a", 5);     /* replace */
	c[1] = put("movie", "rb", "b", 4);     /* new */
	c[2] = put("movie", "rb-new", "c", 1); /* new record */
	c[3] = put("movie", "rb", "poison", 1);
	CHECK(rating_store_apply(s, c, 4) != 0);
	CHECK_AGG(s, "movie", "rb", 1, 2);
	CHECK_AGG(s, "movie", "rb-new", 0, 0);
	CHECK_INT_EQ(store_fixture_sql(&fx, "DROP TRIGGER poison"), 0);
	CHECK_INT_EQ(rating_store_apply(s, c, 4), 0);
	CHECK_AGG(s, "movie", "rb", 3, 10);
	CHECK_AGG(s, "movie", "rb-new", 1, 1);
	rating_store_close(s);
}

static long big_count(void)
{
	const char *e = getenv("MOVIE_TEST_RATING_BIG");
	char *end;
	long long v;

	if (e) {
		errno = 0;
		v = strtoll(e, &end, 10);
		if (errno == 0 && end != e && *end == '\0' && v > 0 && v <= 10000000)
			return (long)v;
	}
	return strcmp(driver, "mysql") == 0 ? 100000 : 1000000;
}

/* N ratings of one record in batches of 1000, then replace and delete some:
 * the mean stays exact and reading it does not depend on N. */
static void test_big_aggregate(void)
{
	struct rating_store *s = open_store();
	enum {
		BATCH = 1000
	};
	static struct rating_change c[BATCH];
	static char users[BATCH][24];
	long n = big_count();
	long long sum = 0, count = 0;
	int64_t t0, ms;
	int failed = 0;

	CHECK(s != NULL);
	if (!s)
		return;
	t0 = store_testing_now_ms();
	for (long base = 0; base < n && !failed; base += BATCH) {
		size_t k = 0;
		for (long i = base; i < n && i < base + BATCH; i++, k++) {
			snprintf(users[k], sizeof(users[k]), "user-%ld", i);
			c[k] = put("movie", "big", users[k], (int32_t)(i % 5) + 1);
			sum += i % 5 + 1;
			count++;
		}
		failed = rating_store_apply(s, c, k) != 0;
	}
	CHECK_INT_EQ(failed, 0);
	ms = store_testing_now_ms() - t0;
	fprintf(stderr, "  %s: %ld ratings in %lld ms (%.0f ratings/s)\n", driver, n, (long long)ms,
	        ms > 0 ? (double)n * 1000.0 / (double)ms : 0.0);
	CHECK_AGG(s, "movie", "big", count, sum);

	/* Replace the first 1000 with 5 and delete the next 1000. */
	for (int i = 0; i < BATCH && i < n; i++) {
		snprintf(users[i], sizeof(users[i]), "user-%d", i);
		c[i] = put("movie", "big", users[i], 5);
		sum += 5 - (i % 5 + 1);
	}
	CHECK_INT_EQ(rating_store_apply(s, c, n < BATCH ? (size_t)n : BATCH), 0);
	if (n >= 2 * BATCH) {
		for (int i = 0; i < BATCH; i++) {
			snprintf(users[i], sizeof(users[i]), "user-%d", BATCH + i);
			c[i] = del("movie", "big", users[i]);
			sum -= (BATCH + i) % 5 + 1;
			count--;
		}
		CHECK_INT_EQ(rating_store_apply(s, c, BATCH), 0);
	}
	CHECK_AGG(s, "movie", "big", count, sum);

	t0 = store_testing_now_ms();
	for (int i = 0; i < 1000; i++) {
		double mean;
		uint64_t cnt;
		if (rating_store_aggregate(s, "big", "movie", &mean, &cnt) != 0)
			failed = 1;
	}
	CHECK_INT_EQ(failed, 0);
	fprintf(stderr, "  %s: 1000 aggregate reads over %lld ratings: %lld ms\n", driver, count,
	        (long long)(store_testing_now_ms() - t0));
	rating_store_close(s);
}

#define THREADS   4
#define ROUNDS    20
#define PER_BATCH 50

struct worker {
	struct rating_store *s;
	int n;
	int failures;
};

/* Each thread rates records "c0".."c3" with its own users, plus users that
 * every thread writes with the same value: the final state is known. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct rating_change c[PER_BATCH + 4];
	char users[PER_BATCH][32];
	static const char *const records[4] = {"c0", "c1", "c2", "c3"};

	for (int r = 0; r < ROUNDS; r++) {
		size_t k = 0;
		for (int i = 0; i < PER_BATCH; i++, k++) {
			snprintf(users[i], sizeof(users[i]), "t%d-r%d-%d", w->n, r, i);
			/* Records in a thread-dependent order, to provoke lock-order
			 * conflicts between batches. */
			c[k] = put("movie", records[(i + w->n) % 4], users[i], (i % 5) + 1);
		}
		for (int i = 0; i < 4; i++)
			c[k++] = put("movie", records[3 - i], "everyone", 3);
		if (rating_store_apply(w->s, c, k) != 0)
			w->failures++;
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct rating_store *s = open_store();
	struct worker w[THREADS];
	pthread_t th[THREADS];
	long long sum[4] = {0, 0, 0, 0}, count[4] = {0, 0, 0, 0};

	CHECK(s != NULL);
	if (!s)
		return;
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.s = s, .n = i};
		CHECK_INT_EQ(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT_EQ(w[i].failures, 0);
	}
	for (int t = 0; t < THREADS; t++) {
		for (int r = 0; r < ROUNDS; r++) {
			for (int i = 0; i < PER_BATCH; i++) {
				sum[(i + t) % 4] += i % 5 + 1;
				count[(i + t) % 4]++;
			}
		}
	}
	CHECK_AGG(s, "movie", "c0", count[0] + 1, sum[0] + 3);
	CHECK_AGG(s, "movie", "c1", count[1] + 1, sum[1] + 3);
	CHECK_AGG(s, "movie", "c2", count[2] + 1, sum[2] + 3);
	CHECK_AGG(s, "movie", "c3", count[3] + 1, sum[3] + 3);
	rating_store_close(s);
}

/* A batch that returned 0 survives kill -9 of the process right after. */
static void test_survives_kill9(void)
{
	pid_t pid;
	int status = 0;
	struct rating_store *s;

	if (strcmp(driver, "memory") == 0)
		return;
	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct rating_change c[2] = {put("movie", "k9", "a", 4),
		                             put("movie", "k9", "b", 1)};
		char err[256];
		struct rating_store *cs = rating_store_open(&fx.cfg, err, sizeof(err));
		if (!cs || rating_store_apply(cs, c, 2) != 0)
			_exit(3);
		raise(SIGKILL);
		_exit(4);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_AGG(s, "movie", "k9", 2, 5);
	rating_store_close(s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s memory|sqlite|mysql\n", argv[0]);
		return 2;
	}
	driver = argv[1];
	if (store_fixture_init(&fx, driver) != 0)
		return 1;
	RUN(test_put_replace_delete);
	RUN(test_batch_order);
	RUN(test_invalid_batch_applies_nothing);
	RUN(test_failure_rolls_back);
	RUN(test_concurrent);
	RUN(test_survives_kill9);
	RUN(test_big_aggregate);
	store_fixture_release(&fx);
	return TEST_SUMMARY();
}
