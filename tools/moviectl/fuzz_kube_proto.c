/* libFuzzer target: API-server bytes through the watch-stream decoder (in
 * chunks chosen by the input), the Status parser, the ExecCredential parser,
 * and every decoded object through the rollout judge, the undo planner and
 * the selector renderer. Seed corpus: fuzz/corpus/moviectl_kube_proto/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kube.h"
#include "rollout.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void objects(const json_t *obj)
{
	char msg[512];
	rollout_status_judge(obj, 1, msg, sizeof(msg));
	json_t *items = json_object_get(obj, "items");
	struct rollout_undo_target t = {.guard = ROLLOUT_GUARD_RESOURCE_VERSION};
	struct rollout_undo_plan p;
	rollout_undo_plan(obj, items ? items : obj, &t, &p, msg, sizeof(msg));
	rollout_undo_plan_release(&p);
	rollout_old_pods(obj, items, items);
	struct buf b;
	buf_init(&b, 65536);
	kube_selector_string(json_object_get(json_object_get(obj, "spec"), "selector"), &b);
	buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1 << 20))
		return 0;
	size_t step = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	struct kube_watch_decoder d;
	kube_watch_decoder_init(&d, 1 << 16);
	int rc = 0;
	for (size_t off = 0; off < size && rc >= 0; off += step) {
		size_t n = size - off < step ? size - off : step;
		rc = kube_watch_decoder_feed(&d, data + off, n);
		while (rc == 0) {
			struct kube_event ev;
			rc = kube_watch_decoder_next(&d, &ev);
			if (rc != 1)
				break;
			struct kube_error e;
			kube_error_from_status(&e, ev.object);
			objects(ev.object);
			kube_event_release(&ev);
			rc = 0;
		}
	}
	kube_watch_decoder_partial(&d);
	kube_watch_decoder_release(&d);

	struct kube_error e;
	kube_error_from_body(&e, 400 + (long)(step % 200), (const char *)data, size);
	struct kube_exec_cred c;
	char err[256];
	if (kube_exec_cred_parse((const char *)data, size, NULL, &c, err, sizeof(err)) == 0)
		kube_exec_cred_release(&c);
	json_t *root = json_loadb((const char *)data, size, 0, NULL);
	if (root)
		objects(root);
	json_decref(root);
	return 0;
}
