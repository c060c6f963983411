/*
 * test_log_syslog.c - movie/log.h and <syslog.h> in one translation unit
 * (issue 14 item 5): log.h's names are MV_LOG_*, so <syslog.h>'s LOG_*
 * macros keep their meaning. Before the rename this file did not compile.
 */
#include <syslog.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "movie/err.h"
#include "movie/log.h"
#include "../testing.h"

/* log.h must leave syslog's namespace alone, not only its two colliding names. */
#if defined(LOG_S) || defined(LOG_I) || defined(LOG_D) || defined(LOG_B) || defined(LOG_FIELDS) || \
    defined(LOG_LINE_MAX) || defined(LOG_SERVICE_MAX) || defined(LOG_MSG_FALLBACK_MAX)
#error "movie/log.h still defines LOG_* names"
#endif

static void test_syslog_names_are_syslogs(void)
{
	/* RFC 5424 severities, as <syslog.h> defines them. */
	CHECK_INT_EQ(LOG_DEBUG, 7);
	CHECK_INT_EQ(LOG_INFO, 6);
	CHECK_INT_EQ(LOG_WARNING, 4);
	CHECK_INT_EQ(LOG_ERR, 3);
}

static void test_log_levels_under_their_own_names(void)
{
	enum log_level level = MV_LOG_ERROR;
	CHECK_INT_EQ(log_level_parse("debug", &level), 0);
	CHECK_INT_EQ(level, MV_LOG_DEBUG);
	CHECK_INT_EQ(log_level_parse("info", &level), 0);
	CHECK_INT_EQ(level, MV_LOG_INFO);
	CHECK_INT_EQ(log_level_parse("warn", &level), 0);
	CHECK_INT_EQ(level, MV_LOG_WARN);
	CHECK_INT_EQ(log_level_parse("error", &level), 0);
	CHECK_INT_EQ(level, MV_LOG_ERROR);
	CHECK_INT_EQ(log_level_parse("verbose", &level), MV_EINVAL);
}

static void test_emit_with_fields(void)
{
	int fds[2];
	CHECK_INT_EQ(pipe(fds), 0);
	log_init("syslog-test", MV_LOG_INFO, fds[1]);
	log_debug("hidden", MV_LOG_S("k", "v"));
	log_info("shown", MV_LOG_S("k", "v"), MV_LOG_I("n", 42), MV_LOG_B("ok", true));
	close(fds[1]);
	char out[4096];
	ssize_t n = read(fds[0], out, sizeof(out) - 1);
	close(fds[0]);
	CHECK(n > 0);
	out[n > 0 ? n : 0] = '\0';
	CHECK(strstr(out, "hidden") == NULL);
	CHECK(strstr(out, "\"shown\"") != NULL);
	CHECK(strstr(out, "\"k\":\"v\"") != NULL);
	CHECK(strstr(out, "\"n\":42") != NULL);
	CHECK(strstr(out, "\"ok\":true") != NULL);
	CHECK(MV_LOG_LINE_MAX > MV_LOG_MSG_FALLBACK_MAX && MV_LOG_SERVICE_MAX > 0);
}

int main(void)
{
	RUN(test_syslog_names_are_syslogs);
	RUN(test_log_levels_under_their_own_names);
	RUN(test_emit_with_fields);
	return TEST_SUMMARY();
}
