/*
 * log.h - structured logs: one JSON object per line on a file descriptor.
 *
 *   {"time":"2026-11-29T18:49:14.123Z","level":"info","service":"metadata",
 *    "msg":"rpc done","method":"/MetadataService/GetMetadata","code":"OK","ms":0.12}
 *
 * Each line is formatted in a thread-local buffer and written with one
 * write(2), so lines from different threads never interleave. Safe to call
 * from any thread after log_init. Field values are escaped as JSON strings.
 *
 * Line layout: "time" (RFC 3339, UTC, milliseconds), "level", "service",
 * "msg", then the fields in the order given. Doubles that are NaN or infinite
 * are written as null; NULL strings (msg, service, values) as null.
 * A line is capped at MV_LOG_LINE_MAX bytes: a longer one is replaced by a line
 * holding the first MV_LOG_MSG_FALLBACK_MAX bytes of msg and
 * "log_error":"too big" (no fields). After a thread's first line, logging does
 * not allocate unless a line outgrows every earlier line of that thread.
 * log_emit preserves errno. Before log_init, lines go to fd 2 at level info
 * with service null.
 */
#ifndef MOVIE_LOG_H
#define MOVIE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
	MV_LOG_DEBUG = 0,
	MV_LOG_INFO = 1,
	MV_LOG_WARN = 2,
	MV_LOG_ERROR = 3
};

enum log_field_type {
	MV_LOG_FIELD_END = 0,
	MV_LOG_FIELD_STR,
	MV_LOG_FIELD_INT,
	MV_LOG_FIELD_DOUBLE,
	MV_LOG_FIELD_BOOL
};

struct log_field {
	const char *key;
	enum log_field_type type;
	union {
		const char *s;
		long long i;
		double d;
		bool b;
	} v;
};

#define MV_LOG_S(k, val) ((struct log_field){.key = (k), .type = MV_LOG_FIELD_STR, .v.s = (val)})
#define MV_LOG_I(k, val) \
	((struct log_field){.key = (k), .type = MV_LOG_FIELD_INT, .v.i = (long long)(val)})
#define MV_LOG_D(k, val) \
	((struct log_field){.key = (k), .type = MV_LOG_FIELD_DOUBLE, .v.d = (double)(val)})
#define MV_LOG_B(k, val) ((struct log_field){.key = (k), .type = MV_LOG_FIELD_BOOL, .v.b = (val)})

/* Upper bound of one line, newline included. */
#define MV_LOG_LINE_MAX ((size_t)64 * 1024)
/* Bytes of msg kept in the replacement line of an over-long line. */
#define MV_LOG_MSG_FALLBACK_MAX ((size_t)1024)
/* Bytes of the service name kept by log_init. */
#define MV_LOG_SERVICE_MAX ((size_t)64)

/* Configure the logger: service name put on every line (copied, at most
 * MV_LOG_SERVICE_MAX bytes; NULL writes null), minimum level, and the output fd
 * (1 = stdout; not closed by the logger). Call before threads start; calling
 * it again is allowed only while no other thread logs. */
void log_init(const char *service, enum log_level min_level, int fd);

/* Parse "debug"/"info"/"warn"/"error". Returns 0 or MV_EINVAL (also for NULL). */
int log_level_parse(const char *name, enum log_level *out);

/* True when `level` would be written (skip building costly fields otherwise). */
bool log_enabled(enum log_level level);

/* Write one line. `fields` is an array terminated by an entry with key NULL
 * (or type MV_LOG_FIELD_END); NULL for none. A NULL string value is written as null.
 * Write errors other than EINTR drop the rest of the line (nobody to report to). */
void log_emit(enum log_level level, const char *msg, const struct log_field *fields);

/* Convenience: log_emit with a compound-literal field list, e.g.
 *   log_info("listening", MV_LOG_S("addr", a), MV_LOG_I("port", p));
 *   log_info("ready");
 * __VA_OPT__ (GCC >= 8, clang >= 12, C23) lets the field list be empty.
 */
#define MV_LOG_FIELDS(...)  ((const struct log_field[]){__VA_ARGS__ __VA_OPT__(, ){0}})
#define log_debug(msg, ...) log_emit(MV_LOG_DEBUG, (msg), MV_LOG_FIELDS(__VA_ARGS__))
#define log_info(msg, ...)  log_emit(MV_LOG_INFO, (msg), MV_LOG_FIELDS(__VA_ARGS__))
#define log_warn(msg, ...)  log_emit(MV_LOG_WARN, (msg), MV_LOG_FIELDS(__VA_ARGS__))
#define log_error(msg, ...) log_emit(MV_LOG_ERROR, (msg), MV_LOG_FIELDS(__VA_ARGS__))

#endif
