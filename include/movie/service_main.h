/*
 * service_main.h - a service as a declaration: what it is (name, config
 * schema, store, handlers, extra start/stop hooks) in a struct service_def,
 * and one service_main() that runs the start-up ladder every service shares:
 *
 *   command line and config -> logging -> metrics -> store (when it has one)
 *   -> server -> handlers -> start hook -> serve until drained -> stop hook
 *
 * and undoes what was done, in reverse order, on the way out. A service's
 * main.c is its service_def and `return service_main(&def, argc, argv);`
 * (docs/internals/add-a-service.md).
 */
#ifndef MOVIE_SERVICE_MAIN_H
#define MOVIE_SERVICE_MAIN_H

#include <stddef.h>

#include "movie/cfg.h"
#include "movie/metrics.h"
#include "movie/server.h"
#include "movie/store_config.h"

struct service_def;

/* What the hooks see while the service runs; owned by service_main. */
struct service_run {
	const struct service_def *def;
	void *config;                     /* the loaded config (def->schema->config_size bytes) */
	struct metrics_registry *metrics; /* the process's registry */
	struct server *srv;               /* NULL until the server exists */
	void *store;                      /* def->store_open's result; NULL without a store */
	const char *storage_driver;       /* storage.driver; NULL without a store */
	void *state;                      /* the start hook's own, for stop and log_starting */
};

struct service_def {
	const char *name;                /* program name: logs, metrics, reflection ("rating") */
	const char *grpc_service;        /* its gRPC service ("RatingService"), for health */
	const struct cfg_schema *schema; /* the config table (config.c) */
	size_t server_offset;            /* offsetof(config, its struct server_config) */
	/* The store, or store_open NULL for a service without one. storage_offset
	 * is offsetof(config, its struct storage_options). store_open writes a
	 * one-line reason to errbuf and returns NULL on failure. */
	size_t storage_offset;
	void *(*store_open)(const struct store_config *cfg, char *errbuf, size_t errbuf_size);
	void (*store_close)(void *store);
	/* Registers the service's gRPC methods and HTTP routes on run->srv.
	 * Returns 0 or an MV_E* code (the service then exits 1). Required. */
	int (*register_handlers)(struct service_run *run);
	/* Optional: after the handlers, before serving (background work such as
	 * Kafka ingestion). Returns 0 or an MV_E* code, having logged why (the
	 * service then exits 1 without serving; stop is not called). */
	int (*start)(struct service_run *run);
	/* Optional: after the server drained, when start returned 0. */
	void (*stop)(struct service_run *run);
	/* Optional: the "starting" log line; default: the storage driver, if any. */
	void (*log_starting)(const struct service_run *run);
};

/* Run the service `def` with the process's command line; on the main thread
 * only, once. Returns the process exit status (main returns it): 0 when the
 * service ran and drained, or the command line asked for something else
 * that succeeded (--check-config, --version, ...); 1 on any failure, said on
 * stderr (config) or in the log (the rest). */
int service_main(const struct service_def *def, int argc, char **argv);

#endif
