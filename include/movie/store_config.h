/*
 * store_config.h - storage settings shared by every service's store.
 *
 * Filled from the service's YAML (storage.* keys) and passed to the store's
 * open function. Strings are borrowed for the duration of the open call
 * (stores copy what they keep). See docs/internals/store.md.
 */
#ifndef MOVIE_STORE_CONFIG_H
#define MOVIE_STORE_CONFIG_H

#include <stdint.h>

struct store_config {
	const char *driver; /* "memory", "sqlite" or "mysql" */
	/* sqlite */
	const char *sqlite_path;        /* database file; missing parent directories are created */
	int64_t sqlite_busy_timeout_ms; /* wait for the write lock (and a pooled connection) */
	/* mysql / mariadb */
	const char *mysql_host; /* "127.0.0.1" (not "localhost": that is the unix socket) */
	int64_t mysql_port;
	const char *mysql_user;
	const char *mysql_password; /* resolved from password_file / env by the config loader */
	const char *mysql_database;
	int64_t mysql_pool_size;          /* 1..64 connections, shared by the worker threads */
	int64_t mysql_connect_timeout_ms; /* rounded up to whole seconds (libmariadb's unit) */
	int64_t mysql_query_timeout_ms;   /* read/write timeout, rounded up to seconds, and the
					   longest wait for a free pooled connection: a hung
					   server fails calls, not threads */
};

#endif
