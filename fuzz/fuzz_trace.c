/*
 * fuzz_trace.c - libFuzzer target for the W3C Trace Context parsers
 * (movie/trace.h): traceparent and tracestate come from any client.
 *
 * Checks beyond "no crash": an accepted traceparent has non-zero ids and a
 * version-00 one formats back to exactly its input; a filtered tracestate
 * holds at most 32 members in 512 bytes, is itself accepted unchanged by the
 * filter (a fixed point), and never contains bytes outside 0x20..0x7e.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "movie/trace.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parent(const char *s, size_t len)
{
	struct trace_parent p;
	if (trace_parent_parse(s, len, &p) != 0)
		return;
	uint8_t zero[TRACE_ID_SIZE] = {0};
	if (memcmp(p.trace_id, zero, TRACE_ID_SIZE) == 0 ||
	    memcmp(p.parent_id, zero, TRACE_SPAN_ID_SIZE) == 0)
		abort();
	if (s[0] == '0' && s[1] == '0') {
		char out[TRACE_PARENT_LEN + 1];
		trace_parent_format(p.trace_id, p.parent_id, p.flags, out);
		/* Only the sampled bit is formatted: compare the rest. */
		if (len != TRACE_PARENT_LEN || memcmp(out, s, 53) != 0)
			abort();
	}
}

static void check_state(const char *s, size_t len)
{
	char out[TRACE_STATE_MAX_BYTES + 1];
	int n = trace_state_filter(s, len, out);
	if (n < 0)
		return;
	if ((size_t)n > TRACE_STATE_MAX_BYTES || strlen(out) != (size_t)n)
		abort();
	size_t members = n ? 1 : 0;
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];
		if (c < 0x20 || c > 0x7e)
			abort();
		members += c == ',';
	}
	if (members > TRACE_STATE_MAX_MEMBERS)
		abort();
	char again[TRACE_STATE_MAX_BYTES + 1];
	if (trace_state_filter(out, (size_t)n, again) != n || strcmp(again, out) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* First byte picks the parser, so that one corpus covers both. */
	if (size == 0)
		return 0;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	if (data[0] & 1)
		check_state(s, size - 1);
	else
		check_parent(s, size - 1);
	free(s);
	return 0;
}
