/*
 * store_driver.c - a service store's driver by name (movie/store_driver.h).
 */
#include "movie/store_driver.h"

#include <stdio.h>
#include <string.h>

#include "movie/db_module.h"
#include "movie/banned.h"

const void *store_driver_select(const char *driver, const void *const *builtins, size_t count,
                                const char *service, size_t ops_size, char *errbuf,
                                size_t errbuf_size)
{
	if (errbuf && errbuf_size)
		errbuf[0] = '\0';
	for (size_t i = 0; driver && i < count; i++) {
		/* Every ops table starts with its name (the header's contract). */
		const char *const *name = builtins[i];
		if (strcmp(driver, *name) == 0)
			return builtins[i];
	}
	if (driver && strcmp(driver, "mysql") == 0) {
		char module[128];
		int n = snprintf(module, sizeof(module), "movie-mysql-%s.so", service);
		if (n < 0 || (size_t)n >= sizeof(module)) {
			if (errbuf && errbuf_size)
				snprintf(errbuf, errbuf_size, "service name too long: %s", service);
			return NULL;
		}
		/* Loaded on demand: see movie/db_module.h. */
		return db_module_ops(module, service, ops_size, errbuf, errbuf_size);
	}
	if (errbuf && errbuf_size)
		snprintf(errbuf, errbuf_size, "unknown storage driver '%s' (memory, sqlite, mysql)",
		         driver ? driver : "(none)");
	return NULL;
}
