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
    {"faults-production", "      port: 8083\n    shutdown",
     "      port: 8083\n    faults:\n      error_ratio: 0.3\n    shutdown"},
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
    {"faults-production", "      port: 8083\n    shutdown",
     "      port: 8083\n    faults.delay: 100ms\n    shutdown"},
    {"faults-production", "      port: 8083\n    shutdown",
     "      port: 8083\n    faults:\n      not_ready: true\n    shutdown"},
    {"faults-production", "      port: 8083\n    shutdown",
     "      port: 8083\n    faults:\n      exit_after: 10m\n    shutdown"},
    {"faults-production", "          ports:\n",
     "          env:\n            - name: MOVIE_FAULTS_ERROR_RATIO\n"
     "              value: \"0.01\"\n          ports:\n"},
    {"config", "      port: 8083\n    shutdown",
     "      port: 8083\n    faults:\n      error_code: OK\n    shutdown"},
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

/* `text` with every `from` replaced by `to` (heap). */
static char *replace_all(const char *text, const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to), n = 0;
	for (const char *p = strstr(text, from); p; p = strstr(p + flen, from))
		n++;
	char *out = malloc(strlen(text) + n * (tlen > flen ? tlen - flen : 0) + 1);
	if (!out)
		return NULL;
	char *o = out;
	for (const char *p = text;;) {
		const char *q = strstr(p, from);
		size_t keep = q ? (size_t)(q - p) : strlen(p);
		memcpy(o, p, keep);
		o += keep;
		if (!q)
			break;
		memcpy(o, to, tlen);
		o += tlen;
		p = q + flen;
	}
	*o = '\0';
	return out;
}

/* faults-production: which Deployments may carry faults. */
static void test_faults_where_allowed(void)
{
	char *saved = good;
	char *faulty = edit("      port: 8083\n    shutdown",
	                    "      port: 8083\n    faults:\n      error_ratio: 0.3\n"
	                    "      delay: 2s\n    shutdown");
	CHECK(faulty != NULL);
	if (!faulty)
		return;
	char rules[512];
	CHECK_INT_EQ(lint_text(faulty, rules, sizeof(rules)), 1);
	CHECK_STR_EQ(rules, "faults-production");
	good = faulty;
	/* A canary by name, by template label, by Deployment label: allowed. */
	static const struct breakage allowed[] = {
	    {"", "  name: movie-production\n", "  name: movie-canary\n"},
	    {"", "        track: production\n", "        track: canary\n"},
	    {"", "  name: movie-production\n",
	     "  name: movie-production\n  labels:\n    track: canary\n"},
	};
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		char *text = edit(allowed[i].from, allowed[i].to);
		CHECK(text != NULL);
		if (!text)
			continue;
		fprintf(stderr, "faults allowed %zu:\n", i);
		CHECK_INT_EQ(lint_text(text, NULL, 0), 0);
		free(text);
	}
	/* Not a production namespace: allowed. */
	char *staging = replace_all(faulty, "movie-production", "movie-staging");
	CHECK(staging != NULL);
	if (staging)
		CHECK_INT_EQ(lint_text(staging, NULL, 0), 0);
	free(staging);
	/* "production" alone, and a "-canary" that is not the suffix: refused. */
	char *prod = replace_all(faulty, "movie-production", "production");
	CHECK(prod != NULL);
	if (prod) {
		CHECK_INT_EQ(lint_text(prod, rules, sizeof(rules)), 1);
		CHECK_STR_EQ(rules, "faults-production");
	}
	free(prod);
	char *mid = edit("  name: movie-production\n", "  name: movie-canary-old\n");
	CHECK(mid != NULL);
	if (mid) {
		CHECK_INT_EQ(lint_text(mid, rules, sizeof(rules)), 1);
		CHECK_STR_EQ(rules, "faults-production");
	}
	free(mid);
	good = saved;
	free(faulty);
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

/* Lint `text` and write its findings as "line: rule: message" lines into
 * `out`; returns the number of findings (-1 on a parse error). */
static int lint_lines(const char *text, char *out, size_t out_len)
{
	struct ydocs docs = {0};
	struct lint_report rep;
	char err[256];
	int n = -1;
	size_t used = 0;
	out[0] = '\0';
	lint_report_init(&rep);
	if (ytree_parse(text, strlen(text), &docs, err, sizeof(err)))
		goto out;
	struct lint_doc ld[64];
	size_t nd = 0;
	for (size_t i = 0; i < docs.n && nd < 64; i++) {
		ld[nd].file = "fixture.yaml";
		ld[nd].root = docs.docs[i];
		nd++;
	}
	if (lint_check(ld, nd, &rep))
		goto out;
	for (size_t i = 0; i < rep.n; i++) {
		int w = snprintf(out + used, out_len - used, "%s:%d: %s: %s\n", rep.items[i].file,
		                 rep.items[i].line, rep.items[i].rule, rep.items[i].message);
		if (w > 0 && (size_t)w < out_len - used)
			used += (size_t)w;
	}
	fprintf(stderr, "%s", out);
	n = (int)rep.n;
out:
	lint_report_release(&rep);
	ytree_docs_release(&docs);
	return n;
}

/* Durations mean what they mean to the binary (lib/cfg parses them): the
 * drain-grace message shows the loaded value, a bad one is a config error. */
static void test_durations(void)
{
	static const struct {
		const char *text;
		const char *ms; /* NULL: a config error */
	} cases[] = {
	    {"250ms", "250ms"},
	    {"5s", "5000ms"},
	    {"2m", "120000ms"},
	    {"1h", NULL /* above the 10m cap of shutdown.drain_delay */},
	    {"42", "42ms"},
	    {"5 s", NULL},
	    {"-5s", NULL},
	    {"", NULL},
	    {"99999999999999999999s", NULL},
	};
	char *base = edit("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 1");
	CHECK(base != NULL);
	if (!base)
		return;
	char *saved = good;
	good = base;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char to[64], want[96], out[8192];
		snprintf(to, sizeof(to), "drain_delay: %s\n", cases[i].text);
		char *text = edit("drain_delay: 5s\n", to);
		CHECK(text != NULL);
		if (!text)
			continue;
		fprintf(stderr, "duration \"%s\":\n", cases[i].text);
		CHECK(lint_lines(text, out, sizeof(out)) >= 1);
		if (cases[i].ms) {
			snprintf(want, sizeof(want), "drain_delay %s +", cases[i].ms);
			CHECK(strstr(out, want) != NULL);
		} else {
			/* production.yaml line 5 is manifest line 26. */
			CHECK(strstr(out, "fixture.yaml:26: config: container movie: "
			                  "shutdown.drain_delay: ") != NULL);
		}
		free(text);
	}
	good = saved;
	free(base);
}

/* Issue 14 item 4: the dotted form means what it means to the binary. */
static void test_dotted_keys(void)
{
	char *text = edit("    api:\n      port: 8083\n", "    api.port: 8083\n");
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_INT_EQ(lint_text(text, NULL, 0), 0);
	free(text);
	text = edit("    shutdown:\n      drain_delay: 5s\n      grace_period: 20s\n",
	            "    shutdown.drain_delay: 5s\n    shutdown.grace_period: 20s\n");
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_INT_EQ(lint_text(text, NULL, 0), 0);
	free(text);
}

/* Every error the binary reports at start, with the ConfigMap's line. */
static void test_config_errors_at_configmap_lines(void)
{
	static const struct {
		const char *from, *to, *want;
	} cases[] = {
	    {"      port: 8083\n    shutdown", "      prot: 8083\n    shutdown",
	     "fixture.yaml:24: config: container movie: api.prot: unknown key (did you mean "
	     "api.port?) (column 7, --config /etc/movie/config/production.yaml)"},
	    {"      port: 8083\n    shutdown",
	     "      port: 8083\n    log:\n      level: verbose\n"
	     "    shutdown",
	     "fixture.yaml:26: config: container movie: log.level: "},
	    {"      host: 0.0.0.0\n", "      host: 0.0.0.0\n      workers: 65\n",
	     "fixture.yaml:13: config: container movie: api.workers: "},
	    {"addresses: [\"metadata-headless:8081\"]", "addresses: [\"metadata-headless:0\"]",
	     "fixture.yaml:30: config: container movie: peers.metadata.addresses: item 1: "},
	    {"addresses: [\"rating-headless.movie-production.svc.cluster.local:8082\"]",
	     "addresses: []",
	     "fixture.yaml:32: config: container movie: peers.rating.addresses: at least one"},
	    {"          ports:\n",
	     "          env:\n            - name: MOVIE_API_PROT\n"
	     "              value: \"9000\"\n          ports:\n",
	     "config: container movie: env MOVIE_API_PROT: unknown variable"},
	    {"          ports:\n",
	     "          env:\n            - name: MOVIE_STORAGE_PASSWORD\n"
	     "              valueFrom:\n                secretKeyRef: {name: db, "
	     "key: pw}\n          ports:\n",
	     "fixture.yaml:128: config: container movie: env MOVIE_STORAGE_PASSWORD: unknown "
	     "variable"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[8192];
		char *text = edit(cases[i].from, cases[i].to);
		CHECK(text != NULL);
		if (!text)
			continue;
		fprintf(stderr, "config error %zu:\n", i);
		CHECK(lint_lines(text, out, sizeof(out)) >= 1);
		CHECK(strstr(out, cases[i].want) != NULL);
		/* The binary would not start: no rule guesses from the rest. */
		CHECK(strstr(out, ": port-") == NULL);
		CHECK(strstr(out, ": drain-grace: ") == NULL);
		CHECK(strstr(out, ": peer-headless: ") == NULL);
		free(text);
	}
}

/* All errors of all files at once, as the binary reports them. */
static void test_every_config_error(void)
{
	char out[16384];
	char *text = edit("      port: 8083\n    shutdown",
	                  "      prot: 8083\n    log.level: verbose\n    shutdown");
	CHECK(text != NULL);
	if (!text)
		return;
	char *saved = good;
	good = text;
	char *text2 = edit("      host: 0.0.0.0\n", "      host: 0.0.0.0\n      bogus: 1\n");
	good = saved;
	CHECK(text2 != NULL);
	if (text2) {
		CHECK_INT_EQ(lint_lines(text2, out, sizeof(out)), 3);
		CHECK(strstr(out, "fixture.yaml:13: config: container movie: api.bogus: ") != NULL);
		CHECK(strstr(out, "fixture.yaml:25: config: container movie: api.prot: ") != NULL);
		CHECK(strstr(out, "fixture.yaml:26: config: container movie: log.level: ") != NULL);
	}
	free(text2);
	free(text);
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
	RUN(test_dotted_keys);
	RUN(test_config_errors_at_configmap_lines);
	RUN(test_every_config_error);
	RUN(test_faults_where_allowed);
	free(good);
	return TEST_SUMMARY();
}
