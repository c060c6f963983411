#include <stdint.h>
#include <string.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "../testing.h"

static void test_timeout_parse(void)
{
	int64_t ns = 0;
	CHECK_INT_EQ(grpc_timeout_parse("100m", 4, &ns), 0);
	CHECK_INT_EQ(ns, 100000000LL);
	CHECK_INT_EQ(grpc_timeout_parse("5S", 2, &ns), 0);
	CHECK_INT_EQ(ns, 5000000000LL);
	CHECK_INT_EQ(grpc_timeout_parse("2H", 2, &ns), 0);
	CHECK_INT_EQ(ns, 7200000000000LL);
	CHECK_INT_EQ(grpc_timeout_parse("1n", 2, &ns), 0);
	CHECK_INT_EQ(ns, 1);
	CHECK_INT_EQ(grpc_timeout_parse("99999999H", 9, &ns), 0);
	CHECK(ns == INT64_MAX);
	CHECK_INT_EQ(grpc_timeout_parse("123456789S", 10, &ns), MV_EINVAL); /* 9 digits */
	CHECK_INT_EQ(grpc_timeout_parse("S", 1, &ns), MV_EINVAL);
	CHECK_INT_EQ(grpc_timeout_parse("10x", 3, &ns), MV_EINVAL);
	CHECK_INT_EQ(grpc_timeout_parse("-1S", 3, &ns), MV_EINVAL);
	CHECK_INT_EQ(grpc_timeout_parse("1 S", 3, &ns), MV_EINVAL);
}

static void test_timeout_format_rounds_down(void)
{
	char out[16];
	CHECK_INT_EQ(grpc_timeout_format(1500, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "1500n");
	CHECK_INT_EQ(grpc_timeout_format(123456789012LL, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "123456m"); /* 123456789 us has 9 digits: milliseconds, rounded down */
	int64_t back = 0;
	CHECK_INT_EQ(grpc_timeout_parse(out, strlen(out), &back), 0);
	CHECK(back <= 123456789012LL);
	CHECK_INT_EQ(grpc_timeout_format(-1, out, sizeof(out)), MV_EINVAL);
}

static void test_message_encoding(void)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT_EQ(grpc_message_encode("50% off\n\xc3\xa9", &b), 0);
	CHECK_STR_EQ(b.data, "50%25 off%0A%C3%A9");
	char out[64];
	grpc_message_decode(b.data, b.len, out, sizeof(out));
	CHECK_STR_EQ(out, "50% off\n\xc3\xa9");
	grpc_message_decode("bad %zz %4", 10, out, sizeof(out));
	CHECK_STR_EQ(out, "bad %zz %4");
	buf_release(&b);
}

static void test_framing(void)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT_EQ(grpc_frame_append(&b, (const uint8_t *)"hello", 5), 0);
	CHECK_INT_EQ(b.len, 10);
	const uint8_t *msg;
	size_t len;
	const uint8_t *p = (const uint8_t *)b.data;
	CHECK_INT_EQ(grpc_frame_decode_single(p, b.len, 100, &msg, &len), 0);
	CHECK_INT_EQ(len, 5);
	CHECK(memcmp(msg, "hello", 5) == 0);
	CHECK_INT_EQ(grpc_frame_decode_single(p, 4, 100, &msg, &len), MV_EAGAIN);
	CHECK_INT_EQ(grpc_frame_decode_single(p, 9, 100, &msg, &len), MV_EAGAIN);
	CHECK_INT_EQ(grpc_frame_decode_single(p, b.len, 4, &msg, &len), MV_ETOOBIG);
	buf_append(&b, "x", 1);
	CHECK_INT_EQ(grpc_frame_decode_single((const uint8_t *)b.data, b.len, 100, &msg, &len),
	             MV_EPROTO);
	uint8_t compressed[6] = {1, 0, 0, 0, 1, 'z'};
	CHECK_INT_EQ(grpc_frame_decode_single(compressed, 6, 100, &msg, &len), MV_EPROTO);
	uint8_t empty[5] = {0, 0, 0, 0, 0};
	CHECK_INT_EQ(grpc_frame_decode_single(empty, 5, 100, &msg, &len), 0);
	CHECK_INT_EQ(len, 0);
	buf_release(&b);
}

static void test_status_names(void)
{
	CHECK_STR_EQ(grpc_status_name(0), "OK");
	CHECK_STR_EQ(grpc_status_name(5), "NOT_FOUND");
	CHECK_STR_EQ(grpc_status_name(16), "UNAUTHENTICATED");
	CHECK_STR_EQ(grpc_status_name(17), "UNKNOWN");
	CHECK_STR_EQ(grpc_status_name(-1), "UNKNOWN");
	CHECK_INT_EQ(grpc_status_from_err(MV_ENOTFOUND), GRPC_STATUS_NOT_FOUND);
	CHECK_INT_EQ(grpc_status_from_err(MV_EUNAVAIL), GRPC_STATUS_UNAVAILABLE);
	CHECK_INT_EQ(grpc_status_from_err(MV_ETIMEDOUT), GRPC_STATUS_DEADLINE_EXCEEDED);
	CHECK_INT_EQ(grpc_status_from_err(MV_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
	CHECK_INT_EQ(grpc_status_from_err(MV_ENOMEM), GRPC_STATUS_RESOURCE_EXHAUSTED);
}

int main(void)
{
	RUN(test_timeout_parse);
	RUN(test_timeout_format_rounds_down);
	RUN(test_message_encoding);
	RUN(test_framing);
	RUN(test_status_names);
	return TEST_SUMMARY();
}
