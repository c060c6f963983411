/*
 * text.c - validation of client strings (see text.h for the rules).
 */
#include "movie/text.h"

#include "movie/banned.h"

/* Length of the UTF-8 sequence at s[0..n), or 0 when it is not a valid,
 * shortest-form scalar value (RFC 3629: no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xC2 && c <= 0xDF) {
		len = 2, v = c & 0x1F, min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3, v = c & 0x0F, min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return len;
}

size_t text_utf8_next(const void *s, size_t n)
{
	uint32_t cp;
	return n ? utf8_seq(s, n, &cp) : 0;
}

static bool is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* The one scanner: NULL, or why s[0..n) breaks the rule (ids: no controls). */
static const char *scan(const void *s, size_t n, bool id)
{
	const unsigned char *p = s;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t step = utf8_seq(p + i, n - i, &cp);
		if (step == 0)
			return "invalid UTF-8";
		if (id && is_control(cp))
			return "contains a control character";
		if (cp == 0)
			return "contains a NUL byte";
		i += step;
	}
	return NULL;
}

bool text_utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t step = utf8_seq(p + i, n - i, &cp);
		if (step == 0)
			return false;
		i += step;
	}
	return true;
}

const char *text_check(const void *s, size_t n)
{
	return scan(s, n, false);
}

const char *text_check_id(const void *s, size_t n)
{
	return scan(s, n, true);
}
