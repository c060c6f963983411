/*
 * options.c - the value tables the shared option macros (SERVER_CONFIG_OPTIONS,
 * STORAGE_OPTIONS) point at. Alone in their own library so that the
 * services' config schemas link without the server (moviectl lint loads
 * configs with them).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/server.h"
#include "movie/service.h"
#include "movie/banned.h"

const char *const server_log_levels[] = {"debug", "info", "warn", "error", NULL};

/* The gRPC code names but OK, from the one list in movie/grpc.h. */
#define FAULT_CODE(sym, num, name, label) name,
const char *const server_fault_codes[] = {GRPC_STATUS_ERRORS(FAULT_CODE) NULL};
#undef FAULT_CODE

bool server_faults_enabled(const struct server_faults *f)
{
	return f->error_ratio > 0 || f->delay_ms > 0 || f->not_ready || f->exit_after_ms > 0;
}

const char *const storage_drivers[] = {"memory", "sqlite", "mysql", NULL};

int server_check_otlp_endpoint(const char *value, size_t len, char *msg, size_t msg_size)
{
	if (len == 0)
		return 0;
	size_t scheme = len >= 7 && strncmp(value, "http://", 7) == 0    ? 7
	                : len >= 8 && strncmp(value, "https://", 8) == 0 ? 8
	                                                                 : 0;
	if (!scheme) {
		snprintf(msg, msg_size, "must start with http:// or https:// (or be empty)");
		return MV_EINVAL;
	}
	if (len == scheme || value[scheme] == '/') {
		snprintf(msg, msg_size, "has no host");
		return MV_EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c <= 0x20 || c >= 0x7f) {
			snprintf(msg, msg_size, "must not contain spaces or control bytes");
			return MV_EINVAL;
		}
		if (c == '?' || c == '#') {
			snprintf(msg, msg_size,
			         "must not have a query or fragment (/v1/traces is added)");
			return MV_EINVAL;
		}
	}
	return 0;
}
