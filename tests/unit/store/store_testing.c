#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>
#include <sqlite3.h>

#include "store_testing.h"

#include "movie/banned.h"

static int fixture_seq;

int64_t store_testing_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static MYSQL *admin_connect(const char *host, unsigned int port, const char *user,
                            const char *password, const char *db, bool quiet)
{
	MYSQL *my = mysql_init(NULL);
	unsigned int timeout = 2;

	if (!my)
		return NULL;
	mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	if (!mysql_real_connect(my, host, user, password, db, port, NULL, 0)) {
		if (!quiet)
			fprintf(stderr, "mysql connect %s:%u as %s: %s\n", host, port, user,
			        mysql_error(my));
		mysql_close(my);
		return NULL;
	}
	return my;
}

int store_testing_mysql_admin(const char *host, unsigned int port, const char *user,
                              const char *password, const char *sql, bool quiet)
{
	MYSQL *my = admin_connect(host, port, user, password, NULL, quiet);
	int rc = 0;

	if (!my)
		return -1;
	if (mysql_query(my, sql) != 0) {
		if (!quiet)
			fprintf(stderr, "mysql: %s: %s\n", sql, mysql_error(my));
		rc = -1;
	}
	mysql_close(my);
	return rc;
}

static int parse_port(const char *s, unsigned int *port)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 65535)
		return -1;
	*port = (unsigned int)v;
	return 0;
}

int store_fixture_init(struct store_fixture *f, const char *driver)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->driver, sizeof(f->driver), "%s", driver);
	f->cfg.driver = f->driver;
	f->cfg.sqlite_busy_timeout_ms = 5000;
	f->cfg.mysql_pool_size = 4;
	f->cfg.mysql_connect_timeout_ms = 2000;
	f->cfg.mysql_query_timeout_ms = 10000;

	if (strcmp(driver, "memory") == 0)
		return 0;
	if (strcmp(driver, "sqlite") == 0) {
		snprintf(f->dir, sizeof(f->dir), "/tmp/movie-store-test-XXXXXX");
		if (!mkdtemp(f->dir)) {
			perror("mkdtemp");
			return -1;
		}
		/* A missing subdirectory: the store creates it. */
		snprintf(f->path, sizeof(f->path), "%s/data/store.db", f->dir);
		f->cfg.sqlite_path = f->path;
		return 0;
	}
	if (strcmp(driver, "mysql") == 0) {
		const char *host = getenv("MOVIE_TEST_MYSQL_HOST");
		const char *port = getenv("MOVIE_TEST_MYSQL_PORT");
		const char *user = getenv("MOVIE_TEST_MYSQL_USER");
		const char *password = getenv("MOVIE_TEST_MYSQL_PASSWORD");
		unsigned int port_num;
		char sql[128];

		if (!host || !port || !user || !password) {
			fprintf(stderr, "FAIL: the mysql variant needs MOVIE_TEST_MYSQL_HOST, "
			                "MOVIE_TEST_MYSQL_PORT, MOVIE_TEST_MYSQL_USER and "
			                "MOVIE_TEST_MYSQL_PASSWORD (start a server with "
			                "scripts/test-mariadb.sh start DIR PORT; user movie, "
			                "password movie)\n");
			return -1;
		}
		if (parse_port(port, &port_num) != 0) {
			fprintf(stderr, "FAIL: MOVIE_TEST_MYSQL_PORT '%s' is not a port\n", port);
			return -1;
		}
		snprintf(f->host, sizeof(f->host), "%s", host);
		snprintf(f->user, sizeof(f->user), "%s", user);
		snprintf(f->password, sizeof(f->password), "%s", password);
		snprintf(f->database, sizeof(f->database), "movie_test_%ld_%d", (long)getpid(),
		         fixture_seq++);
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s CHARACTER SET utf8mb4", f->database);
		if (store_testing_mysql_admin(f->host, port_num, f->user, f->password, sql, false))
			return -1;
		f->created = true;
		f->cfg.mysql_host = f->host;
		f->cfg.mysql_port = port_num;
		f->cfg.mysql_user = f->user;
		f->cfg.mysql_password = f->password;
		f->cfg.mysql_database = f->database;
		return 0;
	}
	fprintf(stderr, "FAIL: unknown driver '%s' (memory, sqlite, mysql)\n", driver);
	return -1;
}

void store_fixture_release(struct store_fixture *f)
{
	if (f->created) {
		char sql[128];
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->database);
		store_testing_mysql_admin(f->host, (unsigned int)f->cfg.mysql_port, f->user,
		                          f->password, sql, false);
		f->created = false;
	}
	if (f->dir[0]) {
		const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
		char p[400];
		for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
			snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
			unlink(p);
		}
		snprintf(p, sizeof(p), "%s/data", f->dir);
		rmdir(p);
		rmdir(f->dir);
		f->dir[0] = '\0';
	}
}

int store_fixture_sql(const struct store_fixture *f, const char *sql)
{
	if (strcmp(f->driver, "sqlite") == 0) {
		sqlite3 *db = NULL;
		char *err = NULL;
		int rc = sqlite3_open(f->path, &db);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, sql, NULL, NULL, &err);
		if (rc != SQLITE_OK)
			fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		sqlite3_close(db);
		return rc == SQLITE_OK ? 0 : -1;
	}
	if (strcmp(f->driver, "mysql") == 0) {
		MYSQL *my = admin_connect(f->host, (unsigned int)f->cfg.mysql_port, f->user,
		                          f->password, f->database, false);
		int rc = 0;
		if (!my)
			return -1;
		if (mysql_query(my, sql) != 0) {
			fprintf(stderr, "mysql: %s: %s\n", sql, mysql_error(my));
			rc = -1;
		}
		mysql_close(my);
		return rc;
	}
	return -1;
}

int store_fixture_query_int(const struct store_fixture *f, const char *sql, long long *out)
{
	int rc = -1;

	if (strcmp(f->driver, "sqlite") == 0) {
		sqlite3 *db = NULL;
		sqlite3_stmt *st = NULL;
		if (sqlite3_open(f->path, &db) == SQLITE_OK &&
		    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW) {
			*out = sqlite3_column_int64(st, 0);
			rc = 0;
		} else {
			fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
		}
		sqlite3_finalize(st);
		sqlite3_close(db);
	} else if (strcmp(f->driver, "mysql") == 0) {
		MYSQL *my = admin_connect(f->host, (unsigned int)f->cfg.mysql_port, f->user,
		                          f->password, f->database, false);
		MYSQL_RES *res = NULL;
		MYSQL_ROW row;
		if (!my)
			return -1;
		if (mysql_query(my, sql) == 0 && (res = mysql_store_result(my)) != NULL &&
		    (row = mysql_fetch_row(res)) != NULL && row[0]) {
			char *end;
			errno = 0;
			*out = strtoll(row[0], &end, 10);
			rc = errno == 0 && end != row[0] && *end == '\0' ? 0 : -1;
		}
		if (rc != 0)
			fprintf(stderr, "mysql: %s: %s\n", sql, mysql_error(my));
		mysql_free_result(res);
		mysql_close(my);
	}
	return rc;
}
