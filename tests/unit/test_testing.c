/*
 * The harness itself (testing.h): each RUN() in its own process, so a crash,
 * a hang or a failed CHECK fails that test only and the others still run and
 * are counted. The program runs itself with --inner (a suite that misbehaves
 * on purpose) and reads what the harness reported.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testing.h"

static char self[4096];
static int shared_counter; /* changed by one inner test, read by the next */

static void inner_pass(void)
{
	CHECK(1 + 1 == 2);
}

static void inner_abort(void)
{
	abort();
}

static void inner_after_abort(void)
{
	shared_counter++;
	CHECK_INT_EQ(shared_counter, 1);
}

static void inner_sees_no_earlier_state(void)
{
	/* inner_after_abort's increment happened in another process. */
	CHECK_INT_EQ(shared_counter, 0);
}

static void inner_check_fails(void)
{
	CHECK_INT_EQ(2, 3);
}

static void inner_hangs(void)
{
	for (;;)
		pause();
}

static void inner_last(void)
{
	CHECK(1);
}

static int run_inner(void)
{
	RUN(inner_pass);
	RUN(inner_abort);
	RUN(inner_after_abort);
	RUN(inner_sees_no_earlier_state);
	RUN(inner_check_fails);
	RUN(inner_hangs);
	RUN(inner_last);
	return TEST_SUMMARY();
}

/* Run this program with --inner under `env`; its stderr and status. */
static int run_self(const char *env, char *out, size_t out_size)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "env %s '%s' --inner 2>&1", env, self);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	size_t n = fread(out, 1, out_size - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_each_test_in_its_own_process(void)
{
	static char out[65536];
	int status = run_self("-u MOVIE_TEST_NOFORK MOVIE_TEST_CASE= MOVIE_TEST_TIMEOUT=1", out,
	                      sizeof(out));
	CHECK_INT_EQ(status, 1);
	CHECK(strstr(out, "ok   inner_pass\n") != NULL);
	CHECK(strstr(out, "FAIL inner_abort (killed by signal 6") != NULL);
	CHECK(strstr(out, "ok   inner_after_abort\n") != NULL);
	CHECK(strstr(out, "ok   inner_sees_no_earlier_state\n") != NULL);
	CHECK(strstr(out, "FAIL inner_check_fails\n") != NULL ||
	      strstr(out, "FAIL inner_check_fails (exit status 1)") != NULL);
	CHECK(strstr(out, "CHECK failed: 2 == 3") != NULL);
	CHECK(strstr(out, "FAIL inner_hangs (timed out after 1s)") != NULL);
	CHECK(strstr(out, "ok   inner_last\n") != NULL);
	CHECK(strstr(out, "4 passed, 3 failed\n") != NULL);
	if (testing_failed_checks)
		fprintf(stderr, "--- inner output ---\n%s---\n", out);
}

static void test_one_case_by_name(void)
{
	static char out[65536];
	int status = run_self("-u MOVIE_TEST_NOFORK MOVIE_TEST_CASE=inner_pass", out, sizeof(out));
	CHECK_INT_EQ(status, 0);
	CHECK(strstr(out, "ok   inner_pass\n") != NULL);
	CHECK(strstr(out, "inner_abort") == NULL);
	CHECK(strstr(out, "1 passed, 0 failed\n") != NULL);
}

static void test_running_nothing_fails(void)
{
	static char out[4096];
	int status =
	    run_self("-u MOVIE_TEST_NOFORK MOVIE_TEST_CASE=no_such_test", out, sizeof(out));
	CHECK_INT_EQ(status, 1);
	CHECK(strstr(out, "0 passed, 0 failed\n") != NULL);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--inner") == 0)
		return run_inner();
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	RUN(test_each_test_in_its_own_process);
	RUN(test_one_case_by_name);
	RUN(test_running_nothing_fails);
	return TEST_SUMMARY();
}
