/* moviectl's YAML tree: documents, lines, merge order, caps, rejected input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ytree.h"
#include "movie/err.h"
#include "../testing.h"

static void test_multi_document(void)
{
	const char *y = "a: 1\nb:\n  - x\n  - 'y'\n---\n---\nkind: Service\nmetadata: {name: s}\n";
	struct ydocs d = {0};
	char err[128];
	CHECK_INT_EQ(ytree_parse(y, strlen(y), &d, err, sizeof(err)), 0);
	CHECK_INT_EQ(d.n, 3); /* the empty middle document is an empty scalar */
	if (d.n == 3) {
		long long v = 0;
		CHECK_INT_EQ(ytree_int(ytree_get(d.docs[0], "a"), &v), 0);
		CHECK_INT_EQ(v, 1);
		const struct ynode *b = ytree_get(d.docs[0], "b");
		CHECK(b && b->type == YNODE_SEQ && b->n == 2);
		if (b && b->n == 2) {
			CHECK_STR_EQ(ytree_str(b->vals[1]), "y");
			CHECK_INT_EQ(b->vals[1]->quoted, 1);
			CHECK_INT_EQ(b->vals[0]->line, 3);
		}
		CHECK_STR_EQ(ytree_str(ytree_at(d.docs[2], "metadata", "name", YTREE_END)), "s");
		CHECK_INT_EQ(d.docs[2]->line, 7);
		CHECK(ytree_at(d.docs[2], "metadata", "nope", YTREE_END) == NULL);
	}
	ytree_docs_release(&d);
}

static void test_merge_later_wins(void)
{
	const char *base = "api: {port: 1, host: h}\nlist: [a, b]\n";
	const char *over = "api: {port: 2}\nlist: [c]\nnew: x\n";
	struct ydocs a = {0}, b = {0};
	char err[128];
	CHECK_INT_EQ(ytree_parse(base, strlen(base), &a, err, sizeof(err)), 0);
	CHECK_INT_EQ(ytree_parse(over, strlen(over), &b, err, sizeof(err)), 0);
	struct ynode *cfg = NULL;
	CHECK_INT_EQ(ytree_merge(&cfg, a.docs[0]), 0);
	CHECK_INT_EQ(ytree_merge(&cfg, b.docs[0]), 0);
	CHECK_STR_EQ(ytree_str(ytree_at(cfg, "api", "port", YTREE_END)), "2");
	CHECK_STR_EQ(ytree_str(ytree_at(cfg, "api", "host", YTREE_END)), "h");
	const struct ynode *list = ytree_get(cfg, "list");
	CHECK(list && list->n == 1); /* sequences are replaced, not appended */
	CHECK_STR_EQ(ytree_str(ytree_get(cfg, "new")), "x");
	/* the sources are untouched */
	CHECK_STR_EQ(ytree_str(ytree_at(a.docs[0], "api", "port", YTREE_END)), "1");
	CHECK_INT_EQ(ytree_map_set_str(ytree_get_mut(cfg, "api"), "port", "9"), 0);
	CHECK_STR_EQ(ytree_str(ytree_at(cfg, "api", "port", YTREE_END)), "9");
	ytree_free(cfg);
	ytree_docs_release(&a);
	ytree_docs_release(&b);
}

static void test_rejects(void)
{
	struct ydocs d = {0};
	char err[128];
	const char *alias = "a: &x [1]\nb: *x\n";
	CHECK_INT_EQ(ytree_parse(alias, strlen(alias), &d, err, sizeof(err)), MV_ESYNTAX);
	ytree_docs_release(&d);
	const char *bad = "a: [1\nb: 2\n";
	CHECK_INT_EQ(ytree_parse(bad, strlen(bad), &d, err, sizeof(err)), MV_ESYNTAX);
	CHECK(strchr(err, ':') != NULL);
	ytree_docs_release(&d);
	const char *mapkey = "? [a]\n: 1\n";
	CHECK_INT_EQ(ytree_parse(mapkey, strlen(mapkey), &d, err, sizeof(err)), MV_ESYNTAX);
	ytree_docs_release(&d);

	/* nesting deeper than the cap */
	char deep[YTREE_MAX_DEPTH * 2 + 8];
	size_t n = 0;
	for (int i = 0; i < YTREE_MAX_DEPTH + 1; i++)
		deep[n++] = '[';
	for (int i = 0; i < YTREE_MAX_DEPTH + 1; i++)
		deep[n++] = ']';
	CHECK_INT_EQ(ytree_parse(deep, n, &d, err, sizeof(err)), MV_ETOOBIG);
	ytree_docs_release(&d);
}

static void test_scalars(void)
{
	struct ydocs d = {0};
	char err[128];
	const char *y = "i: 42\nneg: -3\nbig: 99999999999999999999\ns: abc\nt: true\nf: false\n";
	CHECK_INT_EQ(ytree_parse(y, strlen(y), &d, err, sizeof(err)), 0);
	long long v = 0;
	int b = -1;
	CHECK_INT_EQ(ytree_int(ytree_get(d.docs[0], "i"), &v), 0);
	CHECK_INT_EQ(v, 42);
	CHECK_INT_EQ(ytree_int(ytree_get(d.docs[0], "neg"), &v), 0);
	CHECK_INT_EQ(v, -3);
	CHECK_INT_EQ(ytree_int(ytree_get(d.docs[0], "big"), &v), MV_ERANGE);
	CHECK_INT_EQ(ytree_int(ytree_get(d.docs[0], "s"), &v), MV_EINVAL);
	CHECK_INT_EQ(ytree_int(ytree_get(d.docs[0], "missing"), &v), MV_EINVAL);
	CHECK_INT_EQ(ytree_bool(ytree_get(d.docs[0], "t"), &b), 0);
	CHECK_INT_EQ(b, 1);
	CHECK_INT_EQ(ytree_bool(ytree_get(d.docs[0], "f"), &b), 0);
	CHECK_INT_EQ(b, 0);
	CHECK_INT_EQ(ytree_bool(ytree_get(d.docs[0], "s"), &b), MV_EINVAL);
	ytree_docs_release(&d);
}

int main(void)
{
	RUN(test_multi_document);
	RUN(test_merge_later_wins);
	RUN(test_rejects);
	RUN(test_scalars);
	return TEST_SUMMARY();
}
