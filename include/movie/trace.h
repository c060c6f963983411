/*
 * trace.h - W3C Trace Context (https://www.w3.org/TR/trace-context/) and spans
 * exported over OTLP/HTTP JSON.
 *
 * Three parts:
 *  - the header codec: traceparent parsed strictly (version 00 layout, the
 *    rules for future versions, lowercase hex, all-zero ids invalid) and
 *    formatted; tracestate validated and capped (32 members, 512 bytes);
 *    pure functions, no I/O, any thread;
 *  - spans: a server span continues the caller's trace (or starts a new one),
 *    a client span is a child of the span that makes the call; ids come from
 *    a per-thread generator (prng.h) seeded from getrandom;
 *  - the exporter (optional, process-wide): trace_export_submit copies a
 *    finished span into a bounded queue (never blocks on the network: a full
 *    queue drops the span and counts it); one exporter thread POSTs batches
 *    as ExportTraceServiceRequest JSON to {endpoint}/v1/traces with libcurl.
 *
 * Sampling is parent-based: a valid incoming traceparent decides with its
 * sampled flag; a new trace is sampled with probability trace_sample_ratio()
 * when the exporter runs, never when it does not (nothing would be recorded).
 * Unsampled spans still get ids (propagated, and in the request logs).
 */
#ifndef MOVIE_TRACE_H
#define MOVIE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct metrics_registry;

#define TRACE_ID_SIZE      16
#define TRACE_SPAN_ID_SIZE 8
/* A version-00 traceparent, "00-<32 hex>-<16 hex>-<2 hex>". */
#define TRACE_PARENT_LEN 55
/* tracestate caps (spec section 3.3.1.5): members and combined length. */
#define TRACE_STATE_MAX_MEMBERS 32
#define TRACE_STATE_MAX_BYTES   512
/* Members longer than this go first when the list must be shortened. */
#define TRACE_STATE_LONG_MEMBER 128
/* Raw tracestate bytes (all headers joined) a transport keeps for parsing;
 * more is discarded whole (the caps above keep at most 512 anyway). */
#define TRACE_STATE_RAW_MAX 4096
#define TRACE_FLAG_SAMPLED  0x01

/* A parsed traceparent: the caller's trace, its span (our parent) and flags. */
struct trace_parent {
	uint8_t trace_id[TRACE_ID_SIZE];
	uint8_t parent_id[TRACE_SPAN_ID_SIZE];
	uint8_t flags;
};

/* Parse a traceparent value (len bytes, no NUL needed). Version 00 must be
 * exactly 55 bytes; a higher version (not ff) may be longer when byte 55 is
 * '-' and is read with the version-00 layout. Hex must be lowercase; an
 * all-zero trace-id or parent-id is invalid. Returns 0 (out set) or MV_EINVAL
 * (out untouched). Pure. */
int trace_parent_parse(const char *s, size_t len, struct trace_parent *out);

/* Write "00-<trace>-<span>-<flags>" and a NUL into out (>= TRACE_PARENT_LEN + 1
 * bytes). Only the sampled bit of flags is kept (version 00 defines no other). */
void trace_parent_format(const uint8_t trace_id[TRACE_ID_SIZE],
                         const uint8_t span_id[TRACE_SPAN_ID_SIZE], uint8_t flags, char *out);

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void trace_hex(const uint8_t *id, size_t n, char *out);

/* Validate a tracestate list (the values of every tracestate header joined
 * with ','), and cap it: empty members are dropped; a list with a malformed
 * member or a duplicate key is discarded whole; past 32 members the
 * right-most go; then while over 512 bytes members longer than 128 bytes go
 * first, then from the right. Writes the result (may be empty) and a NUL to
 * out (>= TRACE_STATE_MAX_BYTES + 1 bytes). Returns its length, or MV_EINVAL
 * (out is ""), also when len > TRACE_STATE_RAW_MAX. Pure. */
int trace_state_filter(const char *in, size_t len, char *out);

/* ---- spans ---- */

enum trace_kind {
	TRACE_KIND_SERVER = 2, /* OTLP SpanKind values */
	TRACE_KIND_CLIENT = 3,
};

struct trace_span {
	uint8_t trace_id[TRACE_ID_SIZE];
	uint8_t span_id[TRACE_SPAN_ID_SIZE];
	uint8_t parent_id[TRACE_SPAN_ID_SIZE]; /* all zero: a root span */
	uint8_t flags;                         /* TRACE_FLAG_SAMPLED */
	bool valid;                            /* started (ids set) */
	char *tracestate;                      /* NULL, or the filtered tracestate (owned) */
};

/* Start a server span: continue `parent` (NULL or not valid: a new trace,
 * sampled by the ratio) with a new span id. tracestate (NULL or raw, len
 * bytes) is kept only with a valid parent, filtered by trace_state_filter;
 * memory for it failing to allocate only loses it. Any thread. */
void trace_span_start_server(struct trace_span *sp, const struct trace_parent *parent,
                             const char *tracestate, size_t tracestate_len);
/* Start a client span, child of `parent` (when NULL or not started: a new
 * trace, as for a server span without parent). tracestate is copied from
 * parent (allocation failure loses it). Any thread. */
void trace_span_start_child(struct trace_span *sp, const struct trace_span *parent);
/* dst = a copy of src (its tracestate duplicated; allocation failure loses
 * it); src NULL or not started: a new trace, as trace_span_start_server. */
void trace_span_copy(struct trace_span *dst, const struct trace_span *src);
/* Free the span's tracestate; the span may be started again. */
void trace_span_release(struct trace_span *sp);
static inline bool trace_span_sampled(const struct trace_span *sp)
{
	return sp->valid && (sp->flags & TRACE_FLAG_SAMPLED);
}

/* Wall-clock time, Unix ns (span timestamps). */
int64_t trace_now_unix_ns(void);

/* ---- export ---- */

/* One finished span, as exported (fixed-size: copied into the queue). */
struct trace_record {
	uint8_t trace_id[TRACE_ID_SIZE];
	uint8_t span_id[TRACE_SPAN_ID_SIZE];
	uint8_t parent_id[TRACE_SPAN_ID_SIZE];
	uint8_t kind; /* enum trace_kind */
	bool error;   /* span status ERROR */
	int64_t start_unix_ns, end_unix_ns;
	char name[96];        /* "MovieService/GetMovieDetails", "GET /movie" */
	char rpc_service[64]; /* gRPC: rpc.service; "" otherwise */
	char rpc_method[64];  /* gRPC: rpc.method */
	int grpc_status;      /* gRPC: rpc.grpc.status_code; -1 otherwise */
	char http_method[8];  /* HTTP: http.request.method; "" otherwise */
	char http_route[64];  /* HTTP: http.route */
	int http_status;      /* HTTP: http.response.status_code; 0 otherwise */
	char peer[32];        /* client: server.address (the peer's name) */
};

/* Fill the ids of r from a finished span (and zero the rest, grpc_status -1).
 * Strings set later are truncated to their arrays by trace_record_set. */
void trace_record_init(struct trace_record *r, const struct trace_span *sp, enum trace_kind kind,
                       int64_t start_unix_ns, int64_t end_unix_ns);
/* Copy len bytes of s into dst (dst_size bytes, NUL-terminated, truncated). */
void trace_record_set(char *dst, size_t dst_size, const char *s, size_t len);

/* Append one ExportTraceServiceRequest (OTLP/JSON: hex ids, nanos as
 * strings, enums as integers) holding `n` records of one resource with
 * service.name = service and service.version = version (NULL: none).
 * Returns 0, MV_ENOMEM, MV_ETOOBIG (out's limit). */
int trace_otlp_encode(const struct trace_record *recs, size_t n, const char *service,
                      const char *version, struct buf *out);

struct trace_export_config {
	const char *endpoint;             /* "http://collector:4318": POSTs to endpoint/v1/traces */
	const char *service;              /* resource service.name (copied) */
	const char *version;              /* service.version (copied; NULL: none) */
	double sample_ratio;              /* new traces, 0..1 */
	size_t batch_size;                /* spans per request (>= 1) */
	int64_t interval_ms;              /* a partial batch waits at most this long */
	size_t queue_size;                /* spans held at most; more are dropped */
	int64_t timeout_ms;               /* one POST, connection included */
	struct metrics_registry *metrics; /* trace_spans_*_total (NULL: none) */
};

/* Start the exporter thread (once per process, before other threads use the
 * tracer; endpoint copied). Returns 0, MV_EINVAL (empty endpoint, zero
 * sizes), MV_ENOMEM, MV_EINTERNAL (thread or libcurl), MV_EEXIST (running). */
int trace_export_start(const struct trace_export_config *cfg);
/* True while the exporter runs (spans worth recording). Any thread. */
bool trace_export_enabled(void);
/* Queue a copy of r for export. Never waits for the network; a full queue
 * drops it (trace_spans_dropped_total). No-op when not running. Any thread. */
void trace_export_submit(const struct trace_record *r);
/* Flush what is queued for at most timeout_ms, then stop the thread (spans
 * still queued are dropped and counted). Returns within timeout_ms plus at
 * most one request in flight (its timeout_ms of trace_export_config). No-op
 * when not running. Call once no other thread submits (graceful drain,
 * after the workers stopped). */
void trace_export_stop(int64_t timeout_ms);

#endif
