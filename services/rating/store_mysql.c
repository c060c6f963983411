/*
 * store_mysql.c - ratings in MariaDB/MySQL (production driver).
 *
 * A batch costs a handful of round trips whatever its size, which is what
 * ingestion throughput needs. In one transaction, for the batch plan:
 *   1. lock every touched record's aggregate row, creating it as (0, 0) if
 *      missing (multi-row INSERT .. ON DUPLICATE KEY UPDATE, in sorted order);
 *      every writer of a record's ratings holds this lock first, so the
 *      reads below cannot go stale and concurrent batches serialise per
 *      record instead of deadlocking;
 *   2. read the current value of every touched rating (one indexed lookup
 *      per row, ORed into one statement);
 *   3. upsert the final ratings, delete the removed ones;
 *   4. add the deltas to the aggregates, delete aggregates left at count 0.
 * Multi-row statements are prepared once per connection for a few fixed row
 * counts (SIZES); a shorter tail is padded by repeating its last row, which
 * every statement here tolerates (a repeated upsert writes the same value,
 * a repeated delta row adds 0). A deadlock or lock timeout retries the whole
 * transaction (RETRIES); so does a broken pooled connection, once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "movie/buf.h"
#include "movie/db.h"
#include "movie/db_module.h"
#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

#define RETRIES 8
#define NSIZES  5
static const size_t SIZES[NSIZES] = {1, 4, 16, 64, 256};
#define CHUNK_MAX 256
#define COLS_MAX  4

static const char *const migration_1[] = {
    "CREATE TABLE IF NOT EXISTS ratings ("
    " record_type VARBINARY(256) NOT NULL,"
    " record_id VARBINARY(256) NOT NULL,"
    " user_id VARBINARY(256) NOT NULL,"
    " value INT NOT NULL,"
    " PRIMARY KEY (record_type, record_id, user_id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS rating_aggregates ("
    " record_type VARBINARY(256) NOT NULL,"
    " record_id VARBINARY(256) NOT NULL,"
    " sum BIGINT NOT NULL,"
    " count BIGINT NOT NULL,"
    " PRIMARY KEY (record_type, record_id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    NULL,
};

static const struct db_migration migrations[] = {
    {1, migration_1},
};

/* Multi-row statement kinds; the statement index is kind * NSIZES + size class.
 * Rows are matched with ORs of equalities, not a row-constructor IN list:
 * MariaDB 10.11 plans a one-element (a, b) IN ((?, ?)) in a DELETE as a full
 * scan, which locks every row and deadlocks concurrent batches. */
enum kind {
	LOCK_AGG,      /* (type, id) */
	SELECT_OLD,    /* (type, id, user) */
	UPSERT_RATING, /* (type, id, user, value) */
	DELETE_RATING, /* (type, id, user) */
	ADD_AGG,       /* (type, id, dsum, dcount) */
	DROP_AGG,      /* (type, id) */
	KIND_COUNT
};

enum {
	STMT_GET_AGGREGATE = KIND_COUNT * NSIZES,
	STMT_TOTAL
};

struct kind_sql {
	const char *head; /* text before the rows */
	const char *row;  /* one row's text */
	const char *sep;  /* between rows */
	const char *tail; /* text after the rows */
	int cols;
};

static const struct kind_sql KINDS[KIND_COUNT] = {
    [LOCK_AGG] = {"INSERT INTO rating_aggregates (record_type, record_id, sum, count) VALUES ",
                  "(?, ?, 0, 0)", ", ", " ON DUPLICATE KEY UPDATE sum = sum", 2},
    [SELECT_OLD] = {"SELECT record_type, record_id, user_id, value FROM ratings WHERE ",
                    "(record_type = ? AND record_id = ? AND user_id = ?)", " OR ", "", 3},
    [UPSERT_RATING] = {"INSERT INTO ratings (record_type, record_id, user_id, value) VALUES ",
                       "(?, ?, ?, ?)", ", ", " ON DUPLICATE KEY UPDATE value = VALUES(value)", 4},
    [DELETE_RATING] = {"DELETE FROM ratings WHERE ",
                       "(record_type = ? AND record_id = ? AND user_id = ?)", " OR ", "", 3},
    [ADD_AGG] = {"INSERT INTO rating_aggregates (record_type, record_id, sum, count) VALUES ",
                 "(?, ?, ?, ?)", ", ",
                 " ON DUPLICATE KEY UPDATE sum = sum + VALUES(sum), count = count + VALUES(count)",
                 4},
    [DROP_AGG] = {"DELETE FROM rating_aggregates WHERE count <= 0 AND (",
                  "(record_type = ? AND record_id = ?)", " OR ", ")", 2},
};

static const char sql_get_aggregate[] =
    "SELECT sum, count FROM rating_aggregates WHERE record_type = ? AND record_id = ?";

struct mysql_store {
	struct db_mysql *pool;
	/* SQL of every multi-row statement, built once at open. */
	char *sql[KIND_COUNT * NSIZES];
};

/* Parameters of one chunk: up to CHUNK_MAX rows of COLS_MAX columns. */
struct chunk {
	MYSQL_BIND binds[CHUNK_MAX * COLS_MAX];
	unsigned long lens[CHUNK_MAX * COLS_MAX];
	long long ints[CHUNK_MAX * COLS_MAX];
	size_t rows;
};

static void *mysql_store_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct db_mysql_options opt = {
	    .host = cfg->mysql_host,
	    .port = cfg->mysql_port,
	    .user = cfg->mysql_user,
	    .password = cfg->mysql_password,
	    .database = cfg->mysql_database,
	    .component = "rating",
	    .pool_size = cfg->mysql_pool_size,
	    .connect_timeout_ms = cfg->mysql_connect_timeout_ms,
	    .query_timeout_ms = cfg->mysql_query_timeout_ms,
	    .migrations = migrations,
	    .migration_count = sizeof(migrations) / sizeof(migrations[0]),
	};
	struct mysql_store *ms = calloc(1, sizeof(*ms));

	if (!ms)
		goto fail_alloc;
	for (int k = 0; k < KIND_COUNT; k++) {
		for (int s = 0; s < NSIZES; s++) {
			struct buf b;
			buf_init(&b, 0);
			int rc = buf_append_str(&b, KINDS[k].head);
			for (size_t r = 0; r < SIZES[s] && rc == 0; r++) {
				if (r)
					rc = buf_append_str(&b, KINDS[k].sep);
				if (rc == 0)
					rc = buf_append_str(&b, KINDS[k].row);
			}
			if (rc == 0)
				rc = buf_append_str(&b, KINDS[k].tail);
			if (rc != 0) {
				buf_release(&b);
				goto fail_sql;
			}
			ms->sql[k * NSIZES + s] = b.data; /* ownership moves */
		}
	}
	if (db_mysql_open(&opt, &ms->pool, errbuf, errbuf_size) != 0)
		goto fail_pool;
	return ms;

fail_sql:
	if (errbuf && errbuf_size)
		snprintf(errbuf, errbuf_size, "mysql store: out of memory");
fail_pool:
	for (int i = 0; i < KIND_COUNT * NSIZES; i++)
		free(ms->sql[i]);
	free(ms);
	return NULL;
fail_alloc:
	if (errbuf && errbuf_size)
		snprintf(errbuf, errbuf_size, "mysql store: out of memory");
	return NULL;
}

static void mysql_store_close(void *impl)
{
	struct mysql_store *ms = impl;

	db_mysql_close(ms->pool);
	for (int i = 0; i < KIND_COUNT * NSIZES; i++)
		free(ms->sql[i]);
	free(ms);
}

static void bind_str(struct chunk *ch, size_t i, const char *s)
{
	MYSQL_BIND *b = &ch->binds[i];

	memset(b, 0, sizeof(*b));
	ch->lens[i] = (unsigned long)strlen(s);
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = (void *)(uintptr_t)s; /* parameters are only read */
	b->buffer_length = ch->lens[i];
	b->length = &ch->lens[i];
}

static void bind_int(struct chunk *ch, size_t i, long long v)
{
	MYSQL_BIND *b = &ch->binds[i];

	memset(b, 0, sizeof(*b));
	ch->ints[i] = v;
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = &ch->ints[i];
}

/* Fill row `r` of the chunk for kind k from item `item` of the plan. */
static void bind_row(struct chunk *ch, enum kind k, size_t r, const struct rating_plan *plan,
                     size_t item, bool pad)
{
	size_t i = r * (size_t)KINDS[k].cols;
	const struct rating_plan_key *key = &plan->keys[item];
	const struct rating_plan_record *rec = &plan->records[item];

	switch (k) {
	case LOCK_AGG:
	case DROP_AGG:
		bind_str(ch, i, rec->record_type);
		bind_str(ch, i + 1, rec->record_id);
		break;
	case ADD_AGG:
		bind_str(ch, i, rec->record_type);
		bind_str(ch, i + 1, rec->record_id);
		bind_int(ch, i + 2, pad ? 0 : rec->dsum);
		bind_int(ch, i + 3, pad ? 0 : rec->dcount);
		break;
	case SELECT_OLD:
	case DELETE_RATING:
	case UPSERT_RATING:
		bind_str(ch, i, key->record_type);
		bind_str(ch, i + 1, key->record_id);
		bind_str(ch, i + 2, key->user_id);
		if (k == UPSERT_RATING)
			bind_int(ch, i + 3, key->value);
		break;
	default: break;
	}
}

/* Read the rows of SELECT_OLD into the plan's had_old/old. */
static int read_old(struct db_mysql_conn *c, MYSQL_STMT *st, struct rating_plan *plan)
{
	char cols[3][RATING_ID_MAX + 1];
	unsigned long lens[3] = {0, 0, 0};
	int value = 0, f, rc = 0;
	MYSQL_BIND res[4];

	memset(res, 0, sizeof(res));
	for (int i = 0; i < 3; i++) {
		res[i].buffer_type = MYSQL_TYPE_STRING;
		res[i].buffer = cols[i];
		res[i].buffer_length = sizeof(cols[i]);
		res[i].length = &lens[i];
	}
	res[3].buffer_type = MYSQL_TYPE_LONG;
	res[3].buffer = &value;
	if (mysql_stmt_bind_result(st, res) != 0 || mysql_stmt_store_result(st) != 0)
		return db_mysql_fail(c, mysql_stmt_errno(st));
	while ((f = mysql_stmt_fetch(st)) == 0) {
		long k =
		    rating_plan_find(plan, cols[0], lens[0], cols[1], lens[1], cols[2], lens[2]);
		if (k >= 0) {
			plan->keys[k].had_old = true;
			plan->keys[k].old = value;
		}
	}
	if (f != MYSQL_NO_DATA)
		rc = f == MYSQL_DATA_TRUNCATED ? MV_EINTERNAL
		                               : db_mysql_fail(c, mysql_stmt_errno(st));
	mysql_stmt_free_result(st);
	return rc;
}

/* Run kind k over the plan items whose indexes are in items[0..n). */
static int run_kind(struct mysql_store *ms, struct db_mysql_conn *c, struct chunk *ch, enum kind k,
                    struct rating_plan *plan, const size_t *items, size_t n)
{
	size_t done = 0;

	while (done < n) {
		size_t left = n - done, s = 0, rows;
		MYSQL_STMT *st;
		int rc = 0;

		while (s < NSIZES - 1 && SIZES[s] < left)
			s++;
		rows = SIZES[s];
		st = db_mysql_stmt(c, (size_t)k * NSIZES + s, ms->sql[k * NSIZES + s], &rc);
		if (!st)
			return rc;
		for (size_t r = 0; r < rows; r++) {
			bool pad = r >= left;
			bind_row(ch, k, r, plan, items[done + (pad ? left - 1 : r)], pad);
		}
		if (mysql_stmt_bind_param(st, ch->binds) != 0 || mysql_stmt_execute(st) != 0)
			return db_mysql_fail(c, mysql_stmt_errno(st));
		if (k == SELECT_OLD) {
			rc = read_old(c, st, plan);
			if (rc != 0)
				return rc;
		}
		done += rows < left ? rows : left;
	}
	return 0;
}

struct work {
	size_t *all_records, *dirty_records, *maybe_empty;
	size_t *all_keys, *upserts, *deletes;
	size_t n_all_records, n_dirty, n_maybe_empty, n_upserts, n_deletes;
};

static int apply_once(struct mysql_store *ms, struct db_mysql_conn *c, struct chunk *ch,
                      struct rating_plan *plan, struct work *w)
{
	int rc;

	rating_plan_reset_old(plan);
	rc = db_mysql_exec(c, "START TRANSACTION");
	if (rc != 0)
		return rc;
	rc = run_kind(ms, c, ch, LOCK_AGG, plan, w->all_records, plan->nrecords);
	if (rc == 0)
		rc = run_kind(ms, c, ch, SELECT_OLD, plan, w->all_keys, plan->nkeys);
	if (rc != 0)
		goto fail_rollback;

	rating_plan_deltas(plan);
	w->n_upserts = w->n_deletes = w->n_dirty = w->n_maybe_empty = 0;
	for (size_t k = 0; k < plan->nkeys; k++) {
		const struct rating_plan_key *key = &plan->keys[k];
		if (key->present && !(key->had_old && key->old == key->value))
			w->upserts[w->n_upserts++] = k;
		else if (!key->present && key->had_old)
			w->deletes[w->n_deletes++] = k;
	}
	for (size_t r = 0; r < plan->nrecords; r++) {
		const struct rating_plan_record *rec = &plan->records[r];
		if (rec->dsum != 0 || rec->dcount != 0)
			w->dirty_records[w->n_dirty++] = r;
		/* Step 1 may have created a (0, 0) row; it goes unless a rating came. */
		if (rec->dcount <= 0)
			w->maybe_empty[w->n_maybe_empty++] = r;
	}
	rc = run_kind(ms, c, ch, UPSERT_RATING, plan, w->upserts, w->n_upserts);
	if (rc == 0)
		rc = run_kind(ms, c, ch, DELETE_RATING, plan, w->deletes, w->n_deletes);
	if (rc == 0)
		rc = run_kind(ms, c, ch, ADD_AGG, plan, w->dirty_records, w->n_dirty);
	if (rc == 0)
		rc = run_kind(ms, c, ch, DROP_AGG, plan, w->maybe_empty, w->n_maybe_empty);
	if (rc != 0)
		goto fail_rollback;
	if (mysql_commit(c->my) != 0) {
		rc = db_mysql_fail(c, mysql_errno(c->my));
		goto fail_rollback;
	}
	return 0;

fail_rollback:
	if (!c->broken && mysql_rollback(c->my) != 0)
		db_mysql_fail(c, mysql_errno(c->my));
	return rc;
}

/* Sleep 1..2^attempt ms, jittered so two deadlocked batches do not collide
 * again in lockstep. */
static void backoff(int attempt)
{
	struct timespec now, ts;
	long max_us = 1000L << (attempt < 6 ? attempt : 6);

	clock_gettime(CLOCK_MONOTONIC, &now);
	ts.tv_sec = 0;
	ts.tv_nsec = (500L + (long)((unsigned long)now.tv_nsec % (unsigned long)max_us)) * 1000L;
	nanosleep(&ts, NULL);
}

static int mysql_apply(void *impl, struct rating_plan *plan)
{
	struct mysql_store *ms = impl;
	struct chunk *ch = malloc(sizeof(*ch));
	size_t n = plan->nkeys > plan->nrecords ? plan->nkeys : plan->nrecords;
	size_t *mem = malloc(6 * (n ? n : 1) * sizeof(size_t));
	struct work w;
	int rc = MV_ENOMEM;
	bool stale_retried = false;

	if (!ch || !mem)
		goto out_free;
	w.all_records = mem;
	w.dirty_records = mem + n;
	w.maybe_empty = mem + 2 * n;
	w.all_keys = mem + 3 * n;
	w.upserts = mem + 4 * n;
	w.deletes = mem + 5 * n;
	for (size_t i = 0; i < plan->nrecords; i++)
		w.all_records[i] = i;
	for (size_t i = 0; i < plan->nkeys; i++)
		w.all_keys[i] = i;

	for (int attempt = 0; attempt < RETRIES; attempt++) {
		struct db_mysql_conn *c;
		bool stale;

		rc = db_mysql_acquire(ms->pool, &c);
		if (rc != 0)
			break;
		rc = apply_once(ms, c, ch, plan, &w);
		stale = rc == MV_EUNAVAIL && db_mysql_retryable(c);
		db_mysql_release(ms->pool, c);
		/* Retrying is safe: the plan's effect depends only on its final
		 * states, even if a lost COMMIT did go through. */
		if (rc == MV_EAGAIN) {
			backoff(attempt);
			continue;
		}
		if (stale && !stale_retried) {
			stale_retried = true;
			continue;
		}
		break;
	}
	if (rc == MV_EAGAIN)
		rc = MV_EUNAVAIL;
out_free:
	free(mem);
	free(ch);
	return rc;
}

static int aggregate_once(struct db_mysql_conn *c, const char *record_id, const char *record_type,
                          int64_t *sum, uint64_t *count)
{
	MYSQL_BIND params[2], res[2];
	unsigned long lens[2];
	long long s = 0, n = 0;
	MYSQL_STMT *st;
	int rc = 0, f;

	st = db_mysql_stmt(c, STMT_GET_AGGREGATE, sql_get_aggregate, &rc);
	if (!st)
		return rc;
	memset(params, 0, sizeof(params));
	lens[0] = (unsigned long)strlen(record_type);
	lens[1] = (unsigned long)strlen(record_id);
	params[0].buffer_type = params[1].buffer_type = MYSQL_TYPE_STRING;
	params[0].buffer = (void *)(uintptr_t)record_type;
	params[1].buffer = (void *)(uintptr_t)record_id;
	params[0].buffer_length = lens[0];
	params[1].buffer_length = lens[1];
	params[0].length = &lens[0];
	params[1].length = &lens[1];
	memset(res, 0, sizeof(res));
	res[0].buffer_type = res[1].buffer_type = MYSQL_TYPE_LONGLONG;
	res[0].buffer = &s;
	res[1].buffer = &n;
	if (mysql_stmt_bind_param(st, params) != 0 || mysql_stmt_execute(st) != 0 ||
	    mysql_stmt_bind_result(st, res) != 0 || mysql_stmt_store_result(st) != 0)
		return db_mysql_fail(c, mysql_stmt_errno(st));
	f = mysql_stmt_fetch(st);
	if (f == 0) {
		*sum = s;
		*count = n > 0 ? (uint64_t)n : 0;
		rc = n > 0 ? 0 : MV_ENOTFOUND;
	} else {
		rc = f == MYSQL_NO_DATA ? MV_ENOTFOUND : db_mysql_fail(c, mysql_stmt_errno(st));
	}
	mysql_stmt_free_result(st);
	return rc;
}

static int mysql_aggregate(void *impl, const char *record_id, const char *record_type, int64_t *sum,
                           uint64_t *count)
{
	struct mysql_store *ms = impl;
	struct db_mysql_conn *c;
	bool again;
	int rc = MV_EUNAVAIL;

	for (int attempt = 0; attempt < 2; attempt++) {
		rc = db_mysql_acquire(ms->pool, &c);
		if (rc != 0)
			return rc;
		rc = aggregate_once(c, record_id, record_type, sum, count);
		again = rc == MV_EUNAVAIL && db_mysql_retryable(c);
		db_mysql_release(ms->pool, c);
		if (!again)
			break;
	}
	return rc;
}

static int mysql_store_ping(void *impl)
{
	struct mysql_store *ms = impl;
	return db_mysql_ping(ms->pool);
}

const struct rating_store_ops rating_store_mysql_ops = {
    .name = "mysql",
    .blocking = true,
    .open = mysql_store_open,
    .close = mysql_store_close,
    .apply = mysql_apply,
    .aggregate = mysql_aggregate,
    .ping = mysql_store_ping,
};

/* The module's one exported symbol (movie/db_module.h). */
DB_MODULE_EXPORT const struct db_module movie_db_module = {
    .abi_version = DB_MODULE_ABI_VERSION,
    .service = "rating",
    .ops_size = sizeof(rating_store_mysql_ops),
    .ops = &rating_store_mysql_ops,
};
