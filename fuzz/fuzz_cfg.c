/*
 * fuzz_cfg.c - arbitrary bytes into cfg_apply_yaml with a schema shaped like
 * the services' (every type, nested sections, a secret, lists, ranges).
 *
 * Beyond "no crash, no leak", every accepted document must survive a dump
 * round trip: dump, load the dump into a fresh config, dump again, and get
 * the same text. That checks the dump's quoting against the real parser.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/buf.h"
#include "movie/cfg.h"
#include "movie/err.h"
#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fconf {
	char *host;
	int64_t port;
	int64_t max_bytes;
	int64_t idle_ms;
	char *level;
	bool requests;
	char *password;
	char *path;
	struct cfg_string_list brokers;
	double budget;
	int64_t offset;
};

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

#define OPT(k, t, field, def) \
	.key = k, .type = t, .offset = offsetof(struct fconf, field), .default_value = def

/* Every string has a default: a NULL string dumps as ~, which loads as "". */
static const struct cfg_option options[] = {
    {OPT("api.host", CFG_STRING, host, "0.0.0.0")},
    {OPT("api.port", CFG_INT, port, "8081"), .min = 1, .max = 65535},
    {OPT("api.max_message_bytes", CFG_SIZE, max_bytes, "4MiB"), .min = 1, .max = 1 << 30},
    {OPT("api.idle_timeout", CFG_DURATION_MS, idle_ms, "5m")},
    {OPT("log.level", CFG_ENUM, level, "info"), .enum_values = levels},
    {OPT("log.requests", CFG_BOOL, requests, "true")},
    {OPT("storage.mysql.password", CFG_STRING, password, ""), .flags = CFG_SECRET},
    {OPT("storage.sqlite.path", CFG_STRING, path, "data/x.db"), .max = 64},
    {OPT("kafka.brokers", CFG_STRING_LIST, brokers, "")},
    {OPT("peers.retry_budget", CFG_DOUBLE, budget, "0.2"), .min = 0, .max = 1},
    {OPT("rating.offset", CFG_INT, offset, "0")},
};

static const struct cfg_schema schema = {
    .program = "fuzz",
    .env_prefix = "FUZZ",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fconf a, b;
	struct cfg_error err;
	struct buf first, second;
	char line[1024];

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	buf_init(&first, 0);
	buf_init(&second, 0);
	if (cfg_set_defaults(&schema, &a, &err) != 0)
		abort();
	int rc = cfg_apply_yaml(&schema, &a, "fuzz.yaml", (const char *)data, size, &err);
	cfg_error_format(&err, line, sizeof(line));
	if (rc != 0) {
		/* Every failure explains itself. */
		if (!err.message[0])
			abort();
		goto out;
	}
	/* Applying the same document over itself replaces (and frees) values. */
	if (cfg_apply_yaml(&schema, &a, "fuzz.yaml", (const char *)data, size, &err) != 0)
		abort();
	if (cfg_dump(&schema, &a, &first) != 0)
		abort();
	if (cfg_set_defaults(&schema, &b, &err) != 0)
		abort();
	rc = cfg_apply_yaml(&schema, &b, "dump", first.data, first.len, &err);
	if (rc != 0) {
		cfg_error_format(&err, line, sizeof(line));
		fprintf(stderr, "dump does not load: %s\n%s", line, first.data);
		abort();
	}
	if (cfg_dump(&schema, &b, &second) != 0)
		abort();
	if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0) {
		fprintf(stderr, "dump round trip differs:\n%s---\n%s", first.data, second.data);
		abort();
	}
out:
	buf_release(&first);
	buf_release(&second);
	cfg_release(&schema, &a);
	cfg_release(&schema, &b);
	return 0;
}
