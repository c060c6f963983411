/*
 * moviectl lint rules: the good fixture passes, and for every rule one edit of
 * it (that must match exactly once) fails with that rule and no other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lint.h"
#include "ytree.h"
#include "movie/err.h"
#include "../testing.h"

static char *good;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *data = calloc(1, 1 << 20);
	size_t n = data ? fread(data, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (data && n == 0) {
		free(data);
		return NULL;
	}
	return data;
}

/* good with `from` (which must occur exactly once) replaced by `to`; NULL otherwise. */
static char *edit(const char *from, const char *to)
{
	const char *at = strstr(good, from);
	if (!at || strstr(at + 1, from)) {
		fprintf(stderr, "edit: \"%s\" does not occur exactly once\n", from);
		return NULL;
	}
	size_t glen = strlen(good), flen = strlen(from), tlen = strlen(to);
	char *out = malloc(glen - flen + tlen + 1);
	if (!out)
		return NULL;
	size_t pre = (size_t)(at - good);
	memcpy(out, good, pre);
	memcpy(out + pre, to, tlen);
	memcpy(out + pre + tlen, at + flen, glen - pre - flen + 1);
	return out;
}

/* Lint `text`; returns the number of findings (-1 on a parse error) and, when
 * `rules` is given, writes the distinct rule names found into it. */
static int lint_text(const char *text, char *rules, size_t rules_len)
{
	struct ydocs docs = {0};
	struct lint_report rep;
	char err[256];
	int n = -1;
	lint_report_init(&rep);
	if (ytree_parse(text, strlen(text), &docs, err, sizeof(err))) {
		fprintf(stderr, "parse: %s\n", err);
		goto out;
	}
	struct lint_doc ld[64];
	size_t nd = 0;
	for (size_t i = 0; i < docs.n && nd < 64; i++) {
		ld[nd].file = "fixture.yaml";
		ld[nd].root = docs.docs[i];
		nd++;
	}
	if (lint_check(ld, nd, &rep))
		goto out;
	if (rules && rules_len)
		rules[0] = '\0';
	for (size_t i = 0; i < rep.n; i++) {
		fprintf(stderr, "  finding: %s: %s: %s\n", rep.items[i].object, rep.items[i].rule,
		        rep.items[i].message);
		if (rules && !strstr(rules, rep.items[i].rule)) {
			size_t used = strlen(rules);
			snprintf(rules + used, rules_len - used, "%s%s", used ? "," : "",
			         rep.items[i].rule);
		}
	}
	n = (int)rep.n;
out:
	lint_report_release(&rep);
	ytree_docs_release(&docs);
	return n;
}

static void test_good_passes(void)
{
	CHECK_INT_EQ(lint_text(good, NULL, 0), 0);
}

struct breakage {
	const char *rule;
	const char *from;
	const char *to;
};

static const struct breakage breakages[] = {
    {"config", "- /etc/movie/config/production.yaml", "- /etc/movie/config/prod.yaml"},
    {"port-container", "containerPort: 8083", "containerPort: 8084"},
    {"port-probe", "readinessProbe:\n            grpc:\n              port: 8083",
     "readinessProbe:\n            grpc:\n              port: 8084"},
    {"port-service", "targetPort: 8083", "targetPort: 8084"},
    {"probe-missing",
     "readinessProbe:\n            grpc:", "readinessProbe:\n            tcpSocket:"},
    {"probe-health-name", "service: readiness", "service: ready"},
    {"probe-distinct", "service: readiness", "service: liveness"},
    {"probe-liveness",
     "livenessProbe:\n            grpc:\n              port: 8083\n              service: liveness",
     "livenessProbe:\n            grpc:\n              port: 8083\n              service: "
     "MovieService"},
    {"drain-grace", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30"},
    {"rollout-strategy", "maxUnavailable: 0", "maxUnavailable: 1"},
    {"rollout-deadline", "progressDeadlineSeconds: 300", "progressDeadlineSeconds: 10"},
    {"image-tag", "image: movie-movie:0.1.0", "image: movie-movie:latest"},
    {"resources", "cpu: \"1\"\n              memory: 256Mi", "cpu: \"1\""},
    {"security-context", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"},
    {"peer-headless", "rating-headless.movie-production.svc.cluster.local:8082",
     "rating.movie-production.svc.cluster.local:8082"},
};

static void test_each_rule_breaks_alone(void)
{
	for (size_t i = 0; i < sizeof(breakages) / sizeof(breakages[0]); i++) {
		const struct breakage *b = &breakages[i];
		char *text = edit(b->from, b->to);
		CHECK(text != NULL);
		if (!text)
			continue;
		char rules[512];
		fprintf(stderr, "rule %s:\n", b->rule);
		int n = lint_text(text, rules, sizeof(rules));
		CHECK(n >= 1);
		CHECK_STR_EQ(rules, b->rule);
		free(text);
	}
}

/* More ways to break some rules, each must be caught by the named rule. */
static const struct breakage variants[] = {
    {"image-tag", "image: movie-movie:0.1.0", "image: registry:5000/movie-movie"},
    {"drain-grace", "drain_delay: 5s\n", "drain_delay: 25s\n"},
    {"rollout-strategy", "maxSurge: 1", "maxSurge: 0"},
    {"rollout-strategy", "    type: RollingUpdate\n", "    type: Recreate\n"},
    {"rollout-deadline", "  minReadySeconds: 10\n", ""},
    {"peer-headless", "metadata-headless:8081\"]\n      rating", "127.0.0.1:8081\"]\n      rating"},
    {"peer-headless", "rating-headless.movie-production.svc.cluster.local:8082",
     "rating-headless.movie-production.svc.cluster.local:9999"},
    {"peer-headless", "rating-headless.movie-production.svc.cluster.local:8082", "nothere:8082"},
    {"security-context", "        runAsNonRoot: true\n", ""},
    {"security-context", "                - ALL\n", "                - NET_RAW\n"},
    {"probe-liveness",
     "startupProbe:\n            grpc:\n              port: 8083\n              service: liveness",
     "startupProbe:\n            grpc:\n              port: 8083\n              service: "
     "readiness"},
    {"probe-health-name", "service: readiness", "service: RatingService"},
    {"config", "      port: 8083\n    shutdown", "      port: eighty\n    shutdown"},
    {"config", "grace_period: 20s", "grace_period: soon"},
};

static void test_variants(void)
{
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		const struct breakage *b = &variants[i];
		char *text = edit(b->from, b->to);
		CHECK(text != NULL);
		if (!text)
			continue;
		char rules[512];
		fprintf(stderr, "variant %zu (%s):\n", i, b->rule);
		CHECK(lint_text(text, rules, sizeof(rules)) >= 1);
		CHECK_STR_EQ(rules, b->rule);
		free(text);
	}
}

/* base.yaml says port 7000; only the production layer (applied last) says
 * 8083. Reversing the --config order must therefore break the port rules. */
static void test_config_order_matters(void)
{
	char *text =
	    edit("            - /etc/movie/config/base.yaml\n            - --config\n"
	         "            - /etc/movie/config/production.yaml\n",
	         "            - /etc/movie/config/production.yaml\n            - --config\n"
	         "            - /etc/movie/config/base.yaml\n");
	CHECK(text != NULL);
	if (!text)
		return;
	char rules[512];
	CHECK(lint_text(text, rules, sizeof(rules)) >= 4);
	CHECK(strstr(rules, "port-container") != NULL);
	CHECK(strstr(rules, "port-probe") != NULL);
	CHECK(strstr(rules, "port-service") != NULL);
	free(text);
}

/* MOVIE_API_PORT in the container env overrides the files, as in the binary. */
static void test_env_port_override(void)
{
	char *text =
	    edit("          ports:\n", "          env:\n            - name: MOVIE_API_PORT\n"
	                               "              value: \"9000\"\n          ports:\n");
	CHECK(text != NULL);
	if (!text)
		return;
	char rules[512];
	CHECK(lint_text(text, rules, sizeof(rules)) >= 1);
	CHECK(strstr(rules, "port-container") != NULL);
	free(text);
}

/* A named targetPort resolves through the container's port names. */
static void test_named_target_port(void)
{
	char *text = edit("targetPort: 8083", "targetPort: grpc");
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_INT_EQ(lint_text(text, NULL, 0), 0);
	char *renamed = NULL;
	char *saved = good;
	good = text;
	renamed = edit("            - name: grpc\n              containerPort",
	               "            - name: h2c\n              containerPort");
	good = saved;
	CHECK(renamed != NULL);
	if (renamed) {
		char rules[512];
		CHECK(lint_text(renamed, rules, sizeof(rules)) >= 1);
		CHECK_STR_EQ(rules, "port-service");
	}
	free(renamed);
	free(text);
}

static void test_durations(void)
{
	long long ms = 0;
	CHECK_INT_EQ(lint_parse_duration_ms("250ms", &ms), 0);
	CHECK_INT_EQ(ms, 250);
	CHECK_INT_EQ(lint_parse_duration_ms("5s", &ms), 0);
	CHECK_INT_EQ(ms, 5000);
	CHECK_INT_EQ(lint_parse_duration_ms("2m", &ms), 0);
	CHECK_INT_EQ(ms, 120000);
	CHECK_INT_EQ(lint_parse_duration_ms("1h", &ms), 0);
	CHECK_INT_EQ(ms, 3600000);
	CHECK_INT_EQ(lint_parse_duration_ms("42", &ms), 0);
	CHECK_INT_EQ(ms, 42);
	CHECK_INT_EQ(lint_parse_duration_ms("5 s", &ms), MV_EINVAL);
	CHECK_INT_EQ(lint_parse_duration_ms("-5s", &ms), MV_EINVAL);
	CHECK_INT_EQ(lint_parse_duration_ms("", &ms), MV_EINVAL);
	CHECK_INT_EQ(lint_parse_duration_ms("99999999999999999999s", &ms), MV_ERANGE);
}

int main(void)
{
	good = slurp(LINT_FIXTURES "/good.yaml");
	if (!good) {
		fprintf(stderr, "cannot read %s/good.yaml\n", LINT_FIXTURES);
		return 1;
	}
	RUN(test_good_passes);
	RUN(test_each_rule_breaks_alone);
	RUN(test_variants);
	RUN(test_config_order_matters);
	RUN(test_env_port_override);
	RUN(test_named_target_port);
	RUN(test_durations);
	free(good);
	return TEST_SUMMARY();
}
