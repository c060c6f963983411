/*
 * ytree.h - a small in-memory tree of YAML documents, built with libyaml.
 *
 * Enough YAML for Kubernetes manifests and the service configs: mappings with
 * scalar keys, sequences and scalars. Anchors and aliases are rejected (kustomize
 * never emits them and they are the classic "billion laughs" amplifier). Every
 * node remembers its 1-based source line for error messages.
 *
 * No I/O: the parser takes bytes. Not thread-safe; a tree belongs to one thread.
 */
#ifndef MOVIECTL_YTREE_H
#define MOVIECTL_YTREE_H

#include <stddef.h>

/* Caps on untrusted input (a rendered manifest set is well under all of them). */
#define YTREE_MAX_DEPTH 64
#define YTREE_MAX_NODES 1000000
#define YTREE_MAX_DOCS  10000

enum ynode_type {
	YNODE_SCALAR,
	YNODE_SEQ,
	YNODE_MAP,
};

struct ynode {
	enum ynode_type type;
	int line;   /* 1-based line of the node's start */
	char *str;  /* YNODE_SCALAR: the value, NUL-terminated */
	int quoted; /* YNODE_SCALAR: 1 when written quoted (so "1" is a string) */
	size_t len; /* YNODE_SCALAR: bytes of str (it may hold a NUL) */
	/* YNODE_SCALAR: where the text itself starts in the source, so that a
	 * position inside the text (a config embedded in a ConfigMap) maps back
	 * to the file: a literal block scalar (`|`) keeps its lines, so its line
	 * k is source line text_line + k - 1 and its columns are shifted by
	 * text_indent; for other styles these name the value's first character
	 * (exact for text on one line). */
	int text_line;   /* 1-based */
	int text_indent; /* columns before the text */
	int literal;     /* 1 for a literal block scalar */
	size_t n;        /* YNODE_SEQ: items; YNODE_MAP: key/value pairs */
	size_t cap;
	char **keys;         /* YNODE_MAP: n keys */
	struct ynode **vals; /* YNODE_SEQ: n items; YNODE_MAP: n values */
};

/* The documents of one YAML stream, in order. Empty documents are skipped. */
struct ydocs {
	struct ynode **docs;
	size_t n;
};

/*
 * Parse every document of `data` (`len` bytes) into `out`, which must be
 * zeroed by the caller (`struct ydocs d = {0};`: the parser appends to it) and
 * is released with ytree_docs_release, also after a failure. On a syntax error
 * writes "line:column: problem" into err (errlen bytes).
 * Returns 0, MV_ESYNTAX (syntax error, alias or non-scalar key), MV_ETOOBIG
 * (depth, node or document cap exceeded), MV_ENOMEM.
 */
int ytree_parse(const char *data, size_t len, struct ydocs *out, char *err, size_t errlen);
void ytree_docs_release(struct ydocs *docs);

/* Free a node and everything below it. NULL is allowed. */
void ytree_free(struct ynode *n);

/* Deep copy. Returns NULL when out of memory. */
struct ynode *ytree_clone(const struct ynode *n);

/*
 * Merge `src` into `*dst` the way the services layer their --config files:
 * mappings merge key by key, anything else in src replaces what dst had.
 * `*dst` may be NULL (it becomes a copy of src). src is not modified.
 * Returns 0, MV_ENOMEM (then *dst is unchanged or partially merged, still valid).
 */
int ytree_merge(struct ynode **dst, const struct ynode *src);

/* The value of `key` in mapping `map`; NULL when map is NULL, not a map, or lacks key. */
const struct ynode *ytree_get(const struct ynode *map, const char *key);

/* ytree_get for a tree the caller may modify. */
struct ynode *ytree_get_mut(struct ynode *map, const char *key);

/* Follow a list of mapping keys ended by YTREE_END:
 * ytree_at(doc, "spec", "template", YTREE_END). A typed null pointer, because a
 * plain NULL passed through "..." may be an int 0 (C11 7.19). */
#define YTREE_END ((const char *)NULL)
const struct ynode *ytree_at(const struct ynode *root, ...) __attribute__((sentinel));

/* The scalar's text, or NULL when n is NULL or not a scalar. */
const char *ytree_str(const struct ynode *n);

/* Parse a scalar as a decimal integer. Returns 0, MV_EINVAL (absent, not a
 * scalar, not an integer), MV_ERANGE (outside long long). */
int ytree_int(const struct ynode *n, long long *out);

/* Parse a scalar as a boolean (true/false). Returns 0 or MV_EINVAL. */
int ytree_bool(const struct ynode *n, int *out);

/*
 * Set `key` in mapping `map` to a new scalar `value` (replacing any old value).
 * Returns 0, MV_EINVAL (map is not a mapping), MV_ENOMEM.
 */
int ytree_map_set_str(struct ynode *map, const char *key, const char *value);

#endif
