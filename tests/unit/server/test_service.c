/* movie/service.h's contracts: service_load_config returns 0 or an MV_E*
 * code and sets *done when the command line was handled without starting the
 * service; runtime errors map to answers by the out-of-memory policy
 * (docs/internals/core.md). */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "movie/cfg.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/server.h"
#include "movie/service.h"
#include "movie/service_main.h"
#include "../testing.h"

struct demo_config {
	int64_t port;
};

static const struct cfg_option demo_options[] = {
    {.key = "api.port",
     .type = CFG_INT,
     .offset = offsetof(struct demo_config, port),
     .default_value = "8081",
     .min = 1,
     .max = 65535,
     .help = "port"},
};

static const struct cfg_schema demo_schema = {
    .program = "demo",
    .env_prefix = "MOVIE_TEST_DEMO",
    .options = demo_options,
    .option_count = sizeof(demo_options) / sizeof(demo_options[0]),
};

/* service_load_config on the command line "demo" + the NULL-terminated args. */
static int load(struct demo_config *cfg, bool *done, ...)
{
	static char words[8][256];
	char *argv[9];
	int argc = 0;
	snprintf(words[argc], sizeof(words[argc]), "demo");
	argv[argc] = words[argc];
	argc++;
	va_list ap;
	va_start(ap, done);
	for (const char *a; argc < 8 && (a = va_arg(ap, const char *)) != NULL; argc++) {
		snprintf(words[argc], sizeof(words[argc]), "%s", a);
		argv[argc] = words[argc];
	}
	va_end(ap);
	argv[argc] = NULL;
	memset(cfg, 0, sizeof(*cfg));
	*done = true; /* must be overwritten */
	return service_load_config(argc, argv, &demo_schema, cfg, done);
}

static void test_no_arguments_starts(void)
{
	struct demo_config cfg;
	bool done;
	CHECK_INT_EQ(load(&cfg, &done, NULL), 0);
	CHECK(!done);
	CHECK_INT_EQ(cfg.port, 8081);
	cfg_release(&demo_schema, &cfg);
}

static void test_handled_arguments_are_done(void)
{
	static const char *const cases[] = {"--version", "--help", "--help-config",
	                                    "--check-config", "--print-config"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct demo_config cfg;
		bool done;
		int rc = load(&cfg, &done, cases[i], NULL);
		CHECK_INT_EQ(rc, 0);
		CHECK(done);
		if (rc != 0 || !done)
			fprintf(stderr, "  for %s\n", cases[i]);
	}
}

static void test_errors_are_mv_codes(void)
{
	struct demo_config cfg;
	bool done;
	CHECK_INT_EQ(load(&cfg, &done, "--bogus", NULL), MV_EINVAL);
	CHECK(!done);
	CHECK_INT_EQ(load(&cfg, &done, "--config", NULL), MV_EINVAL);

	char path[] = "/tmp/movie-test-service-config-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	const char *yaml = "api:\n  port: 70000\n";
	CHECK_INT_EQ(write(fd, yaml, strlen(yaml)), (long long)strlen(yaml));
	close(fd);
	int rc = load(&cfg, &done, "--config", path, NULL);
	CHECK(rc < 0 && rc != -1); /* an MV_E* code, never "-1 = continue" */
	CHECK(rc == MV_ERANGE || rc == MV_EINVAL);
	CHECK(!done);
	rc = load(&cfg, &done, "--check-config", "--config", path, NULL);
	CHECK(rc == MV_ERANGE || rc == MV_EINVAL);
	unlink(path);
	CHECK_INT_EQ(load(&cfg, &done, "--config", "/nonexistent/movie-demo.yaml", NULL), MV_EIO);
}

/* Out of memory on a request path: that request fails, retryably. */
static void test_out_of_memory_answers(void)
{
	CHECK_INT_EQ(service_http_status_from_err(MV_ENOMEM), 503);
	CHECK_INT_EQ(grpc_status_from_err(MV_ENOMEM), GRPC_STATUS_RESOURCE_EXHAUSTED);
	/* unchanged neighbours */
	CHECK_INT_EQ(service_http_status_from_err(MV_EUNAVAIL), 503);
	CHECK_INT_EQ(service_http_status_from_err(MV_ETOOBIG), 413);
	CHECK_INT_EQ(service_http_status_from_err(MV_EINTERNAL), 500);
	CHECK_INT_EQ(grpc_status_from_err(MV_EINTERNAL), GRPC_STATUS_INTERNAL);
}

struct ladder_config {
	struct server_config server;
};

static const struct cfg_option ladder_options[] = {
    SERVER_CONFIG_OPTIONS(struct ladder_config, server, "18090"),
};

static const struct cfg_schema ladder_schema = {
    .program = "ladder",
    .env_prefix = "MOVIE_TEST_LADDER",
    .options = ladder_options,
    .option_count = sizeof(ladder_options) / sizeof(ladder_options[0]),
    .config_size = sizeof(struct ladder_config),
};

static int failing_handlers(struct service_run *run)
{
	(void)run;
	return MV_EINVAL;
}

/* service_main's contract: exit 1 on any failure, said in the log; a step
 * that fails after logging starts writes one JSON error line naming it. */
static void test_start_failure_is_logged(void)
{
	const struct service_def def = {
	    .name = "ladder",
	    .grpc_service = "LadderService",
	    .schema = &ladder_schema,
	    .server_offset = offsetof(struct ladder_config, server),
	    .register_handlers = failing_handlers,
	};
	char path[] = "/tmp/movie-test-ladder-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	fflush(stdout);
	int saved = dup(1);
	CHECK(saved >= 0 && dup2(fd, 1) == 1);
	char arg0[] = "ladder";
	char *argv[] = {arg0, NULL};
	int status = service_main(&def, 1, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	char out[4096] = "";
	ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	unlink(path);
	CHECK_INT_EQ(status, 1);
	CHECK(n > 0);
	if (n > 0)
		out[n] = '\0';
	CHECK(strstr(out, "\"level\":\"error\"") != NULL);
	CHECK(strstr(out, "\"msg\":\"cannot start\"") != NULL);
	CHECK(strstr(out, "\"step\":\"handlers\"") != NULL);
	CHECK(strstr(out, "\"service\":\"ladder\"") != NULL);
}

/* faults.error_code accepts exactly the gRPC code names but OK, in code order
 * (both come from GRPC_STATUS_CODES in movie/grpc.h). */
static void test_fault_codes_are_grpc_names(void)
{
	int n = 0;
	while (server_fault_codes[n] != NULL) {
		CHECK_STR_EQ(server_fault_codes[n], grpc_status_name(n + 1));
		n++;
	}
	CHECK_INT_EQ(n, GRPC_STATUS_COUNT - 1);
	CHECK_INT_EQ(GRPC_STATUS_UNAUTHENTICATED, 16);
	CHECK_STR_EQ(grpc_status_label(GRPC_STATUS_CANCELLED), "Canceled");
}

int main(void)
{
	RUN(test_out_of_memory_answers);
	RUN(test_no_arguments_starts);
	RUN(test_handled_arguments_are_done);
	RUN(test_errors_are_mv_codes);
	RUN(test_fault_codes_are_grpc_names);
	RUN(test_start_failure_is_logged);
	return TEST_SUMMARY();
}
