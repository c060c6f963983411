/*
 * store_config.h - storage settings shared by every service's store.
 *
 * Filled from the service's YAML (storage.* keys) and passed to the store's
 * open function. Strings are borrowed from the loaded configuration.
 */
#ifndef MOVIE_STORE_CONFIG_H
#define MOVIE_STORE_CONFIG_H

#include <stdint.h>

struct store_config {
	const char *driver;          /* "memory", "sqlite" or "mysql" */
	/* sqlite */
	const char *sqlite_path;     /* database file; its directory must exist */
	int64_t sqlite_busy_timeout_ms;
	/* mysql / mariadb */
	const char *mysql_host;      /* "127.0.0.1" (not "localhost": that is the unix socket) */
	int64_t mysql_port;
	const char *mysql_user;
	const char *mysql_password;  /* resolved from password_file / env by the config loader */
	const char *mysql_database;
	int64_t mysql_pool_size;     /* connections, shared by the worker threads */
	int64_t mysql_connect_timeout_ms;
	int64_t mysql_query_timeout_ms; /* read/write timeout: a hung server fails calls, not threads */
};

#endif
