/*
 * test_metadata_store.c - one suite for every metadata store driver.
 *
 *   test_metadata_store memory|sqlite|mysql   the suite against that driver
 *   test_metadata_store reconnect             mysql store opened with no server,
 *                                             then a server started and restarted
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "movie/err.h"
#include "store.h"
#include "store_testing.h"
#include "../testing.h"

#include "movie/banned.h"

static struct store_fixture fx;
static const char *driver;

static struct metadata_store *open_store(void)
{
	char err[256];
	struct metadata_store *s = metadata_store_open(&fx.cfg, err, sizeof(err));
	if (!s)
		fprintf(stderr, "metadata_store_open(%s): %s\n", driver, err);
	return s;
}

static int put4(struct metadata_store *s, const char *id, const char *title, const char *desc,
                const char *director)
{
	struct metadata m = {(char *)(uintptr_t)id, (char *)(uintptr_t)title,
	                     (char *)(uintptr_t)desc, (char *)(uintptr_t)director};
	return metadata_store_put(s, &m);
}

struct opener {
	struct metadata_store *s;
};

static void *opener_main(void *arg)
{
	struct opener *o = arg;
	char err[256];
	o->s = metadata_store_open(&fx.cfg, err, sizeof(err));
	if (!o->s)
		fprintf(stderr, "concurrent open: %s\n", err);
	return NULL;
}

/* Replicas starting at once on a fresh database: every open succeeds and
 * each migration is recorded once. Runs first, while the database is empty. */
static void test_concurrent_open(void)
{
	struct opener o[4];
	pthread_t th[4];
	long long n = -1;

	if (strcmp(driver, "memory") == 0)
		return;
	for (int i = 0; i < 4; i++)
		CHECK_INT_EQ(pthread_create(&th[i], NULL, opener_main, &o[i]), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(o[i].s != NULL);
	}
	/* MariaDB keeps each service's versions in its own table (a shared database). */
	const char *count_sql = strcmp(driver, "mysql") == 0
	                            ? "SELECT COUNT(*) FROM metadata_schema_migrations"
	                            : "SELECT COUNT(*) FROM schema_migrations";
	const char *max_sql = strcmp(driver, "mysql") == 0
	                          ? "SELECT MAX(version) FROM metadata_schema_migrations"
	                          : "SELECT MAX(version) FROM schema_migrations";
	CHECK_INT_EQ(store_fixture_query_int(&fx, count_sql, &n), 0);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(store_fixture_query_int(&fx, max_sql, &n), 0);
	CHECK_INT_EQ(n, 1);
	for (int i = 0; i < 4; i++) {
		if (o[i].s) {
			CHECK_INT_EQ(put4(o[i].s, "opened", "by all", "", ""), 0);
			metadata_store_close(o[i].s);
		}
	}
}

static void test_put_get_notfound(void)
{
	struct metadata_store *s = open_store();
	struct metadata m;

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT_EQ(metadata_store_ping(s), 0);
	CHECK_INT_EQ(metadata_store_blocking(s), strcmp(driver, "memory") != 0);
	CHECK_INT_EQ(metadata_store_get(s, "nope", &m), MV_ENOTFOUND);
	CHECK_INT_EQ(put4(s, "1", "The Movie", "A film.", "Someone"), 0);
	CHECK_INT_EQ(metadata_store_get(s, "1", &m), 0);
	CHECK_STR_EQ(m.id, "1");
	CHECK_STR_EQ(m.title, "The Movie");
	CHECK_STR_EQ(m.description, "A film.");
	CHECK_STR_EQ(m.director, "Someone");
	metadata_release(&m);
	/* NULL fields are stored as empty strings. */
	CHECK_INT_EQ(put4(s, "2", NULL, "", NULL), 0);
	CHECK_INT_EQ(metadata_store_get(s, "2", &m), 0);
	CHECK_STR_EQ(m.title, "");
	CHECK_STR_EQ(m.description, "");
	CHECK_STR_EQ(m.director, "");
	metadata_release(&m);
	metadata_store_close(s);
}

static void test_upsert_replaces(void)
{
	struct metadata_store *s = open_store();
	struct metadata m;

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT_EQ(put4(s, "u", "old title", "old", "old director"), 0);
	CHECK_INT_EQ(put4(s, "u", "new title", "new", "new director"), 0);
	CHECK_INT_EQ(metadata_store_get(s, "u", &m), 0);
	CHECK_STR_EQ(m.title, "new title");
	CHECK_STR_EQ(m.description, "new");
	CHECK_STR_EQ(m.director, "new director");
	metadata_release(&m);
	metadata_store_close(s);
}

static void test_strings_and_limits(void)
{
	struct metadata_store *s = open_store();
	static char long_text[METADATA_TEXT_MAX + 2];
	static char long_id[METADATA_ID_MAX + 2];
	const char *tricky =
	    "'; DROP TABLE metadata; -- \"quoted\" \\back\\ %s %n \xc3\xa9\xe6\x98\xa0"
	    "\xe7\x94\xbb \xf0\x9f\x8e\xac\ttab\nnewline";
	struct metadata m;

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT_EQ(put4(s, tricky, tricky, tricky, tricky), 0);
	CHECK_INT_EQ(metadata_store_get(s, tricky, &m), 0);
	CHECK_STR_EQ(m.id, tricky);
	CHECK_STR_EQ(m.title, tricky);
	CHECK_STR_EQ(m.description, tricky);
	CHECK_STR_EQ(m.director, tricky);
	metadata_release(&m);

	/* Ids are exact bytes: no case folding, no trailing-space padding. */
	CHECK_INT_EQ(put4(s, "a", "lower", "", ""), 0);
	CHECK_INT_EQ(put4(s, "A", "upper", "", ""), 0);
	CHECK_INT_EQ(put4(s, "a ", "space", "", ""), 0);
	CHECK_INT_EQ(metadata_store_get(s, "a", &m), 0);
	CHECK_STR_EQ(m.title, "lower");
	metadata_release(&m);
	CHECK_INT_EQ(metadata_store_get(s, "A", &m), 0);
	CHECK_STR_EQ(m.title, "upper");
	metadata_release(&m);
	CHECK_INT_EQ(metadata_store_get(s, "a ", &m), 0);
	CHECK_STR_EQ(m.title, "space");
	metadata_release(&m);

	/* At the caps: stored whole. Past them: MV_EINVAL, nothing stored. */
	memset(long_text, 'x', METADATA_TEXT_MAX);
	long_text[METADATA_TEXT_MAX - 4] = '\xf0'; /* a 4-byte character at the end */
	memcpy(long_text + METADATA_TEXT_MAX - 3, "\x9f\x8e\xac", 3);
	long_text[METADATA_TEXT_MAX] = '\0';
	memset(long_id, 'i', METADATA_ID_MAX);
	long_id[METADATA_ID_MAX] = '\0';
	CHECK_INT_EQ(put4(s, long_id, long_text, long_text, long_text), 0);
	CHECK_INT_EQ(metadata_store_get(s, long_id, &m), 0);
	CHECK_STR_EQ(m.id, long_id);
	CHECK_STR_EQ(m.title, long_text);
	CHECK_STR_EQ(m.director, long_text);
	metadata_release(&m);
	long_text[METADATA_TEXT_MAX] = 'y';
	long_text[METADATA_TEXT_MAX + 1] = '\0';
	CHECK_INT_EQ(put4(s, "too-long", long_text, "", ""), MV_EINVAL);
	CHECK_INT_EQ(metadata_store_get(s, "too-long", &m), MV_ENOTFOUND);
	long_id[METADATA_ID_MAX] = 'j';
	long_id[METADATA_ID_MAX + 1] = '\0';
	CHECK_INT_EQ(put4(s, long_id, "t", "", ""), MV_EINVAL);
	CHECK_INT_EQ(put4(s, "", "t", "", ""), MV_EINVAL);
	CHECK_INT_EQ(metadata_store_put(s, NULL), MV_EINVAL);
	CHECK_INT_EQ(metadata_store_get(s, "", &m), MV_EINVAL);
	metadata_store_close(s);
}

static void test_survives_reopen(void)
{
	struct metadata_store *s;
	struct metadata m;

	if (strcmp(driver, "memory") == 0)
		return; /* nothing to survive */
	s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT_EQ(put4(s, "persist", "kept", "across", "close"), 0);
	metadata_store_close(s);
	/* Opening again also re-runs the (already applied) migrations. */
	s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT_EQ(metadata_store_get(s, "persist", &m), 0);
	CHECK_STR_EQ(m.title, "kept");
	CHECK_STR_EQ(m.director, "close");
	metadata_release(&m);
	metadata_store_close(s);
}

#define THREADS    4
#define PER_THREAD 150

struct worker {
	struct metadata_store *s;
	int n;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char id[32], title[64];
	struct metadata m;

	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(id, sizeof(id), "t%d-%d", w->n, i);
		snprintf(title, sizeof(title), "title %d/%d", w->n, i);
		if (put4(w->s, id, title, "d", "x") != 0)
			w->failures++;
		/* Everyone also rewrites one shared record. */
		if (put4(w->s, "shared", "shared title", "d", "x") != 0)
			w->failures++;
		if (metadata_store_get(w->s, id, &m) != 0) {
			w->failures++;
			continue;
		}
		if (strcmp(m.title, title) != 0)
			w->failures++;
		metadata_release(&m);
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct metadata_store *s = open_store();
	struct worker w[THREADS];
	pthread_t th[THREADS];
	struct metadata m;

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
	CHECK_INT_EQ(metadata_store_get(s, "t3-149", &m), 0);
	CHECK_STR_EQ(m.title, "title 3/149");
	metadata_release(&m);
	CHECK_INT_EQ(metadata_store_get(s, "shared", &m), 0);
	metadata_release(&m);
	metadata_store_close(s);
}

static void test_bad_config(void)
{
	struct store_config cfg = fx.cfg;
	char err[256];

	cfg.driver = "postgres";
	CHECK(metadata_store_open(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "postgres") != NULL);
	if (strcmp(driver, "mysql") == 0) {
		cfg = fx.cfg;
		cfg.mysql_pool_size = 0;
		CHECK(metadata_store_open(&cfg, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "pool_size") != NULL);
	}
	if (strcmp(driver, "sqlite") == 0) {
		cfg = fx.cfg;
		cfg.sqlite_path = "/proc/no/such/dir/x.db";
		CHECK(metadata_store_open(&cfg, err, sizeof(err)) == NULL);
		CHECK(err[0] != '\0');
	}
}

/* ------------------------------------------------------------ reconnect */

static unsigned int free_port(void)
{
	unsigned int base = 20000 + (unsigned int)(getpid() % 5000) * 2;

	for (unsigned int p = base; p < base + 100; p++) {
		struct sockaddr_in a;
		int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)p);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return p;
	}
	return 0;
}

static int run_script(const char *action, const char *dir, unsigned int port)
{
	char cmd[512];
	int rc;
	if (port)
		snprintf(cmd, sizeof(cmd), "%s/scripts/test-mariadb.sh %s %s %u", MOVIE_SOURCE_DIR,
		         action, dir, port);
	else
		snprintf(cmd, sizeof(cmd), "%s/scripts/test-mariadb.sh %s %s", MOVIE_SOURCE_DIR,
		         action, dir);
	rc = system(cmd);
	if (rc != 0) {
		/* Say why: the server's own logs. */
		snprintf(cmd, sizeof(cmd), "tail -n 20 %s/install.log %s/error.log >&2", dir, dir);
		if (system(cmd) != 0)
			fprintf(stderr, "(no logs in %s)\n", dir);
	}
	return rc;
}

/* Poll put until it succeeds; bounded by 30 s. Returns ms taken or -1. */
static int64_t wait_put_ok(struct metadata_store *s, const char *id, const char *title)
{
	int64_t start = store_testing_now_ms();
	for (int i = 0; i < 300 && store_testing_now_ms() - start < 30000; i++) {
		if (put4(s, id, title, "", "") == 0)
			return store_testing_now_ms() - start;
		usleep(100 * 1000);
	}
	return -1;
}

static void test_reconnect(void)
{
	char dir[] = "/tmp/movie-store-reconnect-XXXXXX";
	unsigned int port = free_port();
	struct store_config cfg;
	struct metadata_store *s;
	struct metadata m;
	char err[256];
	int64_t t0, slowest = 0, waited;

	CHECK(port != 0);
	CHECK(mkdtemp(dir) != NULL);
	if (!port)
		return;
	memset(&cfg, 0, sizeof(cfg));
	cfg.driver = "mysql";
	cfg.mysql_host = "127.0.0.1";
	cfg.mysql_port = port;
	cfg.mysql_user = "movie";
	cfg.mysql_password = "movie";
	cfg.mysql_database = "movie_reconnect";
	cfg.mysql_pool_size = 2;
	cfg.mysql_connect_timeout_ms = 1000;
	cfg.mysql_query_timeout_ms = 2000;

	/* No server: open succeeds, every call fails fast with MV_EUNAVAIL. */
	s = metadata_store_open(&cfg, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		goto out_rmdir;
	for (int i = 0; i < 20; i++) {
		t0 = store_testing_now_ms();
		CHECK_INT_EQ(metadata_store_get(s, "1", &m), MV_EUNAVAIL);
		CHECK_INT_EQ(put4(s, "1", "t", "", ""), MV_EUNAVAIL);
		CHECK_INT_EQ(metadata_store_ping(s), MV_EUNAVAIL);
		if (store_testing_now_ms() - t0 > slowest)
			slowest = store_testing_now_ms() - t0;
		usleep(20 * 1000);
	}
	fprintf(stderr, "  server down: slowest get+put+ping %lld ms\n", (long long)slowest);
	CHECK(slowest < 1000);

	/* Server comes up (database created by its operator): calls recover
	 * without reopening the store; the schema is migrated on first contact. */
	CHECK_INT_EQ(run_script("start", dir, port), 0);
	CHECK_INT_EQ(store_testing_mysql_admin("127.0.0.1", port, "movie", "movie",
	                                       "CREATE DATABASE movie_reconnect", false),
	             0);
	waited = wait_put_ok(s, "1", "first");
	fprintf(stderr, "  server up: first successful put after %lld ms\n", (long long)waited);
	CHECK(waited >= 0);
	CHECK_INT_EQ(metadata_store_ping(s), 0);
	CHECK_INT_EQ(metadata_store_get(s, "1", &m), 0);
	CHECK_STR_EQ(m.title, "first");
	metadata_release(&m);

	/* Server restarts: pooled connections are stale; calls fail while it is
	 * down and succeed again after, data intact. */
	CHECK_INT_EQ(run_script("stop", dir, 0), 0);
	t0 = store_testing_now_ms();
	CHECK_INT_EQ(metadata_store_get(s, "1", &m), MV_EUNAVAIL);
	CHECK(store_testing_now_ms() - t0 < 3000);
	CHECK_INT_EQ(run_script("start", dir, port), 0);
	waited = wait_put_ok(s, "2", "second");
	CHECK(waited >= 0);
	CHECK_INT_EQ(metadata_store_get(s, "1", &m), 0);
	CHECK_STR_EQ(m.title, "first");
	metadata_release(&m);
	metadata_store_close(s);
	CHECK_INT_EQ(run_script("stop", dir, 0), 0);
out_rmdir : {
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_INT_EQ(system(cmd), 0);
}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s memory|sqlite|mysql|reconnect\n", argv[0]);
		return 2;
	}
	driver = argv[1];
	if (strcmp(driver, "reconnect") == 0) {
		RUN(test_reconnect);
		return TEST_SUMMARY();
	}
	if (store_fixture_init(&fx, driver) != 0)
		return 1;
	RUN(test_concurrent_open);
	RUN(test_put_get_notfound);
	RUN(test_upsert_replaces);
	RUN(test_strings_and_limits);
	RUN(test_survives_reopen);
	RUN(test_concurrent);
	RUN(test_bad_config);
	store_fixture_release(&fx);
	return TEST_SUMMARY();
}
