/*
 * store_record.c - helpers for struct metadata that every driver uses. Its own
 * file because the MariaDB module compiles it in: the module resolves nothing
 * against the executable (movie/db_module.h).
 */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_driver.h"

#include "movie/banned.h"

char *metadata_strdup(const char *s)
{
	return strdup(s ? s : "");
}

void metadata_release(struct metadata *m)
{
	if (!m)
		return;
	free(m->id);
	free(m->title);
	free(m->description);
	free(m->director);
	memset(m, 0, sizeof(*m));
}
