/*
 * buf.h - a growable byte buffer with an explicit size cap.
 *
 * Anything sized by untrusted input is built in a struct buf whose `limit`
 * bounds its growth (like curl's dynbuf): appending past the limit fails with
 * MV_ETOOBIG and leaves the buffer unchanged. The data is always followed by a
 * NUL byte (not counted in len), so text can be used as a C string.
 * Not thread-safe; a buffer belongs to one thread at a time.
 */
#ifndef MOVIE_BUF_H
#define MOVIE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;   /* NULL until the first append; NUL-terminated after it */
	size_t len;   /* bytes in use */
	size_t cap;   /* bytes allocated */
	size_t limit; /* maximum len; 0 means BUF_DEFAULT_LIMIT */
};

#define BUF_DEFAULT_LIMIT ((size_t)64 * 1024 * 1024)

/* Initialise an empty buffer that may grow to `limit` bytes (0: default). */
void buf_init(struct buf *b, size_t limit);
/* Free the storage; the buffer is empty and reusable afterwards. */
void buf_release(struct buf *b);
/* Forget the content but keep the storage. */
void buf_reset(struct buf *b);
/* Make room for `extra` more bytes. Returns 0, MV_ETOOBIG, MV_ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Append bytes. Returns 0, MV_ETOOBIG, MV_ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t len);
/* Append a C string. Returns 0, MV_ETOOBIG, MV_ENOMEM. */
int buf_append_str(struct buf *b, const char *s);
/* Append printf-formatted text. Returns 0, MV_ETOOBIG, MV_ENOMEM, MV_EINVAL. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Append `s` as a JSON string literal, quotes included, escaping as RFC 8259
 * requires. Invalid UTF-8 is replaced by U+FFFD. Returns 0, MV_ETOOBIG, MV_ENOMEM. */
int buf_append_json_string(struct buf *b, const char *s, size_t len);
/* Append s[0..len) with each byte that does not start a valid UTF-8
 * sequence replaced by U+FFFD (as buf_append_json_string does). On failure
 * the buffer is unchanged. Returns 0, MV_ETOOBIG, MV_ENOMEM. */
int buf_append_utf8(struct buf *b, const char *s, size_t len);
/* Drop the first `n` bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);

#endif
