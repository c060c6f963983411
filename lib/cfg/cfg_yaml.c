/*
 * cfg_yaml.c - apply one YAML document held in memory. No I/O.
 *
 * libyaml's event API is used rather than its document API: events carry
 * exact marks for every key and value, arrive before anything is built (so
 * the depth cap and the alias/anchor/tag refusals act before libyaml grows a
 * tree), and let nested mappings be walked with an explicit bounded stack.
 *
 * An error in a key or a value does not end the walk: the offending node
 * (with its subtree) is skipped and the rest of the document is still
 * checked, so that one run reports every mistake of a file. Only what leaves
 * the rest meaningless or unsafe to read stops it (syntax, anchors, aliases,
 * tags, nesting, a second document, out of memory).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "cfg_internal.h"
#include "movie/err.h"
#include "movie/banned.h"

struct seen_key {
	char *text;
	size_t len;
	yaml_mark_t mark;
};

struct frame {
	bool is_list;
	size_t path_len; /* length of this node's own path */
	/* mapping */
	bool want_value;
	ptrdiff_t value_option; /* option of the pending value, -1: a section */
	size_t value_path_len;  /* path length with the pending key */
	struct seen_key *seen;  /* section keys of this mapping (options use first_set) */
	size_t seen_count;
	bool skip_value; /* the pending key was refused: skip its value */
	/* sequence of a CFG_STRING_LIST */
	size_t list_option;
	yaml_mark_t list_mark;
	union cfg_value list;
	size_t list_items; /* items seen, refused ones included */
	bool list_failed;  /* an item was refused: do not assign the list */
};

struct first_set {
	bool set;
	yaml_mark_t mark;
};

struct walker {
	const struct cfg_schema *schema;
	void *config;
	const char *name;
	unsigned line_offset, column_offset;
	struct cfg_errors *errs;
	int first_rc; /* code of the first error of this document */
	size_t skip;  /* > 0: inside a refused subtree, this many levels deep */
	char path[CFG_PATH_MAX + 1];
	size_t path_len;
	struct frame frames[CFG_DEPTH_MAX];
	size_t depth;
	struct first_set *first_set; /* per option, within this document */
	bool document_seen;
};

/* 1-based line and column of `mark` in the file the document sits in. */
static size_t mark_line(const struct walker *w, yaml_mark_t mark)
{
	return mark.line + 1 + w->line_offset;
}

static size_t mark_column(const struct walker *w, yaml_mark_t mark)
{
	return mark.column + 1 + w->column_offset;
}

static void format_where(const struct walker *w, yaml_mark_t mark, char *out, size_t out_size)
{
	snprintf(out, out_size, "%s:%zu:%zu", w->name, mark_line(w, mark), mark_column(w, mark));
}

static int fail(struct walker *w, int rc, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record an error at `mark` for the current path; returns `rc`. */
static int fail(struct walker *w, int rc, yaml_mark_t mark, const char *fmt, ...)
{
	char where[sizeof(w->errs->items[0].where)];
	char key[sizeof(w->errs->items[0].key)];
	char message[sizeof(w->errs->items[0].message)];
	va_list ap;
	format_where(w, mark, where, sizeof(where));
	snprintf(key, sizeof(key), "%.*s", (int)w->path_len, w->path);
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	cfg_errors_add(w->errs, rc, where, key, "%s", message);
	if (!w->first_rc)
		w->first_rc = rc;
	return rc;
}

/* The pending value of mapping frame `f` is dealt with. */
static void value_done(struct walker *w, struct frame *f)
{
	f->want_value = false;
	f->skip_value = false;
	w->path_len = f->path_len;
	w->path[w->path_len] = '\0';
}

/* Ignore the node `ev` starts (a scalar, or a whole mapping/sequence) as the
 * value of `f` (or an item when `f` is a list). Returns 0 or MV_EINVAL
 * (nesting cap, recorded). */
static int skip_node(struct walker *w, struct frame *f, const yaml_event_t *ev)
{
	if (ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT) {
		if (w->depth >= CFG_DEPTH_MAX)
			return fail(w, MV_EINVAL, ev->start_mark, "nesting deeper than %d levels",
			            CFG_DEPTH_MAX);
		w->skip = 1;
		return 0;
	}
	if (!f->is_list)
		value_done(w, f);
	return 0;
}

/* An event inside a skipped subtree. */
static int on_skipped(struct walker *w, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		if (w->depth + w->skip >= CFG_DEPTH_MAX)
			return fail(w, MV_EINVAL, ev->start_mark, "nesting deeper than %d levels",
			            CFG_DEPTH_MAX);
		w->skip++;
		return 0;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		if (--w->skip == 0 && w->depth && !w->frames[w->depth - 1].is_list)
			value_done(w, &w->frames[w->depth - 1]);
		return 0;
	default: return 0;
	}
}

static bool is_null_scalar(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return len == 0 || (len == 1 && v[0] == '~') ||
	       (len == 4 && (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 ||
	                     memcmp(v, "NULL", 4) == 0));
}

static const char *node_kind(yaml_event_type_t type)
{
	switch (type) {
	case YAML_SCALAR_EVENT: return "a scalar";
	case YAML_SEQUENCE_START_EVENT: return "a sequence";
	case YAML_MAPPING_START_EVENT: return "a mapping";
	default: return "something else";
	}
}

/* "a decimal integer in 1..65535", "one of debug, info". */
static void expectation(const struct cfg_option *opt, char *out, size_t out_size)
{
	char range[96];
	if (opt->type == CFG_ENUM) {
		size_t o = (size_t)snprintf(out, out_size, "one of");
		for (const char *const *v = opt->enum_values; *v && o < out_size; v++) {
			int n = snprintf(out + o, out_size - o, "%s %s",
			                 v == opt->enum_values ? "" : ",", *v);
			if (n < 0)
				break;
			o += (size_t)n;
		}
		return;
	}
	cfg_format_range(opt, range, sizeof(range));
	snprintf(out, out_size, "%s%s%s", cfg_type_expectation(opt->type), range[0] ? " in " : "",
	         range);
}

/* The new innermost frame, or NULL (error reported) past CFG_DEPTH_MAX. */
static struct frame *push(struct walker *w, yaml_mark_t mark)
{
	if (w->depth == CFG_DEPTH_MAX) {
		fail(w, MV_EINVAL, mark, "nesting deeper than %d levels", CFG_DEPTH_MAX);
		return NULL;
	}
	struct frame *f = &w->frames[w->depth++];
	memset(f, 0, sizeof(*f));
	f->path_len = w->path_len;
	return f;
}

static void frame_release(const struct walker *w, struct frame *f)
{
	for (size_t i = 0; i < f->seen_count; i++)
		free(f->seen[i].text);
	free(f->seen);
	if (f->is_list)
		cfg_value_free(CFG_STRING_LIST, &f->list);
	memset(f, 0, sizeof(*f));
}

/* The value of the parent mapping's pending key is complete. */
static void pop(struct walker *w)
{
	frame_release(w, &w->frames[--w->depth]);
	if (w->depth) {
		struct frame *parent = &w->frames[w->depth - 1];
		parent->want_value = false;
		w->path_len = parent->path_len;
	} else {
		w->path_len = 0;
	}
	w->path[w->path_len] = '\0';
}

static int on_key(struct walker *w, struct frame *f, const yaml_event_t *ev)
{
	const char *key = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	yaml_mark_t mark = ev->start_mark;
	char hint[CFG_PATH_MAX];
	size_t sep = f->path_len ? 1 : 0;

	/* A refused key: record it and skip its value. */
	f->want_value = true;
	f->skip_value = true;
	f->value_option = -1;
	if (len == 0) {
		fail(w, MV_EINVAL, mark, "empty key");
		return 0;
	}
	if (f->path_len + sep + len > CFG_PATH_MAX) {
		/* No option has so long a path; show what fits. */
		size_t room = CFG_PATH_MAX - f->path_len - sep;
		if (sep)
			w->path[f->path_len] = '.';
		memcpy(w->path + f->path_len + sep, key, room);
		w->path_len = CFG_PATH_MAX;
		w->path[w->path_len] = '\0';
		fail(w, MV_EINVAL, mark, "unknown key");
		return 0;
	}
	if (sep)
		w->path[f->path_len] = '.';
	memcpy(w->path + f->path_len + sep, key, len);
	w->path_len = f->path_len + sep + len;
	w->path[w->path_len] = '\0';

	ptrdiff_t index = cfg_find_option(w->schema, w->path, w->path_len);
	if (index < 0 && !cfg_is_prefix(w->schema, w->path, w->path_len)) {
		/* Past the error cap the message is only counted: spare the search. */
		hint[0] = '\0';
		if (w->errs->count < CFG_ERRORS_MAX)
			cfg_suggest_key(w->schema, w->path, hint, sizeof(hint));
		if (hint[0])
			fail(w, MV_EINVAL, mark, "unknown key (did you mean %s?)", hint);
		else
			fail(w, MV_EINVAL, mark, "unknown key");
		return 0;
	}
	if (index >= 0) {
		struct first_set *fs = &w->first_set[index];
		if (fs->set) {
			fail(w, MV_EINVAL, mark, "duplicate key (first set at %zu:%zu)",
			     mark_line(w, fs->mark), mark_column(w, fs->mark));
			return 0;
		}
		fs->set = true;
		fs->mark = mark;
	} else {
		for (size_t i = 0; i < f->seen_count; i++) {
			if (f->seen[i].len == len && memcmp(f->seen[i].text, key, len) == 0) {
				fail(w, MV_EINVAL, mark, "duplicate key (first at %zu:%zu)",
				     mark_line(w, f->seen[i].mark),
				     mark_column(w, f->seen[i].mark));
				return 0;
			}
		}
		/* Bounded: every distinct key here named a section of the table. */
		struct seen_key *seen = realloc(f->seen, (f->seen_count + 1) * sizeof(*seen));
		if (!seen)
			return fail(w, MV_ENOMEM, mark, "out of memory");
		f->seen = seen;
		seen[f->seen_count].text = malloc(len);
		if (!seen[f->seen_count].text)
			return fail(w, MV_ENOMEM, mark, "out of memory");
		memcpy(seen[f->seen_count].text, key, len);
		seen[f->seen_count].len = len;
		seen[f->seen_count].mark = mark;
		f->seen_count++;
	}
	f->skip_value = false;
	f->value_option = index;
	f->value_path_len = w->path_len;
	return 0;
}

/* Returns 0 (also after a refused value, recorded) or MV_ENOMEM. */
static int on_option_scalar(struct walker *w, size_t index, const yaml_event_t *ev)
{
	const struct cfg_option *opt = &w->schema->options[index];
	char msg[CFG_MSG_MAX], where[sizeof(w->errs->items[0].where)];
	union cfg_value v;
	int rc = cfg_value_parse(opt, (const char *)ev->data.scalar.value, ev->data.scalar.length,
	                         is_null_scalar(ev), &v, msg, sizeof(msg));
	if (rc) {
		fail(w, rc, ev->start_mark, "%s", msg);
		return rc == MV_ENOMEM ? rc : 0;
	}
	format_where(w, ev->start_mark, where, sizeof(where));
	rc = cfg_assign(w->schema, w->config, index, &v, where);
	if (rc)
		return fail(w, rc, ev->start_mark, "out of memory");
	return 0;
}

static int on_value(struct walker *w, struct frame *f, const yaml_event_t *ev)
{
	char expected[CFG_MSG_MAX];
	struct frame *child;
	int rc;

	if (f->skip_value)
		return skip_node(w, f, ev);
	if (f->value_option < 0) {
		/* A section: a mapping, or nothing at all ("kafka:" with its
		 * keys commented out). */
		if (ev->type == YAML_MAPPING_START_EVENT)
			return push(w, ev->start_mark) ? 0 : MV_EINVAL;
		if (ev->type == YAML_SCALAR_EVENT && is_null_scalar(ev)) {
			value_done(w, f);
			return 0;
		}
		fail(w, MV_EINVAL, ev->start_mark,
		     "expected a mapping (a section of options), got %s", node_kind(ev->type));
		return skip_node(w, f, ev);
	}

	size_t index = (size_t)f->value_option;
	const struct cfg_option *opt = &w->schema->options[index];
	if (ev->type == YAML_SCALAR_EVENT) {
		if (opt->type == CFG_STRING_LIST && !is_null_scalar(ev))
			fail(w, MV_EINVAL, ev->start_mark,
			     "expected a sequence of strings (e.g. [a, b]), got a scalar");
		else if ((rc = on_option_scalar(w, index, ev)) != 0)
			return rc;
		value_done(w, f);
		return 0;
	}
	if (ev->type == YAML_SEQUENCE_START_EVENT && opt->type == CFG_STRING_LIST) {
		child = push(w, ev->start_mark);
		if (!child)
			return MV_EINVAL;
		child->is_list = true;
		child->list_option = index;
		child->list_mark = ev->start_mark;
		return 0;
	}
	expectation(opt, expected, sizeof(expected));
	fail(w, MV_EINVAL, ev->start_mark, "expected %s, got %s", expected, node_kind(ev->type));
	return skip_node(w, f, ev);
}

static int on_list_item(struct walker *w, struct frame *f, const yaml_event_t *ev)
{
	const struct cfg_option *opt = &w->schema->options[f->list_option];
	char msg[CFG_MSG_MAX];
	size_t n = ++f->list_items;
	if (ev->type != YAML_SCALAR_EVENT) {
		f->list_failed = true;
		fail(w, MV_EINVAL, ev->start_mark, "item %zu: expected a string, got %s", n,
		     node_kind(ev->type));
		return skip_node(w, f, ev);
	}
	if (is_null_scalar(ev) || ev->data.scalar.length == 0) {
		f->list_failed = true;
		fail(w, MV_EINVAL, ev->start_mark, "item %zu is empty", n);
		return 0;
	}
	int rc = cfg_list_add(opt, &f->list.list, (const char *)ev->data.scalar.value,
	                      ev->data.scalar.length, msg, sizeof(msg));
	if (rc) {
		f->list_failed = true;
		fail(w, rc, ev->start_mark, "item %zu: %s", n, msg);
		/* Past the item cap the rest would only repeat the same error. */
		if (rc == MV_ERANGE && f->list.list.count >= CFG_LIST_MAX_ITEMS)
			return rc;
		return rc == MV_ENOMEM ? rc : 0;
	}
	return 0;
}

static int on_list_end(struct walker *w, struct frame *f)
{
	char where[sizeof(w->errs->items[0].where)];
	if (f->list_failed) {
		pop(w);
		return 0;
	}
	format_where(w, f->list_mark, where, sizeof(where));
	int rc = cfg_assign(w->schema, w->config, f->list_option, &f->list, where);
	if (rc)
		return fail(w, rc, f->list_mark, "out of memory");
	pop(w);
	return 0;
}

/* Anchors, aliases and tags: refused, because aliases let a small document
 * expand enormously and tags would override the schema's types. */
static int check_node(struct walker *w, const yaml_event_t *ev)
{
	const yaml_char_t *anchor = NULL, *tag = NULL;
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return fail(w, MV_EINVAL, ev->start_mark, "aliases (*name) are not supported");
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	default: return 0;
	}
	if (anchor)
		return fail(w, MV_EINVAL, ev->start_mark, "anchors (&name) are not supported");
	if (tag)
		return fail(w, MV_EINVAL, ev->start_mark, "tags (!tag) are not supported");
	return 0;
}

static int on_event(struct walker *w, const yaml_event_t *ev, bool *done)
{
	struct frame *f = w->depth ? &w->frames[w->depth - 1] : NULL;
	int rc = check_node(w, ev);
	if (rc)
		return rc;
	if (w->skip)
		return on_skipped(w, ev);
	switch (ev->type) {
	case YAML_STREAM_END_EVENT: *done = true; return 0;
	case YAML_DOCUMENT_START_EVENT:
		if (w->document_seen)
			return fail(w, MV_EINVAL, ev->start_mark,
			            "only one YAML document is allowed");
		w->document_seen = true;
		return 0;
	case YAML_MAPPING_END_EVENT: pop(w); return 0;
	case YAML_SEQUENCE_END_EVENT: return on_list_end(w, f);
	case YAML_SCALAR_EVENT:
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: break;
	default: return 0;
	}
	if (!f) {
		if (ev->type == YAML_MAPPING_START_EVENT)
			return push(w, ev->start_mark) ? 0 : MV_EINVAL;
		if (ev->type == YAML_SCALAR_EVENT && is_null_scalar(ev))
			return 0;
		return fail(w, MV_EINVAL, ev->start_mark,
		            "the document must be a mapping of keys, got %s", node_kind(ev->type));
	}
	if (f->is_list)
		return on_list_item(w, f, ev);
	if (f->want_value)
		return on_value(w, f, ev);
	if (ev->type != YAML_SCALAR_EVENT)
		return fail(w, MV_EINVAL, ev->start_mark, "a key must be a string, got %s",
		            node_kind(ev->type));
	return on_key(w, f, ev);
}

/* libyaml reports reader errors (bad UTF-8, control characters) by byte
 * offset only. */
static yaml_mark_t mark_at_offset(const char *data, size_t len, size_t offset)
{
	yaml_mark_t m = {0};
	if (offset > len)
		offset = len;
	for (size_t i = 0; i < offset; i++) {
		unsigned char c = (unsigned char)data[i];
		if (c == '\n') {
			m.line++;
			m.column = 0;
		} else if ((c & 0xc0) != 0x80) {
			m.column++;
		}
	}
	m.index = offset;
	return m;
}

static int syntax_error(struct walker *w, const yaml_parser_t *parser, const char *data, size_t len)
{
	yaml_mark_t mark = parser->problem_mark;
	const char *problem = parser->problem ? parser->problem : "invalid YAML";
	w->path_len = 0;
	w->path[0] = '\0';
	if (parser->error == YAML_MEMORY_ERROR)
		return fail(w, MV_ENOMEM, mark, "out of memory");
	if (parser->error == YAML_READER_ERROR) {
		mark = mark_at_offset(data, len, parser->problem_offset);
		if (parser->problem_value != -1)
			return fail(w, MV_ESYNTAX, mark, "%s (#x%X)", problem,
			            (unsigned)parser->problem_value);
		return fail(w, MV_ESYNTAX, mark, "%s", problem);
	}
	if (parser->context)
		return fail(w, MV_ESYNTAX, mark, "%s (%s at %zu:%zu)", problem, parser->context,
		            mark_line(w, parser->context_mark),
		            mark_column(w, parser->context_mark));
	return fail(w, MV_ESYNTAX, mark, "%s", problem);
}

int cfg_apply_source(const struct cfg_schema *schema, void *config, const struct cfg_source *src,
                     struct cfg_errors *errs)
{
	struct walker w;
	yaml_parser_t parser;
	const char *data = src->data;
	size_t len = src->len;
	int rc = 0;
	bool done = false;

	memset(&w, 0, sizeof(w));
	w.schema = schema;
	w.config = config;
	w.name = src->name ? src->name : "<yaml>";
	w.line_offset = src->line_offset;
	w.column_offset = src->column_offset;
	w.errs = errs;
	if (len > CFG_FILE_MAX) {
		cfg_errors_add(errs, MV_ETOOBIG, w.name, NULL, "document is larger than %zu bytes",
		               CFG_FILE_MAX);
		return MV_ETOOBIG;
	}
	w.first_set = calloc(schema->option_count ? schema->option_count : 1, sizeof(*w.first_set));
	if (!w.first_set) {
		rc = MV_ENOMEM;
		goto fail_first_set;
	}
	if (!yaml_parser_initialize(&parser)) {
		rc = MV_ENOMEM;
		goto fail_parser;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)(data ? data : ""),
	                             data ? len : 0);
	while (!done) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = syntax_error(&w, &parser, data, len);
			break;
		}
		rc = on_event(&w, &ev, &done);
		yaml_event_delete(&ev);
		if (rc)
			break;
	}
	while (w.depth)
		frame_release(&w, &w.frames[--w.depth]);
	yaml_parser_delete(&parser);
fail_parser:
	free(w.first_set);
fail_first_set:
	if (rc == MV_ENOMEM && !w.first_rc)
		cfg_errors_add(errs, rc, w.name, NULL, "out of memory");
	return w.first_rc ? w.first_rc : rc;
}

int cfg_apply_yaml(const struct cfg_schema *schema, void *config, const char *name,
                   const char *data, size_t len, struct cfg_error *err)
{
	struct cfg_source src = {.name = name, .data = data, .len = len};
	struct cfg_errors *errs = malloc(sizeof(*errs));
	if (!errs) {
		if (err)
			cfg_error_set(err, name ? name : "<yaml>", NULL, "out of memory");
		return MV_ENOMEM;
	}
	cfg_errors_init(errs);
	int rc = cfg_apply_source(schema, config, &src, errs);
	cfg_errors_first(errs, err);
	free(errs);
	return rc;
}
