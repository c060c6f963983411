/*
 * release_promql.h - the PromQL queries `moviectl release` judges a canary
 * with, built from the standard grpc_server_* metrics every service exports
 * and the labels deploy/prometheus/prometheus.yml keeps on every series
 * (namespace, app, track, pod_template_hash, pod). No I/O.
 *
 * Health checks (grpc.health.v1.Health: kubelet probes) are left out of every
 * query: they would dilute the ratios with calls no user made.
 */
#ifndef MOVIECTL_RELEASE_PROMQL_H
#define MOVIECTL_RELEASE_PROMQL_H

#include <stddef.h>

#include "movie/buf.h"

/* One side of the comparison. track and hash may be NULL (not filtered). */
struct release_series {
	const char *namespace;
	const char *app;   /* the app.kubernetes.io/name label: metadata, rating, movie */
	const char *track; /* "canary" / "production" */
	const char *hash;  /* pod-template-hash of the ReplicaSet judged */
};

enum release_query {
	RELEASE_Q_CALLS,  /* sum(increase(handled_total[W])): calls completed */
	RELEASE_Q_ERRORS, /* the same restricted to the server-error codes */
	RELEASE_Q_P99,    /* histogram_quantile(0.99, ...handling_seconds_bucket...) */
};

/*
 * Append the query to `out`. `window` is a PromQL duration ("2m", "30s");
 * `codes` the gRPC code names counted as server errors, canonical spelling
 * ("UNAVAILABLE", "DEADLINE_EXCEEDED"), n_codes of them (RELEASE_Q_ERRORS
 * only). Label values are escaped as PromQL strings.
 * Returns 0, MV_EINVAL (no namespace/app, bad window, unknown code), MV_ENOMEM.
 */
int release_promql(enum release_query q, const struct release_series *s, const char *window,
                   const char *const *codes, size_t n_codes, struct buf *out);

/* The metric label value of a canonical gRPC code name, as the services
 * (and go-grpc-prometheus) export it: "UNAVAILABLE" -> "Unavailable",
 * "DEADLINE_EXCEEDED" -> "DeadlineExceeded". NULL when unknown. */
const char *release_grpc_code_label(const char *canonical);

/* 1 when `w` is a PromQL duration we accept: digits then one of ms,s,m,h
 * (e.g. "90s", "2m"), at most 15 characters. */
int release_promql_duration_ok(const char *w);

#endif
