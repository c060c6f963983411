/*
 * store_sqlite.c - metadata in an SQLite file (the default driver).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/db.h"
#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

/* Readers run in parallel under WAL; more connections than that buy nothing
 * on the small boxes this runs on. */
#define SQLITE_CONNECTIONS 8

static const char *const migration_1[] = {
    "CREATE TABLE IF NOT EXISTS metadata ("
    " id TEXT NOT NULL PRIMARY KEY,"
    " title TEXT NOT NULL,"
    " description TEXT NOT NULL,"
    " director TEXT NOT NULL"
    ") WITHOUT ROWID",
    NULL,
};

static const struct db_migration migrations[] = {
    {1, migration_1},
};

enum {
	STMT_GET,
	STMT_PUT,
	STMT_PING,
	STMT_COUNT
};

static const char *const statements[STMT_COUNT] = {
    [STMT_GET] = "SELECT title, description, director FROM metadata WHERE id = ?1",
    [STMT_PUT] = "INSERT INTO metadata (id, title, description, director) VALUES (?1, ?2, ?3, ?4)"
                 " ON CONFLICT (id) DO UPDATE SET title = excluded.title,"
                 " description = excluded.description, director = excluded.director",
    [STMT_PING] = "SELECT 1",
};

static void *sqlite_store_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct db_sqlite_options opt = {
	    .path = cfg->sqlite_path,
	    .busy_timeout_ms = cfg->sqlite_busy_timeout_ms,
	    .max_connections = SQLITE_CONNECTIONS,
	    .migrations = migrations,
	    .migration_count = sizeof(migrations) / sizeof(migrations[0]),
	    .statements = statements,
	    .statement_count = STMT_COUNT,
	};
	struct db_sqlite *d = NULL;

	if (db_sqlite_open(&opt, &d, errbuf, errbuf_size) != 0)
		return NULL;
	return d;
}

static void sqlite_close(void *impl)
{
	db_sqlite_close(impl);
}

static char *column_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return metadata_strdup((const char *)t);
}

static int sqlite_get(void *impl, const char *id, struct metadata *out)
{
	struct db_sqlite *d = impl;
	struct db_sqlite_conn *c;
	sqlite3_stmt *st;
	int step;
	int rc = db_sqlite_acquire(d, &c);

	if (rc != 0)
		return rc;
	st = db_sqlite_stmt(d, c, STMT_GET, &rc);
	if (!st)
		goto out_release;
	rc = db_sqlite_err(sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC));
	if (rc != 0)
		goto out_reset;
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = MV_ENOTFOUND;
		goto out_reset;
	}
	if (step != SQLITE_ROW) {
		rc = db_sqlite_err(step);
		goto out_reset;
	}
	out->id = metadata_strdup(id);
	out->title = column_dup(st, 0);
	out->description = column_dup(st, 1);
	out->director = column_dup(st, 2);
	if (!out->id || !out->title || !out->description || !out->director) {
		metadata_release(out);
		rc = MV_ENOMEM;
	}
out_reset:
	sqlite3_reset(st);
out_release:
	db_sqlite_release(d, c);
	return rc;
}

static int sqlite_put(void *impl, const struct metadata *m)
{
	struct db_sqlite *d = impl;
	struct db_sqlite_conn *c;
	sqlite3_stmt *st;
	int rc = db_sqlite_acquire(d, &c);

	if (rc != 0)
		return rc;
	st = db_sqlite_stmt(d, c, STMT_PUT, &rc);
	if (!st)
		goto out_release;
	if (sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, m->title ? m->title : "", -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, m->description ? m->description : "", -1, SQLITE_STATIC) !=
	        SQLITE_OK ||
	    sqlite3_bind_text(st, 4, m->director ? m->director : "", -1, SQLITE_STATIC) !=
	        SQLITE_OK) {
		rc = MV_ENOMEM;
		goto out_reset;
	}
	/* One statement in autocommit mode: its own transaction. */
	rc = db_sqlite_err(sqlite3_step(st));
out_reset:
	sqlite3_reset(st);
out_release:
	db_sqlite_release(d, c);
	return rc;
}

static int sqlite_ping(void *impl)
{
	return db_sqlite_ping(impl, STMT_PING);
}

const struct metadata_store_ops metadata_store_sqlite_ops = {
    .name = "sqlite",
    .blocking = true,
    .open = sqlite_store_open,
    .close = sqlite_close,
    .get = sqlite_get,
    .put = sqlite_put,
    .ping = sqlite_ping,
};
