/*
 * prom.h - a small Prometheus HTTP API client (libcurl + jansson).
 *
 * Two layers: prom_parse_response() decodes an /api/v1/query body without I/O
 * (unit-tested against recorded bodies, fuzzed); prom_query() sends an instant
 * query (POST /api/v1/query, form-encoded, with `time`) and parses the answer.
 * A range query is not provided yet: guard and release judge instant vectors.
 *
 * Every call is bounded by the client's timeout and the body by
 * PROM_MAX_BODY_BYTES. Errors carry Prometheus' own words when it answered
 * with {"status":"error","errorType":...,"error":...}.
 * Every function returns 0 or a negative MV_E* code (movie/err.h).
 * Nothing here is thread-safe: a client belongs to one thread.
 */
#ifndef MOVIECTL_PROM_H
#define MOVIECTL_PROM_H

#include <jansson.h>
#include <stddef.h>

#define PROM_MAX_BODY_BYTES ((size_t)16 * 1024 * 1024) /* one response */
#define PROM_MAX_SAMPLES    100000                     /* elements of one vector */
#define PROM_MAX_QUERY      ((size_t)64 * 1024)        /* PromQL text we send */

enum prom_type {
	PROM_VECTOR = 1, /* samples[] */
	PROM_SCALAR = 2, /* scalar */
};

struct prom_sample {
	json_t *labels; /* owned: object of label name -> string ("__name__" included) */
	double time;    /* unix seconds of the sample */
	double value;   /* may be NaN or +-Inf as Prometheus sends them */
};

struct prom_result {
	enum prom_type type;
	struct prom_sample *samples; /* PROM_VECTOR: n samples */
	size_t n;
	double scalar;   /* PROM_SCALAR */
	double time;     /* PROM_SCALAR: its timestamp */
	size_t warnings; /* number of "warnings" the server attached */
};

/* What went wrong. http is 0 when no HTTP answer arrived. */
struct prom_error {
	long http;
	char type[64];     /* errorType (bad_data, timeout, execution, ...) or a local word */
	char message[512]; /* Prometheus' "error" or a local explanation */
};

/* Release what a parse put in r; safe on a zeroed result. */
void prom_result_release(struct prom_result *r);

/* The value of label `name` of sample s, or NULL. */
const char *prom_label(const struct prom_sample *s, const char *name);

/*
 * Decode an /api/v1/query response body. `http` is the HTTP status (0 when
 * unknown): a non-2xx answer is an error even with a success body.
 * r is initialised here (release it also after failure).
 * Returns 0, MV_ESYNTAX (not JSON), MV_EPROTO (not the API's envelope, a
 * result type other than vector/scalar, a malformed sample), MV_EINVAL
 * (status "error": the query was refused, err->type/message say why),
 * MV_EUNAVAIL (a 5xx/503 answer or errorType "unavailable"), MV_ETIMEDOUT
 * (errorType "timeout"), MV_ETOOBIG (len over PROM_MAX_BODY_BYTES, or more
 * than PROM_MAX_SAMPLES samples), MV_ENOMEM.
 */
int prom_parse_response(const char *body, size_t len, long http, struct prom_result *r,
                        struct prom_error *err);

struct prom_client;

/*
 * A client of the Prometheus at `url` ("http://host:9090", an optional path
 * prefix kept, no trailing slash needed). timeout_ms bounds each query
 * (0: 10000). Returns 0, MV_EINVAL (not an http(s) URL), MV_ENOMEM.
 */
int prom_client_new(const char *url, long timeout_ms, struct prom_client **out);
void prom_client_free(struct prom_client *c);
const char *prom_client_url(const struct prom_client *c);

/*
 * Instant query `promql` evaluated at `at` (unix seconds; 0: the server's
 * now). r is initialised here (release it also after failure).
 * Returns the codes of prom_parse_response, plus MV_EUNAVAIL (cannot
 * connect, connection lost), MV_ETIMEDOUT (client timeout), MV_ETOOBIG
 * (query over PROM_MAX_QUERY or body over the cap).
 */
int prom_query(struct prom_client *c, const char *promql, double at, struct prom_result *r,
               struct prom_error *err);

#endif
