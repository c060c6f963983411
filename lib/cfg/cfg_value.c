/*
 * cfg_value.c - parse and format single option values. No I/O.
 *
 * One parser serves YAML scalars, environment variables and table defaults,
 * so a value means the same thing wherever it is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "cfg_internal.h"
#include "movie/err.h"
#include "movie/banned.h"

struct unit {
	const char *name;
	int64_t factor;
};

/* Largest unit first: formatting picks the first that divides exactly. */
static const struct unit duration_units[] = {
    {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}, {NULL, 0},
};

/* Binary units only: "KB" could mean 1000 or 1024, so it is rejected. */
static const struct unit size_units[] = {
    {"GiB", (int64_t)1 << 30},
    {"MiB", (int64_t)1 << 20},
    {"KiB", (int64_t)1 << 10},
    {"B", 1},
    {NULL, 0},
};

void cfg_value_free(enum cfg_type type, union cfg_value *v)
{
	if (type == CFG_STRING || type == CFG_ENUM) {
		free(v->s);
	} else if (type == CFG_STRING_LIST) {
		for (size_t i = 0; i < v->list.count; i++)
			free(v->list.items[i]);
		free(v->list.items);
	}
	memset(v, 0, sizeof(*v));
}

void cfg_quote(const char *text, size_t len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (out_size < 8) {
		if (out_size)
			out[0] = '\0';
		return;
	}
	out[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		/* Room for "\xNN", the closing quote, "..." and the NUL. */
		if (o + 4 + 1 + 3 + 1 > out_size || o > 48) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* Parse [+-]digits at the start of s. A leading zero is refused ("0644" is
 * octal in YAML 1.1 and in shells; better to say so than to guess).
 * Returns the number of bytes used, 0 when there is no number, or -1 on
 * overflow. */
static ptrdiff_t scan_decimal(const char *s, size_t len, bool allow_sign, int64_t *out)
{
	size_t i = 0;
	bool negative = false;
	if (allow_sign && i < len && (s[i] == '-' || s[i] == '+')) {
		negative = s[i] == '-';
		i++;
	}
	size_t first = i;
	uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;
	bool overflow = false;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (limit - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
		i++;
	}
	if (i == first)
		return 0;
	if (i - first > 1 && s[first] == '0')
		return 0;
	if (overflow)
		return -1;
	if (negative)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return (ptrdiff_t)i;
}

static bool range_set(const struct cfg_option *opt)
{
	return opt->min != 0 || opt->max != 0;
}

static int parse_int(const struct cfg_option *opt, const char *text, size_t len, int64_t *out,
                     char *msg, size_t msg_size)
{
	char q[64];
	int64_t v = 0;
	ptrdiff_t n = scan_decimal(text, len, true, &v);
	if (n < 0) {
		cfg_quote(text, len, q, sizeof(q));
		snprintf(msg, msg_size, "%s does not fit in a 64-bit integer", q);
		return MV_ERANGE;
	}
	if (n == 0 || (size_t)n != len) {
		cfg_quote(text, len, q, sizeof(q));
		snprintf(msg, msg_size, "%s is not a decimal integer", q);
		return MV_EINVAL;
	}
	if (range_set(opt) && (v < opt->min || v > opt->max)) {
		snprintf(msg, msg_size, "%" PRId64 " is out of range %" PRId64 "..%" PRId64, v,
		         opt->min, opt->max);
		return MV_ERANGE;
	}
	*out = v;
	return 0;
}

/* A whole number followed by a unit from `units`; a bare number means the
 * unit whose factor is 1. Negative values are refused. */
static int parse_with_unit(const struct cfg_option *opt, const struct unit *units, const char *what,
                           const char *text, size_t len, int64_t *out, char *msg, size_t msg_size)
{
	char q[64], lo[32], hi[32], got[32];
	int64_t v = 0;
	ptrdiff_t n = scan_decimal(text, len, false, &v);
	cfg_quote(text, len, q, sizeof(q));
	if (n < 0) {
		snprintf(msg, msg_size, "%s is too large", q);
		return MV_ERANGE;
	}
	if (n == 0) {
		snprintf(msg, msg_size, "%s is not %s", q, cfg_type_expectation(opt->type));
		return MV_EINVAL;
	}
	const char *suffix = text + n;
	size_t suffix_len = len - (size_t)n;
	int64_t factor = 0;
	if (suffix_len == 0) {
		factor = 1;
	} else {
		for (const struct unit *u = units; u->name; u++) {
			if (strlen(u->name) == suffix_len &&
			    memcmp(u->name, suffix, suffix_len) == 0) {
				factor = u->factor;
				break;
			}
		}
	}
	if (factor == 0) {
		snprintf(msg, msg_size, "%s has no valid %s unit (expected %s)", q, what,
		         cfg_type_expectation(opt->type));
		return MV_EINVAL;
	}
	if (v > INT64_MAX / factor) {
		snprintf(msg, msg_size, "%s is too large", q);
		return MV_ERANGE;
	}
	v *= factor;
	if (range_set(opt) && (v < opt->min || v > opt->max)) {
		void (*fmt)(int64_t, char *, size_t) =
		    opt->type == CFG_SIZE ? cfg_format_size : cfg_format_duration;
		fmt(v, got, sizeof(got));
		fmt(opt->min, lo, sizeof(lo));
		fmt(opt->max, hi, sizeof(hi));
		snprintf(msg, msg_size, "%s is out of range %s..%s", got, lo, hi);
		return MV_ERANGE;
	}
	*out = v;
	return 0;
}

static bool equal_nocase(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		char x = a[i], y = b[i];
		if (x >= 'A' && x <= 'Z')
			x = (char)(x - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

static int parse_bool(const char *text, size_t len, bool *out, char *msg, size_t msg_size)
{
	static const char *const truths[] = {"true", "yes", "on", NULL};
	static const char *const lies[] = {"false", "no", "off", NULL};
	for (size_t i = 0; truths[i]; i++) {
		if (equal_nocase(text, len, truths[i])) {
			*out = true;
			return 0;
		}
		if (equal_nocase(text, len, lies[i])) {
			*out = false;
			return 0;
		}
	}
	char q[64];
	cfg_quote(text, len, q, sizeof(q));
	snprintf(msg, msg_size, "%s is not %s", q, cfg_type_expectation(CFG_BOOL));
	return MV_EINVAL;
}

static void double_range(const struct cfg_option *opt, bool *bounded, double *lo, double *hi)
{
	*bounded = true;
	if (opt->dmin != 0 || opt->dmax != 0) {
		*lo = opt->dmin;
		*hi = opt->dmax;
	} else if (range_set(opt)) {
		*lo = (double)opt->min;
		*hi = (double)opt->max;
	} else {
		*bounded = false;
	}
}

static int parse_double(const struct cfg_option *opt, const char *text, size_t len, double *out,
                        char *msg, size_t msg_size)
{
	char q[64], tmp[64];
	cfg_quote(text, len, q, sizeof(q));
	/* strtod also takes hex floats, "inf", "nan" and leading blanks: allow
	 * only plain decimal notation, then require strtod to use every byte. */
	bool plain = len > 0 && len < sizeof(tmp);
	bool digit = false;
	for (size_t i = 0; plain && i < len; i++) {
		char c = text[i];
		if (c >= '0' && c <= '9')
			digit = true;
		else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-')
			plain = false;
	}
	if (!plain || !digit) {
		snprintf(msg, msg_size, "%s is not %s", q, cfg_type_expectation(CFG_DOUBLE));
		return MV_EINVAL;
	}
	memcpy(tmp, text, len);
	tmp[len] = '\0';
	char *end = NULL;
	errno = 0;
	double v = strtod(tmp, &end);
	if (end != tmp + len) {
		snprintf(msg, msg_size, "%s is not %s", q, cfg_type_expectation(CFG_DOUBLE));
		return MV_EINVAL;
	}
	if ((errno == ERANGE && (v > 1.0 || v < -1.0)) || !isfinite(v)) {
		snprintf(msg, msg_size, "%s is too large", q);
		return MV_ERANGE;
	}
	bool bounded;
	double lo, hi;
	double_range(opt, &bounded, &lo, &hi);
	if (bounded && (v < lo || v > hi)) {
		char a[40], b[40], c[40];
		cfg_format_double(v, a, sizeof(a));
		cfg_format_double(lo, b, sizeof(b));
		cfg_format_double(hi, c, sizeof(c));
		snprintf(msg, msg_size, "%s is out of range %s..%s", a, b, c);
		return MV_ERANGE;
	}
	*out = v;
	return 0;
}

static size_t string_cap(const struct cfg_option *opt)
{
	return opt->max > 0 ? (size_t)opt->max : CFG_STRING_MAX_DEFAULT;
}

/* A string the program can use as a C string, within the option's cap. */
static int check_string(const struct cfg_option *opt, const char *text, size_t len, char *msg,
                        size_t msg_size)
{
	if (len > string_cap(opt)) {
		snprintf(msg, msg_size, "value is %zu bytes long, longer than %zu", len,
		         string_cap(opt));
		return MV_ERANGE;
	}
	if (memchr(text, '\0', len)) {
		snprintf(msg, msg_size, "value contains a NUL byte");
		return MV_EINVAL;
	}
	if (opt->check && opt->check(text, len, msg, msg_size) != 0)
		return MV_EINVAL;
	return 0;
}

static char *dup_text(const char *text, size_t len)
{
	char *s = malloc(len + 1);
	if (!s)
		return NULL;
	if (len)
		memcpy(s, text, len);
	s[len] = '\0';
	return s;
}

static int parse_enum(const struct cfg_option *opt, const char *text, size_t len, char **out,
                      char *msg, size_t msg_size)
{
	for (const char *const *v = opt->enum_values; v && *v; v++) {
		if (strlen(*v) == len && memcmp(*v, text, len) == 0) {
			*out = dup_text(text, len);
			return *out ? 0 : MV_ENOMEM;
		}
	}
	char q[64];
	cfg_quote(text, len, q, sizeof(q));
	size_t o = (size_t)snprintf(msg, msg_size, "%s is not one of ", q);
	for (const char *const *v = opt->enum_values; v && *v && o < msg_size; v++) {
		int n =
		    snprintf(msg + o, msg_size - o, "%s%s", v == opt->enum_values ? "" : ", ", *v);
		if (n < 0)
			break;
		o += (size_t)n;
	}
	return MV_EINVAL;
}

int cfg_list_add(const struct cfg_option *opt, struct cfg_string_list *list, const char *text,
                 size_t len, char *msg, size_t msg_size)
{
	if (list->count >= CFG_LIST_MAX_ITEMS) {
		snprintf(msg, msg_size, "more than %d items", CFG_LIST_MAX_ITEMS);
		return MV_ERANGE;
	}
	int rc = check_string(opt, text, len, msg, msg_size);
	if (rc)
		return rc;
	char *item = dup_text(text, len);
	if (!item)
		return MV_ENOMEM;
	char **items = realloc(list->items, (list->count + 1) * sizeof(*items));
	if (!items) {
		free(item);
		return MV_ENOMEM;
	}
	items[list->count++] = item;
	list->items = items;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int parse_comma_list(const struct cfg_option *opt, const char *text, size_t len,
                            struct cfg_string_list *out, char *msg, size_t msg_size)
{
	size_t i = 0;
	while (i < len && is_blank(text[i]))
		i++;
	if (i == len)
		return 0;
	for (;;) {
		const char *comma = memchr(text + i, ',', len - i);
		size_t end = comma ? (size_t)(comma - text) : len;
		size_t a = i, b = end;
		while (a < b && is_blank(text[a]))
			a++;
		while (b > a && is_blank(text[b - 1]))
			b--;
		if (a == b) {
			snprintf(msg, msg_size, "empty item in comma-separated list");
			return MV_EINVAL;
		}
		char why[CFG_MSG_MAX];
		int rc = cfg_list_add(opt, out, text + a, b - a, why, sizeof(why));
		if (rc) {
			snprintf(msg, msg_size, "item %zu: %s", out->count + 1, why);
			return rc;
		}
		if (!comma)
			return 0;
		i = end + 1;
	}
}

int cfg_value_parse(const struct cfg_option *opt, const char *text, size_t len, bool is_null,
                    union cfg_value *out, char *msg, size_t msg_size)
{
	int rc;
	memset(out, 0, sizeof(*out));
	msg[0] = '\0';
	if (is_null && opt->type != CFG_STRING && opt->type != CFG_STRING_LIST) {
		snprintf(msg, msg_size, "missing value, expected %s",
		         cfg_type_expectation(opt->type));
		return MV_EINVAL;
	}
	switch (opt->type) {
	case CFG_INT: return parse_int(opt, text, len, &out->i, msg, msg_size);
	case CFG_BOOL: return parse_bool(text, len, &out->b, msg, msg_size);
	case CFG_STRING:
		if (is_null)
			len = 0;
		rc = check_string(opt, text, len, msg, msg_size);
		if (rc)
			return rc;
		out->s = dup_text(text, len);
		return out->s ? 0 : MV_ENOMEM;
	case CFG_DURATION_MS:
		return parse_with_unit(opt, duration_units, "duration", text, len, &out->i, msg,
		                       msg_size);
	case CFG_ENUM: return parse_enum(opt, text, len, &out->s, msg, msg_size);
	case CFG_STRING_LIST:
		if (is_null)
			return 0;
		rc = parse_comma_list(opt, text, len, &out->list, msg, msg_size);
		if (rc)
			cfg_value_free(CFG_STRING_LIST, out);
		return rc;
	case CFG_SIZE:
		return parse_with_unit(opt, size_units, "size", text, len, &out->i, msg, msg_size);
	case CFG_DOUBLE: return parse_double(opt, text, len, &out->d, msg, msg_size);
	}
	snprintf(msg, msg_size, "option has an unknown type %d", (int)opt->type);
	return MV_EINVAL;
}

const char *cfg_type_expectation(enum cfg_type type)
{
	switch (type) {
	case CFG_INT: return "a decimal integer";
	case CFG_BOOL: return "a boolean (true/false, yes/no, on/off)";
	case CFG_STRING: return "a string";
	case CFG_DURATION_MS: return "a duration (250ms, 5s, 2m, 1h; bare number = ms)";
	case CFG_ENUM: return "one of the listed values";
	case CFG_STRING_LIST: return "a sequence of strings";
	case CFG_SIZE: return "a size (512KiB, 4MiB, 1GiB, 10B; bare number = bytes)";
	case CFG_DOUBLE: return "a decimal number";
	}
	return "a value";
}

const char *cfg_type_name(enum cfg_type type)
{
	switch (type) {
	case CFG_INT: return "int";
	case CFG_BOOL: return "bool";
	case CFG_STRING: return "string";
	case CFG_DURATION_MS: return "duration";
	case CFG_ENUM: return "enum";
	case CFG_STRING_LIST: return "list";
	case CFG_SIZE: return "size";
	case CFG_DOUBLE: return "double";
	}
	return "?";
}

static void format_with_unit(const struct unit *units, int64_t v, char *out, size_t out_size)
{
	for (const struct unit *u = units; u->name; u++) {
		if (v != 0 && v % u->factor == 0) {
			snprintf(out, out_size, "%" PRId64 "%s", v / u->factor, u->name);
			return;
		}
	}
	snprintf(out, out_size, "%" PRId64, v);
}

void cfg_format_duration(int64_t ms, char *out, size_t out_size)
{
	format_with_unit(duration_units, ms, out, out_size);
}

void cfg_format_size(int64_t bytes, char *out, size_t out_size)
{
	format_with_unit(size_units, bytes, out, out_size);
}

void cfg_format_double(double d, char *out, size_t out_size)
{
	for (int precision = 15; precision <= 17; precision++) {
		snprintf(out, out_size, "%.*g", precision, d);
		if (strtod(out, NULL) == d)
			break;
	}
	/* Keep it a number our parser takes: "1e+20" is fine, "inf" cannot occur. */
}

void cfg_format_range(const struct cfg_option *opt, char *out, size_t out_size)
{
	char lo[40], hi[40];
	out[0] = '\0';
	switch (opt->type) {
	case CFG_INT:
		if (range_set(opt))
			snprintf(out, out_size, "%" PRId64 "..%" PRId64, opt->min, opt->max);
		break;
	case CFG_DURATION_MS:
	case CFG_SIZE:
		if (range_set(opt)) {
			void (*fmt)(int64_t, char *, size_t) =
			    opt->type == CFG_SIZE ? cfg_format_size : cfg_format_duration;
			fmt(opt->min, lo, sizeof(lo));
			fmt(opt->max, hi, sizeof(hi));
			snprintf(out, out_size, "%s..%s", lo, hi);
		}
		break;
	case CFG_DOUBLE: {
		bool bounded;
		double a, b;
		double_range(opt, &bounded, &a, &b);
		if (bounded) {
			cfg_format_double(a, lo, sizeof(lo));
			cfg_format_double(b, hi, sizeof(hi));
			snprintf(out, out_size, "%s..%s", lo, hi);
		}
		break;
	}
	case CFG_STRING:
	case CFG_STRING_LIST:
		if (opt->max > 0)
			snprintf(out, out_size, "max %" PRId64 " bytes", opt->max);
		break;
	case CFG_BOOL:
	case CFG_ENUM: break;
	}
}

size_t cfg_edit_distance(const char *a, size_t alen, const char *b, size_t blen, size_t cap)
{
	/* Three rows of the optimal-string-alignment matrix; paths are short
	 * (CFG_PATH_MAX), longer input is simply "far". */
	size_t rows[3][CFG_PATH_MAX + 1];
	if (alen > CFG_PATH_MAX || blen > CFG_PATH_MAX)
		return cap + 1;
	size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
	for (size_t j = 0; j <= blen; j++)
		prev[j] = j;
	for (size_t i = 1; i <= alen; i++) {
		cur[0] = i;
		size_t best = cur[0];
		for (size_t j = 1; j <= blen; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			cur[j] = v;
			if (v < best)
				best = v;
		}
		if (best > cap)
			return cap + 1;
		size_t *t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[blen] > cap ? cap + 1 : prev[blen];
}

static bool is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

int cfg_check_host_port(const char *value, size_t len, char *msg, size_t msg_size)
{
	char quoted[80], host[INET6_ADDRSTRLEN + 1];
	struct in6_addr a6;
	const char *port;
	size_t host_len, port_len;
	cfg_quote(value, len, quoted, sizeof(quoted));
	if (len == 0) {
		snprintf(msg, msg_size, "empty address, expected host:port");
		return MV_EINVAL;
	}
	/* The gRPC client keeps an address in 256 bytes. */
	if (len > 255) {
		snprintf(msg, msg_size, "%s: address longer than 255 bytes", quoted);
		return MV_EINVAL;
	}
	if (value[0] == '[') {
		const char *end = memchr(value, ']', len);
		if (!end) {
			snprintf(msg, msg_size, "%s: '[' without ']', expected [IPv6]:port",
			         quoted);
			return MV_EINVAL;
		}
		host_len = (size_t)(end - value - 1);
		if (host_len == 0 || host_len >= sizeof(host)) {
			snprintf(msg, msg_size, "%s: not an IPv6 address between [ ]", quoted);
			return MV_EINVAL;
		}
		memcpy(host, value + 1, host_len);
		host[host_len] = '\0';
		/* A link-local address may name its interface: [fe80::1%eth0]. */
		char *zone = strchr(host, '%');
		bool zone_ok = true;
		if (zone) {
			*zone++ = '\0';
			zone_ok = *zone != '\0';
			for (const char *z = zone; *z; z++)
				zone_ok = zone_ok && is_host_char(*z);
		}
		if (!zone_ok || inet_pton(AF_INET6, host, &a6) != 1) {
			snprintf(msg, msg_size, "%s: not an IPv6 address between [ ]", quoted);
			return MV_EINVAL;
		}
		if ((size_t)(end + 1 - value) == len || end[1] != ':') {
			snprintf(msg, msg_size, "%s: missing :port after ]", quoted);
			return MV_EINVAL;
		}
		port = end + 2;
	} else {
		const char *colon = NULL;
		for (size_t i = 0; i < len; i++)
			if (value[i] == ':')
				colon = value + i;
		if (!colon) {
			snprintf(msg, msg_size, "%s: missing :port, expected host:port", quoted);
			return MV_EINVAL;
		}
		host_len = (size_t)(colon - value);
		if (host_len == 0) {
			snprintf(msg, msg_size, "%s: empty host, expected host:port", quoted);
			return MV_EINVAL;
		}
		for (size_t i = 0; i < host_len; i++) {
			if (value[i] == ':') {
				snprintf(msg, msg_size,
				         "%s: an IPv6 address must be bracketed, e.g. [::1]:8081",
				         quoted);
				return MV_EINVAL;
			}
			if (!is_host_char(value[i])) {
				snprintf(msg, msg_size,
				         "%s: the host has a character not allowed in "
				         "a host name",
				         quoted);
				return MV_EINVAL;
			}
		}
		port = colon + 1;
	}
	port_len = len - (size_t)(port - value);
	long p = 0;
	bool digits = port_len > 0 && port_len <= 5;
	for (size_t i = 0; digits && i < port_len; i++) {
		if (port[i] < '0' || port[i] > '9')
			digits = false;
		else
			p = p * 10 + (port[i] - '0');
	}
	if (!digits || p < 1 || p > 65535) {
		snprintf(msg, msg_size, "%s: the port must be a number in 1..65535", quoted);
		return MV_EINVAL;
	}
	return 0;
}
