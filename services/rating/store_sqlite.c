/*
 * store_sqlite.c - ratings in an SQLite file (the default driver).
 *
 * A batch is one BEGIN IMMEDIATE transaction: it takes the write lock up
 * front, so two writers never deadlock upgrading a read lock, and the values
 * it reads to compute aggregate deltas cannot change under it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/db.h"
#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

#define SQLITE_CONNECTIONS 8

static const char *const migration_1[] = {
    "CREATE TABLE IF NOT EXISTS ratings ("
    " record_type TEXT NOT NULL,"
    " record_id TEXT NOT NULL,"
    " user_id TEXT NOT NULL,"
    " value INTEGER NOT NULL,"
    " PRIMARY KEY (record_type, record_id, user_id)"
    ") WITHOUT ROWID",
    /* sum and count of the ratings of a record; no row = no ratings. */
    "CREATE TABLE IF NOT EXISTS rating_aggregates ("
    " record_type TEXT NOT NULL,"
    " record_id TEXT NOT NULL,"
    " sum INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " PRIMARY KEY (record_type, record_id)"
    ") WITHOUT ROWID",
    NULL,
};

static const struct db_migration migrations[] = {
    {1, migration_1},
};

enum {
	STMT_GET_RATING,
	STMT_PUT_RATING,
	STMT_DELETE_RATING,
	STMT_ADD_AGGREGATE,
	STMT_DROP_EMPTY_AGGREGATE,
	STMT_GET_AGGREGATE,
	STMT_PING,
	STMT_COUNT
};

static const char *const statements[STMT_COUNT] = {
    [STMT_GET_RATING] = "SELECT value FROM ratings"
                        " WHERE record_type = ?1 AND record_id = ?2 AND user_id = ?3",
    [STMT_PUT_RATING] = "INSERT INTO ratings (record_type, record_id, user_id, value)"
                        " VALUES (?1, ?2, ?3, ?4)"
                        " ON CONFLICT (record_type, record_id, user_id)"
                        " DO UPDATE SET value = excluded.value",
    [STMT_DELETE_RATING] = "DELETE FROM ratings"
                           " WHERE record_type = ?1 AND record_id = ?2 AND user_id = ?3",
    [STMT_ADD_AGGREGATE] =
        "INSERT INTO rating_aggregates (record_type, record_id, sum, count)"
        " VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (record_type, record_id)"
        " DO UPDATE SET sum = sum + excluded.sum, count = count + excluded.count",
    [STMT_DROP_EMPTY_AGGREGATE] = "DELETE FROM rating_aggregates"
                                  " WHERE record_type = ?1 AND record_id = ?2 AND count <= 0",
    [STMT_GET_AGGREGATE] = "SELECT sum, count FROM rating_aggregates"
                           " WHERE record_type = ?1 AND record_id = ?2",
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

/* Bind ?1..?3 (or ?1..?2 when user is NULL). */
static int bind_key(sqlite3_stmt *st, const char *type, const char *id, const char *user)
{
	int rc = sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && user)
		rc = sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
	return db_sqlite_err(rc);
}

/* Run a bound statement that returns no rows. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_sqlite_err(rc == SQLITE_ROW ? SQLITE_ERROR : rc);
}

static int apply_key(struct db_sqlite *d, struct db_sqlite_conn *c, struct rating_plan_key *key)
{
	sqlite3_stmt *st;
	int rc, step;

	st = db_sqlite_stmt(d, c, STMT_GET_RATING, &rc);
	if (!st)
		return rc;
	rc = bind_key(st, key->record_type, key->record_id, key->user_id);
	if (rc != 0)
		return rc;
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		key->had_old = true;
		key->old = sqlite3_column_int(st, 0);
	}
	sqlite3_reset(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return db_sqlite_err(step);

	if (key->present) {
		if (key->had_old && key->old == key->value)
			return 0;
		st = db_sqlite_stmt(d, c, STMT_PUT_RATING, &rc);
		if (!st)
			return rc;
		rc = bind_key(st, key->record_type, key->record_id, key->user_id);
		if (rc == 0)
			rc = db_sqlite_err(sqlite3_bind_int(st, 4, key->value));
		return rc ? rc : step_done(st);
	}
	if (!key->had_old)
		return 0;
	st = db_sqlite_stmt(d, c, STMT_DELETE_RATING, &rc);
	if (!st)
		return rc;
	rc = bind_key(st, key->record_type, key->record_id, key->user_id);
	return rc ? rc : step_done(st);
}

static int apply_record(struct db_sqlite *d, struct db_sqlite_conn *c,
                        const struct rating_plan_record *rec)
{
	sqlite3_stmt *st;
	int rc;

	if (rec->dsum == 0 && rec->dcount == 0)
		return 0;
	st = db_sqlite_stmt(d, c, STMT_ADD_AGGREGATE, &rc);
	if (!st)
		return rc;
	rc = bind_key(st, rec->record_type, rec->record_id, NULL);
	if (rc == 0)
		rc = db_sqlite_err(sqlite3_bind_int64(st, 3, rec->dsum));
	if (rc == 0)
		rc = db_sqlite_err(sqlite3_bind_int64(st, 4, rec->dcount));
	if (rc == 0)
		rc = step_done(st);
	if (rc != 0 || rec->dcount >= 0)
		return rc;
	st = db_sqlite_stmt(d, c, STMT_DROP_EMPTY_AGGREGATE, &rc);
	if (!st)
		return rc;
	rc = bind_key(st, rec->record_type, rec->record_id, NULL);
	return rc ? rc : step_done(st);
}

static int sqlite_apply(void *impl, struct rating_plan *plan)
{
	struct db_sqlite *d = impl;
	struct db_sqlite_conn *c;
	int rc = db_sqlite_acquire(d, &c);

	if (rc != 0)
		return rc;
	rc = db_sqlite_exec(c, "BEGIN IMMEDIATE");
	if (rc != 0)
		goto out_release;
	for (size_t k = 0; k < plan->nkeys && rc == 0; k++)
		rc = apply_key(d, c, &plan->keys[k]);
	if (rc != 0)
		goto fail_rollback;
	rating_plan_deltas(plan);
	for (size_t r = 0; r < plan->nrecords && rc == 0; r++)
		rc = apply_record(d, c, &plan->records[r]);
	if (rc != 0)
		goto fail_rollback;
	rc = db_sqlite_exec(c, "COMMIT");
	if (rc != 0)
		goto fail_rollback;
out_release:
	db_sqlite_release(d, c);
	return rc;

fail_rollback:
	db_sqlite_exec(c, "ROLLBACK");
	db_sqlite_release(d, c);
	return rc;
}

static int sqlite_aggregate(void *impl, const char *record_id, const char *record_type,
                            int64_t *sum, uint64_t *count)
{
	struct db_sqlite *d = impl;
	struct db_sqlite_conn *c;
	sqlite3_stmt *st;
	int rc = db_sqlite_acquire(d, &c), step;

	if (rc != 0)
		return rc;
	st = db_sqlite_stmt(d, c, STMT_GET_AGGREGATE, &rc);
	if (!st)
		goto out_release;
	rc = bind_key(st, record_type, record_id, NULL);
	if (rc != 0)
		goto out_reset;
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		int64_t n = sqlite3_column_int64(st, 1);
		*sum = sqlite3_column_int64(st, 0);
		*count = n > 0 ? (uint64_t)n : 0;
		rc = n > 0 ? 0 : MV_ENOTFOUND;
	} else {
		rc = step == SQLITE_DONE ? MV_ENOTFOUND : db_sqlite_err(step);
	}
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

const struct rating_store_ops rating_store_sqlite_ops = {
    .name = "sqlite",
    .blocking = true,
    .open = sqlite_store_open,
    .close = sqlite_close,
    .apply = sqlite_apply,
    .aggregate = sqlite_aggregate,
    .ping = sqlite_ping,
};
