#include <stdlib.h>
#include <string.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "../testing.h"

static void test_append_and_limit(void)
{
	struct buf b;
	buf_init(&b, 8);
	CHECK_INT_EQ(buf_append(&b, "abcd", 4), 0);
	CHECK_INT_EQ(buf_append(&b, "efgh", 4), 0);
	CHECK_INT_EQ(buf_append(&b, "i", 1), MV_ETOOBIG);
	CHECK_INT_EQ(b.len, 8);
	CHECK_STR_EQ(b.data, "abcdefgh");
	buf_consume(&b, 3);
	CHECK_STR_EQ(b.data, "defgh");
	buf_release(&b);
}

static void test_printf_long(void)
{
	struct buf b;
	buf_init(&b, 0);
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(buf_printf(&b, "%s-%d", big, 42), 0);
	CHECK_INT_EQ(b.len, 999 + 3);
	CHECK(strcmp(b.data + 999, "-42") == 0);
	buf_release(&b);
}

static void test_json_string(void)
{
	struct buf b;
	buf_init(&b, 0);
	const char in[] = "a\"b\\c\n\x01\xff\xc3\xa9";
	CHECK_INT_EQ(buf_append_json_string(&b, in, sizeof(in) - 1), 0);
	CHECK_STR_EQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\xef\xbf\xbd\xc3\xa9\"");
	buf_release(&b);
}

static void test_append_utf8_repairs(void)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT_EQ(buf_append_utf8(&b, "ok \xc3\xa9", 5), 0);
	CHECK_STR_EQ(b.data, "ok \xc3\xa9");
	buf_reset(&b);
	CHECK_INT_EQ(buf_append_utf8(&b, "T\xfe\xfe!", 4), 0);
	CHECK_STR_EQ(b.data, "T\xef\xbf\xbd\xef\xbf\xbd!");
	buf_reset(&b);
	CHECK_INT_EQ(buf_append_utf8(&b, "caf\xc3", 4), 0); /* truncated sequence */
	CHECK_STR_EQ(b.data, "caf\xef\xbf\xbd");
	buf_release(&b);

	buf_init(&b, 4);
	CHECK_INT_EQ(buf_append_utf8(&b, "\xff\xff", 2), MV_ETOOBIG);
	CHECK_INT_EQ(b.len, 0);
	buf_release(&b);
}

int main(void)
{
	RUN(test_append_utf8_repairs);
	RUN(test_append_and_limit);
	RUN(test_printf_long);
	RUN(test_json_string);
	return TEST_SUMMARY();
}
