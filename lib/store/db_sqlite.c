/*
 * db_sqlite.c - SQLite connection pool, WAL setup and schema migrations.
 *
 * Each pooled connection is used by one thread at a time, so connections are
 * opened with SQLITE_OPEN_NOMUTEX. WAL lets readers run beside the single
 * writer; writers queue on the database lock for busy_timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "movie/db.h"
#include "movie/err.h"

#include "movie/banned.h"

#define DB_SQLITE_MAX_CONNECTIONS 64

struct db_sqlite {
	char *path;
	int64_t busy_timeout_ms;
	const char *const *statements;
	size_t statement_count;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a connection was released */
	size_t nconns;
	struct db_sqlite_conn conns[];
};

int db_sqlite_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE: return 0;
	case SQLITE_NOMEM: return MV_ENOMEM;
	case SQLITE_TOOBIG:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE: return MV_EINVAL;
	default:
		/* BUSY/LOCKED past busy_timeout, IOERR, FULL, CORRUPT, CANTOPEN:
		 * the database cannot serve now; the caller reports unavailable. */
		return MV_EUNAVAIL;
	}
}

static void set_err(char *errbuf, size_t size, const char *what, const char *detail)
{
	if (errbuf && size)
		snprintf(errbuf, size, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

/* mkdir -p of the directory part of path. */
static int make_parent_dirs(const char *path)
{
	size_t len = strlen(path);
	char *dir = malloc(len + 1);
	int rc = 0;

	if (!dir)
		return MV_ENOMEM;
	memcpy(dir, path, len + 1);
	for (size_t i = 1; i < len; i++) {
		if (dir[i] != '/')
			continue;
		dir[i] = '\0';
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			rc = MV_EIO;
			break;
		}
		dir[i] = '/';
	}
	free(dir);
	return rc;
}

int db_sqlite_exec(struct db_sqlite_conn *c, const char *sql)
{
	return db_sqlite_err(sqlite3_exec(c->db, sql, NULL, NULL, NULL));
}

int db_sqlite_ping(struct db_sqlite *d, size_t ping_stmt)
{
	struct db_sqlite_conn *c;
	sqlite3_stmt *st;
	int rc = db_sqlite_acquire(d, &c);

	if (rc != 0)
		return MV_EUNAVAIL;
	st = db_sqlite_stmt(d, c, ping_stmt, &rc);
	if (st) {
		rc = sqlite3_step(st) == SQLITE_ROW ? 0 : MV_EUNAVAIL;
		sqlite3_reset(st);
	}
	db_sqlite_release(d, c);
	return rc == 0 ? 0 : MV_EUNAVAIL;
}

static int conn_open(struct db_sqlite *d, struct db_sqlite_conn *c)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(d->path, &db, flags, NULL);

	if (rc != SQLITE_OK)
		goto fail_open;
	sqlite3_extended_result_codes(db, 1);
	rc = sqlite3_busy_timeout(db, d->busy_timeout_ms > INT32_MAX ? INT32_MAX
	                                                             : (int)d->busy_timeout_ms);
	if (rc != SQLITE_OK)
		goto fail_open;
	/* NORMAL in WAL mode: a commit survives a process crash (kill -9), only
	 * an OS crash or power loss may lose the last commits (docs/adr/0003). */
	/* Switching a new file to WAL needs an exclusive lock and does not wait
	 * on the busy handler; when another process (or connection) is creating
	 * the same file at this moment, retry for up to busy_timeout. */
	for (int64_t waited = 0;; waited += 10) {
		rc = sqlite3_exec(db,
		                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
		                  " PRAGMA foreign_keys=ON;",
		                  NULL, NULL, NULL);
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
		if (waited >= d->busy_timeout_ms)
			break;
		sqlite3_sleep(10);
	}
	if (rc != SQLITE_OK)
		goto fail_open;
	memset(c->stmts, 0, sizeof(c->stmts));
	c->db = db;
	return 0;

fail_open:
	sqlite3_close_v2(db);
	return rc == SQLITE_NOMEM ? MV_ENOMEM : MV_EUNAVAIL;
}

static void conn_close(struct db_sqlite_conn *c)
{
	for (size_t i = 0; i < DB_STMT_MAX; i++) {
		sqlite3_finalize(c->stmts[i]);
		c->stmts[i] = NULL;
	}
	sqlite3_close_v2(c->db);
	c->db = NULL;
}

static int max_version(struct db_sqlite_conn *c, int *version)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
	    c->db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*version = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int record_version(struct db_sqlite_conn *c, int version)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->db, "INSERT INTO schema_migrations(version) VALUES (?1)", -1,
	                            &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 1, version);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Every missing version in one IMMEDIATE transaction: a second process that
 * opens the file at the same time waits for the lock, then sees the versions
 * as applied. */
static int migrate(struct db_sqlite_conn *c, const struct db_migration *m, size_t n, char *errbuf,
                   size_t errbuf_size)
{
	int version = 0;
	int rc = sqlite3_exec(c->db,
	                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
	                      " version INTEGER PRIMARY KEY,"
	                      " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
	                      NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = max_version(c, &version);
	if (rc != SQLITE_OK)
		goto fail_rollback;
	for (size_t i = 0; i < n; i++) {
		if (m[i].version <= version)
			continue;
		for (const char *const *sql = m[i].statements; *sql; sql++) {
			rc = sqlite3_exec(c->db, *sql, NULL, NULL, NULL);
			if (rc != SQLITE_OK)
				goto fail_rollback;
		}
		rc = record_version(c, m[i].version);
		if (rc != SQLITE_OK)
			goto fail_rollback;
	}
	rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail_rollback;
	return 0;

fail_rollback:
	set_err(errbuf, errbuf_size, "sqlite migration failed", sqlite3_errmsg(c->db));
	sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return db_sqlite_err(rc);
fail:
	set_err(errbuf, errbuf_size, "sqlite migration failed", sqlite3_errmsg(c->db));
	return db_sqlite_err(rc);
}

int db_sqlite_open(const struct db_sqlite_options *opt, struct db_sqlite **out, char *errbuf,
                   size_t errbuf_size)
{
	struct db_sqlite *d;
	size_t n = opt->max_connections;
	int rc;

	if (!opt->path || !*opt->path || n == 0 || n > DB_SQLITE_MAX_CONNECTIONS ||
	    opt->statement_count > DB_STMT_MAX || opt->busy_timeout_ms < 0) {
		set_err(errbuf, errbuf_size,
		        "sqlite: invalid options (path, pool size, statements)", NULL);
		return MV_EINVAL;
	}
	d = calloc(1, sizeof(*d) + n * sizeof(d->conns[0]));
	if (!d)
		goto fail_alloc;
	d->path = strdup(opt->path);
	if (!d->path)
		goto fail_path;
	d->busy_timeout_ms = opt->busy_timeout_ms;
	d->statements = opt->statements;
	d->statement_count = opt->statement_count;
	d->nconns = n;
	if (make_parent_dirs(d->path) != 0) {
		set_err(errbuf, errbuf_size, "sqlite: cannot create the directory of", d->path);
		rc = MV_EUNAVAIL;
		goto fail_dir;
	}
	rc = conn_open(d, &d->conns[0]);
	if (rc != 0) {
		set_err(errbuf, errbuf_size, "sqlite: cannot open", d->path);
		goto fail_dir;
	}
	rc = migrate(&d->conns[0], opt->migrations, opt->migration_count, errbuf, errbuf_size);
	if (rc != 0)
		goto fail_migrate;
	pthread_mutex_init(&d->mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	*out = d;
	return 0;

fail_migrate:
	conn_close(&d->conns[0]);
fail_dir:
	free(d->path);
	free(d);
	return rc;
fail_path:
	free(d);
fail_alloc:
	set_err(errbuf, errbuf_size, "sqlite: out of memory", NULL);
	return MV_ENOMEM;
}

void db_sqlite_close(struct db_sqlite *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nconns; i++) {
		if (d->conns[i].db)
			conn_close(&d->conns[i]);
	}
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d->path);
	free(d);
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int db_sqlite_acquire(struct db_sqlite *d, struct db_sqlite_conn **out)
{
	struct db_sqlite_conn *c = NULL;
	struct timespec deadline;
	int rc = 0;

	deadline_after(&deadline, d->busy_timeout_ms);
	pthread_mutex_lock(&d->mu);
	for (;;) {
		/* Prefer an open connection: its statements are already prepared. */
		for (size_t i = 0; i < d->nconns && !c; i++) {
			if (!d->conns[i].in_use && d->conns[i].db)
				c = &d->conns[i];
		}
		for (size_t i = 0; i < d->nconns && !c; i++) {
			if (!d->conns[i].in_use)
				c = &d->conns[i];
		}
		if (c)
			break;
		if (pthread_cond_timedwait(&d->cv, &d->mu, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&d->mu);
			return MV_EUNAVAIL;
		}
	}
	c->in_use = true;
	pthread_mutex_unlock(&d->mu);
	if (!c->db) {
		rc = conn_open(d, c);
		if (rc != 0) {
			db_sqlite_release(d, c);
			return rc;
		}
	}
	*out = c;
	return 0;
}

void db_sqlite_release(struct db_sqlite *d, struct db_sqlite_conn *c)
{
	pthread_mutex_lock(&d->mu);
	c->in_use = false;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

sqlite3_stmt *db_sqlite_stmt(struct db_sqlite *d, struct db_sqlite_conn *c, size_t index, int *err)
{
	sqlite3_stmt *st;
	int rc;

	if (index >= d->statement_count) {
		*err = MV_EINTERNAL;
		return NULL;
	}
	st = c->stmts[index];
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return st;
	}
	rc = sqlite3_prepare_v3(c->db, d->statements[index], -1, SQLITE_PREPARE_PERSISTENT, &st,
	                        NULL);
	if (rc != SQLITE_OK) {
		*err = db_sqlite_err(rc);
		return NULL;
	}
	c->stmts[index] = st;
	return st;
}
