/*
 * cfg.h - layered YAML configuration validated against a declared option table.
 *
 * Each program declares one table of options (struct cfg_option) describing
 * every key it accepts: dotted key path, type, default, range, whether it is
 * required, and where in the program's config struct the value lives (offset).
 * Loading layers sources in order, later ones overriding earlier ones:
 *
 *   1. the defaults from the table,
 *   2. each YAML file given (--config base.yaml --config production.yaml),
 *   3. environment variables, one per key: <PREFIX>_<KEY> with the key's dots
 *      and dashes turned into '_' and upper-cased (prefix "METADATA", key
 *      "api.port" -> METADATA_API_PORT),
 *   4. secret files: for an option flagged CFG_SECRET, a sibling CFG_STRING
 *      option "<key>_file" declared in the same table (set in YAML or env)
 *      names a file whose content, with one trailing newline removed, becomes
 *      the value (Kubernetes Secret mounts); setting both is an error,
 *   5. the required-key check.
 *
 * Errors are precise: YAML syntax errors, unknown keys, wrong types and
 * out-of-range values are reported with "file:line:column: key: message".
 * Environment errors name the variable instead of a file. The *_all
 * functions collect every error of every layer (struct cfg_errors); the
 * others return the first. Checks across options (schema->validate) run
 * after the layers, so every program loading with a schema applies the same
 * rules.
 *
 * The YAML parsing takes bytes and returns values; only cfg_apply_file and
 * cfg_finish (secret files) read files. Not thread-safe: load configuration
 * before starting threads.
 *
 * Value syntax is decided by the option's type, not by YAML tags or quoting
 * (`port: "8080"` is the integer 8080), so YAML, env and defaults share one
 * parser. A plain empty / `~` / `null` value means "" for CFG_STRING, [] for
 * CFG_STRING_LIST and is an error for every other type. A key may itself
 * contain dots (`api.port: 1` equals `api: {port: 1}`); setting one option
 * twice in one document, in either spelling, is a duplicate-key error.
 * Anchors, aliases and tags are rejected. See docs/internals/cfg.md.
 *
 * Which options were set by a layer (for CFG_REQUIRED and secrets) is kept
 * in a private table keyed by the `config` pointer, from cfg_set_defaults (or
 * the first apply) until cfg_release: always release with the same pointer.
 */
#ifndef MOVIE_CFG_H
#define MOVIE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cfg_type {
	CFG_INT,         /* int64_t; YAML integer, range [min, max] */
	CFG_BOOL,        /* bool; YAML true/false (also yes/no, on/off) */
	CFG_STRING,      /* char * (owned, heap); any scalar; max bytes = max (0: 4096) */
	CFG_DURATION_MS, /* int64_t milliseconds; "250ms", "5s", "2m", "1h", or a bare integer of ms */
	CFG_ENUM,        /* char * (owned) that must be one of enum_values */
	CFG_STRING_LIST, /* struct cfg_string_list; a YAML sequence of scalars, or
	                    one comma-separated string (env vars, defaults); items
	                    trimmed, at most CFG_LIST_MAX_ITEMS, each at most max
	                    bytes (0: CFG_STRING_MAX_DEFAULT) */
	CFG_SIZE,        /* int64_t bytes; "4MiB", "512KiB", "1GiB", "10B", "1000" (binary
	                    units only: B, KiB, MiB, GiB; "KB"/"MB" are rejected) */
	CFG_DOUBLE,      /* double; range [dmin, dmax] when either is non-zero, else
	                    [min, max] compared as doubles; nan/inf rejected */
};

/* Caps on untrusted input (MV_ETOOBIG / MV_EINVAL / MV_ERANGE above them). */
#define CFG_FILE_MAX           ((size_t)1 << 20)  /* bytes of one YAML document */
#define CFG_SECRET_MAX         ((size_t)64 << 10) /* bytes of one secret file */
#define CFG_DEPTH_MAX          16                 /* nested mappings/sequences */
#define CFG_STRING_MAX_DEFAULT 4096               /* CFG_STRING / list item bytes when max == 0 */
#define CFG_LIST_MAX_ITEMS     1024               /* items of one CFG_STRING_LIST */

enum cfg_flags {
	CFG_REQUIRED = 1 << 0, /* must be set by some layer (a default does not count) */
	CFG_SECRET = 1 << 1,   /* may come from "<key>_file"; never printed by cfg_dump */
};

struct cfg_string_list {
	char **items; /* owned */
	size_t count;
};

struct cfg_option {
	const char *key; /* dotted path, e.g. "storage.sqlite.path" */
	enum cfg_type type;
	size_t offset;                  /* offsetof(<program config struct>, field) */
	const char *default_value;      /* text parsed by the same rules as YAML; NULL = none */
	int64_t min, max;               /* INT/DURATION/SIZE/DOUBLE range; STRING max length.
	                              min == max == 0 means unbounded */
	const char *const *enum_values; /* CFG_ENUM: NULL-terminated list */
	unsigned flags;                 /* enum cfg_flags */
	const char *help;               /* one line, for --help-config and docs */
	double dmin, dmax;              /* CFG_DOUBLE range when either is non-zero (added last
	                              so existing initialisers keep their meaning) */
	/* Optional syntax check of a CFG_STRING value or of each CFG_STRING_LIST
	 * item, run by every layer (defaults, YAML, env) after the type's own
	 * checks: returns 0, or MV_EINVAL with `msg` saying why (without the
	 * key). Must be pure: no I/O, no global state. */
	int (*check)(const char *value, size_t len, char *msg, size_t msg_size);
};

struct cfg_errors;

struct cfg_schema {
	const char *program;    /* "metadata" */
	const char *env_prefix; /* "METADATA" */
	const struct cfg_option *options;
	size_t option_count;
	size_t config_size; /* sizeof the program's config struct (tools allocate it) */
	/* Optional checks across options (min <= max, ...), run by cfg_load_all
	 * and cfg_validate after every layer, so that start-up, --check-config and
	 * `moviectl lint` run the same rules. Adds each problem to `errs`, placed
	 * with cfg_origin(); returns 0 or MV_EINVAL. Pure: no I/O. */
	int (*validate)(const struct cfg_schema *schema, const void *config,
	                struct cfg_errors *errs);
};

/* Where and why loading failed. `where` is "file:line:column" for YAML,
 * "env METADATA_API_PORT" for the environment, or "" when not positional. */
struct cfg_error {
	char where[320];
	char key[160];
	char message[256];
};

/* Format an error as one line: "where: key: message" (parts omitted when empty). */
void cfg_error_format(const struct cfg_error *err, char *out, size_t out_size);

/* Every error of a load, in the order found. The loader goes on after an
 * error wherever the rest of the input still means something (a bad value,
 * an unknown key and its subtree, a bad list item, another file, another
 * variable); it stops a document at YAML syntax errors, anchors, aliases,
 * tags, nesting past CFG_DEPTH_MAX, a list past CFG_LIST_MAX_ITEMS, a second
 * document, a key that is not a scalar and out of memory. At most CFG_ERRORS_MAX
 * are kept; the rest are only counted. About 37 KB: embed or heap-allocate. */
#define CFG_ERRORS_MAX 50
struct cfg_errors {
	struct cfg_error items[CFG_ERRORS_MAX];
	size_t count;   /* items kept */
	size_t dropped; /* errors past CFG_ERRORS_MAX */
	int first_rc;   /* the MV_E* code of the first error; 0 when none */
};

void cfg_errors_init(struct cfg_errors *errs);

/* Record one error (kept when there is room, else counted in `dropped`).
 * `rc` is its MV_E* code; where/key may be NULL. */
void cfg_errors_add(struct cfg_errors *errs, int rc, const char *where, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A YAML document held in memory, and where it sits: a document embedded in a
 * bigger file (a ConfigMap value inside a manifest) is reported at the
 * positions of that file. `line_offset` is added to every line and
 * `column_offset` to every column (a YAML literal block scalar keeps lines
 * and indents them uniformly). */
struct cfg_source {
	const char *name; /* file name for positions; NULL: "<yaml>" */
	const char *data;
	size_t len;
	unsigned line_offset;
	unsigned column_offset;
};

/* Set every option to its default (or zero/NULL when it has none), freeing
 * any value a previous load left, and forget which options layers had set.
 * `config` points at the program's config struct, zero-initialised.
 * Also checks the schema itself: keys are non-empty dot-separated segments of
 * [A-Za-z0-9_-], unique, none a prefix path of another, env names distinct,
 * CFG_ENUM has values, a CFG_SECRET is a CFG_STRING whose "<key>_file"
 * sibling (if any) is a CFG_STRING.
 * Returns 0, MV_ENOMEM, or MV_EINVAL when the schema is invalid or a default
 * does not parse (a bug). */
int cfg_set_defaults(const struct cfg_schema *schema, void *config, struct cfg_error *err);

/* Apply one YAML document held in memory; `name` is used in error positions.
 * The document must be a mapping (or empty). Nested mappings form key paths.
 * Returns 0, MV_ESYNTAX (YAML syntax), MV_EINVAL (unknown key, wrong type,
 * bad value, duplicate key, anchor/alias/tag, nesting deeper than
 * CFG_DEPTH_MAX, more than one document), MV_ERANGE (out of range),
 * MV_ETOOBIG (len > CFG_FILE_MAX), MV_ENOMEM: the code of the first error,
 * which `err` describes (the rest of the document is still walked, see
 * cfg_apply_source). On error `config` may be partly updated but stays
 * releasable; callers exit. */
int cfg_apply_yaml(const struct cfg_schema *schema, void *config, const char *name,
                   const char *data, size_t len, struct cfg_error *err);

/* Read `path` (at most CFG_FILE_MAX bytes) and apply it with cfg_apply_yaml.
 * Returns as cfg_apply_yaml, plus MV_EIO when the file cannot be read
 * (`where` is the path, the message has strerror). */
int cfg_apply_file(const struct cfg_schema *schema, void *config, const char *path,
                   struct cfg_error *err);

/* Apply environment overrides from `envp` (NULL-terminated "K=V" strings).
 * Variables with the prefix that match no option are an error (a typo in a
 * Deployment must not be silently ignored). Returns as cfg_apply_yaml. */
int cfg_apply_env(const struct cfg_schema *schema, void *config, char *const *envp,
                  struct cfg_error *err);

/* Resolve "<key>_file" secrets and check required options. Call once after all
 * layers. A non-empty "<key>_file" names a file (at most CFG_SECRET_MAX bytes,
 * no NUL byte) whose content minus one trailing "\n" or "\r\n" replaces the
 * value of <key>. Returns 0, MV_EIO (secret file unreadable), MV_ETOOBIG
 * (secret file too big), MV_EINVAL (required option missing; both <key> and
 * <key>_file non-empty; NUL byte in a secret file), MV_ENOMEM. */
int cfg_finish(const struct cfg_schema *schema, void *config, struct cfg_error *err);

/* The whole sequence: defaults, files in order, environment, finish.
 * Returns the first error of any step. */
int cfg_load(const struct cfg_schema *schema, void *config, const char *const *files,
             size_t file_count, char *const *envp, struct cfg_error *err);

/* The functions above, collecting every error into `errs` (not cleared:
 * several calls add to one list) instead of stopping at the first. Each
 * returns 0 when it added no error, else the code of the first error it added
 * (MV_E* as its single-error twin above). */
int cfg_apply_source(const struct cfg_schema *schema, void *config, const struct cfg_source *src,
                     struct cfg_errors *errs);
int cfg_apply_file_all(const struct cfg_schema *schema, void *config, const char *path,
                       struct cfg_errors *errs);
int cfg_apply_env_all(const struct cfg_schema *schema, void *config, char *const *envp,
                      struct cfg_errors *errs);
int cfg_finish_all(const struct cfg_schema *schema, void *config, struct cfg_errors *errs);

/* The checks of cfg_finish that need no file: required options, and <key>
 * set together with a non-empty <key>_file; then schema->validate. For tools
 * that check a configuration meant for another machine (moviectl lint), where
 * the secret files are not. Returns 0, MV_EINVAL. */
int cfg_check_all(const struct cfg_schema *schema, void *config, struct cfg_errors *errs);

/* Whether cfg_apply_env accepts variable `name` whatever its value: it names
 * an option, or is a service-link variable the loader ignores. False for
 * names without the schema's prefix. For tools that see a variable's name
 * but not its value (a Kubernetes env entry with valueFrom). */
bool cfg_env_known(const struct cfg_schema *schema, const char *name);

/* Run schema->validate (0 when it has none). Returns 0, MV_EINVAL. */
int cfg_validate(const struct cfg_schema *schema, const void *config, struct cfg_errors *errs);

/* cfg_load collecting every error of every file, the environment, the
 * secrets and schema->validate. A failing cfg_set_defaults (a bug) stops it.
 * Returns 0 or the code of the first error. Release `config` either way. */
int cfg_load_all(const struct cfg_schema *schema, void *config, const char *const *files,
                 size_t file_count, char *const *envp, struct cfg_errors *errs);

/* Where a layer last set option `key`: "file:line:column", "env NAME", "file
 * PATH" (a secret); NULL when the value is the default or `key` is no option.
 * Valid until the next load or cfg_release of `config`. */
const char *cfg_origin(const struct cfg_schema *schema, const void *config, const char *key);

/* The field of option `key` when it exists and has `type`, else NULL: lets a
 * tool read values of a schema it knows only by key (moviectl lint). */
const void *cfg_get(const struct cfg_schema *schema, const void *config, const char *key,
                    enum cfg_type type);

/* A cfg_option.check for "host:port" values: a non-empty host name or IPv4
 * address, or a bracketed well-formed IPv6 address ("[::1]:8081"), then a
 * decimal port in 1..65535. Returns 0 or MV_EINVAL. */
int cfg_check_host_port(const char *value, size_t len, char *msg, size_t msg_size);

/* Free every string and list the loader allocated in `config` (fields become
 * NULL / empty) and the private record of which options were set. */
void cfg_release(const struct cfg_schema *schema, void *config);

/* Write the effective configuration as nested YAML to `out`, grouped by key
 * prefix in table order; the output loads back to the same values. A
 * non-empty secret is written as "<redacted>"; a string with no value as ~
 * (which loads back as "").
 * Returns 0, MV_ENOMEM, MV_ETOOBIG (from `out`'s limit). */
struct buf;
int cfg_dump(const struct cfg_schema *schema, const void *config, struct buf *out);

/* Write a Markdown table of every option (key, type, default, range, env var,
 * help). Returns 0, MV_ENOMEM, MV_ETOOBIG. */
int cfg_describe(const struct cfg_schema *schema, struct buf *out);

#endif
