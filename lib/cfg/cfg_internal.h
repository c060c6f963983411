/*
 * cfg_internal.h - what the cfg module's source files share; not installed.
 *
 * Layering: cfg_value.c parses and formats single values (pure), cfg_yaml.c
 * walks libyaml events (bytes in, values out), cfg.c holds the layers, the
 * environment, secrets, the set-by-a-layer record and the file adapter,
 * cfg_dump.c writes YAML and Markdown.
 */
#ifndef MOVIE_CFG_INTERNAL_H
#define MOVIE_CFG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "movie/cfg.h"

#define CFG_PATH_MAX 256 /* longer key paths cannot name an option */
#define CFG_MSG_MAX  256

/* One parsed value, owned until moved into a config with cfg_assign. */
union cfg_value {
	int64_t i;
	bool b;
	char *s;
	struct cfg_string_list list;
	double d;
};

/* Free what `v` owns for an option of `type` and zero it. */
void cfg_value_free(enum cfg_type type, union cfg_value *v);

/* Parse scalar text for `opt` into `out` (zeroed first). `is_null`: the text
 * was a plain empty/~/null YAML scalar. A CFG_STRING_LIST takes
 * comma-separated text. On failure `msg` says why without the key; the value
 * of a CFG_SECRET option is never echoed.
 * Returns 0, MV_EINVAL, MV_ERANGE, MV_ENOMEM. */
int cfg_value_parse(const struct cfg_option *opt, const char *text, size_t len, bool is_null,
                    union cfg_value *out, char *msg, size_t msg_size);

/* Append one item (checked against the item caps) to `list`.
 * Returns 0, MV_EINVAL, MV_ERANGE, MV_ENOMEM. */
int cfg_list_add(const struct cfg_option *opt, struct cfg_string_list *list, const char *text,
                 size_t len, char *msg, size_t msg_size);

/* "an integer", "a duration (250ms, 5s, 2m, 1h)", ...: for "expected X" messages. */
const char *cfg_type_expectation(enum cfg_type type);
/* "int", "duration", ...: for tables. */
const char *cfg_type_name(enum cfg_type type);

/* Write a duration / size with the largest unit that divides it exactly. */
void cfg_format_duration(int64_t ms, char *out, size_t out_size);
void cfg_format_size(int64_t bytes, char *out, size_t out_size);
/* Write a double in its shortest round-tripping form. */
void cfg_format_double(double d, char *out, size_t out_size);
/* Write the option's range ("1..65535", "1s..1h", "max 4096 bytes") or "". */
void cfg_format_range(const struct cfg_option *opt, char *out, size_t out_size);

/* Address of the option's field inside `config`. */
void *cfg_field(const struct cfg_option *opt, void *config);
const void *cfg_field_const(const struct cfg_option *opt, const void *config);

/* Move `v` into the option's field (freeing the previous value) and record
 * that a layer set it at `where` (NULL: a default, which does not count).
 * `v` is consumed even on failure. Returns 0, MV_ENOMEM. */
int cfg_assign(const struct cfg_schema *schema, void *config, size_t index, union cfg_value *v,
               const char *where);

/* The option's environment variable: <PREFIX>_<KEY>, the key upper-cased
 * with '.' and '-' as '_'. Needs a non-empty schema->env_prefix. */
void cfg_env_name(const struct cfg_schema *schema, const struct cfg_option *opt, char *out,
                  size_t out_size);

/* Index of the option named by the first `len` bytes of `key`, or -1. */
ptrdiff_t cfg_find_option(const struct cfg_schema *schema, const char *key, size_t len);
/* Whether some option's key starts with `prefix` followed by '.'. */
bool cfg_is_prefix(const struct cfg_schema *schema, const char *prefix, size_t len);

/* Suggest the known key (or key prefix) closest to `path`, or "" when none is
 * obviously meant. */
void cfg_suggest_key(const struct cfg_schema *schema, const char *path, char *out, size_t out_size);

/* Fill `err` (any of where/key may be NULL). */
void cfg_error_set(struct cfg_error *err, const char *where, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy the first error of `errs` into `err` (zeroed when there is none);
 * `err` may be NULL. For the single-error API. */
void cfg_errors_first(const struct cfg_errors *errs, struct cfg_error *err);

/* Copy untrusted text for a message: quoted, control and non-ASCII bytes as
 * \xNN, cut at about 48 bytes. */
void cfg_quote(const char *text, size_t len, char *out, size_t out_size);

/* Optimal string alignment distance, capped at `cap` + 1. */
size_t cfg_edit_distance(const char *a, size_t alen, const char *b, size_t blen, size_t cap);

#endif
