/* gRPC client policy: retry budget, retry/reconnect backoff, grpc-timeout of a
 * deadline. Pure functions of their arguments (randomness is passed in), so
 * they are tested exactly. */
#include "movie/grpc_client.h"

#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/banned.h"

void grpc_retry_budget_init(struct grpc_retry_budget *b, double max_tokens, double ratio)
{
	b->max_tokens = max_tokens;
	b->tokens = max_tokens;
	b->ratio = ratio;
}

void grpc_retry_budget_on_success(struct grpc_retry_budget *b)
{
	b->tokens += b->ratio;
	if (b->tokens > b->max_tokens)
		b->tokens = b->max_tokens;
}

void grpc_retry_budget_on_failure(struct grpc_retry_budget *b)
{
	b->tokens -= 1.0;
	if (b->tokens < 0.0)
		b->tokens = 0.0;
}

bool grpc_retry_budget_allows(const struct grpc_retry_budget *b)
{
	return b->tokens > b->max_tokens / 2.0;
}

int64_t grpc_backoff_ms(int retry, int64_t base_ms, int64_t cap_ms, double jitter, double rnd)
{
	if (retry < 1)
		retry = 1;
	if (base_ms < 0)
		base_ms = 0;
	if (cap_ms < base_ms)
		cap_ms = base_ms;
	int64_t d = base_ms;
	/* Double until the cap; stop early so the shift never overflows. */
	for (int i = 1; i < retry && d < cap_ms; i++)
		d *= 2;
	if (d > cap_ms)
		d = cap_ms;
	if (jitter < 0.0)
		jitter = 0.0;
	if (jitter > 1.0)
		jitter = 1.0;
	if (!(rnd >= 0.0) || rnd >= 1.0)
		rnd = 0.5;
	double factor = 1.0 - jitter + 2.0 * jitter * rnd;
	return (int64_t)((double)d * factor);
}

int grpc_deadline_header(int64_t deadline_ns, int64_t now_ns, char *out, size_t out_size)
{
	if (deadline_ns <= now_ns)
		return MV_ETIMEDOUT;
	/* grpc_timeout_format rounds down: the server's deadline never ends after ours. */
	return grpc_timeout_format(deadline_ns - now_ns, out, out_size);
}

int grpc_status_from_http(int http)
{
	switch (http) {
	case 400: return GRPC_STATUS_INTERNAL;
	case 401: return GRPC_STATUS_UNAUTHENTICATED;
	case 403: return GRPC_STATUS_PERMISSION_DENIED;
	case 404: return GRPC_STATUS_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504: return GRPC_STATUS_UNAVAILABLE;
	default: return GRPC_STATUS_UNKNOWN;
	}
}
