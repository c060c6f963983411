/*
 * trace_cost.c - CPU time of the tracer's two per-request costs, in
 * isolation (CLOCK_PROCESS_CPUTIME_ID, so other load on the machine does not
 * count):
 *   off:    what every request pays with export off: its server span (new
 *           trace for half of them, a parsed traceparent for the other half)
 *           and the two hex ids of its log line;
 *   encode: OTLP/JSON encoding per span, in batches of 512.
 * The side-by-side service benchmark is bench/grpc_bench.py --tracing off|on.
 *
 *   build/bench/bench_trace_cost
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "movie/buf.h"
#include "movie/trace.h"

#include "movie/banned.h"

static double cpu_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(void)
{
	enum {
		REQUESTS = 2000000,
		BATCH = 512,
		BATCHES = 400
	};
	static const char tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	unsigned sink = 0;
	double t0 = cpu_ns();
	for (int i = 0; i < REQUESTS; i++) {
		struct trace_span sp;
		struct trace_parent p;
		if ((i & 1) && trace_parent_parse(tp, sizeof(tp) - 1, &p) == 0)
			trace_span_start_server(&sp, &p, NULL, 0);
		else
			trace_span_start_server(&sp, NULL, NULL, 0);
		char a[2 * TRACE_ID_SIZE + 1], b[2 * TRACE_SPAN_ID_SIZE + 1];
		trace_hex(sp.trace_id, TRACE_ID_SIZE, a);
		trace_hex(sp.span_id, TRACE_SPAN_ID_SIZE, b);
		sink += (unsigned char)a[3] + (unsigned char)b[5];
		trace_span_release(&sp);
	}
	double off = (cpu_ns() - t0) / REQUESTS;

	static struct trace_record r[BATCH];
	struct trace_span sp;
	trace_span_start_server(&sp, NULL, NULL, 0);
	for (int i = 0; i < BATCH; i++) {
		trace_record_init(&r[i], &sp, TRACE_KIND_SERVER, 1700000000123456789LL,
		                  1700000000223456789LL);
		snprintf(r[i].name, sizeof(r[i].name), "MetadataService/GetMetadata");
		snprintf(r[i].rpc_service, sizeof(r[i].rpc_service), "MetadataService");
		snprintf(r[i].rpc_method, sizeof(r[i].rpc_method), "GetMetadata");
		r[i].grpc_status = 0;
	}
	struct buf body;
	buf_init(&body, 64 << 20);
	t0 = cpu_ns();
	for (int k = 0; k < BATCHES; k++) {
		buf_reset(&body);
		if (trace_otlp_encode(r, BATCH, "metadata", "0.1.0", &body) != 0)
			return 1;
	}
	double enc = (cpu_ns() - t0) / ((double)BATCH * BATCHES);
	printf("{\"off_ns_per_request\": %.1f, \"encode_ns_per_span\": %.1f, "
	       "\"bytes_per_span\": %zu, \"check\": %u}\n",
	       off, enc, body.len / BATCH, sink & 1);
	buf_release(&body);
	trace_span_release(&sp);
	return 0;
}
