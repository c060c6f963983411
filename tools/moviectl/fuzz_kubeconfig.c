/* libFuzzer target: kubeconfig bytes through the first-wins merge and the
 * context/cluster/user resolution (base64, exec blocks, paths).
 * Seed corpus: fuzz/corpus/moviectl_kubeconfig/. */
#include <stddef.h>
#include <stdint.h>

#include "kube.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1 << 20))
		return 0;
	json_t *merged = NULL;
	char err[512];
	/* The same bytes twice: the second merge exercises first-wins. */
	if (kube_config_merge(&merged, (const char *)data, size, "/base", err, sizeof(err)) == 0 &&
	    kube_config_merge(&merged, (const char *)data, size, "/other", err, sizeof(err)) == 0 &&
	    merged) {
		struct kube_config_opts o = {0};
		struct kube_config c;
		kube_config_resolve(merged, &o, &c, err, sizeof(err));
		kube_config_release(&c);
	}
	json_decref(merged);
	return 0;
}
