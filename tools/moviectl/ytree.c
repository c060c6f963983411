#include "ytree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "movie/err.h"
#include "movie/banned.h"

static struct ynode *node_new(enum ynode_type type, int line)
{
	struct ynode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->type = type;
	n->line = line;
	return n;
}

static char *dup_bytes(const char *s, size_t len)
{
	char *d = malloc(len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static int grow(struct ynode *n)
{
	if (n->n < n->cap)
		return 0;
	size_t cap = n->cap ? n->cap * 2 : 4;
	struct ynode **vals = realloc(n->vals, cap * sizeof(*vals));
	if (!vals)
		return MV_ENOMEM;
	n->vals = vals;
	if (n->type == YNODE_MAP) {
		char **keys = realloc(n->keys, cap * sizeof(*keys));
		if (!keys)
			return MV_ENOMEM;
		n->keys = keys;
	}
	n->cap = cap;
	return 0;
}

void ytree_free(struct ynode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++) {
		ytree_free(n->vals[i]);
		if (n->keys)
			free(n->keys[i]);
	}
	free(n->vals);
	free(n->keys);
	free(n->str);
	free(n);
}

void ytree_docs_release(struct ydocs *docs)
{
	for (size_t i = 0; i < docs->n; i++)
		ytree_free(docs->docs[i]);
	free(docs->docs);
	docs->docs = NULL;
	docs->n = 0;
}

/*
 * Parser state: a stack of open collections. A mapping alternates between
 * expecting a key (a scalar, kept in pending_key) and a value.
 */
struct frame {
	struct ynode *node;
	char *pending_key;
};

struct builder {
	struct frame stack[YTREE_MAX_DEPTH];
	size_t depth;
	size_t nodes;
	struct ynode *root;
};

/* Attach a finished node to the open collection (or make it the root). Takes
 * ownership of `n` in every case. */
static int attach(struct builder *b, struct ynode *n, char *err, size_t errlen)
{
	if (b->depth == 0) {
		b->root = n;
		return 0;
	}
	struct frame *f = &b->stack[b->depth - 1];
	struct ynode *parent = f->node;
	if (parent->type == YNODE_MAP && !f->pending_key) {
		if (n->type != YNODE_SCALAR) {
			snprintf(err, errlen, "%d:1: mapping key is not a scalar", n->line);
			ytree_free(n);
			return MV_ESYNTAX;
		}
		f->pending_key = n->str;
		n->str = NULL;
		ytree_free(n);
		return 0;
	}
	int rc = grow(parent);
	if (rc) {
		ytree_free(n);
		return rc;
	}
	if (parent->type == YNODE_MAP) {
		parent->keys[parent->n] = f->pending_key;
		f->pending_key = NULL;
	}
	parent->vals[parent->n++] = n;
	return 0;
}

static void builder_release(struct builder *b)
{
	while (b->depth > 0) {
		struct frame *f = &b->stack[--b->depth];
		free(f->pending_key);
		ytree_free(f->node);
	}
	ytree_free(b->root);
	b->root = NULL;
}

static int push_doc(struct ydocs *out, struct ynode *root)
{
	if (out->n >= YTREE_MAX_DOCS)
		return MV_ETOOBIG;
	struct ynode **docs = realloc(out->docs, (out->n + 1) * sizeof(*docs));
	if (!docs)
		return MV_ENOMEM;
	out->docs = docs;
	out->docs[out->n++] = root;
	return 0;
}

/* Fill the text_* fields of scalar `n` from its event (ytree.h). A literal
 * block's text starts on the line after its indicator, indented by the
 * first non-blank line's spaces. */
static void text_position(struct ynode *n, const yaml_event_t *ev, const char *data, size_t len)
{
	size_t i = ev->start_mark.index;
	n->text_line = (int)ev->start_mark.line + 1;
	n->text_indent = (int)ev->start_mark.column;
	if (ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
		n->text_indent++;
	if (ev->data.scalar.style != YAML_LITERAL_SCALAR_STYLE || i >= len)
		return;
	while (i < len && data[i] != '\n')
		i++;
	n->literal = 1;
	n->text_line++;
	/* Blank lines before the first text line keep their place. */
	for (size_t line = i + 1; line < len;) {
		size_t sp = 0;
		while (line + sp < len && data[line + sp] == ' ')
			sp++;
		if (line + sp < len && data[line + sp] != '\n' && data[line + sp] != '\r') {
			n->text_indent = (int)sp;
			return;
		}
		const char *nl = memchr(data + line, '\n', len - line);
		if (!nl)
			return;
		line = (size_t)(nl - data) + 1;
	}
}

int ytree_parse(const char *data, size_t len, struct ydocs *out, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct builder b;
	int rc = 0;
	int done = 0;

	memset(&b, 0, sizeof(b));
	if (errlen)
		err[0] = '\0';
	if (!yaml_parser_initialize(&parser))
		return MV_ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);

	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			snprintf(err, errlen, "%zu:%zu: %s", parser.problem_mark.line + 1,
			         parser.problem_mark.column + 1,
			         parser.problem ? parser.problem : "syntax error");
			rc = parser.error == YAML_MEMORY_ERROR ? MV_ENOMEM : MV_ESYNTAX;
			goto fail_parse;
		}
		int line = (int)ev.start_mark.line + 1;
		struct ynode *n = NULL;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT: done = 1; break;
		case YAML_DOCUMENT_END_EVENT:
			if (b.root) {
				rc = push_doc(out, b.root);
				if (rc)
					goto fail_event;
				b.root = NULL;
			}
			break;
		case YAML_ALIAS_EVENT:
			snprintf(err, errlen, "%d:%zu: aliases are not supported", line,
			         ev.start_mark.column + 1);
			rc = MV_ESYNTAX;
			goto fail_event;
		case YAML_SCALAR_EVENT:
			if (++b.nodes > YTREE_MAX_NODES) {
				rc = MV_ETOOBIG;
				goto fail_event;
			}
			n = node_new(YNODE_SCALAR, line);
			if (!n) {
				rc = MV_ENOMEM;
				goto fail_event;
			}
			n->str =
			    dup_bytes((const char *)ev.data.scalar.value, ev.data.scalar.length);
			if (!n->str) {
				ytree_free(n);
				rc = MV_ENOMEM;
				goto fail_event;
			}
			n->quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
			n->len = ev.data.scalar.length;
			text_position(n, &ev, data, len);
			rc = attach(&b, n, err, errlen);
			if (rc)
				goto fail_event;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++b.nodes > YTREE_MAX_NODES || b.depth >= YTREE_MAX_DEPTH) {
				snprintf(err, errlen, "%d:%zu: nesting or size cap exceeded", line,
				         ev.start_mark.column + 1);
				rc = MV_ETOOBIG;
				goto fail_event;
			}
			n = node_new(ev.type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP,
			             line);
			if (!n) {
				rc = MV_ENOMEM;
				goto fail_event;
			}
			b.stack[b.depth].node = n;
			b.stack[b.depth].pending_key = NULL;
			b.depth++;
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT: {
			struct frame *f = &b.stack[--b.depth];
			n = f->node;
			free(f->pending_key); /* libyaml never ends a map after a key */
			f->pending_key = NULL;
			rc = attach(&b, n, err, errlen);
			if (rc)
				goto fail_event;
			break;
		}
		default: break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return 0;

fail_event:
	yaml_event_delete(&ev);
fail_parse:
	builder_release(&b);
	yaml_parser_delete(&parser);
	return rc;
}

struct ynode *ytree_clone(const struct ynode *n)
{
	struct ynode *c = node_new(n->type, n->line);
	if (!c)
		return NULL;
	c->quoted = n->quoted;
	c->len = n->len;
	c->text_line = n->text_line;
	c->text_indent = n->text_indent;
	c->literal = n->literal;
	if (n->str && !(c->str = dup_bytes(n->str, n->len)))
		goto fail;
	for (size_t i = 0; i < n->n; i++) {
		if (grow(c))
			goto fail;
		if (c->type == YNODE_MAP) {
			c->keys[c->n] = dup_bytes(n->keys[i], strlen(n->keys[i]));
			if (!c->keys[c->n])
				goto fail;
		}
		c->vals[c->n] = ytree_clone(n->vals[i]);
		if (!c->vals[c->n]) {
			if (c->keys)
				free(c->keys[c->n]);
			goto fail;
		}
		c->n++;
	}
	return c;
fail:
	ytree_free(c);
	return NULL;
}

static ptrdiff_t map_index(const struct ynode *map, const char *key)
{
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i], key) == 0)
			return (ptrdiff_t)i;
	return -1;
}

int ytree_merge(struct ynode **dst, const struct ynode *src)
{
	if (!*dst || (*dst)->type != YNODE_MAP || src->type != YNODE_MAP) {
		struct ynode *c = ytree_clone(src);
		if (!c)
			return MV_ENOMEM;
		ytree_free(*dst);
		*dst = c;
		return 0;
	}
	struct ynode *d = *dst;
	for (size_t i = 0; i < src->n; i++) {
		ptrdiff_t at = map_index(d, src->keys[i]);
		if (at >= 0) {
			int rc = ytree_merge(&d->vals[at], src->vals[i]);
			if (rc)
				return rc;
			continue;
		}
		if (grow(d))
			return MV_ENOMEM;
		char *key = dup_bytes(src->keys[i], strlen(src->keys[i]));
		struct ynode *val = ytree_clone(src->vals[i]);
		if (!key || !val) {
			free(key);
			ytree_free(val);
			return MV_ENOMEM;
		}
		d->keys[d->n] = key;
		d->vals[d->n] = val;
		d->n++;
	}
	return 0;
}

const struct ynode *ytree_get(const struct ynode *map, const char *key)
{
	if (!map || map->type != YNODE_MAP)
		return NULL;
	ptrdiff_t at = map_index(map, key);
	return at >= 0 ? map->vals[at] : NULL;
}

struct ynode *ytree_get_mut(struct ynode *map, const char *key)
{
	if (!map || map->type != YNODE_MAP)
		return NULL;
	ptrdiff_t at = map_index(map, key);
	return at >= 0 ? map->vals[at] : NULL;
}

const struct ynode *ytree_at(const struct ynode *root, ...)
{
	va_list ap;
	va_start(ap, root);
	const struct ynode *n = root;
	const char *key;
	while (n && (key = va_arg(ap, const char *)) != NULL)
		n = ytree_get(n, key);
	va_end(ap);
	return n;
}

const char *ytree_str(const struct ynode *n)
{
	return n && n->type == YNODE_SCALAR ? n->str : NULL;
}

int ytree_int(const struct ynode *n, long long *out)
{
	const char *s = ytree_str(n);
	if (!s || !*s)
		return MV_EINVAL;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return MV_ERANGE;
	if (*end != '\0')
		return MV_EINVAL;
	*out = v;
	return 0;
}

int ytree_bool(const struct ynode *n, int *out)
{
	const char *s = ytree_str(n);
	if (!s)
		return MV_EINVAL;
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
		*out = 1;
		return 0;
	}
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
		*out = 0;
		return 0;
	}
	return MV_EINVAL;
}

int ytree_map_set_str(struct ynode *map, const char *key, const char *value)
{
	if (!map || map->type != YNODE_MAP)
		return MV_EINVAL;
	struct ynode *v = node_new(YNODE_SCALAR, map->line);
	if (!v)
		return MV_ENOMEM;
	v->len = strlen(value);
	v->str = dup_bytes(value, v->len);
	if (!v->str) {
		ytree_free(v);
		return MV_ENOMEM;
	}
	ptrdiff_t at = map_index(map, key);
	if (at >= 0) {
		ytree_free(map->vals[at]);
		map->vals[at] = v;
		return 0;
	}
	char *k = dup_bytes(key, strlen(key));
	if (!k || grow(map)) {
		free(k);
		ytree_free(v);
		return MV_ENOMEM;
	}
	map->keys[map->n] = k;
	map->vals[map->n] = v;
	map->n++;
	return 0;
}
