/* libFuzzer target: Prometheus API response bodies (untrusted: any URL given
 * with --prometheus answers) through prom_parse_response with the HTTP status
 * chosen by the first byte, and release-lock annotation values through
 * lock_parse. Seed corpus: fuzz/corpus/moviectl_prom/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "prom.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1 << 20))
		return 0;
	static const long codes[] = {200, 400, 422, 503, 0, 302, 500, 204};
	long http = codes[data[0] % 8];
	data++;
	size--;
	struct prom_result r;
	struct prom_error e;
	if (prom_parse_response((const char *)data, size, http, &r, &e) == 0) {
		for (size_t i = 0; i < r.n; i++)
			(void)prom_label(&r.samples[i], "pod_template_hash");
	}
	prom_result_release(&r);
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct release_lock l;
	lock_parse(s, &l);
	free(s);
	return 0;
}
