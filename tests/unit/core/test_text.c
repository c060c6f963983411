#include <stdint.h>
#include <string.h>

#include "movie.pb-c.h"
#include "movie/err.h"
#include "movie/text.h"
#include "../testing.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static void test_utf8_valid(void)
{
	CHECK(text_utf8_valid(NULL, 0));
	CHECK(text_utf8_valid(S("plain ascii")));
	CHECK(text_utf8_valid(S("Am\xc3\xa9lie \xf0\x9f\x8e\xac"))); /* é, U+1F3AC */
	CHECK(text_utf8_valid(S("\xef\xbf\xbf\xf4\x8f\xbf\xbf")));   /* U+FFFF, U+10FFFF */
	CHECK(text_utf8_valid(S("a\0b")));                           /* NUL is UTF-8 */
	CHECK(!text_utf8_valid(S("\xff")));                          /* never a lead byte */
	CHECK(!text_utf8_valid(S("\x80")));                          /* lone continuation */
	CHECK(!text_utf8_valid(S("caf\xc3")));                       /* truncated */
	CHECK(!text_utf8_valid(S("\xc3(")));                         /* bad continuation */
	CHECK(!text_utf8_valid(S("\xc0\xaf")));                      /* overlong '/' */
	CHECK(!text_utf8_valid(S("\xe0\x80\xaf")));                  /* overlong, 3 bytes */
	CHECK(!text_utf8_valid(S("\xf0\x80\x80\xaf")));              /* overlong, 4 bytes */
	CHECK(!text_utf8_valid(S("\xed\xa0\x80")));                  /* surrogate U+D800 */
	CHECK(!text_utf8_valid(S("\xf4\x90\x80\x80")));              /* above U+10FFFF */
	CHECK(!text_utf8_valid(S("\xf5\x80\x80\x80")));
}

static void test_check_free_text(void)
{
	CHECK(text_check(S("line 1\nline 2\ttab\r")) == NULL);
	CHECK(text_check(S("\xc2\x85")) == NULL); /* U+0085 is text, not an id */
	CHECK_STR_EQ(text_check(S("Before\0After")), "contains a NUL byte");
	CHECK_STR_EQ(text_check(S("T\xfe")), "invalid UTF-8");
}

static void test_check_id(void)
{
	CHECK(text_check_id(S("m-\xc3\xbc 42")) == NULL);
	CHECK_STR_EQ(text_check_id(S("victim\0attacker")), "contains a control character");
	CHECK_STR_EQ(text_check_id(S("a\nb")), "contains a control character");
	CHECK_STR_EQ(text_check_id(S("\x1b[31m")), "contains a control character");
	CHECK_STR_EQ(text_check_id(S("\x7f")), "contains a control character");
	CHECK_STR_EQ(text_check_id(S("a\xc2\x9f")), "contains a control character"); /* C1 */
	CHECK_STR_EQ(text_check_id(S("m\xff")), "invalid UTF-8");
}

/* Pack a PutMetadataRequest whose strings carry their full length, as a client
 * on the wire can (protobuf-c itself would stop at the NUL). */
static size_t put_request(uint8_t *out, const char *id, size_t id_len, const char *title,
                          size_t title_len)
{
	size_t inner = 2 + id_len + 2 + title_len, n = 0;
	out[n++] = 0x0a; /* field 1, LEN: metadata */
	out[n++] = (uint8_t)inner;
	out[n++] = 0x0a; /* Metadata.id */
	out[n++] = (uint8_t)id_len;
	memcpy(out + n, id, id_len);
	n += id_len;
	out[n++] = 0x12; /* Metadata.title */
	out[n++] = (uint8_t)title_len;
	memcpy(out + n, title, title_len);
	return n + title_len;
}

static void test_pb_check(void)
{
	uint8_t msg[128];
	const char *field = NULL, *why = NULL;
	const ProtobufCMessageDescriptor *d = &put_metadata_request__descriptor;

	size_t n = put_request(msg, S("m1"), S("Dune"));
	CHECK_INT_EQ(text_pb_check(d, msg, n, &field, &why), 0);
	CHECK_INT_EQ(text_pb_check(d, NULL, 0, &field, &why), 0);

	n = put_request(msg, S("m1"), S("Dune\0 Part Two"));
	CHECK_INT_EQ(text_pb_check(d, msg, n, &field, &why), MV_EINVAL);
	CHECK_STR_EQ(field, "title");
	CHECK_STR_EQ(why, "contains a NUL byte");

	n = put_request(msg, S("m\xff"), S("Dune"));
	CHECK_INT_EQ(text_pb_check(d, msg, n, &field, &why), MV_EINVAL);
	CHECK_STR_EQ(field, "id");
	CHECK_STR_EQ(why, "invalid UTF-8");

	/* Unknown fields and non-string LEN fields are not text. */
	const uint8_t unknown[] = {0x7a, 0x01, 0xff, 0x08, 0x96, 0x01, 0x0d, 1, 2, 3, 4};
	CHECK_INT_EQ(text_pb_check(d, unknown, sizeof(unknown), NULL, NULL), 0);

	/* Malformed: truncated LEN, length past the end, unterminated varint, group. */
	const uint8_t trunc[] = {0x0a};
	const uint8_t past[] = {0x0a, 0x05, 0x0a};
	const uint8_t varint[] = {0x08, 0xff, 0xff};
	const uint8_t group[] = {0x0b, 0x0c};
	CHECK_INT_EQ(text_pb_check(d, trunc, sizeof(trunc), NULL, NULL), MV_EPROTO);
	CHECK_INT_EQ(text_pb_check(d, past, sizeof(past), NULL, NULL), MV_EPROTO);
	CHECK_INT_EQ(text_pb_check(d, varint, sizeof(varint), NULL, NULL), MV_EPROTO);
	CHECK_INT_EQ(text_pb_check(d, group, sizeof(group), NULL, NULL), MV_EPROTO);

	/* The ratings request: strings at the top level. */
	const uint8_t rating[] = {0x0a, 0x03, 'u', 0x00, 'x', 0x20, 0x05};
	CHECK_INT_EQ(
	    text_pb_check(&put_rating_request__descriptor, rating, sizeof(rating), &field, &why),
	    MV_EINVAL);
	CHECK_STR_EQ(field, "user_id");
}

int main(void)
{
	RUN(test_utf8_valid);
	RUN(test_check_free_text);
	RUN(test_check_id);
	RUN(test_pb_check);
	return TEST_SUMMARY();
}
