/*
 * cfg.c - the layers (defaults, files, environment, secrets, required) and
 * the record of which options a layer set. The only file reads of the module
 * live here (read_capped), so the parsers stay I/O-free.
 */
#include "movie/cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_internal.h"
#include "movie/err.h"
#include "movie/banned.h"

#define ENV_NAME_MAX 320

/*
 * Which options a layer set, and where. The public API passes only the
 * caller's struct, so this is keyed by its address; there are one or two
 * configs per process, so a list is enough. Loading is single-threaded
 * (cfg.h), which makes a plain static safe.
 */
struct cfg_state {
	struct cfg_state *next;
	const void *config;
	size_t count;
	char **origin; /* per option: where a layer last set it; NULL = not set */
};

static struct cfg_state *states;

static void state_free(struct cfg_state *st)
{
	for (size_t i = 0; i < st->count; i++)
		free(st->origin[i]);
	free(st->origin);
	free(st);
}

static void state_drop(const void *config)
{
	for (struct cfg_state **p = &states; *p; p = &(*p)->next) {
		if ((*p)->config == config) {
			struct cfg_state *st = *p;
			*p = st->next;
			state_free(st);
			return;
		}
	}
}

static struct cfg_state *state_find(const void *config)
{
	for (struct cfg_state *st = states; st; st = st->next)
		if (st->config == config)
			return st;
	return NULL;
}

/* The record for `config`, created (or recreated for a different table size)
 * on demand; NULL only when out of memory. */
static struct cfg_state *state_get(const struct cfg_schema *schema, const void *config)
{
	struct cfg_state *st = state_find(config);
	if (st && st->count == schema->option_count)
		return st;
	if (st)
		state_drop(config);
	st = calloc(1, sizeof(*st));
	if (!st)
		goto fail_state;
	st->origin = calloc(schema->option_count ? schema->option_count : 1, sizeof(char *));
	if (!st->origin)
		goto fail_origin;
	st->config = config;
	st->count = schema->option_count;
	st->next = states;
	states = st;
	return st;

fail_origin:
	free(st);
fail_state:
	return NULL;
}

static const char *state_origin(const void *config, size_t index)
{
	const struct cfg_state *st = state_find(config);
	return st && index < st->count ? st->origin[index] : NULL;
}

const char *cfg_origin(const struct cfg_schema *schema, const void *config, const char *key)
{
	ptrdiff_t i = cfg_find_option(schema, key, strlen(key));
	return i < 0 ? NULL : state_origin(config, (size_t)i);
}

const void *cfg_get(const struct cfg_schema *schema, const void *config, const char *key,
                    enum cfg_type type)
{
	ptrdiff_t i = cfg_find_option(schema, key, strlen(key));
	if (i < 0 || schema->options[i].type != type)
		return NULL;
	return cfg_field_const(&schema->options[i], config);
}

void cfg_error_set(struct cfg_error *err, const char *where, const char *key, const char *fmt, ...)
{
	va_list ap;
	snprintf(err->where, sizeof(err->where), "%s", where ? where : "");
	snprintf(err->key, sizeof(err->key), "%s", key ? key : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

void cfg_errors_init(struct cfg_errors *errs)
{
	errs->count = 0;
	errs->dropped = 0;
	errs->first_rc = 0;
}

void cfg_errors_add(struct cfg_errors *errs, int rc, const char *where, const char *key,
                    const char *fmt, ...)
{
	va_list ap;
	if (!errs->first_rc)
		errs->first_rc = rc;
	if (errs->count == CFG_ERRORS_MAX) {
		errs->dropped++;
		return;
	}
	struct cfg_error *err = &errs->items[errs->count++];
	snprintf(err->where, sizeof(err->where), "%s", where ? where : "");
	snprintf(err->key, sizeof(err->key), "%s", key ? key : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

void cfg_errors_first(const struct cfg_errors *errs, struct cfg_error *err)
{
	if (!err)
		return;
	if (errs->count)
		*err = errs->items[0];
	else
		memset(err, 0, sizeof(*err));
}

/* Errors added since `mark` (count + dropped at the start of a call): the
 * code of the first of them, or 0. */
static size_t errors_mark(const struct cfg_errors *errs)
{
	return errs->count + errs->dropped;
}

static int errors_since(const struct cfg_errors *errs, size_t mark, int rc)
{
	return errors_mark(errs) > mark ? rc : 0;
}

void cfg_error_format(const struct cfg_error *err, char *out, size_t out_size)
{
	const char *parts[3] = {err->where, err->key, err->message};
	size_t o = 0;
	if (!out_size)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < 3; i++) {
		if (!parts[i][0])
			continue;
		int n = snprintf(out + o, out_size - o, "%s%s", o ? ": " : "", parts[i]);
		if (n < 0 || (size_t)n >= out_size - o)
			return;
		o += (size_t)n;
	}
}

void *cfg_field(const struct cfg_option *opt, void *config)
{
	return (char *)config + opt->offset;
}

const void *cfg_field_const(const struct cfg_option *opt, const void *config)
{
	return (const char *)config + opt->offset;
}

/* Free the field's value and leave it empty. */
static void field_clear(const struct cfg_option *opt, void *config)
{
	void *f = cfg_field(opt, config);
	switch (opt->type) {
	case CFG_STRING:
	case CFG_ENUM: {
		char **s = f;
		free(*s);
		*s = NULL;
		break;
	}
	case CFG_STRING_LIST: {
		union cfg_value v = {.list = *(struct cfg_string_list *)f};
		cfg_value_free(CFG_STRING_LIST, &v);
		memset(f, 0, sizeof(struct cfg_string_list));
		break;
	}
	case CFG_INT:
	case CFG_DURATION_MS:
	case CFG_SIZE: *(int64_t *)f = 0; break;
	case CFG_BOOL: *(bool *)f = false; break;
	case CFG_DOUBLE: *(double *)f = 0; break;
	}
}

int cfg_assign(const struct cfg_schema *schema, void *config, size_t index, union cfg_value *v,
               const char *where)
{
	const struct cfg_option *opt = &schema->options[index];
	if (where) {
		struct cfg_state *st = state_get(schema, config);
		char *copy = strdup(where);
		if (!st || !copy) {
			free(copy);
			cfg_value_free(opt->type, v);
			return MV_ENOMEM;
		}
		free(st->origin[index]);
		st->origin[index] = copy;
	}
	field_clear(opt, config);
	void *f = cfg_field(opt, config);
	switch (opt->type) {
	case CFG_STRING:
	case CFG_ENUM: *(char **)f = v->s; break;
	case CFG_STRING_LIST: *(struct cfg_string_list *)f = v->list; break;
	case CFG_INT:
	case CFG_DURATION_MS:
	case CFG_SIZE: *(int64_t *)f = v->i; break;
	case CFG_BOOL: *(bool *)f = v->b; break;
	case CFG_DOUBLE: *(double *)f = v->d; break;
	}
	memset(v, 0, sizeof(*v));
	return 0;
}

ptrdiff_t cfg_find_option(const struct cfg_schema *schema, const char *key, size_t len)
{
	for (size_t i = 0; i < schema->option_count; i++) {
		const char *k = schema->options[i].key;
		if (strlen(k) == len && memcmp(k, key, len) == 0)
			return (ptrdiff_t)i;
	}
	return -1;
}

bool cfg_is_prefix(const struct cfg_schema *schema, const char *prefix, size_t len)
{
	for (size_t i = 0; i < schema->option_count; i++) {
		const char *k = schema->options[i].key;
		if (strlen(k) > len && memcmp(k, prefix, len) == 0 && k[len] == '.')
			return true;
	}
	return false;
}

/* Edits tolerated for a suggestion: about one per three characters. */
static size_t suggest_cap(size_t len)
{
	size_t cap = len / 3;
	return cap < 1 ? 1 : cap > 3 ? 3 : cap;
}

void cfg_suggest_key(const struct cfg_schema *schema, const char *path, char *out, size_t out_size)
{
	size_t plen = strlen(path), cap = suggest_cap(plen), best = cap + 1;
	out[0] = '\0';
	for (size_t i = 0; i < schema->option_count; i++) {
		const char *k = schema->options[i].key;
		size_t klen = strlen(k);
		/* The key and each of its prefixes ("storage", "storage.mysql"). */
		for (size_t end = 1; end <= klen; end++) {
			if (end != klen && k[end] != '.')
				continue;
			size_t d = cfg_edit_distance(path, plen, k, end, cap);
			if (d < best) {
				best = d;
				snprintf(out, out_size, "%.*s", (int)end, k);
			}
		}
	}
	if (out[0])
		return;
	/* "port:" at the top level most likely meant "api.port". */
	for (size_t i = 0; i < schema->option_count; i++) {
		const char *k = schema->options[i].key;
		size_t klen = strlen(k);
		if (klen > plen && k[klen - plen - 1] == '.' &&
		    strcmp(k + klen - plen, path) == 0) {
			snprintf(out, out_size, "%s", k);
			return;
		}
	}
}

/* <PREFIX>_<KEY> with the key upper-cased and '.'/'-' as '_'. */
void cfg_env_name(const struct cfg_schema *schema, const struct cfg_option *opt, char *out,
                  size_t out_size)
{
	int n = snprintf(out, out_size, "%s_", schema->env_prefix);
	size_t o = n > 0 ? (size_t)n : 0;
	for (const char *k = opt->key; *k && o + 1 < out_size; k++) {
		char c = *k;
		if (c == '.' || c == '-')
			c = '_';
		else if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		out[o++] = c;
	}
	if (o < out_size)
		out[o] = '\0';
}

static bool has_env(const struct cfg_schema *schema)
{
	return schema->env_prefix && schema->env_prefix[0];
}

static bool valid_key(const char *key)
{
	bool segment_start = true;
	if (!key || !key[0] || strlen(key) >= CFG_PATH_MAX)
		return false;
	for (const char *p = key; *p; p++) {
		char c = *p;
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		             (c >= '0' && c <= '9') || c == '_';
		if (c == '.') {
			if (segment_start)
				return false;
			segment_start = true;
		} else if (alnum || (c == '-' && !segment_start)) {
			segment_start = false;
		} else {
			return false;
		}
	}
	return !segment_start;
}

/* Index of "<key>_file" for a secret option, or -1. */
static ptrdiff_t secret_file_option(const struct cfg_schema *schema, const struct cfg_option *opt)
{
	char name[CFG_PATH_MAX + 8];
	int n = snprintf(name, sizeof(name), "%s_file", opt->key);
	if (n < 0 || (size_t)n >= sizeof(name))
		return -1;
	return cfg_find_option(schema, name, (size_t)n);
}

/* The table is code, not input: a bad one is a bug reported at startup. */
static int check_schema(const struct cfg_schema *schema, struct cfg_error *err)
{
	char a[ENV_NAME_MAX], b[ENV_NAME_MAX];
	for (size_t i = 0; i < schema->option_count; i++) {
		const struct cfg_option *opt = &schema->options[i];
		if (!valid_key(opt->key)) {
			cfg_error_set(err, "schema", opt->key, "invalid option key");
			return MV_EINVAL;
		}
		if (opt->type == CFG_ENUM && (!opt->enum_values || !opt->enum_values[0])) {
			cfg_error_set(err, "schema", opt->key, "enum option without values");
			return MV_EINVAL;
		}
		if ((opt->flags & CFG_SECRET) && opt->type != CFG_STRING) {
			cfg_error_set(err, "schema", opt->key, "a secret must be a string");
			return MV_EINVAL;
		}
		if (opt->flags & CFG_SECRET) {
			ptrdiff_t j = secret_file_option(schema, opt);
			if (j >= 0 && schema->options[j].type != CFG_STRING) {
				cfg_error_set(err, "schema", schema->options[j].key,
				              "a secret's _file option must be a string");
				return MV_EINVAL;
			}
		}
		size_t len = strlen(opt->key);
		if (cfg_find_option(schema, opt->key, len) != (ptrdiff_t)i) {
			cfg_error_set(err, "schema", opt->key, "option declared twice");
			return MV_EINVAL;
		}
		if (cfg_is_prefix(schema, opt->key, len)) {
			cfg_error_set(err, "schema", opt->key,
			              "option is also the parent of other options");
			return MV_EINVAL;
		}
		if (!has_env(schema))
			continue;
		cfg_env_name(schema, opt, a, sizeof(a));
		for (size_t j = 0; j < i; j++) {
			cfg_env_name(schema, &schema->options[j], b, sizeof(b));
			if (strcmp(a, b) == 0) {
				cfg_error_set(err, "schema", opt->key,
				              "same environment variable %s as %s", a,
				              schema->options[j].key);
				return MV_EINVAL;
			}
		}
	}
	return 0;
}

int cfg_set_defaults(const struct cfg_schema *schema, void *config, struct cfg_error *err)
{
	struct cfg_error scratch;
	char msg[CFG_MSG_MAX];
	int rc;
	if (!err)
		err = &scratch;
	memset(err, 0, sizeof(*err));
	rc = check_schema(schema, err);
	if (rc)
		return rc;
	state_drop(config);
	for (size_t i = 0; i < schema->option_count; i++) {
		const struct cfg_option *opt = &schema->options[i];
		union cfg_value v;
		field_clear(opt, config);
		if (!opt->default_value)
			continue;
		rc = cfg_value_parse(opt, opt->default_value, strlen(opt->default_value), false, &v,
		                     msg, sizeof(msg));
		if (rc) {
			cfg_error_set(err, "default", opt->key, "%s", msg);
			return rc == MV_ENOMEM ? rc : MV_EINVAL;
		}
		rc = cfg_assign(schema, config, i, &v, NULL);
		if (rc)
			return rc;
	}
	return state_get(schema, config) ? 0 : MV_ENOMEM;
}

void cfg_release(const struct cfg_schema *schema, void *config)
{
	for (size_t i = 0; i < schema->option_count; i++)
		field_clear(&schema->options[i], config);
	state_drop(config);
}

/* Read at most `cap` bytes of a regular file into a NUL-terminated heap
 * buffer. On MV_EIO, *err_no holds errno. Returns 0, MV_EIO, MV_ETOOBIG,
 * MV_ENOMEM. */
static int read_capped(const char *path, size_t cap, char **out, size_t *out_len, int *err_no)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	int rc = MV_EIO;
	/* O_NONBLOCK: a FIFO named by mistake must not hang startup. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	*err_no = 0;
	if (fd < 0) {
		*err_no = errno;
		goto fail_open;
	}
	if (fstat(fd, &st) != 0) {
		*err_no = errno;
		goto fail_read;
	}
	if (!S_ISREG(st.st_mode)) {
		*err_no = EINVAL;
		goto fail_read;
	}
	data = malloc(cap + 2);
	if (!data) {
		rc = MV_ENOMEM;
		goto fail_read;
	}
	/* Read one byte past the cap to tell "exactly cap" from "more". */
	while (len < cap + 1) {
		ssize_t n = read(fd, data + len, cap + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err_no = errno;
			goto fail_read;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > cap) {
		rc = MV_ETOOBIG;
		goto fail_read;
	}
	data[len] = '\0';
	close(fd);
	*out = data;
	*out_len = len;
	return 0;

fail_read:
	free(data);
	close(fd);
fail_open:
	return rc;
}

int cfg_apply_file_all(const struct cfg_schema *schema, void *config, const char *path,
                       struct cfg_errors *errs)
{
	char *data = NULL;
	size_t len = 0;
	int err_no = 0;
	int rc = read_capped(path, CFG_FILE_MAX, &data, &len, &err_no);
	if (rc == MV_ETOOBIG) {
		cfg_errors_add(errs, rc, path, NULL, "file is larger than %zu bytes", CFG_FILE_MAX);
		return rc;
	}
	if (rc == MV_EIO) {
		cfg_errors_add(errs, rc, path, NULL, "cannot read: %s",
		               err_no == EINVAL ? "not a regular file" : strerror(err_no));
		return rc;
	}
	if (rc) {
		cfg_errors_add(errs, rc, path, NULL, "out of memory");
		return rc;
	}
	struct cfg_source src = {.name = path, .data = data, .len = len};
	rc = cfg_apply_source(schema, config, &src, errs);
	free(data);
	return rc;
}

/* Run one of the collecting functions for the single-error API. */
#define SINGLE_ERROR(err, call)                                                  \
	do {                                                                     \
		struct cfg_errors *errs_ = malloc(sizeof(*errs_));               \
		if (!errs_) {                                                    \
			if (err)                                                 \
				cfg_error_set(err, NULL, NULL, "out of memory"); \
			return MV_ENOMEM;                                        \
		}                                                                \
		cfg_errors_init(errs_);                                          \
		int rc_ = (call);                                                \
		cfg_errors_first(errs_, err);                                    \
		free(errs_);                                                     \
		return rc_;                                                      \
	} while (0)

int cfg_apply_file(const struct cfg_schema *schema, void *config, const char *path,
                   struct cfg_error *err)
{
	SINGLE_ERROR(err, cfg_apply_file_all(schema, config, path, errs_));
}

static void suggest_env(const struct cfg_schema *schema, const char *name, size_t len, char *out,
                        size_t out_size)
{
	char candidate[ENV_NAME_MAX];
	size_t cap = suggest_cap(len), best = cap + 1;
	out[0] = '\0';
	for (size_t i = 0; i < schema->option_count; i++) {
		cfg_env_name(schema, &schema->options[i], candidate, sizeof(candidate));
		size_t d = cfg_edit_distance(name, len, candidate, strlen(candidate), cap);
		if (d < best) {
			best = d;
			snprintf(out, out_size, "%s", candidate);
		}
	}
}

/* Kubernetes (service links) and Docker (links) inject <NAME>_SERVICE_HOST,
 * <NAME>_SERVICE_PORT[_x], <NAME>_PORT and <NAME>_PORT_<n>_<proto>[_x] for every
 * Service: a Service named "metadata" must not make the metadata service refuse
 * to start. `rest` is the variable name after "<PREFIX>_". */
static bool is_service_link(const char *rest, size_t len)
{
	static const char service[] = "SERVICE_";
	if (len >= sizeof(service) - 1 && memcmp(rest, service, sizeof(service) - 1) == 0)
		return true;
	if (len == 4 && memcmp(rest, "PORT", 4) == 0)
		return true;
	if (len > 5 && memcmp(rest, "PORT_", 5) == 0 && rest[5] >= '0' && rest[5] <= '9')
		return true;
	return false;
}

/* The option whose variable is the first `len` bytes of `name`, or -1. */
static ptrdiff_t env_option(const struct cfg_schema *schema, const char *name, size_t len)
{
	char candidate[ENV_NAME_MAX];
	for (size_t i = 0; i < schema->option_count; i++) {
		cfg_env_name(schema, &schema->options[i], candidate, sizeof(candidate));
		if (strlen(candidate) == len && memcmp(candidate, name, len) == 0)
			return (ptrdiff_t)i;
	}
	return -1;
}

bool cfg_env_known(const struct cfg_schema *schema, const char *name)
{
	size_t len = strlen(name), plen;
	if (!has_env(schema))
		return false;
	plen = strlen(schema->env_prefix);
	if (len <= plen + 1 || name[plen] != '_' || memcmp(name, schema->env_prefix, plen) != 0)
		return false;
	return env_option(schema, name, len) >= 0 ||
	       is_service_link(name + plen + 1, len - plen - 1);
}

int cfg_apply_env_all(const struct cfg_schema *schema, void *config, char *const *envp,
                      struct cfg_errors *errs)
{
	char where[ENV_NAME_MAX + 8], msg[CFG_MSG_MAX], hint[ENV_NAME_MAX];
	size_t mark = errors_mark(errs);
	int first = 0;
	if (!envp || !has_env(schema))
		return 0;
	size_t plen = strlen(schema->env_prefix);
	for (char *const *e = envp; *e; e++) {
		const char *entry = *e;
		const char *eq = strchr(entry, '=');
		if (!eq || (size_t)(eq - entry) <= plen + 1 || entry[plen] != '_' ||
		    memcmp(entry, schema->env_prefix, plen) != 0)
			continue;
		size_t nlen = (size_t)(eq - entry);
		snprintf(where, sizeof(where), "env %.*s", (int)(nlen < 300 ? nlen : 300), entry);
		ptrdiff_t index = env_option(schema, entry, nlen);
		if (index < 0 && is_service_link(entry + plen + 1, nlen - plen - 1))
			continue;
		if (index < 0) {
			suggest_env(schema, entry, nlen, hint, sizeof(hint));
			cfg_errors_add(errs, MV_EINVAL, where, NULL,
			               "unknown variable: no option has this name%s%s%s",
			               hint[0] ? " (did you mean " : "", hint, hint[0] ? "?)" : "");
			first = first ? first : MV_EINVAL;
			continue;
		}
		const struct cfg_option *opt = &schema->options[index];
		union cfg_value v;
		int rc = cfg_value_parse(opt, eq + 1, strlen(eq + 1), false, &v, msg, sizeof(msg));
		if (rc) {
			cfg_errors_add(errs, rc, where, opt->key, "%s", msg);
			first = first ? first : rc;
			if (rc == MV_ENOMEM)
				break;
			continue;
		}
		rc = cfg_assign(schema, config, (size_t)index, &v, where);
		if (rc) {
			cfg_errors_add(errs, rc, where, opt->key, "out of memory");
			first = first ? first : rc;
			break;
		}
	}
	return errors_since(errs, mark, first);
}

int cfg_apply_env(const struct cfg_schema *schema, void *config, char *const *envp,
                  struct cfg_error *err)
{
	SINGLE_ERROR(err, cfg_apply_env_all(schema, config, envp, errs_));
}

/* Load one secret from the file named by option `file_index` into `index`;
 * with `read_file` false only check that <key> and <key>_file are not both
 * set. Errors go to `errs`. Returns 0 or the code of the error added. */
static int resolve_secret(const struct cfg_schema *schema, void *config, size_t index,
                          size_t file_index, bool read_file, struct cfg_errors *errs)
{
	const struct cfg_option *opt = &schema->options[index];
	const struct cfg_option *file_opt = &schema->options[file_index];
	const char *path = *(char *const *)cfg_field_const(file_opt, config);
	const char *current = *(char *const *)cfg_field_const(opt, config);
	const char *file_where = state_origin(config, file_index);
	char where[CFG_PATH_MAX + 64];
	char *data = NULL;
	size_t len = 0;
	int err_no = 0, rc;
	if (!path || !path[0])
		return 0;
	if (current && current[0]) {
		const char *value_where = state_origin(config, index);
		cfg_errors_add(errs, MV_EINVAL, file_where, file_opt->key,
		               "both %s (set %s%s) and %s are set; use only one", opt->key,
		               value_where ? "at " : "by default", value_where ? value_where : "",
		               file_opt->key);
		return MV_EINVAL;
	}
	if (!read_file)
		return 0;
	rc = read_capped(path, CFG_SECRET_MAX, &data, &len, &err_no);
	if (rc == MV_EIO) {
		cfg_errors_add(errs, rc, file_where, file_opt->key,
		               "cannot read secret file %s: %s", path,
		               err_no == EINVAL ? "not a regular file" : strerror(err_no));
		return rc;
	}
	if (rc == MV_ETOOBIG) {
		cfg_errors_add(errs, rc, file_where, file_opt->key,
		               "secret file %s is larger than %zu bytes", path, CFG_SECRET_MAX);
		return rc;
	}
	if (rc) {
		cfg_errors_add(errs, rc, file_where, file_opt->key, "out of memory");
		return rc;
	}
	/* Editors and `echo` end files with a newline no password contains. */
	if (len && data[len - 1] == '\n') {
		len--;
		if (len && data[len - 1] == '\r')
			len--;
	}
	data[len] = '\0';
	if (memchr(data, '\0', len)) {
		free(data);
		cfg_errors_add(errs, MV_EINVAL, file_where, file_opt->key,
		               "secret file %s contains a NUL byte", path);
		return MV_EINVAL;
	}
	snprintf(where, sizeof(where), "file %s", path);
	union cfg_value v = {.s = data};
	rc = cfg_assign(schema, config, index, &v, where);
	if (rc)
		cfg_errors_add(errs, rc, NULL, opt->key, "out of memory");
	return rc;
}

/* Secrets (read or only checked) and required options; every error added. */
static int finish(const struct cfg_schema *schema, void *config, bool read_files,
                  struct cfg_errors *errs)
{
	char name[ENV_NAME_MAX];
	int first = 0;
	for (size_t i = 0; i < schema->option_count; i++) {
		const struct cfg_option *opt = &schema->options[i];
		if (!(opt->flags & CFG_SECRET))
			continue;
		ptrdiff_t j = secret_file_option(schema, opt);
		if (j < 0)
			continue;
		int rc = resolve_secret(schema, config, i, (size_t)j, read_files, errs);
		if (rc && !first)
			first = rc;
		if (rc == MV_ENOMEM)
			return rc;
	}
	for (size_t i = 0; i < schema->option_count; i++) {
		const struct cfg_option *opt = &schema->options[i];
		if (!(opt->flags & CFG_REQUIRED) || state_origin(config, i))
			continue;
		if (has_env(schema)) {
			cfg_env_name(schema, opt, name, sizeof(name));
			cfg_errors_add(errs, MV_EINVAL, NULL, opt->key,
			               "required option is not set (set it in a config file or %s)",
			               name);
		} else {
			cfg_errors_add(errs, MV_EINVAL, NULL, opt->key,
			               "required option is not set (set it in a config file)");
		}
		if (!first)
			first = MV_EINVAL;
	}
	return first;
}

int cfg_finish_all(const struct cfg_schema *schema, void *config, struct cfg_errors *errs)
{
	return finish(schema, config, true, errs);
}

int cfg_finish(const struct cfg_schema *schema, void *config, struct cfg_error *err)
{
	SINGLE_ERROR(err, cfg_finish_all(schema, config, errs_));
}

int cfg_validate(const struct cfg_schema *schema, const void *config, struct cfg_errors *errs)
{
	if (!schema->validate)
		return 0;
	size_t mark = errors_mark(errs);
	int rc = schema->validate(schema, config, errs);
	/* A validator that forgot to return its error still fails the load. */
	return rc ? rc : errors_since(errs, mark, MV_EINVAL);
}

int cfg_check_all(const struct cfg_schema *schema, void *config, struct cfg_errors *errs)
{
	int rc = finish(schema, config, false, errs);
	if (rc == MV_ENOMEM)
		return rc;
	int vrc = cfg_validate(schema, config, errs);
	return rc ? rc : vrc;
}

int cfg_load_all(const struct cfg_schema *schema, void *config, const char *const *files,
                 size_t file_count, char *const *envp, struct cfg_errors *errs)
{
	struct cfg_error err;
	int first = cfg_set_defaults(schema, config, &err);
	if (first) {
		cfg_errors_add(errs, first, err.where, err.key, "%s", err.message);
		return first;
	}
	for (size_t i = 0; i < file_count; i++) {
		int rc = cfg_apply_file_all(schema, config, files[i], errs);
		first = first ? first : rc;
		if (rc == MV_ENOMEM)
			return first;
	}
	int rc = cfg_apply_env_all(schema, config, envp, errs);
	first = first ? first : rc;
	if (rc == MV_ENOMEM)
		return first;
	rc = cfg_finish_all(schema, config, errs);
	first = first ? first : rc;
	if (rc == MV_ENOMEM)
		return first;
	rc = cfg_validate(schema, config, errs);
	return first ? first : rc;
}

int cfg_load(const struct cfg_schema *schema, void *config, const char *const *files,
             size_t file_count, char *const *envp, struct cfg_error *err)
{
	SINGLE_ERROR(err, cfg_load_all(schema, config, files, file_count, envp, errs_));
}
