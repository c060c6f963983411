/* Loading a storage driver module on demand (see movie/db_module.h). */
#include "movie/db_module.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "movie/banned.h"

#define MODULES_MAX 4

static pthread_mutex_t modules_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char name[64];
	void *handle;
} modules[MODULES_MAX];

/* The directory of the running executable, without a trailing slash. */
static int exe_dir(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	char *slash = strrchr(out, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	return 0;
}

static void *load(const char *name, char *errbuf, size_t errbuf_size)
{
	char dir[PATH_MAX], path[PATH_MAX + 128];
	if (exe_dir(dir, sizeof(dir)) != 0) {
		snprintf(errbuf, errbuf_size, "cannot find the executable's directory");
		return NULL;
	}
	static const char *const places[] = {"/../lib/movie/", "/"};
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		snprintf(path, sizeof(path), "%s%s%s", dir, places[i], name);
		if (access(path, F_OK) != 0)
			continue;
		/* RTLD_NOW: a missing symbol fails here, not in the middle of a request. */
		void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!handle)
			snprintf(errbuf, errbuf_size, "cannot load %s", dlerror());
		return handle;
	}
	snprintf(errbuf, errbuf_size,
	         "the driver module %s is not installed (looked in %.200s/../lib/movie and %.200s)",
	         name, dir, dir);
	return NULL;
}

const void *db_module_ops(const char *module, const char *service, size_t ops_size, char *errbuf,
                          size_t errbuf_size)
{
	char scratch[8];
	if (!errbuf || !errbuf_size) {
		errbuf = scratch;
		errbuf_size = sizeof(scratch);
	}
	void *handle = NULL;
	pthread_mutex_lock(&modules_mutex);
	size_t i;
	for (i = 0; i < MODULES_MAX && modules[i].handle; i++)
		if (strcmp(modules[i].name, module) == 0)
			handle = modules[i].handle;
	if (!handle && i < MODULES_MAX && strlen(module) < sizeof(modules[i].name)) {
		handle = load(module, errbuf, errbuf_size);
		if (handle) {
			snprintf(modules[i].name, sizeof(modules[i].name), "%s", module);
			modules[i].handle = handle;
		}
	} else if (!handle) {
		snprintf(errbuf, errbuf_size, "too many driver modules");
	}
	pthread_mutex_unlock(&modules_mutex);
	if (!handle)
		return NULL;
	const struct db_module *table = dlsym(handle, DB_MODULE_SYMBOL);
	if (!table) {
		snprintf(errbuf, errbuf_size, "%s lacks %s", module, DB_MODULE_SYMBOL);
		return NULL;
	}
	/* A stale module from another build fails here, at start-up, by name. */
	if (table->abi_version != DB_MODULE_ABI_VERSION || table->ops_size != ops_size ||
	    !table->service || strcmp(table->service, service) != 0 || !table->ops) {
		snprintf(errbuf, errbuf_size,
		         "%s is not a %s driver of this build (module ABI %u, %s store, ops %zu "
		         "bytes; want ABI %u, %s store, ops %zu bytes)",
		         module, service, (unsigned)table->abi_version,
		         table->service ? table->service : "(none)", table->ops_size,
		         (unsigned)DB_MODULE_ABI_VERSION, service, ops_size);
		return NULL;
	}
	return table->ops;
}
