/*
 * release_synth.h - synthetic low-traffic load for the canary analysis: real
 * unary gRPC calls (the read-only calls the policy lists) sent straight to
 * the pod addresses of one service's canary and production pods, so both
 * sides of the comparison see enough calls in the same server metrics
 * (grpc_server_handled_total) Prometheus already scrapes.
 *
 * Runs on a thread of its own (one libuv loop, one channel per track); rate
 * is bounded (per track, capped by RELEASE_MAX_SYNTH_RATE) and so are calls
 * in flight (RELEASE_SYNTH_MAX_INFLIGHT per track): a slow or dead pod makes
 * the load wait, never pile up. Counts are atomics readable from any thread.
 */
#ifndef MOVIECTL_RELEASE_SYNTH_H
#define MOVIECTL_RELEASE_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "release_policy.h"

#define RELEASE_SYNTH_MAX_INFLIGHT 32
#define RELEASE_SYNTH_MAX_TARGETS  64

struct release_synth;

struct release_synth_counts {
	uint64_t sent[2];   /* [0] canary, [1] production */
	uint64_t ok[2];     /* any answer from the server (also NOT_FOUND) */
	uint64_t failed[2]; /* UNAVAILABLE, DEADLINE_EXCEEDED, ... (server errors) */
};

/*
 * Encode a request message whose string fields 1..n are args (protobuf wire
 * format). Returns the bytes written, or 0 when cap is too small.
 */
size_t release_synth_encode(const struct release_synth_call *call, uint8_t *out, size_t cap);

/*
 * Start load on `calls` (those whose service is `service`) to the canary
 * targets and the production targets ("ip:port"), `rate` calls per second
 * to each track. Returns 0, MV_EINVAL (no call for the service, no target,
 * too many targets), MV_ENOMEM, MV_EIO (thread or loop failed).
 */
int release_synth_start(const char *service, const struct release_synth_call *calls, size_t n_calls,
                        const char *const *canary, size_t n_canary, const char *const *production,
                        size_t n_production, double rate, struct release_synth **out);

void release_synth_counts(const struct release_synth *s, struct release_synth_counts *out);

/* Stop the load (calls in flight are cancelled), join the thread, free. NULL is fine. */
void release_synth_stop(struct release_synth *s);

#endif
