/*
 * cfg_dump.c - the effective configuration as YAML (--print-config) and the
 * option table as Markdown (--help-config). No I/O: both append to a buf.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_internal.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/banned.h"

/* Decode one UTF-8 sequence at s (len > 0); returns its length, or 0 when
 * it is not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
	size_t n;
	uint32_t v, min;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		n = 2, v = s[0] & 0x1fu, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3, v = s[0] & 0x0fu, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4, v = s[0] & 0x07u, min = 0x10000;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3fu);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* Characters libyaml's reader accepts raw and does not treat as a line
 * break or byte-order mark inside a double-quoted scalar. */
static bool raw_ok(uint32_t cp)
{
	if (cp == 0x85 || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff)
		return false;
	return (cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xd7ff) ||
	       (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* A YAML double-quoted scalar that loads back to exactly `s` when `s` is
 * valid UTF-8 (invalid bytes are written as \xNN, which YAML reads as the
 * code point U+00NN). */
static int put_quoted(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s);
	int rc = buf_append(out, "\"", 1);
	for (size_t i = 0; rc == 0 && i < len;) {
		uint32_t cp = 0;
		size_t n = utf8_decode(p + i, len - i, &cp);
		if (n == 0) {
			rc = buf_printf(out, "\\x%02X", p[i]);
			i++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			rc = buf_printf(out, "\\%c", (char)cp);
		else if (cp == '\n' || cp == '\t' || cp == '\r')
			rc = buf_append(out, cp == '\n' ? "\\n" : cp == '\t' ? "\\t" : "\\r", 2);
		else if (raw_ok(cp))
			rc = buf_append(out, p + i, n);
		else if (cp <= 0xff)
			rc = buf_printf(out, "\\x%02X", (unsigned)cp);
		else if (cp <= 0xffff)
			rc = buf_printf(out, "\\u%04X", (unsigned)cp);
		else
			rc = buf_printf(out, "\\U%08X", (unsigned)cp);
		i += n;
	}
	return rc ? rc : buf_append(out, "\"", 1);
}

static int put_indent(struct buf *out, size_t depth)
{
	for (size_t i = 0; i < depth; i++) {
		int rc = buf_append(out, "  ", 2);
		if (rc)
			return rc;
	}
	return 0;
}

/* The value after "key:", including the newline. */
static int put_value(struct buf *out, const struct cfg_option *opt, const void *config,
                     size_t depth)
{
	const void *f = cfg_field_const(opt, config);
	char text[64];
	int rc;
	switch (opt->type) {
	case CFG_INT: return buf_printf(out, " %" PRId64 "\n", *(const int64_t *)f);
	case CFG_BOOL: return buf_printf(out, " %s\n", *(const bool *)f ? "true" : "false");
	case CFG_DURATION_MS:
		cfg_format_duration(*(const int64_t *)f, text, sizeof(text));
		return buf_printf(out, " %s\n", text);
	case CFG_SIZE:
		cfg_format_size(*(const int64_t *)f, text, sizeof(text));
		return buf_printf(out, " %s\n", text);
	case CFG_DOUBLE:
		cfg_format_double(*(const double *)f, text, sizeof(text));
		return buf_printf(out, " %s\n", text);
	case CFG_STRING:
	case CFG_ENUM: {
		const char *s = *(char *const *)f;
		if (!s)
			return buf_append_str(out, " ~\n");
		if ((opt->flags & CFG_SECRET) && s[0])
			return buf_append_str(out, " \"<redacted>\"\n");
		rc = buf_append(out, " ", 1);
		if (rc == 0)
			rc = put_quoted(out, s);
		return rc ? rc : buf_append(out, "\n", 1);
	}
	case CFG_STRING_LIST: {
		const struct cfg_string_list *l = f;
		if (l->count == 0)
			return buf_append_str(out, " []\n");
		rc = buf_append(out, "\n", 1);
		for (size_t i = 0; rc == 0 && i < l->count; i++) {
			rc = put_indent(out, depth + 1);
			if (rc == 0)
				rc = buf_append(out, "- ", 2);
			if (rc == 0)
				rc = put_quoted(out, l->items[i]);
			if (rc == 0)
				rc = buf_append(out, "\n", 1);
		}
		return rc;
	}
	}
	return MV_EINVAL;
}

/* Every not yet written option under `prefix`, in table order, each section
 * written once where its first option appears (so interleaved tables still
 * give unique keys). */
static int dump_section(const struct cfg_schema *schema, const void *config, struct buf *out,
                        const char *prefix, size_t prefix_len, size_t depth, bool *done)
{
	for (size_t i = 0; i < schema->option_count; i++) {
		const struct cfg_option *opt = &schema->options[i];
		const char *key = opt->key;
		if (done[i])
			continue;
		if (prefix_len && (strncmp(key, prefix, prefix_len) != 0 || key[prefix_len] != '.'))
			continue;
		const char *rest = key + (prefix_len ? prefix_len + 1 : 0);
		const char *dot = strchr(rest, '.');
		int rc = put_indent(out, depth);
		if (rc)
			return rc;
		if (!dot) {
			rc = buf_printf(out, "%s:", rest);
			if (rc == 0)
				rc = put_value(out, opt, config, depth);
			done[i] = true;
		} else {
			rc = buf_printf(out, "%.*s:\n", (int)(dot - rest), rest);
			if (rc == 0)
				rc = dump_section(schema, config, out, key, (size_t)(dot - key),
				                  depth + 1, done);
		}
		if (rc)
			return rc;
	}
	return 0;
}

int cfg_dump(const struct cfg_schema *schema, const void *config, struct buf *out)
{
	bool *done = calloc(schema->option_count ? schema->option_count : 1, sizeof(bool));
	if (!done)
		return MV_ENOMEM;
	int rc = dump_section(schema, config, out, "", 0, 0, done);
	free(done);
	return rc;
}

/* Table cell text: '|' would end the cell, a newline the row. */
static int put_cell(struct buf *out, const char *s)
{
	int rc = 0;
	for (; rc == 0 && *s; s++) {
		if (*s == '|')
			rc = buf_append(out, "\\|", 2);
		else if (*s == '\n' || *s == '\r')
			rc = buf_append(out, " ", 1);
		else
			rc = buf_append(out, s, 1);
	}
	return rc;
}

static int describe_row(const struct cfg_schema *schema, const struct cfg_option *opt,
                        struct buf *out)
{
	char range[96];
	int rc = buf_printf(out, "| %s | %s", opt->key, (opt->flags & CFG_SECRET) ? "secret " : "");
	if (rc == 0)
		rc = buf_append_str(out, cfg_type_name(opt->type));
	for (const char *const *v = opt->enum_values; rc == 0 && opt->type == CFG_ENUM && v && *v;
	     v++)
		rc = buf_printf(out, "%s%s", v == opt->enum_values ? ": " : ", ", *v);
	if (rc == 0)
		rc = buf_append_str(out, " | ");
	if (rc == 0 && opt->default_value) {
		rc = buf_append(out, "`", 1);
		if (rc == 0)
			rc = put_cell(out, opt->default_value[0] ? opt->default_value : "\"\"");
		if (rc == 0)
			rc = buf_append(out, "`", 1);
	}
	if (rc == 0 && (opt->flags & CFG_REQUIRED))
		rc = buf_append_str(out, opt->default_value ? " (required)" : "(required)");
	cfg_format_range(opt, range, sizeof(range));
	if (rc == 0)
		rc = buf_printf(out, " | %s | ", range);
	if (rc == 0 && schema->env_prefix && schema->env_prefix[0]) {
		char name[CFG_PATH_MAX + 64];
		cfg_env_name(schema, opt, name, sizeof(name));
		rc = buf_printf(out, "`%s`", name);
	}
	if (rc == 0)
		rc = buf_append_str(out, " | ");
	if (rc == 0)
		rc = put_cell(out, opt->help ? opt->help : "");
	return rc ? rc : buf_append_str(out, " |\n");
}

int cfg_describe(const struct cfg_schema *schema, struct buf *out)
{
	int rc = buf_append_str(out, "| key | type | default | range | env | meaning |\n"
	                             "|---|---|---|---|---|---|\n");
	for (size_t i = 0; rc == 0 && i < schema->option_count; i++)
		rc = describe_row(schema, &schema->options[i], out);
	return rc;
}
