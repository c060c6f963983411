#include "movie/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "num.h"
#include "movie/banned.h"

/* A line buffer that grew past this for one huge line is given back. */
#define LINE_KEEP_MAX ((size_t)16 * 1024)
#define LINE_INITIAL  ((size_t)1024)
/* Escaping can grow each byte to 6 ("\u00XX"), plus quotes and NUL. */
#define SERVICE_JSON_MAX (MV_LOG_SERVICE_MAX * 6 + 3)

static atomic_int log_min_level = MV_LOG_INFO;
static atomic_int log_fd = 2;
/* The service as a JSON value (quoted string or null), escaped once by log_init. */
static char service_json[SERVICE_JSON_MAX] = "null";
static size_t service_json_len = 4;

/* Kernel pipes keep writes atomic only up to PIPE_BUF and only when no
 * partial write happens; the lock keeps longer lines whole as well. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_once_t line_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t line_key;
static bool line_key_ok;
static _Thread_local struct buf line;
static _Thread_local bool line_ready;

/* A loop thread's batch holds at most this many bytes of lines. */
#define LOG_BATCH_BYTES ((size_t)32 * 1024)
/* The writer writes as soon as this much is queued, else every tick. */
#define LOG_WRITER_CHUNK   ((size_t)64 * 1024)
#define LOG_WRITER_TICK_MS 10
/* A batch with less room than this is flushed before a line goes in. */
#define LOG_FAST_MIN_ROOM ((size_t)1024)
/* How long the exit handler waits for the writer to drain the queue. */
#define LOG_EXIT_FLUSH_MS 2000

void log_batch_end(void);

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void line_free(void *p)
{
	buf_release(p);
	/* Lines a loop thread batched must not die with it. */
	log_batch_end();
}

static void line_key_create(void)
{
	line_key_ok = pthread_key_create(&line_key, line_free) == 0;
}

/* The thread's line buffer, empty. Registered with a key so that the storage
 * is freed when the thread exits. */
static struct buf *line_get(void)
{
	if (!line_ready) {
		pthread_once(&line_key_once, line_key_create);
		buf_init(&line, MV_LOG_LINE_MAX);
		if (line_key_ok)
			pthread_setspecific(line_key, &line);
		line_ready = true;
	}
	buf_reset(&line);
	if (!line.data)
		buf_reserve(&line, LINE_INITIAL);
	return &line;
}

void log_init(const char *service, enum log_level min_level, int fd)
{
	struct buf tmp;
	buf_init(&tmp, SERVICE_JSON_MAX);
	if (service) {
		size_t len = strnlen(service, MV_LOG_SERVICE_MAX);
		if (buf_append_json_string(&tmp, service, len) == 0 && tmp.len < SERVICE_JSON_MAX) {
			memcpy(service_json, tmp.data, tmp.len + 1);
			service_json_len = tmp.len;
		}
	} else {
		memcpy(service_json, "null", 5);
		service_json_len = 4;
	}
	buf_release(&tmp);
	atomic_store_explicit(&log_min_level, (int)min_level, memory_order_relaxed);
	atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
}

int log_level_parse(const char *name, enum log_level *out)
{
	if (!name || !out)
		return MV_EINVAL;
	for (int i = MV_LOG_DEBUG; i <= MV_LOG_ERROR; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return MV_EINVAL;
}

bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

static int append_json_cstr(struct buf *b, const char *s, size_t max)
{
	if (!s)
		return buf_append(b, "null", 4);
	return buf_append_json_string(b, s, strnlen(s, max));
}

/* Per thread: the formatted "YYYY-MM-DDTHH:MM:SS" of the last second seen, so
 * that gmtime_r runs once a second rather than once a line. */
static _Thread_local time_t time_cached_sec = -1;
static _Thread_local char time_cached[20];

static void put_digits(char *dst, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		dst[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* `"time":"...Z"` value text, RFC 3339 UTC with milliseconds (24 bytes). */
static void format_time(char out[24])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != time_cached_sec) {
		struct tm tm;
		if (!gmtime_r(&ts.tv_sec, &tm))
			memset(&tm, 0, sizeof(tm));
		put_digits(time_cached, (unsigned)(tm.tm_year + 1900) % 10000, 4);
		time_cached[4] = '-';
		put_digits(time_cached + 5, (unsigned)tm.tm_mon + 1, 2);
		time_cached[7] = '-';
		put_digits(time_cached + 8, (unsigned)tm.tm_mday, 2);
		time_cached[10] = 'T';
		put_digits(time_cached + 11, (unsigned)tm.tm_hour, 2);
		time_cached[13] = ':';
		put_digits(time_cached + 14, (unsigned)tm.tm_min, 2);
		time_cached[16] = ':';
		put_digits(time_cached + 17, (unsigned)tm.tm_sec, 2);
		time_cached_sec = ts.tv_sec;
	}
	memcpy(out, time_cached, 19);
	out[19] = '.';
	put_digits(out + 20, (unsigned)(ts.tv_nsec / 1000000L), 3);
	out[23] = 'Z';
}

static int append_head(struct buf *b, enum log_level level, const char *msg, size_t msg_max)
{
	char time_text[24];
	int lvl = (int)level;
	if (lvl < MV_LOG_DEBUG || lvl > MV_LOG_ERROR)
		lvl = MV_LOG_ERROR;
	format_time(time_text);
	int rc = buf_append(b, "{\"time\":\"", 9);
	if (!rc)
		rc = buf_append(b, time_text, sizeof(time_text));
	if (!rc)
		rc = buf_append(b, "\",\"level\":\"", 11);
	if (!rc)
		rc = buf_append_str(b, level_names[lvl]);
	if (!rc)
		rc = buf_append(b, "\",\"service\":", 12);
	if (!rc)
		rc = buf_append(b, service_json, service_json_len);
	if (!rc)
		rc = buf_append(b, ",\"msg\":", 7);
	if (!rc)
		rc = append_json_cstr(b, msg, msg_max);
	return rc;
}

static int append_int(struct buf *b, long long v)
{
	char text[24];
	char *p = text + sizeof(text);
	/* Unsigned magnitude: -LLONG_MIN does not fit a long long. */
	unsigned long long mag = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag);
	if (v < 0)
		*--p = '-';
	return buf_append(b, p, (size_t)(text + sizeof(text) - p));
}

/*
 * Durations and ratios (0.034 ms) as the shortest text that reads back
 * exactly, without snprintf + strtod: when v is the double nearest to k / 1e6
 * for an integer k and 1e-4 <= |v| < 1e6, the trimmed decimal k / 1e6 is that
 * text (any other decimal within half an ulp of v needs more than 6 fraction
 * digits), and it is what obs_format_double prints too. Returns 0 when v is
 * not such a value (the caller falls back to obs_format_double).
 */
static size_t format_micro_decimal(char *dst, double v)
{
	double a = fabs(v);
	if (!(a >= 1e-4 && a < 1e6))
		return 0;
	long long k = llround(a * 1e6);
	if ((double)k / 1e6 != a)
		return 0;
	char tmp[24];
	char *p = tmp + sizeof(tmp);
	long long frac = k % 1000000, whole = k / 1000000;
	int digits = 6;
	while (frac && frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	if (frac) {
		for (int i = 0; i < digits; i++) {
			*--p = (char)('0' + frac % 10);
			frac /= 10;
		}
		*--p = '.';
	}
	do {
		*--p = (char)('0' + whole % 10);
		whole /= 10;
	} while (whole);
	if (v < 0)
		*--p = '-';
	size_t n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(dst, p, n);
	return n;
}

static int append_field(struct buf *b, const struct log_field *f)
{
	char num[OBS_DOUBLE_MAX];
	int rc = buf_append(b, ",", 1);
	if (!rc)
		rc = append_json_cstr(b, f->key, MV_LOG_LINE_MAX);
	if (!rc)
		rc = buf_append(b, ":", 1);
	if (rc)
		return rc;
	switch (f->type) {
	case MV_LOG_FIELD_STR: return append_json_cstr(b, f->v.s, MV_LOG_LINE_MAX);
	case MV_LOG_FIELD_INT: return append_int(b, f->v.i);
	case MV_LOG_FIELD_DOUBLE:
		/* JSON has no NaN or Infinity. */
		if (!isfinite(f->v.d))
			return buf_append(b, "null", 4);
		{
			size_t n = format_micro_decimal(num, f->v.d);
			return buf_append(b, num, n ? n : obs_format_double(num, f->v.d));
		}
	case MV_LOG_FIELD_BOOL:
		return f->v.b ? buf_append(b, "true", 4) : buf_append(b, "false", 5);
	default: return buf_append(b, "null", 4);
	}
}

static int format_line(struct buf *b, enum log_level level, const char *msg,
                       const struct log_field *fields)
{
	int rc = append_head(b, level, msg, MV_LOG_LINE_MAX);
	for (const struct log_field *f = fields; !rc && f && f->key && f->type != MV_LOG_FIELD_END;
	     f++)
		rc = append_field(b, f);
	if (!rc)
		rc = buf_append(b, "}\n", 2);
	return rc;
}

/*
 * The fast path, for the common line (request logs): written straight into a
 * fixed-size destination (the loop's batch) with one bounds check per piece,
 * no struct buf and no copy. It gives up (returns 0) on anything unusual: a
 * string that needs escaping or is not ASCII, a double outside
 * format_micro_decimal, a line longer than the room; format_line then
 * builds the line the general way, with the same result.
 */
struct out {
	char *p, *end;
};

static bool put(struct out *o, const char *s, size_t n)
{
	if ((size_t)(o->end - o->p) < n)
		return false;
	memcpy(o->p, s, n);
	o->p += n;
	return true;
}

static bool put_plain_string(struct out *o, const char *s)
{
	if (!s)
		return put(o, "null", 4);
	char *p = o->p, *end = o->end;
	if (p == end)
		return false;
	*p++ = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || p == end)
			return false;
		*p++ = (char)c;
	}
	if (p == end)
		return false;
	*p++ = '"';
	o->p = p;
	return true;
}

static bool put_int(struct out *o, long long v)
{
	char text[24];
	char *p = text + sizeof(text);
	unsigned long long mag = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag);
	if (v < 0)
		*--p = '-';
	return put(o, p, (size_t)(text + sizeof(text) - p));
}

static size_t format_line_fast(char *dst, size_t room, enum log_level level, const char *msg,
                               const struct log_field *fields)
{
	struct out o = {dst, dst + room};
	char time_text[24];
	int lvl = (int)level;
	if (lvl < MV_LOG_DEBUG || lvl > MV_LOG_ERROR)
		lvl = MV_LOG_ERROR;
	format_time(time_text);
	bool ok = put(&o, "{\"time\":\"", 9) && put(&o, time_text, sizeof(time_text)) &&
	          put(&o, "\",\"level\":\"", 11) &&
	          put(&o, level_names[lvl], strlen(level_names[lvl])) &&
	          put(&o, "\",\"service\":", 12) && put(&o, service_json, service_json_len) &&
	          put(&o, ",\"msg\":", 7) && put_plain_string(&o, msg);
	for (const struct log_field *f = fields; ok && f && f->key && f->type != MV_LOG_FIELD_END;
	     f++) {
		ok = put(&o, ",", 1) && put_plain_string(&o, f->key) && put(&o, ":", 1);
		if (!ok)
			break;
		switch (f->type) {
		case MV_LOG_FIELD_STR: ok = put_plain_string(&o, f->v.s); break;
		case MV_LOG_FIELD_INT: ok = put_int(&o, f->v.i); break;
		case MV_LOG_FIELD_DOUBLE: {
			char num[OBS_DOUBLE_MAX];
			size_t n = isfinite(f->v.d) ? format_micro_decimal(num, f->v.d) : 0;
			ok = n && put(&o, num, n);
			break;
		}
		case MV_LOG_FIELD_BOOL:
			ok = f->v.b ? put(&o, "true", 4) : put(&o, "false", 5);
			break;
		default: ok = put(&o, "null", 4); break;
		}
	}
	ok = ok && put(&o, "}\n", 2);
	return ok ? (size_t)(o.p - dst) : 0;
}

/* The line that replaces one that could not be built: short and field-free,
 * so that the event is not lost silently. */
static int format_fallback(struct buf *b, enum log_level level, const char *msg, int why)
{
	int rc = append_head(b, level, msg, MV_LOG_MSG_FALLBACK_MAX);
	if (!rc)
		rc = buf_printf(b, ",\"log_error\":\"%s\"}\n", mv_strerror(why));
	return rc;
}

static void write_all(int fd, const char *p, size_t n)
{
	pthread_mutex_lock(&write_lock);
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		n -= (size_t)w;
	}
	pthread_mutex_unlock(&write_lock);
}

/*
 * ---- asynchronous output: one writer thread behind a bounded byte queue ----
 *
 * The queue is a ring of whole lines: producers copy complete lines (a loop
 * thread's batch, or one line of another thread) in under q_lock, or drop them
 * all and count them when they do not fit; the writer writes the oldest bytes
 * outside the lock. Only the writer moves q_tail, only producers move q_head,
 * so the bytes between them stay put while they are written.
 */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_wake; /* the writer waits here */
static pthread_cond_t q_done; /* log_writer_stop waits here */
static char *q_data;
static size_t q_cap;
static uint64_t q_head, q_tail; /* bytes ever queued / ever written */
static bool q_running;          /* lines go to the queue (else: written inline) */
static bool q_stopping;         /* log_writer_stop: drain, then exit */
static bool q_exited;           /* the writer has returned */
static bool q_abandoned;        /* stop timed out: the writer is stuck in write */
static bool q_sleeping;         /* the writer waits without a deadline */
static uint64_t q_unreported;   /* drops not yet said in a line */
static pthread_t q_thread;
static atomic_ullong dropped_total;
static _Atomic uint64_t q_written; /* bytes the writer has written: q_tail..q_head */
static atomic_int q_wake_ms = LOG_WRITER_TICK_MS;

/* A loop thread's lines of the current iteration (log_batch_begin). */
struct batch {
	char *data;
	size_t len, lines;
	bool on;
};
static _Thread_local struct batch batch;

static size_t q_used(void)
{
	return (size_t)(q_head - q_tail);
}

/* Under q_lock. Lines that would fill the queue past `limit` are dropped. */
static void q_put_locked(const char *p, size_t n, size_t lines, size_t limit)
{
	if (q_abandoned || q_used() + n > limit) {
		atomic_fetch_add_explicit(&dropped_total, lines, memory_order_relaxed);
		q_unreported += lines;
		return;
	}
	size_t at = (size_t)(q_head % q_cap);
	size_t first = n < q_cap - at ? n : q_cap - at;
	memcpy(q_data + at, p, first);
	memcpy(q_data, p + first, n - first);
	bool was_empty = q_head == q_tail;
	q_head += n;
	/* The writer ticks every q_wake_ms while lines keep coming; wake it early
	 * only from its idle sleep, when a good chunk is waiting, or for another
	 * thread's line (start-up, shutdown, errors: rare, wanted soon). */
	if ((q_sleeping && was_empty) || q_used() >= LOG_WRITER_CHUNK || limit == q_cap)
		pthread_cond_signal(&q_wake);
}

/* Queue lines or, while no writer runs, write them now. `batched` lines (request logs of loop threads) may fill
 * the queue to 3/4 only: the rest is kept for other threads' lines. */
static void out_lines(const char *p, size_t n, size_t lines, bool batched)
{
	pthread_mutex_lock(&q_lock);
	if (q_running) {
		q_put_locked(p, n, lines, batched ? q_cap / 4 * 3 : q_cap);
		pthread_mutex_unlock(&q_lock);
		return;
	}
	pthread_mutex_unlock(&q_lock);
	write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), p, n);
}

void log_flush(void)
{
	if (batch.len) {
		out_lines(batch.data, batch.len, batch.lines, true);
		batch.len = 0;
		batch.lines = 0;
	}
}

void log_batch_begin(void)
{
	if (batch.on)
		return;
	line_get(); /* registers the thread-exit destructor, which flushes */
	if (!batch.data)
		batch.data = malloc(LOG_BATCH_BYTES);
	batch.on = batch.data != NULL;
}

void log_batch_end(void)
{
	log_flush();
	batch.on = false;
	free(batch.data);
	batch.data = NULL;
}

uint64_t log_dropped_total(void)
{
	return atomic_load_explicit(&dropped_total, memory_order_relaxed);
}

/* The writer's own line saying that lines were dropped (written by the writer
 * itself, after the queue drained). */
static void write_dropped_line(int fd, uint64_t n)
{
	struct buf *b = line_get();
	int rc =
	    format_line(b, MV_LOG_WARN, "log lines dropped: output too slow",
	                MV_LOG_FIELDS(MV_LOG_I("dropped", (long long)n),
	                              MV_LOG_I("dropped_total", (long long)log_dropped_total())));
	if (!rc)
		write_all(fd, b->data, b->len);
}

static void add_ms(struct timespec *ts, int ms)
{
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* write_all for the writer, which says how far it got (q_written), so that
 * an abandoned stop counts the lines that did not come out whole: those after
 * the last write(2) that returned (a blocked write may have put part of its
 * chunk out already; those lines count as dropped, the last one came out cut). */
static void write_queued(int fd, const char *p, size_t n)
{
	pthread_mutex_lock(&write_lock);
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			w = (ssize_t)n; /* nowhere to report it: the rest is lost */
		p += w;
		n -= (size_t)w;
		atomic_fetch_add_explicit(&q_written, (uint64_t)w, memory_order_release);
	}
	pthread_mutex_unlock(&write_lock);
}

/* Under q_lock: wait one tick (or until signalled). */
static void wait_tick_locked(void)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	add_ms(&until, atomic_load_explicit(&q_wake_ms, memory_order_relaxed));
	pthread_cond_timedwait(&q_wake, &q_lock, &until);
}

static void *writer_main(void *arg)
{
	(void)arg;
	int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
	bool busy = false;
	pthread_mutex_lock(&q_lock);
	for (;;) {
		if (q_head == q_tail && q_unreported) {
			uint64_t n = q_unreported;
			q_unreported = 0;
			pthread_mutex_unlock(&q_lock);
			write_dropped_line(fd, n);
			pthread_mutex_lock(&q_lock);
			continue;
		}
		if (q_head == q_tail) {
			if (q_stopping)
				break;
			if (busy) {
				/* Just wrote: lines arriving within a tick gather (nobody
				 * signals), so a steady flow costs one write per tick, not
				 * one wake-up per loop iteration. */
				wait_tick_locked();
				busy = false;
				continue;
			}
			/* Idle: the first line wakes the writer and is written at once. */
			q_sleeping = true;
			pthread_cond_wait(&q_wake, &q_lock);
			q_sleeping = false;
			continue;
		}
		if (busy && q_used() < LOG_WRITER_CHUNK && !q_stopping) {
			/* Lines came while writing: let more gather for a tick. */
			wait_tick_locked();
		}
		busy = true;
		size_t at = (size_t)(q_tail % q_cap);
		size_t n = q_used() < q_cap - at ? q_used() : q_cap - at;
		pthread_mutex_unlock(&q_lock);
		write_queued(fd, q_data + at, n);
		pthread_mutex_lock(&q_lock);
		q_tail += n;
	}
	q_running = false;
	q_exited = true;
	pthread_cond_broadcast(&q_done);
	pthread_mutex_unlock(&q_lock);
	return NULL;
}

static void writer_stop_at_exit(void)
{
	log_flush();
	log_writer_stop(LOG_EXIT_FLUSH_MS);
}

int log_writer_start(size_t queue_bytes)
{
	static bool atexit_done;
	if (queue_bytes < LOG_BATCH_BYTES * 2)
		return MV_EINVAL;
	pthread_mutex_lock(&q_lock);
	if (q_running || (q_data && !q_exited)) {
		pthread_mutex_unlock(&q_lock);
		return MV_EEXIST;
	}
	if (q_data && q_exited)
		pthread_join(q_thread, NULL);
	free(q_data);
	q_data = malloc(queue_bytes);
	if (!q_data) {
		pthread_mutex_unlock(&q_lock);
		return MV_ENOMEM;
	}
	q_cap = queue_bytes;
	q_head = q_tail = 0;
	atomic_store(&q_written, 0);
	q_stopping = q_exited = q_abandoned = q_sleeping = false;
	q_unreported = 0;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q_wake, &ca);
	pthread_cond_init(&q_done, &ca);
	pthread_condattr_destroy(&ca);
	/* The writer takes no signals: they are the loops' business. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&q_thread, NULL, writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		free(q_data);
		q_data = NULL;
		pthread_mutex_unlock(&q_lock);
		return MV_EINTERNAL;
	}
	q_running = true;
	pthread_mutex_unlock(&q_lock);
	if (!atexit_done) {
		atexit_done = true;
		atexit(writer_stop_at_exit);
	}
	return 0;
}

static size_t count_lines(uint64_t from, uint64_t to)
{
	size_t lines = 0;
	for (uint64_t i = from; i < to; i++)
		lines += q_data[i % q_cap] == '\n';
	return lines;
}

int log_writer_stop(int timeout_ms)
{
	pthread_mutex_lock(&q_lock);
	if (!q_data || q_abandoned) {
		pthread_mutex_unlock(&q_lock);
		return q_abandoned ? MV_ETIMEDOUT : 0;
	}
	q_stopping = true;
	pthread_cond_signal(&q_wake);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	add_ms(&until, timeout_ms);
	int rc = 0;
	while (!q_exited && rc == 0)
		rc = pthread_cond_timedwait(&q_done, &q_lock, &until);
	if (!q_exited) {
		/* The writer is blocked in write(2) on an output nobody reads:
		 * what it has not written is lost, and so is every later line. */
		q_abandoned = true;
		size_t lost = count_lines(atomic_load(&q_written), q_head);
		atomic_fetch_add_explicit(&dropped_total, lost, memory_order_relaxed);
		pthread_mutex_unlock(&q_lock);
		return MV_ETIMEDOUT;
	}
	pthread_mutex_unlock(&q_lock);
	pthread_join(q_thread, NULL);
	pthread_mutex_lock(&q_lock);
	free(q_data);
	q_data = NULL;
	q_exited = false;
	pthread_mutex_unlock(&q_lock);
	return 0;
}

void log_writer_set_tick_ms(int ms)
{
	atomic_store_explicit(&q_wake_ms, ms > 0 ? ms : 1, memory_order_relaxed);
}

void log_emit(enum log_level level, const char *msg, const struct log_field *fields)
{
	if (!log_enabled(level))
		return;
	int saved_errno = errno;
	if (batch.on) {
		if (LOG_BATCH_BYTES - batch.len < LOG_FAST_MIN_ROOM)
			log_flush();
		size_t n = format_line_fast(batch.data + batch.len, LOG_BATCH_BYTES - batch.len,
		                            level, msg, fields);
		if (n) {
			batch.len += n;
			batch.lines++;
			errno = saved_errno;
			return;
		}
	}
	struct buf *b = line_get();
	int rc = format_line(b, level, msg, fields);
	if (rc) {
		buf_reset(b);
		rc = format_fallback(b, level, msg, rc);
	}
	if (!rc && batch.on && b->len <= LOG_BATCH_BYTES) {
		if (batch.len + b->len > LOG_BATCH_BYTES)
			log_flush();
		memcpy(batch.data + batch.len, b->data, b->len);
		batch.len += b->len;
		batch.lines++;
	} else if (!rc) {
		/* Ordered after this thread's earlier lines. */
		log_flush();
		out_lines(b->data, b->len, 1, false);
	}
	if (b->cap > LINE_KEEP_MAX)
		buf_release(b);
	errno = saved_errno;
}
