/*
 * fuzz_text.c - libFuzzer target for the client-string rules (movie/text.h).
 *
 * Checks beyond "no crash": the rules nest (an acceptable id is acceptable
 * text, acceptable text is valid UTF-8 without NUL), and a request the wire
 * walk accepts unpacks (when protobuf-c accepts it) into strings that are
 * valid UTF-8 -- what every client of our responses relies on.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "movie.pb-c.h"
#include "movie/text.h"

#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s)
{
	if (s && !text_utf8_valid(s, strlen(s)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool utf8 = text_utf8_valid(data, size);
	const char *text = text_check(data, size);
	const char *id = text_check_id(data, size);
	if (!id && text)
		abort();
	if (!text && (!utf8 || memchr(data, 0, size)))
		abort();
	if (text && utf8 && !memchr(data, 0, size))
		abort();

	const char *field = NULL, *why = NULL;
	if (text_pb_check(&put_metadata_request__descriptor, data, size, &field, &why) == 0) {
		PutMetadataRequest *req = put_metadata_request__unpack(NULL, size, data);
		if (req) {
			if (req->metadata) {
				check_string(req->metadata->id);
				check_string(req->metadata->title);
				check_string(req->metadata->description);
				check_string(req->metadata->director);
			}
			put_metadata_request__free_unpacked(req, NULL);
		}
	}
	return 0;
}
