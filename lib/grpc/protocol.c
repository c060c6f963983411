/* gRPC protocol helpers shared by server and client: status names, grpc-timeout,
 * grpc-message percent-encoding, length-prefixed framing. No I/O. */
#include "movie/grpc.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/banned.h"

#define STATUS_NAME(sym, num, name, label) [num] = name,
static const char *const status_names[GRPC_STATUS_COUNT] = {GRPC_STATUS_CODES(STATUS_NAME)};
#undef STATUS_NAME
#define STATUS_ONE(sym, num, name, label) +1
_Static_assert(0 GRPC_STATUS_CODES(STATUS_ONE) == GRPC_STATUS_COUNT, "GRPC_STATUS_COUNT");
#undef STATUS_ONE

const char *grpc_status_name(int status)
{
	if (status < 0 || status >= GRPC_STATUS_COUNT)
		return "UNKNOWN";
	return status_names[status];
}

/* grpc-go's codes.Code.String(), which go-grpc-prometheus puts in grpc_code. */
#define STATUS_LABEL(sym, num, name, label) [num] = label,
static const char *const status_labels[GRPC_STATUS_COUNT] = {GRPC_STATUS_CODES(STATUS_LABEL)};
#undef STATUS_LABEL

const char *grpc_status_label(int status)
{
	if (status < 0 || status >= GRPC_STATUS_COUNT)
		return "Unknown";
	return status_labels[status];
}

int grpc_status_from_err(int err)
{
	switch (err) {
	case MV_OK: return GRPC_STATUS_OK;
	case MV_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
	case MV_EUNAVAIL: return GRPC_STATUS_UNAVAILABLE;
	case MV_ECLOSED: return GRPC_STATUS_UNAVAILABLE;
	case MV_ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
	case MV_EINVAL:
	case MV_ERANGE: return GRPC_STATUS_INVALID_ARGUMENT;
	case MV_ENOMEM: /* the out-of-memory policy: docs/internals/core.md */
	case MV_ETOOBIG: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	default: return GRPC_STATUS_INTERNAL;
	}
}

int grpc_timeout_parse(const char *value, size_t len, int64_t *out_ns)
{
	/* Spec: TimeoutValue is at most 8 ASCII digits, then one unit. */
	if (len < 2 || len > 9)
		return MV_EINVAL;
	int64_t n = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (value[i] < '0' || value[i] > '9')
			return MV_EINVAL;
		n = n * 10 + (value[i] - '0');
	}
	int64_t unit;
	switch (value[len - 1]) {
	case 'H': unit = 3600LL * 1000000000LL; break;
	case 'M': unit = 60LL * 1000000000LL; break;
	case 'S': unit = 1000000000LL; break;
	case 'm': unit = 1000000LL; break;
	case 'u': unit = 1000LL; break;
	case 'n': unit = 1LL; break;
	default: return MV_EINVAL;
	}
	/* 99,999,999 hours overflows int64 ns: saturate to "effectively none". */
	if (n > INT64_MAX / unit)
		*out_ns = INT64_MAX;
	else
		*out_ns = n * unit;
	return 0;
}

int grpc_timeout_format(int64_t ns, char *out, size_t out_size)
{
	static const struct {
		char unit;
		int64_t ns;
	} units[] = {{'n', 1},
	             {'u', 1000},
	             {'m', 1000000},
	             {'S', 1000000000LL},
	             {'M', 60000000000LL},
	             {'H', 3600000000000LL}};
	if (ns < 0 || out_size < 16)
		return MV_EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		/* Round down: a propagated deadline must never end later than ours. */
		int64_t v = ns / units[i].ns;
		if (v <= 99999999) {
			snprintf(out, out_size, "%lld%c", (long long)v, units[i].unit);
			return 0;
		}
	}
	snprintf(out, out_size, "99999999H");
	return 0;
}

int grpc_message_encode(const char *msg, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
		int rc;
		if (*p < 0x20 || *p > 0x7e || *p == '%') {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			rc = buf_append(out, esc, 3);
		} else {
			rc = buf_append(out, p, 1);
		}
		if (rc)
			return rc;
	}
	if (!out->data)
		return buf_append(out, "", 0);
	return 0;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void grpc_message_decode(const char *in, size_t len, char *out, size_t out_size)
{
	size_t o = 0;
	if (out_size == 0)
		return;
	for (size_t i = 0; i < len && o + 1 < out_size; i++) {
		if (in[i] == '%' && i + 2 < len && hex_value(in[i + 1]) >= 0 &&
		    hex_value(in[i + 2]) >= 0) {
			out[o++] = (char)(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
}

int grpc_frame_append(struct buf *out, const uint8_t *msg, size_t len)
{
	if (len > 0xffffffffu)
		return MV_ETOOBIG;
	uint8_t header[GRPC_FRAME_HEADER] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
	                                     (uint8_t)(len >> 8), (uint8_t)len};
	int rc = buf_reserve(out, GRPC_FRAME_HEADER + len);
	if (rc)
		return rc;
	buf_append(out, header, sizeof(header));
	return buf_append(out, msg, len);
}

int grpc_frame_decode_single(const uint8_t *data, size_t len, size_t max_message,
                             const uint8_t **msg, size_t *msg_len)
{
	if (len < GRPC_FRAME_HEADER)
		return MV_EAGAIN;
	size_t declared = ((size_t)data[1] << 24) | ((size_t)data[2] << 16) |
	                  ((size_t)data[3] << 8) | (size_t)data[4];
	if (declared > max_message)
		return MV_ETOOBIG;
	if (data[0] != 0)
		return MV_EPROTO;
	if (len - GRPC_FRAME_HEADER < declared)
		return MV_EAGAIN;
	if (len - GRPC_FRAME_HEADER > declared)
		return MV_EPROTO;
	*msg = data + GRPC_FRAME_HEADER;
	*msg_len = declared;
	return 0;
}

int64_t grpc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
