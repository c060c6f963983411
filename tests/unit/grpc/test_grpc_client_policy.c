/* Client policy: retry budget, backoff, grpc-timeout of a deadline. */
#include <math.h>

#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/grpc_client.h"
#include "../testing.h"
#include "movie/banned.h"

static void test_budget_exhaustion(void)
{
	struct grpc_retry_budget b;
	grpc_retry_budget_init(&b, 10.0, 0.2);
	CHECK(grpc_retry_budget_allows(&b));
	/* 10 -> 6: still above half (5). */
	for (int i = 0; i < 4; i++)
		grpc_retry_budget_on_failure(&b);
	CHECK(fabs(b.tokens - 6.0) < 1e-9);
	CHECK(grpc_retry_budget_allows(&b));
	grpc_retry_budget_on_failure(&b); /* 5: not > 5 */
	CHECK(fabs(b.tokens - 5.0) < 1e-9);
	CHECK(!grpc_retry_budget_allows(&b));
	/* Never below zero. */
	for (int i = 0; i < 20; i++)
		grpc_retry_budget_on_failure(&b);
	CHECK(b.tokens == 0.0);
	CHECK(!grpc_retry_budget_allows(&b));
}

static void test_budget_refill(void)
{
	struct grpc_retry_budget b;
	grpc_retry_budget_init(&b, 10.0, 0.25); /* 0.25 is exact in binary */
	for (int i = 0; i < 5; i++)
		grpc_retry_budget_on_failure(&b);
	CHECK(b.tokens == 5.0);
	CHECK(!grpc_retry_budget_allows(&b));
	grpc_retry_budget_on_success(&b); /* 5.25 */
	CHECK(b.tokens == 5.25);
	CHECK(grpc_retry_budget_allows(&b));
	/* Exactly 4 successes per failure keep the level. */
	grpc_retry_budget_on_failure(&b);
	CHECK(b.tokens == 4.25);
	CHECK(!grpc_retry_budget_allows(&b));
	for (int i = 0; i < 4; i++)
		grpc_retry_budget_on_success(&b);
	CHECK(b.tokens == 5.25);
	/* Capped at max_tokens. */
	for (int i = 0; i < 100; i++)
		grpc_retry_budget_on_success(&b);
	CHECK(b.tokens == 10.0);
}

static void test_backoff_growth_and_cap(void)
{
	/* rnd 0.5 = factor 1.0 whatever the jitter. */
	CHECK_INT_EQ(grpc_backoff_ms(1, 10, 200, 0.5, 0.5), 10);
	CHECK_INT_EQ(grpc_backoff_ms(2, 10, 200, 0.5, 0.5), 20);
	CHECK_INT_EQ(grpc_backoff_ms(3, 10, 200, 0.5, 0.5), 40);
	CHECK_INT_EQ(grpc_backoff_ms(5, 10, 200, 0.5, 0.5), 160);
	CHECK_INT_EQ(grpc_backoff_ms(6, 10, 200, 0.5, 0.5), 200);
	CHECK_INT_EQ(grpc_backoff_ms(1000, 10, 200, 0.0, 0.9), 200);
	CHECK_INT_EQ(grpc_backoff_ms(0, 10, 200, 0.0, 0.0), 10);
	CHECK_INT_EQ(grpc_backoff_ms(4, 50, 2000, 0.0, 0.3), 400);
}

static void test_backoff_jitter_range(void)
{
	/* factor = 1 - j + 2 j rnd: rnd 0 -> 0.8, rnd -> 1 approaches 1.2. */
	CHECK_INT_EQ(grpc_backoff_ms(3, 10, 200, 0.2, 0.0), 32);
	CHECK_INT_EQ(grpc_backoff_ms(3, 10, 200, 0.2, 0.75), 44);
	int64_t lo = INT64_MAX, hi = 0;
	for (int i = 0; i < 1000; i++) {
		double rnd = (double)i / 1000.0;
		int64_t v = grpc_backoff_ms(6, 10, 200, 0.5, rnd);
		CHECK(v >= 100 && v < 300);
		if (v < lo)
			lo = v;
		if (v > hi)
			hi = v;
	}
	CHECK_INT_EQ(lo, 100);
	CHECK_INT_EQ(hi, 299);
	/* Out-of-range inputs are clamped, not trusted. */
	CHECK_INT_EQ(grpc_backoff_ms(1, 100, 100, 5.0, 0.0), 0);
	CHECK_INT_EQ(grpc_backoff_ms(1, 100, 100, 0.5, 1.5), 100);
}

static void test_deadline_header(void)
{
	char out[24];
	int64_t now = 5000000000LL;
	CHECK_INT_EQ(grpc_deadline_header(now + 250000000LL, now, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "250000u");
	/* 8 digits of ns still fit; one ns more switches to whole us, rounded down. */
	CHECK_INT_EQ(grpc_deadline_header(now + 99999999LL, now, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "99999999n");
	CHECK_INT_EQ(grpc_deadline_header(now + 100000001LL, now, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "100000u");
	CHECK_INT_EQ(grpc_deadline_header(now + 1, now, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "1n");
	int64_t ns;
	CHECK_INT_EQ(grpc_deadline_header(now + 3600LL * 1000000000LL + 7, now, out, sizeof(out)),
	             0);
	CHECK_INT_EQ(grpc_timeout_parse(out, strlen(out), &ns), 0);
	CHECK(ns <= 3600LL * 1000000000LL + 7 && ns > 3599LL * 1000000000LL);
	CHECK_INT_EQ(grpc_deadline_header(now, now, out, sizeof(out)), MV_ETIMEDOUT);
	CHECK_INT_EQ(grpc_deadline_header(now - 1, now, out, sizeof(out)), MV_ETIMEDOUT);
	CHECK_INT_EQ(grpc_deadline_header(now + 1000, now, out, 8), MV_EINVAL);
}

static void test_status_from_http(void)
{
	CHECK_INT_EQ(grpc_status_from_http(400), GRPC_STATUS_INTERNAL);
	CHECK_INT_EQ(grpc_status_from_http(401), GRPC_STATUS_UNAUTHENTICATED);
	CHECK_INT_EQ(grpc_status_from_http(403), GRPC_STATUS_PERMISSION_DENIED);
	CHECK_INT_EQ(grpc_status_from_http(404), GRPC_STATUS_UNIMPLEMENTED);
	CHECK_INT_EQ(grpc_status_from_http(429), GRPC_STATUS_UNAVAILABLE);
	CHECK_INT_EQ(grpc_status_from_http(502), GRPC_STATUS_UNAVAILABLE);
	CHECK_INT_EQ(grpc_status_from_http(503), GRPC_STATUS_UNAVAILABLE);
	CHECK_INT_EQ(grpc_status_from_http(504), GRPC_STATUS_UNAVAILABLE);
	CHECK_INT_EQ(grpc_status_from_http(500), GRPC_STATUS_UNKNOWN);
	CHECK_INT_EQ(grpc_status_from_http(415), GRPC_STATUS_UNKNOWN);
	CHECK_INT_EQ(grpc_status_from_http(0), GRPC_STATUS_UNKNOWN);
}

int main(void)
{
	RUN(test_budget_exhaustion);
	RUN(test_budget_refill);
	RUN(test_backoff_growth_and_cap);
	RUN(test_backoff_jitter_range);
	RUN(test_deadline_header);
	RUN(test_status_from_http);
	return TEST_SUMMARY();
}
