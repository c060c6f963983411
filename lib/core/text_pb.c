/*
 * text_pb.c - the string rules of movie/text.h applied to protobuf wire bytes
 * (text_pb_check). Kept apart from text.c, which needs no protobuf-c: the
 * MariaDB store modules compile text.c (through buf.c) in.
 */
#include <stdbool.h>

#include <protobuf-c/protobuf-c.h>

#include "movie/err.h"
#include "movie/text.h"

#include "movie/banned.h"

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return MV_EPROTO;
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return MV_EPROTO; /* more than 10 bytes */
}

static int walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                int depth, const char **field, const char **why)
{
	if (depth > TEXT_PB_MAX_DEPTH)
		return MV_EPROTO;
	while (p < end) {
		uint64_t key, n;
		if (read_varint(&p, end, &key) != 0)
			return MV_EPROTO;
		uint64_t number = key >> 3;
		switch (key & 7) {
		case 0:
			if (read_varint(&p, end, &n) != 0)
				return MV_EPROTO;
			break;
		case 1:
			if ((size_t)(end - p) < 8)
				return MV_EPROTO;
			p += 8;
			break;
		case 5:
			if ((size_t)(end - p) < 4)
				return MV_EPROTO;
			p += 4;
			break;
		case 2: {
			if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
				return MV_EPROTO;
			const ProtobufCFieldDescriptor *f =
			    number <= UINT32_MAX
			        ? protobuf_c_message_descriptor_get_field(desc, (unsigned)number)
			        : NULL;
			if (f && f->type == PROTOBUF_C_TYPE_STRING) {
				const char *bad = text_check(p, (size_t)n);
				if (bad) {
					if (field)
						*field = f->name;
					if (why)
						*why = bad;
					return MV_EINVAL;
				}
			} else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor) {
				int rc = walk(f->descriptor, p, p + n, depth + 1, field, why);
				if (rc)
					return rc;
			}
			p += n;
			break;
		}
		default: return MV_EPROTO; /* groups (3, 4) are not proto3; 6, 7 do not exist */
		}
	}
	return 0;
}

int text_pb_check(const struct ProtobufCMessageDescriptor *desc, const uint8_t *msg, size_t len,
                  const char **field, const char **why)
{
	if (len == 0)
		return 0;
	if (!msg)
		return MV_EPROTO;
	return walk(desc, msg, msg + len, 0, field, why);
}
