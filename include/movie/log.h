/*
 * log.h - structured logs: one JSON object per line on a file descriptor.
 *
 *   {"time":"2026-11-29T18:49:14.123Z","level":"info","service":"metadata",
 *    "msg":"rpc done","method":"/MetadataService/GetMetadata","code":"OK","ms":0.12}
 *
 * Each line is formatted in a thread-local buffer (or a loop thread's batch)
 * and written whole (see Output below), so lines from different threads never
 * interleave. Safe to call from any thread after log_init. Field values are escaped as JSON strings.
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
 *
 * Output. Until log_writer_start, each line is written with write(2) by the
 * thread that logs it. After it, a writer thread does every write(2) and the
 * logging threads only copy lines into a bounded queue, so a slow or stuck
 * output (a pipe nobody reads) never blocks them: lines that do not fit are
 * dropped and counted (log_dropped_total), and once the queue drains the
 * writer writes a warn line "log lines dropped: output too slow" with the
 * numbers. An event-loop thread calls log_batch_begin once and log_flush at
 * the end of every loop iteration: its lines are queued together then, and
 * may fill the queue to 3/4 only, so that other threads' lines (start-up,
 * shutdown, errors) still find room when request lines flood. Each thread's
 * lines come out in the order it logged them, and whole; lines of different
 * threads in the order they were queued. See docs/internals/log.md.
 */
#ifndef MOVIE_LOG_H
#define MOVIE_LOG_H

#include <stdbool.h>
#include <stddef.h>
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

/* Start the writer thread with a queue of `queue_bytes` (at least 64 KiB) and
 * register an exit handler that drains it (at most 2 s; see log_writer_stop).
 * Call after log_init; the output fd must stay open until log_writer_stop.
 * Returns 0, MV_EINVAL (queue too small), MV_EEXIST (running), MV_ENOMEM,
 * MV_EINTERNAL (no thread). */
int log_writer_start(size_t queue_bytes);

/* Write what is queued and stop the writer, waiting at most `timeout_ms` for
 * the output to take it; afterwards lines are written inline again. Returns 0,
 * or MV_ETIMEDOUT when the output did not take the queue in time: the writer
 * is left blocked in write(2), what it holds is counted as dropped, and every
 * later line is dropped and counted (the process is about to exit). No-op
 * when no writer runs. Any thread except the writer; not concurrently with
 * log_writer_start. */
int log_writer_stop(int timeout_ms);

/* The writer writes at latest this long after a line is queued (default
 * 10 ms; sooner when 64 KiB are waiting). For tests. */
void log_writer_set_tick_ms(int ms);

/* Make the calling thread an event-loop thread: its lines are collected in a
 * thread-local batch (32 KiB, allocated here) until log_flush or until full.
 * Without a writer thread, log_flush writes the batch inline. A thread that
 * exits flushes its batch. */
void log_batch_begin(void);

/* Hand the calling thread's batch to the writer (or write it inline when no
 * writer runs). Never blocks on the output. Cheap when the batch is empty:
 * call it at the end of each loop iteration. */
void log_flush(void);

/* log_flush, then log inline (unbatched) again and free the batch. */
void log_batch_end(void);

/* Lines dropped since start (output too slow, or abandoned at exit). */
uint64_t log_dropped_total(void);

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
