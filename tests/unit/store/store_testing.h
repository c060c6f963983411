/*
 * store_testing.h - one fixture for the store suites: a store_config for a
 * driver plus the resources behind it (a temporary directory for sqlite, a
 * uniquely named database for mysql), so the same test code runs against
 * memory, sqlite and mysql, and suites can run in parallel.
 *
 * mysql finds its server through MOVIE_TEST_MYSQL_HOST, _PORT, _USER and
 * _PASSWORD; without them store_fixture_init fails with a message saying so
 * (a mysql run never passes by skipping).
 */
#ifndef STORE_TESTING_H
#define STORE_TESTING_H

#include <stdbool.h>
#include <stdint.h>

#include "movie/store_config.h"

struct store_fixture {
	struct store_config cfg;
	char driver[16];
	char dir[256];  /* sqlite: temporary directory */
	char path[320]; /* sqlite: database file */
	char host[128], user[64], password[64];
	char database[64]; /* mysql: movie_test_<pid>_<n> */
	bool created;      /* mysql: database created by us */
};

/* Prepare a fixture for driver "memory", "sqlite" or "mysql".
 * Returns 0, or -1 after printing why to stderr. */
int store_fixture_init(struct store_fixture *f, const char *driver);
/* Drop the database / remove the directory. */
void store_fixture_release(struct store_fixture *f);
/* Run one SQL statement in the fixture's database (sqlite file or mysql
 * database) outside any store. Returns 0, or -1 after printing the error. */
int store_fixture_sql(const struct store_fixture *f, const char *sql);

/* Run a query in the fixture's database and read the first column of its
 * first row as an integer. Returns 0, or -1 after printing the error. */
int store_fixture_query_int(const struct store_fixture *f, const char *sql, long long *out);

/* Connect to a mysql server and run one statement with no database selected.
 * Returns 0, or -1 (quietly when quiet is true). */
int store_testing_mysql_admin(const char *host, unsigned int port, const char *user,
                              const char *password, const char *sql, bool quiet);

/* Monotonic milliseconds. */
int64_t store_testing_now_ms(void);

#endif
