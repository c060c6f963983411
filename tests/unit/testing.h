/*
 * testing.h - the minimal unit-test harness every tests/unit program uses.
 *
 * A test program defines test functions, lists them in main with RUN(), and
 * returns TEST_SUMMARY(). A failed CHECK prints file:line and the expression
 * and marks the current test failed; the program exits non-zero when any
 * test failed, which is what ctest reads.
 *
 * Each RUN() runs its test in a child process of its own (libuv's runner
 * style): a crash, an abort, a sanitizer report, a leak or a hang fails that
 * test only, is reported by name ("FAIL test_x (killed by signal 11)") and the
 * remaining tests still run. A test gets MOVIE_TEST_TIMEOUT seconds (default
 * 120; ctest's per-program timeout still bounds the whole program); then it
 * is killed with SIGKILL and fails. What main() set up before RUN() (a
 * fixture, a directory) is inherited; what a test changes in memory is not
 * seen by the next one, which is the point.
 *
 * Environment: MOVIE_TEST_CASE=name runs only that test (debugging);
 * MOVIE_TEST_NOFORK=1 runs tests in the program's own process (gdb).
 */
#ifndef MOVIE_TESTING_H
#define MOVIE_TESTING_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int testing_failed_checks;
static int testing_tests_run;
static int testing_tests_failed;
static volatile sig_atomic_t testing_timed_out;

#define CHECK(expr)                                                                              \
	do {                                                                                     \
		if (!(expr)) {                                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
			testing_failed_checks++;                                                 \
		}                                                                                \
	} while (0)

#define CHECK_INT_EQ(a, b)                                                                \
	do {                                                                              \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);           \
		if (check_a_ != check_b_) {                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", \
			        __FILE__, __LINE__, #a, #b, check_a_, check_b_);          \
			testing_failed_checks++;                                          \
		}                                                                         \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                                    \
	do {                                                                                  \
		const char *check_a_ = (a), *check_b_ = (b);                                  \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {              \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n", \
			        __FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",   \
			        check_b_ ? check_b_ : "(null)");                              \
			testing_failed_checks++;                                              \
		}                                                                             \
	} while (0)

static inline void testing_on_alarm(int sig)
{
	(void)sig;
	testing_timed_out = 1;
}

/* Run fn in a child; returns 0 when it passed, else prints why and returns 1. */
static inline int testing_run_forked(void (*fn)(void), const char *name)
{
	const char *t = getenv("MOVIE_TEST_TIMEOUT");
	long timeout = t ? strtol(t, NULL, 10) : 120;
	if (timeout <= 0)
		timeout = 120;
	fflush(NULL); /* or the child would print the parent's buffered output again */
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "FAIL %s (fork: %s)\n", name, strerror(errno));
		return 1;
	}
	if (pid == 0) {
		testing_failed_checks = 0;
		fn();
		fflush(NULL);
		/* exit, not _exit: LeakSanitizer checks this test's leaks at exit. */
		exit(testing_failed_checks ? 1 : 0);
	}
	struct sigaction sa, old_sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = testing_on_alarm; /* no SA_RESTART: waitpid returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old_sa);
	testing_timed_out = 0;
	alarm((unsigned)timeout);
	int status = 0;
	pid_t got;
	while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
		if (testing_timed_out)
			kill(pid, SIGKILL);
	}
	alarm(0);
	sigaction(SIGALRM, &old_sa, NULL);
	if (got < 0) {
		fprintf(stderr, "FAIL %s (waitpid: %s)\n", name, strerror(errno));
		return 1;
	}
	if (testing_timed_out) {
		fprintf(stderr, "FAIL %s (timed out after %lds)\n", name, timeout);
		return 1;
	}
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "FAIL %s (killed by signal %d, %s)\n", name, WTERMSIG(status),
		        strsignal(WTERMSIG(status)));
		return 1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "FAIL %s (exit status %d)\n", name,
		        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 1;
	}
	return 0;
}

static inline void testing_run(void (*fn)(void), const char *name)
{
	const char *only = getenv("MOVIE_TEST_CASE");
	if (only && *only && strcmp(only, name) != 0)
		return;
	int failed;
	const char *nofork = getenv("MOVIE_TEST_NOFORK");
	if (nofork && strcmp(nofork, "1") == 0) {
		int before = testing_failed_checks;
		fn();
		failed = testing_failed_checks != before;
		if (failed)
			fprintf(stderr, "FAIL %s\n", name);
	} else {
		failed = testing_run_forked(fn, name);
	}
	testing_tests_run++;
	if (failed)
		testing_tests_failed++;
	else
		fprintf(stderr, "ok   %s\n", name);
}

#define RUN(test_fn) testing_run(test_fn, #test_fn)

/* A program that ran no test fails: a filter or a main that lost its RUN()s
 * must not pass by running nothing. */
#define TEST_SUMMARY()                                                                       \
	(fprintf(stderr, "%d passed, %d failed\n", testing_tests_run - testing_tests_failed, \
	         testing_tests_failed),                                                      \
	 testing_tests_failed || !testing_tests_run ? 1 : 0)

#endif
