/*
 * options.c - the value tables the shared option macros (SERVER_CONFIG_OPTIONS,
 * STORAGE_OPTIONS) point at. Alone in their own library so that the
 * services' config schemas link without the server (moviectl lint loads
 * configs with them).
 */
#include <stddef.h>

#include "movie/server.h"
#include "movie/service.h"
#include "movie/banned.h"

const char *const server_log_levels[] = {"debug", "info", "warn", "error", NULL};

const char *const storage_drivers[] = {"memory", "sqlite", "mysql", NULL};
