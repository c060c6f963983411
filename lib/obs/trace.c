/* W3C Trace Context codec, spans and ids (see trace.h); the exporter is in
 * trace_export.c. */
#include "movie/trace.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/prng.h"
#include "trace_internal.h"

#include "movie/banned.h"

static int hex_value(char c)
{
	/* Lowercase only: the spec says uppercase hex is invalid (3.2.2). */
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* n bytes from 2n hex chars; false on a bad char. */
static bool parse_hex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

int trace_parent_parse(const char *s, size_t len, struct trace_parent *out)
{
	if (!s || len < TRACE_PARENT_LEN)
		return MV_EINVAL;
	uint8_t version;
	if (!parse_hex(s, &version, 1) || version == 0xff)
		return MV_EINVAL;
	/* Version 00 is exactly 55 bytes. A later version may append fields
	 * after a '-' and is read with the 00 layout (spec 3.2.4). */
	if (version == 0 && len != TRACE_PARENT_LEN)
		return MV_EINVAL;
	if (version != 0 && len > TRACE_PARENT_LEN && s[TRACE_PARENT_LEN] != '-')
		return MV_EINVAL;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return MV_EINVAL;
	struct trace_parent p;
	if (!parse_hex(s + 3, p.trace_id, TRACE_ID_SIZE) ||
	    !parse_hex(s + 36, p.parent_id, TRACE_SPAN_ID_SIZE) || !parse_hex(s + 53, &p.flags, 1))
		return MV_EINVAL;
	if (all_zero(p.trace_id, TRACE_ID_SIZE) || all_zero(p.parent_id, TRACE_SPAN_ID_SIZE))
		return MV_EINVAL;
	*out = p;
	return 0;
}

void trace_hex(const uint8_t *id, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[2 * n] = '\0';
}

void trace_parent_format(const uint8_t trace_id[TRACE_ID_SIZE],
                         const uint8_t span_id[TRACE_SPAN_ID_SIZE], uint8_t flags, char *out)
{
	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
	trace_hex(trace_id, TRACE_ID_SIZE, out + 3);
	out[35] = '-';
	trace_hex(span_id, TRACE_SPAN_ID_SIZE, out + 36);
	out[52] = '-';
	uint8_t f = flags & TRACE_FLAG_SAMPLED;
	trace_hex(&f, 1, out + 53);
}

/* ---- tracestate (spec 3.3.1) ---- */

static bool key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
	       c == '*' || c == '/';
}

/* key = simple-key / multi-tenant-key:
 *   simple-key       = lcalpha 0*255(keychar)
 *   multi-tenant-key = (lcalpha / DIGIT) 0*240(keychar) "@" lcalpha 0*13(keychar) */
static bool valid_key(const char *k, size_t n)
{
	if (n == 0)
		return false;
	const char *at = memchr(k, '@', n);
	if (!at) {
		if (n > 256 || !(k[0] >= 'a' && k[0] <= 'z'))
			return false;
		for (size_t i = 1; i < n; i++)
			if (!key_char(k[i]))
				return false;
		return true;
	}
	size_t tn = (size_t)(at - k), sn = n - tn - 1;
	if (tn == 0 || tn > 241 || sn == 0 || sn > 14)
		return false;
	if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9')))
		return false;
	for (size_t i = 1; i < tn; i++)
		if (!key_char(k[i]))
			return false;
	const char *sys = at + 1;
	if (!(sys[0] >= 'a' && sys[0] <= 'z'))
		return false;
	for (size_t i = 1; i < sn; i++)
		if (!key_char(sys[i]))
			return false;
	return true;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E */
static bool valid_value(const char *v, size_t n)
{
	if (n == 0 || n > 256)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
			return false;
	}
	return v[n - 1] != ' ';
}

struct member {
	const char *s;
	size_t len;    /* key=value */
	size_t keylen; /* key */
};

int trace_state_filter(const char *in, size_t len, char *out)
{
	out[0] = '\0';
	if (!in || len > TRACE_STATE_RAW_MAX)
		return MV_EINVAL;
	struct member m[TRACE_STATE_MAX_MEMBERS];
	size_t count = 0;
	size_t pos = 0;
	while (pos <= len) {
		const char *comma = memchr(in + pos, ',', len - pos);
		size_t end = comma ? (size_t)(comma - in) : len;
		size_t a = pos, b = end;
		/* OWS = *(SP / HTAB) around each member. */
		while (a < b && (in[a] == ' ' || in[a] == '\t'))
			a++;
		while (b > a && (in[b - 1] == ' ' || in[b - 1] == '\t'))
			b--;
		if (b > a) {
			const char *eq = memchr(in + a, '=', b - a);
			if (!eq)
				return MV_EINVAL;
			size_t kl = (size_t)(eq - (in + a));
			if (!valid_key(in + a, kl) || !valid_value(eq + 1, b - a - kl - 1))
				return MV_EINVAL;
			for (size_t i = 0; i < count; i++)
				if (m[i].keylen == kl && memcmp(m[i].s, in + a, kl) == 0)
					return MV_EINVAL; /* duplicate key */
			/* Past 32 members the right-most go (3.3.1.5); the rest of
			 * the list is still checked, duplicates against the kept. */
			if (count < TRACE_STATE_MAX_MEMBERS)
				m[count++] = (struct member){in + a, b - a, kl};
		}
		if (!comma)
			break;
		pos = end + 1;
	}
	size_t total = 0;
	for (size_t i = 0; i < count; i++)
		total += m[i].len + (i ? 1 : 0);
	/* Over 512 bytes: long members first, then from the right (3.3.1.5). */
	while (total > TRACE_STATE_MAX_BYTES) {
		size_t drop = count - 1;
		for (size_t i = 0; i < count; i++) {
			if (m[i].len > TRACE_STATE_LONG_MEMBER) {
				drop = i;
				break;
			}
		}
		total -= m[drop].len + (count > 1 ? 1 : 0);
		memmove(&m[drop], &m[drop + 1], (count - drop - 1) * sizeof(m[0]));
		count--;
	}
	size_t o = 0;
	for (size_t i = 0; i < count; i++) {
		if (i)
			out[o++] = ',';
		memcpy(out + o, m[i].s, m[i].len);
		o += m[i].len;
	}
	out[o] = '\0';
	return (int)o;
}

/* ---- spans ---- */

static __thread struct prng id_prng;
static __thread bool id_prng_seeded;

static uint64_t next_random(void)
{
	if (!id_prng_seeded) {
		prng_seed(&id_prng);
		id_prng_seeded = true;
	}
	return prng_next(&id_prng);
}

static void random_bytes(uint8_t *out, size_t n)
{
	/* Never all zero (invalid): a zero draw is replaced. */
	do {
		for (size_t i = 0; i < n; i += 8) {
			uint64_t r = next_random();
			size_t k = n - i < 8 ? n - i : 8;
			memcpy(out + i, &r, k);
		}
	} while (all_zero(out, n));
}

static bool sample_new_trace(void)
{
	if (!trace_export_enabled())
		return false;
	double ratio = trace_internal_sample_ratio();
	if (ratio >= 1.0)
		return true;
	if (ratio <= 0.0)
		return false;
	/* 53 random bits: a uniform double in [0, 1). */
	return (double)(next_random() >> 11) * 0x1.0p-53 < ratio;
}

static char *copy_state(const char *s, size_t len)
{
	char *c = malloc(len + 1);
	if (c) {
		memcpy(c, s, len);
		c[len] = '\0';
	}
	return c;
}

void trace_span_start_server(struct trace_span *sp, const struct trace_parent *parent,
                             const char *tracestate, size_t tracestate_len)
{
	sp->tracestate = NULL;
	if (parent) {
		memcpy(sp->trace_id, parent->trace_id, TRACE_ID_SIZE);
		memcpy(sp->parent_id, parent->parent_id, TRACE_SPAN_ID_SIZE);
		sp->flags = parent->flags & TRACE_FLAG_SAMPLED;
		if (tracestate && tracestate_len) {
			char filtered[TRACE_STATE_MAX_BYTES + 1];
			int n = trace_state_filter(tracestate, tracestate_len, filtered);
			if (n > 0)
				sp->tracestate = copy_state(filtered, (size_t)n);
		}
	} else {
		random_bytes(sp->trace_id, TRACE_ID_SIZE);
		memset(sp->parent_id, 0, TRACE_SPAN_ID_SIZE);
		sp->flags = sample_new_trace() ? TRACE_FLAG_SAMPLED : 0;
	}
	random_bytes(sp->span_id, TRACE_SPAN_ID_SIZE);
	sp->valid = true;
}

void trace_span_start_child(struct trace_span *sp, const struct trace_span *parent)
{
	if (!parent || !parent->valid) {
		trace_span_start_server(sp, NULL, NULL, 0);
		return;
	}
	memcpy(sp->trace_id, parent->trace_id, TRACE_ID_SIZE);
	memcpy(sp->parent_id, parent->span_id, TRACE_SPAN_ID_SIZE);
	sp->flags = parent->flags;
	sp->tracestate =
	    parent->tracestate ? copy_state(parent->tracestate, strlen(parent->tracestate)) : NULL;
	random_bytes(sp->span_id, TRACE_SPAN_ID_SIZE);
	sp->valid = true;
}

void trace_span_copy(struct trace_span *dst, const struct trace_span *src)
{
	if (!src || !src->valid) {
		trace_span_start_server(dst, NULL, NULL, 0);
		return;
	}
	*dst = *src;
	dst->tracestate =
	    src->tracestate ? copy_state(src->tracestate, strlen(src->tracestate)) : NULL;
}

void trace_span_release(struct trace_span *sp)
{
	free(sp->tracestate);
	sp->tracestate = NULL;
	sp->valid = false;
}

int64_t trace_now_unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- records and the OTLP/JSON encoding ---- */

void trace_record_set(char *dst, size_t dst_size, const char *s, size_t len)
{
	size_t n = len < dst_size - 1 ? len : dst_size - 1;
	if (n)
		memcpy(dst, s, n);
	dst[n] = '\0';
}

void trace_record_init(struct trace_record *r, const struct trace_span *sp, enum trace_kind kind,
                       int64_t start_unix_ns, int64_t end_unix_ns)
{
	memset(r, 0, sizeof(*r));
	memcpy(r->trace_id, sp->trace_id, TRACE_ID_SIZE);
	memcpy(r->span_id, sp->span_id, TRACE_SPAN_ID_SIZE);
	memcpy(r->parent_id, sp->parent_id, TRACE_SPAN_ID_SIZE);
	r->kind = (uint8_t)kind;
	r->start_unix_ns = start_unix_ns;
	r->end_unix_ns = end_unix_ns < start_unix_ns ? start_unix_ns : end_unix_ns;
	r->grpc_status = -1;
}

/* The encoder writes into room reserved once per span (SPAN_JSON_MAX covers
 * every record: its strings are bounded by their arrays and grow at most 2x
 * when escaped), with memcpy and hand-made hex and decimals: printf and a
 * growth check per piece cost ~3 us a span, which at one span per request
 * tripled the exporter's share of a request's CPU. */
#define SPAN_JSON_MAX 4096

struct writer {
	char *p;
};

#define W_LIT(w, lit) w_mem((w), (lit), sizeof(lit) - 1)

static void w_mem(struct writer *w, const char *s, size_t n)
{
	memcpy(w->p, s, n);
	w->p += n;
}

/* A record's strings come from requests (paths, methods): quotes and
 * backslashes escaped, bytes outside printable ASCII replaced by '?', so that
 * the body is valid JSON and UTF-8. */
static void w_str(struct writer *w, const char *s, size_t max)
{
	*w->p++ = '"';
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*w->p++ = '\\';
			*w->p++ = (char)c;
		} else {
			*w->p++ = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
	}
	*w->p++ = '"';
}

static void w_int(struct writer *w, long long v)
{
	char tmp[24];
	size_t n = 0;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*w->p++ = '-';
	while (n)
		*w->p++ = tmp[--n];
}

static void w_hex(struct writer *w, const uint8_t *id, size_t n)
{
	trace_hex(id, n, w->p); /* writes a NUL after, overwritten next */
	w->p += 2 * n;
}

static void w_attr_str(struct writer *w, bool *first, const char *key, const char *v, size_t max)
{
	if (!*first)
		*w->p++ = ',';
	*first = false;
	W_LIT(w, "{\"key\":\"");
	w_mem(w, key, strlen(key));
	W_LIT(w, "\",\"value\":{\"stringValue\":");
	w_str(w, v, max);
	W_LIT(w, "}}");
}

static void w_attr_int(struct writer *w, bool *first, const char *key, long long v)
{
	if (!*first)
		*w->p++ = ',';
	*first = false;
	W_LIT(w, "{\"key\":\"");
	w_mem(w, key, strlen(key));
	W_LIT(w, "\",\"value\":{\"intValue\":\"");
	w_int(w, v);
	W_LIT(w, "\"}}");
}

static void encode_span(const struct trace_record *r, struct writer *w)
{
	W_LIT(w, "{\"traceId\":\"");
	w_hex(w, r->trace_id, TRACE_ID_SIZE);
	W_LIT(w, "\",\"spanId\":\"");
	w_hex(w, r->span_id, TRACE_SPAN_ID_SIZE);
	if (!all_zero(r->parent_id, TRACE_SPAN_ID_SIZE)) {
		W_LIT(w, "\",\"parentSpanId\":\"");
		w_hex(w, r->parent_id, TRACE_SPAN_ID_SIZE);
	}
	W_LIT(w, "\",\"name\":");
	w_str(w, r->name, sizeof(r->name));
	W_LIT(w, ",\"kind\":");
	w_int(w, r->kind);
	W_LIT(w, ",\"startTimeUnixNano\":\"");
	w_int(w, r->start_unix_ns);
	W_LIT(w, "\",\"endTimeUnixNano\":\"");
	w_int(w, r->end_unix_ns);
	W_LIT(w, "\",\"attributes\":[");
	bool first = true;
	if (r->grpc_status >= 0) {
		w_attr_str(w, &first, "rpc.system", "grpc", 4);
		w_attr_str(w, &first, "rpc.service", r->rpc_service, sizeof(r->rpc_service));
		w_attr_str(w, &first, "rpc.method", r->rpc_method, sizeof(r->rpc_method));
		w_attr_int(w, &first, "rpc.grpc.status_code", r->grpc_status);
	}
	if (r->http_status > 0) {
		w_attr_str(w, &first, "http.request.method", r->http_method,
		           sizeof(r->http_method));
		if (r->http_route[0])
			w_attr_str(w, &first, "http.route", r->http_route, sizeof(r->http_route));
		w_attr_int(w, &first, "http.response.status_code", r->http_status);
	}
	if (r->peer[0])
		w_attr_str(w, &first, "server.address", r->peer, sizeof(r->peer));
	W_LIT(w, "],\"status\":{\"code\":");
	*w->p++ = r->error ? '2' : '0';
	W_LIT(w, "}}");
}

/* Run `fn` on a writer over at least `room` reserved bytes of out. */
static int append_reserved(struct buf *out, size_t room, const struct trace_record *r,
                           const char *service, const char *version, int what)
{
	int rc = buf_reserve(out, room);
	if (rc)
		return rc;
	struct writer w = {out->data + out->len};
	bool first = true;
	switch (what) {
	case 0:
		W_LIT(&w, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
		w_attr_str(&w, &first, "service.name", service, 256);
		if (version)
			w_attr_str(&w, &first, "service.version", version, 256);
		W_LIT(&w, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"movie\"},\"spans\":[");
		break;
	case 1: encode_span(r, &w); break;
	case 2:
		*w.p++ = ',';
		encode_span(r, &w);
		break;
	default: W_LIT(&w, "]}]}]}"); break;
	}
	out->len = (size_t)(w.p - out->data);
	out->data[out->len] = '\0';
	return 0;
}

int trace_otlp_encode(const struct trace_record *recs, size_t n, const char *service,
                      const char *version, struct buf *out)
{
	/* The resource block: two strings of at most 256 bytes, escaped. */
	int rc = append_reserved(out, 1024 + 2 * 2 * 256, NULL, service ? service : "unknown",
	                         version, 0);
	for (size_t i = 0; i < n && !rc; i++)
		rc = append_reserved(out, SPAN_JSON_MAX, &recs[i], NULL, NULL, i ? 2 : 1);
	return rc ? rc : append_reserved(out, 16, NULL, NULL, NULL, 3);
}
