/* libFuzzer target: arbitrary bytes through the YAML tree and every lint rule.
 * Seed corpus: tests/fixtures/lint/. */
#include <stddef.h>
#include <stdint.h>

#include "lint.h"
#include "ytree.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ydocs docs = {0};
	char err[256];
	if (size > (1 << 20))
		return 0;
	if (ytree_parse((const char *)data, size, &docs, err, sizeof(err)) == 0) {
		struct lint_doc ld[32];
		size_t n = docs.n < 32 ? docs.n : 32;
		for (size_t i = 0; i < n; i++) {
			ld[i].file = "fuzz";
			ld[i].root = docs.docs[i];
		}
		struct lint_report rep;
		lint_report_init(&rep);
		lint_check(ld, n, &rep);
		lint_report_release(&rep);
	}
	ytree_docs_release(&docs);
	return 0;
}
