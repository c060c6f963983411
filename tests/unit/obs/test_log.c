/*
 * test_log.c - the JSON logger, read back through a pipe and parsed with
 * jansson: every line must be one valid JSON object with the contracted keys.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/log.h"
#include "../testing.h"
#include "movie/banned.h"

/* Allocation counting: the link wraps malloc & co. (see lib/obs/CMakeLists.txt). */
void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_calloc(size_t m, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_calloc(size_t m, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

static _Thread_local long thread_allocs;

void *__wrap_malloc(size_t n)
{
	thread_allocs++;
	return __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
	thread_allocs++;
	return __real_realloc(p, n);
}

void *__wrap_calloc(size_t m, size_t n)
{
	thread_allocs++;
	return __real_calloc(m, n);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
	thread_allocs++;
	return __real_aligned_alloc(a, n);
}

/* ---- capture: the logger writes into a pipe drained by a reader thread ---- */

struct capture {
	int rfd;
	int wfd;
	pthread_t reader;
	struct buf data;
	int read_errno;
};

static void *capture_reader(void *arg)
{
	struct capture *cap = arg;
	char chunk[16384];
	for (;;) {
		ssize_t n = read(cap->rfd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			cap->read_errno = errno;
		if (n <= 0)
			break;
		if (buf_append(&cap->data, chunk, (size_t)n) != 0) {
			cap->read_errno = ENOMEM;
			break;
		}
	}
	return NULL;
}

static int capture_start(struct capture *cap, const char *service, enum log_level level)
{
	int fds[2];
	memset(cap, 0, sizeof(*cap));
	if (pipe(fds) != 0)
		return -1;
	cap->rfd = fds[0];
	cap->wfd = fds[1];
	buf_init(&cap->data, 0);
	if (pthread_create(&cap->reader, NULL, capture_reader, cap) != 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	log_init(service, level, cap->wfd);
	return 0;
}

/* Stop capturing (logs go to stderr again) and collect what was written. */
static void capture_finish(struct capture *cap)
{
	log_init("test", MV_LOG_INFO, 2);
	close(cap->wfd);
	pthread_join(cap->reader, NULL);
	close(cap->rfd);
}

/* Parse every line; returns the number of lines, or -1 (reported) when one
 * is not a JSON object. Lines are stored in `out` (up to max) when non-NULL. */
static int capture_parse(struct capture *cap, json_t **out, size_t max)
{
	int count = 0;
	const char *p = cap->data.data ? cap->data.data : "";
	const char *end = p + cap->data.len;
	if (cap->read_errno) {
		fprintf(stderr, "capture read failed: %s\n", strerror(cap->read_errno));
		return -1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl) {
			fprintf(stderr, "unterminated last line: %.80s\n", p);
			return -1;
		}
		json_error_t err;
		json_t *obj = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &err);
		if (!obj || !json_is_object(obj)) {
			fprintf(stderr, "line %d is not a JSON object (%s): %.200s\n", count + 1,
			        err.text, p);
			json_decref(obj);
			return -1;
		}
		if ((size_t)count < max && out)
			out[count] = obj;
		else
			json_decref(obj);
		count++;
		p = nl + 1;
	}
	return count;
}

static void free_lines(json_t **lines, int n)
{
	for (int i = 0; i < n; i++)
		json_decref(lines[i]);
}

static const char *str_of(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" within a few seconds of now. */
static int check_time(const char *s)
{
	int y, mo, d, h, mi, sec, ms, consumed = 0;
	if (!s || strlen(s) != 24 || s[23] != 'Z' || s[10] != 'T' || s[19] != '.')
		return 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms,
	           &consumed) != 7 ||
	    consumed != 24)
		return 0;
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = mo - 1,
	                .tm_mday = d,
	                .tm_hour = h,
	                .tm_min = mi,
	                .tm_sec = sec};
	time_t t = timegm(&tm);
	time_t now = time(NULL);
	return t <= now && t >= now - 5 && ms >= 0 && ms <= 999;
}

/* The first keys, in order: time, level, service, msg. */
static int check_key_order(json_t *obj)
{
	static const char *const want[] = {"time", "level", "service", "msg"};
	void *it = json_object_iter(obj);
	for (size_t i = 0; i < 4; i++) {
		if (!it || strcmp(json_object_iter_key(it), want[i]) != 0)
			return 0;
		it = json_object_iter_next(obj, it);
	}
	return 1;
}

static void test_fields_and_escaping(void)
{
	struct capture cap;
	json_t *lines[4] = {0};
	const char *msg = "q\" b\\ nl\n tab\t ctl\x01 utf8 \xc3\xa9 bad \xff end";
	CHECK_INT_EQ(capture_start(&cap, "meta\"data", MV_LOG_DEBUG), 0);
	log_info(msg, MV_LOG_S("method", "/MetadataService/GetMetadata"),
	         MV_LOG_I("max", LLONG_MAX), MV_LOG_I("min", LLONG_MIN), MV_LOG_D("ms", 0.1),
	         MV_LOG_D("big", 1e300), MV_LOG_D("third", 1.0 / 3.0), MV_LOG_D("whole", 42.0),
	         MV_LOG_D("nan", NAN), MV_LOG_D("inf", INFINITY), MV_LOG_D("ninf", -INFINITY),
	         MV_LOG_B("yes", true), MV_LOG_B("no", false), MV_LOG_S("k\"ey\n", "v\\al"));
	log_debug("dbg");
	log_warn("w", MV_LOG_I("n", 1));
	log_error("e", MV_LOG_S("nul", NULL));
	capture_finish(&cap);
	int n = capture_parse(&cap, lines, 4);
	CHECK_INT_EQ(n, 4);
	if (n == 4) {
		json_t *l = lines[0];
		CHECK(check_time(str_of(l, "time")));
		CHECK(check_key_order(l));
		CHECK_STR_EQ(str_of(l, "level"), "info");
		CHECK_STR_EQ(str_of(l, "service"), "meta\"data");
		CHECK_STR_EQ(str_of(l, "msg"),
		             "q\" b\\ nl\n tab\t ctl\x01 utf8 \xc3\xa9 bad \xef\xbf\xbd end");
		CHECK_STR_EQ(str_of(l, "method"), "/MetadataService/GetMetadata");
		CHECK(json_is_integer(json_object_get(l, "max")));
		CHECK(json_integer_value(json_object_get(l, "max")) == LLONG_MAX);
		CHECK(json_integer_value(json_object_get(l, "min")) == LLONG_MIN);
		CHECK(json_real_value(json_object_get(l, "ms")) == 0.1);
		CHECK(json_real_value(json_object_get(l, "big")) == 1e300);
		CHECK(json_real_value(json_object_get(l, "third")) == 1.0 / 3.0);
		CHECK(json_number_value(json_object_get(l, "whole")) == 42.0);
		CHECK(json_is_null(json_object_get(l, "nan")));
		CHECK(json_is_null(json_object_get(l, "inf")));
		CHECK(json_is_null(json_object_get(l, "ninf")));
		CHECK(json_is_true(json_object_get(l, "yes")));
		CHECK(json_is_false(json_object_get(l, "no")));
		CHECK_STR_EQ(str_of(l, "k\"ey\n"), "v\\al");
		CHECK_INT_EQ(json_object_size(l), 17);
		CHECK_STR_EQ(str_of(lines[1], "level"), "debug");
		CHECK_STR_EQ(str_of(lines[1], "msg"), "dbg");
		CHECK_INT_EQ(json_object_size(lines[1]), 4);
		CHECK_STR_EQ(str_of(lines[2], "level"), "warn");
		CHECK_STR_EQ(str_of(lines[3], "level"), "error");
		CHECK(json_is_null(json_object_get(lines[3], "nul")));
	}
	free_lines(lines, n > 4 ? 4 : n);
	buf_release(&cap.data);
}

static void test_null_strings(void)
{
	struct capture cap;
	json_t *lines[3] = {0};
	const struct log_field stop_at_null_key[] = {
	    MV_LOG_I("a", 1), {.key = NULL}, MV_LOG_I("b", 2), {0}};
	const struct log_field stop_at_end[] = {
	    MV_LOG_I("a", 1), {.key = "x", .type = MV_LOG_FIELD_END}, MV_LOG_I("b", 2), {0}};
	CHECK_INT_EQ(capture_start(&cap, NULL, MV_LOG_INFO), 0);
	log_emit(MV_LOG_INFO, NULL, NULL);
	log_emit(MV_LOG_INFO, "k", stop_at_null_key);
	log_emit(MV_LOG_INFO, "k", stop_at_end);
	capture_finish(&cap);
	int n = capture_parse(&cap, lines, 3);
	CHECK_INT_EQ(n, 3);
	if (n == 3) {
		CHECK(json_is_null(json_object_get(lines[0], "service")));
		CHECK(json_is_null(json_object_get(lines[0], "msg")));
		CHECK_INT_EQ(json_object_size(lines[0]), 4);
		for (int i = 1; i < 3; i++) {
			CHECK_INT_EQ(json_object_size(lines[i]), 5);
			CHECK(json_integer_value(json_object_get(lines[i], "a")) == 1);
			CHECK(json_object_get(lines[i], "b") == NULL);
		}
	}
	free_lines(lines, n > 3 ? 3 : n);
	buf_release(&cap.data);
}

static void test_levels(void)
{
	struct capture cap;
	json_t *lines[3] = {0};
	enum log_level lv = MV_LOG_DEBUG;
	CHECK_INT_EQ(log_level_parse("warn", &lv), 0);
	CHECK_INT_EQ(lv, MV_LOG_WARN);
	CHECK_INT_EQ(log_level_parse("debug", &lv), 0);
	CHECK_INT_EQ(lv, MV_LOG_DEBUG);
	CHECK_INT_EQ(log_level_parse("error", &lv), 0);
	CHECK_INT_EQ(lv, MV_LOG_ERROR);
	CHECK_INT_EQ(log_level_parse("info", &lv), 0);
	CHECK_INT_EQ(lv, MV_LOG_INFO);
	CHECK_INT_EQ(log_level_parse("verbose", &lv), MV_EINVAL);
	CHECK_INT_EQ(log_level_parse(NULL, &lv), MV_EINVAL);
	CHECK_INT_EQ(lv, MV_LOG_INFO);

	CHECK_INT_EQ(capture_start(&cap, "svc", MV_LOG_WARN), 0);
	CHECK(!log_enabled(MV_LOG_DEBUG));
	CHECK(!log_enabled(MV_LOG_INFO));
	CHECK(log_enabled(MV_LOG_WARN));
	CHECK(log_enabled(MV_LOG_ERROR));
	log_debug("no");
	log_info("no");
	log_warn("yes", MV_LOG_I("i", 1));
	log_error("yes", MV_LOG_I("i", 2));
	capture_finish(&cap);
	int n = capture_parse(&cap, lines, 3);
	CHECK_INT_EQ(n, 2);
	if (n == 2) {
		CHECK_STR_EQ(str_of(lines[0], "level"), "warn");
		CHECK_STR_EQ(str_of(lines[1], "level"), "error");
		CHECK_STR_EQ(str_of(lines[1], "service"), "svc");
	}
	free_lines(lines, n > 3 ? 3 : n);
	buf_release(&cap.data);
}

/* A line over MV_LOG_LINE_MAX becomes a short line that still says what happened. */
static void test_overlong_line(void)
{
	struct capture cap;
	json_t *lines[2] = {0};
	size_t big = MV_LOG_LINE_MAX + 10;
	char *msg = malloc(big + 1);
	CHECK(msg != NULL);
	if (!msg)
		return;
	memset(msg, 'm', big);
	msg[big] = '\0';
	CHECK_INT_EQ(capture_start(&cap, "svc", MV_LOG_INFO), 0);
	log_info(msg, MV_LOG_I("n", 1));
	log_info("after", MV_LOG_I("n", 2));
	capture_finish(&cap);
	int n = capture_parse(&cap, lines, 2);
	CHECK_INT_EQ(n, 2);
	if (n == 2) {
		const char *m = str_of(lines[0], "msg");
		CHECK(m && strlen(m) == MV_LOG_MSG_FALLBACK_MAX);
		CHECK_STR_EQ(str_of(lines[0], "log_error"), "too big");
		CHECK(json_object_get(lines[0], "n") == NULL);
		CHECK_STR_EQ(str_of(lines[1], "msg"), "after");
		CHECK(json_integer_value(json_object_get(lines[1], "n")) == 2);
	}
	free_lines(lines, n > 2 ? 2 : n);
	free(msg);
	buf_release(&cap.data);
}

#define WRITERS          4
#define LINES_PER_WRITER 3000
#define LONG_VALUE       9000 /* > PIPE_BUF: atomic only thanks to the logger's lock */

struct writer_arg {
	int id;
	char *long_value;
};

static void *writer_main(void *p)
{
	struct writer_arg *w = p;
	char short_value[64];
	for (int i = 0; i < LINES_PER_WRITER; i++) {
		const char *v = short_value;
		snprintf(short_value, sizeof(short_value), "w%d-%d", w->id, i);
		if (i % 100 == 7)
			v = w->long_value;
		log_info("concurrent", MV_LOG_I("writer", w->id), MV_LOG_I("seq", i),
		         MV_LOG_S("v", v));
	}
	return NULL;
}

static void test_concurrent_writers(void)
{
	struct capture cap;
	pthread_t th[WRITERS];
	struct writer_arg args[WRITERS];
	int started = 0;
	CHECK_INT_EQ(capture_start(&cap, "svc", MV_LOG_INFO), 0);
	for (int i = 0; i < WRITERS; i++) {
		args[i].id = i;
		args[i].long_value = malloc(LONG_VALUE + 1);
		if (!args[i].long_value)
			break;
		memset(args[i].long_value, 'a' + i, LONG_VALUE);
		args[i].long_value[LONG_VALUE] = '\0';
		if (pthread_create(&th[i], NULL, writer_main, &args[i]) != 0) {
			free(args[i].long_value);
			break;
		}
		started++;
	}
	CHECK_INT_EQ(started, WRITERS);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	capture_finish(&cap);

	/* Every line parses, each (writer, seq) appears once and in order. */
	int next_seq[WRITERS] = {0};
	int bad = 0, lines = 0;
	const char *p = cap.data.data ? cap.data.data : "";
	const char *end = p + cap.data.len;
	while (p < end && bad < 5) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *obj = json_loadb(p, len, JSON_REJECT_DUPLICATES, NULL);
		json_int_t w = json_integer_value(json_object_get(obj, "writer"));
		json_int_t s = json_integer_value(json_object_get(obj, "seq"));
		const char *v = str_of(obj, "v");
		size_t want_len = s % 100 == 7 ? LONG_VALUE : 0;
		if (!obj || !nl || w < 0 || w >= WRITERS || s != next_seq[w] || !v ||
		    (want_len && strlen(v) != want_len)) {
			fprintf(stderr, "bad line %d: %.120s\n", lines + 1, p);
			bad++;
		} else {
			next_seq[w]++;
		}
		json_decref(obj);
		lines++;
		p = nl ? nl + 1 : end;
	}
	CHECK_INT_EQ(bad, 0);
	CHECK_INT_EQ(lines, WRITERS * LINES_PER_WRITER);
	for (int i = 0; i < WRITERS; i++)
		CHECK_INT_EQ(next_seq[i], LINES_PER_WRITER);
	for (int i = 0; i < started; i++)
		free(args[i].long_value);
	buf_release(&cap.data);
}

/* After the first line of a thread, lines of similar size do not allocate. */
static void test_no_malloc_after_warmup(void)
{
	struct capture cap;
	CHECK_INT_EQ(capture_start(&cap, "svc", MV_LOG_INFO), 0);
	log_info("warm-up", MV_LOG_S("method", "/MetadataService/GetMetadata"),
	         MV_LOG_D("ms", 0.25));
	long before = thread_allocs;
	for (int i = 0; i < 1000; i++)
		log_info("rpc done", MV_LOG_S("method", "/MetadataService/GetMetadata"),
		         MV_LOG_S("code", "OK"), MV_LOG_D("ms", 0.125 * i), MV_LOG_I("i", i),
		         MV_LOG_B("ok", true));
	long during = thread_allocs - before;
	capture_finish(&cap);
	CHECK_INT_EQ(during, 0);
	CHECK_INT_EQ(capture_parse(&cap, NULL, 0), 1001);
	buf_release(&cap.data);
}

static void test_errno_preserved(void)
{
	struct capture cap;
	CHECK_INT_EQ(capture_start(&cap, "svc", MV_LOG_INFO), 0);
	errno = ERANGE;
	log_info("keeps errno");
	CHECK_INT_EQ(errno, ERANGE);
	capture_finish(&cap);
	CHECK_INT_EQ(capture_parse(&cap, NULL, 0), 1);
	buf_release(&cap.data);
}

int main(void)
{
	RUN(test_fields_and_escaping);
	RUN(test_null_strings);
	RUN(test_levels);
	RUN(test_overlong_line);
	RUN(test_concurrent_writers);
	RUN(test_no_malloc_after_warmup);
	RUN(test_errno_preserved);
	return TEST_SUMMARY();
}
