/*
 * db.h - shared plumbing of the SQLite and MariaDB store drivers.
 *
 * Both halves hand out connections from a bounded pool: a caller acquires a
 * connection, uses it from its own thread only, and releases it. Statements
 * are prepared lazily per connection from a driver's constant table of SQL
 * texts (indexed by small integers) and cached until the connection closes, so
 * a hot path never re-parses SQL and user data only ever travels as bound
 * parameters. Schemas are versioned: a driver passes its migrations (ascending
 * versions, each a NULL-terminated list of statements) and every version
 * missing from the table schema_migrations is applied in order.
 *
 * Error mapping (one place, see db_sqlite_err and db_mysql_fail):
 *   out of memory                                -> MV_ENOMEM
 *   value too big for its column, invalid text   -> MV_EINVAL
 *   busy/locked past the timeout, I/O, lost or
 *   refused connection, read/write timeout,
 *   any other server error                       -> MV_EUNAVAIL
 *   deadlock / lock wait timeout (MariaDB)       -> MV_EAGAIN (the caller retries the transaction)
 * A MariaDB connection that failed with a network-class error is closed and
 * reopened on its next use; while the server is down, acquiring fails with
 * MV_EUNAVAIL after at most one connect attempt per DB_MYSQL_RETRY_MS.
 *
 * All functions are thread-safe except where a connection is involved: a
 * connection belongs to the thread that acquired it until it is released.
 */
#ifndef MOVIE_DB_H
#define MOVIE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mysql.h>
#include <sqlite3.h>

/* Prepared statements a connection caches, per driver (indexes 0..MAX-1). */
#define DB_STMT_MAX 48

/* While the server refuses connections, a new connect attempt is made at most
 * this often; calls in between fail with MV_EUNAVAIL at once. */
#define DB_MYSQL_RETRY_MS 200

struct db_migration {
	int version;                   /* > 0, ascending in the array */
	const char *const *statements; /* NULL-terminated; each idempotent on MariaDB */
};

/* ---------------------------------------------------------------- SQLite */

struct db_sqlite_options {
	const char *path;        /* database file; missing parent directories are created */
	int64_t busy_timeout_ms; /* wait for a locked database / a free connection */
	size_t max_connections;  /* pool bound, >= 1 */
	const struct db_migration *migrations;
	size_t migration_count;
	const char *const *statements; /* the driver's SQL table, DB_STMT_MAX entries at most */
	size_t statement_count;
};

struct db_sqlite_conn {
	sqlite3 *db;
	sqlite3_stmt *stmts[DB_STMT_MAX];
	bool in_use;
};

struct db_sqlite;

/* Open (creating if needed) the database in WAL mode with synchronous=NORMAL
 * and apply missing migrations in one IMMEDIATE transaction (safe when several
 * processes open the file at once). Options are copied.
 * Returns 0, MV_EINVAL (bad options), MV_ENOMEM, MV_EUNAVAIL (cannot open or
 * migrate; reason in errbuf). */
int db_sqlite_open(const struct db_sqlite_options *opt, struct db_sqlite **out, char *errbuf,
                   size_t errbuf_size);
void db_sqlite_close(struct db_sqlite *d);

/* Take a connection, opening it on first use; waits at most busy_timeout for
 * one to be free. Returns 0, MV_EUNAVAIL, MV_ENOMEM. */
int db_sqlite_acquire(struct db_sqlite *d, struct db_sqlite_conn **out);
/* Give it back. Any open transaction must have been committed or rolled back. */
void db_sqlite_release(struct db_sqlite *d, struct db_sqlite_conn *c);

/* The cached statement `index` of the driver's table, reset with its
 * bindings cleared. Returns NULL with *err set (MV_ENOMEM, MV_EUNAVAIL,
 * MV_EINTERNAL for an index outside the table). */
sqlite3_stmt *db_sqlite_stmt(struct db_sqlite *d, struct db_sqlite_conn *c, size_t index, int *err);

/* Run constant SQL without parameters or results ("BEGIN IMMEDIATE").
 * Returns 0 or the db_sqlite_err mapping. */
int db_sqlite_exec(struct db_sqlite_conn *c, const char *sql);

/* Readiness probe: a connection, and the driver's statement `ping_stmt`
 * (a "SELECT 1" in its table) returns a row. Returns 0 or MV_EUNAVAIL. */
int db_sqlite_ping(struct db_sqlite *d, size_t ping_stmt);

/* Map an SQLite result code to an mv_err (SQLITE_OK/ROW/DONE -> 0). */
int db_sqlite_err(int rc);

/* ---------------------------------------------------------------- MariaDB */

struct db_mysql_options {
	const char *host; /* TCP host, "127.0.0.1" */
	int64_t port;
	const char *user;
	const char *password;
	const char *database;       /* must exist */
	const char *component;      /* "metadata", "rating": [a-z_]{1,32}. Versions are kept
	                                   in <component>_schema_migrations so that services
	                                   sharing one database migrate independently */
	int64_t pool_size;          /* 1..64 */
	int64_t connect_timeout_ms; /* rounded up to whole seconds (libmariadb's unit) */
	int64_t
	    query_timeout_ms; /* read/write timeout, also the bound on waiting for a free connection */
	const struct db_migration *migrations;
	size_t migration_count;
};

struct db_mysql_conn {
	MYSQL *my; /* NULL while disconnected */
	MYSQL_STMT *stmts[DB_STMT_MAX];
	bool in_use;
	bool broken; /* a network-class error: closed at release */
	bool fresh;  /* connected by this acquire (a failure is not a stale socket) */
};

struct db_mysql;

/* Validate options, build the pool and try one connection (running
 * migrations). An unreachable server is not an error: connections and
 * migrations are retried on use. Options are copied.
 * Returns 0, MV_EINVAL (bad options, reason in errbuf), MV_ENOMEM. */
int db_mysql_open(const struct db_mysql_options *opt, struct db_mysql **out, char *errbuf,
                  size_t errbuf_size);
void db_mysql_close(struct db_mysql *p);

/* Take a connected connection (connecting and migrating if needed).
 * Returns 0, MV_EUNAVAIL (server down, or no free connection within
 * query_timeout), MV_ENOMEM. */
int db_mysql_acquire(struct db_mysql *p, struct db_mysql_conn **out);
/* Give it back; a connection marked broken by db_mysql_fail is closed here. */
void db_mysql_release(struct db_mysql *p, struct db_mysql_conn *c);

/* The cached statement `index`, prepared from `sql` on first use (the text
 * for an index must never change). Returns NULL with *err set by
 * db_mysql_fail, or MV_EINTERNAL for an index >= DB_STMT_MAX. */
MYSQL_STMT *db_mysql_stmt(struct db_mysql_conn *c, size_t index, const char *sql, int *err);

/* Run constant SQL without parameters or results ("START TRANSACTION").
 * Returns 0 or the db_mysql_fail mapping. */
int db_mysql_exec(struct db_mysql_conn *c, const char *sql);

/* Map the error number `code` of the last failed call on c to an mv_err and,
 * for network-class errors, mark the connection broken (closed at release).
 * Returns MV_EUNAVAIL, MV_EINVAL, MV_EAGAIN, MV_ENOMEM. */
int db_mysql_fail(struct db_mysql_conn *c, unsigned int code);

/* True when c was marked broken and the call may be retried on a new
 * connection (the connection was reused, so the failure may be a stale socket
 * after a server restart rather than a server that is down now). */
bool db_mysql_retryable(const struct db_mysql_conn *c);

/* Acquire, round-trip, release. Returns 0 or MV_EUNAVAIL. */
int db_mysql_ping(struct db_mysql *p);

#endif
