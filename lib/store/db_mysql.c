/*
 * db_mysql.c - MariaDB connection pool with reconnect, error mapping and
 * schema migrations.
 *
 * The pool owns pool_size slots. A slot is connected lazily by the thread that
 * acquires it (outside the pool lock, so a slow connect never blocks other
 * callers) and is closed when a call on it failed with a network-class error;
 * the next acquire reconnects it. libmariadb's own auto-reconnect stays off:
 * it would silently drop session state in the middle of a transaction.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "movie/db.h"
#include "movie/err.h"

#include "movie/banned.h"

#define DB_MYSQL_POOL_MAX 64
/* How long a replica waits for another one that is migrating the schema. */
#define DB_MYSQL_MIGRATION_LOCK_S 30

struct db_mysql {
	char *host, *user, *password, *database;
	unsigned int port;
	unsigned int connect_timeout_s, rw_timeout_s;
	int64_t acquire_timeout_ms;
	const struct db_migration *migrations;
	size_t migration_count;
	char migrations_table[64]; /* <component>_schema_migrations */

	pthread_mutex_t mu;
	pthread_cond_t cv;          /* a slot was released */
	struct timespec retry_at;   /* no connect attempt before this (server down) */
	bool migrated;              /* schema checked on this server since open */
	pthread_mutex_t migrate_mu; /* one migrating thread per process */
	size_t nconns;
	struct db_mysql_conn conns[];
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_rc;

static void library_init(void)
{
	library_rc = mysql_library_init(0, NULL, NULL);
}

static void set_err(char *errbuf, size_t size, const char *msg)
{
	if (errbuf && size)
		snprintf(errbuf, size, "%s", msg);
}

static unsigned int ms_to_s_ceil(int64_t ms)
{
	int64_t s = (ms + 999) / 1000;
	return s < 1 ? 1 : (s > 3600 ? 3600 : (unsigned int)s);
}

static void mono_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static void ts_add_ms(struct timespec *ts, int64_t ms)
{
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void conn_close(struct db_mysql_conn *c)
{
	for (size_t i = 0; i < DB_STMT_MAX; i++) {
		if (c->stmts[i])
			mysql_stmt_close(c->stmts[i]);
		c->stmts[i] = NULL;
	}
	if (c->my)
		mysql_close(c->my);
	c->my = NULL;
	c->broken = false;
}

int db_mysql_fail(struct db_mysql_conn *c, unsigned int code)
{
	switch (code) {
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_COMMANDS_OUT_OF_SYNC:
	case CR_UNKNOWN_ERROR:
	case ER_CONNECTION_KILLED:
	case ER_SERVER_SHUTDOWN:
	case ER_QUERY_INTERRUPTED:
	case ER_STATEMENT_TIMEOUT:
	case 0: /* a failed call without an error code: trust nothing */
		/* The session state is unknown (maybe mid-transaction on a dead
		 * socket): drop the connection at release, reconnect on next use. */
		c->broken = true;
		return MV_EUNAVAIL;
	case CR_OUT_OF_MEMORY:
	case ER_OUTOFMEMORY:
	case ER_OUT_OF_RESOURCES: return MV_ENOMEM;
	case ER_LOCK_DEADLOCK:
	case ER_LOCK_WAIT_TIMEOUT: return MV_EAGAIN;
	case ER_DATA_TOO_LONG:
	case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
	case ER_WARN_DATA_OUT_OF_RANGE:
	case ER_BAD_NULL_ERROR: return MV_EINVAL;
	default: return MV_EUNAVAIL;
	}
}

bool db_mysql_retryable(const struct db_mysql_conn *c)
{
	return c->broken && !c->fresh;
}

int db_mysql_exec(struct db_mysql_conn *c, const char *sql)
{
	if (!c->my || c->broken)
		return MV_EUNAVAIL;
	if (mysql_real_query(c->my, sql, strlen(sql)) != 0)
		return db_mysql_fail(c, mysql_errno(c->my));
	return 0;
}

MYSQL_STMT *db_mysql_stmt(struct db_mysql_conn *c, size_t index, const char *sql, int *err)
{
	MYSQL_STMT *st;

	if (index >= DB_STMT_MAX) {
		*err = MV_EINTERNAL;
		return NULL;
	}
	if (!c->my || c->broken) {
		*err = MV_EUNAVAIL;
		return NULL;
	}
	if (c->stmts[index])
		return c->stmts[index];
	st = mysql_stmt_init(c->my);
	if (!st) {
		*err = MV_ENOMEM;
		return NULL;
	}
	if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
		unsigned int code = mysql_stmt_errno(st);
		mysql_stmt_close(st);
		*err = db_mysql_fail(c, code);
		return NULL;
	}
	c->stmts[index] = st;
	return st;
}

/* Read one integer from a constant query. */
static int query_int(struct db_mysql_conn *c, const char *sql, long long *value, bool *is_null)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	int rc = db_mysql_exec(c, sql);

	if (rc != 0)
		return rc;
	res = mysql_store_result(c->my);
	if (!res)
		return db_mysql_fail(c, mysql_errno(c->my));
	row = mysql_fetch_row(res);
	rc = MV_EUNAVAIL;
	if (row) {
		*is_null = row[0] == NULL;
		*value = 0;
		if (row[0]) {
			char *end;
			errno = 0;
			*value = strtoll(row[0], &end, 10);
			if (errno == 0 && end != row[0] && *end == '\0')
				rc = 0;
		} else {
			rc = 0;
		}
	}
	mysql_free_result(res);
	return rc;
}

static int record_version(struct db_mysql *p, struct db_mysql_conn *c, int version)
{
	MYSQL_STMT *st = mysql_stmt_init(c->my);
	char sql[128];
	MYSQL_BIND b;
	int rc = 0;

	if (!st)
		return MV_ENOMEM;
	snprintf(sql, sizeof(sql), "INSERT IGNORE INTO %s (version) VALUES (?)",
	         p->migrations_table);
	memset(&b, 0, sizeof(b));
	b.buffer_type = MYSQL_TYPE_LONG;
	b.buffer = &version;
	if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0 || mysql_stmt_bind_param(st, &b) != 0 ||
	    mysql_stmt_execute(st) != 0)
		rc = db_mysql_fail(c, mysql_stmt_errno(st));
	mysql_stmt_close(st);
	return rc;
}

/*
 * MariaDB commits DDL implicitly, so a migration cannot be one transaction.
 * Instead replicas serialise on a server-wide named lock (GET_LOCK, released
 * by the server if the holder dies), every migration statement is idempotent
 * (IF NOT EXISTS), and a version is recorded with INSERT IGNORE only after
 * all its statements ran: a replica killed half-way leaves the version
 * missing, and the next one re-runs it harmlessly.
 */
static int migrate(struct db_mysql *p, struct db_mysql_conn *c)
{
	long long got = 0, version = 0;
	bool is_null = false;
	int rc;

	char create[256], select_max[128];
	/* The table name is built from a validated constant, never from input. */
	snprintf(create, sizeof(create),
	         "CREATE TABLE IF NOT EXISTS %s ("
	         " version INT NOT NULL PRIMARY KEY,"
	         " applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
	         ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	         p->migrations_table);
	snprintf(select_max, sizeof(select_max), "SELECT COALESCE(MAX(version), 0) FROM %s",
	         p->migrations_table);
	rc = db_mysql_exec(c, create);
	if (rc != 0)
		return rc;
	rc = query_int(c, select_max, &version, &is_null);
	if (rc != 0)
		return rc;
	if (p->migration_count == 0 || version >= p->migrations[p->migration_count - 1].version)
		return 0;
	rc = query_int(c, "SELECT GET_LOCK('movie.schema_migrations', 30)", &got, &is_null);
	if (rc != 0)
		return rc;
	if (is_null || got != 1)
		return MV_EUNAVAIL;
	rc = query_int(c, select_max, &version, &is_null);
	if (rc != 0)
		goto out_unlock;
	for (size_t i = 0; i < p->migration_count; i++) {
		if (p->migrations[i].version <= version)
			continue;
		for (const char *const *sql = p->migrations[i].statements; *sql; sql++) {
			rc = db_mysql_exec(c, *sql);
			if (rc != 0)
				goto out_unlock;
		}
		rc = record_version(p, c, p->migrations[i].version);
		if (rc != 0)
			goto out_unlock;
	}
out_unlock:
	if (!c->broken)
		query_int(c, "SELECT RELEASE_LOCK('movie.schema_migrations')", &got, &is_null);
	return rc;
}

static int conn_connect(struct db_mysql *p, struct db_mysql_conn *c)
{
	MYSQL *my = mysql_init(NULL);
	bool off = false;
	unsigned int proto = MYSQL_PROTOCOL_TCP;

	if (!my)
		return MV_ENOMEM;
	mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &p->connect_timeout_s);
	mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &p->rw_timeout_s);
	mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &p->rw_timeout_s);
	mysql_options(my, MYSQL_OPT_RECONNECT, &off);
	mysql_options(my, MYSQL_OPT_PROTOCOL, &proto);
	mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* Strict mode: over-long or invalid values fail instead of being
	 * truncated. READ COMMITTED: no gap locks; the rating store serialises
	 * writers of a record on its aggregate row instead. */
	mysql_options(my, MYSQL_INIT_COMMAND,
	              "SET SESSION sql_mode='STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'");
	mysql_options(my, MYSQL_INIT_COMMAND,
	              "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
	if (!mysql_real_connect(my, p->host, p->user, p->password, p->database, p->port, NULL,
	                        CLIENT_FOUND_ROWS)) {
		mysql_close(my);
		return MV_EUNAVAIL;
	}
	c->my = my;
	return 0;
}

/* A component names a table: [a-z_]{1,32} only. */
static bool component_valid(const char *component)
{
	size_t n = component ? strlen(component) : 0;
	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((component[i] >= 'a' && component[i] <= 'z') || component[i] == '_'))
			return false;
	return true;
}

int db_mysql_open(const struct db_mysql_options *opt, struct db_mysql **out, char *errbuf,
                  size_t errbuf_size)
{
	struct db_mysql *p;
	struct db_mysql_conn *c;
	pthread_condattr_t ca;
	size_t n;

	if (!opt->host || !*opt->host || !opt->user || !opt->database || !*opt->database ||
	    opt->port < 1 || opt->port > 65535 || opt->pool_size < 1 ||
	    opt->pool_size > DB_MYSQL_POOL_MAX || opt->connect_timeout_ms < 0 ||
	    opt->query_timeout_ms < 0 || !component_valid(opt->component)) {
		set_err(errbuf, errbuf_size,
		        "mysql: invalid options (host, user, database, component, port 1..65535, "
		        "pool_size 1..64)");
		return MV_EINVAL;
	}
	pthread_once(&library_once, library_init);
	if (library_rc != 0) {
		set_err(errbuf, errbuf_size, "mysql: client library initialisation failed");
		return MV_ENOMEM;
	}
	n = (size_t)opt->pool_size;
	p = calloc(1, sizeof(*p) + n * sizeof(p->conns[0]));
	if (!p)
		goto fail_alloc;
	p->host = strdup(opt->host);
	p->user = strdup(opt->user);
	p->password = strdup(opt->password ? opt->password : "");
	p->database = strdup(opt->database);
	if (!p->host || !p->user || !p->password || !p->database)
		goto fail_strings;
	p->port = (unsigned int)opt->port;
	p->connect_timeout_s = ms_to_s_ceil(opt->connect_timeout_ms);
	p->rw_timeout_s = ms_to_s_ceil(opt->query_timeout_ms);
	p->acquire_timeout_ms = opt->query_timeout_ms;
	p->migrations = opt->migrations;
	p->migration_count = opt->migration_count;
	snprintf(p->migrations_table, sizeof(p->migrations_table), "%s_schema_migrations",
	         opt->component);
	p->nconns = n;
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->migrate_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);

	/* Warm one connection and the schema; a down server is retried later. */
	if (db_mysql_acquire(p, &c) == 0)
		db_mysql_release(p, c);
	*out = p;
	return 0;

fail_strings:
	free(p->host);
	free(p->user);
	free(p->password);
	free(p->database);
	free(p);
fail_alloc:
	set_err(errbuf, errbuf_size, "mysql: out of memory");
	return MV_ENOMEM;
}

void db_mysql_close(struct db_mysql *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nconns; i++)
		conn_close(&p->conns[i]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->migrate_mu);
	if (p->password)
		memset(p->password, 0, strlen(p->password));
	free(p->host);
	free(p->user);
	free(p->password);
	free(p->database);
	free(p);
}

static int ensure_migrated(struct db_mysql *p, struct db_mysql_conn *c)
{
	int rc = 0;
	bool done;

	pthread_mutex_lock(&p->mu);
	done = p->migrated;
	pthread_mutex_unlock(&p->mu);
	if (done)
		return 0;
	pthread_mutex_lock(&p->migrate_mu);
	pthread_mutex_lock(&p->mu);
	done = p->migrated;
	pthread_mutex_unlock(&p->mu);
	if (!done) {
		rc = migrate(p, c);
		if (rc == 0) {
			pthread_mutex_lock(&p->mu);
			p->migrated = true;
			pthread_mutex_unlock(&p->mu);
		}
	}
	pthread_mutex_unlock(&p->migrate_mu);
	return rc;
}

int db_mysql_acquire(struct db_mysql *p, struct db_mysql_conn **out)
{
	struct db_mysql_conn *c = NULL;
	struct timespec deadline, now;
	int rc;

	mono_now(&deadline);
	ts_add_ms(&deadline, p->acquire_timeout_ms);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (size_t i = 0; i < p->nconns && !c; i++) {
			if (!p->conns[i].in_use && p->conns[i].my)
				c = &p->conns[i];
		}
		for (size_t i = 0; i < p->nconns && !c; i++) {
			if (!p->conns[i].in_use)
				c = &p->conns[i];
		}
		if (c)
			break;
		if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&p->mu);
			return MV_EUNAVAIL;
		}
	}
	c->in_use = true;
	c->fresh = false;
	if (!c->my) {
		mono_now(&now);
		if (ts_before(&now, &p->retry_at)) {
			/* Fail fast while the server is known to be down. */
			c->in_use = false;
			pthread_cond_signal(&p->cv);
			pthread_mutex_unlock(&p->mu);
			return MV_EUNAVAIL;
		}
	}
	pthread_mutex_unlock(&p->mu);

	if (!c->my) {
		rc = conn_connect(p, c);
		if (rc != 0)
			goto fail_connect;
		c->fresh = true;
	}
	rc = ensure_migrated(p, c);
	if (rc != 0)
		goto fail_migrate;
	*out = c;
	return 0;

fail_migrate:
	conn_close(c);
	db_mysql_release(p, c);
	return rc == MV_ENOMEM ? rc : MV_EUNAVAIL;
fail_connect:
	pthread_mutex_lock(&p->mu);
	mono_now(&p->retry_at);
	ts_add_ms(&p->retry_at, DB_MYSQL_RETRY_MS);
	pthread_mutex_unlock(&p->mu);
	db_mysql_release(p, c);
	return rc;
}

void db_mysql_release(struct db_mysql *p, struct db_mysql_conn *c)
{
	if (c->broken)
		conn_close(c);
	pthread_mutex_lock(&p->mu);
	c->in_use = false;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

int db_mysql_ping(struct db_mysql *p)
{
	struct db_mysql_conn *c;
	bool again;
	int rc;

	for (int attempt = 0; attempt < 2; attempt++) {
		rc = db_mysql_acquire(p, &c);
		if (rc != 0)
			return MV_EUNAVAIL;
		if (mysql_ping(c->my) == 0) {
			db_mysql_release(p, c);
			return 0;
		}
		db_mysql_fail(c, mysql_errno(c->my));
		again = db_mysql_retryable(c);
		db_mysql_release(p, c);
		if (!again)
			break;
	}
	return MV_EUNAVAIL;
}
