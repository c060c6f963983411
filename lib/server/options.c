/*
 * options.c - the value tables the shared option macros (SERVER_CONFIG_OPTIONS,
 * STORAGE_OPTIONS) point at. Alone in their own library so that the
 * services' config schemas link without the server (moviectl lint loads
 * configs with them).
 */
#include <stddef.h>

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
