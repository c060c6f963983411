/* libFuzzer target: arbitrary bytes as a release policy (--policy FILE) and as
 * a service config read from a ConfigMap for the plan's peers (API answers are
 * untrusted). Invariants: no crash, no leak; a parsed policy stays in range.
 * Seed corpus: fuzz/corpus/moviectl_release/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "release_plan.h"
#include "release_policy.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1 << 20))
		return 0;
	struct release_policy p;
	char err[256];
	release_policy_defaults(&p);
	if (release_policy_parse(&p, (const char *)data, size, err, sizeof(err)) == 0) {
		if (p.n_codes > RELEASE_MAX_CODES || p.n_synth > RELEASE_MAX_SYNTH_CALLS ||
		    p.synth_rate > RELEASE_MAX_SYNTH_RATE || p.passes < 1 || p.failures < 1 ||
		    !(p.confidence >= 0.5 && p.confidence < 1))
			abort();
	}
	struct release_plan_svc s;
	memset(&s, 0, sizeof(s));
	if (release_plan_add_peers(&s, (const char *)data, size, err, sizeof(err)) == 0 &&
	    s.n_peers > RELEASE_MAX_SERVICES)
		abort();
	return 0;
}
