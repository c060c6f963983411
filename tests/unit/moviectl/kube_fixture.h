/* Loading JSON fixtures of tests/fixtures/kube (KUBE_FIXTURES is set by CMake). */
#ifndef MOVIECTL_TEST_KUBE_FIXTURE_H
#define MOVIECTL_TEST_KUBE_FIXTURE_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static __attribute__((unused)) json_t *fixture(const char *name)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", KUBE_FIXTURES, name);
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j) {
		fprintf(stderr, "fixture %s: %s\n", path, err.text);
		abort();
	}
	return j;
}

/* The whole file as bytes (caller frees). */
static __attribute__((unused)) char *fixture_bytes(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", KUBE_FIXTURES, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		abort();
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
		abort();
	b[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return b;
}

#endif
