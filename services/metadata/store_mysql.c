/*
 * store_mysql.c - metadata in MariaDB/MySQL (production driver).
 *
 * Ids are VARBINARY: compared byte for byte, with no collation folding case
 * or trailing spaces ("a" and "a " are two movies, as in the other drivers).
 * Text columns are utf8mb4; invalid UTF-8 fails the put with MV_EINVAL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/db.h"
#include "movie/db_module.h"
#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

static const char *const migration_1[] = {
    "CREATE TABLE IF NOT EXISTS metadata ("
    " id VARBINARY(256) NOT NULL PRIMARY KEY,"
    " title TEXT NOT NULL,"
    " description TEXT NOT NULL,"
    " director TEXT NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    NULL,
};

static const struct db_migration migrations[] = {
    {1, migration_1},
};

enum {
	STMT_GET,
	STMT_PUT
};

static const char sql_get[] = "SELECT title, description, director FROM metadata WHERE id = ?";
static const char sql_put[] = "INSERT INTO metadata (id, title, description, director)"
                              " VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
                              " title = VALUES(title), description = VALUES(description),"
                              " director = VALUES(director)";

static void *mysql_store_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct db_mysql_options opt = {
	    .host = cfg->mysql_host,
	    .port = cfg->mysql_port,
	    .user = cfg->mysql_user,
	    .password = cfg->mysql_password,
	    .database = cfg->mysql_database,
	    .component = "metadata",
	    .pool_size = cfg->mysql_pool_size,
	    .connect_timeout_ms = cfg->mysql_connect_timeout_ms,
	    .query_timeout_ms = cfg->mysql_query_timeout_ms,
	    .migrations = migrations,
	    .migration_count = sizeof(migrations) / sizeof(migrations[0]),
	};
	struct db_mysql *p = NULL;

	if (db_mysql_open(&opt, &p, errbuf, errbuf_size) != 0)
		return NULL;
	return p;
}

static void mysql_store_close(void *impl)
{
	db_mysql_close(impl);
}

static void bind_str(MYSQL_BIND *b, const char *s, unsigned long *len)
{
	s = s ? s : "";
	*len = (unsigned long)strlen(s);
	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = (void *)(uintptr_t)s; /* libmariadb only reads parameters */
	b->buffer_length = *len;
	b->length = len;
}

/* Fetch column `col` of the current row, whatever its length. */
static char *fetch_text(MYSQL_STMT *st, unsigned int col, unsigned long len, int *rc)
{
	MYSQL_BIND b;
	char *text = malloc((size_t)len + 1);

	if (!text) {
		*rc = MV_ENOMEM;
		return NULL;
	}
	memset(&b, 0, sizeof(b));
	b.buffer_type = MYSQL_TYPE_STRING;
	b.buffer = text;
	b.buffer_length = len + 1;
	if (mysql_stmt_fetch_column(st, &b, col, 0) != 0) {
		free(text);
		*rc = MV_EUNAVAIL;
		return NULL;
	}
	text[len] = '\0';
	return text;
}

static int get_once(struct db_mysql_conn *c, const char *id, struct metadata *out)
{
	MYSQL_BIND param, res[3];
	unsigned long id_len, lens[3] = {0, 0, 0};
	MYSQL_STMT *st;
	int rc = 0, f;

	st = db_mysql_stmt(c, STMT_GET, sql_get, &rc);
	if (!st)
		return rc;
	bind_str(&param, id, &id_len);
	/* Zero-length buffers: fetch learns each length, then fetch_text reads
	 * exactly that many bytes (texts may be up to METADATA_TEXT_MAX). */
	memset(res, 0, sizeof(res));
	for (int i = 0; i < 3; i++) {
		res[i].buffer_type = MYSQL_TYPE_STRING;
		res[i].length = &lens[i];
	}
	if (mysql_stmt_bind_param(st, &param) != 0 || mysql_stmt_execute(st) != 0 ||
	    mysql_stmt_bind_result(st, res) != 0 || mysql_stmt_store_result(st) != 0)
		return db_mysql_fail(c, mysql_stmt_errno(st));
	f = mysql_stmt_fetch(st);
	if (f == MYSQL_NO_DATA) {
		rc = MV_ENOTFOUND;
		goto out_free;
	}
	if (f != 0 && f != MYSQL_DATA_TRUNCATED) {
		rc = db_mysql_fail(c, mysql_stmt_errno(st));
		goto out_free;
	}
	out->id = metadata_strdup(id);
	out->title = fetch_text(st, 0, lens[0], &rc);
	out->description = fetch_text(st, 1, lens[1], &rc);
	out->director = fetch_text(st, 2, lens[2], &rc);
	if (!out->id || !out->title || !out->description || !out->director) {
		metadata_release(out);
		if (rc == 0)
			rc = MV_ENOMEM;
	}
out_free:
	mysql_stmt_free_result(st);
	return rc;
}

static int put_once(struct db_mysql_conn *c, const struct metadata *m)
{
	MYSQL_BIND params[4];
	unsigned long lens[4];
	MYSQL_STMT *st;
	int rc = 0;

	st = db_mysql_stmt(c, STMT_PUT, sql_put, &rc);
	if (!st)
		return rc;
	bind_str(&params[0], m->id, &lens[0]);
	bind_str(&params[1], m->title, &lens[1]);
	bind_str(&params[2], m->description, &lens[2]);
	bind_str(&params[3], m->director, &lens[3]);
	if (mysql_stmt_bind_param(st, params) != 0 || mysql_stmt_execute(st) != 0)
		return db_mysql_fail(c, mysql_stmt_errno(st));
	return 0;
}

/* Reads and the upsert are idempotent, so a call that failed on a stale
 * pooled connection (server restarted since) is retried once on a new one. */
static int mysql_get(void *impl, const char *id, struct metadata *out)
{
	struct db_mysql *p = impl;
	struct db_mysql_conn *c;
	bool again;
	int rc = MV_EUNAVAIL;

	for (int attempt = 0; attempt < 2; attempt++) {
		rc = db_mysql_acquire(p, &c);
		if (rc != 0)
			return rc;
		rc = get_once(c, id, out);
		again = rc == MV_EUNAVAIL && db_mysql_retryable(c);
		db_mysql_release(p, c);
		if (!again)
			break;
	}
	return rc;
}

static int mysql_put(void *impl, const struct metadata *m)
{
	struct db_mysql *p = impl;
	struct db_mysql_conn *c;
	bool again;
	int rc = MV_EUNAVAIL;

	for (int attempt = 0; attempt < 2; attempt++) {
		rc = db_mysql_acquire(p, &c);
		if (rc != 0)
			return rc;
		rc = put_once(c, m);
		again = rc == MV_EUNAVAIL && db_mysql_retryable(c);
		db_mysql_release(p, c);
		if (!again)
			break;
	}
	return rc;
}

static int mysql_store_ping(void *impl)
{
	return db_mysql_ping(impl);
}

const struct metadata_store_ops metadata_store_mysql_ops = {
    .name = "mysql",
    .blocking = true,
    .open = mysql_store_open,
    .close = mysql_store_close,
    .get = mysql_get,
    .put = mysql_put,
    .ping = mysql_store_ping,
};

/* The module's one exported symbol (movie/db_module.h). */
DB_MODULE_EXPORT const struct db_module movie_db_module = {
    .abi_version = DB_MODULE_ABI_VERSION,
    .service = "metadata",
    .ops_size = sizeof(metadata_store_mysql_ops),
    .ops = &metadata_store_mysql_ops,
};
