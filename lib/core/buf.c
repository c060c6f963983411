#include "movie/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/err.h"
#include "movie/text.h"
#include "movie/banned.h"

static size_t effective_limit(const struct buf *b)
{
	return b->limit ? b->limit : BUF_DEFAULT_LIMIT;
}

void buf_init(struct buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
}

void buf_release(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

int buf_reserve(struct buf *b, size_t extra)
{
	size_t limit = effective_limit(b);
	if (extra > limit || b->len > limit - extra)
		return MV_ETOOBIG;
	size_t need = b->len + extra + 1; /* room for the trailing NUL */
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *data = realloc(b->data, cap);
	if (!data)
		return MV_ENOMEM;
	b->data = data;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);
	if (rc)
		return rc;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list copy;
	va_copy(copy, ap);
	char small[256];
	int n = vsnprintf(small, sizeof(small), fmt, copy);
	va_end(copy);
	if (n < 0)
		return MV_EINVAL;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	int rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

int buf_append_json_string(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t start_len = b->len;
	int rc = buf_append(b, "\"", 1);
	size_t i = 0;
	while (!rc && i < len) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			rc = buf_append(b, esc, 2);
			i++;
		} else if (c < 0x20) {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			switch (c) {
			case '\n': rc = buf_append(b, "\\n", 2); break;
			case '\r': rc = buf_append(b, "\\r", 2); break;
			case '\t': rc = buf_append(b, "\\t", 2); break;
			default: rc = buf_append(b, esc, 6); break;
			}
			i++;
		} else if (c < 0x80) {
			/* A run of plain ASCII goes in with one append. */
			size_t j = i + 1;
			while (j < len && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' &&
			       p[j] != '\\')
				j++;
			rc = buf_append(b, p + i, j - i);
			i = j;
		} else {
			size_t n = text_utf8_next(p + i, len - i);
			if (n == 0) {
				rc = buf_append(b, "\xef\xbf\xbd", 3);
				i++;
			} else {
				rc = buf_append(b, p + i, n);
				i += n;
			}
		}
	}
	if (!rc)
		rc = buf_append(b, "\"", 1);
	if (rc) {
		b->len = start_len;
		if (b->data)
			b->data[b->len] = '\0';
	}
	return rc;
}

int buf_append_utf8(struct buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t start_len = b->len;
	int rc = 0;
	for (size_t i = 0; !rc && i < len;) {
		size_t n = text_utf8_next(p + i, len - i);
		if (n == 0) {
			rc = buf_append(b, "\xef\xbf\xbd", 3);
			i++;
		} else {
			rc = buf_append(b, p + i, n);
			i += n;
		}
	}
	if (rc) {
		b->len = start_len;
		if (b->data)
			b->data[b->len] = '\0';
	}
	return rc;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}
