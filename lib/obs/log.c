#include "movie/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
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

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void line_free(void *p)
{
	buf_release(p);
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
		return buf_append(b, num, obs_format_double(num, f->v.d));
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

void log_emit(enum log_level level, const char *msg, const struct log_field *fields)
{
	if (!log_enabled(level))
		return;
	int saved_errno = errno;
	struct buf *b = line_get();
	int rc = format_line(b, level, msg, fields);
	if (rc) {
		buf_reset(b);
		rc = format_fallback(b, level, msg, rc);
	}
	if (!rc)
		write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), b->data, b->len);
	if (b->cap > LINE_KEEP_MAX)
		buf_release(b);
	errno = saved_errno;
}
