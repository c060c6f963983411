/* The command line and storage options shared by every service's main(). */
#include "movie/service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/server.h"
#include "movie/text.h"
#include "movie/banned.h"

#ifndef MOVIE_VERSION_STRING
#define MOVIE_VERSION_STRING "0.0.0"
#endif
#ifndef MOVIE_GIT_COMMIT_STRING
#define MOVIE_GIT_COMMIT_STRING "unknown"
#endif

extern char **environ;

void storage_options_to_store_config(const struct storage_options *o, struct store_config *out)
{
	memset(out, 0, sizeof(*out));
	out->driver = o->driver;
	out->sqlite_path = o->sqlite_path;
	out->sqlite_busy_timeout_ms = o->sqlite_busy_timeout_ms;
	out->mysql_host = o->mysql_host;
	out->mysql_port = o->mysql_port;
	out->mysql_user = o->mysql_user;
	out->mysql_password = o->mysql_password;
	out->mysql_database = o->mysql_database;
	out->mysql_pool_size = o->mysql_pool_size;
	out->mysql_connect_timeout_ms = o->mysql_connect_timeout_ms;
	out->mysql_query_timeout_ms = o->mysql_query_timeout_ms;
}

static void usage(FILE *out, const char *program)
{
	fprintf(out,
	        "usage: %s [--config FILE]... [--check-config] [--print-config] [--help-config]\n"
	        "       [--version]\n"
	        "  --config FILE    YAML configuration; repeat to layer (base, then overlay)\n"
	        "  --check-config   validate the configuration and exit 0 (valid) or 1\n"
	        "  --print-config   print the effective configuration (secrets redacted) and exit\n"
	        "  --help-config    print every configuration key and exit\n"
	        "Environment variables override single keys: see docs/config.md.\n",
	        program);
}

#define MAX_CONFIG_FILES 16

int service_load_config(int argc, char **argv, const struct cfg_schema *schema, void *config,
                        bool *done)
{
	*done = false;
	const char *files[MAX_CONFIG_FILES] = {0};
	size_t file_count = 0;
	bool check = false, print = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: --config needs a file\n", schema->program);
				return MV_EINVAL;
			}
			if (file_count == MAX_CONFIG_FILES) {
				fprintf(stderr, "%s: at most %d --config files\n", schema->program,
				        MAX_CONFIG_FILES);
				return MV_EINVAL;
			}
			files[file_count++] = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			if (file_count == MAX_CONFIG_FILES) {
				fprintf(stderr, "%s: at most %d --config files\n", schema->program,
				        MAX_CONFIG_FILES);
				return MV_EINVAL;
			}
			files[file_count++] = a + 9;
		} else if (strcmp(a, "--check-config") == 0) {
			check = true;
		} else if (strcmp(a, "--print-config") == 0) {
			print = true;
		} else if (strcmp(a, "--help-config") == 0) {
			struct buf out;
			buf_init(&out, 0);
			cfg_describe(schema, &out);
			fwrite(out.data ? out.data : "", 1, out.len, stdout);
			buf_release(&out);
			*done = true;
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			printf("%s %s (commit %s)\n", schema->program, MOVIE_VERSION_STRING,
			       MOVIE_GIT_COMMIT_STRING);
			*done = true;
			return 0;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout, schema->program);
			*done = true;
			return 0;
		} else {
			fprintf(stderr, "%s: unknown argument '%s'\n", schema->program, a);
			usage(stderr, schema->program);
			return MV_EINVAL;
		}
	}
	/* Start-up and --check-config run the same load, schema->validate
	 * included, and both print every error found. */
	struct cfg_errors *errs = malloc(sizeof(*errs));
	if (!errs) {
		fprintf(stderr, "%s: out of memory\n", schema->program);
		return MV_ENOMEM;
	}
	cfg_errors_init(errs);
	int rc = cfg_load_all(schema, config, files, file_count, environ, errs);
	if (rc) {
		char line[1024];
		/* --check-config talks to a person; a starting service writes JSON
		 * log lines like every other line it writes (stdout, as the
		 * services log), so that log pipelines parse its last words too. */
		if (!check)
			log_init(schema->program, MV_LOG_INFO, 1);
		for (size_t i = 0; i < errs->count; i++) {
			cfg_error_format(&errs->items[i], line, sizeof(line));
			if (check)
				fprintf(stderr, "%s: %s\n", schema->program, line);
			else
				log_error("invalid configuration", MV_LOG_S("error", line));
		}
		if (errs->dropped && check)
			fprintf(stderr, "%s: (%zu more errors not shown)\n", schema->program,
			        errs->dropped);
		else if (errs->dropped)
			log_error("invalid configuration: more errors not shown",
			          MV_LOG_I("count", (long long)errs->dropped));
		free(errs);
		cfg_release(schema, config);
		return rc < 0 ? rc : MV_EINVAL;
	}
	free(errs);
	if (print) {
		struct buf out;
		buf_init(&out, 0);
		cfg_dump(schema, config, &out);
		fwrite(out.data ? out.data : "", 1, out.len, stdout);
		buf_release(&out);
	}
	if (check) {
		fprintf(stderr, "%s: configuration is valid\n", schema->program);
		cfg_release(schema, config);
		*done = true;
		return 0;
	}
	if (print) {
		cfg_release(schema, config);
		*done = true;
		return 0;
	}
	return 0;
}

int service_dispatch(bool blocking, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	if (blocking)
		return server_queue_work(work, done, arg);
	work(arg);
	done(arg);
	return 0;
}

void service_http_error(struct http_exchange *ex, int status, const char *message)
{
	struct buf body;
	buf_init(&body, 0);
	int rc = buf_append_str(&body, "{\"error\":");
	rc = rc ? rc : buf_append_json_string(&body, message, strlen(message));
	rc = rc ? rc : buf_append_str(&body, "}\n");
	if (rc)
		server_http_respond(ex, status, "text/plain; charset=utf-8", "error\n", 6);
	else
		server_http_respond(ex, status, "application/json", body.data, body.len);
	buf_release(&body);
}

int service_http_status_from_err(int err)
{
	switch (err) {
	case MV_ENOTFOUND: return 404;
	case MV_EINVAL:
	case MV_ERANGE: return 400;
	case MV_ETOOBIG: return 413;
	case MV_ENOMEM: /* the out-of-memory policy: docs/internals/core.md */
	case MV_EUNAVAIL:
	case MV_ETIMEDOUT: return 503;
	default: return 500;
	}
}

bool service_grpc_finish_failed(struct grpc_call *call, int err, const char *message)
{
	if (err != 0) {
		grpc_call_finish(call, grpc_status_from_err(err), message, NULL, 0);
		return true;
	}
	int64_t deadline = grpc_call_deadline(call);
	if (deadline && grpc_now_ns() > deadline) {
		grpc_call_finish(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL, 0);
		return true;
	}
	return false;
}

bool service_grpc_check_text(struct grpc_call *call, const ProtobufCMessageDescriptor *desc,
                             const uint8_t *msg, size_t len)
{
	const char *field = NULL, *why = NULL;
	if (text_pb_check(desc, msg, len, &field, &why) != MV_EINVAL)
		return true;
	char message[128];
	snprintf(message, sizeof(message), "%s: %s", field, why);
	grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, message, NULL, 0);
	return false;
}

void service_grpc_finish_message(struct grpc_call *call, const ProtobufCMessage *msg)
{
	uint8_t stack[1024];
	size_t size = protobuf_c_message_get_packed_size(msg);
	uint8_t *out = size <= sizeof(stack) ? stack : malloc(size);
	if (!out) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	protobuf_c_message_pack(msg, out);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, out, size);
	if (out != stack)
		free(out);
}

int service_json_metadata(struct buf *out, const char *id, const char *title,
                          const char *description, const char *director)
{
	int rc = buf_append_str(out, "{\"id\":");
	rc = rc ? rc : buf_append_json_string(out, id, strlen(id));
	rc = rc ? rc : buf_append_str(out, ",\"title\":");
	rc = rc ? rc : buf_append_json_string(out, title, strlen(title));
	rc = rc ? rc : buf_append_str(out, ",\"description\":");
	rc = rc ? rc : buf_append_json_string(out, description, strlen(description));
	rc = rc ? rc : buf_append_str(out, ",\"director\":");
	rc = rc ? rc : buf_append_json_string(out, director, strlen(director));
	rc = rc ? rc : buf_append_str(out, "}");
	return rc;
}
