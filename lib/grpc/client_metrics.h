/*
 * client_metrics.h - the gRPC client's per-method call metrics, named and
 * labelled as go-grpc-prometheus' client interceptor names them (internal to
 * lib/grpc, not installed):
 *   grpc_client_started_total{grpc_type,grpc_service,grpc_method}
 *   grpc_client_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
 *   grpc_client_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram)
 * grpc_type is "unary": the client makes unary calls only. A call is started
 * once (retries are attempts of the same call) and handled once, with its
 * final status; seconds run from grpc_channel_start to the completion.
 *
 * One struct per channel, used on the channel's loop thread only: the
 * children of up to CLIENT_METRICS_METHODS paths are cached in it (one
 * registry lookup per path and per status code, then none). Calls to further
 * paths are not counted (the system calls two paths per channel).
 */
#ifndef GRPC_CLIENT_METRICS_H
#define GRPC_CLIENT_METRICS_H

#include <stddef.h>

#include "movie/grpc.h"

struct metrics_registry;
struct metrics_family;

#define CLIENT_METRICS_METHODS  16
#define CLIENT_METRICS_PATH_MAX 128

struct client_method_metrics {
	char path[CLIENT_METRICS_PATH_MAX];
	char service[CLIENT_METRICS_PATH_MAX];
	const char *method; /* points into path */
	struct metrics_counter *started;
	struct metrics_counter *handled[GRPC_STATUS_COUNT]; /* resolved on first use */
	struct metrics_histogram *seconds;
};

struct client_metrics {
	struct metrics_family *started, *handled, *seconds; /* NULL: no metrics */
	size_t count;
	struct client_method_metrics methods[CLIENT_METRICS_METHODS];
};

/* Register the families in `reg` (NULL: every later call records nothing). */
void client_metrics_init(struct client_metrics *m, struct metrics_registry *reg);
/* A call to `path` ("/pkg.Service/Method") starts: count it. Returns the
 * method's entry for client_metrics_handled, or NULL (no registry, cache
 * full, path too long, out of memory): then nothing is recorded. */
struct client_method_metrics *client_metrics_started(struct client_metrics *m, const char *path,
                                                     size_t path_len);
/* The call ended with `status` after `seconds`. `mm` may be NULL. */
void client_metrics_handled(struct client_metrics *m, struct client_method_metrics *mm, int status,
                            double seconds);

#endif
