/*
 * fuzz_rating_event.c - libFuzzer target for the rating event parser.
 *
 * Checks beyond "no crash": a success yields ids that obey the contract
 * (non-empty, bounded, NUL-terminated) and a value in range; a failure names
 * a reason.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rating_event ev;
	struct rating_event_error err;
	int rc = rating_event_parse(data, size, 1, 5, &ev, &err);
	if (rc == 0) {
		size_t u = strnlen(ev.user_id, sizeof(ev.user_id));
		size_t r = strnlen(ev.record_id, sizeof(ev.record_id));
		size_t t = strnlen(ev.record_type, sizeof(ev.record_type));
		if (u == 0 || u > RATING_ID_MAX || r == 0 || r > RATING_ID_MAX || t == 0 ||
		    t > RATING_ID_MAX)
			abort();
		if (ev.op == RATING_OP_PUT && (ev.value < 1 || ev.value > 5))
			abort();
		if (ev.op != RATING_OP_PUT && ev.op != RATING_OP_DELETE)
			abort();
	} else if (err.reason == RATING_EVENT_OK || err.detail[0] == '\0') {
		abort();
	}
	return 0;
}
